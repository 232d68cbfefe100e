"""``python -m jax_impl.predict`` / ``torch_ref.predict``: audio files in, genres out.

Members: one ``lstm`` trained by each backend (``tests/support/ensemble_runs.py``). Songs: synthetic
songs none of them saw, written in different formats, rates and channel counts, plus a corrupt and
a too-short file.
"""

from __future__ import annotations

import csv
import errno
import json
import shutil
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf

from jax_impl import predict as jax_predict
from shared_data.audio.decode import write_wav
from shared_data.corpus.synthetic import SAMPLE_RATE, generate_song
from shared_data.dataset.builder import build_dataset
from shared_data.dataset.opened import open_dataset
from shared_data.ensemble import predict as predict_songs
from shared_data.ensemble.members import DATASET_KEY, MemberError, dataset_record
from shared_data.errors import DataError
from tests.support import ensemble_runs as fx
from tests.support.runs import make_run
from torch_ref import predict as torch_predict


@pytest.fixture(scope="module")
def members(ensemble_runs) -> str:
    return ensemble_runs.one_per_backend()


@pytest.fixture(autouse=True)
def one_torch_thread():
    with fx.torch_threads(1):
        yield


@pytest.fixture(scope="module")
def songs(tmp_path_factory) -> dict[str, Path]:
    """``blues``: stereo 44.1 kHz 16-bit WAV, 6 s (2 clips); ``metal``: mono 22.05 kHz FLAC,
    7.5 s (2 clips and a 1.5-s tail); ``broken``: not audio; ``short``: 0.5 s."""
    root = tmp_path_factory.mktemp("songs")
    blues = generate_song("blues", 4, seed=11, seconds=6.0)
    write_wav(root / "blues_song.wav", blues.mix, SAMPLE_RATE)
    metal = generate_song("metal", 4, seed=11, seconds=7.5)
    mono = librosa.resample(metal.mix.mean(0), orig_sr=SAMPLE_RATE, target_sr=22050)
    sf.write(root / "metal_song.flac", mono, 22050, format="FLAC")
    (root / "broken.mp3").write_bytes(b"ID3\x03\x00 this is not an mp3 stream at all" * 20)
    write_wav(root / "short.wav", blues.mix[:, : SAMPLE_RATE // 2], SAMPLE_RATE)
    return {
        "blues": root / "blues_song.wav",
        "metal": root / "metal_song.flac",
        "broken": root / "broken.mp3",
        "short": root / "short.wav",
    }


def _read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="") as f:
        return list(csv.reader(f))


def test_predict_prints_the_top3_and_names_the_songs_it_cannot_decode(
    members, songs, tmp_path, capsys
):
    out_csv = tmp_path / "submission.csv"
    argv = [f"--members={members}", *map(str, songs.values()), "--clips", f"--csv={out_csv}"]
    assert jax_predict.main(argv) == 1
    out, err = capsys.readouterr()
    # The members learnt the synthetic corpus: said once, before the songs.
    assert err.count("trained on the synthetic corpus synthetic_small") == 1
    assert f"{songs['broken']}: not an audio file" in err
    assert f"{songs['short']}: too short" in err
    assert "2 of 4 songs could not be predicted" in err
    table = [line for line in out.splitlines() if line.split()[1:2] in (["2"], ["3"])]
    rows = {line.split()[0]: line for line in table}
    assert rows["blues_song"].split()[1:3] == ["2", "blues"]
    assert rows["metal_song"].split()[1:3] == ["3", "metal"]
    for line in (rows["blues_song"], rows["metal_song"]):
        probs = [float(cell.strip("()")) for cell in line.split()[3::2]]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True) and sum(probs) <= 1.0 + 1e-6
    assert _read_csv(out_csv) == [["id", "label"], ["blues_song", "blues"], ["metal_song", "metal"]]
    # --clips: one row per clip, every class's probability, each row summing to one.
    clip_rows = [line.split() for line in out.splitlines() if line[:4].strip().isdigit()]
    assert [r[0] for r in clip_rows] == ["0", "1", "0", "1", "2"]
    for r in clip_rows:
        assert len(r) == 3 + 10
        assert sum(float(p) for p in r[3:]) == pytest.approx(1.0, abs=1e-3)


def test_the_torch_cli_writes_the_same_submission(members, songs, tmp_path, capsys):
    files = [str(songs["blues"]), str(songs["metal"])]
    assert torch_predict.main([f"--members={members}", *files, f"--csv={tmp_path / 't.csv'}"]) == 0
    assert _read_csv(tmp_path / "t.csv")[1:] == [["blues_song", "blues"], ["metal_song", "metal"]]


def test_a_failed_csv_write_keeps_the_printed_predictions(
    members, songs, tmp_path, capsys, monkeypatch
):
    def full_disk(path, rows):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(predict_songs, "write_csv", full_disk)
    out_csv = tmp_path / "s.csv"
    assert jax_predict.main([f"--members={members}", str(songs["blues"]), f"--csv={out_csv}"]) == 1
    out, err = capsys.readouterr()
    assert "blues_song" in out and "blues" in out  # the table was printed first
    assert f"no space left on the device while writing under --csv={out_csv}" in err
    assert "the predictions above were printed but no CSV was written" in err


def test_submission_for_a_datasets_unlabelled_test_split(members, songs, tmp_path, capsys):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for name, (genre, index) in {"a": ("rock", 5), "b": ("classical", 5), "c": ("jazz", 5)}.items():
        write_wav(inputs / f"{name}.wav", generate_song(genre, index, seed=12, seconds=6.0).mix,
                  SAMPLE_RATE)  # fmt: skip
    (inputs / "manifest.csv").write_text("path,label\na.wav,rock\nb.wav,\nc.wav,\n")
    build_dataset(tmp_path / "data", "csv", input=inputs, progress=False, **fx.NO_SEPARATION)
    out_csv = tmp_path / "test.csv"
    argv = [f"--members={members}", "--dataset=csv", f"--data_dir={tmp_path / 'data'}"]
    assert jax_predict.main([*argv, f"--csv={out_csv}"]) == 0
    assert _read_csv(out_csv) == [["id", "label"], ["b", "classical"], ["c", "jazz"]]
    assert jax_predict.main([*argv, f"--csv={out_csv}", "--csv_level=clip"]) == 0
    assert [r[0] for r in _read_csv(out_csv)[1:]] == ["b#0", "b#1", "c#0", "c#1"]


def test_songs_or_a_dataset_not_both_and_not_neither(members, songs):
    with pytest.raises(DataError, match="not both"):
        jax_predict.main([f"--members={members}", str(songs["blues"]), "--dataset=csv"])
    with pytest.raises(DataError, match="not neither"):
        jax_predict.main([f"--members={members}"])


def test_mismatched_members_are_refused_before_any_prediction(members, songs, tmp_path):
    stranger = make_run(
        tmp_path / "stranger",
        dataset={
            "label_names": ["a", "b"],
            "mel_mean": 0.0,
            "mel_std": 1.0,
            "separator": "none",
            "stem": "mix",
            "feature_params": {},
        },
    )
    with pytest.raises(MemberError, match="disagree on label names"):
        jax_predict.main([f"--members={members},{stranger}", str(songs["blues"])])


def test_a_song_of_any_length_gives_one_row(members, tmp_path, capsys):
    long_song = generate_song("reggae", 9, seed=13, seconds=14.0).mix
    write_wav(tmp_path / "long.wav", long_song, SAMPLE_RATE)
    write_wav(tmp_path / "tiny.wav", long_song[:, : int(1.2 * SAMPLE_RATE)], SAMPLE_RATE)
    paths = [str(tmp_path / "long.wav"), str(tmp_path / "tiny.wav")]
    assert jax_predict.main([f"--members={members}", *paths]) == 0
    lines = [line.split() for line in capsys.readouterr().out.splitlines()]
    clips = {line[0]: int(line[1]) for line in lines if line[0] in ("long", "tiny")}
    # 14 s: 4 full clips and a 2-s tail; 1.2 s: padded to 3 s by the decoder, one clip.
    assert clips == {"long": 5, "tiny": 1}


class _StemSwapper:
    """A separator whose ``vocals`` stem is another song: shows which stem gets featurised."""

    name = "test_stem_swapper"
    stems = ("vocals", "accompaniment", "mix")

    def __init__(self, replacement: np.ndarray):
        self.replacement = replacement
        self.calls: list[int] = []

    def separate(self, songs):
        out = []
        for song in songs:
            self.calls.append(song.shape[1])
            vocals = np.zeros_like(song)
            n = min(song.shape[1], self.replacement.shape[1])
            vocals[:, :n] = self.replacement[:, :n]
            out.append({"vocals": vocals, "accompaniment": song - vocals, "mix": song})
        return out

    def info(self):
        return {"name": self.name, "stems": list(self.stems)}


def test_songs_are_separated_with_the_members_separator_and_their_stem_is_used(
    members, songs, tmp_path, monkeypatch, ensemble_runs
):
    swapper = _StemSwapper(generate_song("classical", 6, seed=11, seconds=6.0).mix)
    asked = []

    def get_separator(name: str, backend: str = "auto", precision: str = "auto"):
        asked.append((name, backend))
        return swapper

    monkeypatch.setattr(predict_songs, "get_separator", get_separator)
    # The JAX member, re-labelled as trained on the "vocals" of that separator.
    run = tmp_path / "swapped"
    shutil.copytree(ensemble_runs.trained_member("jax", 0), run)
    info = json.loads((run / "recipe.json").read_text())
    info["run"][DATASET_KEY] = {
        **dataset_record(open_dataset(ensemble_runs.data_dir(), "synthetic_small"), "mix"),
        "separator": _StemSwapper.name,
        "stem": "vocals",
    }
    (run / "recipe.json").write_text(json.dumps(info))
    for module, backend in ((jax_predict, "jax"), (torch_predict, "torch")):
        out_csv = tmp_path / f"{backend}.csv"
        assert module.main([f"--members={run}", str(songs["blues"]), f"--csv={out_csv}"]) == 0
        # The blues mix went in; its "vocals" are the classical song, and that is what was heard.
        assert _read_csv(out_csv)[1] == ["blues_song", "classical"]
        assert asked[-1] == (_StemSwapper.name, backend)
    assert swapper.calls == [6 * SAMPLE_RATE] * 2
