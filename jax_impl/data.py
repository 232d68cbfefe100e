"""Input pipeline: grain over the TFDS array_record source, NHWC batches, sharded onto the mesh.

API::

    data = load_training_data(recipe, dataset)   # TrainingData: fold split, statistics, songs
    order = data.epoch_order(epoch)              # record indices of epoch e, in training order
    it = train_batches(data.source, order, global_batch=64, start_step=3, norm=data.norm)
    it = eval_batches(data.source, data.val_indices, global_batch=64, norm=data.norm)  # + "mask"
    for batch in to_device(it, batch_sharding): ...   # global jax.Arrays on the mesh, prefetched

The fold split and the data order come from :mod:`shared_data.dataset.splits`, the functions the
torch backend uses too: the order of an epoch is a pure function of ``(seed, epoch)``, so a resumed
run, every process of a multi-host run and ``torch_ref`` read the same clips in the same order, and
a run resumed at step ``s`` of an epoch skips exactly the first ``s`` global batches.

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


@dataclass(frozen=True)
class TrainingData:
    """An opened dataset split by fold: what the training loop reads.

    Attributes:
        source: the random-access records of the ``train`` split.
        train_indices, val_indices: int64 record indices (folds != k, fold k).
        val_labels: int64 ``[n_val]``; val_songs: str ``[n_val]`` (song of each validation clip).
    """

    source: Sequence[Record]
    train_indices: np.ndarray
    val_indices: np.ndarray
    val_labels: np.ndarray
    val_songs: np.ndarray
    label_names: tuple[str, ...]
    norm: Normalizer
    seed: int
    batch_size: int

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    @property
    def steps_per_epoch(self) -> int:
        """Full global batches per epoch (raises ``DataError`` if the batch exceeds the data)."""
        return splits.steps_per_epoch(len(self.train_indices), self.batch_size)

    def epoch_order(self, epoch: int) -> np.ndarray:
        """Record indices of epoch ``epoch`` in training order (:func:`splits.epoch_order`)."""
        return self.train_indices[splits.epoch_order(len(self.train_indices), self.seed, epoch)]


def load_training_data(recipe: Any, dataset: Any) -> TrainingData:
    """Split ``dataset`` (an ``OpenedDataset``) by ``recipe.fold`` of ``recipe.folds``.

    Raises:
        DataError: the dataset's fold count differs from ``--folds``, a side of the split is empty,
            ``--batch_size`` exceeds the training clips, or the metadata lacks the statistics.
    """
    source = dataset.source("train")
    built_folds = dataset.metadata.get("folds")
    if built_folds is not None and int(built_folds) != recipe.folds:
        raise DataError(
            f"the dataset was built with {built_folds} folds but --folds={recipe.folds}; "
            f"pass --folds={built_folds}"
        )
    folds, labels = splits.read_fold_labels(source)
    train, val = splits.fold_split(folds, recipe.fold, recipe.folds)
    try:
        norm = Normalizer(float(dataset.metadata["mel_mean"]), float(dataset.metadata["mel_std"]))
    except KeyError as err:
        raise DataError(
            f"the dataset metadata lacks {err}; rebuild it with python -m shared_data.build"
        ) from None
    data = TrainingData(
        source=source,
        train_indices=train,
        val_indices=val,
        val_labels=labels[val],
        val_songs=splits.song_ids(source, val),
        label_names=tuple(dataset.label_names),
        norm=norm,
        seed=recipe.seed,
        batch_size=recipe.batch_size,
    )
    _ = data.steps_per_epoch  # a batch larger than the training set fails here, naming the flag
    return data


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
        order: the epoch's record indices (:meth:`TrainingData.epoch_order`); the tail that does
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
