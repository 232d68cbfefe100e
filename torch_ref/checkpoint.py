"""Checkpoints of a torch training run: the latest one (to resume) and the best-validation one.

API::

    ckpts = Checkpoints(workdir)              # files under <workdir>/checkpoints/
    ckpts.save_latest(state); ckpts.save_best(state)
    state = ckpts.load_latest()               # dict or None;  ckpts.load_best()
    ckpts.latest_path, ckpts.best_path

A state is a dict (``torch.save``-able with ``weights_only`` loading): ``model``, ``optimizer``,
``scheduler`` (state dicts), ``epoch`` and ``step`` (where the run continues: the next step of
that epoch), ``global_step``, ``best_val_acc``, ``best_epoch``, ``epoch_accum`` (running sums of
the interrupted epoch's training metrics), ``rng`` (torch CPU and CUDA generator states) and
``recipe`` (the resolved recipe dict). Each file is written to a temporary name in the same
directory, fsynced, then ``os.replace``d over the old one, so a crash or a failed write (disk
full) leaves the previous checkpoint whole.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from shared_data.training.resume_check import CheckpointError

CHECKPOINT_DIR = "checkpoints"
LATEST_FILE = "latest.pt"
BEST_FILE = "best.pt"


def save_atomic(state: dict[str, Any], path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, fsync, rename over ``path``.

    Raises:
        CheckpointError: the write failed; ``path`` still holds the previous checkpoint.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with tmp.open("wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        previous = f"the previous {path.name} is intact" if path.exists() else "none existed"
        raise CheckpointError(f"could not write checkpoint {path}: {err}; {previous}") from err


def load(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_atomic` (tensors and plain Python values only)."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (OSError, RuntimeError, EOFError) as err:
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({err}); remove it or use a fresh --workdir"
        ) from err


class Checkpoints:
    """The latest and best-validation checkpoints of one run directory."""

    def __init__(self, workdir: str | os.PathLike[str]):
        self.directory = Path(workdir) / CHECKPOINT_DIR
        self.latest_path = self.directory / LATEST_FILE
        self.best_path = self.directory / BEST_FILE

    def has_latest(self) -> bool:
        return self.latest_path.exists()

    def save_latest(self, state: dict[str, Any]) -> None:
        save_atomic(state, self.latest_path)

    def save_best(self, state: dict[str, Any]) -> None:
        save_atomic(state, self.best_path)

    def load_latest(self, map_location: str | torch.device = "cpu") -> dict[str, Any] | None:
        return load(self.latest_path, map_location) if self.latest_path.exists() else None

    def load_best(self, map_location: str | torch.device = "cpu") -> dict[str, Any] | None:
        return load(self.best_path, map_location) if self.best_path.exists() else None


def rng_state() -> dict[str, Any]:
    """The torch CPU (and CUDA, when present) generator states."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`rng_state` output (CUDA states only where the devices are present)."""
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"][: torch.cuda.device_count()])
