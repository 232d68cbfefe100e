"""Build robustness: stem presence, labels from accepted songs, csv headers, duplicate audio,
symbolic links, fold method in the metadata, TFDS's download line, and a full disk."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest

from shared_data.cli import run_main
from shared_data.corpus.synthetic import GENRES, generate_song
from shared_data.dataset import build_cli
from shared_data.dataset.builder import build_dataset
from shared_data.dataset.cache import SongCache
from shared_data.dataset.configs import VocalMelsConfig
from shared_data.dataset.folds import assign_fold
from shared_data.dataset.opened import open_dataset
from shared_data.dataset.presence import NEAR_SILENT_DB
from shared_data.errors import DataError
from shared_data.separation import registry as separation
from tests.support.builder_inputs import (
    TONE_SR,
    OracleSeparator,
    load_report,
    make_gtzan_tree,
    tone,
)

SUNG, BARE = GENRES[0], GENRES[1]  # blues: sung; classical: rendered instrumental


def _config(instrumental: tuple[str, ...]) -> VocalMelsConfig:
    """2 genres x 2 songs x 4 s; ``instrumental`` genres without their vocal line."""
    return VocalMelsConfig(
        name="synthetic_tiny", source="synthetic", songs_per_genre=2, seconds=4.0,
        genres=(SUNG, BARE), instrumental_genres=instrumental,
    )  # fmt: skip


@pytest.fixture
def oracle(monkeypatch) -> str:
    """The ``oracle`` separator (true stems) for both versions of the tiny corpus."""
    monkeypatch.setattr(separation.SEPARATORS, "_entries", dict(separation.SEPARATORS._entries))
    songs = [
        generate_song(g, i, seed=0, seconds=4.0, instrumental=bare)
        for g in (SUNG, BARE)
        for i in range(2)
        for bare in (False, True)
    ]
    separation.register_separator("oracle", lambda backend: OracleSeparator(songs))
    return "oracle"


def _quiet(**kw):
    return {"progress": False, "separator": "none", "stem": "mix", **kw}


# ---------------------------------------------------------------- stem presence


def test_near_silent_vocals_are_measured_named_and_warned(tmp_path, oracle, capfd) -> None:
    b = build_dataset(tmp_path, _config((BARE,)), separator=oracle, stem="vocals", progress=False)
    err = capfd.readouterr().err
    whole = load_report(b.report_path)["stem_presence"]
    assert whole["checked"] and whole["near_silent_db"] == NEAR_SILENT_DB == -20.0
    assert set(whole["stems"]) == {"vocals"}  # the one separated stem stored
    check = whole["stems"]["vocals"]
    assert (check["songs_measured"], check["songs_near_silent"]) == (4, 2)
    assert check["fraction_songs"] == 0.5
    # 4-s songs: 2 clips each; the two instrumental songs' 4 clips are near-silent.
    assert (check["clips_measured"], check["clips_near_silent"]) == (8, 4)
    assert {w["path"] for w in check["worst"][:2]} == {f"synthetic:{BARE}/{i}" for i in (0, 1)}
    assert all(w["stem_relative_db"] <= -90 for w in check["worst"][:2])  # no vocal at all
    assert all(-6 < w["stem_relative_db"] < 0 for w in check["worst"][2:])  # sung: -2 to -4 dB
    # A one-stem dataset: the fix is a build with the other stems (from the cache).
    assert "near-silent" in err and "build with --stems=vocals,accompaniment,mix" in err
    assert f"synthetic:{BARE}/0" in check["warning"] and whole["warnings"] == [check["warning"]]
    rows = {r["path"]: r for r in load_report(b.report_path)["files"]}
    assert rows[f"synthetic:{BARE}/1"]["presence"]["vocals"]["near_silent"] is True
    assert rows[f"synthetic:{SUNG}/1"]["presence"]["vocals"]["near_silent"] is False
    assert open_dataset(tmp_path, "synthetic_tiny").num_examples() == 8  # a warning, no failure
    summary = build_cli.format_summary(
        load_report(b.report_path), dict(b.info.metadata), dataset_path=Path(b.data_path),
        report_path=b.report_path, reused=False, seconds=1.0,
    )  # fmt: skip
    assert (
        "vocals presence: near-silent (<= -20 dB vs the mix) in 2 of 4 songs (50%) and 4 of 8 "
        "clips" in summary
    )
    assert f"lowest: synthetic:{BARE}/" in summary
    assert "  warning: the vocals stem is near-silent" in summary


def test_near_silent_stem_fails_a_strict_build(tmp_path, oracle) -> None:
    with pytest.raises(DataError, match=r"--strict: the vocals stem is near-silent .* 2 of 4"):
        build_dataset(
            tmp_path, _config((BARE,)), separator=oracle, stem="vocals", strict=True,
            progress=False,
        )  # fmt: skip
    with pytest.raises(DataError, match="build it with"):
        open_dataset(tmp_path, "synthetic_tiny")


def test_sung_corpus_passes_the_check(tmp_path, oracle, capfd) -> None:
    b = build_dataset(tmp_path, _config(()), separator=oracle, stem="vocals", strict=True,
                      progress=False)  # fmt: skip
    check = load_report(b.report_path)["stem_presence"]["stems"]["vocals"]
    assert (check["songs_near_silent"], check["clips_near_silent"], check["warning"]) == (
        0,
        0,
        None,
    )
    assert "near-silent" not in capfd.readouterr().err
    # A rebuild from the cache still knows every song's level (it is stored with the mels).
    again = build_dataset(
        tmp_path, _config(()), separator=oracle, stem="vocals", overwrite=True, progress=False
    )
    assert again.songs_cached == 4
    check = load_report(again.report_path)["stem_presence"]["stems"]["vocals"]
    assert (check["songs_measured"], check["songs_not_measured"]) == (4, 0)


def test_mix_stem_is_not_checked(tmp_path) -> None:
    b = build_dataset(tmp_path, _config((BARE,)), **_quiet())
    check = load_report(b.report_path)["stem_presence"]
    assert check == {
        "checked": False,
        "reason": "the build stores the mix alone: there is no separated stem to check",
    }


# ---------------------------------------------------------------- labels, headers, duplicates


def test_label_without_accepted_songs_is_left_out(tmp_path, capfd) -> None:
    make_gtzan_tree(tmp_path / "in")
    (tmp_path / "in" / "blues").mkdir()
    (tmp_path / "in" / "blues" / "bad.wav").write_bytes(b"not audio at all")
    b = build_dataset(tmp_path / "data", "folder", input=tmp_path / "in", **_quiet())
    report = load_report(b.report_path)
    assert report["labels_without_songs"] == {"blues": 1}
    assert "blues (1 file, all rejected)" in capfd.readouterr().err
    ds = open_dataset(tmp_path / "data", "folder")
    assert ds.label_names == ("jazz", "rock") and ds.metadata["label_names"] == ["jazz", "rock"]
    assert set(report["clips"]["train"]) == {"jazz", "rock"}
    with pytest.raises(DataError, match=r"labels left without songs: blues"):
        build_dataset(tmp_path / "d2", "folder", input=tmp_path / "in", strict=True, **_quiet())


def test_csv_header_with_other_names_is_skipped(tmp_path) -> None:
    for name, f0 in (("a", 200), ("b", 600)):
        write_tone(tmp_path / f"{name}.wav", f0)
    manifest = tmp_path / "m.csv"
    manifest.write_text("filename,genre\na.wav,low\nb.wav,high\n")
    b = build_dataset(tmp_path / "data", "csv", input=manifest, **_quiet())
    report = load_report(b.report_path)
    assert [r["path"] for r in report["files"]] == ["a.wav", "b.wav"]
    assert report["files_rejected"] == 0
    assert open_dataset(tmp_path / "data", "csv").label_names == ("high", "low")


def write_tone(path: Path, f0: float, seconds: float = 4.0) -> None:
    from shared_data.audio.decode import write_wav

    write_wav(path, tone(f0, seconds, channels=2), TONE_SR)


def test_same_audio_twice_is_used_once(tmp_path, capfd) -> None:
    make_gtzan_tree(tmp_path / "in")
    shutil.copy(tmp_path / "in" / "rock" / "rock.00000.wav", tmp_path / "in" / "jazz" / "x.wav")
    shutil.copy(tmp_path / "in" / "rock" / "rock.00000.wav", tmp_path / "in" / "rock" / "y.wav")
    b = build_dataset(tmp_path / "data", "folder", input=tmp_path / "in", **_quiet())
    report = load_report(b.report_path)
    rows = {r["path"]: r for r in report["files"]}
    # The first in listing order (sorted paths) is kept: jazz/x.wav; the two others are left out.
    assert rows["jazz/x.wav"]["status"] == "ok"
    for copy in ("rock/rock.00000.wav", "rock/y.wav"):
        assert rows[copy]["status"] == "rejected"
        assert rows[copy]["reason"].startswith("same audio as jazz/x.wav (identical SHA-256)")
    assert (report["files_seen"], report["files_ok"], report["files_rejected"]) == (9, 4, 5)
    # Nothing came from an earlier build, so nothing is reported as resumed.
    assert b.songs_cached == report["songs_cached"] == 0
    assert "resumed:" not in capfd.readouterr().out


# ---------------------------------------------------------------- symbolic links


def test_symlinks_are_followed_once_and_bad_links_reported(tmp_path) -> None:
    root, elsewhere = tmp_path / "in", tmp_path / "elsewhere"
    write_tone(elsewhere / "metal" / "m1.wav", 150)
    write_tone(elsewhere / "metal" / "m2.wav", 160)
    write_tone(root / "pop" / "p1.wav", 500)
    write_tone(root / "pop" / "p2.wav", 520)
    os.symlink(elsewhere / "metal", root / "metal")  # a linked label folder
    os.symlink(root / "pop" / "p1.wav", root / "pop" / "again.wav")  # a second path, one file
    os.symlink(elsewhere / "metal" / "m1.wav", root / "pop" / "m1.wav")  # reached via metal too
    os.symlink(root / "pop", root / "pop" / "loop")  # a folder link back to its own folder
    os.symlink(tmp_path / "gone.wav", root / "pop" / "broken.wav")
    b = build_dataset(tmp_path / "data", "folder", input=root, **_quiet())
    report = load_report(b.report_path)
    rows = {r["path"]: r for r in report["files"]}
    assert {p for p, r in rows.items() if r["status"] == "ok"} == {
        "metal/m1.wav", "metal/m2.wav", "pop/p1.wav", "pop/p2.wav",
    }  # fmt: skip
    assert rows["pop/again.wav"]["reason"] == "same file as pop/p1.wav (a symbolic link)"
    assert rows["pop/m1.wav"]["reason"] == "same file as metal/m1.wav (a symbolic link)"
    assert rows["pop/loop"]["reason"] == "symbolic link loop: points back to pop/"
    assert rows["pop/broken.wav"]["reason"].startswith("broken symbolic link: its target")
    assert (report["files_seen"], report["files_ok"], report["files_rejected"]) == (8, 4, 4)
    assert open_dataset(tmp_path / "data", "folder").label_names == ("metal", "pop")


# ---------------------------------------------------------------- folds in the metadata


def test_fold_method_is_recorded_and_a_change_is_refused(tmp_path) -> None:
    make_gtzan_tree(tmp_path / "in")
    kw = dict(input=tmp_path / "in", **_quiet())
    b = build_dataset(tmp_path / "data", "folder", **kw)
    assert b.info.metadata["fold_method"] == "stratified"
    with pytest.raises(DataError, match=r"fold_method: built 'stratified', asked 'hash'"):
        build_dataset(tmp_path / "data", "folder", fold_method="hash", **kw)
    h = build_dataset(tmp_path / "data", "folder", fold_method="hash", overwrite=True, **kw)
    assert h.info.metadata["fold_method"] == "hash"
    source = open_dataset(tmp_path / "data", "folder").source()
    for i in range(len(source)):
        song = source[i]["song_id"].decode()
        assert int(source[i]["fold"]) == assign_fold(song, 5)
    with pytest.raises(DataError, match=r"--fold_method must be one of stratified\|hash"):
        build_dataset(tmp_path / "d2", "folder", fold_method="random", **kw)


# ---------------------------------------------------------------- messages


def _cli(argv: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        run_main(build_cli.main, argv)
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def test_build_prints_no_tfds_download_line(tmp_path, capsys) -> None:
    make_gtzan_tree(tmp_path / "in")
    argv = ["--config=folder", f"--input={tmp_path}/in", f"--data_dir={tmp_path}/data",
            "--separator=none", "--stem=mix", "--no_progress"]  # fmt: skip
    code, out, err = _cli(argv, capsys)
    assert code == 0
    assert "Downloading and preparing" not in out + err and "Unknown size" not in out + err
    assert f"building vocal_mels/folder from 7 input files into {tmp_path}/data" in out
    assert "stem presence: not checked (the build stores the mix alone" in out
    assert "5 folds (stratified)" in out


def test_full_disk_gives_one_message(tmp_path, capsys, monkeypatch) -> None:
    make_gtzan_tree(tmp_path / "in")

    def full(self, key, arrays):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.root / f"{key}.npz"))

    monkeypatch.setattr(SongCache, "put", full)
    argv = ["--config=folder", f"--input={tmp_path}/in", f"--data_dir={tmp_path}/data",
            "--separator=none", "--stem=mix", "--no_progress"]  # fmt: skip
    code, _, err = _cli(argv, capsys)
    assert code == 2 and "Traceback" not in err
    assert f"no space left on the device while writing under --data_dir={tmp_path}/data" in err
    assert "free some space or pass another --data_dir" in err
    assert err.count("\n") == 1  # one line


def test_presence_levels_of_known_signals() -> None:
    import numpy as np

    from shared_data.dataset import presence
    from shared_data.dataset.features import FeatureParams

    sr = 44100
    t = np.arange(int(4.0 * sr)) / sr  # 4 s: a full 3-s clip and a 1-s tail clip
    mix = np.stack([np.sin(2 * np.pi * 220 * t)] * 2).astype(np.float32)
    stem = mix.copy()
    stem[:, 3 * sr :] *= 0.09  # the tail clip's stem is 20.9 dB down: just past the threshold
    levels = presence.measure({"vocals": stem}, mix, 2, FeatureParams(), sr)
    np.testing.assert_allclose(levels["mix_db"], 10 * np.log10(0.5), atol=1e-3)  # a sine: -3 dB
    rel = presence.relative_db(levels, "vocals")
    np.testing.assert_allclose(rel[1:], [0.0, 20 * np.log10(0.09)], atol=1e-3)
    assert presence.near_silent(levels["db_vocals"], levels["mix_db"]).tolist() == [
        False,
        False,
        True,
    ]
    # The same rule from what a record stores (the level against the mix, the mix's dBFS).
    assert presence.clip_near_silent(rel, levels["mix_db"]).tolist() == [False, False, True]
    zeros = np.zeros_like(mix)
    silent = presence.measure({"vocals": zeros}, zeros, 1, FeatureParams(), sr)
    assert presence.near_silent(silent["db_vocals"], silent["mix_db"]).all()  # below -90 dBFS
