"""The bundled backend comparison: training and inference throughput of JAX and PyTorch.

    python -m benchmarks.throughput \
        --models=resnet18,resnext50_32x4d,densenet201,shake_shake26_2x96d \
        --backends=jax,jax_nnxjit,torch,torch_compile --precision=bf16,fp32 --batch_size=256 \
        --steps=50 [--warmup=3] [--input_size=128] [--cpu_threads=N] --out=FILE.json \
        [--append] [--png=FILE.png] [--preprocess]

For every model x precision x backend it measures, on the first device of each framework: training
throughput (samples/s) of the REAL train step (``jax_impl.train_step`` / ``torch_ref.train_step``,
SpecAugment and Mixup inside the step as in training), inference throughput, median and p90 step
time, compile/warm-up time, peak memory, FLOPs per sample and MFU. The timing protocol (warm-up
excluded; one synchronisation at the end of the throughput pass; a separate pass synchronised per
step for the median/p90) is documented in ``benchmarks/timing.py``; the backends in
``benchmarks/combo.py``; FLOP counting and MFU in ``benchmarks/flops.py``; memory kinds in
``benchmarks/hardware.py``.

Every combination runs in a fresh Python process, so peak-memory figures are its own, one
framework never holds the GPU while the other runs, and a crash (e.g. out of memory) is recorded
as a failure without stopping the rest. ``--preprocess`` also runs ``benchmarks.preprocess``
(separation with JAX and torch, each in fp32 and bf16, log-mels with librosa and JAX, in
multiples of real time).

Outputs: a markdown table on stdout, the JSON record ``--out`` (rewritten after every
combination, so a run cut short keeps what it measured; ``"complete": true`` once it finished)
and the ratio chart ``--png``. ``--append`` extends an existing ``--out`` from the same device:
its results are kept and only the missing combinations run (long GPU matrices can be run one
model at a time).
The exit status is 1 when a combination failed (after writing everything), 2 on a bad flag.

JSON schema (``SCHEMA_VERSION`` 1)::

    {
      "schema_version": 1,
      "complete": bool,                      # false while (or if cut short while) running
      "device":   {"kind": "cpu" | "gpu", "name": str, "cpu": str, "cpu_count": int,
                   "torch_threads": int, "jax_devices": [str], "torch_cuda": str | null,
                   "driver": str | null, "torch_cuda_build": str | null},
      "versions": {"python": str, "jax": str, "jaxlib": str, "flax": str, "torch": str, ...},
      "command":  str,                       # the exact command line
      "date":     str,                       # ISO 8601, UTC
      "load":     {"1m": float, "5m": float, "15m": float} | null,   # at the start
      "load_end": {...} | null,              # at the end (shared machines skew CPU figures)
      "settings": {"steps": int, "warmup": int, "input_size": int, "num_classes": int,
                   "cpu_threads": int | null},   # null: the frameworks' defaults
      "previous_runs": [{"command", "date", "load", "load_end", "settings"}],   # --append
      "results": [{
          "model": str,                      # "<name>[memory_efficient]" under --memory_efficient
          "memory_efficient": bool,          # densenet201's rematerialised bottlenecks
          "backend": "jax" | "jax_nnxjit" | "torch" | "torch_compile",
          "precision": "bf16" | "fp32", "batch_size": int, "input_size": int,
          "train_samples_per_s": float,      # steps * batch / wall, one sync at the end
          "infer_samples_per_s": float,      # eval-mode forward, same protocol
          "train_samples_per_cpu_s": float,  # per second of process CPU time (both passes:
          "infer_samples_per_cpu_s": float,  #   load-independent on a CPU, host cost on a GPU)
          "step_ms_median": float, "step_ms_p90": float,   # synchronised per step
          "compile_s": float,                # first training step, synchronised
          "infer_compile_s": float,          # first eval call, synchronised
          "peak_mem_bytes": int, "peak_mem_kind": str,     # see benchmarks/hardware.py
          "flops_per_sample": float,         # training step FLOPs / batch
          "infer_flops_per_sample": float,
          "flops_counter": "xla_cost_analysis" | "torch_flop_counter",
          "peak_flops": float | null,        # dense peak used for MFU (null: unknown, e.g. CPU)
          "mfu": float | null,               # fraction of peak_flops; null where it is null
          "device_name": str,                # the framework's name for the device
          "first_losses": [float, float],    # losses of steps 0 and 1 (same-step checks)
          "warnings": [str],                 # raised while stepping (JAX)
          "state_donated": bool | null,      # JAX: the first step consumed its input state
          "steps", "warmup", "num_classes", "cpu_threads": the settings it ran with,
          "xla_memory": {"temp_bytes", "argument_bytes", "output_bytes", "alias_bytes"} | null
                                             # JAX: XLA's buffer plan of the train step
      }],
      "ratios": [{"model", "precision", "batch_size", "input_size",
                  "jax_over_torch", "jax_over_torch_compile", "nnxjit_over_jax"}],
                                             # train_samples_per_s ratios, null if not measured
      "failures": [{"model", "backend", "precision", "batch_size", "error": str}],
      "preprocess": {...} | null,            # benchmarks.preprocess's record (--preprocess)
      "notes": [str]                         # optional: remarks added to a record by hand
    }
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.child import child_main, in_subprocess
from benchmarks.combo import BACKENDS, PRECISIONS, BenchmarkError, Combo
from shared_data.architecture.names import MODEL_NAMES
from shared_data.training.recipe import MEMORY_EFFICIENT_MODELS

SCHEMA_VERSION = 1
PROG = "python -m benchmarks.throughput"


def _preprocess_record(seconds: float, repeats: int, timeout_s: float) -> dict[str, Any]:
    """``benchmarks.preprocess`` run as its own CLI (speed only: run it directly for the peak
    memory and the quality rows)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "preprocess.json"
        command = [
            sys.executable, "-m", "benchmarks.preprocess", "--out", str(out),
            "--seconds", str(seconds), "--repeats", str(repeats), "--memory-seconds", "0",
            "--quality-songs", "0",
        ]  # fmt: skip
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
        if proc.returncode != 0:
            raise RuntimeError(f"benchmarks.preprocess failed: {proc.stderr.strip()[-2000:]}")
        return json.loads(out.read_text())


# --- the CLI -------------------------------------------------------------------------------------


def _split(text: str, allowed: tuple[str, ...], flag: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in items if t not in allowed]
    if unknown or not items:
        raise BenchmarkError(
            f"{flag}={text!r}: unknown or empty value(s) {unknown}; "
            f"choose from {', '.join(allowed)}"
        )
    return list(dict.fromkeys(items))


def _int_list(text: str, flag: str) -> list[int]:
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise BenchmarkError(f"{flag}={text!r}: expected integers, e.g. 256 or 256,64") from None
    if not values:
        raise BenchmarkError(f"{flag} is empty: give at least one integer")
    return list(dict.fromkeys(values))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Training/inference throughput of the JAX and PyTorch backends.",
    )
    parser.add_argument("--models", default="resnet18", help="comma-separated model names")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated")
    parser.add_argument("--precision", default="bf16", help="comma-separated: bf16, fp32")
    parser.add_argument(
        "--batch_size",
        default="256",
        help="per-device batch; a comma-separated list measures each (e.g. 256,64: a model "
        "that runs out of memory at 256 still gets a figure)",
    )
    parser.add_argument("--steps", type=int, default=50, help="timed steps per pass")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps after the first")
    parser.add_argument("--input_size", type=int, default=128, help="square input side (mels)")
    parser.add_argument("--num_classes", type=int, default=10)
    parser.add_argument(
        "--memory_efficient",
        action="store_true",
        help="train densenet201 with rematerialised bottlenecks (the recipe's "
        "--memory_efficient); rows are labelled densenet201[memory_efficient]",
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON record")
    parser.add_argument("--png", type=Path, default=None, help="ratio bar chart")
    parser.add_argument(
        "--append",
        action="store_true",
        help="extend the --out record: keep its results, measure only the missing combinations",
    )
    parser.add_argument("--preprocess", action="store_true", help="also run benchmarks.preprocess")
    parser.add_argument("--preprocess_seconds", type=float, default=60.0, help="song length")
    parser.add_argument(
        "--cpu_threads",
        type=int,
        default=None,
        help="run each combination on this many CPUs (affinity) with as many torch threads "
        "(default: the frameworks' own, all cores)",
    )
    parser.add_argument("--timeout_s", type=float, default=3600.0, help="per combination")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return parser


def combos_from_args(args: argparse.Namespace) -> list[Combo]:
    """The combinations of the flags, model-major; raises ``BenchmarkError`` on a bad flag."""
    models = _split(args.models, MODEL_NAMES, "--models")
    backends = _split(args.backends, BACKENDS, "--backends")
    precisions = _split(args.precision, PRECISIONS, "--precision")
    batches = _int_list(args.batch_size, "--batch_size")
    for flag, value, low in (
        ("--batch_size", min(batches), 1),
        ("--steps", args.steps, 1),
        ("--warmup", args.warmup, 0),
        ("--input_size", args.input_size, 32),
        ("--num_classes", args.num_classes, 2),
        ("--cpu_threads", 1 if args.cpu_threads is None else args.cpu_threads, 1),
    ):
        if value < low:
            raise BenchmarkError(f"{flag} must be >= {low} (got {value})")
    return [
        Combo(
            m,
            b,
            p,
            n,
            args.input_size,
            args.num_classes,
            memory_efficient=args.memory_efficient and m in MEMORY_EFFICIENT_MODELS,
        )
        for m in models
        for p in precisions
        for n in batches
        for b in backends
    ]


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


ROW_KEY = ("model", "backend", "precision", "batch_size", "input_size")


def _row_key(row: dict[str, Any]) -> tuple:
    return tuple(row.get(k) for k in ROW_KEY)


def pending(combos: list[Combo], results: list[dict[str, Any]]) -> list[Combo]:
    """The ``combos`` that have no row in ``results`` yet (same model/backend/precision/sizes)."""
    done = {_row_key(r) for r in results}
    return [c for c in combos if _row_key({**c.to_dict(), "model": c.label}) not in done]


def load_previous(path: Path, device: dict[str, Any]) -> dict[str, Any]:
    """The record at ``path`` to extend (``--append``); refuses one from another device."""
    try:
        old = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise BenchmarkError(f"--append: cannot read {path}: {err}") from None
    if old.get("device", {}).get("name") != device.get("name"):
        raise BenchmarkError(
            f"--append: {path} was measured on {old.get('device', {}).get('name')!r}, this "
            f"machine is {device.get('name')!r}; write to another --out"
        )
    return old


def _write(doc: dict[str, Any], out: Path | None) -> None:
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(doc, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.child is not None:
        return child_main(args.child)
    combos = combos_from_args(args)
    if args.append and args.out is None:
        raise BenchmarkError("--append needs --out (the record to extend)")
    from benchmarks import report
    from benchmarks.hardware import load_average

    command = " ".join([PROG, *argv])
    doc: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "complete": False}
    env_payload = {"kind": "environment", "command": command}
    doc.update(in_subprocess(env_payload, args.timeout_s, args.cpu_threads))
    settings = {
        "steps": args.steps,
        "warmup": args.warmup,
        "input_size": args.input_size,
        "num_classes": args.num_classes,
        "cpu_threads": args.cpu_threads,
    }
    doc["settings"] = settings
    results: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    doc["previous_runs"] = []
    previous: dict[str, Any] = {}
    if args.append and args.out.exists():
        previous = load_previous(args.out, doc["device"])
        results = list(previous.get("results", []))
        doc["previous_runs"] = previous.get("previous_runs", []) + [
            {k: previous.get(k) for k in ("command", "date", "load", "load_end", "settings")}
        ]
    todo = pending(combos, results)
    if len(todo) < len(combos):
        _log(f"--append: {len(combos) - len(todo)} combination(s) already in {args.out}")
    for n, combo in enumerate(todo, start=1):
        name = (
            f"[{n}/{len(todo)}] {combo.model}/{combo.backend}/{combo.precision}/b{combo.batch_size}"
        )
        _log(f"{name} ...")
        payload = {"kind": "combo", "combo": combo.to_dict(), "steps": args.steps}
        payload["warmup"] = args.warmup
        try:
            row = in_subprocess(payload, args.timeout_s, args.cpu_threads)
        except RuntimeError as err:
            _log(f"{name} FAILED: {err}")
            keys = ("model", "backend", "precision", "batch_size")
            failures.append({**{k: getattr(combo, k) for k in keys}, "error": str(err)})
        else:
            _log(f"{name}: {row['train_samples_per_s']:.3g} train samples/s")
            results.append({**row, **settings})
        # Written after every combination: a run cut short keeps what it measured.
        doc.update(results=results, ratios=report.ratios(results), failures=failures)
        _write(doc, args.out)
    doc.update(results=results, ratios=report.ratios(results), failures=failures)
    if args.preprocess:
        doc["preprocess"] = _preprocess_record(args.preprocess_seconds, 2, args.timeout_s)
    else:  # an appended run keeps the record's earlier preprocessing figures
        doc["preprocess"] = previous.get("preprocess")
    doc["load_end"] = load_average()
    doc["complete"] = True
    print(report.render(doc))
    problems = report.validate(doc)
    if problems:
        _log("schema problems: " + "; ".join(problems))
    _write(doc, args.out)
    if args.png is not None:
        cpu = doc["device"]["kind"] == "cpu"
        report.plot_ratios(doc["ratios"], args.png, report.chart_title(doc), cpu_time=cpu)
    return 1 if failures or problems else 0


if __name__ == "__main__":
    from shared_data.cli import run_main

    run_main(main)
