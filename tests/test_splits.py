"""Fold splits and the seeded training order shared by both backends."""

from __future__ import annotations

import numpy as np
import pytest

from shared_data.dataset import splits
from shared_data.errors import DataError


def test_epoch_order_is_a_permutation_fixed_by_seed_and_epoch():
    a = splits.epoch_order(50, seed=1, epoch=0)
    np.testing.assert_array_equal(np.sort(a), np.arange(50))
    np.testing.assert_array_equal(a, splits.epoch_order(50, seed=1, epoch=0))
    assert not np.array_equal(a, splits.epoch_order(50, seed=1, epoch=1))
    assert not np.array_equal(a, splits.epoch_order(50, seed=2, epoch=0))
    assert a.dtype == np.int64


def test_rank_shards_partition_each_global_batch():
    order = splits.epoch_order(40, seed=0, epoch=3)
    for step in range(splits.steps_per_epoch(40, 12)):
        whole = splits.batch_indices(order, step, 12)
        shards = [splits.batch_indices(order, step, 12, rank=r, world=4) for r in range(4)]
        np.testing.assert_array_equal(np.concatenate(shards), whole)
        assert all(len(s) == 3 for s in shards)
    with pytest.raises(DataError, match="--batch_size=12 must be divisible"):
        splits.batch_indices(order, 0, 12, rank=0, world=5)


def test_steps_per_epoch_uses_full_batches_only():
    assert splits.steps_per_epoch(40, 12) == 3
    assert splits.steps_per_epoch(36, 12) == 3
    with pytest.raises(DataError, match="--batch_size=64 exceeds the 40 training clips"):
        splits.steps_per_epoch(40, 64)


def test_fold_split_holds_out_exactly_one_fold():
    folds = np.array([0, 1, 2, 1, 0, 4, 3, 1])
    train, val = splits.fold_split(folds, fold=1, num_folds=5)
    np.testing.assert_array_equal(val, [1, 3, 7])
    np.testing.assert_array_equal(train, [0, 2, 4, 5, 6])


def test_fold_split_errors_name_the_fix():
    with pytest.raises(DataError, match="--folds=3"):
        splits.fold_split(np.array([0, 4, 1]), fold=0, num_folds=3)
    with pytest.raises(DataError, match="--fold=2 holds no clips"):
        splits.fold_split(np.array([0, 1, 1]), fold=2, num_folds=5)


def test_read_fold_labels_reads_every_record():
    records = [{"fold": i % 3, "label": 10 + i, "mel": None} for i in range(5)]
    folds, labels = splits.read_fold_labels(records)
    np.testing.assert_array_equal(folds, [0, 1, 2, 0, 1])
    np.testing.assert_array_equal(labels, [10, 11, 12, 13, 14])
