"""torch state dict <-> Flax NNX state, by one table of rules. The only place that knows NCHW/NHWC.

NNX models here mirror torch's module tree: the NNX module at path ``layer1.0.conv1`` corresponds to
the torch module whose parameters are ``layer1.0.conv1.weight`` etc. (see
``jax_impl/models/layers.py``). So conversion needs no per-model mapping: for every NNX module whose
class has an entry in :data:`RULES`, the rules say which torch leaf names (relative to the module's
path) become which NNX variables, and how the arrays are transformed.

Rules (torch leaf -> NNX leaf, transform):

========================  ===============================  =========================================
NNX module kind           torch leaves                     NNX leaves
========================  ===============================  =========================================
``nnx.Conv``              ``weight`` [O, I/g, *k]          ``kernel`` [*k, I/g, O]   (OIHW -> HWIO)
                          ``bias`` [O]                     ``bias``
``nnx.ConvTranspose``     ``weight`` [I, O, *k]            ``kernel`` [*k, I, O], flipped spatially
                          ``bias`` [O]                     ``bias``                  (groups=1 only)
``nnx.Linear``            ``weight`` [out, in]             ``kernel`` [in, out]
                          ``bias`` [out]                   ``bias``
``nnx.BatchNorm``         ``weight``, ``bias``,            ``scale``, ``bias``, ``mean``, ``var``
                          ``running_mean``, ``running_var``
                          ``num_batches_tracked``          none: dropped on import, exported as 0
``BidirectionalLSTM``     ``weight_ih_l{k}[_reverse]``...  see :func:`_lstm_rules`
========================  ===============================  =========================================

``num_batches_tracked`` is dropped on purpose: torch uses it only when ``momentum=None``, which no
model here sets, so JAX keeps no counter; :func:`export_torch_state` writes 0 (int64 scalar), what a
fresh torch module holds. Hence torch -> JAX -> torch is bitwise exact for every parameter and
running statistic, and for ``num_batches_tracked`` of an untrained model.

All problems of one conversion (torch keys no rule consumes, torch keys a rule needs but the dict
lacks, NNX variables no rule fills, shape mismatches) are collected and raised together as one
:class:`ConversionError`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

from jax_impl.models import create_model
from jax_impl.models.lstm import BidirectionalLSTM
from shared_data.errors import UserError


class ConversionError(UserError):
    """A state dict that does not fit the model; the message lists every problem at once."""


@dataclasses.dataclass(frozen=True)
class LeafRule:
    """One NNX variable <-> one or more torch tensors of the same module.

    Attributes:
        torch: torch leaf names relative to the module (``("weight",)``); several when they merge
            into one NNX variable (``to_jax`` then receives them in this order).
        nnx: the NNX variable's path relative to the module, dot-separated (``"kernel"``,
            ``"cell.ih.kernel"``); None for a torch-only buffer (accepted on import, ignored;
            regenerated on export by ``to_torch(None)``).
        to_jax: ``(*torch_arrays) -> nnx_array``.
        to_torch: ``nnx_array -> tuple of torch arrays`` (one per name in ``torch``).
    """

    torch: tuple[str, ...]
    nnx: str | None
    to_jax: Callable[..., np.ndarray]
    to_torch: Callable[[np.ndarray | None], tuple[np.ndarray, ...]]


def one_to_one(
    torch_name: str,
    nnx_name: str,
    to_jax: Callable[[np.ndarray], np.ndarray] = lambda a: a,
    to_torch: Callable[[np.ndarray], np.ndarray] = lambda a: a,
) -> LeafRule:
    """A rule moving one torch tensor to one NNX variable through ``to_jax``/``to_torch``."""
    return LeafRule((torch_name,), nnx_name, to_jax, lambda a: (to_torch(a),))


def _conv_to_jax(w: np.ndarray) -> np.ndarray:
    """torch ``[O, I/g, *k]`` -> NNX ``[*k, I/g, O]`` (any number of spatial dims)."""
    return np.transpose(w, (*range(2, w.ndim), 1, 0))


def _conv_to_torch(k: np.ndarray) -> np.ndarray:
    return np.transpose(k, (k.ndim - 1, k.ndim - 2, *range(k.ndim - 2)))


def _flip_spatial(a: np.ndarray, n_spatial: int, first: int) -> np.ndarray:
    return np.flip(a, axis=tuple(range(first, first + n_spatial)))


def _conv_transpose_to_jax(w: np.ndarray) -> np.ndarray:
    """torch ``[I, O, *k]`` -> NNX ``[*k, I, O]``, flipped: ``lax.conv_transpose`` (with
    ``transpose_kernel=False``) correlates with the kernel as given, torch with it flipped."""
    return _flip_spatial(np.transpose(w, (*range(2, w.ndim), 0, 1)), w.ndim - 2, 0)


def _conv_transpose_to_torch(k: np.ndarray) -> np.ndarray:
    n = k.ndim - 2
    return np.transpose(_flip_spatial(k, n, 0), (n, n + 1, *range(n)))


def _bias_rules(module: nnx.Module) -> tuple[LeafRule, ...]:
    return (one_to_one("bias", "bias"),) if getattr(module, "bias", None) is not None else ()


def _conv_rules(module: nnx.Module) -> tuple[LeafRule, ...]:
    return (one_to_one("weight", "kernel", _conv_to_jax, _conv_to_torch), *_bias_rules(module))


def _conv_transpose_rules(module: nnx.Module) -> tuple[LeafRule, ...]:
    if module.transpose_kernel:
        raise ConversionError(
            "nnx.ConvTranspose with transpose_kernel=True has no rule; build it with "
            "jax_impl.models.layers.conv_transpose2d (transpose_kernel=False)"
        )
    kernel = one_to_one("weight", "kernel", _conv_transpose_to_jax, _conv_transpose_to_torch)
    return (kernel, *_bias_rules(module))


def _linear_rules(module: nnx.Module) -> tuple[LeafRule, ...]:
    return (one_to_one("weight", "kernel", np.transpose, np.transpose), *_bias_rules(module))


def _batch_norm_rules(module: nnx.Module) -> tuple[LeafRule, ...]:
    return (
        one_to_one("weight", "scale"),
        one_to_one("bias", "bias"),
        one_to_one("running_mean", "mean"),
        one_to_one("running_var", "var"),
        LeafRule(
            ("num_batches_tracked",), None, lambda *_: None, lambda _: (np.zeros((), np.int64),)
        ),
    )


def _lstm_rules(module: BidirectionalLSTM) -> tuple[LeafRule, ...]:
    """``nn.LSTM`` (bidirectional, batch_first) <-> :class:`BidirectionalLSTM`, per layer ``k``.

    ``weight_{ih,hh}_l{k}[_reverse]`` [4H, in|H] -> ``layers.{k}.{forward_rnn|backward_rnn}.cell.
    dense_{i,h}.kernel`` [in|H, 4H] (transposed; both libraries order the gate blocks i, f, g, o);
    ``bias_{ih,hh}_l{k}[_reverse]`` -> ``dense_{i,h}.bias``: the cell keeps torch's two biases, so
    the round trip is bitwise and the parameter counts agree (no summing).
    """
    rules = []
    for k in range(module.num_layers):
        for suffix, direction in (("", "forward_rnn"), ("_reverse", "backward_rnn")):
            cell = f"layers.{k}.{direction}.cell"
            for torch_part, dense in (("ih", "dense_i"), ("hh", "dense_h")):
                rules.append(
                    one_to_one(
                        f"weight_{torch_part}_l{k}{suffix}",
                        f"{cell}.{dense}.kernel",
                        np.transpose,
                        np.transpose,
                    )
                )
                rules.append(one_to_one(f"bias_{torch_part}_l{k}{suffix}", f"{cell}.{dense}.bias"))
    return tuple(rules)


# The one rule table: NNX module class -> the leaf rules of an instance (looked up along the MRO,
# so subclasses such as layers.BatchNorm inherit their base's rule).
RULES: dict[type, Callable[[Any], tuple[LeafRule, ...]]] = {
    nnx.Conv: _conv_rules,
    nnx.ConvTranspose: _conv_transpose_rules,
    nnx.Linear: _linear_rules,
    nnx.BatchNorm: _batch_norm_rules,
    BidirectionalLSTM: _lstm_rules,
}


def _rules_for(module: Any) -> tuple[LeafRule, ...] | None:
    for cls in type(module).__mro__:
        if cls in RULES:
            return RULES[cls](module)
    return None


def _join(*parts: Any) -> str:
    return ".".join(str(p) for p in parts if p != "")


def _ruled_modules(model: nnx.Module) -> list[tuple[str, tuple[LeafRule, ...]]]:
    """``(torch module path, rules)`` for every NNX module with a rule.

    A ruled module owns its subtree: modules inside it (the LSTM's ``nnx.Linear`` gates) are
    covered by its rule and skipped.
    """
    found = [(path, _rules_for(module)) for path, module in nnx.iter_modules(model)]
    ruled = {path for path, rules in found if rules is not None}
    return [
        (_join(*path), rules)
        for path, rules in found
        if rules is not None and not any(path[:i] in ruled for i in range(len(path)))
    ]


def _flat_variables(model: nnx.Module) -> dict[str, tuple[tuple[Any, ...], nnx.Variable]]:
    return {_join(*p): (p, v) for p, v in nnx.to_flat_state(nnx.state(model))}


def _shape_of(var: nnx.Variable) -> tuple[int, ...]:
    return tuple(var.get_raw_value().shape)


def load_torch_state(model: nnx.Module, state_dict: Mapping[str, Any]) -> nnx.Module:
    """A new module: ``model``'s structure (abstract from ``nnx.eval_shape`` or concrete) holding
    the tensors of ``state_dict`` (torch key -> array-like; numpy or CPU torch tensors).

    ``model`` is not modified; the result keeps ``model``'s train/eval flags. Every NNX variable
    is filled in the variable's dtype; raises :class:`ConversionError` listing every unmapped or
    missing key and every shape mismatch.
    """
    graphdef, state = nnx.split(model)
    variables = _flat_variables(model)
    filled: dict[tuple[Any, ...], nnx.Variable] = {}
    consumed: set[str] = set()
    targeted: set[str] = set()
    problems: list[str] = []
    for prefix, rules in _ruled_modules(model):
        for rule in rules:
            keys = [_join(prefix, name) for name in rule.torch]
            consumed.update(keys)
            if rule.nnx is None:
                continue
            nnx_key = _join(prefix, rule.nnx)
            targeted.add(nnx_key)
            absent = [k for k in keys if k not in state_dict]
            if absent:
                problems.append(f"missing torch key(s) {absent} (needed for NNX {nnx_key!r})")
                continue
            if nnx_key not in variables:
                problems.append(f"rule target {nnx_key!r} does not exist in the NNX model")
                continue
            path, var = variables[nnx_key]
            value = rule.to_jax(*(np.asarray(state_dict[k]) for k in keys))
            if tuple(value.shape) != _shape_of(var):
                problems.append(
                    f"shape mismatch for {keys[0] if len(keys) == 1 else keys}: torch "
                    f"{[tuple(np.shape(state_dict[k])) for k in keys]} gives {tuple(value.shape)}, "
                    f"NNX {nnx_key!r} expects {_shape_of(var)}"
                )
                continue
            # jnp.array copies: jnp.asarray may alias the caller's (e.g. torch's) CPU memory,
            # so a later in-place update of the torch model would change the JAX model.
            filled[path] = var.copy(jnp.array(value, dtype=var.get_raw_value().dtype, copy=True))
    unmapped = sorted(set(state_dict) - consumed)
    if unmapped:
        problems.append(f"torch key(s) with no NNX counterpart: {unmapped}")
    unfilled = sorted(set(variables) - targeted)
    if unfilled:
        problems.append(f"NNX variable(s) no torch key fills: {unfilled}")
    if problems:
        raise ConversionError(
            f"cannot load the torch state dict into {type(model).__name__} "
            f"({len(problems)} problem(s)):\n  - " + "\n  - ".join(problems)
        )
    return nnx.merge(graphdef, nnx.from_flat_state(filled))


def export_torch_state(model: nnx.Module) -> dict[str, np.ndarray]:
    """The torch state dict (key -> numpy array, torch layouts) of an NNX model whose paths mirror
    torch's; ``num_batches_tracked`` is 0. Raises :class:`ConversionError` if some NNX variable
    has no rule (it would silently be lost)."""
    variables = _flat_variables(model)
    out: dict[str, np.ndarray] = {}
    exported: set[str] = set()
    for prefix, rules in _ruled_modules(model):
        for rule in rules:
            value = None
            if rule.nnx is not None:
                nnx_key = _join(prefix, rule.nnx)
                value = np.asarray(variables[nnx_key][1].get_raw_value())
                exported.add(nnx_key)
            for name, arr in zip(rule.torch, rule.to_torch(value), strict=True):
                # A C-ordered copy: torch.from_numpy rejects the negative strides of flips and
                # read-only views of JAX buffers.
                out[_join(prefix, name)] = np.array(arr, order="C", copy=True)
    lost = sorted(set(variables) - exported)
    if lost:
        raise ConversionError(f"NNX variable(s) with no torch counterpart: {lost}")
    return out


def torch_to_jax(
    name: str, state_dict: Mapping[str, Any], num_classes: int, in_chans: int = 1, **kwargs: Any
) -> nnx.Module:
    """The registered JAX model ``name`` holding a torch ``state_dict``, in evaluation mode.

    Built on ``nnx.eval_shape`` (no random init is computed), then filled by
    :func:`load_torch_state`. The result is callable on an NHWC batch ``[B, H, W, in_chans]``;
    ``kwargs`` go to the factory (``dtype=jnp.bfloat16`` etc.).
    """
    abstract = nnx.eval_shape(lambda: create_model(name, num_classes, in_chans, **kwargs))
    model = load_torch_state(abstract, state_dict)
    model.eval()
    return model


def jax_to_torch(model: nnx.Module) -> dict[str, np.ndarray]:
    """The torch state dict of a JAX model from the registry (see :func:`export_torch_state`);
    load it with ``torch_model.load_state_dict({k: torch.from_numpy(v) ...})``."""
    return export_torch_state(model)
