"""Output paths are checked before the work, and a failed write is one line naming the flag.

The CLI checks run with members, songs and datasets that do not exist: the refusal must come
first, so these tests need no trained run and no audio.
"""

from __future__ import annotations

import errno
import os

import pytest

from jax_impl import cv as jax_cv
from jax_impl import evaluate as jax_evaluate
from jax_impl import predict as jax_predict
from shared_data.destinations import check_dir_destination, check_file_destination, write_failure
from shared_data.errors import DataError
from torch_ref import cv as torch_cv


@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "plain.txt"
    path.write_text("not a folder")
    return path


def test_a_destination_under_a_file_is_refused_naming_the_flag(a_file):
    with pytest.raises(DataError, match=rf"--csv={a_file}/x\.csv: {a_file} is a file, not a"):
        check_file_destination(a_file / "x.csv", "--csv")
    with pytest.raises(DataError, match=r"--out=.*plain.txt/a/b: .*plain.txt is a file"):
        check_dir_destination(a_file / "a" / "b", "--out")
    with pytest.raises(DataError, match="is a file, not a folder; pass another --out"):
        check_dir_destination(a_file, "--out")
    with pytest.raises(DataError, match="is a folder; pass a file path to --csv"):
        check_file_destination(a_file.parent, "--csv")


def test_destinations_that_can_be_made_pass_and_nothing_is_created(tmp_path):
    assert check_file_destination(tmp_path / "new" / "deeper" / "s.csv", "--csv").name == "s.csv"
    assert check_dir_destination(tmp_path / "report", "--out") == tmp_path / "report"
    assert sorted(tmp_path.iterdir()) == []


def test_an_unwritable_folder_is_refused(tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    # As root (CI) every folder is writable: the permission answer is what is under test.
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: real_access(p, mode) and p != locked)
    with pytest.raises(DataError, match="locked is not writable; pass another --out"):
        check_dir_destination(locked / "report", "--out")


def test_write_failures_have_one_wording():
    full = OSError(errno.ENOSPC, "No space left on device", "/d/x.npz")
    assert write_failure(full, "--out", "/d") == (
        "no space left on the device while writing under --out=/d (/d/x.npz); "
        "free some space or pass another --out"
    )
    denied = OSError(errno.EACCES, "Permission denied")
    assert write_failure(denied, "--workdir") == (
        "permission denied while writing under --workdir; pass another --workdir"
    )


@pytest.mark.parametrize(
    ("main", "flag", "extra"),
    [
        (jax_predict.main, "--csv", ["/no/such/song.wav"]),
        (jax_evaluate.main, "--out", []),
        (jax_cv.main, "--workdir", ["--model=lstm"]),
        (torch_cv.main, "--workdir", ["--model=lstm"]),
    ],
    ids=["predict", "evaluate", "jax-cv", "torch-cv"],
)
def test_clis_refuse_a_bad_destination_before_any_work(main, flag, extra, a_file, tmp_path):
    members = f"--members={tmp_path / 'no_such_run'}"
    argv = [*extra, f"{flag}={a_file / 'sub'}"]
    if main in (jax_predict.main, jax_evaluate.main):
        argv.insert(0, members)
    # The members, songs and dataset do not exist: only a check made first names the flag.
    with pytest.raises(DataError, match=rf"{flag}=.*plain.txt/sub: .*is a file"):
        main(argv)
