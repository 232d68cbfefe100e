"""The JAX training loop: run outputs, data order, checkpoints, resume rules and bad input.

Whole runs use the tiny dataset of :mod:`tests.support.tiny_runs` (18 clips, ``lstm``, batch 4);
the pipeline and checkpoint pieces are also checked alone on in-memory records.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from jax_impl import checkpoint as ckpt_lib
from jax_impl import cv as cv_lib
from jax_impl import data as data_lib
from jax_impl import train as train_lib
from jax_impl import train_step as ts
from shared_data.cli import run_main
from shared_data.dataset import splits
from shared_data.dataset.opened import open_dataset
from shared_data.ensemble.members import DATASET_KEY, dataset_record
from shared_data.errors import UserError
from shared_data.training import cross_validation as cv_folds
from shared_data.training import metrics_log
from shared_data.training.recipe import Recipe
from shared_data.training.split import load_training_data
from tests.support.tensorboard import tf_records
from tests.support.tiny_runs import tiny_recipe


@pytest.fixture
def tiny(jax_tiny) -> dict:
    return jax_tiny


@pytest.fixture
def full_run(jax_full_run) -> dict:
    return jax_full_run


def _records(workdir: Path) -> list[dict]:
    return [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]


def _saved_params(workdir: Path, step: int) -> dict:
    """The raw arrays of a checkpoint's parameters (nested dicts), read without a target."""
    path = Path(workdir) / "checkpoints" / str(step) / "state"
    return ocp.StandardCheckpointer().restore(path.absolute())["params"]


# --- whole runs --------------------------------------------------------------------------------


def test_run_directory_outputs(full_run, tiny):
    workdir, summary = full_run["workdir"], full_run["summary"]
    records = _records(workdir)
    assert [r["epoch"] for r in records] == [0, 1]
    assert [r["mixup"] for r in records] == [True, False]  # Mixup for the first half only
    for r in records:
        assert 0.0 <= r["val_acc"] <= 1.0 and 0.0 <= r["val_song_acc"] <= 1.0
        assert np.isfinite(r["val_loss"]) and np.isfinite(r["train_loss"]) and r["lr"] > 0
    assert records[-1]["step"] == 2 * tiny["steps"] == summary["global_step"]
    assert summary["best_val_acc"] == max(r["val_acc"] for r in records)
    assert summary["final_val_acc"] == records[-1]["val_acc"]

    info = json.loads((workdir / "recipe.json").read_text())
    assert info["run"]["backend"] == "jax"
    assert info["run"]["versions"]["jax"] == jax.__version__
    assert "commit" in info["run"]["git"] and info["run"]["steps_per_epoch"] == tiny["steps"]
    # The dataset's description travels with the run (ensembles need no dataset to read it).
    dataset = open_dataset(tiny["data_dir"], tiny["config"])
    # The tiny corpus is built without a separator: its one stem is the mix, and training takes it.
    assert dataset.stems == ("mix",) and info["recipe"]["stem"] == "mix"
    record = dataset_record(dataset, "mix")
    assert info["run"][DATASET_KEY] == json.loads(json.dumps(record))
    assert record["label_names"] and record["feature_params"] and record["separator"] == "none"
    resolved = Recipe.from_json((workdir / "recipe.json").read_text())
    assert resolved.lr == 1e-3 and resolved.t0_epochs == 2 and resolved.precision == "fp32"

    assert (workdir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (events,) = (workdir / "tensorboard").glob("events.out.tfevents.*")
    payload = b"".join(tf_records(events))
    assert b"epoch_val/acc" in payload and b"train/loss" in payload and b"train/lr" in payload

    ckpts = ckpt_lib.Checkpoints(workdir)
    best_epoch = int(np.argmax([r["val_acc"] for r in records]))  # earliest on a tie
    assert ckpts.latest_step() == 2 * tiny["steps"]
    assert ckpts.best_step() == (best_epoch + 1) * tiny["steps"] == summary["best_step"]
    # Mid-epoch checkpoints (--checkpoint_every=2) were superseded and removed.
    assert ckpts.all_steps() == sorted({ckpts.best_step(), ckpts.latest_step()})
    meta = ckpts.read_meta(ckpts.latest_step())
    assert (meta["next_epoch"], meta["next_step"]) == (2, 0)
    leaves = jax.tree.leaves(_saved_params(workdir, ckpts.latest_step()))
    assert leaves and all(np.isfinite(x).all() for x in leaves)
    ckpts.close()


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tiny, tmp_path, monkeypatch):
    """Epoch 2 reads NaN mels: the run stops at its first step and epoch 1's checkpoint stays."""

    class Poisoned(data_lib.TrainBatches):
        def __getitem__(self, k):
            batch = super().__getitem__(k)
            if self.position(k)[0] == 1:
                batch["mel"] = np.full_like(batch["mel"], np.nan)
            return batch

    monkeypatch.setattr(data_lib, "TrainBatches", Poisoned)
    # mixup_fraction=1: one compiled step variant for both epochs (a cheaper test, same path).
    recipe = tiny_recipe(tiny, tmp_path, checkpoint_every=0, mixup_fraction=1.0)
    with pytest.raises(train_lib.TrainingError) as err:
        train_lib.train_and_evaluate(recipe)
    message = str(err.value)
    assert "NaN" in message and "epoch 2, step 0" in message
    assert f"last good checkpoint (step {tiny['steps']})" in message and "--lr" in message
    ckpts = ckpt_lib.Checkpoints(tmp_path)
    assert ckpts.all_steps() == [tiny["steps"]]
    leaves = jax.tree.leaves(_saved_params(tmp_path, tiny["steps"]))
    assert all(np.isfinite(x).all() for x in leaves)
    assert [r["epoch"] for r in _records(tmp_path)] == [0]
    ckpts.close()


def test_failed_checkpoint_write_reports_and_keeps_the_previous(tiny, tmp_path, monkeypatch):
    """Disk full at the third save: a clear error; the second checkpoint is intact and resumable."""
    saves = {"n": 0}
    real_save = ocp.CheckpointManager.save

    def save(self, step, *args, **kwargs):
        saves["n"] += 1
        if saves["n"] == 3:
            # What a full disk does to the write: the handler raises mid-way through the step.
            def full(*a, **k):
                raise OSError(28, "No space left on device")

            monkeypatch.setattr(ocp.handlers.JsonCheckpointHandler, "save", full)
            monkeypatch.setattr(ocp.handlers.JsonCheckpointHandler, "async_save", full)
        return real_save(self, step, *args, **kwargs)

    monkeypatch.setattr(ocp.CheckpointManager, "save", save)
    recipe = tiny_recipe(tiny, tmp_path, checkpoint_every=1, mixup_fraction=1.0)
    with pytest.raises(ckpt_lib.CheckpointError) as err:
        train_lib.train_and_evaluate(recipe)
    message = str(err.value)
    assert "checkpoint of step 3" in message and "No space left on device" in message
    assert "previous checkpoint (step 2) is intact" in message
    monkeypatch.undo()

    ckpts = ckpt_lib.Checkpoints(tmp_path)  # a new manager: what a rerun sees
    assert ckpts.latest_step() == 2
    meta = ckpts.read_meta(2)
    assert (meta["next_epoch"], meta["next_step"]) == (0, 2)
    ckpts.close()
    summary = train_lib.train_and_evaluate(recipe)  # resumes from step 2
    assert summary["latest_step"] == 2 * tiny["steps"]


def test_cli_with_defaults_builds_the_synthetic_dataset_first(tmp_path, monkeypatch, capsys):
    """No --data_dir and no --workdir: the default data dir ($VOCALGENRE_DATA_DIR) gets the
    dataset built (with a message), the run lands in runs/jax/<model>/fold0, and the closing
    lines say the accuracy and where everything is. (``synthetic_small`` stands in for the
    default ``synthetic``, which takes minutes to build; the code path is the same.)"""
    data_dir = tmp_path / "data"
    monkeypatch.setenv("VOCALGENRE_DATA_DIR", str(data_dir))
    monkeypatch.chdir(tmp_path)
    argv = ["--model=lstm", "--dataset=synthetic_small", "--epochs=1", "--batch_size=16"]
    assert train_lib.main([*argv, "--no_progress"]) == 0
    out, err = capsys.readouterr()
    assert f"dataset 'synthetic_small' is not built in {data_dir}: building it now" in err
    run_dir = Path("runs") / "jax" / "lstm" / "fold0"
    assert "validation accuracy: " in out and str(run_dir / "checkpoints") in out
    assert (tmp_path / run_dir / "curves.png").exists()
    assert [r["epoch"] for r in _records(tmp_path / run_dir)] == [0]
    assert open_dataset(data_dir, "synthetic_small").num_examples("train") == 60


def test_missing_dataset_says_how_to_build_it(tmp_path, capsys):
    argv = ["--model=lstm", "--dataset=folder", f"--data_dir={tmp_path}", f"--workdir={tmp_path}"]
    with pytest.raises(SystemExit) as exit_:
        run_main(train_lib.main, argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"python -m shared_data.build --config=folder --data_dir={tmp_path}" in err


def test_multi_host_flags_must_come_together():
    with pytest.raises(UserError, match="--process_id"):
        train_lib.initialize_distributed("localhost:1234", 2, None)
    assert train_lib.initialize_distributed() is False  # one process: nothing to join


# --- the pieces --------------------------------------------------------------------------------


def _fake_source(n: int) -> list[dict]:
    return [
        {"mel": np.full((128, 128), float(i), np.float32), "label": i % 3, "song_id": f"s{i // 2}"}
        for i in range(n)
    ]


def test_train_batches_follow_the_shared_order_and_shard_by_process():
    source, norm = _fake_source(20), data_lib.Normalizer(mean=1.0, std=2.0)
    train_idx = np.arange(3, 20)  # 17 clips, global batch 4: 4 steps, 1 clip dropped
    order = train_idx[splits.epoch_order(len(train_idx), 5, 2)]

    def rows(process_index, process_count, start_step=0):
        batches = data_lib.train_batches(
            source, order, global_batch=4, norm=norm, start_step=start_step,
            process_index=process_index, process_count=process_count,
        )  # fmt: skip
        return [np.rint(b["mel"][:, 0, 0, 0] * 2.0 + 1.0).astype(int).tolist() for b in batches]

    whole = rows(0, 1)
    assert whole == [order[4 * s : 4 * s + 4].tolist() for s in range(4)]
    assert rows(0, 2) == [b[:2] for b in whole] and rows(1, 2) == [b[2:] for b in whole]
    assert rows(0, 1, start_step=3) == whole[3:]  # a resumed epoch skips what was trained

    (first, *_) = data_lib.train_batches(source, order, global_batch=4, norm=norm)
    assert first["mel"].shape == (4, 128, 128, 1) and first["mel"].dtype == np.float32
    assert first["label"].tolist() == [int(i) % 3 for i in order[:4]]


def test_eval_batches_cover_every_clip_once_with_a_padding_mask():
    source, norm = _fake_source(10), data_lib.Normalizer(mean=0.0, std=1.0)
    val = np.array([1, 4, 6, 7, 9])
    batches = list(data_lib.eval_batches(source, val, global_batch=4, norm=norm))
    ids = np.concatenate([b["mel"][:, 0, 0, 0] for b in batches]).astype(int)
    mask = np.concatenate([b["mask"] for b in batches])
    assert ids[mask == 1].tolist() == val.tolist() and mask.tolist() == [1] * 5 + [0] * 3


def test_to_device_shards_the_batch_over_the_mesh():
    mesh = ts.make_mesh()
    source = _fake_source(8)
    batches = data_lib.train_batches(
        source, np.arange(8), global_batch=4, norm=data_lib.Normalizer(0.0, 1.0)
    )
    out = list(data_lib.to_device(batches, ts.batch_sharded(mesh)))
    assert len(out) == 2 and isinstance(out[0]["mel"], jax.Array)
    assert out[0]["mel"].sharding.is_equivalent_to(ts.batch_sharded(mesh), 4)
    np.testing.assert_array_equal(np.asarray(out[1]["mel"][:, 0, 0, 0]), [4, 5, 6, 7])


def test_training_data_uses_the_fold_split_and_dataset_statistics(tiny):
    dataset = open_dataset(tiny["data_dir"], tiny["config"])
    data = load_training_data(tiny_recipe(tiny, Path("unused")), dataset)
    folds, labels = splits.read_fold_labels(dataset.source("train"))
    assert set(folds[data.val_indices]) == {tiny["fold"]}
    assert tiny["fold"] not in set(folds[data.train_indices])
    assert data.val_labels.tolist() == labels[data.val_indices].tolist()
    assert data.steps_per_epoch == tiny["steps"] and data.num_classes == 3
    assert data.stem == "mix" and data.mel_mean == dataset.metadata["mel_stats"]["mix"]["mean"]
    order = data.epoch_order(1)
    assert sorted(order.tolist()) == data.train_indices.tolist()
    assert not np.array_equal(order, data.epoch_order(0))


def test_metrics_logger_drops_the_records_a_resumed_run_redoes(tmp_path):
    logger = metrics_log.MetricsLogger(tmp_path)
    for epoch in range(3):
        logger.log_epoch({"epoch": epoch, "val_acc": 0.5 + epoch / 10, "train_loss": 1.0}, step=1)
    logger.close()
    metrics_log.MetricsLogger(tmp_path, resume_epoch=1).close()
    assert [r["epoch"] for r in metrics_log.read_metrics(tmp_path)] == [0]
    assert metrics_log.plot_curves(tmp_path).read_bytes()[:4] == b"\x89PNG"
    metrics_log.MetricsLogger(tmp_path, enabled=False, resume_epoch=0).close()  # not process 0
    assert len(metrics_log.read_metrics(tmp_path)) == 1


def test_checkpoints_keep_the_latest_and_the_best(tmp_path):
    state = {"w": jnp.arange(3.0), "step": jnp.zeros((), jnp.int32)}
    ckpts = ckpt_lib.Checkpoints(tmp_path)
    for step, val_acc in ((2, None), (4, 0.5), (6, None), (8, 0.4), (10, None)):
        ckpts.save(step, {**state, "w": state["w"] + step}, {"step": step}, val_acc=val_acc)
    assert ckpts.all_steps() == [4, 10] and ckpts.best_step() == 4 and ckpts.latest_step() == 10
    restored, meta = ckpts.restore(4, ckpt_lib.abstract_like(state))
    np.testing.assert_array_equal(restored["w"], np.arange(3.0) + 4)
    assert meta == {"step": 4}
    ckpts.close()
    assert not [p for p in os.listdir(tmp_path / "checkpoints") if "tmp" in p]


def test_all_finite_detects_nan():
    assert bool(ts.all_finite({"a": jnp.ones(3), "n": jnp.zeros((), jnp.int32)}))
    assert not bool(ts.all_finite({"a": jnp.array([1.0, jnp.nan])}))


def test_cv_trains_every_fold_and_reports_mean_and_std(tmp_path, capsys, monkeypatch):
    """The K-fold driver with a stand-in trainer: fold recipes, directories and the statistics."""
    seen = []

    def fake_train(recipe, workdir, hooks=()):
        seen.append((recipe.fold, recipe.workdir, workdir))
        best = [0.9, 0.8, 0.7][recipe.fold]
        return {"best_val_acc": best, "final_val_acc": best - 0.1, "best_epoch": 1,
                "workdir": workdir, "fold": recipe.fold}  # fmt: skip

    recipe = Recipe(model="lstm", folds=3, workdir=str(tmp_path))
    summary = cv_lib.run_cv(recipe, train=fake_train)
    assert seen == [(k, str(tmp_path / f"fold{k}"), str(tmp_path / f"fold{k}")) for k in range(3)]
    assert summary["best_val_acc_mean"] == pytest.approx(0.8)
    assert summary["best_val_acc_std"] == pytest.approx(0.1)  # sample std (ddof=1)
    assert summary["final_val_acc_mean"] == pytest.approx(0.7)
    assert json.loads((tmp_path / "cv.json").read_text()) == summary
    assert "0.8000 +- 0.1000" in cv_folds.format_summary(summary)
