"""Where a build's splits come from: K folds of one ``train`` split, or published fixed lists.

:data:`SPLIT_SOURCES` (the build's ``--split``):

- ``kfold`` (every config's default but ``gtzan``'s): every labelled clip in ``train``, with its
  song-grouped fold (:mod:`shared_data.dataset.folds`); training validates on ``--fold``.
- ``fault_filtered`` (``gtzan`` only, its default): the ``train``, ``validation`` and ``test``
  splits of the published fault-filtered lists
  (:func:`shared_data.dataset.gtzan.fault_filtered_lists`). Records carry :data:`NO_FOLD`;
  training validates on ``validation`` and ``evaluate --split=test`` scores the test list. Clips
  outside the lists are not built but named in the build report (``split.excluded``, with the
  reason), and so are listed clips without a file (``split.missing``) and listed clips whose file
  was rejected (``split.listed_but_rejected``). The mel statistics are those of the ``train``
  split alone: nothing of the validation or test audio reaches the model, not even through the
  normalisation.

Random song-level splits of GTZAN put one artist's clips on both sides (and repeated clips, see
:func:`shared_data.dataset.gtzan.repetitions`), which inflates accuracy; the filtered lists are
artist-disjoint.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from shared_data.dataset import gtzan
from shared_data.dataset.cache import SongCache
from shared_data.dataset.inputs import SongInput
from shared_data.dataset.songs import MelStats, Processed, Song, mels_key
from shared_data.errors import DataError

SPLIT_SOURCES = ("fault_filtered", "kfold")
#: The ``fold`` of a record in a dataset with fixed splits (no cross-validation fold).
NO_FOLD = -1
FIXED_SPLITS = ("train", "validation", "test")
EXCLUDED_REASON = "not in the fault-filtered lists (" + gtzan.SPLIT_SOURCE + "); left out"


def resolve_split(split: str | None, config: Any) -> str:
    """The split source of a build of ``config`` (a ``VocalMelsConfig``) asked for ``split``
    (None: the config's default).

    Raises:
        DataError: an unknown name, or ``fault_filtered`` for a config other than GTZAN's.
    """
    if split is None:
        return "fault_filtered" if config.source == "gtzan" else "kfold"
    if split not in SPLIT_SOURCES:
        raise DataError(f"--split must be one of {'|'.join(SPLIT_SOURCES)} (got {split!r})")
    if split == "fault_filtered" and config.source != "gtzan":
        raise DataError(
            f"--split=fault_filtered is GTZAN's published split; config {config.name!r} has no "
            "such lists: use --split=kfold, or --config=gtzan for GTZAN"
        )
    return split


def has_fixed_splits(dataset: Any) -> bool:
    """Whether an opened dataset has a ``validation`` split (then it has no folds to choose)."""
    return "validation" in getattr(dataset, "splits", ())


@dataclasses.dataclass(frozen=True)
class Partition:
    """The listed inputs split by the lists: ``items`` to build (in a list, or rejected when
    listed), ``split_of`` {clip id: split} of the lists, ``excluded`` report rows of clips outside
    them, ``missing`` {split: listed ids with no usable file met}."""

    items: list[SongInput]
    split_of: dict[str, str]
    excluded: list[dict[str, Any]]
    missing: dict[str, list[str]]


def partition(items: Sequence[SongInput], lists: Mapping[str, Sequence[str]]) -> Partition:
    """Split the listed ``items`` by the fixed ``lists`` ({split: clip ids}).

    Items already rejected at listing stay in ``items`` (the report gives their reason).
    """
    split_of = {clip: split for split, ids in lists.items() for clip in ids}
    kept: list[SongInput] = []
    excluded: list[dict[str, Any]] = []
    present: set[str] = set()
    for item in items:
        if item.reject_reason is None and item.song_id not in split_of:
            excluded.append({"path": item.path, "song_id": item.song_id, "label": item.label,
                             "reason": EXCLUDED_REASON})  # fmt: skip
            continue
        kept.append(item)
        if item.reject_reason is None:
            present.add(str(item.song_id))
    missing = {split: [c for c in ids if c not in present] for split, ids in lists.items()}
    return Partition(kept, split_of, excluded, missing)


@dataclasses.dataclass(frozen=True)
class FixedSplits:
    """The accepted songs by split, the ``train`` mel statistics per stem and the report
    section."""

    songs: dict[str, list[Song]]
    stats: dict[str, MelStats]
    section: dict[str, Any]

    def counts(self) -> dict[str, dict[str, int]]:
        """The metadata's ``num_songs`` and ``num_clips``, per split."""
        return {
            "num_songs": {k: len(v) for k, v in self.songs.items()},
            "num_clips": {k: sum(s.n_clips for s in v) for k, v in self.songs.items()},
        }


def fixed_splits(
    done: Processed, part: Partition, cache: SongCache, stems: Sequence[str]
) -> FixedSplits:
    """Assign the processed songs to their lists' splits and mark each report row's ``split``
    (:func:`require_every_split` then refuses a split left without clips)."""
    songs: dict[str, list[Song]] = {name: [] for name in FIXED_SPLITS}
    for song in done.songs:
        songs[part.split_of[song.song_id]].append(song)
    rejected = []
    for row in done.rows:
        split = part.split_of.get(str(row.get("song_id") or ""))
        row["split"] = split
        if row["status"] == "rejected" and split is not None:
            rejected.append({"song_id": row["song_id"], "path": row["path"], "split": split,
                             "reason": row["reason"]})  # fmt: skip
    stats = {stem: MelStats() for stem in stems}
    for song in songs["train"]:
        entry = cache.get_entry(song.key)
        if entry is not None:
            for stem, stem_stats in stats.items():
                stem_stats.update(entry[mels_key(stem)])
    section = {
        "name": "fault_filtered",
        "source": gtzan.SPLIT_SOURCE,
        "listed": {name: sum(s == name for s in part.split_of.values()) for name in FIXED_SPLITS},
        "songs": {name: len(members) for name, members in songs.items()},
        "clips": {name: sum(s.n_clips for s in members) for name, members in songs.items()},
        "excluded": part.excluded,
        "missing": part.missing,
        "listed_but_rejected": rejected,
    }
    return FixedSplits(songs, stats, section)


def require_every_split(fixed: FixedSplits, report: Path) -> None:
    """Raise :class:`DataError` when a split holds no clip (``report``: where each file's fate is
    written)."""
    empty = [name for name, members in fixed.songs.items() if not members]
    if empty:
        raise DataError(
            f"the fault-filtered {' and '.join(empty)} split would hold no clip: none of its "
            f"listed GTZAN clips was found and read; check --input (each file's fate: {report})"
        )


def report_sections(
    split: str, fixed: FixedSplits | None, part: Partition | None, done: Processed
) -> dict[str, Any]:
    """A GTZAN build report's ``split`` section (``fixed.section``, or just the name for
    ``kfold``) and ``gtzan_faults`` (:func:`shared_data.dataset.gtzan.fault_notes` of every clip
    the build met: its report rows, accepted or rejected once read, and the clips left out)."""
    met = {str(r["song_id"]) for r in done.rows if r.get("song_id")}
    met |= {str(e["song_id"]) for e in (part.excluded if part else ())}
    return {
        "split": fixed.section if fixed else {"name": split},
        "gtzan_faults": gtzan.fault_notes(met, part.split_of if part else None),
    }


def summary_line(section: Mapping[str, Any] | None) -> str | None:
    """One line of the build summary for the report's ``split`` section (None: no section, or
    one of K folds)."""
    if not section or "songs" not in section:
        return None
    songs = ", ".join(f"{k} {v}" for k, v in section["songs"].items())
    listed = "/".join(str(v) for v in section["listed"].values())
    missing = sum(len(v) for v in section["missing"].values())
    return (
        f"  split fault_filtered (lists of {listed}): songs {songs}; {len(section['excluded'])} "
        f"clips outside the lists left out, {missing} listed clips missing, "
        f"{len(section['listed_but_rejected'])} listed clips rejected (all named in the report)"
    )
