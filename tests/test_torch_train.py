"""The torch reference training loop on a tiny dataset built by the real builder.

Model ``lstm`` (the cheapest on the CPU, and its time axis is free), on 3 genres x 2 songs x 2 s cut
into 0.5-s clips of 16 frames (the builder's feature parameters make the input tiny, not the
architecture), batch 4: an epoch is a few optimizer steps of ~0.1 s.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from shared_data.dataset import splits
from shared_data.dataset.opened import open_dataset
from shared_data.ensemble.members import DATASET_KEY, dataset_record
from shared_data.errors import DataError, UserError
from shared_data.training import cross_validation as cv_folds
from shared_data.training.recipe import Recipe
from tests.support import tiny_runs
from tests.support.tiny_runs import tiny_recipe
from torch_ref import checkpoint as ckpt_lib
from torch_ref import cv as cv_lib
from torch_ref import train as train_lib
from torch_ref import train_step as steps_lib
from torch_ref.data import EpochBatchSampler


@pytest.fixture
def tiny(torch_tiny) -> dict:
    return torch_tiny


@pytest.fixture
def full_run(torch_full_run) -> dict:
    return torch_full_run


def recipe(tiny: dict, workdir: Path, **overrides) -> Recipe:
    return tiny_recipe(tiny, workdir, **overrides)


def _payload(workdir: Path, which: str) -> dict:
    """The whole dict of checkpoint file ``which`` (state and meta)."""
    return ckpt_lib.load(ckpt_lib.Checkpoints(workdir).path(which))


def run(recipe_: Recipe, kill_at: int | None = None) -> tuple[dict | None, list]:
    return tiny_runs.run({"backend": "torch"}, recipe_, kill_at)


def test_run_directory_outputs(full_run, tiny):
    workdir = full_run["workdir"]
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1]
    for r in records:
        assert 0.0 <= r["val_acc"] <= 1.0 and np.isfinite(r["val_loss"])
        assert 0.0 <= r["val_song_acc"] <= 1.0  # the same keys as jax_impl.train writes
        assert np.isfinite(r["train_loss"]) and r["lr"] > 0
    assert [r["mixup"] for r in records] == [True, False]  # Mixup for the first half only
    assert records[-1]["step"] == 2 * tiny["steps"]
    assert full_run["summary"]["best_val_acc"] == max(r["val_acc"] for r in records)
    assert full_run["summary"]["final_val_song_acc"] == records[-1]["val_song_acc"]

    info = json.loads((workdir / "recipe.json").read_text())
    assert info["run"]["backend"] == "torch"
    assert info["run"]["versions"]["torch"] == torch.__version__.split("+")[0]
    assert "commit" in info["run"]["git"]
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
    assert list((workdir / "tensorboard").glob("events.out.tfevents.*"))
    latest = _payload(workdir, "latest")
    best = _payload(workdir, "best")
    where = (latest["next_epoch"], latest["next_step"], latest["global_step"])
    assert where == (2, 0, 2 * tiny["steps"])
    assert best["best_val_acc"] == full_run["summary"]["best_val_acc"]
    assert set(latest) >= {"model", "optimizer", "scheduler", "rng", "recipe"}


def test_data_order_follows_the_seed_and_epoch(full_run, tiny):
    seen = full_run["seen"]
    data = open_dataset(tiny["data_dir"], tiny["config"]).source("train")
    folds, _ = splits.read_fold_labels(data)
    train_idx, _ = splits.fold_split(folds, tiny["fold"], 5)
    for epoch, step, _, indices in seen:
        order = splits.epoch_order(len(train_idx), 3, epoch)
        expected = train_idx[splits.batch_indices(order, step, 4)]
        assert indices == expected.tolist()
    assert seen[0][3] != seen[tiny["steps"]][3]  # epochs are shuffled differently


def test_killed_mid_epoch_resumes_at_the_same_step_and_order(full_run, tiny, tmp_path):
    r = recipe(tiny, tmp_path, checkpoint_every=1)
    kill_at = tiny["steps"] + 2  # second step of the second epoch, after the save at step +1
    _, before = run(r, kill_at=kill_at)
    latest = _payload(tmp_path, "latest")
    where = (latest["next_epoch"], latest["next_step"], latest["global_step"])
    assert where == (1, 1, tiny["steps"] + 1)

    summary, after = run(r)
    assert [(e, s) for e, s, _, _ in after][0] == (1, 1)  # continues where the checkpoint was
    uninterrupted = {(e, s): idx for e, s, _, idx in full_run["seen"]}
    for e, s, _, idx in before + after:
        assert idx == uninterrupted[(e, s)]
    assert summary["global_step"] == full_run["summary"]["global_step"]

    # Same model bit for bit, same metrics (timing aside).
    a = _payload(full_run["workdir"], "latest")["model"]
    b = _payload(tmp_path, "latest")["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    def metrics(workdir):
        lines = (Path(workdir) / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(x).items() if k != "time_s"} for x in lines]

    assert metrics(tmp_path) == metrics(full_run["workdir"])


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tiny, tmp_path, monkeypatch):
    real = steps_lib.soft_cross_entropy
    calls = {"n": 0}
    saved: dict[str, bytes] = {}

    def poisoned(logits, targets):
        calls["n"] += 1
        if calls["n"] == tiny["steps"] + 1:  # first step of epoch 2: remember the good checkpoint
            saved["latest"] = (tmp_path / "checkpoints" / "latest.pt").read_bytes()
        loss = real(logits, targets)
        return loss * float("nan") if calls["n"] > tiny["steps"] else loss

    monkeypatch.setattr(steps_lib, "soft_cross_entropy", poisoned)
    with pytest.raises(train_lib.TrainingError) as err:
        train_lib.train_and_evaluate(recipe(tiny, tmp_path, checkpoint_every=0, log_every=100))
    message = str(err.value)
    assert "NaN" in message and "last good checkpoint" in message and "--lr" in message
    latest = tmp_path / "checkpoints" / "latest.pt"
    assert latest.read_bytes() == saved["latest"]
    state = ckpt_lib.load(latest)
    assert state["next_epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 1


def test_missing_dataset_says_how_to_build_it(tmp_path):
    # A synthetic config is built when missing; one that reads input files cannot be.
    data_dir = tmp_path / "empty"
    r = Recipe(model="lstm", dataset="folder", data_dir=str(data_dir), workdir=str(tmp_path / "r"))
    with pytest.raises(DataError) as err:
        train_lib.train_and_evaluate(r)
    assert f"python -m shared_data.build --config=folder --data_dir={data_dir}" in str(err.value)


def test_failed_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "latest.pt"
    ckpt_lib.save_atomic({"epoch": 1, "w": torch.ones(3)}, path)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(ckpt_lib.CheckpointError) as err:
        ckpt_lib.save_atomic({"epoch": 2, "w": torch.zeros(3)}, path)
    assert "No space left" in str(err.value) and "intact" in str(err.value)
    assert isinstance(err.value, UserError)
    state = ckpt_lib.load(path)
    assert state["epoch"] == 1 and torch.equal(state["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["latest.pt"]  # no temporary file left


def test_cv_trains_every_fold_and_reports_mean_and_std(tiny, tmp_path, capsys):
    root = tmp_path / "cv"
    argv = [
        "--model=lstm",
        f"--dataset={tiny['config']}",
        f"--data_dir={tiny['data_dir']}",
        f"--workdir={root}",
        "--epochs=1",
        "--batch_size=4",
        "--log_every=100",
    ]
    assert cv_lib.main(argv) == 0
    summary = json.loads((root / "cv.json").read_text())
    assert [r["fold"] for r in summary["per_fold"]] == [0, 1, 2, 3, 4]
    accs = []
    for k in range(5):
        records = [
            json.loads(x) for x in (root / f"fold{k}" / "metrics.jsonl").read_text().splitlines()
        ]
        assert len(records) == 1
        accs.append(records[0]["val_acc"])
        assert json.loads((root / f"fold{k}" / "recipe.json").read_text())["recipe"]["fold"] == k
    assert summary["best_val_acc_mean"] == pytest.approx(np.mean(accs))
    assert summary["best_val_acc_std"] == pytest.approx(np.std(accs, ddof=1))
    out = capsys.readouterr().out
    assert "+-" in out and str(root / "cv.json") in out


def test_cv_mean_and_sample_std():
    per_fold = [
        {"fold": k, "best_val_acc": a, "final_val_acc": a - 0.1}
        for k, a in enumerate((0.5, 0.7, 0.9))
    ]
    s = cv_folds.summarize("torch", "lstm", per_fold)
    assert s["best_val_acc_mean"] == pytest.approx(0.7)
    assert s["best_val_acc_std"] == pytest.approx(0.2)
    assert s["final_val_acc_mean"] == pytest.approx(0.6)
    assert cv_folds.mean_std([0.8]) == (0.8, 0.0)


def test_epoch_batch_sampler_resumes_mid_epoch_and_shards_by_rank():
    full = EpochBatchSampler(30, 8, seed=5)
    full.set_epoch(2)
    batches = list(full)
    assert len(batches) == len(full) == 3 and all(len(b) == 8 for b in batches)
    resumed = EpochBatchSampler(30, 8, seed=5)
    resumed.set_epoch(2, start_step=1)
    assert list(resumed) == batches[1:] and len(resumed) == 2
    ranks = [EpochBatchSampler(30, 8, seed=5, rank=r, world=2) for r in range(2)]
    for s in ranks:
        s.set_epoch(2)
    for step, (a, b) in enumerate(zip(*(list(s) for s in ranks), strict=True)):
        assert a + b == batches[step]


def test_ddp_on_two_processes_matches_one_process(tiny, tmp_path):
    """torchrun with 2 gloo processes: each reads its half of every global batch and DDP averages
    the gradients, so without per-rank random draws (Mixup and masks off) and without BatchNorm
    (lstm) the run equals the single-process one up to float summation order. SGD keeps that
    difference proportional (Adam would turn a sign flip of a ~0 gradient into a full step).
    The DDP run also accumulates 2 micro-batches per step (``--micro_batch_size=2``: one example
    per process each, all-reduced once per step under ``no_sync``), which changes the summation
    order only."""
    flags = [
        "--model=lstm",
        f"--dataset={tiny['config']}",
        f"--data_dir={tiny['data_dir']}",
        f"--fold={tiny['fold']}",
        "--epochs=1",
        "--batch_size=4",
        "--optimizer=sgd",
        "--mixup_alpha=0",
        "--num_time_masks=0",
        "--num_freq_masks=0",
        "--log_every=100",
    ]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [
            *cmd,
            "-m",
            "torch_ref.train",
            *flags,
            "--micro_batch_size=2",
            f"--workdir={tmp_path / 'ddp'}",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert train_lib.main([*flags, f"--workdir={tmp_path / 'single'}"]) == 0

    info = json.loads((tmp_path / "ddp" / "recipe.json").read_text())
    assert (info["run"]["devices"], info["run"]["processes"]) == (2, 2)
    assert info["recipe"]["micro_batch_size"] == 2
    a = _payload(tmp_path / "ddp", "latest")
    b = _payload(tmp_path / "single", "latest")
    assert a["global_step"] == b["global_step"] == tiny["steps"]
    for k in b["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=1e-5, atol=1e-6)
    ma, mb = (json.loads((tmp_path / d / "metrics.jsonl").read_text()) for d in ("ddp", "single"))
    assert ma["val_acc"] == mb["val_acc"]
    # Each rank scores its own clips; the per-song probability sums are all-reduced before the vote.
    assert ma["val_song_acc"] == mb["val_song_acc"]
    assert ma["val_loss"] == pytest.approx(mb["val_loss"], rel=1e-5)
    assert ma["train_loss"] == pytest.approx(mb["train_loss"], rel=1e-5)


def test_fold_count_must_match_the_dataset(tiny, tmp_path):
    with pytest.raises(DataError, match="built with 5 folds but --folds=3; pass --folds=5"):
        train_lib.train_and_evaluate(recipe(tiny, tmp_path, folds=3, fold=0))


def test_a_missing_synthetic_dataset_is_built_first_as_in_jax(tmp_path, monkeypatch):
    """torch_ref.train with the defaults builds the synthetic corpus like jax_impl.train (the
    shared ``dataset_access``); the build itself is stubbed here, jax's test runs a real one."""
    from shared_data.dataset import builder
    from shared_data.errors import DataError
    from shared_data.training.recipe import Recipe
    from torch_ref import runtime

    built, said = [], []
    monkeypatch.setattr(builder, "build_dataset", lambda *a, **k: built.append(a))
    recipe = Recipe(dataset="synthetic_small", data_dir=str(tmp_path))
    with pytest.raises(DataError):  # the stub built nothing, so opening still fails
        runtime.open_or_build_dataset(recipe, log=said.append)
    assert built == [(str(tmp_path), "synthetic_small")]
    assert said[0].startswith(f"dataset 'synthetic_small' is not built in {tmp_path}")
    with pytest.raises(DataError, match="python -m shared_data.build --config=folder"):
        runtime.open_or_build_dataset(dataclasses.replace(recipe, dataset="folder"))
    assert len(built) == 1  # a config that reads input files is never built on its own
