"""Fold splits and the training data order, as pure numpy functions both backends can share.

API::

    folds, labels = read_fold_labels(source)           # int64 [N] each, one pass over the records
    train_idx, val_idx = fold_split(folds, fold=k, num_folds=K)   # song-grouped (fold per song)
    n_steps = steps_per_epoch(len(train_idx), batch_size)         # full batches only
    order = epoch_order(len(train_idx), seed, epoch)               # permutation, int64 [N]
    idx = batch_indices(order, step, batch_size, rank=r, world=W)  # this rank's shard of a batch
    songs = song_ids(source, val_idx)                              # str [N_val]

The order of an epoch depends only on ``(seed, epoch)``; a batch only on ``(seed, epoch, step)``,
so a run resumed at any step reads the same examples as an uninterrupted one. Epochs use full
batches only (the remainder, under one batch, is dropped and differs from epoch to epoch): static
shapes for XLA, and no BatchNorm step on a handful of examples.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from shared_data.errors import DataError


def read_fold_labels(source: Sequence[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """``(folds, labels)``, int64 ``[len(source)]``, read from every record of ``source``."""
    folds = np.empty(len(source), np.int64)
    labels = np.empty(len(source), np.int64)
    for i in range(len(source)):
        record = source[i]
        folds[i] = int(record["fold"])
        labels[i] = int(record["label"])
    return folds, labels


def song_ids(source: Sequence[dict[str, Any]], indices: np.ndarray) -> np.ndarray:
    """The song id (str) of each record ``source[i]`` for ``i`` in ``indices``, as ``[len]``."""
    songs = []
    for i in indices:
        song = source[int(i)]["song_id"]
        songs.append(song.decode() if isinstance(song, bytes) else str(song))
    return np.asarray(songs, dtype=str)


def fold_split(folds: np.ndarray, fold: int, num_folds: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (int64, ascending) of the training records (fold != k) and validation ones (== k).

    Raises:
        DataError: the dataset was built with more folds than ``num_folds``, or a side is empty.
    """
    folds = np.asarray(folds)
    if folds.size and (folds.min() < 0 or folds.max() >= num_folds):
        raise DataError(
            f"the dataset has fold numbers up to {int(folds.max())} but --folds={num_folds}; "
            f"pass the fold count the dataset was built with (its metadata 'folds')"
        )
    val = np.flatnonzero(folds == fold)
    train = np.flatnonzero(folds != fold)
    if val.size == 0:
        raise DataError(
            f"validation fold --fold={fold} holds no clips (too few songs for {num_folds} folds); "
            "choose another --fold or build a larger dataset"
        )
    if train.size == 0:
        raise DataError(f"every clip is in fold {fold}: nothing is left to train on")
    return train, val


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    """Full global batches per epoch; raises :class:`DataError` when not even one fits."""
    steps = num_examples // batch_size
    if steps < 1:
        raise DataError(
            f"--batch_size={batch_size} exceeds the {num_examples} training clips; "
            "lower --batch_size"
        )
    return steps


def epoch_order(num_examples: int, seed: int, epoch: int) -> np.ndarray:
    """The permutation of ``range(num_examples)`` (int64) that epoch ``epoch`` reads in.

    Drawn with numpy's PCG64 from ``SeedSequence([seed, epoch])``: stable across numpy versions and
    independent of any other random stream.
    """
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, epoch])))
    return rng.permutation(num_examples).astype(np.int64)


def batch_indices(
    order: np.ndarray, step: int, batch_size: int, *, rank: int = 0, world: int = 1
) -> np.ndarray:
    """Positions into the training set of global batch ``step``, rank ``rank``'s contiguous shard.

    ``batch_size`` is the global batch; it must divide evenly over ``world`` processes.
    """
    if batch_size % world:
        raise DataError(f"--batch_size={batch_size} must be divisible by the {world} processes")
    per_rank = batch_size // world
    start = step * batch_size + rank * per_rank
    return order[start : start + per_rank]
