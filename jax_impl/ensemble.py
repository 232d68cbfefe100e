"""Ensembles in JAX: members from either backend, clip probabilities summed over members.

``python -m jax_impl.ensemble --members=runs/a,runs/b [--split=train] [--fold=k]`` evaluates the
ensemble on a dataset split (by default on the fold the members held out) and prints every
member's and the ensemble's clip- and song-level accuracy; ``jax_impl.evaluate`` writes the full
report. The rules (probability sum over members, mean of clip probabilities per song) are in
:mod:`shared_data.ensemble.core`.

A member's backend is read from its run directory (:mod:`shared_data.ensemble.members`). A JAX
member is restored from its orbax checkpoint. A torch member is, with ``--route=convert`` (default),
loaded into the JAX model by ``jax_impl.convert.torch_to_jax`` and computed here, or with
``--route=native``, computed by torch itself (``torch_ref.ensemble``); both give the same
probabilities (``parity_tests/test_ensemble.py``). ``torch_ref.ensemble`` mirrors this file.

Which checkpoint: ``--checkpoint=best`` (default; the best-validation one, as the reference report
kept) or ``latest``; a run without a best-validation checkpoint falls back to its latest, with a
note.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jax_impl.convert import jax_to_torch, torch_to_jax
from jax_impl.models import create_model
from shared_data.cli import run_main
from shared_data.ensemble import evaluation as ev
from shared_data.ensemble import loaders
from shared_data.ensemble.loaders import register_member_loader
from shared_data.ensemble.members import MemberError, MemberInfo
from shared_data.training.resume_check import CheckpointError

__all__ = [
    "CHECKPOINTS",
    "JaxPredictor",
    "jax_model_from_run",
    "load_ensemble",
    "load_member",
    "main",
    "read_jax_variables",
]

BACKEND = "jax"
CHECKPOINTS = ev.CHECKPOINTS
DEFAULT_BATCH = ev.DEFAULT_BATCH


def _restore(run_dir: Path, which: str) -> tuple[int, dict[str, Any]]:
    """The newest readable ``which`` checkpoint's step and raw state (``best`` falls back to the
    latest and older ones, each skip warned about on stderr)."""
    from jax_impl.checkpoint import CHECKPOINT_DIR, Checkpoints

    if not (run_dir / CHECKPOINT_DIR).is_dir():
        raise MemberError(f"JAX run {run_dir} has no {CHECKPOINT_DIR}/ folder: it never saved one")
    checkpoints = Checkpoints(run_dir)
    try:
        if which == "best" and checkpoints.best_step() is None:
            print(f"note: {run_dir} has no best-validation checkpoint; using its latest",
                  file=sys.stderr)  # fmt: skip
        restored = checkpoints.restore_readable(which, None)
    except CheckpointError as err:
        raise MemberError(f"JAX run {run_dir}: {err}") from None
    finally:
        checkpoints.close()
    return restored.step, restored.state


def _flatten(tree: Any, prefix: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Nested dicts of arrays -> ``{"a.b.c": array}``; NNX variables' ``value`` level dropped."""
    if isinstance(tree, Mapping):
        out: dict[str, np.ndarray] = {}
        for key, value in tree.items():
            path = prefix if key == "value" and not isinstance(value, Mapping) else (*prefix, key)
            out.update(_flatten(value, tuple(str(p) for p in path)))
        return out
    return {".".join(prefix): np.asarray(tree)}


def read_jax_variables(run_dir: str | Path, checkpoint: str = "best") -> dict[str, np.ndarray]:
    """The model variables (parameters and BatchNorm statistics) of a JAX run's checkpoint.

    Restored without a target structure (the optimizer state's shape depends on the recipe and
    is not needed), then flattened.

    Returns:
        ``{NNX path "layer1.0.conv1.kernel": array}``.
    """
    run_dir = Path(run_dir)
    step, state = _restore(run_dir, checkpoint)
    missing = [k for k in ("params", "rest") if k not in state]
    if missing:
        raise MemberError(f"checkpoint step {step} of {run_dir} lacks {missing}")
    return {**_flatten(state["params"]), **_flatten(state["rest"])}


def _fill_model(model: nnx.Module, variables: Mapping[str, np.ndarray], where: str) -> nnx.Module:
    """``model`` (abstract) holding ``variables`` by NNX path; every mismatch listed at once."""
    graphdef, state = nnx.split(model)
    flat = nnx.to_flat_state(state)
    problems, filled = [], []
    seen = set()
    for path, var in flat:
        key = ".".join(str(p) for p in path)
        seen.add(key)
        if key not in variables:
            problems.append(f"missing {key}")
            continue
        value = variables[key]
        shape = tuple(var.get_raw_value().shape)
        if tuple(value.shape) != shape:
            problems.append(f"{key}: checkpoint {tuple(value.shape)} vs model {shape}")
            continue
        filled.append((path, var.copy(jnp.asarray(value, dtype=var.get_raw_value().dtype))))
    extra = sorted(set(variables) - seen)
    if extra:
        problems.append(f"unexpected {extra}")
    if problems:
        raise MemberError(f"{where} does not fit its model: " + "; ".join(problems))
    return nnx.merge(graphdef, nnx.from_flat_state(filled))


def jax_model_from_run(info: MemberInfo, checkpoint: str = "best") -> nnx.Module:
    """The NNX model of a JAX member, restored from its checkpoint, in evaluation mode (fp32)."""
    abstract = nnx.eval_shape(
        lambda: create_model(info.model, info.num_classes, in_chans=info.in_chans)
    )
    model = _fill_model(abstract, read_jax_variables(info.run_dir, checkpoint), str(info.run_dir))
    model.eval()
    return model


@functools.partial(jax.jit, static_argnums=0)
def _forward(graphdef: Any, state: Any, x: jax.Array) -> jax.Array:
    # Module level, graphdef static: members of one architecture share one compiled program.
    return nnx.merge(graphdef, state)(x).astype(jnp.float32)


class JaxPredictor:
    """A member computed by JAX: a jitted eval-mode forward over fixed-size batches.

    Batches are padded to ``batch_size`` so one compiled program serves every call.
    """

    runs_on = "jax"

    def __init__(
        self, info: MemberInfo, model: nnx.Module, how: str, batch_size: int = DEFAULT_BATCH
    ):
        self.info, self.how, self.batch_size = info, how, batch_size
        self._graphdef, self._state = nnx.split(model)

    def logits(self, mels: np.ndarray) -> np.ndarray:
        """Normalised mels float32 ``[N, H, W]`` -> logits float32 ``[N, C]`` (NHWC inside)."""
        mels = np.asarray(mels, dtype=np.float32)
        out = [np.zeros((0, self.info.num_classes), np.float32)]
        for start in range(0, mels.shape[0], self.batch_size):
            batch = mels[start : start + self.batch_size]
            n = batch.shape[0]
            # Pad to a power of two (at most batch_size): a handful of compiled shapes serve
            # every call, and a 2-clip song does not pay for a full batch.
            padded = min(self.batch_size, 1 << (n - 1).bit_length())
            batch = np.pad(batch, ((0, padded - n), (0, 0), (0, 0)))
            logits = _forward(self._graphdef, self._state, jnp.asarray(batch[..., None]))
            out.append(np.asarray(logits)[:n])
        return np.concatenate(out)


def _load_jax_member(info: MemberInfo, *, checkpoint: str, batch_size: int) -> JaxPredictor:
    return JaxPredictor(info, jax_model_from_run(info, checkpoint), "native", batch_size)


def _load_torch_member_in_jax(
    info: MemberInfo, *, checkpoint: str, batch_size: int
) -> JaxPredictor:
    from torch_ref.ensemble import read_torch_state  # conversion is this backend's job

    state_dict = read_torch_state(info.run_dir, checkpoint)
    model = torch_to_jax(
        info.model, {k: v.numpy() for k, v in state_dict.items()}, info.num_classes, info.in_chans
    )
    return JaxPredictor(info, model, "converted from torch", batch_size)


def _load_jax_member_in_torch(info: MemberInfo, *, checkpoint: str, batch_size: int) -> Any:
    """A JAX member's weights in the torch model (``jax_impl.convert.jax_to_torch``), eval mode."""
    import torch

    from torch_ref.ensemble import TorchPredictor
    from torch_ref.models import create_model as create_torch_model

    state = jax_to_torch(jax_model_from_run(info, checkpoint))
    model = create_torch_model(info.model, info.num_classes, in_chans=info.in_chans)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    return TorchPredictor(info, model.eval(), "converted from jax", batch_size)


register_member_loader(BACKEND, BACKEND, _load_jax_member)
register_member_loader("torch", BACKEND, _load_torch_member_in_jax)
register_member_loader(BACKEND, "torch", _load_jax_member_in_torch)


def load_member(info: MemberInfo, **kwargs: Any) -> ev.Predictor:
    """:func:`shared_data.ensemble.loaders.load_member` seen from JAX (``route``,
    ``checkpoint``, ``batch_size``): a torch member is converted or computed by torch."""
    return loaders.load_member(info, runs_on=BACKEND, **kwargs)


def load_ensemble(run_dirs: Sequence[str | Path], **kwargs: Any) -> list[ev.Predictor]:
    """Read, check and load every member, computed by JAX where converted."""
    return loaders.load_ensemble(run_dirs, runs_on=BACKEND, **kwargs)


def main(argv: list[str] | None = None) -> int:
    """Print the members' and the ensemble's accuracy on the chosen split and fold."""
    from shared_data.ensemble.cli import run_ensemble_cli

    return run_ensemble_cli(load_ensemble, argv, "python -m jax_impl.ensemble")


if __name__ == "__main__":
    run_main(main)
