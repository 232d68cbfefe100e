"""One benchmark combination in a fresh interpreter, and the child process that measures it.

:func:`in_subprocess` runs ``python -m <module> --child <json>`` (the module's ``--child`` mode
calls :func:`child_main`), pinned to ``cpu_threads`` CPUs when asked and killed with its parent,
and reads back the one result line the child prints. :func:`run_combo` is the measurement itself.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
from typing import Any

from benchmarks.combo import Combo

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
RESULT_MARKER = "BENCHMARK_RESULT "


def run_combo(combo: Combo, *, steps: int, warmup: int) -> dict[str, Any]:
    """Measure ``combo`` in this process; the result row of the schema (module doc)."""
    from benchmarks.flops import dense_peak_flops, mfu
    from benchmarks.timing import measure

    if combo.backend.startswith("jax"):
        from benchmarks.bench_jax import make_workload

        counter = "xla_cost_analysis"
    else:
        from benchmarks.bench_torch import make_workload

        counter = "torch_flop_counter"
    work = make_workload(combo)
    timing = measure(work, steps=steps, warmup=warmup)
    peak_bytes, peak_kind = work.peak_memory()
    train_flops, infer_flops = work.train_flops(), work.infer_flops()
    extra = work.extra()
    per_sample = None if train_flops is None else train_flops / combo.batch_size
    peak = (
        None
        if extra["device_name"] == "cpu"
        else dense_peak_flops(extra["device_name"], combo.precision)
    )
    return {
        "model": combo.label,
        "memory_efficient": combo.memory_efficient,
        "backend": combo.backend,
        "precision": combo.precision,
        "batch_size": combo.batch_size,
        "input_size": combo.input_size,
        **timing,
        "peak_mem_bytes": int(peak_bytes),
        "peak_mem_kind": peak_kind,
        "flops_per_sample": per_sample,
        "infer_flops_per_sample": None if infer_flops is None else infer_flops / combo.batch_size,
        "flops_counter": counter,
        "peak_flops": peak,
        "mfu": mfu(per_sample, timing["train_samples_per_s"], peak),
        **extra,
    }


def child_main(spec: str) -> int:
    """The ``--child`` mode: run the JSON ``spec`` and print :data:`RESULT_MARKER` + its result."""
    payload = json.loads(spec)
    if payload["kind"] == "environment":
        from benchmarks.hardware import environment

        result = environment(payload["command"])
    else:
        combo = Combo(**payload["combo"])
        result = run_combo(combo, steps=payload["steps"], warmup=payload["warmup"])
    print(RESULT_MARKER + json.dumps(result), flush=True)
    return 0


def child_env(cpu_threads: int | None) -> dict[str, str]:
    """The child's environment: this one, with torch's thread count pinned when asked.

    torch reads ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` at import. XLA:CPU ignores its thread
    flags (``intra_op_parallelism_threads`` left both cores busy in a check) and sizes its pool
    by the CPUs the process may run on, so :func:`child_setup` restricts the child's affinity.
    """
    env = os.environ.copy()
    if cpu_threads is not None:
        env.update(OMP_NUM_THREADS=str(cpu_threads), MKL_NUM_THREADS=str(cpu_threads))
    return env


def child_setup(cpu_threads: int | None):
    """The child's ``preexec_fn``: die with the parent; run on ``cpu_threads`` CPUs if given.

    Dying with the parent (Linux ``PR_SET_PDEATHSIG``): a benchmark killed from outside (a time
    limit) must not leave a child holding the GPU. Elsewhere both steps are skipped.
    """
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    cpus = set(allowed[:cpu_threads]) if cpu_threads is not None and allowed else None

    def setup() -> None:
        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        except (OSError, AttributeError):
            pass
        if cpus:
            os.sched_setaffinity(0, cpus)

    return setup


def in_subprocess(
    payload: dict[str, Any],
    timeout_s: float,
    cpu_threads: int | None = None,
    module: str = "benchmarks.throughput",
) -> dict[str, Any]:
    """Run ``payload`` in a fresh interpreter; its result, or ``RuntimeError`` with the reason.

    ``module``'s ``--child`` mode runs the payload and prints :data:`RESULT_MARKER` + JSON.
    """
    command = [sys.executable, "-m", module, "--child", json.dumps(payload)]
    try:
        proc = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=child_env(cpu_threads),
            preexec_fn=child_setup(cpu_threads),
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"timed out after {timeout_s:.0f} s (raise --timeout_s)") from None
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_MARKER)]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"exit status {proc.returncode}: {tail}")
    return json.loads(lines[-1][len(RESULT_MARKER) :])
