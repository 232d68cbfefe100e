"""The dataset a training run reads: opened, or built first when it is a synthetic config.

With no flag at all, ``python -m jax_impl.train`` and ``python -m torch_ref.train`` train on the
``synthetic`` corpus in the default data directory; a new user has not built it yet, so both
backends build it (saying so) instead of stopping. Configs that read input files (folder, csv,
gtzan) cannot be built without them: their absence is the builder's ``DataError``, which names the
build command.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared_data.errors import DataError

__all__ = ["open_or_build_dataset"]


def _no_barrier() -> None:
    """A single-process run has no one to wait for."""


def open_or_build_dataset(
    recipe: Any,
    *,
    is_main: bool,
    log: Callable[[str], None],
    barrier: Callable[[], None] = _no_barrier,
) -> Any:
    """``open_dataset(recipe.data_dir, recipe.dataset)`` (an ``OpenedDataset``), building a
    synthetic config first if it is absent.

    In a multi-process run the main process (``is_main``) builds while the others wait in
    ``barrier()`` (every process calls it), then all open the same dataset.
    """
    from shared_data.dataset.builder import build_dataset
    from shared_data.dataset.configs import SYNTHETIC_CONFIGS
    from shared_data.dataset.opened import build_command, open_dataset

    try:
        return open_dataset(recipe.data_dir, recipe.dataset)
    except DataError:
        if recipe.dataset not in SYNTHETIC_CONFIGS:
            raise
    if is_main:
        log(
            f"dataset {recipe.dataset!r} is not built in {recipe.data_dir}: building it now "
            f"(the same as `{build_command(recipe.dataset, recipe.data_dir)}`)"
        )
        build_dataset(recipe.data_dir, recipe.dataset)
    barrier()
    return open_dataset(recipe.data_dir, recipe.dataset)
