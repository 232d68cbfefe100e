"""Fit the JAX train step into the device's memory before the first step.

API (the rule, the lines and the test knob are :mod:`shared_data.training.memory_fit`'s;
``torch_ref.memory_fit`` is the mirror)::

    limit = device_memory_limit()        # bytes per device; None on the CPU without the knob
    micro, step = fit_micro_batch(recipe, make_step, state, (h, w), mesh, limit_bytes=limit)

``make_step(micro_batches)`` builds the jitted step (``train_step.make_train_step``) for
``micro_batches`` accumulated passes. The fit lowers and compiles it for the global batch and reads
XLA's memory analysis of the compiled program (arguments + outputs - donated aliases +
temporaries, per device); it halves the micro-batch until that fits. Nothing runs on the device,
and the compiled step is not wasted: ``jax.jit`` reuses it at the first call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from jax_impl import train_step as ts
from jax_impl.runtime import log
from shared_data.training.memory_fit import (
    choose_micro_batch,
    injected_device_memory,
    is_out_of_memory,
)
from shared_data.training.recipe import Recipe


def device_memory_limit(device: jax.Device | None = None) -> int | None:
    """The memory XLA may use on ``device`` (default: the first local one), in bytes.

    ``$VOCALGENRE_DEVICE_MEMORY_BYTES`` when set (the test/debug knob); else the allocator's
    ``bytes_limit`` on an accelerator, and None on the CPU (no fit: host memory is not the
    device's, and XLA:CPU reports no limit).
    """
    injected = injected_device_memory()
    if injected is not None:
        return injected
    device = device if device is not None else jax.local_devices()[0]
    if device.platform == "cpu":
        return None
    stats = device.memory_stats() or {}
    limit = stats.get("bytes_limit")
    return int(limit) if limit else None


def step_bytes(analysis: Any) -> int:
    """Bytes per device a compiled program holds at its peak, from its ``memory_analysis()``:
    arguments, outputs and temporaries, less the outputs written into donated arguments."""
    return int(
        analysis.argument_size_in_bytes
        + analysis.output_size_in_bytes
        - analysis.alias_size_in_bytes
        + analysis.temp_size_in_bytes
    )


def abstract_batch(batch_size: int, input_hw: tuple[int, int], mesh: Mesh) -> dict[str, Any]:
    """Shapes, dtypes and shardings of a training batch (what ``data.to_device`` yields)."""
    sharding = ts.batch_sharded(mesh)
    return {
        "mel": jax.ShapeDtypeStruct((batch_size, *input_hw, 1), jnp.float32, sharding=sharding),
        "label": jax.ShapeDtypeStruct((batch_size,), jnp.int32, sharding=sharding),
    }


def fit_micro_batch(
    recipe: Recipe,
    make_step: Callable[[int], Any],
    state: ts.TrainArrays,
    input_hw: tuple[int, int],
    mesh: Mesh,
    *,
    limit_bytes: int | None,
) -> tuple[int, Any]:
    """The micro-batch size to train with, and its jitted step.

    With ``limit_bytes`` None: the requested one (``--micro_batch_size``, else the whole batch),
    unchecked. Otherwise the largest on the halving path whose compiled step fits (measured with
    the first epoch's Mixup setting; the other variant differs by one copy of the input batch,
    which :data:`~shared_data.training.memory_fit.HEADROOM` covers); the choice is logged.

    Raises:
        TrainingError: not even the smallest micro-batch fits (one line naming the flags).
    """
    start = recipe.micro_batch_size or recipe.batch_size
    if limit_bytes is None:
        return start, make_step(recipe.batch_size // start)
    batch = abstract_batch(recipe.batch_size, input_hw, mesh)
    mixup = recipe.mixup_active(0)
    steps: dict[int, Any] = {}

    def measure(micro: int) -> int | None:
        steps[micro] = step = make_step(recipe.batch_size // micro)
        try:
            compiled = step.lower(state, batch, np.int32(0), np.int32(0), mixup).compile()
        except RuntimeError as err:  # a compiler that refuses a plan over the memory it has
            if is_out_of_memory(err):
                return None
            raise
        analysis = compiled.memory_analysis()
        # A platform without an analysis gives nothing to compare; the step is kept as asked.
        return 0 if analysis is None else step_bytes(analysis)

    device = jax.local_devices()[0].device_kind
    fit = choose_micro_batch(
        recipe, shards=mesh.size, limit_bytes=limit_bytes, measure=measure, device=device
    )
    log(fit.line)
    return fit.micro_batch_size, steps[fit.micro_batch_size]
