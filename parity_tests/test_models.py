"""Model parity: every registered model, torch_ref (the reference) vs jax_impl, converted weights.

Per model, one torch model is built (seeded), its BN statistics and affine parameters are
randomised (fresh statistics, mean 0 and variance 1, would hide a wrong eval-mode BN), the state
dict is converted with ``jax_impl.convert.torch_to_jax``, and both backends run on the same
batch of 2 (32x32; 128 mel bins x 32 frames for the LSTM) on the CPU:

* eval mode, fp32: logits, ``atol=1e-4, rtol=1e-4`` (``docs/design.md``, parity);
* train mode, fp32, one forward: the logits and every BN running statistic after it;
* train mode, a cross-entropy backward in float64 in both backends (``jax.enable_x64``,
  ``torch.double``): every parameter's gradient, compared in torch's layout
  (``jax_impl.convert.export_torch_state`` applied to the gradient state).

Train-mode comparisons use ``rtol=1e-4``; a pure relative tolerance fails on entries that are
near zero by cancellation, so each tensor also gets ``atol = 1e-4 * max|ref|`` (an error of 1e-4
relative to the tensor's own scale).

Why float64 gradients: at batch 2 the train-mode gradients of the deep models are not a smooth
function of fp32 round-off. Perturbing the input of torch's own ResNeXt-101 by 1e-7 (relative)
changes its gradient of ``layer4.2.conv2.weight`` by 12%: ReLU masks flip where pre-activations
sit within round-off of zero, and train-mode BN over 32 values per channel amplifies the rest.
torch's fp32 gradients differ from its fp64 ones by up to 17% (ResNeXt-50) and 25%
(DenseNet-201), so an fp32 comparison cannot tell a bug from round-off. In float64 the two
backends agree to about 1e-12, and the 1e-4 tolerance is a real test.

Models with random draws (shake-shake) take injected draws in both backends: the JAX model's
``__call__`` has a ``draws`` parameter, its module defines
``parity_draws(model, batch_size, seed) -> dict[str, np.ndarray]``, and the same dict goes to
``jax_model(x, draws=...)`` and ``torch_model(x, draws=...)`` (see jax_impl/models/layers.py).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import inspect
import sys
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
import torch.nn.functional as F
from flax import nnx

import torch_ref.models as torch_models
from jax_impl.convert import export_torch_state, torch_to_jax
from shared_data.architecture.names import MODEL_NAMES
from tests.support.models import FAST_CPU_COMPILE, FAST_CPU_COMPILE_FLOAT64, small_batch

NUM_CLASSES = 10
BATCH = 2
SEED = 0
EVAL_TOL = dict(atol=1e-4, rtol=1e-4)
TRAIN_RTOL = 1e-4
TRAIN_ATOL_SCALE = 1e-4


@dataclasses.dataclass
class Outputs:
    """What one backend produced from the same weights and batch, in torch's layouts."""

    eval_logits: np.ndarray  # [B, C] fp32
    train_logits: np.ndarray  # [B, C] fp32
    state: dict[str, np.ndarray]  # fp32 state dict after the train-mode forward
    grads: dict[str, np.ndarray]  # float64: trainable parameter name -> gradient of the loss


def _randomise_batch_norms(model: torch.nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(n, generator=gen))
                m.weight.copy_(1.0 + 0.1 * torch.randn(n, generator=gen))
                m.bias.copy_(0.1 * torch.randn(n, generator=gen))


def _parity_draws(jax_model: nnx.Module) -> dict[str, np.ndarray] | None:
    """Injected draws for models whose JAX call takes ``draws``; None for the others."""
    if "draws" not in inspect.signature(type(jax_model).__call__).parameters:
        return None
    family = sys.modules[type(jax_model).__module__]
    return family.parity_draws(jax_model, batch_size=BATCH, seed=SEED)


def _draws_kw(draws: Mapping[str, np.ndarray] | None, convert: Callable[[np.ndarray], Any]) -> dict:
    return {} if draws is None else {"draws": {k: convert(v) for k, v in draws.items()}}


def _torch_forward(
    model: torch.nn.Module, x: np.ndarray, draws: Mapping[str, np.ndarray] | None
) -> Outputs:
    """Eval logits, then one train-mode forward: its logits and the state dict after it."""
    xt = torch.from_numpy(x)
    with torch.no_grad():
        eval_logits = model.eval()(xt).numpy()
        train_logits = model.train()(xt, **_draws_kw(draws, torch.from_numpy)).numpy()
    state = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    return Outputs(eval_logits, train_logits, state, grads={})


def _torch_gradients(
    model: torch.nn.Module, x: np.ndarray, y: np.ndarray, draws: Mapping[str, np.ndarray] | None
) -> dict[str, np.ndarray]:
    """Train-mode cross-entropy gradients of every parameter, in ``x``'s (and the model's) dtype."""
    model.train().zero_grad()
    as_x = lambda v: torch.from_numpy(v.astype(x.dtype))  # noqa: E731
    logits = model(torch.from_numpy(x), **_draws_kw(draws, as_x))
    F.cross_entropy(logits, torch.from_numpy(y)).backward()
    return {k: p.grad.numpy().copy() for k, p in model.named_parameters()}


def _nhwc(x: np.ndarray) -> jax.Array:
    return jnp.asarray(x.transpose(0, 2, 3, 1))


def _jax_forward(
    model: nnx.Module, x: np.ndarray, draws: Mapping[str, np.ndarray] | None
) -> Outputs:
    """:func:`_torch_forward` in JAX, one jitted function; the state in torch's layout."""
    xj, kw = _nhwc(x), _draws_kw(draws, jnp.asarray)
    model.train()
    train_def, state = nnx.split(model)
    eval_view = nnx.view(
        model, use_running_average=True, deterministic=True, raise_if_not_found=False
    )
    eval_def = nnx.graphdef(eval_view)

    @functools.partial(jax.jit, compiler_options=FAST_CPU_COMPILE)
    def forward(state: nnx.State) -> tuple[jax.Array, jax.Array, nnx.State]:
        eval_logits = nnx.merge(eval_def, state, copy=True)(xj)
        m = nnx.merge(train_def, state, copy=True)
        train_logits = m(xj, **kw)
        return eval_logits, train_logits, nnx.state(m)

    eval_logits, train_logits, new_state = forward(state)
    state_dict = export_torch_state(nnx.merge(train_def, new_state))
    return Outputs(np.asarray(eval_logits), np.asarray(train_logits), state_dict, grads={})


def _jax_gradients(
    model: nnx.Module, x: np.ndarray, y: np.ndarray, draws: Mapping[str, np.ndarray] | None
) -> dict[str, np.ndarray]:
    """:func:`_torch_gradients` in JAX, jitted; parameter names and layouts as in torch."""
    xj, yj = _nhwc(x), jnp.asarray(y)
    kw = _draws_kw(draws, lambda v: jnp.asarray(v, x.dtype))
    model.train()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    @functools.partial(jax.jit, compiler_options=FAST_CPU_COMPILE_FLOAT64)
    def gradients(params: nnx.State, rest: nnx.State) -> nnx.State:
        def loss_fn(params: nnx.State) -> jax.Array:
            logits = nnx.merge(graphdef, params, rest, copy=True)(xj, **kw)
            return optax.softmax_cross_entropy_with_integer_labels(logits, yj).mean()

        return jax.grad(loss_fn)(params)

    # Exported through the model's rules, so the gradient state yields torch names and layouts;
    # ``rest`` (BN statistics) fills the buffers, which are dropped: they have no gradient.
    exported = export_torch_state(nnx.merge(graphdef, gradients(params, rest), rest))
    parameter_keys = {".".join(map(str, p)) for p, _ in nnx.to_flat_state(params)}
    return {k: v for k, v in exported.items() if _from_parameter(k, parameter_keys)}


def _from_parameter(torch_key: str, nnx_parameter_paths: set[str]) -> bool:
    """Whether the torch key comes from an NNX parameter (not a BN statistic or a counter)."""
    module = torch_key.rsplit(".", 1)[0]
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    return not torch_key.endswith(buffers) and any(
        p.startswith(module + ".") for p in nnx_parameter_paths
    )


def _float64_state(state_dict: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v.astype(np.float64) if v.dtype == np.float32 else v for k, v in state_dict.items()}


@pytest.fixture(scope="module", params=MODEL_NAMES)
def outputs(request: pytest.FixtureRequest) -> tuple[Outputs, Outputs]:
    """``(torch, jax)`` outputs of model ``request.param`` from the same weights and batch."""
    name = request.param
    torch.manual_seed(SEED)
    torch_model = torch_models.create_model(name, NUM_CLASSES)
    _randomise_batch_norms(torch_model, SEED)
    torch_model64 = copy.deepcopy(torch_model).double()
    state_dict = {k: v.detach().numpy().copy() for k, v in torch_model.state_dict().items()}
    x = small_batch(name, BATCH, seed=SEED)
    y = np.arange(BATCH, dtype=np.int64) % NUM_CLASSES

    jax_model = torch_to_jax(name, state_dict, NUM_CLASSES)
    draws = _parity_draws(jax_model)
    ref = _torch_forward(torch_model, x, draws)
    got = _jax_forward(jax_model, x, draws)
    del torch_model, jax_model

    x64 = x.astype(np.float64)
    ref.grads = _torch_gradients(torch_model64, x64, y, draws)
    with jax.enable_x64(True):
        f64 = dict(dtype=jnp.float64, param_dtype=jnp.float64)
        jax_model64 = torch_to_jax(name, _float64_state(state_dict), NUM_CLASSES, **f64)
        got.grads = _jax_gradients(jax_model64, x64, y, draws)
    return ref, got


def _assert_close_scaled(actual: np.ndarray, expected: np.ndarray, what: str) -> None:
    atol = TRAIN_ATOL_SCALE * float(np.abs(expected).max(initial=0.0))
    np.testing.assert_allclose(actual, expected, rtol=TRAIN_RTOL, atol=atol, err_msg=what)


def test_eval_logits(outputs: tuple[Outputs, Outputs]) -> None:
    ref, got = outputs
    assert got.eval_logits.shape == ref.eval_logits.shape == (BATCH, NUM_CLASSES)
    np.testing.assert_allclose(got.eval_logits, ref.eval_logits, **EVAL_TOL)


def test_train_logits(outputs: tuple[Outputs, Outputs]) -> None:
    ref, got = outputs
    # Train mode must really differ from eval mode, or this test would repeat the one above;
    # the LSTM has no BatchNorm or dropout, so its two modes coincide by construction.
    if any(k.endswith("running_mean") for k in ref.state):
        assert not np.allclose(ref.train_logits, ref.eval_logits, rtol=1e-3, atol=1e-3)
    _assert_close_scaled(got.train_logits, ref.train_logits, "train-mode logits")


def test_running_statistics(outputs: tuple[Outputs, Outputs]) -> None:
    ref, got = outputs
    keys = [k for k in ref.state if k.endswith(("running_mean", "running_var"))]
    if not keys:
        pytest.skip("the model has no BatchNorm")
    for k in keys:
        _assert_close_scaled(got.state[k], ref.state[k], k)


def test_gradients(outputs: tuple[Outputs, Outputs]) -> None:
    ref, got = outputs
    assert ref.grads.keys() == got.grads.keys()
    for k, g in ref.grads.items():
        assert g.dtype == got.grads[k].dtype == np.float64, k
        assert np.abs(g).max() > 0, f"torch's gradient of {k} is zero: the test point is degenerate"
        _assert_close_scaled(got.grads[k], g, f"gradient of {k}")
