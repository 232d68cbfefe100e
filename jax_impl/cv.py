"""K-fold cross-validation in JAX: ``python -m jax_impl.cv --model=NAME --folds=5``.

The mirror of ``torch_ref.cv``; the fold loop, ``<root>/cv.json`` and the statistics are
``shared_data.training.cross_validation``'s. Every fold is trained as ``jax_impl.train --fold=k``
would, in ``<root>/fold<k>`` (``<root>``: ``--workdir`` or ``runs/jax/<model>``); an interrupted CV
run continues where it stopped. The summary is printed as a table and as one line of JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from shared_data.cli import run_main
from shared_data.training import cross_validation as cv_folds
from shared_data.training import stem_study
from shared_data.training.recipe import Recipe
from shared_data.training.recipe_flags import recipe_from_args

BACKEND = "jax"


def _is_main() -> bool:
    """True on JAX process 0 (the others train their shards but do not report)."""
    import jax

    return jax.process_index() == 0


def run_cv(
    recipe: Recipe,
    *,
    train: Callable[..., dict[str, Any]] | None = None,
    hooks: Sequence[Any] = (),
) -> dict[str, Any]:
    """Train every fold of ``recipe.folds`` and write ``<root>/cv.json``; returns the summary.

    ``train(recipe, workdir, hooks=...) -> summary`` defaults to
    :func:`jax_impl.train.train_and_evaluate`.
    """
    if train is None:
        from jax_impl.train import train_and_evaluate as train

    def train_fold(fold_recipe: Recipe) -> dict[str, Any]:
        return train(fold_recipe, fold_recipe.workdir, hooks=hooks)

    return cv_folds.run_folds(recipe, BACKEND, train_fold, is_main=_is_main())


def main(argv: list[str] | None = None) -> int:
    """Parse the recipe flags (plus the multi-host ones), run every fold, print the summary."""
    from jax_impl.train import build_parser, initialize_distributed

    parser = build_parser()
    parser.prog = "python -m jax_impl.cv"
    parser.description = "K-fold cross-validation of one model in JAX: every fold, mean and std."
    stem_study.add_stems_flag(parser)
    args = parser.parse_args(argv)
    recipe = recipe_from_args(args)
    initialize_distributed(args.coordinator_address, args.num_processes, args.process_id)
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.ERROR)  # orbax's per-save info lines
    from shared_data.training.train_cli import cli_hooks

    hooks = cli_hooks(args, is_main=_is_main())
    if args.stems:
        from jax_impl.ensemble import load_ensemble
        from jax_impl.train import train_and_evaluate

        stem_study.run_and_report(
            recipe, BACKEND, args.stems, lambda r: train_and_evaluate(r, r.workdir, hooks=hooks),
            load_ensemble, is_main=_is_main(),
        )  # fmt: skip
        return 0
    summary = run_cv(recipe, hooks=hooks)
    if _is_main():
        print(cv_folds.format_summary(summary))
        print(f"summary: {cv_folds.cv_root(recipe, BACKEND) / cv_folds.CV_FILE}")
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    run_main(main)
