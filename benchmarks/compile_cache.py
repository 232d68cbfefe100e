"""What JAX's persistent compilation cache saves: the same ``jax_impl.train`` run started twice.

    python -m benchmarks.compile_cache --out=DIR [--models=resnet18,lstm] [--batch_size=8]

For each model, two fresh processes run ``python -m jax_impl.train`` (one epoch of
``synthetic_small``, built without separation into ``DIR/data``) with ``--jax_cache`` pointing
at a new, empty directory: the first compiles and fills the cache, the second reads it. Each
process reports the seconds it spent in XLA's backend compiler and in reading cache entries
(``jax.monitoring`` duration events) and its wall time. ``DIR/compile_cache.json`` holds the
figures; a markdown table is printed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

PROG = "python -m benchmarks.compile_cache"
CHILD = textwrap.dedent(
    """
    import json, sys
    from jax import monitoring

    spent = {"compile_s": 0.0, "cache_read_s": 0.0}

    def on_duration(event, duration, **kwargs):
        if event.endswith("backend_compile_duration"):
            spent["compile_s"] += duration
        elif "compilation_cache" in event and "retrieval" in event:
            spent["cache_read_s"] += duration

    monitoring.register_event_duration_secs_listener(on_duration)
    from jax_impl.train import main

    if __name__ == "__main__":
        main(sys.argv[1:])
        print("COMPILE_CACHE " + json.dumps(spent), flush=True)
    """
)


def one_start(argv: list[str]) -> dict[str, Any]:
    """One ``jax_impl.train`` process: its compile and cache-read seconds and wall time."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, *argv], capture_output=True, text=True)
    wall = time.perf_counter() - start
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("COMPILE_CACHE ")]
    if proc.returncode or not lines:
        raise RuntimeError(f"jax_impl.train failed: {proc.stderr[-2000:]}")
    return {**json.loads(lines[-1].split(" ", 1)[1]), "wall_s": wall}


def measure(model: str, data_dir: Path, out: Path, batch_size: int) -> dict[str, Any]:
    """Cold and warm starts of one model's run, each with a fresh workdir, one cache."""
    cache = out / f"cache_{model}"
    starts = []
    for start in ("cold", "warm"):
        argv = [f"--model={model}", "--dataset=synthetic_small", f"--data_dir={data_dir}",
                f"--workdir={out / f'run_{model}_{start}'}", "--epochs=1",
                f"--batch_size={batch_size}", f"--jax_cache={cache}", "--no_progress"]  # fmt: skip
        starts.append({"start": start, **one_start(argv)})
    return {"model": model, "batch_size": batch_size, "starts": starts}


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| model | start | XLA compile s | cache read s | process wall s |",
             "|---|---|---:|---:|---:|"]  # fmt: skip
    for row in rows:
        for s in row["starts"]:
            lines.append(f"| {row['model']} | {s['start']} | {s['compile_s']:.1f} | "
                         f"{s['cache_read_s']:.2f} | {s['wall_s']:.1f} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--models", default="resnet18,lstm")
    p.add_argument("--batch_size", type=int, default=8)
    args = p.parse_args(argv)
    from benchmarks.hardware import environment
    from benchmarks.input_pipeline import ensure_dataset

    args.out.mkdir(parents=True, exist_ok=True)
    data_dir = args.out / "data"
    ensure_dataset(data_dir, "synthetic_small")
    doc = environment(" ".join([PROG, *(sys.argv[1:] if argv is None else argv)]))
    doc["rows"] = [measure(m, data_dir, args.out, args.batch_size) for m in args.models.split(",")]
    (args.out / "compile_cache.json").write_text(json.dumps(doc, indent=2) + "\n")
    print(f"{doc['device']['cpu']}\n\n{markdown(doc['rows'])}")
    return 0


if __name__ == "__main__":
    from shared_data.cli import run_main

    run_main(main)
