"""The ``cv`` command of either backend: K-fold cross-validation, or the stem study (``--stems``).

``jax_impl.cv`` and ``torch_ref.cv`` are thin entry points: each hands :func:`run_cv_cli` a
:class:`CvBackend` (how it trains one run, loads an ensemble, tells its main process and sets up its
processes) and everything else (the flags, the destination check before any fold is trained, the
fold loop of :mod:`shared_data.training.cross_validation`, the stem study of
:mod:`shared_data.training.stem_study` and the printed summary) is here, written once.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Callable, Sequence
from typing import Any

from shared_data.destinations import check_dir_destination
from shared_data.training import cross_validation as cv_folds
from shared_data.training import stem_study
from shared_data.training.hooks import Hook
from shared_data.training.recipe import Recipe
from shared_data.training.recipe_flags import recipe_from_args
from shared_data.training.train_cli import cli_hooks, os_errors_as_user_errors

__all__ = ["CvBackend", "run_cv_cli"]


def _no_setup(args: argparse.Namespace) -> None:
    """A backend with nothing to set up before training (no process group to join)."""


@dataclasses.dataclass(frozen=True)
class CvBackend:
    """What a backend lends the ``cv`` command.

    Attributes:
        name: ``jax`` or ``torch`` (the runs' ``run.backend``, the default ``runs/<name>/<model>``).
        build_parser: the backend's ``train`` flags (``cv`` takes the same ones plus ``--stems``).
        train: ``train(recipe, hooks, args) -> summary``: one run trained in ``recipe.workdir``.
        load_ensemble: the backend's ``load_ensemble`` (the stem study evaluates ensembles).
        is_main: whether this process reports (the others train their shards silently).
        setup: joins the backend's processes before any training (``initialize_distributed``).
    """

    name: str
    build_parser: Callable[[], argparse.ArgumentParser]
    train: Callable[[Recipe, Sequence[Hook], argparse.Namespace], dict[str, Any]]
    load_ensemble: Callable[..., Any]
    is_main: Callable[[], bool]
    setup: Callable[[argparse.Namespace], None] = _no_setup


def _print_summary(recipe: Recipe, backend: str, summary: dict[str, Any]) -> None:
    """The per-fold table, where ``cv.json`` is, and the summary as one line of JSON."""
    print(cv_folds.format_summary(summary))
    print(f"summary: {cv_folds.cv_root(recipe, backend) / cv_folds.CV_FILE}")
    print(json.dumps(summary))


def run_cv_cli(backend: CvBackend, argv: list[str] | None, prog: str, description: str) -> int:
    """Parse the flags, check the destination, then run every fold (or every (stem, fold) with
    ``--stems``) and print the summary on the main process. Returns the exit status (0)."""
    parser = backend.build_parser()
    parser.prog, parser.description = prog, description
    stem_study.add_stems_flag(parser)
    args = parser.parse_args(argv)
    recipe = recipe_from_args(args)
    check_dir_destination(cv_folds.cv_root(recipe, backend.name), "--workdir")
    backend.setup(args)
    hooks = cli_hooks(args, is_main=backend.is_main())

    def train_run(run_recipe: Recipe) -> dict[str, Any]:
        return backend.train(run_recipe, hooks, args)

    with os_errors_as_user_errors():
        if args.stems:
            stem_study.run_and_report(
                recipe, backend.name, args.stems, train_run, backend.load_ensemble,
                is_main=backend.is_main(),
            )  # fmt: skip
            return 0
        summary = cv_folds.run_folds(recipe, backend.name, train_run, is_main=backend.is_main())
    if backend.is_main():
        _print_summary(recipe, backend.name, summary)
    return 0
