"""What both training loops must do alike, each test run on both backends; and the run
directory's robustness: unreadable checkpoints, a locked or unusable workdir, one-line errors.

Whole runs use :mod:`tests.support.tiny_runs` (``lstm``, batch 4, a few steps per epoch).
"""

from __future__ import annotations

import inspect
import json
import shutil
from pathlib import Path

import pytest

from shared_data.architecture.names import MODEL_NAMES
from shared_data.cli import run_main
from shared_data.training.lock import RunLock, RunLockedError
from shared_data.training.loop import SUMMARY_KEYS, TrainingError
from shared_data.training.metrics_log import (
    EPOCH_SCALARS,
    RECORD_FIELDS,
    TRAIN_SCALARS,
    read_metrics,
)
from shared_data.training.resume_check import CheckpointError
from shared_data.training.run_state import CheckpointMeta
from shared_data.training.runinfo import read_run_info
from shared_data.training.train_cli import BACKEND_ONLY_FLAGS
from tests.support.tensorboard import scalars, tags
from tests.support.tiny_runs import checkpoint_module, run, tiny_recipe, train_module

BACKENDS = ("jax", "torch")


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture
def tiny(backend, request) -> dict:
    return request.getfixturevalue(f"{backend}_tiny")


@pytest.fixture
def full_run(backend, request) -> dict:
    return request.getfixturevalue(f"{backend}_full_run")


def _metrics(workdir: Path) -> list[dict]:
    lines = (Path(workdir) / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k != "time_s"} for x in lines]


# --- the same behaviour in both backends -------------------------------------------------------


def test_one_signature_and_one_summary_schema(full_run, backend):
    params = inspect.signature(train_module(backend).train_and_evaluate).parameters
    assert list(params)[:4] == ["recipe", "workdir", "dataset", "hooks"]
    assert [k for k in params if k not in ("recipe", "workdir", "dataset", "hooks")] == (
        ["compile_model"] if backend == "torch" else []
    )  # torch's --compile, the one backend-only option
    summary = full_run["summary"]
    assert tuple(summary) == SUMMARY_KEYS
    assert summary["epochs_done"] == 2 and summary["latest_step"] == summary["global_step"]
    assert summary["best_checkpoint"] is not None and Path(summary["best_checkpoint"]).exists()


def test_one_run_format(full_run, tiny, backend):
    """The checkpoint meta, recipe.json's run fields, metrics.jsonl and the TensorBoard scalars
    have the same keys and meanings from both backends."""
    workdir, summary, spe = full_run["workdir"], full_run["summary"], tiny["steps"]
    ckpts = checkpoint_module(backend).Checkpoints(workdir)
    meta = ckpts.read_meta("latest")
    ckpts.close()
    state = CheckpointMeta.from_dict(meta)
    assert set(meta) == set(state.to_dict())  # the current keys, nothing else
    assert (state.run.epoch, state.run.step, state.run.global_step) == (2, 0, 2 * spe)
    best = (summary["best_val_acc"], summary["best_epoch"])
    assert (state.run.best_val_acc, state.run.best_epoch) == best

    run_info = read_run_info(workdir)
    fields = run_info.fields
    assert set(fields.to_dict()) <= set(run_info.run)
    assert not {"num_train", "num_val", "world_size", "device", "compile"} & set(run_info.run)
    assert (fields.steps_per_epoch, fields.processes, fields.platform) == (spe, 1, "cpu")
    assert fields.device_kind == "cpu" and fields.train_clips // 4 == spe and fields.val_clips > 0
    assert fields.backend_options == ({"compile": False} if backend == "torch" else {})

    records = read_metrics(workdir)
    assert all(set(r) == set(RECORD_FIELDS) for r in records)  # every epoch validated
    assert tags(workdir) == set(TRAIN_SCALARS) | set(EPOCH_SCALARS.values())
    # train/ points (--log_every=1: one per step) are means over the steps since the previous
    # point, so an epoch's points average to its train_loss/train_acc (batches of equal size).
    for name in ("loss", "acc"):
        points = scalars(workdir, f"train/{name}")
        assert sorted(points) == list(range(1, 2 * spe + 1))
        for r in records:
            window = [points[g] for g in range(r["epoch"] * spe + 1, (r["epoch"] + 1) * spe + 1)]
            assert sum(window) / spe == pytest.approx(r[f"train_{name}"], rel=1e-5, abs=1e-6)


def test_a_finished_run_is_not_trained_again(full_run, tiny):
    before = (full_run["workdir"] / "metrics.jsonl").read_text()
    summary, seen = run(tiny, tiny_recipe(tiny, full_run["workdir"]))
    assert seen == [] and summary["epochs_done"] == 2
    assert (full_run["workdir"] / "metrics.jsonl").read_text() == before
    assert summary["best_val_acc"] == full_run["summary"]["best_val_acc"]
    assert summary["final_val_acc"] == full_run["summary"]["final_val_acc"]


def test_resume_refuses_a_different_recipe(full_run, tiny, backend):
    with pytest.raises(CheckpointError, match="--lr: 0.001 -> 0.01"):
        train_module(backend).train_and_evaluate(tiny_recipe(tiny, full_run["workdir"], lr=0.01))


def test_resume_false_refuses_a_workdir_with_a_checkpoint(full_run, tiny, backend):
    with pytest.raises(TrainingError, match="--resume=false"):
        train_module(backend).train_and_evaluate(
            tiny_recipe(tiny, full_run["workdir"], resume=False)
        )


def test_unknown_model_lists_the_valid_names(backend, capsys):
    with pytest.raises(SystemExit) as exit_:
        run_main(train_module(backend).main, ["--model=resnet9000"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "resnet9000" in err and all(name in err for name in MODEL_NAMES)
    assert "Traceback" not in err


def test_both_clis_accept_the_same_flags():
    """Every option of one train CLI exists in the other, except the documented backend-only
    ones (:data:`BACKEND_ONLY_FLAGS`, each with its reason)."""
    options = {}
    for backend in BACKENDS:
        parser = train_module(backend).build_parser()
        options[backend] = {s for a in parser._actions for s in a.option_strings} - {"-h"}
    only = {b: options[b] - options[other] for b, other in (("jax", "torch"), ("torch", "jax"))}
    assert only == {b: set(flags) for b, flags in BACKEND_ONLY_FLAGS.items()}
    assert all(BACKEND_ONLY_FLAGS[b][f] for b in BACKENDS for f in BACKEND_ONLY_FLAGS[b])
    assert "--no_progress" in options["torch"] and "--no_progress" in options["jax"]


# --- broken run directories ------------------------------------------------------------------


def _corrupt_latest(backend: str, workdir: Path) -> Path:
    """Truncate the latest checkpoint's data (orbax: the array data files; torch: latest.pt)."""
    ckpts = checkpoint_module(backend).Checkpoints(workdir)
    path = ckpts.path("latest")
    ckpts.close()
    files = [path] if path.is_file() else sorted((path / "state").rglob("d/*"))
    for f in files:
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 3])
    return path


def test_an_unreadable_latest_checkpoint_is_skipped_and_the_run_resumes(
    full_run, tiny, backend, tmp_path, capfd
):
    """Killed mid-epoch 2 (latest: mid-epoch; best: end of epoch 1), then the latest checkpoint
    is truncated: the rerun warns naming it, resumes from the end of epoch 1 and finishes with the
    uninterrupted run's metrics."""
    # One mid-epoch checkpoint, at the first step of epoch 2 (fewer saves: a cheaper test).
    recipe = tiny_recipe(tiny, tmp_path, checkpoint_every=tiny["steps"] + 1)
    run(tiny, recipe, kill_at=tiny["steps"] + 2)
    broken = _corrupt_latest(backend, tmp_path)
    capfd.readouterr()
    summary, seen = run(tiny, recipe)
    err = capfd.readouterr().err
    assert f"skipping the unreadable checkpoint {broken}" in err or f"checkpoint {broken}" in err
    assert "cannot be read" in err and f"from step {tiny['steps']}" in err
    assert seen[0][:2] == (1, 0)  # epoch 2 from its first step
    assert summary["global_step"] == 2 * tiny["steps"]
    assert _metrics(tmp_path) == _metrics(full_run["workdir"])
    assert (tmp_path / "unreadable_checkpoints").is_dir()  # set aside, not deleted


def test_a_second_training_on_a_locked_workdir_is_refused(tiny, backend, tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(RunLockedError) as err:
            train_module(backend).train_and_evaluate(tiny_recipe(tiny, tmp_path))
    message = str(err.value)
    assert str(tmp_path / ".train.lock") in message and "pid " in message and "host " in message


def test_a_stale_lock_file_does_not_block(tmp_path):
    """A lock file left by a killed process holds no flock: the next training takes it."""
    (tmp_path / ".train.lock").write_text("pid 999999 on host gone, started long ago\n")
    with RunLock(tmp_path) as lock:
        assert "pid " in lock.path.read_text() and "999999" not in lock.path.read_text()
    with RunLock(tmp_path), pytest.raises(RunLockedError):
        RunLock(tmp_path).acquire()


def test_a_workdir_that_is_a_file_is_refused(backend, tmp_path, capsys):
    path = tmp_path / "run.txt"
    path.write_text("not a directory")
    with pytest.raises(SystemExit) as exit_:
        run_main(train_module(backend).main, ["--model=lstm", f"--workdir={path}"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"--workdir={path} is a file, not a directory" in err and "Traceback" not in err
    assert path.read_text() == "not a directory"


def test_no_readable_checkpoint_stops_with_one_message(full_run, tiny, backend, tmp_path):
    shutil.copytree(full_run["workdir"], tmp_path / "run")
    ckpts = checkpoint_module(backend).Checkpoints(tmp_path / "run")
    paths = [ckpts.path(w) for w in ("latest", "best")]
    ckpts.close()
    for p in set(paths):
        for f in [p] if p.is_file() else (p / "state").rglob("d/*"):
            f.write_bytes(b"")
    with pytest.raises(CheckpointError, match="no checkpoint in .* can be read"):
        train_module(backend).train_and_evaluate(tiny_recipe(tiny, tmp_path / "run"))


# --- one message, no traceback ----------------------------------------------------------------

FULL_DISK_CHILD = """
import errno, sys
from orbax.checkpoint._src.serialization import serialization


async def full_disk(*args, **kwargs):  # what tensorstore's array writes do on a full disk
    raise OSError(errno.ENOSPC, "No space left on device")


serialization.async_serialize_from_host = full_disk
from shared_data.cli import run_main
from jax_impl.train import main

run_main(main, sys.argv[1:])
"""


def test_a_full_disk_during_a_jax_checkpoint_is_one_message(jax_tiny, tmp_path):
    """Every array write of the first checkpoint fails with ENOSPC: the CLI prints the one
    error line (naming the step, the directory and the fix) and exits 2; orbax's per-array
    error logs and asyncio's "never retrieved" tracebacks do not reach the terminal."""
    import os
    import subprocess
    import sys

    from tests.support.tiny_runs import tiny_flags

    script = tmp_path / "child.py"
    script.write_text(FULL_DISK_CHILD)
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    done = subprocess.run(
        [sys.executable, str(script), *tiny_flags(jax_tiny, tmp_path / "run"), "--no_progress"],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-3000:]
    err = done.stderr
    assert "Traceback" not in err and "never retrieved" not in err, err[-3000:]
    (error,) = [line for line in err.splitlines() if line.startswith("error:")]
    assert "writing the checkpoint of step 2" in error and "No space left on device" in error
    assert "there is no earlier checkpoint" in error and "Free disk space" in error
    assert len(err.splitlines()) <= 3, err  # the start line, the error (and nothing else)
