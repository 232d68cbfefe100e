"""Small inputs and helpers shared by the builder and build-CLI tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from shared_data.audio.decode import write_wav

TONE_SR = 22050


def tone(f0: float, seconds: float, *, sr: int = TONE_SR, channels: int = 1) -> np.ndarray:
    """A quiet sine ``[channels, n]`` float32 with a little harmonic, so mels differ by pitch."""
    t = np.arange(int(round(seconds * sr))) / sr
    x = 0.3 * np.sin(2 * np.pi * f0 * t) + 0.1 * np.sin(2 * np.pi * 3 * f0 * t)
    return np.repeat(x[None].astype(np.float32), channels, axis=0)


def make_gtzan_tree(root: Path) -> dict[str, str | None]:
    """A GTZAN-layout tree: 2 labels x 2 good songs, plus bad files.

    Returns:
        ``{relative path: expected rejection reason fragment, or None when the file is good}``.
    """
    expected: dict[str, str | None] = {}
    for label, f0 in (("jazz", 330.0), ("rock", 110.0)):
        for i, seconds in enumerate((4.0, 7.0)):
            rel = f"{label}/{label}.{i:05d}.wav"
            write_wav(root / rel, tone(f0 * (1 + 0.05 * i), seconds, channels=2), TONE_SR)
            expected[rel] = None
    (root / "jazz" / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00this is not audio")
    expected["jazz/corrupt.wav"] = "not an audio file"
    write_wav(root / "rock" / "short.wav", tone(220.0, 0.5), TONE_SR)
    expected["rock/short.wav"] = "too short"
    write_wav(root / "stray.wav", tone(440.0, 4.0), TONE_SR)
    expected["stray.wav"] = "not inside a label folder"
    (root / "rock" / ".DS_Store").write_bytes(b"\x00\x01")  # hidden: not an input
    return expected


def read_records(
    dataset: Any, split: str = "train", stem: str | None = None
) -> dict[str, dict[str, Any]]:
    """Every record of ``split``, keyed ``song_id#clip_index`` (the order-free identity), seen
    through ``stem`` (default: the one stem of a one-stem dataset, else whole records)."""
    if stem is None and len(dataset.stems) == 1:
        stem = dataset.stems[0]
    source = dataset.source(split, stem=stem)
    out = {}
    for i in range(len(source)):
        r = source[i]
        song = r["song_id"].decode() if isinstance(r["song_id"], bytes) else r["song_id"]
        out[f"{song}#{int(r['clip_index'])}"] = r
    assert len(out) == len(source), "two records share song_id and clip_index"
    return out


def assert_same_records(a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]]) -> None:
    """Bit-identical records (mel bytes, label, fold, ...)."""
    assert a.keys() == b.keys()
    for key in a:
        ra, rb = a[key], b[key]
        assert ra.keys() == rb.keys()
        for field in ra:
            np.testing.assert_array_equal(np.asarray(ra[field]), np.asarray(rb[field]), key)


def load_report(path: Path) -> dict[str, Any]:
    report = json.loads(Path(path).read_text())
    assert report["files_seen"] == report["files_ok"] + report["files_rejected"]
    assert report["files_seen"] == len(report["files"])
    return report


class OracleSeparator:
    """A separator for synthetic songs that returns their true stems (looked up by the mix's
    bytes), so a build can featurise a real vocals stem without running a network."""

    name = "oracle"
    stems = ("vocals", "accompaniment", "mix")

    def __init__(self, songs: Any):
        self._stems = {
            s.mix.tobytes(): {"vocals": s.vocals, "accompaniment": s.accompaniment} for s in songs
        }

    def separate(self, songs: Any) -> list[dict[str, np.ndarray]]:
        return [{**self._stems[np.asarray(s).tobytes()], "mix": s} for s in songs]

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "stems": list(self.stems)}
