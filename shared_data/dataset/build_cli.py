"""Build the ``vocal_mels`` dataset: ``python -m shared_data.build --config=NAME [...]``.

Examples::

    python -m shared_data.build --config=synthetic --data_dir=data --gallery=data/gallery.png
    python -m shared_data.build --config=folder --input=~/gtzan/genres --data_dir=data
    python -m shared_data.build --config=csv --input=train.csv --data_dir=data --strict

Prints a progress bar and a summary, and writes ``build_report.json`` (every input file with its
status and reason) in the dataset folder. Bad files are reported and skipped; ``--strict`` fails on
any. An interrupted build resumes from its song cache when run again. User errors exit with 2.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shared_data.cli import run_main
from shared_data.dataset.folds import DEFAULT_FOLDS

MAX_LISTED_REJECTIONS = 20


def build_parser() -> argparse.ArgumentParser:
    """The command-line flags (defaults shown in ``--help``)."""
    from shared_data.dataset.builder import (
        CONFIG_NAMES,
        DEFAULT_SEPARATOR,
        DEFAULT_STEM,
        default_data_dir,
    )
    from shared_data.separation.registry import BACKENDS, STEM_CHOICES

    p = argparse.ArgumentParser(
        prog="python -m shared_data.build",
        description="Build the vocal_mels TFDS dataset (array_record, no TensorFlow).",
    )
    p.add_argument(
        "--config", required=True, choices=CONFIG_NAMES, help="builder config (required)"
    )
    p.add_argument(
        "--input",
        help="folder: <input>/<label>/<file>; csv: the manifest (or a folder with manifest.csv). "
        "Default: TFDS's manual_dir, <data_dir>/downloads/manual",
    )
    p.add_argument(
        "--data_dir",
        default=str(default_data_dir()),
        help="dataset root: $VOCALGENRE_DATA_DIR or ~/vocalgenre_data (here %(default)s)",
    )
    p.add_argument(
        "--separator", default=DEFAULT_SEPARATOR, help="none|spleeter (default %(default)s)"
    )
    p.add_argument(
        "--stem",
        default=DEFAULT_STEM,
        choices=STEM_CHOICES,
        help="stem to featurise (default %(default)s)",
    )
    p.add_argument(
        "--backend",
        default="auto",
        choices=BACKENDS,
        help="separator backend (default %(default)s)",
    )
    p.add_argument(
        "--folds", type=int, default=DEFAULT_FOLDS, help="song-grouped folds (default %(default)s)"
    )
    p.add_argument("--strict", action="store_true", help="fail if any input file is rejected")
    p.add_argument("--gallery", metavar="PNG", help="also draw one mel per label into this PNG")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing dataset of this config (the song cache is kept and reused)",
    )
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    return p


def format_summary(
    report: dict[str, Any],
    metadata: dict[str, Any],
    *,
    dataset_path: Path,
    report_path: Path,
    reused: bool,
    seconds: float,
) -> str:
    """The human summary of a build, from its report and metadata."""
    rows = report["files"]
    songs = {
        split: sum(r["status"] == "ok" and r["split"] == split for r in rows)
        for split in ("train", "test")
    }
    train_clips = report["clips"]["train"]
    test_clips = sum(report["clips"]["test"].values())
    head = (
        f"{report['dataset']}: already built with these settings and inputs; reused "
        "(--overwrite rebuilds it)"
        if reused
        else f"{report['dataset']}: built in {seconds:.1f} s"
    )
    lines = [
        head,
        f"  separator {report['separator']} (backend {report['backend']}), stem "
        f"{report['stem']}, {report['folds']} folds",
        f"  files: {report['files_seen']} seen, {report['files_ok']} ok, "
        f"{report['files_rejected']} rejected; {report['songs_cached']} songs reused from the "
        "cache",
        f"  songs: train {songs['train']}, test {songs['test']}",
        f"  clips: train {sum(train_clips.values())} ("
        + ", ".join(f"{k} {v}" for k, v in train_clips.items())
        + f"), test {test_clips}",
        f"  mel mean {metadata['mel_mean']:.2f} dB, std {metadata['mel_std']:.2f} dB (train)",
    ]
    rejected = [r for r in rows if r["status"] == "rejected"]
    if rejected:
        lines.append(f"  rejected files ({len(rejected)}):")
        lines += [f"    {r['path']}: {r['reason']}" for r in rejected[:MAX_LISTED_REJECTIONS]]
        if len(rejected) > MAX_LISTED_REJECTIONS:
            lines.append(f"    ... {len(rejected) - MAX_LISTED_REJECTIONS} more in the report")
    lines += [f"  dataset: {dataset_path}", f"  report:  {report_path}"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse flags, build (or reuse) the dataset, print the summary; 0 on success."""
    args = build_parser().parse_args(argv)
    import tensorflow_datasets as tfds

    from shared_data.dataset.builder import build_dataset, open_dataset
    from shared_data.dataset.gallery import dataset_gallery

    tfds.disable_progress_bar()  # ours counts songs; TFDS's would count records twice over
    started = time.monotonic()
    builder = build_dataset(
        args.data_dir,
        args.config,
        separator=args.separator,
        stem=args.stem,
        backend=args.backend,
        input=args.input,
        strict=args.strict,
        folds=args.folds,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    report = json.loads(builder.report_path.read_text())
    print(
        format_summary(
            report,
            dict(builder.info.metadata),
            dataset_path=Path(builder.data_path),
            report_path=builder.report_path,
            reused=builder.reused_existing,
            seconds=time.monotonic() - started,
        )
    )
    if args.gallery:
        path = dataset_gallery(open_dataset(args.data_dir, args.config), args.gallery)
        print(f"  gallery: {path}")
    return 0


if __name__ == "__main__":
    run_main(main)
