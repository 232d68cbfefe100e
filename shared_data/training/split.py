"""The data-split object both training loops read: the built dataset split by fold, or by its
fixed ``validation`` split when it has one (GTZAN's fault-filtered split).

API::

    data = load_training_data(recipe, dataset)   # TrainingData (dataset: an OpenedDataset)
    data.train_indices, data.val_indices         # int64 record indices of the train split
    data.val_labels, data.val_songs              # int64 [n_val], str [n_val]
    data.epoch_order(epoch)                      # record indices of an epoch, training order
    data.steps_per_epoch, data.num_classes, data.mel_mean, data.mel_std, data.record
    data.stem                                     # the stem trained on (recipe.stem resolved)

The fold split and the data order are :mod:`shared_data.dataset.splits`' functions: the order of
an epoch is a pure function of ``(seed, epoch)``, so a resumed run, every process of a
multi-process run and both backends read the same clips in the same order.

A dataset with a ``validation`` split (:func:`shared_data.dataset.split_source.has_fixed_splits`)
has no folds: ``source`` then reads the ``train`` records followed by the ``validation`` ones
(:class:`JoinedSource`), ``train_indices`` are the first and ``val_indices`` the second, so the
training loops read it exactly as they read a fold split; ``--fold`` does not apply.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shared_data.dataset import splits
from shared_data.dataset.split_source import has_fixed_splits
from shared_data.errors import DataError


class JoinedSource(Sequence):
    """The records of ``first`` then those of ``second`` (two random-access sources), as one.

    ``len``, ``[i]`` and ``__getitems__(rows)``; picklable when both sources are (worker
    processes receive it like a single source).
    """

    def __init__(self, first: Sequence[dict[str, Any]], second: Sequence[dict[str, Any]]):
        self.first, self.second = first, second

    def __len__(self) -> int:
        return len(self.first) + len(self.second)

    def __getitem__(self, i: int) -> dict[str, Any]:  # type: ignore[override]
        n, total = len(self.first), len(self)
        if not -total <= i < total:
            raise IndexError(f"record {i} out of range for {total} records")
        i = int(i) % total
        return self.first[i] if i < n else self.second[i - n]

    def __getitems__(self, rows: Any) -> list[dict[str, Any]]:
        """The records at ``rows``, in that order."""
        return [self[int(r)] for r in rows]


@dataclass(frozen=True)
class TrainingData:
    """An opened dataset split by fold: what a training loop reads.

    Attributes:
        source: the random-access records of the ``train`` split, seen through ``stem``
            (``mel`` float32 ``[H, W]``: that stem's, ``label`` int, ``song_id`` str, ``fold``
            int).
        stem: the stem trained on.
        train_indices, val_indices: int64 record indices (folds != k, fold k).
        val_labels: int64 ``[n_val]``; val_songs: str ``[n_val]`` (song of each validation clip).
        mel_mean, mel_std: the stem's normalisation constants (build metadata).
        record: :func:`shared_data.ensemble.members.dataset_record` of the dataset, stored in
            ``recipe.json`` so the run stays usable as an ensemble member without its dataset.
        held_out: what validation reads, for status lines (``fold k`` or ``validation split``).
    """

    source: Sequence[dict[str, Any]]
    train_indices: np.ndarray
    val_indices: np.ndarray
    val_labels: np.ndarray
    val_songs: np.ndarray
    label_names: tuple[str, ...]
    stem: str
    mel_mean: float
    mel_std: float
    seed: int
    batch_size: int
    record: dict[str, Any] = field(default_factory=dict)
    held_out: str = "fold 0"  # what validation reads, for status lines: "fold k" or the split

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


def _statistics(dataset: Any, stem: str) -> tuple[float, float]:
    try:
        mean, std = dataset.mel_stats(stem)
    except (KeyError, TypeError, ValueError) as err:
        raise DataError(
            f"the dataset metadata lacks usable mel statistics of the {stem} stem ({err}); "
            "rebuild it with python -m shared_data.build"
        ) from None
    if not (math.isfinite(mean) and math.isfinite(std) and std > 0):
        raise DataError(
            f"the dataset metadata holds {stem} mean={mean}, std={std}: the standard deviation "
            "must be finite and positive; rebuild it with python -m shared_data.build"
        )
    return mean, std


def load_training_data(recipe: Any, dataset: Any) -> TrainingData:
    """Split ``dataset`` (an ``OpenedDataset``) by ``recipe.fold``, or into its own train and
    validation splits when it has them, reading ``recipe.stem``
    (:func:`shared_data.dataset.stems.resolve_stem`).

    Raises:
        DataError: the dataset's fold count differs from ``--folds``, it lacks the stem, a side of
            the split is empty, ``--batch_size`` exceeds the training clips, or the metadata
            lacks the statistics.
    """
    from shared_data.dataset.stems import resolve_stem
    from shared_data.ensemble.members import dataset_record

    stem = resolve_stem(recipe.stem, dataset.stems)
    if has_fixed_splits(dataset):
        return _fixed_split_data(recipe, dataset, stem, dataset_record(dataset, stem))
    built_folds = dataset.metadata.get("folds")
    if built_folds is not None and int(built_folds) != recipe.folds:
        raise DataError(
            f"dataset {recipe.dataset!r} was built with {built_folds} folds but "
            f"--folds={recipe.folds}; pass --folds={built_folds} "
            f"(or rebuild it with --folds={recipe.folds})"
        )
    source = dataset.source("train", stem=stem)  # an absent stem fails here, naming the fix
    mean, std = _statistics(dataset, stem)
    folds, labels = splits.read_fold_labels(source)
    train, val = splits.fold_split(folds, recipe.fold, recipe.folds)
    data = TrainingData(
        source=source,
        train_indices=train,
        val_indices=val,
        val_labels=labels[val],
        val_songs=splits.song_ids(source, val),
        label_names=tuple(dataset.label_names),
        stem=stem,
        mel_mean=mean,
        mel_std=std,
        seed=recipe.seed,
        batch_size=recipe.batch_size,
        record=dataset_record(dataset, stem),
        held_out=f"fold {recipe.fold}",
    )
    _ = data.steps_per_epoch  # a batch larger than the training set fails here, naming the flag
    return data


def _fixed_split_data(recipe: Any, dataset: Any, stem: str, record: dict[str, Any]) -> TrainingData:
    """Train on the ``train`` split, validate on ``validation`` (see the module docstring).

    Raises:
        DataError: ``--fold`` other than 0 (no folds here), an empty split, a batch too large.
    """
    if recipe.fold != 0:
        raise DataError(
            f"dataset {recipe.dataset!r} has a validation split (fixed train/validation/test "
            f"lists), so --fold={recipe.fold} does not apply; drop --fold"
        )
    train = dataset.source("train", stem=stem)
    val = dataset.source("validation", stem=stem)
    mean, std = _statistics(dataset, stem)
    if len(val) == 0:
        raise DataError(f"the validation split of dataset {recipe.dataset!r} holds no clips")
    _, val_labels = splits.read_fold_labels(val)
    val_rows = np.arange(len(val), dtype=np.int64)
    data = TrainingData(
        source=JoinedSource(train, val),
        train_indices=np.arange(len(train), dtype=np.int64),
        val_indices=val_rows + len(train),
        val_labels=val_labels,
        val_songs=splits.song_ids(val, val_rows),
        label_names=tuple(dataset.label_names),
        stem=stem,
        mel_mean=mean,
        mel_std=std,
        seed=recipe.seed,
        batch_size=recipe.batch_size,
        record=record,
        held_out="validation split",
    )
    _ = data.steps_per_epoch  # a batch larger than the training set fails here, naming the flag
    return data
