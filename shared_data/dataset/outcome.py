"""What a ``vocal_mels`` build makes of its processed songs: report, splits, folds, metadata.

:func:`settle` runs once the songs are separated and featurised (cached). It writes the build
report beside the song cache first, so that a build it refuses still has one, then applies the
refusals (``--strict``, a fixed split left empty, no labelled song at all), assigns the folds and
makes the metadata. The builder writes what it returns: the records of each split, the label
names, the metadata, and the report again in the dataset folder.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from shared_data.dataset import presence, split_source
from shared_data.dataset.folds import song_folds
from shared_data.dataset.listing import BuildInputs
from shared_data.dataset.report import (
    accepted_labels,
    build_report,
    metadata,
    refuse_or_warn,
    write_json,
)
from shared_data.dataset.settings import BuildSettings
from shared_data.dataset.songs import Processed, Song
from shared_data.errors import DataError


@dataclasses.dataclass(frozen=True)
class Outcome:
    """A build's result before its records are written.

    Attributes:
        report: the ``build_report.json`` content (:func:`report.build_report`).
        labels: the label names, index = label (the labels of accepted songs, sorted).
        splits: ``{split: songs}`` in record order (``train``, ``test`` when there are unlabelled
            songs; ``train``/``validation``/``test`` for fixed splits).
        fold_of: ``{song_id: fold}`` (:data:`split_source.NO_FOLD` for fixed splits).
        metadata: the dataset metadata (``METADATA_KEYS``).
    """

    report: dict[str, Any]
    labels: list[str]
    splits: dict[str, list[Song]]
    fold_of: dict[str, int]
    metadata: dict[str, Any]


def settle(
    done: Processed,
    inputs: BuildInputs,
    settings: BuildSettings,
    fixed: split_source.FixedSplits | None,
    *,
    head: dict[str, Any],
    seconds: float,
    cache_report: Path,
) -> Outcome:
    """The outcome of a build of ``settings`` whose songs ``done`` came from ``inputs``
    (``fixed``: their fixed splits, for ``--split=fault_filtered``; ``head``:
    :func:`report.report_head`; ``seconds``: the time spent on the songs). Writes the report to
    ``cache_report`` before any refusal.

    Raises:
        DataError: a strict build with rejected files, labels without songs or a near-silent
            stem; a fixed split without songs; no labelled song accepted. Each names the report.
    """
    labels, dropped = accepted_labels(done.rows, inputs.labels)
    stem_check = presence.summarise(done.rows, settings.stems)
    extra = {
        "songs_cached": done.n_cached,
        "seconds": round(seconds, 3),
        "labels_without_songs": dropped,
        "stem_presence": stem_check,
    }
    if settings.config.source == "gtzan":
        extra.update(split_source.report_sections(settings.split, fixed, inputs.partition, done))
    report = build_report(done.rows, done.songs, labels, head=head, extra=extra)
    write_json(cache_report, report)
    refuse_or_warn(done.rows, dropped, stem_check, strict=settings.strict, report=cache_report)
    if fixed is not None:
        split_source.require_every_split(fixed, cache_report)
    train = [s for s in done.songs if s.label is not None]
    test = [s for s in done.songs if s.label is None]
    if not train:
        raise DataError(
            f"no usable labelled songs among {len(done.rows)} input files; see "
            f"{cache_report} for the reason of each"
        )
    pairs = [(s.song_id, s.label) for s in done.songs]
    fold_of = song_folds(pairs, settings.folds, settings.fold_method)
    fields = settings.metadata_fields()
    if fixed is not None:  # fixed splits: no song has a cross-validation fold
        meta = metadata(done.rows, fixed.songs["train"], [], labels, fixed.stats, fields=fields)
        no_folds = dict.fromkeys(fold_of, split_source.NO_FOLD)
        return Outcome(report, labels, dict(fixed.songs), no_folds, {**meta, **fixed.counts()})
    meta = metadata(done.rows, train, test, labels, done.stats, fields=fields)
    splits = {"train": train, **({"test": test} if test else {})}
    return Outcome(report, labels, splits, fold_of, meta)
