"""A tiny dataset built by the real builder, and recipes for the JAX training tests.

3 genres x 3 songs x 4 s (18 clips) with the ``lstm`` model (the cheapest to compile and run on
the CPU) and batch 4: an epoch is a few optimizer steps, so whole runs take seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from shared_data.dataset import splits
from shared_data.dataset.builder import VocalMelsConfig, build_dataset, open_dataset
from shared_data.training.recipe import Recipe

TINY = VocalMelsConfig(
    name="jax_train_tiny",
    source="synthetic",
    songs_per_genre=3,
    seconds=4.0,
    genres=("blues", "classical", "metal"),
)
BATCH = 4


def build_tiny(data_dir: Path) -> dict[str, Any]:
    """Build :data:`TINY` into ``data_dir``; pick a fold leaving >= 3 training batches.

    Returns ``{"data_dir", "fold", "steps" (per epoch)}``.
    """
    build_dataset(data_dir, TINY, progress=False, separator="none", stem="mix")
    folds, _ = splits.read_fold_labels(open_dataset(data_dir, TINY.name).source("train"))
    counts = np.bincount(folds, minlength=5)
    fold = int(
        next(k for k in np.argsort(counts) if counts[k] >= 2 and len(folds) - counts[k] >= 12)
    )
    return {"data_dir": str(data_dir), "fold": fold, "steps": (len(folds) - counts[fold]) // BATCH}


def tiny_recipe(tiny: dict[str, Any], workdir: Path, **overrides: Any) -> Recipe:
    """A 2-epoch ``lstm`` recipe on the tiny dataset (Mixup in epoch 1, plain CE in epoch 2)."""
    values: dict[str, Any] = dict(
        model="lstm",
        dataset=TINY.name,
        data_dir=tiny["data_dir"],
        workdir=str(workdir),
        fold=tiny["fold"],
        epochs=2,
        batch_size=BATCH,
        seed=3,
        log_every=1,
        checkpoint_every=2,
    )
    values.update(overrides)
    return Recipe(**values)


def tiny_flags(tiny: dict[str, Any], workdir: Path, **overrides: Any) -> list[str]:
    """:func:`tiny_recipe` as command-line flags."""
    recipe = tiny_recipe(tiny, workdir, **overrides)
    keys = (
        "model dataset data_dir workdir fold epochs batch_size seed log_every checkpoint_every"
    ).split()
    keys += [k for k in overrides if k not in keys]
    return [f"--{k}={getattr(recipe, k)}" for k in keys]
