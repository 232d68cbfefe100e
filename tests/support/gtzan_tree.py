"""A generated GTZAN-shaped download: short tones under GTZAN's clip names, in either layout.

:func:`make_gtzan` writes, for each of :data:`GENRES`, clips drawn from the shipped fault-filtered
lists (:data:`PER_SPLIT` of each split) plus one clip outside them, as
``genres_original/<genre>/<genre>.000NN.wav`` (the widespread copy) or ``genres/<genre>/...au``
(the original archive); ``jazz.00054``, listed for training, is written unreadable, as in the
widespread copy. Each clip's tone depends on its genre, so a tiny model can learn the labels.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import soundfile as sf

from shared_data.dataset.gtzan import fault_filtered_lists

GENRES = ("jazz", "metal", "reggae")  # each has clips outside the lists
PER_SPLIT = {"train": 3, "validation": 1, "test": 1}
SR = 22050
SECONDS = 2.0
UNREADABLE = "jazz.00054"
_F0 = {"jazz": 110.0, "metal": 880.0, "reggae": 330.0}


@dataclasses.dataclass(frozen=True)
class GtzanTree:
    """What :func:`make_gtzan` wrote: ``root`` (pass as ``--input``), ``split_of`` {clip id:
    split} of the readable listed clips, ``excluded`` (clip ids outside the lists) and
    ``unreadable`` (listed clip ids whose file does not decode)."""

    root: Path
    split_of: dict[str, str]
    excluded: tuple[str, ...]
    unreadable: tuple[str, ...]


def chosen_clips() -> tuple[dict[str, str], tuple[str, ...]]:
    """``({clip id: split}, excluded ids)``: the first listed clips of each genre and split, and
    the first id of each genre that no list holds."""
    lists = fault_filtered_lists()
    listed = {c for ids in lists.values() for c in ids}
    split_of: dict[str, str] = {}
    for genre in GENRES:
        for split, n in PER_SPLIT.items():
            ids = [c for c in lists[split] if c.startswith(f"{genre}.")]
            split_of.update({c: split for c in ids[:n]})
    split_of[UNREADABLE] = "train"
    excluded = tuple(
        next(f"{g}.{i:05d}" for i in range(100) if f"{g}.{i:05d}" not in listed) for g in GENRES
    )
    return split_of, excluded


def _tone(genre: str, index: int) -> np.ndarray:
    t = np.arange(int(SECONDS * SR)) / SR
    f0 = _F0[genre] * (1 + 0.004 * index)  # every clip differs (the build drops copies)
    return (0.3 * np.sin(2 * np.pi * f0 * t) + 0.1 * np.sin(6 * np.pi * f0 * t)).astype(np.float32)


def make_gtzan(root: Path, layout: str = "genres_original") -> GtzanTree:
    """Write the clips under ``root/<layout>/`` (``genres_original``: .wav, ``genres``: .au)."""
    ext, fmt = (".wav", "WAV") if layout == "genres_original" else (".au", "AU")
    split_of, excluded = chosen_clips()
    for clip in [*split_of, *excluded]:
        genre, number = clip.split(".")
        path = root / layout / genre / f"{clip}{ext}"
        path.parent.mkdir(parents=True, exist_ok=True)
        if clip == UNREADABLE:
            path.write_bytes(b"RIFF\x00\x00\x00\x00WAVE not audio")  # the copy's empty clip
        else:
            sf.write(path, _tone(genre, int(number)), SR, format=fmt, subtype="PCM_16")
    readable = {c: s for c, s in split_of.items() if c != UNREADABLE}
    return GtzanTree(root, readable, excluded, (UNREADABLE,))
