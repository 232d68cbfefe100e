"""Ensembles in PyTorch: the mirror of ``jax_impl/ensemble.py`` (same flags, same rules).

``python -m torch_ref.ensemble --members=runs/a,runs/b [--split=train] [--fold=k]``. A torch
member is loaded from its ``checkpoints/best.pt`` (or ``latest.pt``); a JAX member is, with
``--route=convert`` (default), restored in JAX and exported into the torch model by
``jax_impl.convert.jax_to_torch``, or with ``--route=native`` computed by JAX itself.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from shared_data.cli import run_main
from shared_data.ensemble import evaluation as ev
from shared_data.ensemble.members import MemberError, MemberInfo, read_members
from torch_ref.models import create_model

__all__ = [
    "CHECKPOINTS",
    "TorchPredictor",
    "load_ensemble",
    "load_member",
    "main",
    "read_torch_state",
    "torch_model_from_run",
]

CHECKPOINTS = ev.CHECKPOINTS
DEFAULT_BATCH = ev.DEFAULT_BATCH
# DDP/compile wrappers prefix the keys; checkpoints of the training loop hold the bare model's,
# but a state dict saved from a wrapped model would carry these.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def read_torch_state(run_dir: str | Path, checkpoint: str = "best") -> dict[str, torch.Tensor]:
    """The model state dict (CPU tensors) of a torch run's best or latest checkpoint."""
    from torch_ref.checkpoint import Checkpoints

    run_dir = Path(run_dir)
    checkpoints = Checkpoints(run_dir)
    state = checkpoints.restore(checkpoint)[0] if checkpoints.path(checkpoint) else None
    if state is None:
        if checkpoint == "best" and checkpoints.path("latest"):
            print(f"note: {run_dir} has no best-validation checkpoint; using its latest",
                  file=sys.stderr)  # fmt: skip
        state = checkpoints.restore("latest")[0] if checkpoints.path("latest") else None
    if state is None:
        raise MemberError(
            f"torch run {run_dir} holds no checkpoint ({checkpoints.best_path.name} or "
            f"{checkpoints.latest_path.name} in {checkpoints.directory})"
        )
    model_state = state.get("model")
    if not isinstance(model_state, dict):
        raise MemberError(f"the checkpoint of {run_dir} has no 'model' state dict")
    out = {}
    for key, value in model_state.items():
        for prefix in _WRAPPER_PREFIXES:
            key = key.removeprefix(prefix)
        out[key] = value.detach().cpu()
    return out


def torch_model_from_run(info: MemberInfo, checkpoint: str = "best") -> torch.nn.Module:
    """The torch model of a torch member, loaded strictly from its checkpoint, in eval mode."""
    model = create_model(info.model, info.num_classes, in_chans=info.in_chans)
    try:
        model.load_state_dict(read_torch_state(info.run_dir, checkpoint))
    except RuntimeError as err:
        raise MemberError(f"{info.run_dir} does not fit model {info.model!r}: {err}") from err
    return model.eval()


def torch_model_from_jax_run(info: MemberInfo, checkpoint: str = "best") -> torch.nn.Module:
    """A JAX member's weights in the torch model (``jax_impl.convert.jax_to_torch``), eval mode."""
    from jax_impl.convert import jax_to_torch
    from jax_impl.ensemble import jax_model_from_run

    state = jax_to_torch(jax_model_from_run(info, checkpoint))
    model = create_model(info.model, info.num_classes, in_chans=info.in_chans)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    return model.eval()


class TorchPredictor:
    """A member computed by torch (CPU, fp32, ``inference_mode``), in batches."""

    runs_on = "torch"

    def __init__(
        self, info: MemberInfo, model: torch.nn.Module, how: str, batch_size: int = DEFAULT_BATCH
    ):
        self.info, self.how, self.batch_size = info, how, batch_size
        self.model = model.eval()

    def logits(self, mels: np.ndarray) -> np.ndarray:
        """Normalised mels float32 ``[N, H, W]`` -> logits float32 ``[N, C]`` (NCHW inside)."""
        mels = np.asarray(mels, dtype=np.float32)
        out = [np.zeros((0, self.info.num_classes), np.float32)]
        with torch.inference_mode():
            for start in range(0, mels.shape[0], self.batch_size):
                x = torch.from_numpy(np.ascontiguousarray(mels[start : start + self.batch_size]))
                out.append(self.model(x[:, None]).float().numpy())
        return np.concatenate(out)


def load_member(
    info: MemberInfo,
    *,
    route: str = "convert",
    checkpoint: str = "best",
    batch_size: int = DEFAULT_BATCH,
) -> ev.Predictor:
    """A :class:`~shared_data.ensemble.evaluation.Predictor` for one member in this backend.

    A JAX member is converted (``route="convert"``) or left to JAX (``"native"``).
    """
    if route not in ev.ROUTES:
        raise MemberError(f"unknown --route={route!r}; choose one of {'|'.join(ev.ROUTES)}")
    if checkpoint not in CHECKPOINTS:
        raise MemberError(f"unknown --checkpoint={checkpoint!r}; choose {'|'.join(CHECKPOINTS)}")
    if info.backend == "torch":
        return TorchPredictor(info, torch_model_from_run(info, checkpoint), "native", batch_size)
    if route == "native":
        from jax_impl import ensemble as jax_ensemble  # the other backend, only when needed

        return jax_ensemble.load_member(info, checkpoint=checkpoint, batch_size=batch_size)
    model = torch_model_from_jax_run(info, checkpoint)
    return TorchPredictor(info, model, "converted from jax", batch_size)


def load_ensemble(
    run_dirs: Sequence[str | Path],
    *,
    route: str = "convert",
    checkpoint: str = "best",
    batch_size: int = DEFAULT_BATCH,
) -> list[ev.Predictor]:
    """Read, check (:func:`shared_data.ensemble.members.read_members`) and load every member."""
    members = read_members(run_dirs)
    return [
        load_member(m, route=route, checkpoint=checkpoint, batch_size=batch_size) for m in members
    ]


def main(argv: list[str] | None = None) -> int:
    """Print the members' and the ensemble's accuracy on the chosen split and fold."""
    from shared_data.ensemble.cli import run_ensemble_cli

    return run_ensemble_cli(load_ensemble, argv, "python -m torch_ref.ensemble")


if __name__ == "__main__":
    run_main(main)
