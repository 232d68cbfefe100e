"""K-fold cross-validation in JAX: ``python -m jax_impl.cv --model=NAME --folds=5``.

The mirror of ``torch_ref.cv``; the command is :mod:`shared_data.training.cv_cli`'s, the fold loop,
``<root>/cv.json`` and the statistics :mod:`shared_data.training.cross_validation`'s. Every fold is
trained as ``jax_impl.train --fold=k`` would, in ``<root>/fold<k>`` (``<root>``: ``--workdir`` or
``runs/jax/<model>``); an interrupted CV run continues where it stopped. The summary is printed as a
table and as one line of JSON. ``--stems=vocals,accompaniment,mix`` trains every (stem, fold) and
writes the stem study's table (``<root>/stems.md``, ``.json``, ``.png``;
:mod:`shared_data.training.stem_study`).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

from shared_data.cli import run_main
from shared_data.training import cross_validation as cv_folds
from shared_data.training.cv_cli import CvBackend, run_cv_cli
from shared_data.training.recipe import Recipe

BACKEND = "jax"


def _is_main() -> bool:
    from jax_impl.runtime import is_main_process

    return is_main_process()


def _train(recipe: Recipe, hooks: Sequence[Any], args: argparse.Namespace) -> dict[str, Any]:
    from jax_impl.train import train_and_evaluate

    return train_and_evaluate(recipe, recipe.workdir, hooks=hooks)


def _setup(args: argparse.Namespace) -> None:
    """Join the other JAX processes (multi-host flags) and quiet orbax's per-save info lines."""
    from absl import logging as absl_logging

    from jax_impl.train import initialize_distributed

    initialize_distributed(args.coordinator_address, args.num_processes, args.process_id)
    absl_logging.set_verbosity(absl_logging.ERROR)


def _load_ensemble(*args: Any, **kwargs: Any) -> Any:
    from jax_impl.ensemble import load_ensemble

    return load_ensemble(*args, **kwargs)


def _build_parser() -> argparse.ArgumentParser:
    from jax_impl.train import build_parser

    return build_parser()


CV_BACKEND = CvBackend(BACKEND, _build_parser, _train, _load_ensemble, _is_main, _setup)


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
    """The CLI (see the module docstring)."""
    return run_cv_cli(
        CV_BACKEND, argv, "python -m jax_impl.cv",
        "K-fold cross-validation of one model in JAX: every fold, mean and std.",
    )  # fmt: skip


if __name__ == "__main__":
    run_main(main)
