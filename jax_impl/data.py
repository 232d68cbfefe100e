"""Input pipeline: grain over the TFDS array_record source, NHWC batches, sharded onto the mesh.

API::

    data = load_training_data(recipe, dataset)   # shared_data.training.split.TrainingData
    norm = Normalizer(data.mel_mean, data.mel_std)
    order = data.epoch_order(epoch)              # record indices of epoch e, in training order
    it = train_batches(data.source, order, global_batch=64, start_step=3, norm=norm)
    it = eval_batches(data.source, data.val_indices, global_batch=64, norm=norm)  # + "mask"
    for batch in to_device(it, batch_sharding): ...   # global jax.Arrays on the mesh, prefetched

The fold split (:mod:`shared_data.training.split`) and the data order
(:mod:`shared_data.dataset.splits`) are the torch backend's too: the order of an epoch is a pure
function of ``(seed, epoch)``, so a resumed run, every process of a multi-host run and
``torch_ref`` read the same clips in the same order, and a run resumed at step ``s`` of an epoch
skips exactly the first ``s`` global batches.

Multi-host: every process reads only its rows of each global batch (rows ``[p*b, (p+1)*b)`` with
``b = global_batch / process_count``, :func:`shared_data.dataset.splits.batch_indices`), and
:func:`to_device` assembles the global ``jax.Array`` with
``jax.make_array_from_process_local_data``; the mesh puts process ``p``'s devices on those rows
because ``jax.devices()`` lists devices process by process.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import grain
import jax
import numpy as np

from shared_data.dataset import splits
from shared_data.errors import DataError

Record = dict[str, Any]


@dataclass(frozen=True)
class Normalizer:
    """``(mel - mean) * (1 / std)`` in float32 (as ``torch_ref.data``); adds the channel axis."""

    mean: float
    std: float

    def __call__(self, record: Record) -> dict[str, np.ndarray]:
        mel = (np.asarray(record["mel"], np.float32) - np.float32(self.mean)) * np.float32(
            1.0 / self.std
        )
        return {"mel": mel[..., None], "label": np.int32(record["label"])}


class _Rows:
    """Random-access view of ``source`` at ``rows`` (what ``grain.MapDataset.source`` reads)."""

    def __init__(self, source: Sequence[Record], rows: np.ndarray):
        self._source = source
        self._rows = np.asarray(rows, dtype=np.int64)

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, i: int) -> Record:
        return self._source[int(self._rows[i])]


def _process_rows(
    order: np.ndarray, steps: range, global_batch: int, process_index: int, process_count: int
) -> np.ndarray:
    """This process's shard of global batches ``steps`` of ``order``, concatenated."""
    parts = [
        splits.batch_indices(order, s, global_batch, rank=process_index, world=process_count)
        for s in steps
    ]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def _read_options(num_threads: int) -> grain.ReadOptions:
    return grain.ReadOptions(num_threads=max(1, num_threads), prefetch_buffer_size=64)


def train_batches(
    source: Sequence[Record],
    order: np.ndarray,
    *,
    global_batch: int,
    norm: Normalizer,
    start_step: int = 0,
    process_index: int = 0,
    process_count: int = 1,
    num_threads: int = 4,
) -> grain.IterDataset:
    """This process's training batches of one epoch, from global step ``start_step`` on.

    Args:
        order: the epoch's record indices (``TrainingData.epoch_order``); the tail that does
            not fill a global batch is dropped.
    Yields:
        ``{"mel": float32 [b, 128, 128, 1], "label": int32 [b]}`` with ``b = global_batch / P``.
    """
    steps = range(start_step, splits.steps_per_epoch(len(order), global_batch))
    rows = _process_rows(order, steps, global_batch, process_index, process_count)
    ds = grain.MapDataset.source(_Rows(source, rows)).map(norm)
    ds = ds.batch(global_batch // process_count, drop_remainder=True)
    return ds.to_iter_dataset(_read_options(num_threads))


def eval_batches(
    source: Sequence[Record],
    indices: np.ndarray,
    *,
    global_batch: int,
    norm: Normalizer,
    process_index: int = 0,
    process_count: int = 1,
    num_threads: int = 4,
) -> grain.IterDataset:
    """Every clip of ``indices`` once, in order, padded to whole global batches.

    Yields:
        ``{"mel": [b, 128, 128, 1], "label": int32 [b], "mask": float32 [b]}``; ``mask`` is 0 on
        the padding rows (copies of the first clip) and 1 elsewhere.
    """
    if global_batch % process_count:
        raise DataError(
            f"--batch_size={global_batch} must be divisible by the {process_count} processes"
        )
    n = len(indices)
    steps = range(-(-n // global_batch))
    padded = np.full(len(steps) * global_batch, int(indices[0]), np.int64)
    padded[:n] = indices
    mask = np.zeros(len(steps) * global_batch, np.float32)
    mask[:n] = 1.0
    rows = _process_rows(padded, steps, global_batch, process_index, process_count)
    masks = _process_rows(mask, steps, global_batch, process_index, process_count)

    def with_mask(i: int, record: Record) -> dict[str, np.ndarray]:
        return {**norm(record), "mask": masks[i]}

    ds = grain.MapDataset.source(_Rows(source, rows)).map_with_index(with_mask)
    ds = ds.batch(global_batch // process_count, drop_remainder=True)
    return ds.to_iter_dataset(_read_options(num_threads))


def to_device(
    batches: grain.IterDataset,
    sharding: jax.sharding.NamedSharding,
    *,
    prefetch: int = 2,
) -> Iterator[dict[str, jax.Array]]:
    """Global ``jax.Array`` batches sharded on their leading axis, ``prefetch`` ahead on device.

    A grain thread transfers the next batches while the current step runs, so the host never
    blocks the device on input.
    """

    def put(batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        return {
            k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
            for k, v in batch.items()
        }

    ds = grain.experimental.ThreadPrefetchIterDataset(
        batches.map(put), prefetch_buffer_size=prefetch
    )
    return iter(ds)
