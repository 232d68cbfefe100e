"""Shake-Shake (Gastaldi, 2017) as both backends build it: stage constants and the parity draws."""

from __future__ import annotations

from typing import Any

import numpy as np

STAGE_WIDTHS = (96, 192, 384)
STAGE_STRIDES = (1, 2, 2)
BLOCKS_PER_STAGE = 4
STEM_WIDTH = 16
RESNEXT_CARDINALITY = 4
RESNEXT_GROUP_WIDTHS = (64, 128, 256)


def parity_draws(model: Any, batch_size: int, seed: int) -> dict[str, np.ndarray]:
    """Deterministic draws ``{"alpha": [N, B], "beta": [N, B]}`` float32 in [0, 1) for ``model``.

    ``N = model.num_shake_blocks`` (either backend's model). Computed with numpy, so the JAX and
    the torch model receive identical numbers.
    """
    u = np.random.default_rng(seed).random((2, model.num_shake_blocks, batch_size), np.float32)
    return {"alpha": u[0], "beta": u[1]}
