"""GTZAN as distributed: its folder layouts, its clip ids, and the lists shipped about it.

Layouts (:func:`genre_root`): ``<input>/genres/<genre>/<genre>.000NN.au`` (the original archive),
``<input>/genres_original/<genre>/<genre>.000NN.wav`` (the widespread copy, e.g. on Kaggle, beside
``images_original/`` and feature CSVs that are not inputs), or ``<input>`` pointing straight at the
genre folders. In every layout the label is the genre folder and the song id the clip's name
without its extension (``blues.00029``), so a dataset built from the ``.au`` archive and one built
from the ``.wav`` copy hold the same ids (:func:`gtzan_inputs`).

Lists shipped as package data (``shared_data/dataset/data/``, each file's header names its
source): the fault-filtered split (:func:`fault_filtered_lists`: 443 train, 197 validation and 290
test clips, artist-disjoint; Kereliuk, Sturm and Larsen 2015), the clips that repeat one artist
and title (:func:`repetitions`, from Sturm's GTZAN index) and the known faults of single clips
(:func:`known_faults`). :func:`fault_notes` names, for a build's clips, every entry that concerns
them; nothing here changes a label.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from shared_data.dataset.inputs import SongInput, folder_inputs
from shared_data.errors import DataError

GENRES = (
    "blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock",
)  # fmt: skip
#: The sub-folders of a GTZAN download that hold the genre folders, in the order they are tried.
LAYOUT_FOLDERS = ("genres", "genres_original")
#: The fault-filtered split's lists, by TFDS split name.
SPLIT_FILES = {
    "train": "gtzan_fault_filtered_train.txt",
    "validation": "gtzan_fault_filtered_validation.txt",
    "test": "gtzan_fault_filtered_test.txt",
}
REPETITIONS_FILE = "gtzan_repetitions.txt"
FAULTS_FILE = "gtzan_known_faults.txt"
#: Where the lists come from, as the build report names them.
SPLIT_SOURCE = (
    "Kereliuk, Sturm and Larsen, 'Deep Learning and Music Adversaries', IEEE Trans. Multimedia "
    "2015; lists of github.com/coreyker/dnn-mgr (gtzan/*_filtered.txt)"
)
REPETITIONS_SOURCE = (
    "Sturm's GTZAN index (artist and title per clip; Sturm, ACM MIRUM 2012 and arXiv:1306.1461), "
    "as in github.com/seungheondoh/gtzan-bind: clips sharing artist and title"
)
FAULTS_SOURCE = "known faults of the widely shared copy (see the data file's header)"
CLIP_ID = re.compile(r"^(?P<genre>[a-z]+)\.(?P<number>\d{5})$")


def _data_lines(name: str) -> list[str]:
    """The non-comment, non-empty lines of the shipped data file ``name``."""
    text = (resources.files("shared_data.dataset") / "data" / name).read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


def is_clip_id(text: str) -> bool:
    """Whether ``text`` is a GTZAN clip id ``<genre>.<5 digits>`` of one of :data:`GENRES`."""
    m = CLIP_ID.match(text)
    return bool(m) and m.group("genre") in GENRES


def fault_filtered_lists() -> dict[str, tuple[str, ...]]:
    """``{"train", "validation", "test": clip ids}`` of the fault-filtered split, in list order.

    Raises:
        DataError: a shipped list is malformed or two lists share a clip (a broken install).
    """
    lists = {split: tuple(_data_lines(name)) for split, name in SPLIT_FILES.items()}
    seen: dict[str, str] = {}
    for split, ids in lists.items():
        for clip in ids:
            if not is_clip_id(clip):
                raise DataError(f"shipped list {SPLIT_FILES[split]}: {clip!r} is not a clip id")
            if clip in seen:
                raise DataError(f"shipped lists: {clip} is in both {seen[clip]} and {split}")
            seen[clip] = split
    return lists


def repetitions() -> list[dict[str, Any]]:
    """The groups of clips sharing an artist and title: ``[{"clips": [ids], "what": str}]``."""
    out = []
    for line in _data_lines(REPETITIONS_FILE):
        ids, what = line.split("\t", 1)
        out.append({"clips": ids.split(), "what": what})
    return out


def known_faults() -> list[dict[str, str]]:
    """Faults of single clips: ``[{"clip", "kind", "what"}]``."""
    out = []
    for line in _data_lines(FAULTS_FILE):
        clip, kind, what = line.split("\t", 2)
        out.append({"clip": clip, "kind": kind, "what": what})
    return out


def fault_notes(clips: Iterable[str], split_of: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The report section naming the known faults that concern ``clips`` (ids of a build).

    A repetition group is listed when at least one of its clips is in the build, with the split
    of each clip (``split_of``; None: the clips are not split), and ``crosses_splits`` when its
    clips lie in more than one split. Labels are reported, never changed.
    """
    present = set(clips)
    split_of = split_of or {}
    groups = []
    for group in repetitions():
        members = [c for c in group["clips"] if c in present]
        if not members:
            continue
        where = {c: split_of.get(c) for c in members}
        entry = {"clips": members, "group": group["clips"], "what": group["what"], "splits": where}
        entry["crosses_splits"] = len({s for s in where.values() if s is not None}) > 1
        entry["crosses_labels"] = len({c.split(".")[0] for c in group["clips"]}) > 1
        groups.append(entry)
    faults = [f for f in known_faults() if f["clip"] in present]
    return {
        "repetitions": {"source": REPETITIONS_SOURCE, "groups": groups},
        "clip_faults": {"source": FAULTS_SOURCE, "faults": faults},
        "mislabelings": (
            "Sturm 2013 (arXiv:1306.1461) lists mislabelings in the paper's tables; no "
            "machine-readable copy is shipped, so none is named here; labels are the folders'"
        ),
    }


def genre_root(root: Path) -> Path:
    """The folder holding the genre folders of the GTZAN download at ``root``.

    Raises:
        DataError: ``root`` is missing, or none of the layouts fits.
    """
    if not root.is_dir():
        raise DataError(
            f"--input={root} is not a folder; the gtzan config reads a GTZAN download "
            "(genres/<genre>/<genre>.000NN.au, genres_original/<genre>/<genre>.000NN.wav, or "
            "the genre folders themselves)"
        )
    for name in LAYOUT_FOLDERS:
        if (root / name).is_dir():
            return root / name
    if any((root / genre).is_dir() for genre in GENRES):
        return root
    raise DataError(
        f"no GTZAN genre folders under --input={root}: expected {'/ or '.join(LAYOUT_FOLDERS)}/"
        f" or the genre folders ({', '.join(GENRES)}) themselves"
    )


def gtzan_inputs(root: Path) -> tuple[list[SongInput], list[str]]:
    """The clips of the GTZAN download at ``root`` (any layout of :func:`genre_root`).

    Every file of a genre folder is listed (the folder config's rules: hidden files skipped, links
    followed); its song id is the clip's name. A file that is not a clip of its folder's genre
    (``<genre>.<5 digits>.<ext>``), or a second file of one clip (``.au`` beside ``.wav``), is
    rejected with that reason, never dropped.

    Returns:
        ``(items sorted by path, label names sorted)``; paths are relative to the genre root.
    """
    base = genre_root(root)
    items, labels = folder_inputs(base)
    out: list[SongInput] = []
    first_of: dict[str, str] = {}
    for item in items:
        if item.reject_reason is not None:
            out.append(item)
            continue
        clip = Path(item.path).name.rsplit(".", 1)[0]
        reason = None
        if not is_clip_id(clip) or Path(item.path).parent.as_posix() != clip.split(".")[0]:
            reason = (
                f"not a GTZAN clip of its folder (expected {item.label}/{item.label}.000NN.au or "
                ".wav)"
            )
        elif clip in first_of:
            reason = f"another file of clip {clip} (first: {first_of[clip]}); a clip is used once"
        else:
            first_of[clip] = item.path
        out.append(SongInput(item.path, item.label, song_id=clip, file=item.file,
                             reject_reason=reason))  # fmt: skip
    return out, labels
