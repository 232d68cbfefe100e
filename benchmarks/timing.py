"""The timing protocol of the throughput benchmark, independent of the backend.

A backend supplies a :class:`Workload` (``benchmarks/bench_jax.py``, ``benchmarks/bench_torch.py``);
:func:`measure` runs the same protocol on every one of them:

1. ``compile_s``: the first training step, synchronised (tracing, compilation, autotuning and one
   execution; torch eager has only the last two).
2. ``warmup`` more training steps, synchronised, not timed.
3. Throughput pass: ``steps`` training steps dispatched back to back with ONE synchronisation at
   the end, ``train_samples_per_s = steps * batch / wall``. This is how a training loop without
   per-step host reads runs, so asynchronous dispatch overlaps Python with the device.
4. Latency pass: ``steps`` more steps, each followed by a synchronisation, giving the per-step
   times whose median and 90th percentile are reported. A sync per step removes the overlap, so
   ``1000 * batch / step_ms_median`` can be below the throughput of pass 3; the difference is the
   host overhead that asynchronous dispatch hides.
5. Inference: the first eval call, synchronised (``infer_compile_s``), ``warmup`` more, then
   ``steps`` calls with one synchronisation at the end (``infer_samples_per_s``).

Process CPU time (all threads of the process) is recorded for the two throughput passes too:
on a CPU run with pinned threads it is nearly independent of other load on the machine (the wall
clock is not), so CPU-time ratios are the robust comparison on a shared machine; on a GPU run it
is the host's overhead.

Data loading is excluded: every step reads the same device-resident batch (the augmentation
draws still change every step), so the figures are those of the step itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np


class Workload(Protocol):
    """One model/backend/precision/batch combination, ready to step (see the module doc)."""

    batch_size: int

    def train_step(self, i: int) -> None:
        """Dispatch training step ``i`` (asynchronously where the backend allows)."""

    def infer_step(self, i: int) -> None:
        """Dispatch one eval-mode forward pass of the batch."""

    def sync(self) -> None:
        """Block until everything dispatched so far has finished on the device."""

    def train_flops(self) -> float | None:
        """FLOPs of one training step (whole batch), from the backend's counter; None if unknown."""

    def infer_flops(self) -> float | None:
        """FLOPs of one eval forward pass (whole batch); None if unknown."""

    def peak_memory(self) -> tuple[int, str]:
        """``(bytes, kind)``: the peak memory so far and what it measures (see ``hardware``)."""

    def extra(self) -> dict[str, Any]:
        """Backend-specific facts for the record (e.g. the first step's loss)."""


def _timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _timed_with_cpu(fn: Callable[[], None]) -> tuple[float, float]:
    """``(wall seconds, process CPU seconds)`` of ``fn()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def percentile_ms(seconds: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100, linear interpolation) of ``seconds``, in milliseconds."""
    if not seconds:
        raise ValueError("no step times to summarise")
    return float(np.percentile(np.asarray(seconds, dtype=np.float64), q) * 1000.0)


def measure(work: Workload, *, steps: int, warmup: int = 1) -> dict[str, float | None]:
    """Run the protocol of the module doc on ``work``; returns the timing fields of a result.

    Returns:
        ``compile_s``, ``train_samples_per_s``, ``step_ms_median``, ``step_ms_p90``,
        ``infer_compile_s``, ``infer_samples_per_s`` (floats, seconds or samples per second),
        ``train_samples_per_cpu_s``, ``infer_samples_per_cpu_s`` (samples per second of the
        process's CPU time in the two throughput passes; None if no CPU time was counted).
    """
    if steps < 1 or warmup < 0:
        raise ValueError(f"need steps >= 1 and warmup >= 0, got {steps} and {warmup}")
    b = work.batch_size

    def train_and_sync(i: int) -> None:
        work.train_step(i)
        work.sync()

    def infer_and_sync(i: int) -> None:
        work.infer_step(i)
        work.sync()

    def train_pass(first: int) -> None:
        for i in range(first, first + steps):
            work.train_step(i)
        work.sync()

    def infer_pass() -> None:
        for i in range(steps):
            work.infer_step(i)
        work.sync()

    compile_s = _timed(lambda: train_and_sync(0))
    for i in range(1, 1 + warmup):
        train_and_sync(i)
    first = 1 + warmup
    train_wall, train_cpu = _timed_with_cpu(lambda: train_pass(first))
    per_step = [
        _timed(lambda i=i: train_and_sync(i)) for i in range(first + steps, first + 2 * steps)
    ]
    infer_compile_s = _timed(lambda: infer_and_sync(0))
    for i in range(warmup):
        infer_and_sync(i)
    infer_wall, infer_cpu = _timed_with_cpu(infer_pass)
    return {
        "compile_s": compile_s,
        "train_samples_per_s": steps * b / train_wall,
        "step_ms_median": percentile_ms(per_step, 50),
        "step_ms_p90": percentile_ms(per_step, 90),
        "infer_compile_s": infer_compile_s,
        "infer_samples_per_s": steps * b / infer_wall,
        "train_samples_per_cpu_s": steps * b / train_cpu if train_cpu > 0 else None,
        "infer_samples_per_cpu_s": steps * b / infer_cpu if infer_cpu > 0 else None,
    }
