"""The vocal_mels TFDS builder: round trip without TensorFlow, metadata, determinism, bad inputs,
csv test split, reuse rules and resuming after a kill."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from shared_data.audio.decode import load_audio, write_wav
from shared_data.dataset.builder import build_dataset
from shared_data.dataset.configs import (
    DATASET_VERSION,
    METADATA_FORMAT,
    METADATA_KEYS,
    UNLABELLED,
    VocalMelsConfig,
    separation_backend_of,
)
from shared_data.dataset.features import FeatureParams, song_to_mels
from shared_data.dataset.folds import stratified_folds
from shared_data.dataset.opened import open_dataset
from shared_data.errors import DataError
from shared_data.paths import default_data_dir
from shared_data.separation import registry as separation
from tests.support.builder_inputs import (
    TONE_SR,
    assert_same_records,
    load_report,
    make_gtzan_tree,
    read_records,
    tone,
)


def _tiny() -> VocalMelsConfig:
    """2 genres x 2 songs x 4 s: the smallest corpus with two classes and a partial clip."""
    from shared_data.corpus.synthetic import GENRES

    return VocalMelsConfig(
        name="synthetic_tiny", source="synthetic", songs_per_genre=2, seconds=4.0,
        genres=tuple(GENRES[:2]),
    )  # fmt: skip


def _quiet(**kw):
    return {"progress": False, "separator": "none", "stem": "mix", **kw}


# ---------------------------------------------------------------- synthetic_small, in a subprocess

ROUND_TRIP = textwrap.dedent(
    """
    import json, sys
    from shared_data.dataset.builder import build_dataset
    from shared_data.dataset.opened import open_dataset
    b = build_dataset(sys.argv[1], "synthetic_small", progress=False, separator="none", stem="mix")
    ds = open_dataset(sys.argv[1], "synthetic_small")
    src = ds.source("train", stem="mix")
    shapes = sorted({(str(r["mel"].dtype),) + tuple(r["mel"].shape) for r in src})
    print(json.dumps({
        "n": len(src), "shapes": shapes, "labels": list(ds.label_names),
        "tensorflow": sorted(m for m in sys.modules if m.split(".")[0] == "tensorflow"),
    }))
    """
)


@pytest.fixture(scope="module")
def small_dir(tmp_path_factory) -> Path:
    """synthetic_small built and read back in a fresh interpreter (the TensorFlow check)."""
    root = tmp_path_factory.mktemp("small")
    proc = subprocess.run(
        [sys.executable, "-c", ROUND_TRIP, str(root)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["tensorflow"] == [], "building or reading vocal_mels imported TensorFlow"
    assert result["shapes"] == [["float32", 128, 128]]
    assert result["n"] > 0
    return root


def test_synthetic_small_round_trip(small_dir: Path) -> None:
    from shared_data.corpus.synthetic import GENRES

    ds = open_dataset(small_dir, "synthetic_small")
    assert ds.splits == ("train",)
    assert ds.label_names == tuple(sorted(GENRES)) and ds.num_classes == len(GENRES) >= 8
    report = load_report(ds.report_path)
    assert report["files_rejected"] == 0 and report["files_seen"] == len(GENRES) * 3
    records = read_records(ds)
    assert len(records) == ds.num_examples("train") == sum(r["n_clips"] for r in report["files"])
    label_of_song = {r["song_id"]: r["label"] for r in report["files"]}
    fold_of_song = stratified_folds(label_of_song.items(), 5)
    clips_of_song: dict[str, list[int]] = {}
    for r in records.values():
        song = r["song_id"].decode()
        assert ds.label_names[int(r["label"])] == label_of_song[song]
        assert int(r["fold"]) == fold_of_song[song]
        clips_of_song.setdefault(song, []).append(int(r["clip_index"]))
    # 6-s songs: two 3-s clips each, numbered from 0.
    assert all(sorted(c) == [0, 1] for c in clips_of_song.values())
    assert len(clips_of_song) == len(GENRES) * 3
    # Stratified folds: a genre's 3 songs lie in 3 different folds, and the 30 songs fill the 5
    # folds evenly (6 each; hash folds gave 3 to 9 here).
    for genre in GENRES:
        assert len({fold_of_song[s] for s, g in label_of_song.items() if g == genre}) == 3
    sizes = [sum(f == k for f in fold_of_song.values()) for k in range(5)]
    assert sizes == [len(GENRES) * 3 // 5] * 5


def test_metadata_is_stored_and_correct(small_dir: Path) -> None:
    ds = open_dataset(small_dir, "synthetic_small")
    meta = ds.metadata
    mels = np.stack([np.asarray(r["mel"], np.float64) for r in read_records(ds).values()])
    stats = meta["mel_stats"]["mix"]
    assert math.isfinite(stats["mean"]) and stats["std"] > 0
    np.testing.assert_allclose(stats["mean"], mels.mean(), rtol=1e-9)
    np.testing.assert_allclose(stats["std"], mels.std(), rtol=1e-9)
    assert meta["feature_params"] == json.loads(json.dumps(FeatureParams().to_dict()))
    assert FeatureParams.from_dict(meta["feature_params"]) == FeatureParams()
    assert (meta["separator"], meta["stems"], meta["folds"]) == ("none", ["mix"], 5)
    assert meta["separator_info"]["name"] == "none"
    assert meta["label_names"] == list(ds.label_names)
    assert len(meta["checksums"]) == meta["files_seen"] == meta["files_ok"]
    assert all(len(h) == 64 and int(h, 16) >= 0 for h in meta["checksums"].values())
    assert meta["num_clips"] == {"train": ds.num_examples("train"), "test": 0}
    # The separation backend has its own key, apart from a run's training backend.
    assert meta["separation_backend"] == ds.separation_backend == "auto" and "backend" not in meta
    assert set(meta) == {*METADATA_KEYS, "format", "build_report"}
    assert meta["format"] == METADATA_FORMAT == 2
    # What a rebuild compares keeps the keys of earlier versions, so their datasets still match.
    assert sorted(meta["settings"]) == [
        "config", "fold_method", "folds", "separator", "separator_info", "stems",
    ]  # fmt: skip


def test_metadata_and_reports_written_before_the_rename_still_name_the_separation_backend(
    small_dir: Path, tmp_path: Path
) -> None:
    """Format 1 called the separation backend ``backend``."""
    from types import SimpleNamespace

    from shared_data.dataset import build_cli
    from shared_data.dataset.opened import OpenedDataset

    old = {"separator": "spleeter", "backend": "torch", "stems": ["vocals"]}
    assert separation_backend_of(old) == "torch"
    assert separation_backend_of({"separation_backend": "jax", "backend": "torch"}) == "jax"
    assert separation_backend_of({}) is None
    fake = SimpleNamespace(info=SimpleNamespace(metadata=old))
    assert OpenedDataset(path=tmp_path, config="folder", builder=fake).separation_backend == "torch"
    ds = open_dataset(small_dir, "synthetic_small")
    report = load_report(ds.report_path)
    assert report["separation_backend"] == "auto" and "backend" not in report
    # A report of that time also had no ``separation`` line: the summary falls back to the key.
    older = {k: v for k, v in report.items() if k not in ("separation", "separation_backend")}
    summary = build_cli.format_summary(
        {**older, "backend": "torch"}, ds.metadata, dataset_path=ds.path,
        report_path=ds.report_path, reused=True, seconds=0.0,
    )  # fmt: skip
    assert "  separator none (backend torch), stems mix, 5 folds (stratified)" in summary


def test_the_builder_returns_the_report_it_wrote_and_a_reused_one(tmp_path: Path) -> None:
    built = build_dataset(tmp_path, _tiny(), **_quiet())
    assert not built.reused_existing
    assert built.report == load_report(built.report_path)
    assert built.report["files_seen"] == 4 and built.report["clips"]["train"] == {
        name: 4 for name in built.info.features["label"].names
    }
    again = build_dataset(tmp_path, _tiny(), **_quiet())
    assert again.reused_existing and again.report == built.report


# ---------------------------------------------------------------- determinism and resume


def test_two_builds_give_identical_records(tmp_path: Path) -> None:
    a = build_dataset(tmp_path / "a", _tiny(), **_quiet())
    b = build_dataset(tmp_path / "b", _tiny(), **_quiet())
    assert a.songs_cached == b.songs_cached == 0  # b computed everything anew
    ra = read_records(open_dataset(tmp_path / "a", "synthetic_tiny"))
    rb = read_records(open_dataset(tmp_path / "b", "synthetic_tiny"))
    assert len(ra) == 4 * 2  # 2 genres x 2 songs x (3-s clip + 1-s tail)
    assert_same_records(ra, rb)
    # Record order is part of "identical": shuffling is keyed, not random.
    sa, sb = (open_dataset(tmp_path / d, "synthetic_tiny").source("train") for d in "ab")
    assert [bytes(sa[i]["song_id"]) for i in range(len(sa))] == [
        bytes(sb[i]["song_id"]) for i in range(len(sb))
    ]


def test_changed_synthetic_generator_is_not_silently_reused(tmp_path: Path, monkeypatch) -> None:
    from shared_data.corpus import synthetic

    build_dataset(tmp_path, _tiny(), **_quiet())
    assert build_dataset(tmp_path, _tiny(), **_quiet()).reused_existing
    original = synthetic.generate_song

    def quieter(*args, **kwargs):
        song = original(*args, **kwargs)
        return dataclasses.replace(song, mix=song.mix * np.float32(0.5))

    monkeypatch.setattr(synthetic, "generate_song", quieter)
    with pytest.raises(DataError, match="synthetic generator's output changed"):
        build_dataset(tmp_path, _tiny(), **_quiet())


KILL_AFTER_TWO_SONGS = textwrap.dedent(
    """
    import os, signal, sys
    from shared_data.dataset import builder as B
    from shared_data.dataset.configs import VocalMelsConfig
    from shared_data.corpus.synthetic import GENRES
    done = []
    original = B.VocalMels._featurise
    def featurise(self, wave, separator):
        if len(done) == 2:
            os.kill(os.getpid(), signal.SIGKILL)  # as hard as a power cut: no cleanup runs
        done.append(1)
        return original(self, wave, separator)
    B.VocalMels._featurise = featurise
    cfg = VocalMelsConfig(name="synthetic_tiny", source="synthetic", songs_per_genre=2,
                          seconds=4.0, genres=tuple(GENRES[:2]))
    B.build_dataset(sys.argv[1], cfg, progress=False, separator="none", stem="mix")
    """
)


def test_killed_build_resumes_and_equals_a_clean_build(tmp_path: Path, capfd) -> None:
    killed = subprocess.run(
        [sys.executable, "-c", KILL_AFTER_TWO_SONGS, str(tmp_path / "k")], capture_output=True
    )
    assert killed.returncode == -9
    config_dir = tmp_path / "k" / "vocal_mels" / "synthetic_tiny"
    assert [p.name for p in config_dir.iterdir()][0].startswith("incomplete.")
    capfd.readouterr()

    resumed = build_dataset(tmp_path / "k", _tiny(), **_quiet())
    out = capfd.readouterr().out
    assert "resuming an interrupted build" in out
    assert "resumed: 2 of 4 songs reused from the cache" in out, out
    assert resumed.songs_cached == 2
    assert [p.name for p in config_dir.iterdir()] == [DATASET_VERSION]  # the stale folder is gone

    build_dataset(tmp_path / "clean", _tiny(), **_quiet())
    assert_same_records(
        read_records(open_dataset(tmp_path / "k", "synthetic_tiny")),
        read_records(open_dataset(tmp_path / "clean", "synthetic_tiny")),
    )


# ---------------------------------------------------------------- folder and csv configs


def test_folder_config_reports_every_file(tmp_path: Path) -> None:
    expected = make_gtzan_tree(tmp_path / "in")
    builder = build_dataset(tmp_path / "data", "folder", input=tmp_path / "in", **_quiet())
    report = load_report(builder.report_path)
    rows = {r["path"]: r for r in report["files"]}
    assert set(rows) == set(expected)  # every file has a row; the hidden file is not an input
    for path, reason in expected.items():
        if reason is None:
            assert rows[path]["status"] == "ok" and rows[path]["n_clips"] >= 1, rows[path]
        else:
            assert rows[path]["status"] == "rejected" and reason in rows[path]["reason"], rows[path]
            assert rows[path]["n_clips"] == 0
    assert (report["files_seen"], report["files_ok"], report["files_rejected"]) == (7, 4, 3)
    # 4-s songs give 2 clips (3 s + padded 1-s tail), 7-s songs 3 (3 + 3 + 1).
    assert report["clips"]["train"] == {"jazz": 5, "rock": 5}

    ds = open_dataset(tmp_path / "data", "folder")
    assert ds.label_names == ("jazz", "rock")
    records = read_records(ds)
    assert len(records) == 10
    for key, r in records.items():
        song = key.split("#")[0]
        assert song.split("/")[0] == ds.label_names[int(r["label"])]
    assert ds.metadata["files_rejected"] == 3
    assert (builder.cache_dir / "build_report.json").exists()


def test_folder_strict_fails_and_lists_rejections(tmp_path: Path) -> None:
    make_gtzan_tree(tmp_path / "in")
    with pytest.raises(DataError) as err:
        build_dataset(tmp_path / "data", "folder", input=tmp_path / "in", strict=True, **_quiet())
    msg = str(err.value)
    assert "--strict: 3 of 7 input files were rejected" in msg
    for path in ("jazz/corrupt.wav", "rock/short.wav", "stray.wav"):
        assert path in msg
    report_path = tmp_path / "data" / ".vocal_mels_cache" / "folder" / "build_report.json"
    assert str(report_path) in msg and load_report(report_path)["files_rejected"] == 3
    with pytest.raises(DataError, match="build it with"):
        open_dataset(tmp_path / "data", "folder")  # nothing half-built was left behind


def test_csv_unlabelled_rows_go_to_test(tmp_path: Path) -> None:
    audio = tmp_path / "audio"
    for name, f0, seconds in (("a1", 200, 4), ("a2", 210, 3), ("b1", 600, 4), ("u1", 400, 5)):
        write_wav(audio / f"{name}.wav", tone(f0, seconds), TONE_SR)
    manifest = tmp_path / "train.csv"
    manifest.write_text(
        "path,label,song_id\n"
        "audio/a1.wav,low,songA\n"
        "audio/a2.wav,low,songA\n"  # a second file of the same song: same fold
        "audio/b1.wav,high\n"
        "audio/u1.wav,\n"
        "audio/missing.wav,high\n"
    )
    builder = build_dataset(tmp_path / "data", "csv", input=manifest, **_quiet())
    report = load_report(builder.report_path)
    rows = {r["path"]: r for r in report["files"]}
    assert rows["audio/missing.wav"]["status"] == "rejected"
    assert rows["audio/missing.wav"]["reason"] == "file not found"
    assert rows["audio/u1.wav"]["split"] == "test"

    ds = open_dataset(tmp_path / "data", "csv")
    assert ds.splits == ("test", "train") and ds.label_names == ("high", "low")
    test = read_records(ds, "test")
    assert set(test) == {"u1#0", "u1#1"}
    assert all(int(r["label"]) == UNLABELLED == -1 for r in test.values())
    train = read_records(ds, "train")
    assert {k.split("#")[0] for k in train} == {"songA", "b1"}
    folds_a = {int(r["fold"]) for k, r in train.items() if k.startswith("songA#")}
    # Stratified: labels dealt in sorted order, high (b1) gets fold 0, low (songA) fold 1.
    assert folds_a == {1} and {int(r["fold"]) for k, r in train.items() if k[:2] == "b1"} == {0}
    # a1 (2 clips) then a2 (1 clip) of songA are numbered on: 0, 1, then 2.
    assert set(train) == {"songA#0", "songA#1", "songA#2", "b1#0", "b1#1"}
    # ... and the records hold exactly the pipeline's features of their file.
    a2 = song_to_mels(load_audio(audio / "a2.wav"), 44100, FeatureParams())
    assert a2.shape == (1, 128, 128)
    np.testing.assert_array_equal(train["songA#2"]["mel"], a2[0])
    assert ds.num_examples("train") == 5


def test_csv_malformed_row_names_the_line(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("a.wav,x\nb.wav,y,id,extra\n")
    with pytest.raises(DataError, match=r"m\.csv, line 2"):
        build_dataset(tmp_path / "data", "csv", input=manifest, **_quiet())


# ---------------------------------------------------------------- reuse and refusal


@pytest.fixture
def half_separator(monkeypatch):
    """A stand-in separator with a vocals stem (half the mix), in a private registry copy."""
    monkeypatch.setattr(separation.SEPARATORS, "_entries", dict(separation.SEPARATORS._entries))

    class Half:
        name = "half"
        stems = ("vocals", "mix")

        def separate(self, songs):
            return [{"vocals": 0.5 * s, "mix": s} for s in songs]

        def info(self):
            return {"name": "half", "weights_sha256": "0" * 64}

    separation.register_separator("half", lambda backend: Half())
    return "half"


def test_rebuild_with_other_settings_is_refused(tmp_path: Path, half_separator: str) -> None:
    make_gtzan_tree(tmp_path / "in")
    kw = dict(input=tmp_path / "in", progress=False)
    plain = dict(separator="none", stem="mix")
    first = build_dataset(tmp_path / "data", "folder", **plain, **kw)
    assert not first.reused_existing
    again = build_dataset(tmp_path / "data", "folder", **plain, **kw)
    assert again.reused_existing  # same settings and inputs: nothing recomputed

    stems = r"stems: built \['mix'\], asked \['vocals'\]"
    with pytest.raises(DataError, match=r"different settings .*" + stems):
        build_dataset(tmp_path / "data", "folder", separator="half", stem="vocals", **kw)
    with pytest.raises(DataError, match=r"folds: built 5, asked 3.*--overwrite"):
        build_dataset(tmp_path / "data", "folder", folds=3, **plain, **kw)

    mix = read_records(open_dataset(tmp_path / "data", "folder"))
    write_wav(tmp_path / "in" / "rock" / "new.wav", tone(150, 4), TONE_SR)
    with pytest.raises(
        DataError, match=r"input files .* changed: 1 added \(e\.g\. rock/new\.wav\)"
    ):
        build_dataset(tmp_path / "data", "folder", **plain, **kw)

    vocals = build_dataset(
        tmp_path / "data", "folder", separator="half", stem="vocals", overwrite=True, **kw
    )
    meta = vocals.info.metadata
    assert (meta["separator"], meta["stems"]) == ("half", ["vocals"])
    assert meta["separator_info"]["weights_sha256"] == "0" * 64
    assert load_report(vocals.report_path)["files_ok"] == 5  # the added file is in
    half = read_records(open_dataset(tmp_path / "data", "folder"))
    assert set(half) == set(mix) | {"rock/new#0", "rock/new#1"}
    # The vocals stem (half the amplitude) is 20*log10(2) dB below the mix wherever the mix is
    # well above the -100 dB floor: the records really hold the selected stem.
    for key in mix:
        a, b = np.asarray(mix[key]["mel"]), np.asarray(half[key]["mel"])
        loud = a > -60
        assert loud.sum() > 100
        np.testing.assert_allclose(a[loud] - b[loud], 20 * np.log10(2), atol=1e-3)


def test_missing_dataset_error_names_the_build_command(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        open_dataset(tmp_path, "synthetic")
    assert f"python -m shared_data.build --config=synthetic --data_dir={tmp_path}" in str(err.value)
    with pytest.raises(DataError, match=r"--config=folder --data_dir=.* --input=PATH"):
        open_dataset(tmp_path, "folder")


def test_default_data_dir(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VOCALGENRE_DATA_DIR", str(tmp_path / "x"))
    assert default_data_dir() == tmp_path / "x"
    monkeypatch.delenv("VOCALGENRE_DATA_DIR")
    assert default_data_dir() == Path.home() / "vocalgenre_data"
