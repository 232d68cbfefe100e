"""The songs a ``vocal_mels`` config lists: the one dispatch over its source.

Kept apart from :mod:`shared_data.dataset.inputs` (the folder, csv and synthetic listings) and
:mod:`shared_data.dataset.gtzan` (GTZAN's layouts, which build on the folder listing), so neither
imports the other's dispatcher.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shared_data.dataset.gtzan import gtzan_inputs
from shared_data.dataset.inputs import SongInput, csv_inputs, folder_inputs, synthetic_inputs
from shared_data.errors import DataError


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
