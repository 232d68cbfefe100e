"""Build the ``vocal_mels`` dataset: ``python -m shared_data.build --config=NAME [...]``.

Examples::

    python -m shared_data.build --config=synthetic --data_dir=data --gallery=data/gallery.png
    python -m shared_data.build --config=folder --input=~/gtzan/genres --data_dir=data
    python -m shared_data.build --config=gtzan --input=~/gtzan --data_dir=data   # fault-filtered
    python -m shared_data.build --config=csv --input=train.csv --data_dir=data --strict

Prints a progress bar and a summary (from the report the build returns), and writes
``build_report.json`` (every input file with its status and reason) in the dataset folder. Bad
files are reported and skipped; ``--strict`` fails on any, on a label left without songs, and on a
near-silent stem. An interrupted build resumes from its song cache when run again. User errors
exit with 2, a full disk or an unwritable ``--data_dir`` too, with one message naming the folder
and the fix (the wording of :func:`shared_data.destinations.write_failure`); a ``--gallery`` that
cannot be written is refused before any audio is read.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shared_data.cli import run_main
from shared_data.dataset.folds import DEFAULT_FOLD_METHOD, DEFAULT_FOLDS, FOLD_METHODS
from shared_data.destinations import WRITE_ERRORS, check_file_destination, write_failure
from shared_data.errors import DataError

MAX_LISTED_REJECTIONS = 20


def build_parser() -> argparse.ArgumentParser:
    """The command-line flags (defaults shown in ``--help``)."""
    from shared_data.dataset.configs import CONFIG_NAMES
    from shared_data.paths import DATA_DIR_RULE, default_data_dir

    p = argparse.ArgumentParser(
        prog="python -m shared_data.build",
        description="Build the vocal_mels TFDS dataset (array_record, no TensorFlow).",
    )
    p.add_argument(
        "--config", required=True, choices=CONFIG_NAMES, help="builder config (required)"
    )
    p.add_argument(
        "--input",
        help="folder: <input>/<label>/<file>; csv: the manifest (or a folder with manifest.csv); "
        "gtzan: the GTZAN download (genres/, genres_original/ or the genre folders). "
        "Default: TFDS's manual_dir, <data_dir>/downloads/manual",
    )
    p.add_argument(
        "--data_dir",
        default=str(default_data_dir()),
        help=f"dataset root: {DATA_DIR_RULE} (here %(default)s)",
    )
    _add_separation_flags(p)
    _add_split_flags(p)
    p.add_argument(
        "--strict",
        action="store_true",
        help="fail if any input file is rejected, a label has no accepted song, or the stem is "
        "near-silent in too many songs",
    )
    _add_output_flags(p)
    _add_beam_flags(p)
    return p


def _add_separation_flags(p: argparse.ArgumentParser) -> None:
    from shared_data.dataset.configs import DEFAULT_SEPARATOR
    from shared_data.separation.registry import PRECISIONS, SEPARATION_BACKENDS, STEM_CHOICES

    p.add_argument(
        "--separator", default=DEFAULT_SEPARATOR, help="none|spleeter (default %(default)s)"
    )
    p.add_argument(
        "--stems",
        default=None,
        help="stems to store, comma-separated, from "
        f"{','.join(STEM_CHOICES)}; default: every stem the separator gives (all three for "
        "spleeter, mix for --separator=none); training picks one with its --stem",
    )
    p.add_argument(
        "--stem",
        default=None,
        choices=STEM_CHOICES,
        help="store this one stem (the same as --stems=STEM)",
    )
    p.add_argument(
        "--backend",
        default="auto",
        choices=SEPARATION_BACKENDS,
        help="separator backend; auto: the fastest measured path here (default %(default)s)",
    )
    p.add_argument(
        "--separation_precision",
        default="auto",
        choices=PRECISIONS,
        help="precision of the separator's networks; bf16 stems never share a dataset with fp32 "
        "ones (default %(default)s: the fastest measured path here)",
    )


def _add_split_flags(p: argparse.ArgumentParser) -> None:
    from shared_data.dataset.split_source import SPLIT_SOURCES

    p.add_argument(
        "--folds", type=int, default=DEFAULT_FOLDS, help="song-grouped folds (default %(default)s)"
    )
    p.add_argument(
        "--fold_method",
        default=DEFAULT_FOLD_METHOD,
        choices=FOLD_METHODS,
        help="stratified: every fold holds every label with >= K songs; hash: a song's fold "
        "never moves when songs are added (default %(default)s)",
    )
    p.add_argument(
        "--split",
        choices=SPLIT_SOURCES,
        help="fault_filtered: GTZAN's published artist-disjoint train/validation/test lists "
        "(--config=gtzan only, its default); kfold: one train split with song-grouped folds "
        "(every other config's default)",
    )


def _add_beam_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--workers",
        type=int,
        help="run the per-song stage (decode, separate, featurise) on Apache Beam's DirectRunner "
        "with this many local processes, then write as usual (needs pip install -e '.[beam]')",
    )
    p.add_argument(
        "--beam_pipeline_options",
        metavar="OPTIONS",
        help="run the per-song stage on Beam with these pipeline options, e.g. "
        '"--runner=FlinkRunner --flink_master=HOST:8081"; the song cache under --data_dir must '
        "be on storage every worker shares",
    )


def _add_output_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gallery", metavar="PNG", help="also draw one mel per label into this PNG")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing dataset of this config (the song cache is kept and reused)",
    )
    p.add_argument("--no_progress", action="store_true", help="no progress bar")


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
    from shared_data.dataset.configs import separation_backend_of
    from shared_data.dataset.split_source import summary_line

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
    separation = report.get("separation") or (
        f"{report['separator']} (backend {separation_backend_of(report)})"
    )
    fixed = summary_line(report.get("split"))  # None unless the splits come from fixed lists
    folds = f"{report['folds']} folds ({report.get('fold_method', 'hash')})"
    lines = [
        head,
        f"  separator {separation}, stems {','.join(report['stems'])}, "
        f"{'no folds' if fixed else folds}",
        f"  files: {report['files_seen']} seen, {report['files_ok']} ok, "
        f"{report['files_rejected']} rejected; {report['songs_cached']} songs reused from the "
        "cache",
        fixed or f"  songs: train {songs['train']}, test {songs['test']}",
        f"  clips: {'all splits' if fixed else 'train'} {sum(train_clips.values())} ("
        + ", ".join(f"{k} {v}" for k, v in train_clips.items())
        + (")" if fixed else f"), test {test_clips}"),
        "  mel mean/std (train): "
        + ", ".join(
            f"{stem} {s['mean']:.2f}/{s['std']:.2f} dB" for stem, s in metadata["mel_stats"].items()
        ),
        *_presence_lines(report.get("stem_presence")),
    ]
    lines += _problem_lines(report)
    lines += [f"  dataset: {dataset_path}", f"  report:  {report_path}"]
    return "\n".join(lines)


def _problem_lines(report: dict[str, Any]) -> list[str]:
    """Summary lines for the labels left out, the presence warnings and the rejected files."""
    lines = []
    dropped = report.get("labels_without_songs") or {}
    if dropped:
        lines.append(
            "  labels left out (no accepted song): "
            + ", ".join(f"{k} ({n} rejected)" for k, n in dropped.items())
        )
    for warning in (report.get("stem_presence") or {}).get("warnings", []):
        lines.append(f"  warning: {warning}")
    rejected = [r for r in report["files"] if r["status"] == "rejected"]
    if rejected:
        lines.append(f"  rejected files ({len(rejected)}):")
        lines += [f"    {r['path']}: {r['reason']}" for r in rejected[:MAX_LISTED_REJECTIONS]]
        if len(rejected) > MAX_LISTED_REJECTIONS:
            lines.append(f"    ... {len(rejected) - MAX_LISTED_REJECTIONS} more in the report")
    return lines


def _presence_lines(check: dict[str, Any] | None) -> list[str]:
    """Summary lines for the report's ``stem_presence`` section: one per separated stem."""
    if not check:
        return ["  stem presence: not measured (dataset built before the check existed)"]
    if not check["checked"]:
        return [f"  stem presence: not checked ({check['reason']})"]
    return [_stem_line(stem, p, check["near_silent_db"]) for stem, p in check["stems"].items()]


def _stem_line(stem: str, p: dict[str, Any], threshold: float) -> str:
    if not p["songs_measured"]:
        return f"  {stem} presence: not measured ({p['songs_not_measured']} songs cached earlier)"
    worst = ", ".join(f"{w['path']} {w['stem_relative_db']:+.1f} dB" for w in p["worst"][:3])
    line = (
        f"  {stem} presence: near-silent (<= {threshold:.0f} dB vs the mix) in "
        f"{p['songs_near_silent']} of {p['songs_measured']} songs "
        f"({100 * p['fraction_songs']:.0f}%) and {p['clips_near_silent']} of "
        f"{p['clips_measured']} clips ({100 * p['fraction_clips']:.0f}%); lowest: {worst}"
    )
    if p["songs_not_measured"]:
        line += f"; {p['songs_not_measured']} cached songs not measured"
    return line


def _write_error(err: OSError, data_dir: str) -> DataError | None:
    """A one-line :class:`DataError` for a failed write under ``data_dir`` (the wording of
    :func:`shared_data.destinations.write_failure`), or None when ``err`` is not one of its
    :data:`~shared_data.destinations.WRITE_ERRORS` (then it is a bug, and its traceback is
    wanted)."""
    if err.errno not in WRITE_ERRORS:
        return None
    return DataError(
        f"the build stopped: {write_failure(err, '--data_dir', data_dir)}. Finished songs are "
        "cached: the same command resumes the build"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Parse flags, build (or reuse) the dataset, print the summary; 0 on success."""
    args = build_parser().parse_args(argv)
    if args.gallery:
        check_file_destination(args.gallery, "--gallery")  # before any audio is read
    import tensorflow_datasets as tfds

    from shared_data.dataset.builder import build_dataset
    from shared_data.dataset.gallery import dataset_gallery
    from shared_data.dataset.opened import open_dataset
    from shared_data.dataset.stage import beam_argv

    tfds.disable_progress_bar()  # ours counts songs; TFDS's would count records twice over
    started = time.monotonic()
    try:
        builder = build_dataset(
            args.data_dir,
            args.config,
            separator=args.separator,
            stems=args.stems,
            stem=args.stem,
            backend=args.backend,
            separation_precision=args.separation_precision,
            input=args.input,
            strict=args.strict,
            folds=args.folds,
            fold_method=args.fold_method,
            split=args.split,
            overwrite=args.overwrite,
            progress=not args.no_progress,
            beam_argv=beam_argv(args.workers, args.beam_pipeline_options),
        )
    except OSError as err:
        user_error = _write_error(err, args.data_dir)
        if user_error is None:
            raise
        raise user_error from None
    print(
        format_summary(
            builder.report,
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
