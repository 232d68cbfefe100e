"""The run format both backends share (``shared_data.training.run_state``, ``runinfo.RunFields``,
``metrics_log``), and run directories written before it: ``tests/fixtures/run_format/`` holds the
checkpoint metas and ``recipe.json`` files each backend wrote then (same runs, each format)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from shared_data.training import loop
from shared_data.training.recipe import Recipe
from shared_data.training.resume_check import CheckpointError
from shared_data.training.run_state import CheckpointMeta, EpochSums, RunPosition
from shared_data.training.runinfo import RunFields, RunInfoError, read_run_info, write_run_info

FIXTURES = Path(__file__).parent / "fixtures" / "run_format"


def _fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


# The states the fixtures hold: where the run continues, its epoch's sums, the best so far.
STATES = {
    "mid_epoch": (1, 2, 8, EpochSums(9.6, 5.5, 8.0), 0.625, 0),
    "before_validation": (0, 2, 2, EpochSums(10.0, 3.25, 8.0), None, None),
    "epoch_start": (1, 0, 6, EpochSums(), 0.5, 0),
}
OLD_FORMATS = [
    (state, f"checkpoint_meta_{writer}_{state}.json")
    for state in STATES
    for writer in ("jax", "jax_older", "torch")
    if (FIXTURES / f"checkpoint_meta_{writer}_{state}.json").exists()
]


def test_every_old_checkpoint_format_is_a_fixture():
    assert len(OLD_FORMATS) == 8  # older JAX sums exist only where a step was taken


@pytest.mark.parametrize("state, name", OLD_FORMATS, ids=[n for _, n in OLD_FORMATS])
def test_old_checkpoint_metas_read_to_the_same_run_state(state, name):
    epoch, step, global_step, sums, best_acc, best_epoch = STATES[state]
    meta = CheckpointMeta.from_dict(_fixture(name))
    assert (meta.run.epoch, meta.run.step, meta.run.global_step) == (epoch, step, global_step)
    assert meta.run.sums.to_dict() == pytest.approx(sums.to_dict(), rel=1e-12)
    assert (meta.run.best_val_acc, meta.run.best_epoch) == (best_acc, best_epoch)  # -1: None
    assert meta.recipe == _fixture(f"checkpoint_meta_jax_{state}.json")["recipe"]
    position = meta.position()
    assert (position.epoch, position.step, position.global_step) == (epoch, step, global_step)
    assert (position.best_val_acc, position.best_epoch) == (best_acc, best_epoch)
    # Written again, it is the one current format, and reads back to the same values.
    current = meta.to_dict()
    assert set(current) == {"next_epoch", "next_step", "global_step", "epoch_sums",
                            "best_val_acc", "best_epoch", "recipe"}  # fmt: skip
    assert CheckpointMeta.from_dict(json.loads(json.dumps(current))) == meta


def test_checkpoint_meta_round_trips_a_run_position():
    recipe = Recipe(model="lstm", epochs=3).resolved("torch", accelerator=False)
    position = RunPosition(2, 1, 7, EpochSums(3.0, 2.5, 4.0), best_val_acc=0.75, best_epoch=1)
    meta = CheckpointMeta.at(position, recipe)
    assert meta.to_dict()["best_val_acc"] == 0.75 and meta.recipe == recipe.to_dict()
    back = CheckpointMeta.from_dict(json.loads(json.dumps(meta.to_dict()))).position()
    assert back == position and back.sums is not position.sums  # a copy: the loop mutates it
    position.sums.add(1.0, 1.0, 4.0)
    assert meta.run.sums == EpochSums(3.0, 2.5, 4.0)  # the meta kept the sums of its time


@pytest.mark.parametrize("drop", ["global_step", "recipe", "epoch_sums"])
def test_a_meta_without_the_run_state_is_one_clear_error(drop):
    meta = _fixture("checkpoint_meta_jax_mid_epoch.json")
    meta.pop(drop)
    with pytest.raises(CheckpointError, match=f"checkpoint 4 holds no readable run state.*{drop}"):
        CheckpointMeta.from_dict(meta, "checkpoint 4")


def test_old_recipe_json_run_fields_of_either_backend_read_alike(tmp_path):
    fields = {}
    for backend in ("jax", "torch"):
        shutil.copy(FIXTURES / f"recipe_{backend}.json", tmp_path / "recipe.json")
        info = read_run_info(tmp_path)
        assert info.backend == backend
        fields[backend] = info.fields
    jax, torch = fields["jax"], fields["torch"]
    assert (jax.train_clips, jax.val_clips, jax.steps_per_epoch) == (24, 6, 6)
    assert dataclasses.replace(torch, device_kind="cpu", backend_options={}) == jax
    assert torch.device_kind is None and torch.backend_options == {"compile": False}
    assert jax.dataset["label_names"] == ["blues", "classical", "metal"]


def test_run_fields_round_trip_through_recipe_json(tmp_path):
    fields = RunFields(devices=4, processes=2, platform="gpu", device_kind="NVIDIA H200",
                       steps_per_epoch=10, train_clips=40, val_clips=8,
                       backend_options={"compile": True})  # fmt: skip
    recipe = Recipe(model="lstm", epochs=2).resolved("torch", accelerator=False)
    run = json.loads(write_run_info(tmp_path, recipe, "torch", extra=fields.to_dict()).read_text())
    for old in ("world_size", "num_train", "num_val", "device", "compile"):
        assert old not in run["run"]
    assert read_run_info(tmp_path).fields == fields


def test_recipe_json_without_run_fields_names_the_file(tmp_path):
    recipe = Recipe(model="lstm", epochs=2).resolved("jax", accelerator=False)
    write_run_info(tmp_path, recipe, "jax")
    with pytest.raises(RunInfoError, match="recipe.json: run lacks the fields a training run"):
        _ = read_run_info(tmp_path).fields


@pytest.mark.parametrize(
    "log_every, checkpoint_every, points",
    [
        (2, 0, [2, 4, 5, 6, 8, 10]),  # every 2 global steps, and each epoch's end (5, 10)
        (3, 4, [3, 4, 5, 6, 8, 9, 10]),  # and each mid-epoch checkpoint (4, 8)
        (100, 0, [5, 10]),
    ],
)
def test_train_points_fall_on_log_every_checkpoints_and_epoch_ends(
    log_every, checkpoint_every, points
):
    recipe = Recipe(log_every=log_every, checkpoint_every=checkpoint_every)
    due = [g + 1 for g in range(10) if loop.train_point_due(recipe, g + 1, g % 5, 5)]
    assert due == points


def test_epoch_sums_since_is_the_window_of_a_training_point():
    sums = EpochSums()
    sums.add(2.0, 3.0, 4.0)
    before = dataclasses.replace(sums)
    sums.add(1.0, 1.0, 2.0)
    sums.add(4.0, 2.0, 2.0)
    window = sums.since(before)
    assert (window.train_loss, window.train_acc) == (2.5, 0.75)  # the last two batches only
