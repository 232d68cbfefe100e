"""K-fold cross-validation, backend-neutral: the fold loop, the summary and its table.

``jax_impl.cv`` and ``torch_ref.cv`` differ only in how one fold is trained and which process
reports; everything here is shared. Every fold ``k`` in ``0..K-1`` is trained with the same recipe
(``--fold`` itself is ignored) in ``<root>/fold<k>``, where ``<root>`` is ``--workdir`` or
``runs/<backend>/<model>``. Finished folds are not trained again (each fold resumes from its own
checkpoints), so an interrupted CV run continues where it stopped. The summary, written to
``<root>/cv.json``, holds per fold the best and the final validation accuracy, and their mean and
sample standard deviation (``ddof=1``: the folds are a sample of the ways the songs could have been
split). The best-epoch accuracy is what the kept checkpoint scores but is biased upwards (the epoch
is chosen on the same fold); the final-epoch accuracy is the unbiased one.

A dataset with fixed train/validation/test splits (GTZAN's fault-filtered split) has no folds:
cross-validation does not apply to it and is refused before any fold is trained
(:func:`refuse_fixed_splits`).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from shared_data.errors import DataError
from shared_data.training.recipe import Recipe

CV_FILE = "cv.json"


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (``ddof=1``; 0.0 for a single value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def summarize(backend: str, model: str, per_fold: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The CV summary of the per-fold training summaries (``best_val_acc``, ``final_val_acc``)."""
    best = [float(r["best_val_acc"]) for r in per_fold]
    final = [float(r["final_val_acc"]) for r in per_fold if r.get("final_val_acc") is not None]
    best_mean, best_std = mean_std(best)
    out: dict[str, Any] = {
        "backend": backend,
        "model": model,
        "folds": len(per_fold),
        "per_fold": [
            {
                k: r.get(k)
                for k in ("fold", "best_val_acc", "best_epoch", "final_val_acc", "workdir")
            }
            for r in per_fold
        ],
        "best_val_acc_mean": best_mean,
        "best_val_acc_std": best_std,
    }
    if len(final) == len(best):
        out["final_val_acc_mean"], out["final_val_acc_std"] = mean_std(final)
    return out


def cv_root(recipe: Recipe, backend: str) -> Path:
    """``--workdir`` or ``runs/<backend>/<model>``: the parent of the per-fold run directories."""
    return Path(recipe.workdir) if recipe.workdir else Path("runs") / backend / recipe.model


def refuse_fixed_splits(recipe: Recipe) -> None:
    """Raise :class:`DataError` when the recipe's dataset has fixed splits (nothing to cross-
    validate); a dataset not built yet passes (the first fold's training builds or names it)."""
    from shared_data.dataset.opened import open_dataset
    from shared_data.dataset.split_source import has_fixed_splits

    try:
        dataset = open_dataset(recipe.data_dir, recipe.dataset)
    except DataError:
        return
    if has_fixed_splits(dataset):
        raise DataError(
            f"cross-validation does not apply to dataset {recipe.dataset!r}: it has fixed "
            "train/validation/test splits (built with --split=fault_filtered) and no folds; train "
            "once with python -m jax_impl.train or torch_ref.train and score the test split with "
            "evaluate --split=test, or rebuild it with --split=kfold to cross-validate"
        )


def run_folds(
    recipe: Recipe,
    backend: str,
    train_fold: Callable[[Recipe], dict[str, Any]],
    *,
    is_main: bool,
) -> dict[str, Any]:
    """Train every fold of ``recipe.folds`` with ``train_fold(fold_recipe) -> training summary``
    and, on the reporting process (``is_main``), write ``<root>/cv.json``; returns the summary."""
    refuse_fixed_splits(recipe)
    root = cv_root(recipe, backend)
    per_fold = []
    for k in range(recipe.folds):
        fold_recipe = dataclasses.replace(recipe, fold=k, workdir=str(root / f"fold{k}"))
        if is_main:
            print(f"== fold {k + 1}/{recipe.folds}: {fold_recipe.workdir}", flush=True)
        per_fold.append(train_fold(fold_recipe))
    summary = summarize(backend, recipe.model, per_fold)
    if is_main:
        root.mkdir(parents=True, exist_ok=True)
        (root / CV_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    """A short table: one line per fold, then mean +- std."""
    lines = [f"{summary['model']} ({summary['backend']}), {summary['folds']}-fold CV"]
    for r in summary["per_fold"]:
        final = r["final_val_acc"]
        final_s = f"{final:.4f}" if final is not None else "-"
        lines.append(f"  fold {r['fold']}: best val_acc {r['best_val_acc']:.4f}  final {final_s}")
    lines.append(
        f"  best val_acc  {summary['best_val_acc_mean']:.4f} +- {summary['best_val_acc_std']:.4f}"
    )
    if "final_val_acc_mean" in summary:
        lines.append(
            f"  final val_acc {summary['final_val_acc_mean']:.4f} "
            f"+- {summary['final_val_acc_std']:.4f}"
        )
    return "\n".join(lines)
