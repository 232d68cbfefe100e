"""The input pipeline: the record format, worker processes in both backends, and their defaults.

Worker processes must not change what training reads: the same batches, value for value and in
order, for 0 and 2 workers, across epochs and from a mid-epoch position (a resume).
"""

from __future__ import annotations

import json
import pickle
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from shared_data.dataset.batches import EpochPlan, EvalBatches, Normalizer, TrainBatches
from shared_data.dataset.configs import DATASET_VERSION, NAME, OLDER_VERSIONS
from shared_data.dataset.opened import dataset_dir, open_dataset
from shared_data.dataset.records import RecordSource
from shared_data.errors import DataError
from shared_data.training.recipe import Recipe, default_num_workers
from tests.support.tiny_runs import run, tiny_recipe

# torch's workers fork; JAX, loaded in this test process (never by torch_ref), warns about fork.
FORK_WARNING = "ignore:os.fork:RuntimeWarning"


def _source(tiny: dict) -> RecordSource:
    return open_dataset(tiny["data_dir"], tiny["config"]).source("train", stem="mix")


def test_records_are_raw_bytes_in_uncompressed_shards(jax_tiny):
    from array_record.python import array_record_module as ar

    path = dataset_dir(jax_tiny["data_dir"], jax_tiny["config"])
    features = json.loads((path / "features.json").read_text())["featuresDict"]["features"]
    assert features["mel_mix"]["tensor"]["encoding"] == "bytes"
    shards = sorted(path.glob("*.array_record-*"))
    assert shards
    for shard in shards:
        reader = ar.ArrayRecordReader(str(shard))
        assert "uncompressed" in reader.writer_options_string()
        reader.close()
    record = _source(jax_tiny)[0]
    assert record["mel"].shape == (128, 128) and record["mel"].dtype == np.float32


def test_a_dataset_of_an_older_format_is_refused_with_the_rebuild_command(tmp_path):
    old = tmp_path / NAME / "synthetic" / OLDER_VERSIONS[0]
    old.mkdir(parents=True)
    (old / "dataset_info.json").write_text("{}")
    with pytest.raises(DataError) as err:
        open_dataset(tmp_path, "synthetic")
    message = str(err.value)
    assert f"older record format {OLDER_VERSIONS[0]}" in message and DATASET_VERSION in message
    assert f"python -m shared_data.build --config=synthetic --data_dir={tmp_path}" in message


def test_the_record_source_pickles_by_path_and_reopens_in_the_new_process(jax_tiny):
    source = _source(jax_tiny)
    first = source[3]
    clone = pickle.loads(pickle.dumps(source))
    assert len(pickle.dumps(source)) < 1000  # the path, not the reader
    assert len(clone) == len(source)
    np.testing.assert_array_equal(clone[3]["mel"], first["mel"])
    assert clone.__getitems__([3, 0])[0]["label"] == first["label"]


def _jax_batches(source, plan, first, workers, epochs=2):
    from jax_impl import data as data_lib

    batches = TrainBatches(source, plan, Normalizer(-20.0, 15.0), first=first, end_epoch=epochs)
    it = iter(data_lib.batch_pipeline(batches, workers))
    out = [(b["index"].tolist(), b["mel"], b["label"]) for b in it]
    it.close()
    return out


def _same(a, b) -> None:
    assert [x[0] for x in a] == [x[0] for x in b]
    for (_, mel_a, lab_a), (_, mel_b, lab_b) in zip(a, b, strict=True):
        np.testing.assert_array_equal(mel_a, mel_b)
        np.testing.assert_array_equal(lab_a, lab_b)


def test_jax_workers_read_the_same_batches_in_the_same_order(jax_tiny):
    """Two epochs from step 0 and from the middle of epoch 1 (a resume): 0 and 2 workers agree."""
    source = _source(jax_tiny)
    plan = EpochPlan(np.arange(len(source)), seed=7, global_batch=4)
    whole = _jax_batches(source, plan, (0, 0), workers=0)
    assert len(whole) == 2 * plan.steps_per_epoch
    assert whole[0][0] == plan.rows(0, 0).tolist() and whole[-1][0] == plan.rows(1, 3).tolist()
    _same(_jax_batches(source, plan, (0, 0), workers=2), whole)
    resumed = _jax_batches(source, plan, (0, 2), workers=2)
    _same(resumed, whole[2:])


def test_eval_batches_with_workers_cover_the_fold_each_time(jax_tiny):
    from jax_impl import data as data_lib
    from jax_impl import train_step as ts

    source, val = _source(jax_tiny), np.array([1, 4, 6, 7, 9])
    feed = data_lib.EvalFeed(
        EvalBatches(source, val, 4, Normalizer(0.0, 1.0)), ts.batch_sharded(ts.make_mesh()), 2
    )
    try:
        for _ in range(2):  # the same workers serve every validation
            got = list(feed.once())
            mels = np.concatenate([np.asarray(b["mel"]) for b in got])
            mask = np.concatenate([np.asarray(b["mask"]) for b in got])
            assert mask.tolist() == [1] * 5 + [0] * 3
            np.testing.assert_array_equal(mels[:5, ..., 0], [source[int(i)]["mel"] for i in val])
    finally:
        feed.close()


@pytest.mark.filterwarnings(FORK_WARNING)
def test_torch_workers_read_the_same_batches_over_epochs(torch_tiny):
    """Forked DataLoader workers (which crashed when they inherited the array_record reader)
    read what the main process reads, persist across epochs and resume mid-epoch."""
    from shared_data.training.split import load_training_data
    from torch_ref import data as torch_data

    recipe = tiny_recipe(torch_tiny, Path("unused"))
    data = load_training_data(recipe, open_dataset(torch_tiny["data_dir"], torch_tiny["config"]))

    def epochs(workers, first=0):
        loader, sampler = torch_data.train_batches(data, replace(recipe, num_workers=workers))
        out = []
        for epoch, start in ((0, first), (1, 0)):
            sampler.set_epoch(epoch, start)
            out += [(i.tolist(), x.numpy(), y.numpy()) for x, y, i in loader]
        return out, loader

    whole, _ = epochs(0)
    assert len(whole) == 2 * data.steps_per_epoch
    with_workers, loader = epochs(2)
    assert loader.persistent_workers and loader.num_workers == 2
    _same(with_workers, whole)
    _same(epochs(2, first=1)[0], whole[1:])


@pytest.mark.filterwarnings(FORK_WARNING)
def test_torch_trains_the_same_run_with_workers_and_resumes(torch_tiny, torch_full_run, tmp_path):
    """``--num_workers=2`` trains what 0 workers train; killed mid-epoch and resumed, still."""
    recipe = tiny_recipe(torch_tiny, tmp_path / "a", num_workers=2)
    summary, seen = run(torch_tiny, recipe)
    assert seen == torch_full_run["seen"]
    for key in ("best_val_acc", "final_val_acc", "global_step", "best_epoch"):
        assert summary[key] == torch_full_run["summary"][key]
    killed = tiny_recipe(torch_tiny, tmp_path / "b", num_workers=2)
    assert run(torch_tiny, killed, kill_at=torch_tiny["steps"] + 1)[0] is None
    resumed, rest = run(torch_tiny, killed)
    assert rest == torch_full_run["seen"][-len(rest) :]
    assert resumed["final_val_acc"] == torch_full_run["summary"]["final_val_acc"]


def test_auto_workers_follow_the_machine():
    assert default_num_workers(accelerator=False, cores=64) == 0  # the CPU trains on every core
    assert default_num_workers(accelerator=True, cores=2) == 1
    assert default_num_workers(accelerator=True, cores=1) == 1
    assert default_num_workers(accelerator=True, cores=12) == 11
    assert default_num_workers(accelerator=True, cores=128) == 16
    recipe = Recipe(model="lstm")
    assert recipe.num_workers == -1
    assert recipe.resolved("jax", accelerator=False).num_workers == 0
    assert recipe.resolved("jax", accelerator=None).num_workers == -1
    assert Recipe(model="lstm", num_workers=3).resolved("jax", accelerator=True).num_workers == 3
