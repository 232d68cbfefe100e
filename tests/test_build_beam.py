"""The per-song stage on Apache Beam: a build with ``--workers=2`` (DirectRunner, 2 processes)
writes the same records, metadata and report as the single-process build, reports a corrupt file
by name the same way, and counts only earlier builds' songs as reused. ``--separator=none`` keeps
these fast; the stage runs the same code for Spleeter (``BENCHMARKS.md`` has that measured)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from shared_data.audio.decode import write_wav
from shared_data.dataset import builder as B
from shared_data.dataset.build_cli import main as build_main
from shared_data.dataset.builder import build_dataset
from shared_data.dataset.opened import open_dataset
from shared_data.dataset.stage import BEAM_INSTALL, beam_argv
from shared_data.errors import DataError
from tests.support.builder_inputs import load_report

needs_beam = pytest.mark.skipif(
    importlib.util.find_spec("apache_beam") is None, reason=f"needs the beam extra: {BEAM_INSTALL}"
)
QUIET = {"progress": False, "separator": "none", "stem": "mix"}
TIMING = ("seconds",)  # report fields that measure the run, not the data


def _records_in_order(root: Path, config: str, split: str = "train") -> list[dict]:
    source = open_dataset(root, config).source(split, stem="mix")
    return [source[i] for i in range(len(source))]


def _assert_same_in_order(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b) > 0
    for i, (ra, rb) in enumerate(zip(a, b, strict=True)):
        fields = ["clip_index", "fold", "label", "mel", "mix_dbfs", "song_id"]
        assert sorted(ra) == sorted(rb) == fields
        assert np.asarray(ra["mel"]).tobytes() == np.asarray(rb["mel"]).tobytes(), i
        for field in ("label", "song_id", "clip_index", "fold", "mix_dbfs"):
            assert ra[field] == rb[field], (i, field)


def _report_without_timing(builder: B.VocalMels) -> dict:
    report = load_report(builder.report_path)
    return {k: v for k, v in report.items() if k not in (*TIMING, "dataset_dir")}


def _no_featurising_in_the_writer(monkeypatch) -> None:
    """The writer must find every good song in the cache the Beam workers filled."""

    def refuse(self, wave, separator):
        raise AssertionError("the writer separated a song the Beam stage should have cached")

    monkeypatch.setattr(B.VocalMels, "_featurise", refuse)


NO_FLAGS = textwrap.dedent(
    """
    import sys
    from shared_data.corpus.synthetic import GENRES
    from shared_data.dataset.builder import build_dataset
    from shared_data.dataset.configs import VocalMelsConfig
    cfg = VocalMelsConfig(name="synthetic_tiny", source="synthetic", songs_per_genre=1,
                          seconds=3.0, genres=tuple(GENRES[:2]))
    build_dataset(sys.argv[1], cfg, progress=False, separator="none", stem="mix")
    print(sorted({m.split(".")[0] for m in sys.modules} & {"apache_beam", "tensorflow"}))
    """
)


def test_a_build_without_beam_flags_never_imports_beam(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", NO_FLAGS, str(tmp_path)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.slow
@needs_beam
def test_two_workers_give_the_single_process_records(tmp_path: Path, monkeypatch, capfd) -> None:
    single = build_dataset(tmp_path / "one", "synthetic_small", **QUIET)
    with monkeypatch.context() as m:
        _no_featurising_in_the_writer(m)
        beam = build_dataset(
            tmp_path / "beam", "synthetic_small", beam_argv=beam_argv(2, None), **QUIET
        )
    out = capfd.readouterr().out
    assert "song stage on Beam (DirectRunner): 30 songs" in out
    assert "resumed:" not in out  # songs the stage computed are not an earlier build's
    assert beam.songs_cached == 0
    assert "tensorflow" not in {m.split(".")[0] for m in sys.modules}

    _assert_same_in_order(
        _records_in_order(tmp_path / "one", "synthetic_small"),
        _records_in_order(tmp_path / "beam", "synthetic_small"),
    )
    assert dict(beam.info.metadata) == dict(single.info.metadata)
    beam_report = _report_without_timing(beam)
    assert beam_report == _report_without_timing(single)
    assert beam_report["songs_cached"] == 0
    assert not any(row["cached"] for row in beam_report["files"])

    # The stage's entries are the single-process build's: a rebuild reuses every one.
    again = build_dataset(tmp_path / "beam", "synthetic_small", overwrite=True, **QUIET)
    assert "resumed: 30 of 30 songs reused from the cache" in capfd.readouterr().out
    assert again.songs_cached == 30


def _gtzan_of_synthetic_songs(root: Path) -> str:
    """2 genres x 2 synthetic songs of 4 s as WAV files, plus a WAV of random bytes."""
    from shared_data.corpus.synthetic import GENRES, generate_song

    for genre in GENRES[:2]:
        for i in range(2):
            song = generate_song(genre, i, seed=0, seconds=4.0)
            write_wav(root / genre / f"{genre}.{i:05d}.wav", song.mix, 44100)
    corrupt = f"{GENRES[0]}/corrupt.wav"
    rng = np.random.default_rng(0)
    (root / corrupt).write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return corrupt


@pytest.mark.slow
@needs_beam
def test_a_corrupt_file_is_reported_by_name_as_in_a_single_process_build(
    tmp_path: Path, monkeypatch
) -> None:
    corrupt = _gtzan_of_synthetic_songs(tmp_path / "in")
    kw = {"input": tmp_path / "in", **QUIET}
    single = build_dataset(tmp_path / "one", "folder", **kw)
    with monkeypatch.context() as m:
        _no_featurising_in_the_writer(m)  # the corrupt file fails at decoding, before it
        beam = build_dataset(tmp_path / "beam", "folder", beam_argv=beam_argv(2, None), **kw)

    rejected = [r for r in load_report(beam.report_path)["files"] if r["status"] == "rejected"]
    assert [r["path"] for r in rejected] == [corrupt]
    assert rejected == [
        r for r in load_report(single.report_path)["files"] if r["status"] == "rejected"
    ]
    assert _report_without_timing(beam) == _report_without_timing(single)
    # A failure is not cached: the cache holds the 4 good songs only.
    assert len(list(beam.cache_dir.glob("*.npz"))) == 4
    _assert_same_in_order(
        _records_in_order(tmp_path / "one", "folder"),
        _records_in_order(tmp_path / "beam", "folder"),
    )
    with pytest.raises(
        DataError, match=r"--strict: 1 of 5 input files were rejected:\n  .*corrupt"
    ):
        build_dataset(
            tmp_path / "strict", "folder", strict=True, beam_argv=beam_argv(1, None), **kw
        )


def test_workers_without_beam_installed_is_one_line_naming_the_install(
    tmp_path: Path, monkeypatch
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "apache_beam" else real(name, *a),
    )
    argv = ["--config=synthetic_small", f"--data_dir={tmp_path}", "--workers=2", "--no_progress"]
    with pytest.raises(DataError) as err:
        build_main(argv)
    assert str(err.value) == f"--workers/--beam_pipeline_options need Apache Beam: {BEAM_INSTALL}"
    assert not (tmp_path / "vocal_mels").exists()  # refused before anything was written


@needs_beam
def test_beam_arguments() -> None:
    assert beam_argv(None, None) == []
    assert beam_argv(3, None) == [
        "--runner=DirectRunner",
        "--direct_num_workers=3",
        "--direct_running_mode=multi_processing",
        "--default_sdk_harness_log_level=WARNING",
    ]
    assert beam_argv(None, "--runner=FlinkRunner --flink_master='host:8081'") == [
        "--runner=FlinkRunner",
        "--flink_master=host:8081",
    ]
    with pytest.raises(DataError, match="at least 1"):
        beam_argv(0, None)
    with pytest.raises(DataError, match="beam_pipeline_options"):
        beam_argv(None, "--runner='unclosed")
