"""Tiny datasets built by the real builder, and the recipes the training tests run on them.

One per backend, each sized for what that backend is cheap at on the CPU, both with the ``lstm``
model (the cheapest to compile and run) and batch 4, so an epoch is a few optimizer steps:

- JAX: 3 genres x 3 songs x 4 s (18 clips of 128 frames);
- torch: 3 genres x 2 songs x 2 s cut into 0.5-s clips of 16 frames (the builder's feature
  parameters make the input tiny, not the architecture).

The session-scoped fixtures in ``tests/conftest.py`` build them once per test session.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from shared_data.dataset import splits
from shared_data.dataset.builder import build_dataset
from shared_data.dataset.configs import VocalMelsConfig
from shared_data.dataset.features import FeatureParams
from shared_data.dataset.opened import open_dataset
from shared_data.training.recipe import Recipe

BATCH = 4
CONFIGS = {
    "jax": VocalMelsConfig(
        name="jax_train_tiny",
        source="synthetic",
        songs_per_genre=3,
        seconds=4.0,
        genres=("blues", "classical", "metal"),
    ),
    "torch": VocalMelsConfig(
        name="tiny_train_test",
        source="synthetic",
        songs_per_genre=2,
        seconds=2.0,
        genres=("blues", "classical", "metal"),
        feature_params=FeatureParams(
            clip_samples=11025, clip_hop=11025, frames=16, min_seconds=0.4
        ),
    ),
}


def build_tiny(data_dir: Path, backend: str = "jax") -> dict[str, Any]:
    """Build ``CONFIGS[backend]`` into ``data_dir``; pick a fold leaving >= 3 training batches.

    Returns ``{"backend", "config", "data_dir", "fold", "steps" (per epoch)}``.
    """
    config = CONFIGS[backend]
    build_dataset(data_dir, config, progress=False, separator="none", stem="mix")
    folds, _ = splits.read_fold_labels(open_dataset(data_dir, config.name).source("train"))
    counts = np.bincount(folds, minlength=5)
    fold = int(
        next(k for k in np.argsort(counts) if counts[k] >= 2 and len(folds) - counts[k] >= 12)
    )
    steps = int((len(folds) - counts[fold]) // BATCH)
    return {"backend": backend, "config": config.name, "data_dir": str(data_dir), "fold": fold,
            "steps": steps}  # fmt: skip


def tiny_recipe(tiny: dict[str, Any], workdir: Path, **overrides: Any) -> Recipe:
    """A 2-epoch ``lstm`` recipe on a tiny dataset (Mixup in epoch 1, plain CE in epoch 2)."""
    values: dict[str, Any] = dict(
        model="lstm",
        dataset=tiny["config"],
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


def train_module(backend: str):
    """``jax_impl.train`` or ``torch_ref.train`` (imported on use: each pulls in its framework)."""
    if backend == "jax":
        from jax_impl import train
    else:
        from torch_ref import train
    return train


def checkpoint_module(backend: str):
    """``jax_impl.checkpoint`` or ``torch_ref.checkpoint``."""
    if backend == "jax":
        from jax_impl import checkpoint
    else:
        from torch_ref import checkpoint
    return checkpoint


class Killed(Exception):
    """Stands in for SIGKILL: raised from a step hook, so nothing after that step is saved."""


def run(
    tiny: dict[str, Any], recipe: Recipe, kill_at: int | None = None
) -> tuple[dict | None, list]:
    """Train ``recipe`` with ``tiny``'s backend; record ``(epoch, step, global_step, indices)``
    of every step, and stop (as a kill would) after global step ``kill_at``."""
    seen: list[tuple[int, int, int, list[int]]] = []

    def on_step(info) -> None:
        seen.append((info.epoch, info.step, info.global_step, info.indices))
        if kill_at is not None and info.global_step == kill_at:
            raise Killed

    try:
        return train_module(tiny["backend"]).train_and_evaluate(recipe, hooks=(on_step,)), seen
    except Killed:
        return None, seen
