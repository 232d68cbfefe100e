"""The songs a ``vocal_mels`` build reads: the one dispatch over its config's source.

:func:`list_inputs` lists a config's songs; :func:`build_inputs` is what a build reads: those songs
at the build's input root, kept to the published lists for ``--split=fault_filtered``.

Kept apart from :mod:`shared_data.dataset.inputs` (the folder, csv and synthetic listings) and
:mod:`shared_data.dataset.gtzan` (GTZAN's layouts, which build on the folder listing), so neither
imports the other's dispatcher.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from shared_data.dataset import split_source
from shared_data.dataset.gtzan import fault_filtered_lists, gtzan_inputs
from shared_data.dataset.inputs import SongInput, csv_inputs, folder_inputs, synthetic_inputs
from shared_data.dataset.settings import BuildSettings
from shared_data.errors import DataError

#: Where a build finds the audio of a config without ``--input`` (TFDS's manual-download text).
MANUAL_INSTRUCTIONS = (
    "folder: put audio files in <manual_dir>/<label>/<file> (GTZAN layout); csv: put "
    "manifest.csv (rows path,label[,song_id], paths relative to it) in <manual_dir>; gtzan: "
    "put the GTZAN download (genres/ or genres_original/) in <manual_dir>. "
    "Or pass input=... (--input=PATH) instead."
)


@dataclasses.dataclass(frozen=True)
class BuildInputs:
    """The songs a build reads: ``items`` (for fixed splits, those the lists keep), the label
    names listed (sorted, before any song is read) and the fixed-split ``partition`` (None unless
    ``--split=fault_filtered``)."""

    items: list[SongInput]
    labels: list[str]
    partition: split_source.Partition | None = None


def list_inputs(config: Any, root: Path | None) -> tuple[list[SongInput], list[str]]:
    """The songs of a ``VocalMelsConfig``: the synthetic corpus, or the folder/csv/gtzan input at
    ``root``.

    Returns:
        ``(items, label names sorted)``; the labels are those listed, before any song is read.

    Raises:
        DataError: unknown synthetic genres, or what :func:`folder_inputs`/:func:`csv_inputs`
            raise.
    """
    if config.source == "synthetic":
        from shared_data.corpus.synthetic import GENRES  # the corpus: only for synthetic configs

        genres = tuple(config.genres) if config.genres is not None else tuple(GENRES)
        unknown = sorted((set(genres) | set(config.instrumental_genres)) - set(GENRES))
        if unknown:
            raise DataError(f"config {config.name!r}: unknown genres {unknown}; use {GENRES}")
        items = synthetic_inputs(
            genres, config.songs_per_genre, instrumental=config.instrumental_genres,
            instrumental_every=config.instrumental_every,
        )  # fmt: skip
        return items, sorted(genres)
    assert root is not None
    if config.source == "folder":
        return folder_inputs(root)
    if config.source == "gtzan":
        return gtzan_inputs(root)
    return csv_inputs(root)


def input_root(
    settings: BuildSettings,
    data_dir: str | os.PathLike[str],
    manual_dir: str | os.PathLike[str] | None = None,
) -> Path | None:
    """Where a build of ``settings`` reads its audio: ``--input``, else TFDS's ``manual_dir``
    (default ``<data_dir>/downloads/manual``); None for a synthetic config."""
    if settings.config.source == "synthetic":
        return None
    if settings.input is not None:
        return settings.input
    return Path(manual_dir) if manual_dir else Path(data_dir) / "downloads" / "manual"


def build_inputs(settings: BuildSettings, root: Path | None) -> BuildInputs:
    """The songs a build of ``settings`` reads from ``root`` (:func:`input_root`).

    Raises:
        DataError: no ``--input`` and no audio in the manual_dir (naming both ways to give it),
            or what :func:`list_inputs` raises.
    """
    config = settings.config
    if root is not None and settings.input is None and not root.exists():
        raise DataError(
            f"config {config.name!r} needs audio: pass --input=PATH, or put the files in "
            f"TFDS's manual_dir {root} ({MANUAL_INSTRUCTIONS})"
        )
    items, labels = list_inputs(config, root)
    if settings.split != "fault_filtered":
        return BuildInputs(items, labels)
    partition = split_source.partition(items, fault_filtered_lists())
    return BuildInputs(partition.items, labels, partition)
