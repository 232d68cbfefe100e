"""Memory that fits by construction: the micro-batch choice both backends make before the first
step, and the one line an out-of-memory error becomes.

API (used by ``jax_impl/memory_fit.py``, ``torch_ref/memory_fit.py`` and both ``train.py``)::

    check_micro_batch(recipe, shards=n)            # DataError unless micro-batches split over n
    limit = injected_device_memory()               # $VOCALGENRE_DEVICE_MEMORY_BYTES, or None
    fit = choose_micro_batch(recipe, shards=n, limit_bytes=limit, measure=fn, device="...")
    fit.micro_batch_size, fit.line                 # the choice and the line that reports it
    h, w = input_hw(data)                          # one training input's mel shape
    micro_batch_note(recipe)                       # " (4 accumulated micro-batches of 16)" or ""
    with out_of_memory_as_user_error(recipe) as oom:   # RESOURCE_EXHAUSTED / CUDA OOM -> one line
        ...; oom.recipe = fitted_recipe                # name the micro-batch the run really used

The rule: measure the train step at the requested micro-batch (``--micro_batch_size``, default the
whole ``--batch_size``); while it needs more than :data:`HEADROOM` of the device's memory, halve
it (the largest divisor of the batch, and multiple of the device count, at most half the last
size) and measure again. ``measure(micro) -> bytes per device`` is the backend's: XLA's memory
analysis of the compiled step in JAX, a trial micro-step in torch; it returns None when the trial
itself ran out of memory. Halving, not a search over every divisor: each JAX measurement is a
compilation of the step (5 min for densenet201 on the benchmark CPU, BENCHMARKS.md), and the usual
power-of-two batches have no divisors between two halvings.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from shared_data.errors import DataError
from shared_data.training.loop import TrainingError
from shared_data.training.recipe import MEMORY_EFFICIENT_MODELS, Recipe

#: Test/debug knob: the device memory (bytes) to fit the train step into, on any platform (the
#: CPU included, where the fit is otherwise skipped). Not for production runs: on an accelerator
#: the device reports its own.
DEVICE_MEMORY_ENV = "VOCALGENRE_DEVICE_MEMORY_BYTES"

#: The share of the device's memory the measured step may use. The measurement covers the step's
#: own buffers; the rest covers what it does not see: the prefetched input batches, the eval
#: step's activations, the allocator's fragmentation, and (JAX) the other Mixup variant of the
#: step, whose extra input copy is not measured.
HEADROOM = 0.9

_GIB = float(1 << 30)


@dataclasses.dataclass(frozen=True)
class MemoryFit:
    """The chosen micro-batch, the device memory and every measurement made to choose it.

    ``tried``: ``(micro_batch_size, bytes per device or None when the trial ran out of memory)``
    in the order measured; the last one is the choice.
    """

    micro_batch_size: int
    limit_bytes: int
    tried: tuple[tuple[int, int | None], ...]
    line: str


def check_micro_batch(recipe: Recipe, *, shards: int, what: str = "devices") -> None:
    """Raise :class:`DataError` unless every micro-batch splits evenly over ``shards``.

    ``shards``: the JAX devices of the mesh, or torch's DDP processes (``what`` names them).
    """
    micro = recipe.micro_batch_size
    if micro is not None and micro % shards:
        raise DataError(
            f"--micro_batch_size={micro} must be divisible by the {shards} {what} (each takes an "
            "equal share of every micro-batch); pass a multiple of it"
        )


def micro_batch_note(recipe: Recipe) -> str:
    """`` (4 accumulated micro-batches of 16)`` for a status line; empty without accumulation."""
    k = recipe.micro_batches
    return f" ({k} accumulated micro-batches of {recipe.micro_batch_size})" if k > 1 else ""


def injected_device_memory() -> int | None:
    """The device memory of :data:`DEVICE_MEMORY_ENV` in bytes, or None when it is not set."""
    text = os.environ.get(DEVICE_MEMORY_ENV, "").strip()
    if not text:
        return None
    try:
        value = int(float(text))
    except ValueError:
        value = 0
    if value <= 0:
        raise DataError(f"${DEVICE_MEMORY_ENV}={text!r} must be a positive number of bytes")
    return value


def input_hw(data: Any) -> tuple[int, int]:
    """``(H (mel bins), W (frames))`` of the training inputs of ``data`` (a ``TrainingData``)."""
    h, w = np.shape(data.source[int(data.train_indices[0])]["mel"])
    return int(h), int(w)


def micro_batch_candidates(batch_size: int, start: int, multiple_of: int = 1) -> list[int]:
    """``start`` and its successive halvings: each the largest divisor of ``batch_size`` that is a
    multiple of ``multiple_of`` and at most half the previous one (``[64, 32, ..., 1]`` for 64)."""
    sizes = [start]
    while True:
        below = [
            d for d in range(multiple_of, sizes[-1] // 2 + 1, multiple_of) if batch_size % d == 0
        ]
        if not below:
            return sizes
        sizes.append(below[-1])


def _gib(n: int | None) -> str:
    return (
        "more than the device has (the trial ran out of memory)"
        if n is None
        else (f"{n / _GIB:.2f} GiB")
    )


def _memory_efficient_hint(recipe: Recipe) -> str | None:
    if recipe.model in MEMORY_EFFICIENT_MODELS and not recipe.memory_efficient:
        return "--memory_efficient (recompute the dense layers' bottlenecks in the backward pass)"
    return None


def choose_micro_batch(
    recipe: Recipe,
    *,
    shards: int,
    limit_bytes: int,
    measure: Callable[[int], int | None],
    device: str,
) -> MemoryFit:
    """The largest micro-batch on the halving path whose step fits ``HEADROOM * limit_bytes``.

    Raises:
        TrainingError: not even the smallest micro-batch fits (one line naming the flags).
    """
    budget = HEADROOM * limit_bytes
    start = recipe.micro_batch_size or recipe.batch_size
    tried: list[tuple[int, int | None]] = []
    for micro in micro_batch_candidates(recipe.batch_size, start, shards):
        needed = measure(micro)
        tried.append((micro, needed))
        if needed is not None and needed <= budget:
            fit = MemoryFit(micro, limit_bytes, tuple(tried), "")
            return dataclasses.replace(fit, line=fit_line(recipe, fit, device))
    micro, needed = tried[-1]
    hint = _memory_efficient_hint(recipe) or "a device with more memory"
    raise TrainingError(
        f"the train step of {recipe.model} does not fit {device} ({limit_bytes / _GIB:.2f} GiB "
        f"per device) even in micro-batches of {micro} (needs {_gib(needed)}; --batch_size="
        f"{recipe.batch_size}, --micro_batch_size={micro} is the smallest that splits over "
        f"{shards} device(s)); use {hint}"
    )


def fit_line(recipe: Recipe, fit: MemoryFit, device: str) -> str:
    """The status line of a fit: what the step needs, and the micro-batch chosen when it had to
    shrink (with why the run is still the same run, and the densenet201 hint)."""
    micro, needed = fit.tried[-1]
    start, start_needed = fit.tried[0]
    of = f"of the {fit.limit_bytes / _GIB:.2f} GiB per device of {device}"
    if micro == start:
        split = f" in micro-batches of {micro}" if micro < recipe.batch_size else ""
        batch = f"--batch_size={recipe.batch_size}{split}"
        return f"memory: the train step needs {_gib(needed)} {of} ({batch})"
    line = (
        f"memory: the train step at {start} examples per pass needs {_gib(start_needed)}, over "
        f"{HEADROOM:.0%} {of}; training --batch_size={recipe.batch_size} as "
        f"{recipe.batch_size // micro} micro-batches of {micro} ({_gib(needed)}; "
        f"--micro_batch_size={micro}): one optimizer step per batch, the same schedule, data "
        "order and draws; BatchNorm statistics and Mixup partners per micro-batch"
    )
    hint = _memory_efficient_hint(recipe)
    return f"{line}; {hint} would fit larger micro-batches" if hint else line


# --- out of memory at run time -----------------------------------------------------------------


def is_out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is a device out-of-memory error: XLA's ``RESOURCE_EXHAUSTED`` (a
    ``JaxRuntimeError``) or torch's ``OutOfMemoryError`` / "CUDA out of memory"."""
    if not isinstance(err, RuntimeError):
        return False
    text = str(err)
    return (
        type(err).__name__ == "OutOfMemoryError"
        or "RESOURCE_EXHAUSTED" in text
        or "CUDA out of memory" in text
        or "CUDA error: out of memory" in text
    )


def out_of_memory_line(recipe: Recipe, err: BaseException) -> str:
    """One line for an out-of-memory error: what ran out and the flags that make the step fit."""
    detail = " ".join(str(err).split())
    detail = detail if len(detail) <= 160 else detail[:157] + "..."
    micro = recipe.micro_batch_size or recipe.batch_size
    at = f"--batch_size={recipe.batch_size}"
    if micro < recipe.batch_size:
        at += f" in micro-batches of {micro}"
    smaller = micro_batch_candidates(recipe.batch_size, micro)[1:2]
    example = f", e.g. --micro_batch_size={smaller[0]}" if smaller else ""
    fixes = [f"a smaller --micro_batch_size (gradient accumulation, same global batch{example})"]
    hint = _memory_efficient_hint(recipe)
    if hint:
        fixes.append("--memory_efficient")
    fixes.append("a smaller --batch_size")
    return f"out of device memory training {recipe.model} at {at} ({detail}); pass " + ", or ".join(
        fixes
    )


@dataclasses.dataclass
class OutOfMemoryNote:
    """What an out-of-memory line names: set ``recipe`` once the fit has chosen the micro-batch."""

    recipe: Recipe


@contextlib.contextmanager
def out_of_memory_as_user_error(recipe: Recipe) -> Iterator[OutOfMemoryNote]:
    """Turn a device out-of-memory error raised inside into one :class:`TrainingError` line
    (:func:`out_of_memory_line`); anything else passes through."""
    note = OutOfMemoryNote(recipe)
    try:
        yield note
    except RuntimeError as err:
        if not is_out_of_memory(err):
            raise
        raise TrainingError(out_of_memory_line(note.recipe, err)) from err
