"""The ``build_report.json`` and the dataset metadata of a ``vocal_mels`` build, from its rows.

The label set comes from the accepted songs: a label that was listed (a label folder, a manifest
label) but has no accepted song is left out of the label set and named in the report's
``labels_without_songs`` (``{label: files rejected}``), so no class exists without examples.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shared_data.dataset.configs import (
    METADATA_FORMAT,
    REPORT_NAME,
    SEPARATION_BACKEND_KEY,
    json_normal,
)
from shared_data.dataset.settings import BuildSettings
from shared_data.dataset.songs import MelStats, Song
from shared_data.errors import DataError


def accepted_labels(
    rows: Sequence[dict[str, Any]], listed: Sequence[str]
) -> tuple[list[str], dict[str, int]]:
    """``(label names of accepted train songs, sorted; {listed label without any: its files})``."""
    used = sorted({r["label"] for r in rows if r["status"] == "ok" and r["label"] is not None})
    dropped = {
        label: sum(r["label"] == label for r in rows) for label in sorted(set(listed) - set(used))
    }
    return used, dropped


def build_report(
    rows: list[dict[str, Any]],
    songs: Sequence[Song],
    labels: Sequence[str],
    *,
    head: dict[str, Any],
    extra: dict[str, Any],
) -> dict[str, Any]:
    """The report: ``head`` (dataset, paths, flags), the file counts, the clips per label and
    split, ``extra`` (stem presence, dropped labels, timings) and every file row.

    ``files_seen == files_ok + files_rejected == len(files)`` always holds.
    """
    clips: dict[str, dict[str, int]] = {"train": {name: 0 for name in labels}, "test": {}}
    for song in songs:
        if song.label is None:
            clips["test"]["(unlabelled)"] = clips["test"].get("(unlabelled)", 0) + song.n_clips
        else:
            clips["train"][song.label] += song.n_clips
    n_ok = sum(r["status"] == "ok" for r in rows)
    return {
        **head,
        "files_seen": len(rows),
        "files_ok": n_ok,
        "files_rejected": len(rows) - n_ok,
        **extra,
        "clips": clips,
        "files": rows,
    }


def metadata(
    rows: Sequence[dict[str, Any]],
    train: Sequence[Song],
    test: Sequence[Song],
    labels: Sequence[str],
    stats: dict[str, MelStats],
    *,
    fields: dict[str, Any],
) -> dict[str, Any]:
    """The dataset metadata (``METADATA_KEYS``): statistics (per stem of ``stats``) and counts
    from the build, plus ``fields`` (:meth:`BuildSettings.metadata_fields`: separator,
    separation backend, stems, feature params, folds, fold method, config, settings), stored as
    they read back from JSON."""
    n_ok = sum(r["status"] == "ok" for r in rows)
    return {
        "format": METADATA_FORMAT,
        "mel_stats": {stem: {"mean": float(s.mean), "std": s.std} for stem, s in stats.items()},
        **json_normal(fields),
        "checksums": {r["path"]: r.get("sha256") for r in rows},
        "label_names": list(labels),
        "num_songs": {"train": len(train), "test": len(test)},
        "num_clips": {
            "train": sum(s.n_clips for s in train),
            "test": sum(s.n_clips for s in test),
        },
        "files_seen": len(rows),
        "files_ok": n_ok,
        "files_rejected": len(rows) - n_ok,
        "build_report": REPORT_NAME,
    }


def report_head(
    settings: BuildSettings, *, dataset: str, dataset_dir: Path, input_root: Path | None
) -> dict[str, Any]:
    """The first fields of the report of a build of ``settings`` into ``dataset_dir``
    (``dataset``: ``vocal_mels/<config>/<version>``; ``input_root``: None for synthetic):
    ``separation_backend`` and ``separation_precision`` as asked, ``separation`` what they
    resolved to and why."""
    return {
        "dataset": dataset,
        "dataset_dir": os.fspath(dataset_dir),
        "input": None if input_root is None else os.fspath(input_root),
        "separator": settings.separator,
        "separation": settings.separation,
        SEPARATION_BACKEND_KEY: settings.separation_backend,
        "separation_precision": settings.separation_precision,
        "stems": list(settings.stems),
        "folds": settings.folds,
        "fold_method": settings.fold_method,
        "strict": settings.strict,
    }


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically (a reader never sees half a file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def _files(n: int) -> str:
    return f"{n} file" if n == 1 else f"{n} files"


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def refuse_or_warn(
    rows: Sequence[dict[str, Any]],
    dropped: dict[str, int],
    stem_check: dict[str, Any],
    *,
    strict: bool,
    report: Path,
) -> None:
    """Fail a strict build on rejected files, labels without songs or a near-silent stem;
    otherwise warn (on stderr) about the last two. ``report`` is named in the messages.

    Raises:
        DataError: under ``strict``, one message listing what failed and the fix.
    """
    empty = ", ".join(f"{k} ({_files(n)}, all rejected)" for k, n in dropped.items())
    rejected = [r for r in rows if r["status"] == "rejected"]
    if strict and rejected:
        listing = "\n".join(f"  {r['path']}: {r['reason']}" for r in rejected[:20])
        more = f"\n  ... and {len(rejected) - 20} more" if len(rejected) > 20 else ""
        labels = f"\nlabels left without songs: {empty}" if dropped else ""
        raise DataError(
            f"--strict: {len(rejected)} of {len(rows)} input files were rejected:\n{listing}"
            f"{more}{labels}\nreport: {report}; fix or remove those files, or build without "
            "--strict to skip them"
        )
    warnings = stem_check.get("warnings", [])
    if strict and warnings:
        raise DataError(f"--strict: {'; '.join(warnings)}; report: {report}")
    if dropped:
        _warn(f"labels with no accepted song are left out of the label set: {empty}")
    for warning in warnings:
        _warn(warning)
