"""Flags and steps shared by the ensemble, evaluate and predict CLIs of both backends.

The backends differ only in how a member becomes a predictor (``<backend>.ensemble.load_member``);
the flags, the dataset selection and the printed tables are the same, so they live here once.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shared_data.destinations import check_dir_destination, write_failure
from shared_data.ensemble import evaluation as ev
from shared_data.ensemble.core import SONG_RULES
from shared_data.ensemble.members import MemberError, parse_members_flag
from shared_data.ensemble.report import format_table
from shared_data.errors import DataError

__all__ = [
    "accuracy_table",
    "add_dataset_flags",
    "add_ensemble_flags",
    "build_evaluate_parser",
    "evaluate_members",
    "open_members_dataset",
    "print_accuracy",
    "run_evaluate",
    "write_evaluation",
]


def add_ensemble_flags(parser: argparse.ArgumentParser) -> None:
    """``--members``, ``--route``, ``--checkpoint``, ``--batch_size``."""
    parser.add_argument(
        "--members",
        required=True,
        help="training run directories (either backend), comma-separated",
    )
    parser.add_argument(
        "--route",
        default="convert",
        choices=ev.ROUTES,
        help="members trained by the other backend: convert their weights into this backend "
        "(default) or run them in their own backend",
    )
    parser.add_argument(
        "--checkpoint",
        default="best",
        choices=ev.CHECKPOINTS,
        help="which checkpoint of each run (default: best validation accuracy)",
    )
    parser.add_argument(
        "--batch_size", type=int, default=ev.DEFAULT_BATCH, help="clips per forward pass"
    )


def add_dataset_flags(parser: argparse.ArgumentParser, *, split: str = "train") -> None:
    """``--data_dir``, ``--dataset``, ``--split``, ``--fold``, ``--song_rule``."""
    parser.add_argument("--data_dir", default=None, help="default: the members' data directory")
    parser.add_argument(
        "--dataset", default=None, help="builder config name; default: the members' dataset"
    )
    parser.add_argument(
        "--split",
        default=split,
        help=f"dataset split (default {split}); GTZAN's fault-filtered dataset has train, "
        "validation and test",
    )
    parser.add_argument(
        "--fold",
        default=None,
        help="fold to evaluate; default: the fold the members held out (a dataset with fixed "
        "train/validation/test splits has no folds: every clip of --split); 'all': every clip",
    )
    parser.add_argument(
        "--song_rule",
        default="mean_prob",
        choices=SONG_RULES,
        help="how clips vote for their song (see shared_data.ensemble.core)",
    )


def open_members_dataset(
    predictors: Sequence[ev.Predictor],
    data_dir: str | None,
    dataset: str | None,
    *,
    require_labels: bool = True,
) -> Any:
    """The dataset named by the flags, else the first member's, checked against the members.

    Its feature parameters and separator must be the members' and it must store every member's
    stem (else its mels are not what they were trained on); with ``require_labels`` (scoring)
    its label names must be the members' too.

    Raises:
        MemberError: a mismatch, naming the field and both values.
    """
    from shared_data.dataset.features import FeatureParams
    from shared_data.dataset.opened import open_dataset  # TFDS: only for the CLIs that read it

    first = predictors[0].info
    opened = open_dataset(data_dir or first.data_dir, dataset or first.dataset)
    meta = opened.metadata
    checks = [
        ("feature parameters", FeatureParams.from_dict(meta["feature_params"]),
         first.feature_params),
        ("separator", meta["separator"], first.separator),
    ]  # fmt: skip
    if require_labels:
        checks.insert(0, ("label names", list(opened.label_names), list(first.label_names)))
    for field, theirs, ours in checks:
        if theirs != ours:
            raise MemberError(
                f"dataset {opened.path} differs from the members ({first.run_dir}, ...) in its "
                f"{field}: {theirs!r} vs {ours!r}; use a dataset built like the members' training "
                "data"
            )
    for p in predictors:
        if p.info.stem not in opened.stems:
            raise MemberError(
                f"member {p.info.run_dir} reads the {p.info.stem} stem, which dataset "
                f"{opened.path} does not store (it holds {', '.join(opened.stems)}); rebuild it "
                f"with --stems={','.join([*opened.stems, p.info.stem])} --overwrite (songs "
                "already separated come from the cache)"
            )
    return opened


def evaluate_members(
    predictors: Sequence[ev.Predictor], args: argparse.Namespace
) -> tuple[dict[str, Any], ev.EnsembleResult, ev.SelectedClips]:
    """Open the dataset of the flags, select the clips, run every member, summarise.

    Returns:
        ``(summary, result, clips)``; summary as
        :func:`shared_data.ensemble.evaluation.evaluate_predictions` plus ``dataset`` and
        ``members_loaded`` (where each member ran and how).
    """
    members = [p.info for p in predictors]
    dataset = open_members_dataset(predictors, args.data_dir, args.dataset)
    fold = ev.dataset_fold(dataset, members, args.fold)
    clips = ev.select_clips(dataset, args.split, fold)
    result = ev.run_ensemble(predictors, dataset.source(args.split), clips.indices)
    summary = ev.evaluate_predictions(result, clips, members, args.song_rule)
    summary.update(
        dataset=str(dataset.path),
        members_loaded=[
            {"run_dir": str(p.info.run_dir), "runs_on": p.runs_on, "how": p.how} for p in predictors
        ],
    )
    return summary, result, clips


def accuracy_table(summary: Mapping[str, Any]) -> str:
    """Members' and the ensemble's clip and song accuracy, one row each; with members of
    several stems, a row for the presence-aware fusion too."""
    rows = [
        (f"{m['backend']}:{m['model']}", m["stem"], m["run_dir"], m["clip_accuracy"],
         m["song_accuracy"])
        for m in summary["members"]
    ]  # fmt: skip
    fused = summary["fusions"]
    rows.append(("ensemble (sum)", "", "", fused["sum"]["clip_accuracy"],
                 fused["sum"]["song_accuracy"]))  # fmt: skip
    if len({m["stem"] for m in summary["members"]}) > 1:
        p = fused["presence"]
        rows.append(("ensemble (presence)", "", "", p["clip_accuracy"], p["song_accuracy"]))
    return format_table(("member", "stem", "run", "clip_acc", "song_acc"), rows)


def load_from_args(load_ensemble: Any, args: argparse.Namespace) -> list[ev.Predictor]:
    """A backend's ``load_ensemble`` applied to the flags of :func:`add_ensemble_flags`."""
    return load_ensemble(
        parse_members_flag(args.members),
        route=args.route,
        checkpoint=args.checkpoint,
        batch_size=args.batch_size,
    )


def _print_accuracy(summary: Mapping[str, Any]) -> None:
    """The heading (dataset, split, fold, counts) and :func:`accuracy_table`."""
    fold = _fold_words(summary)
    print(
        f"{summary['dataset']} split {summary['split']}, {fold}: {summary['num_clips']} clips, "
        f"{summary['num_songs']} songs"
    )
    print(accuracy_table(summary))


def print_accuracy(predictors: Sequence[ev.Predictor], args: argparse.Namespace) -> dict[str, Any]:
    """Evaluate (:func:`evaluate_members`) and print the heading and :func:`accuracy_table`."""
    summary, _, _ = evaluate_members(predictors, args)
    _print_accuracy(summary)
    return summary


def run_ensemble_cli(load_ensemble: Any, argv: list[str] | None, prog: str) -> int:
    """The whole ``ensemble`` CLI (members' and ensemble's accuracy on a split and fold), given a
    backend's ``load_ensemble``."""
    parser = argparse.ArgumentParser(
        prog=prog, description="Evaluate an ensemble of training runs (either backend)."
    )
    add_ensemble_flags(parser)
    add_dataset_flags(parser)
    args = parser.parse_args(argv)
    print_accuracy(load_from_args(load_ensemble, args), args)
    return 0


def build_evaluate_parser(prog: str) -> argparse.ArgumentParser:
    """The flags of ``python -m <backend>.evaluate``."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Evaluate an ensemble (or one run) on a dataset split: clip- and song-level "
        "accuracy, per-class precision/recall/F1, confusion matrices (PNG) and a JSON report.",
    )
    add_ensemble_flags(parser)
    add_dataset_flags(parser)
    parser.add_argument("--out", required=True, help="output directory for the report")
    return parser


def write_evaluation(
    out_dir: str | os.PathLike[str],
    summary: Mapping[str, Any],
    result: ev.EnsembleResult,
    clips: ev.SelectedClips,
) -> dict[str, Path]:
    """Write ``report.json``, ``confusion_clip.png``, ``confusion_song.png`` and
    ``predictions.npz`` (``member_probs`` [M, N, C], ``probs`` (plain sum), ``presence_probs``,
    ``present`` [M, N], ``labels``, ``song_ids``,
    ``clip_index``, ``record_index``, ``folds``, ``member_names``, ``label_names``) into
    ``out_dir``; returns their paths."""
    from shared_data.ensemble.report import plot_confusion, write_json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = summary["ensemble"]["label_names"]
    fold = _fold_words(summary)
    paths = {}
    for level in ("clip", "song"):
        acc = summary["ensemble"][level]["accuracy"]
        paths[f"confusion_{level}"] = plot_confusion(
            np.asarray(summary["ensemble"][level]["confusion"]),
            names,
            out / f"confusion_{level}.png",
            title=f"{level} level, split {summary['split']}, {fold}: accuracy {acc:.3f}",
        )
    paths["predictions"] = out / "predictions.npz"
    np.savez_compressed(
        paths["predictions"],
        member_probs=result.member_probs,
        probs=result.probs,
        presence_probs=result.presence_probs,
        present=result.present,
        labels=clips.labels,
        song_ids=np.asarray(clips.song_ids),
        clip_index=clips.clip_index,
        record_index=clips.indices,
        folds=clips.folds,
        member_names=np.asarray([f"{m['backend']}:{m['model']}" for m in summary["members"]]),
        member_runs=np.asarray([m["run_dir"] for m in summary["members"]]),
        label_names=np.asarray(names),
    )
    report = {**summary, "files": {k: p.name for k, p in paths.items()}}
    paths["report"] = write_json(out / "report.json", report)
    return paths


def _fold_words(summary: Mapping[str, Any]) -> str:
    """The clips a heading speaks of: one held-out fold, every fold of the K-fold split (train),
    or every clip of a split of its own (a fixed validation or test split)."""
    if summary["fold"] is not None:
        return f"fold {summary['fold']}"
    return "all folds" if summary["split"] == "train" else "all clips"


def run_evaluate(load_ensemble: Any, argv: list[str] | None, prog: str) -> int:
    """The whole ``evaluate`` CLI, given a backend's ``load_ensemble``."""
    from shared_data.ensemble.report import format_metrics_table

    args = build_evaluate_parser(prog).parse_args(argv)
    check_dir_destination(args.out, "--out")  # before the members are loaded and run
    summary, result, clips = evaluate_members(load_from_args(load_ensemble, args), args)
    _print_accuracy(summary)
    print(f"\nper class (song level, rule {summary['ensemble']['song_rule']}):")
    print(format_metrics_table(summary["ensemble"]["song"]))
    try:
        paths = write_evaluation(args.out, summary, result, clips)
    except OSError as err:  # the tables above are the results; say what was not saved
        raise DataError(
            f"{write_failure(err, '--out', args.out)}; the accuracy above was printed but the "
            "report, confusion matrices and predictions were not saved"
        ) from err
    print(f"\nreport: {paths['report']}")
    return 0
