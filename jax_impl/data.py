"""Input pipeline: grain over the records, whole batches read by worker processes, NHWC, sharded
onto the mesh.

API::

    data = load_training_data(recipe, dataset)   # shared_data.training.split.TrainingData
    norm = Normalizer(data.mel_mean, data.mel_std)
    feed = TrainFeed(data, recipe, norm, batch_sharding, first=(epoch, step))
    for batch in feed.epoch(epoch, step): ...    # global jax.Arrays, one worker pool per run
    feed.close()
    it = train_batches(data.source, data.epoch_order(e), global_batch=64, norm=norm, start_step=3)
    it = eval_batches(data.source, data.val_indices, global_batch=64, norm=norm)  # + "mask"
    for batch in to_device(it, batch_sharding): ...   # prefetched onto the devices

A loader's unit of work is a whole batch (:mod:`shared_data.dataset.batches`, which
``torch_ref.data`` reads too): ``--num_workers=N`` runs grain's worker processes
(``mp_prefetch``), worker ``i`` reading batches ``i, i+N, ...`` and the main process interleaving
them back in order, so the batches are the same, value for value and in order, for any N; with 0
the main process reads them on one prefetch thread (threads gain nothing: decoding holds the
GIL). :class:`TrainFeed` reads the run from its position to the last epoch as ONE sequence, so
the workers start once per run rather than once per epoch.

The order (:mod:`shared_data.dataset.splits`) is the torch backend's too: a pure function of
``(seed, epoch)``, so a resumed run, every process of a multi-host run and ``torch_ref`` read the
same clips in the same order, and a run resumed at step ``s`` of an epoch skips exactly the first
``s`` global batches.

Multi-host: every process reads only its rows of each global batch (rows ``[p*b, (p+1)*b)``
with ``b = global_batch / process_count``), and :func:`to_device` assembles the global
``jax.Array`` with ``jax.make_array_from_process_local_data``; the mesh puts process ``p``'s
devices on those rows because ``jax.devices()`` lists devices process by process.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import grain
import jax
import numpy as np

from shared_data.dataset.batches import (
    EpochPlan,
    EvalBatches,
    Normalizer,
    TrainBatches,
    read_batch,
)

__all__ = [
    "EvalBatches",
    "EvalFeed",
    "Normalizer",
    "TrainBatches",
    "TrainFeed",
    "batch_pipeline",
    "eval_batches",
    "read_batch",
    "to_device",
    "train_batches",
]

Record = dict[str, Any]
# What goes to the device; ``index`` (the record numbers) stays on the host.
DEVICE_KEYS = ("mel", "label", "mask")


def _worker_options(num_workers: int) -> grain.MultiprocessingOptions:
    # grain reads absl flags when it starts workers, and absl refuses unparsed flags; these CLIs
    # are argparse programs, so absl's flags keep their defaults (what grain's own tests do).
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
    return grain.MultiprocessingOptions(num_workers=num_workers, per_worker_buffer_size=2)


def batch_pipeline(
    batches: Sequence[dict[str, np.ndarray]], num_workers: int, *, repeat: bool = False
) -> grain.IterDataset:
    """``batches`` (a random-access sequence of whole batches) in order, read ahead; over and
    over with ``repeat``.

    ``num_workers > 0``: grain worker processes (spawned; ``batches`` is pickled to them) each
    read every ``num_workers``-th batch, two ahead, into shared memory. 0: one thread of this
    process reads two batches ahead.
    """
    source = grain.MapDataset.source(batches)
    ds = (source.repeat() if repeat else source).to_iter_dataset(
        grain.ReadOptions(num_threads=1, prefetch_buffer_size=2)
    )
    if num_workers > 0:
        ds = ds.mp_prefetch(_worker_options(num_workers))
    return ds


def train_batches(
    source: Sequence[Record],
    order: np.ndarray,
    *,
    global_batch: int,
    norm: Normalizer,
    start_step: int = 0,
    process_index: int = 0,
    process_count: int = 1,
    num_workers: int = 0,
) -> grain.IterDataset:
    """This process's training batches of one epoch read in ``order``, from ``start_step`` on.

    Args:
        order: the epoch's record indices (``TrainingData.epoch_order``); the tail that does
            not fill a global batch is dropped.
    Yields:
        ``{"mel": float32 [b, 128, 128, 1], "label": int32 [b], "index": int64 [b]}`` with
        ``b = global_batch / P``.
    """
    plan = EpochPlan(order, None, global_batch, process_index=process_index,
                     process_count=process_count)  # fmt: skip
    return batch_pipeline(TrainBatches(source, plan, norm, first=(0, start_step)), num_workers)


def eval_batches(
    source: Sequence[Record],
    indices: np.ndarray,
    *,
    global_batch: int,
    norm: Normalizer,
    process_index: int = 0,
    process_count: int = 1,
    num_workers: int = 0,
) -> grain.IterDataset:
    """Every clip of ``indices`` once, in order, padded to whole global batches.

    Yields:
        ``{"mel": [b, 128, 128, 1], "label": int32 [b], "index", "mask": float32 [b]}``; ``mask``
        is 0 on the padding rows (copies of the first clip) and 1 elsewhere.
    """
    batches = EvalBatches(source, indices, global_batch, norm, process_index=process_index,
                          process_count=process_count)  # fmt: skip
    return batch_pipeline(batches, num_workers)


def to_device(
    batches: grain.IterDataset,
    sharding: jax.sharding.NamedSharding,
    *,
    prefetch: int = 2,
) -> Iterator[dict[str, jax.Array]]:
    """Global ``jax.Array`` batches (:data:`DEVICE_KEYS`) sharded on their leading axis,
    ``prefetch`` ahead on the device.

    A grain thread transfers the next batches while the current step runs, so the host never
    blocks the device on input.
    """

    def put(batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        return {
            k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
            for k, v in batch.items()
            if k in DEVICE_KEYS
        }

    ds = grain.experimental.ThreadPrefetchIterDataset(
        batches.map(put), prefetch_buffer_size=prefetch
    )
    return iter(ds)


class _Feed:
    """What both feeds share: the device iterator they started, and stopping it."""

    _it: Any = None

    def close(self) -> None:
        """Stop the reading thread and the worker processes."""
        if self._it is not None and hasattr(self._it, "close"):
            self._it.close()
        self._it = None


class TrainFeed(_Feed):
    """The run's training batches on the device, from ``first = (epoch, step)`` to the end of
    the last epoch, read by one pool of ``num_workers`` processes for the whole run.

    Args:
        data: the fold split (``train_indices``, ``seed``, ``source``).
        recipe: ``batch_size``, ``epochs``, ``num_workers`` (resolved: >= 0).
    """

    def __init__(
        self,
        data: Any,
        recipe: Any,
        norm: Normalizer,
        sharding: jax.sharding.NamedSharding,
        *,
        first: tuple[int, int],
    ):
        plan = EpochPlan(
            data.train_indices, data.seed, recipe.batch_size,
            process_index=jax.process_index(), process_count=jax.process_count(),
        )  # fmt: skip
        self.batches = TrainBatches(data.source, plan, norm, first=first, end_epoch=recipe.epochs)
        self.steps_per_epoch = plan.steps_per_epoch
        self._pipeline = batch_pipeline(self.batches, max(0, recipe.num_workers))
        self._sharding = sharding
        self._it: Any = None
        self._taken = 0

    def epoch(self, epoch: int, first_step: int) -> Iterator[dict[str, jax.Array]]:
        """The batches of steps ``first_step..`` of ``epoch``: where the feed stands now."""
        if self.batches.position(self._taken) != (epoch, first_step):
            raise RuntimeError(
                f"the feed stands at (epoch, step) {self.batches.position(self._taken)}, not "
                f"{(epoch, first_step)}: epochs must be read in order"
            )
        if self._it is None:
            self._it = to_device(self._pipeline, self._sharding)
        for _ in range(first_step, self.steps_per_epoch):
            self._taken += 1
            yield next(self._it)


class EvalFeed(_Feed):
    """The validation batches on the device, every time :meth:`once` is called: one pool of
    ``num_workers`` processes serves every validation of the run (the sequence repeats, so the
    workers read the next validation's first batches ahead while training runs)."""

    def __init__(
        self,
        batches: Sequence[dict[str, np.ndarray]],
        sharding: jax.sharding.NamedSharding,
        num_workers: int,
    ):
        self.batches = batches
        self._pipeline = batch_pipeline(batches, num_workers, repeat=True)
        self._sharding, self._it = sharding, None

    def once(self) -> Iterator[dict[str, jax.Array]]:
        """Every validation batch once, in order."""
        if self._it is None:
            self._it = to_device(self._pipeline, self._sharding)
        for _ in range(len(self.batches)):
            yield next(self._it)
