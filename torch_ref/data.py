"""Training and validation data for the torch reference: a ``Dataset`` over the built dataset's
random-access source and a batch sampler whose order derives from ``(seed, epoch)``.

API::

    data = load_training_data(recipe, dataset)    # shared_data.training.split.TrainingData
    loader, sampler = train_batches(data, recipe, rank=0, world=1, pin_memory=False)
    sampler.set_epoch(epoch, start_step=0)        # before iterating each epoch (resume: start_step)
    for x, labels, index in loader: ...           # x float32 [B, 1, 128, 128] normalised (NCHW)
    val = eval_batches(data, recipe, rank=0, world=1)   # (x, labels, index) of this rank's clips

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
from shared_data.training.split import TrainingData


class MelDataset(Dataset):
    """``(mel [1, H, W] float32 normalised, label int64, source index int64)`` per record.

    Args:
        source: random-access records (``mel`` float32 ``[H, W]``, ``label`` int).
        indices: the source positions this dataset exposes, in order.
        mean, std: normalisation constants (dataset statistics).
    """

    def __init__(
        self, source: Sequence[dict[str, Any]], indices: np.ndarray, mean: float, std: float
    ):
        self.source = source
        self.indices = np.asarray(indices, np.int64)
        self.mean = np.float32(mean)
        self.inv_std = np.float32(1.0 / std)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        index = int(self.indices[i])
        record = self.source[index]
        mel = (np.asarray(record["mel"], np.float32) - self.mean) * self.inv_std
        return torch.from_numpy(mel[None]), int(record["label"]), index


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


def train_batches(
    data: TrainingData, recipe: Any, *, rank: int = 0, world: int = 1, pin_memory: bool = False
) -> tuple[DataLoader, EpochBatchSampler]:
    """The training loader and its sampler (call ``sampler.set_epoch`` before each epoch)."""
    dataset = MelDataset(data.source, data.train_indices, data.mel_mean, data.mel_std)
    sampler = EpochBatchSampler(
        len(dataset), recipe.batch_size, recipe.seed, rank=rank, world=world
    )
    loader = DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=recipe.num_workers,
        pin_memory=pin_memory,
        persistent_workers=False,
    )
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
        num_workers=recipe.num_workers,
        pin_memory=pin_memory,
    )
