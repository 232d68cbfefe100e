"""Run directories for tests that need one without training it."""

from __future__ import annotations

from pathlib import Path

from shared_data.ensemble.members import DATASET_KEY
from shared_data.training.recipe import Recipe
from shared_data.training.runinfo import write_run_info


def make_run(
    path: Path, backend: str = "jax", *, dataset: dict | None = None, **recipe_changes
) -> Path:
    """A run directory holding only ``recipe.json``, as the training CLIs write it."""
    values = {"model": "lstm", "dataset": "synthetic_small", **recipe_changes}
    recipe = Recipe(workdir=str(path), **values)
    extra = {} if dataset is None else {DATASET_KEY: dataset}
    write_run_info(path, recipe, backend, extra=extra)
    return path
