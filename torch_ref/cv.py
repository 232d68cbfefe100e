"""K-fold cross-validation, torch reference: ``python -m torch_ref.cv --model=NAME --folds=5``.

Every fold ``k`` in ``0..K-1`` is trained as ``torch_ref.train --fold=k`` would (same recipe flags;
``--fold`` itself is ignored) in ``<root>/fold<k>``, where ``<root>`` is ``--workdir`` or
``runs/torch/<model>``. Finished folds are not trained again (each fold resumes from its own
checkpoints), so an interrupted CV run continues where it stopped. The summary, written to
``<root>/cv.json`` and printed, holds per fold the best and the final validation accuracy, and
their mean and sample standard deviation (``ddof=1``: the folds are a sample of the ways the songs
could have been split). The best-epoch accuracy is what the kept checkpoint scores but is biased
upwards (the epoch is chosen on the same fold); the final-epoch accuracy is the unbiased one.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from shared_data.cli import run_main
from shared_data.recipe import Recipe, add_recipe_flags, recipe_from_args

CV_FILE = "cv.json"


def _is_main() -> bool:
    """True except on the non-zero ranks of a torchrun launch (they train but do not report)."""
    return int(os.environ.get("RANK", "0")) == 0


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (``ddof=1``; 0.0 for a single value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def summarize(model: str, per_fold: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The CV summary of the per-fold training summaries (``best_val_acc``, ``final_val_acc``)."""
    best = [float(r["best_val_acc"]) for r in per_fold]
    final = [float(r["final_val_acc"]) for r in per_fold if r.get("final_val_acc") is not None]
    best_mean, best_std = mean_std(best)
    out: dict[str, Any] = {
        "backend": "torch",
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


def cv_root(recipe: Recipe) -> Path:
    """``--workdir`` or ``runs/torch/<model>``: the parent of the per-fold run directories."""
    return Path(recipe.workdir) if recipe.workdir else Path("runs") / "torch" / recipe.model


def run_cv(
    recipe: Recipe,
    *,
    train: Callable[..., dict[str, Any]] | None = None,
    compile_model: bool = False,
) -> dict[str, Any]:
    """Train every fold of ``recipe.folds`` and write ``<root>/cv.json``; returns the summary."""
    if train is None:
        from torch_ref.train import train_and_evaluate as train
    root = cv_root(recipe)
    per_fold = []
    for k in range(recipe.folds):
        fold_recipe = dataclasses.replace(recipe, fold=k, workdir=str(root / f"fold{k}"))
        if _is_main():
            print(f"== fold {k + 1}/{recipe.folds}: {fold_recipe.workdir}", flush=True)
        per_fold.append(train(fold_recipe, compile_model=compile_model))
    summary = summarize(recipe.model, per_fold)
    if _is_main():
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


def main(argv: list[str] | None = None) -> int:
    """Parse the recipe flags, run every fold, print the table and the summary's path."""
    parser = argparse.ArgumentParser(
        prog="python -m torch_ref.cv",
        description="K-fold cross-validation of one model with the PyTorch reference backend.",
    )
    add_recipe_flags(parser)
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    args = parser.parse_args(argv)
    recipe = recipe_from_args(args)
    summary = run_cv(recipe, compile_model=args.compile)
    if _is_main():
        print(format_summary(summary))
        print(f"summary: {cv_root(recipe) / CV_FILE}")
    return 0


if __name__ == "__main__":
    run_main(main)
