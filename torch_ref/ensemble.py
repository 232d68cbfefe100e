"""Ensembles in PyTorch: the mirror of ``jax_impl/ensemble.py`` (same flags, same rules).

``python -m torch_ref.ensemble --members=runs/a,runs/b [--split=train] [--fold=k]``. A torch
member is loaded from its ``checkpoints/best.pt`` (or ``latest.pt``). A JAX member is, with
``--route=convert`` (default), restored in JAX and exported into the torch model, or with
``--route=native`` computed by JAX itself: both loaders are JAX's, registered by
``jax_impl.ensemble`` (:mod:`shared_data.ensemble.loaders`); this module imports no JAX code.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shared_data.cli import run_main
from shared_data.ensemble import evaluation as ev
from shared_data.ensemble import loaders
from shared_data.ensemble.loaders import register_member_loader
from shared_data.ensemble.members import MemberError, MemberInfo
from shared_data.training.resume_check import CheckpointError
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

BACKEND = "torch"
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
    if checkpoint == "best" and not checkpoints.path("best") and checkpoints.path("latest"):
        print(f"note: {run_dir} has no best-validation checkpoint; using its latest",
              file=sys.stderr)  # fmt: skip
    try:
        state = checkpoints.restore_readable(checkpoint, "cpu").state
    except CheckpointError as err:
        raise MemberError(
            f"torch run {run_dir}: {err} ({checkpoints.best_path.name} or "
            f"{checkpoints.latest_path.name} in {checkpoints.directory})"
        ) from None
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


def _load_torch_member(info: MemberInfo, *, checkpoint: str, batch_size: int) -> TorchPredictor:
    return TorchPredictor(info, torch_model_from_run(info, checkpoint), "native", batch_size)


register_member_loader("torch", BACKEND, _load_torch_member)


def load_member(info: MemberInfo, **kwargs: Any) -> ev.Predictor:
    """:func:`shared_data.ensemble.loaders.load_member` seen from torch (``route``,
    ``checkpoint``, ``batch_size``): a JAX member is converted or computed by JAX."""
    return loaders.load_member(info, runs_on=BACKEND, **kwargs)


def load_ensemble(run_dirs: Sequence[str | Path], **kwargs: Any) -> list[ev.Predictor]:
    """Read, check and load every member, computed by torch where converted."""
    return loaders.load_ensemble(run_dirs, runs_on=BACKEND, **kwargs)


def main(argv: list[str] | None = None) -> int:
    """Print the members' and the ensemble's accuracy on the chosen split and fold."""
    from shared_data.ensemble.cli import run_ensemble_cli

    return run_ensemble_cli(load_ensemble, argv, "python -m torch_ref.ensemble")


if __name__ == "__main__":
    run_main(main)
