"""Whether a checkpoint may be resumed by the run that found it (both backends).

A run resumes from its work directory's latest checkpoint only when the recipe it was written by
matches the current one in everything that changes what is computed; where things are written
and how often things are logged may change (:data:`RESUMABLE_CHANGES`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shared_data.errors import UserError

# Recipe fields that may change between an interrupted run and its resume without changing what
# is computed (where things are written, how often things are logged), plus micro_batch_size: a
# memory setting, which the automatic fit may set differently on another device. Gradient
# accumulation keeps the global batch, the schedule, the data order and the draws, and the
# checkpoint holds no trace of it; only the BatchNorm statistics and Mixup partners of the steps
# after the resume become per micro-batch of the new size (bit-identical resumes need the same).
RESUMABLE_CHANGES = frozenset(
    {"workdir", "data_dir", "resume", "log_every", "eval_every", "checkpoint_every", "num_workers",
     "micro_batch_size"}
)  # fmt: skip


class CheckpointError(UserError):
    """A checkpoint could not be written or does not fit the run that tries to resume from it."""


def check_same_run(stored: Mapping[str, Any], current: Mapping[str, Any], path: Path) -> None:
    """Refuse to resume a checkpoint whose recipe differs in anything that changes the run.

    Raises:
        CheckpointError: naming every differing flag, old and new value.
    """
    keys = (set(stored) | set(current)) - RESUMABLE_CHANGES
    diffs = sorted(k for k in keys if stored.get(k) != current.get(k))
    if diffs:
        detail = ", ".join(f"--{k}: {stored.get(k)!r} -> {current.get(k)!r}" for k in diffs)
        raise CheckpointError(
            f"{path} was written by a different recipe ({detail}); pass the same flags to "
            "resume, or use a fresh --workdir (or --resume=false with an empty one)"
        )
