"""K-fold cross-validation in JAX: ``python -m jax_impl.cv --model=NAME --folds=5``.

The mirror of ``torch_ref.cv``. Every fold ``k`` in ``0..K-1`` is trained as
``jax_impl.train --fold=k`` would (same recipe flags; ``--fold`` itself is ignored) in
``<root>/fold<k>``, where ``<root>`` is ``--workdir`` or ``runs/jax/<model>``. Finished folds are
not trained again (each fold resumes from its own checkpoints), so an interrupted CV run continues
where it stopped. The summary, written to ``<root>/cv.json`` and printed (as a table and as one
line of JSON), holds per fold the best and the final validation accuracy, and their mean and
sample standard deviation (``ddof=1``: the folds are a sample of the ways the songs could have
been split). The best-epoch accuracy is what the kept checkpoint scores but is biased upwards (the
epoch is chosen on the same fold); the final-epoch accuracy is the unbiased one.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from shared_data.cli import run_main
from shared_data.recipe import Recipe, recipe_from_args

CV_FILE = "cv.json"


def _is_main() -> bool:
    """True on JAX process 0 (the others train their shards but do not report)."""
    import jax

    return jax.process_index() == 0


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
        "backend": "jax",
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
    """``--workdir`` or ``runs/jax/<model>``: the parent of the per-fold run directories."""
    return Path(recipe.workdir) if recipe.workdir else Path("runs") / "jax" / recipe.model


def run_cv(
    recipe: Recipe,
    *,
    train: Callable[..., dict[str, Any]] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train every fold of ``recipe.folds`` and write ``<root>/cv.json``; returns the summary.

    ``train(recipe, workdir, progress=...) -> summary`` defaults to
    :func:`jax_impl.train.train_and_evaluate`.
    """
    if train is None:
        from jax_impl.train import train_and_evaluate as train
    root = cv_root(recipe)
    per_fold = []
    for k in range(recipe.folds):
        fold_recipe = dataclasses.replace(recipe, fold=k, workdir=str(root / f"fold{k}"))
        if _is_main():
            print(f"== fold {k + 1}/{recipe.folds}: {fold_recipe.workdir}", flush=True)
        per_fold.append(train(fold_recipe, fold_recipe.workdir, progress=progress))
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
    """Parse the recipe flags (plus the multi-host ones), run every fold, print the summary."""
    from jax_impl.train import build_parser, initialize_distributed

    parser = build_parser()
    parser.prog = "python -m jax_impl.cv"
    parser.description = "K-fold cross-validation of one model in JAX: every fold, mean and std."
    args = parser.parse_args(argv)
    recipe = recipe_from_args(args)
    initialize_distributed(args.coordinator_address, args.num_processes, args.process_id)
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.ERROR)  # orbax's per-save info lines
    summary = run_cv(recipe, progress=not args.no_progress)
    if _is_main():
        print(format_summary(summary))
        print(f"summary: {cv_root(recipe) / CV_FILE}")
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    run_main(main)
