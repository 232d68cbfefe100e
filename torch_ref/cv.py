"""K-fold cross-validation, torch reference: ``python -m torch_ref.cv --model=NAME --folds=5``.

The mirror of ``jax_impl.cv``; the fold loop, ``<root>/cv.json`` and the statistics are
``shared_data.training.cross_validation``'s. Every fold is trained as ``torch_ref.train --fold=k``
would, in ``<root>/fold<k>`` (``<root>``: ``--workdir`` or ``runs/torch/<model>``); an interrupted
CV run continues where it stopped.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from shared_data.cli import run_main
from shared_data.training import cross_validation as cv_folds
from shared_data.training import stem_study
from shared_data.training.recipe import Recipe
from shared_data.training.recipe_flags import recipe_from_args

BACKEND = "torch"


def _is_main() -> bool:
    """True except on the non-zero ranks of a torchrun launch (they train but do not report)."""
    return int(os.environ.get("RANK", "0")) == 0


def run_cv(
    recipe: Recipe,
    *,
    train: Callable[..., dict[str, Any]] | None = None,
    hooks: Sequence[Any] = (),
    compile_model: bool = False,
) -> dict[str, Any]:
    """Train every fold of ``recipe.folds`` and write ``<root>/cv.json``; returns the summary.

    ``train(recipe, workdir, hooks=..., compile_model=...) -> summary`` defaults to
    :func:`torch_ref.train.train_and_evaluate`.
    """
    if train is None:
        from torch_ref.train import train_and_evaluate as train

    def train_fold(fold_recipe: Recipe) -> dict[str, Any]:
        return train(fold_recipe, fold_recipe.workdir, hooks=hooks, compile_model=compile_model)

    return cv_folds.run_folds(recipe, BACKEND, train_fold, is_main=_is_main())


def main(argv: list[str] | None = None) -> int:
    """Parse the recipe flags, run every fold, print the table and the summary's path."""
    from shared_data.training.train_cli import cli_hooks
    from torch_ref.train import build_parser

    parser = build_parser()
    parser.prog = "python -m torch_ref.cv"
    parser.description = "K-fold cross-validation of one model with the PyTorch reference backend."
    stem_study.add_stems_flag(parser)
    args = parser.parse_args(argv)
    recipe = recipe_from_args(args)
    hooks = cli_hooks(args, is_main=_is_main())
    if args.stems:
        from torch_ref.ensemble import load_ensemble
        from torch_ref.train import train_and_evaluate

        def train_run(r: Recipe) -> dict[str, Any]:
            return train_and_evaluate(r, r.workdir, hooks=hooks, compile_model=args.compile)

        stem_study.run_and_report(
            recipe, BACKEND, args.stems, train_run, load_ensemble, is_main=_is_main()
        )
        return 0
    summary = run_cv(recipe, hooks=hooks, compile_model=args.compile)
    if _is_main():
        print(cv_folds.format_summary(summary))
        print(f"summary: {cv_folds.cv_root(recipe, BACKEND) / cv_folds.CV_FILE}")
    return 0


if __name__ == "__main__":
    run_main(main)
