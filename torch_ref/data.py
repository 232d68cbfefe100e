"""Training and validation data for the torch reference: a ``Dataset`` over the built dataset's
random-access source and a batch sampler whose order derives from ``(seed, epoch)``.

API::

    data = load_training_data(recipe, dataset)    # shared_data.training.split.TrainingData
    loader, sampler = train_batches(data, recipe, rank=0, world=1, pin_memory=False)
    sampler.set_epoch(epoch, start_step=0)        # before iterating each epoch (resume: start_step)
    for x, labels, index in loader: ...           # x float32 [B, 1, 128, 128] normalised (NCHW)
    val = eval_batches(data, recipe, rank=0, world=1)   # (x, labels, index) of this rank's clips

``--num_workers=N`` worker processes (kept for the whole run) each read whole batches
(``MelDataset.__getitems__``), so the batches are the same, in value and order, for any N.

Batches follow :mod:`shared_data.dataset.splits`: the epoch order is ``epoch_order(n_train, seed,
epoch)``, global batch ``step`` is its slice ``[step * B, (step + 1) * B)``, and under DDP each of
the ``world`` processes reads its contiguous ``B / world`` shard of that slice (what
``DistributedSampler`` does, but per batch and from a seeded order, so a resumed run at any step
reads exactly what the uninterrupted run read). Mels are normalised with the dataset's
``mel_mean``/``mel_std`` from the build metadata, so 0.0 is the dataset mean.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from shared_data.dataset import splits
from shared_data.dataset.batches import Normalizer, read_batch
from shared_data.training.split import TrainingData

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class MelDataset(Dataset):
    """``(mel [1, H, W] float32 normalised, label int64, source index int64)`` per record, and
    whole batches through ``__getitems__`` (what ``DataLoader`` calls for a batch of positions):
    :func:`shared_data.dataset.batches.read_batch`, the reader ``jax_impl.data`` uses, so both
    backends see the same values.

    Args:
        source: random-access records (``mel`` float32 ``[H, W]``, ``label`` int); a
            :class:`~shared_data.dataset.records.RecordSource` reopens itself in each worker.
        indices: the source positions this dataset exposes, in order.
        mean, std: normalisation constants (dataset statistics).
    """

    def __init__(
        self, source: Sequence[dict[str, Any]], indices: np.ndarray, mean: float, std: float
    ):
        self.source = source
        self.indices = np.asarray(indices, np.int64)
        self.norm = Normalizer(mean, std)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        x, labels, index = self.__getitems__([i])
        return x[0], int(labels[0]), int(index[0])

    def __getitems__(self, positions: Sequence[int]) -> Batch:
        """The batch at ``positions``: x float32 ``[b, 1, H, W]``, labels, indices int64 ``[b]``."""
        batch = read_batch(self.source, self.indices[list(positions)], self.norm, channel_axis=1)
        return (
            torch.from_numpy(batch["mel"]),
            torch.from_numpy(batch["label"].astype(np.int64)),
            torch.from_numpy(batch["index"]),
        )


def as_batch(batch: Batch) -> Batch:
    """``collate_fn``: :meth:`MelDataset.__getitems__` already returns the batch."""
    return batch


class EpochBatchSampler(Sampler[list[int]]):
    """Yields this rank's positions of each global batch of an epoch, from ``start_step`` on."""

    def __init__(
        self, num_examples: int, batch_size: int, seed: int, *, rank: int = 0, world: int = 1
    ):
        self.num_examples = num_examples
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world = world
        self.steps = splits.steps_per_epoch(num_examples, batch_size)
        self.epoch = 0
        self.start_step = 0

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        """Read epoch ``epoch``'s order, skipping its first ``start_step`` batches (resume)."""
        self.epoch = epoch
        self.start_step = start_step

    def batches(self) -> list[list[int]]:
        """Every batch this iterator will yield, as lists of positions (pure: no data read)."""
        order = splits.epoch_order(self.num_examples, self.seed, self.epoch)
        return [
            splits.batch_indices(
                order, step, self.batch_size, rank=self.rank, world=self.world
            ).tolist()
            for step in range(self.start_step, self.steps)
        ]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        return self.steps - self.start_step


def _loader_options(recipe: Any, pin_memory: bool) -> dict[str, Any]:
    """Worker processes kept for the whole run, batches pinned for the copy to a GPU."""
    workers = max(0, recipe.num_workers)
    return {
        "num_workers": workers,
        "pin_memory": pin_memory,
        "persistent_workers": workers > 0,
        "prefetch_factor": 2 if workers > 0 else None,
        "collate_fn": as_batch,
    }


def train_batches(
    data: TrainingData, recipe: Any, *, rank: int = 0, world: int = 1, pin_memory: bool = False
) -> tuple[DataLoader, EpochBatchSampler]:
    """The training loader and its sampler (call ``sampler.set_epoch`` before each epoch).

    ``recipe.num_workers`` (resolved, >= 0) worker processes read whole batches; they persist
    across epochs (the sampler, in this process, gives each epoch's order).
    """
    dataset = MelDataset(data.source, data.train_indices, data.mel_mean, data.mel_std)
    sampler = EpochBatchSampler(
        len(dataset), recipe.batch_size, recipe.seed, rank=rank, world=world
    )
    loader = DataLoader(dataset, batch_sampler=sampler, **_loader_options(recipe, pin_memory))
    return loader, sampler


def eval_batches(
    data: TrainingData, recipe: Any, *, rank: int = 0, world: int = 1, pin_memory: bool = False
) -> DataLoader:
    """Every validation clip once, in order; rank ``r`` of ``world`` reads clips ``r::world``."""
    indices = data.val_indices[rank::world]
    dataset = MelDataset(data.source, indices, data.mel_mean, data.mel_std)
    return DataLoader(
        dataset,
        batch_size=max(1, recipe.batch_size // world),
        shuffle=False,
        drop_last=False,
        **_loader_options(recipe, pin_memory),
    )
