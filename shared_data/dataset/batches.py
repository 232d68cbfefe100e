"""Whole batches read from the records as numpy arrays: the input pipeline both backends share.

API::

    norm = Normalizer(mean, std)                        # the dataset's mel statistics
    batch = read_batch(source, rows, norm, channel_axis=-1)   # {"mel", "label", "index"}
    plan = EpochPlan(train_indices, seed, global_batch, process_index=p, process_count=P)
    plan.rows(epoch, step)                              # this process's records of one step
    run = TrainBatches(source, plan, norm, first=(epoch, step), end_epoch=E)   # run[k]: batch k
    val = EvalBatches(source, val_indices, global_batch, norm)                 # + "mask"

A batch is read, normalised and laid out in one call (:func:`read_batch`), so a loader's worker
process hands over finished arrays, and a loader's unit of work is a batch, not a clip. The
sequences are picklable (their source opens itself in each process: :mod:`.records`), which is
what grain's and torch's worker processes need. The order of every step is that of
:mod:`shared_data.dataset.splits`: a pure function of ``(seed, epoch, step)``, sharded by process
(rows ``[p*b, (p+1)*b)`` of each global batch, ``b = global_batch / P``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from shared_data.dataset import splits
from shared_data.errors import DataError

__all__ = ["EpochPlan", "EvalBatches", "Normalizer", "TrainBatches", "read_batch"]

Record = dict[str, Any]


@dataclass(frozen=True)
class Normalizer:
    """``(mel - mean) * (1 / std)`` in float32, so 0.0 is the dataset's mean."""

    mean: float
    std: float

    def apply(self, mels: np.ndarray) -> np.ndarray:
        """Normalised float32 copy of ``mels`` (any shape)."""
        return (np.asarray(mels, np.float32) - np.float32(self.mean)) * np.float32(1.0 / self.std)

    def __call__(self, record: Record) -> dict[str, np.ndarray]:
        """One record as JAX reads it: ``mel`` float32 ``[H, W, 1]``, ``label`` int32."""
        return {"mel": self.apply(record["mel"])[..., None], "label": np.int32(record["label"])}


def _records(source: Sequence[Record], rows: np.ndarray) -> list[Record]:
    getitems = getattr(source, "__getitems__", None)
    return list(getitems(rows)) if getitems else [source[int(r)] for r in rows]


def read_batch(
    source: Sequence[Record], rows: np.ndarray, norm: Normalizer, *, channel_axis: int
) -> dict[str, np.ndarray]:
    """The records ``source[rows]`` as one normalised batch.

    Returns:
        ``mel`` float32 ``[b, H, W, 1]`` (``channel_axis=-1``, JAX's NHWC) or ``[b, 1, H, W]``
        (``channel_axis=1``, torch's NCHW); ``label`` int32 ``[b]``; ``index`` int64 ``[b]``
        (``rows``).
    """
    rows = np.asarray(rows, np.int64)
    records = _records(source, rows)
    mels = np.stack([r["mel"] for r in records]) if records else np.zeros((0, 0, 0), np.float32)
    return {
        "mel": np.expand_dims(norm.apply(mels), channel_axis),
        "label": np.asarray([int(r["label"]) for r in records], np.int32),
        "index": rows,
    }


class EpochPlan:
    """Which records every global step reads on this process (picklable, pure).

    Args:
        indices: int64 record indices of the training set.
        seed: the run's seed; epoch ``e`` reads ``indices`` in the order
            :func:`splits.epoch_order` draws from ``(seed, e)``. ``None``: every epoch reads
            ``indices`` in the order given.
        global_batch: clips per step, over all processes; the tail that does not fill a global
            batch is dropped.
    """

    def __init__(
        self,
        indices: np.ndarray,
        seed: int | None,
        global_batch: int,
        *,
        process_index: int = 0,
        process_count: int = 1,
    ):
        if global_batch % process_count:
            raise DataError(
                f"--batch_size={global_batch} must be divisible by the {process_count} processes"
            )
        self.indices = np.asarray(indices, np.int64)
        self.seed, self.global_batch = seed, global_batch
        self.process_index, self.process_count = process_index, process_count
        self.steps_per_epoch = splits.steps_per_epoch(len(self.indices), global_batch)
        self._order: tuple[int, np.ndarray] | None = None  # the last epoch's order, cached

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_order": None}

    def order(self, epoch: int) -> np.ndarray:
        """The record indices of epoch ``epoch`` in reading order."""
        if self.seed is None:
            return self.indices
        if self._order is None or self._order[0] != epoch:
            perm = splits.epoch_order(len(self.indices), self.seed, epoch)
            self._order = (epoch, self.indices[perm])
        return self._order[1]

    def rows(self, epoch: int, step: int) -> np.ndarray:
        """This process's record indices of global step ``step`` of epoch ``epoch``."""
        return splits.batch_indices(
            self.order(epoch), step, self.global_batch,
            rank=self.process_index, world=self.process_count,
        )  # fmt: skip


class TrainBatches(Sequence):
    """This process's training batches from step ``first = (epoch, step)`` to the end of epoch
    ``end_epoch - 1``, as one random-access sequence: item ``k`` is the ``k``-th step from
    ``first`` (:func:`read_batch` output). One sequence spans the epochs so that a loader keeps
    its worker processes for the whole run."""

    def __init__(
        self,
        source: Sequence[Record],
        plan: EpochPlan,
        norm: Normalizer,
        *,
        first: tuple[int, int] = (0, 0),
        end_epoch: int = 1,
        channel_axis: int = -1,
    ):
        self.source, self.plan, self.norm, self.channel_axis = source, plan, norm, channel_axis
        spe = plan.steps_per_epoch
        self.first_flat = first[0] * spe + first[1]
        self._len = max(0, end_epoch * spe - self.first_flat)

    def __len__(self) -> int:
        return self._len

    def position(self, k: int) -> tuple[int, int]:
        """``(epoch, step)`` of item ``k``."""
        return divmod(self.first_flat + k, self.plan.steps_per_epoch)

    def __getitem__(self, k: int) -> dict[str, np.ndarray]:  # type: ignore[override]
        if not 0 <= k < self._len:
            raise IndexError(f"batch {k} out of range for {self._len} batches")
        rows = self.plan.rows(*self.position(k))
        return read_batch(self.source, rows, self.norm, channel_axis=self.channel_axis)


class EvalBatches(Sequence):
    """Every clip of ``indices`` once, in order, padded to whole global batches; this process's
    rows of each. Items: :func:`read_batch` output plus ``mask`` float32 ``[b]``, 0 on the
    padding rows (copies of the first clip)."""

    def __init__(
        self,
        source: Sequence[Record],
        indices: np.ndarray,
        global_batch: int,
        norm: Normalizer,
        *,
        process_index: int = 0,
        process_count: int = 1,
        channel_axis: int = -1,
    ):
        if global_batch % process_count:
            raise DataError(
                f"--batch_size={global_batch} must be divisible by the {process_count} processes"
            )
        n = len(indices)
        steps = -(-n // global_batch)
        padded = np.full(steps * global_batch, int(indices[0]) if n else 0, np.int64)
        padded[:n] = indices
        mask = np.zeros(steps * global_batch, np.float32)
        mask[:n] = 1.0
        self.source, self.norm, self.channel_axis = source, norm, channel_axis
        self._rows = [
            splits.batch_indices(padded, s, global_batch, rank=process_index, world=process_count)
            for s in range(steps)
        ]
        self._masks = [
            splits.batch_indices(mask, s, global_batch, rank=process_index, world=process_count)
            for s in range(steps)
        ]

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, k: int) -> dict[str, np.ndarray]:  # type: ignore[override]
        batch = read_batch(self.source, self._rows[k], self.norm, channel_axis=self.channel_axis)
        return {**batch, "mask": self._masks[k]}
