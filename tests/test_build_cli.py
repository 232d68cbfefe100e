"""python -m shared_data.build: summary, report, gallery, --strict and user errors (exit 2)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from shared_data.cli import run_main
from shared_data.dataset.build_cli import main
from shared_data.dataset.configs import DATASET_VERSION
from tests.support.builder_inputs import load_report, make_gtzan_tree


def _run_in_process(argv: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        run_main(main, argv)
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--config=nope"], "argument --config: invalid choice: 'nope'"),
        (["--config=folder", "--input={tmp}/missing"], "input folder {tmp}/missing does not exist"),
        (["--config=csv", "--input={tmp}/missing.csv"], "CSV manifest {tmp}/missing.csv does not"),
        (["--config=folder"], "config 'folder' needs audio: pass --input=PATH"),
        (["--config=synthetic", "--input={tmp}"], "--input is not used by the synthetic config"),
        (["--config=synthetic", "--folds=1"], "--folds must be an integer >= 2"),
        (
            ["--config=synthetic", "--separator=none", "--stem=vocals"],
            "separator 'none' produces only the mix",
        ),
        (["--config=synthetic", "--separator=nosuch"], "unknown separator 'nosuch'"),
    ],
)
def test_user_errors_exit_2_with_a_message(argv, message, tmp_path: Path, capsys) -> None:
    argv = [a.format(tmp=tmp_path) for a in argv] + [f"--data_dir={tmp_path / 'data'}"]
    code, out, err = _run_in_process(argv, capsys)
    assert code == 2
    assert message.format(tmp=tmp_path) in err
    assert "Traceback" not in err
    assert not (tmp_path / "data" / "vocal_mels").exists()  # refused before TFDS started


def test_folder_build_prints_summary_report_and_gallery(tmp_path: Path) -> None:
    make_gtzan_tree(tmp_path / "in")
    data, png = tmp_path / "data", tmp_path / "out" / "gallery.png"
    cmd = [sys.executable, "-m", "shared_data.build", "--config=folder", f"--input={tmp_path}/in"]
    cmd += [f"--data_dir={data}", f"--gallery={png}", "--folds=4", "--separator=none", "--stem=mix"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert f"vocal_mels/folder/{DATASET_VERSION}: built in" in out
    assert "files: 7 seen, 4 ok, 3 rejected" in out
    assert "clips: train 10 (jazz 5, rock 5), test 0" in out
    assert "stems mix, 4 folds" in out
    assert "jazz/corrupt.wav: not an audio file" in out
    assert "rock/short.wav: too short" in out
    report_path = data / "vocal_mels" / "folder" / DATASET_VERSION / "build_report.json"
    assert f"report:  {report_path}" in out and load_report(report_path)["files_rejected"] == 3
    assert f"gallery: {png}" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "vocal_mels/folder" in proc.stderr  # the progress bar counts songs

    again = subprocess.run(cmd, capture_output=True, text=True)
    assert again.returncode == 0
    assert "already built with these settings and inputs; reused" in again.stdout


def test_strict_build_fails_with_exit_2_listing_files(tmp_path: Path, capsys) -> None:
    make_gtzan_tree(tmp_path / "in")
    argv = [
        "--config=folder",
        f"--input={tmp_path}/in",
        f"--data_dir={tmp_path}/data",
        "--separator=none",
        "--stem=mix",
    ]
    code, _, err = _run_in_process(argv + ["--strict", "--no_progress"], capsys)
    assert code == 2
    assert "--strict: 3 of 7 input files were rejected" in err
    assert "stray.wav: not inside a label folder" in err
    assert "Traceback" not in err


def test_an_unwritable_gallery_is_refused_before_anything_is_built(tmp_path: Path, capsys) -> None:
    a_file = tmp_path / "taken"
    a_file.write_text("not a folder")
    gallery = a_file / "gallery.png"
    argv = ["--config=synthetic_small", f"--data_dir={tmp_path / 'data'}", "--separator=none",
            f"--gallery={gallery}", "--no_progress"]  # fmt: skip
    code, out, err = _run_in_process(argv, capsys)
    assert code == 2 and out == ""
    assert (
        err
        == f"error: --gallery={gallery}: {a_file} is a file, not a folder; pass another --gallery\n"
    )
    assert not (tmp_path / "data").exists()  # no dataset, no song cache, no folder made
