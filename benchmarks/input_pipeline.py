"""How fast the records reach the device, and the training loop's host ceiling, in both backends.

    python -m benchmarks.input_pipeline --out=DIR [--workers=0,1,2,4] [--batches=64,256]
        [--backends=jax,torch] [--data_dir=DIR --config=NAME] [--seconds=4] [--smoke]

Two kinds of rows, for every backend x ``--workers`` x ``--batches``:

- ``input``: clips/s from the records to normalised batches on the device: the loader of
  ``jax_impl.train`` (grain, :class:`~jax_impl.data.TrainFeed`'s pipeline and ``to_device``,
  waiting for each batch to be on the device) or of ``torch_ref.train`` (its ``DataLoader``,
  then ``.to(device)``). The first batches (the workers' start) are not timed; then as many
  batches as ``--seconds`` allow.
- ``loop``: the host ceiling: the real ``train_and_evaluate`` of the backend (loader, jitted or
  eager step with SpecAugment and Mixup, hooks, logging, checkpoints, validation every epoch)
  training :mod:`benchmarks.null_model`, whose model costs nothing. Samples/s over the epochs
  after the first, from the end of epoch 1 to the end of the last (an epoch ends after its
  validation and checkpoint, which wait for the device): every compilation (the train step,
  the eval step at the first validation) lies before the window, and the later epochs'
  validations and checkpoints lie inside. Mixup runs in every epoch (``mixup_fraction=1``): one
  compiled step, and the dearer of its two variants.

Every backend runs in its own fresh process (torch's rows never import JAX), rows one after the
other in it, so its rows compare side by side on the same machine state. The records: the
built dataset ``--data_dir``/``--config``, by default ``synthetic_small`` built without
separation into ``DIR/data`` (60 clips), read at random through an index tiled to ``--clips``
records, as a dataset that fits in the page cache is read after its first epoch. ``DIR`` gets
``input_pipeline.json`` and the markdown table printed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.child import RESULT_MARKER, in_subprocess
from benchmarks.combo import BenchmarkError
from shared_data.training.hooks import Hook

PROG = "python -m benchmarks.input_pipeline"
# The smoke run: worker processes (the 0-worker path is every training test's), and the null
# model for the end-to-end row too, whose compilation costs nothing.
SMOKE = {"workers": (1,), "batches": (8,), "clips": 96, "seconds": 0.3, "warmup": 2,
         "epochs": 2, "e2e_model": "null", "e2e_batch": 8, "e2e_workers": 1,
         "e2e_steps": 3}  # fmt: skip
FULL = {"workers": (0, 1, 2, 4), "batches": (64, 256), "clips": 8192, "seconds": 4.0,
        "warmup": 4, "epochs": 3, "e2e_model": "resnet18", "e2e_batch": 256, "e2e_workers": 2,
        "e2e_steps": 20}  # fmt: skip


class TiledSource(Sequence):
    """``base`` repeated to ``n`` records: record ``i`` is ``base[i % len(base)]`` (picklable)."""

    def __init__(self, base: Sequence[dict[str, Any]], n: int):
        self.base, self.n = base, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, Any]:  # type: ignore[override]
        return self.base[int(i) % len(self.base)]


class TiledDataset:
    """An opened dataset whose ``train`` split is tiled to ``n`` records (``train_and_evaluate``'s
    ``dataset`` argument)."""

    def __init__(self, opened: Any, n: int):
        self.opened, self.n = opened, n

    def source(self, split: str = "train", stem: str | None = None) -> TiledSource:
        return TiledSource(self.opened.source(split, stem=stem), self.n)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.opened, name)


def ensure_dataset(data_dir: Path, config: str) -> None:
    """Build ``config`` into ``data_dir`` without separation when it is not there."""
    from shared_data.dataset.builder import build_dataset

    build_dataset(data_dir, config, separator="none", stem="mix", progress=False)


def _timed_batches(batches: Any, batch: int, warmup: int, seconds: float, wait: Any) -> dict:
    """Clips/s of ``batches`` after ``warmup`` batches, over about ``seconds``."""
    it = iter(batches)
    for _ in range(warmup):
        wait(next(it))
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        wait(next(it))
        n += 1
    elapsed = time.perf_counter() - start
    return {"clips_per_s": n * batch / elapsed, "batches_timed": n, "seconds": elapsed}


def input_rate(backend: str, source: Sequence, workers: int, batch: int, cfg: dict) -> dict:
    """One ``input`` row (module doc)."""
    from shared_data.dataset.batches import EpochPlan, Normalizer, TrainBatches

    norm = Normalizer(-20.0, 15.0)
    if backend == "jax":
        import jax

        from jax_impl import data as data_lib
        from jax_impl import train_step as ts

        plan = EpochPlan(np.arange(len(source)), 0, batch)
        seq = TrainBatches(source, plan, norm, end_epoch=10_000)
        it = data_lib.to_device(
            data_lib.batch_pipeline(seq, workers), ts.batch_sharded(ts.make_mesh())
        )
        try:
            row = _timed_batches(it, batch, cfg["warmup"], cfg["seconds"],
                                 lambda b: jax.block_until_ready(b["mel"]))  # fmt: skip
        finally:
            it.close()
        return row
    import torch

    from torch_ref import data as torch_data

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dataset = torch_data.MelDataset(source, np.arange(len(source)), norm.mean, norm.std)
    sampler = torch_data.EpochBatchSampler(len(source), batch, 0)
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, num_workers=workers, pin_memory=device.type == "cuda",
        persistent_workers=workers > 0, prefetch_factor=2 if workers else None,
        collate_fn=torch_data.as_batch,
    )  # fmt: skip

    def wait(b: Any) -> None:
        b[0].to(device, non_blocking=True)
        if device.type == "cuda":
            torch.cuda.synchronize()

    def epochs() -> Any:  # as torch_ref.train reads them: the sampler's order, epoch by epoch
        for epoch in range(10_000):
            sampler.set_epoch(epoch)
            yield from loader

    return _timed_batches(epochs(), batch, cfg["warmup"], cfg["seconds"], wait)


def loop_rate(
    backend: str, dataset: Any, data_dir: str, workers: int, batch: int, cfg: dict,
    model: str | None = None,
) -> dict:  # fmt: skip
    """One ``loop`` row: ``train_and_evaluate`` of ``model`` (default the null model; module
    doc), samples/s over the epochs after the first."""
    from shared_data.training.recipe import Recipe

    if backend == "jax":
        from jax_impl.train import train_and_evaluate
    else:
        from torch_ref.train import train_and_evaluate
    model = model or _null_model(backend)
    clock = _EpochClock()
    with tempfile.TemporaryDirectory() as workdir:
        recipe = Recipe(model=model, dataset=dataset.config, data_dir=data_dir,
                        workdir=workdir, epochs=cfg["epochs"], batch_size=batch,
                        num_workers=workers, log_every=10, mixup_fraction=1.0)  # fmt: skip
        summary = train_and_evaluate(recipe, dataset=dataset, hooks=(clock,))
    steps = sum(clock.steps[1:])
    elapsed = clock.ends[-1] - clock.ends[0]
    return {"samples_per_s": steps * batch / elapsed, "steps_timed": steps, "seconds": elapsed,
            "model": model, "val_acc": summary["final_val_acc"]}  # fmt: skip


class _EpochClock(Hook):
    """When each epoch ended (after its validation and checkpoint, which wait for the device)
    and how many steps it trained."""

    def __init__(self) -> None:
        self.ends: list[float] = []
        self.steps: list[int] = []

    def on_epoch_start(self, epoch: int, *, steps: int, first_step: int, **_: Any) -> None:
        self.steps.append(steps - first_step)

    def on_epoch_end(self, record: Any) -> None:
        self.ends.append(time.perf_counter())


_registered: set[str] = set()


def _null_model(backend: str) -> str:
    from benchmarks import null_model

    if null_model.NAME not in _registered:
        _registered.add(null_model.register(backend))
    return null_model.NAME


def end_to_end(dataset: Any, data_dir: str, cfg: dict) -> dict[str, Any]:
    """``jax_impl.train``'s steady state against its device-resident step (the throughput
    benchmark's protocol), for ``cfg["e2e_model"]`` at ``cfg["e2e_batch"]``, same precision."""
    import jax

    from benchmarks.child import run_combo
    from benchmarks.combo import Combo

    model, batch = cfg["e2e_model"], cfg["e2e_batch"]
    precision = "bf16" if jax.default_backend() != "cpu" else "fp32"
    loop = loop_rate("jax", dataset, data_dir, cfg["e2e_workers"], batch, cfg, model=model)
    resident = run_combo(Combo(model, "jax", precision, batch, input_size=128),
                         steps=cfg["e2e_steps"], warmup=2)  # fmt: skip
    return {"kind": "end_to_end", "backend": "jax", "batch_size": batch, "precision": precision,
            "workers": cfg["e2e_workers"], "model": model,
            "loop_samples_per_s": loop["samples_per_s"],
            "resident_samples_per_s": resident["train_samples_per_s"],
            "loop_over_resident": loop["samples_per_s"] / resident["train_samples_per_s"],
            }  # fmt: skip


def backend_rows(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Every row of one backend, in this process (the ``--child`` mode): ``input`` and
    ``loop`` rows, and with ``payload["end_to_end"]`` (JAX) the :func:`end_to_end` row."""
    from shared_data.dataset.opened import open_dataset

    cfg, backend = payload["cfg"], payload["backend"]
    if payload.get("build"):
        ensure_dataset(Path(payload["data_dir"]), payload["config"])
    opened = open_dataset(payload["data_dir"], payload["config"])
    source, tiled = (
        TiledSource(opened.source("train", stem=opened.stems[0]), cfg["clips"]),
        TiledDataset(opened, cfg["clips"]),
    )
    rows = []
    for batch in cfg["batches"]:
        for workers in cfg["workers"]:
            key = {"backend": backend, "batch_size": batch, "workers": workers}
            reads = input_rate(backend, source, workers, batch, cfg)
            rows.append({"kind": "input", **key, **reads})
            loop = loop_rate(backend, tiled, payload["data_dir"], workers, batch, cfg)
            rows.append({"kind": "loop", **key, **loop})
    if payload.get("end_to_end"):
        rows.append(end_to_end(tiled, payload["data_dir"], cfg))
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    """One table: clips/s into the device and the loop's samples/s, per backend, batch, workers."""
    lines = ["| backend | batch | workers | input clips/s | loop samples/s (null model) |",
             "|---|---:|---:|---:|---:|"]  # fmt: skip
    keys = sorted({(r["backend"], r["batch_size"], r["workers"]) for r in rows})
    for backend, batch, workers in keys:
        got = {r["kind"]: r for r in rows if (r["backend"], r["batch_size"], r["workers"])
               == (backend, batch, workers)}  # fmt: skip
        cells = [f"{got[k][f]:,.0f}" if k in got else "-"
                 for k, f in (("input", "clips_per_s"), ("loop", "samples_per_s"))]  # fmt: skip
        lines.append(f"| {backend} | {batch} | {workers} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def gpu_needs(per_worker_clips_s: float, peak_flops: float = 989e12) -> list[dict[str, Any]]:
    """For each model of ``benchmarks.gpu_check``: the samples/s one H100 (dense bf16 peak
    ``peak_flops``) trains at 30 % and 40 % of its peak, and the loader workers (cores) that
    takes at ``per_worker_clips_s`` clips/s each."""
    from benchmarks.flops import TRAIN_GFLOP_PER_SAMPLE

    out = []
    for model in TRAIN_GFLOP_PER_SAMPLE:
        rates = [f * peak_flops / (TRAIN_GFLOP_PER_SAMPLE[model] * 1e9) for f in (0.3, 0.4)]
        out.append({"model": model, "gflop_per_sample": TRAIN_GFLOP_PER_SAMPLE[model],
                    "samples_per_s": rates,
                    "workers": [r / per_worker_clips_s for r in rates]})  # fmt: skip
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=False, help="directory for input_pipeline.json")
    p.add_argument("--backends", default="jax,torch", help="comma-separated: jax,torch")
    p.add_argument("--workers", default=None, help="comma-separated worker counts (0,1,2,4)")
    p.add_argument("--batches", default=None, help="comma-separated batch sizes (64,256)")
    p.add_argument("--clips", type=int, default=None, help="records in the tiled index")
    p.add_argument("--seconds", type=float, default=None, help="timed seconds per input row")
    p.add_argument("--data_dir", type=Path, default=None, help="a built dataset's root")
    p.add_argument("--config", default="synthetic_small", help="its config")
    p.add_argument("--timeout_s", type=float, default=1800.0, help="per backend process")
    p.add_argument("--smoke", action="store_true", help="tiny sizes: every row kind, quickly")
    p.add_argument(
        "--end_to_end", action="store_true",
        help="add jax_impl.train's steady state against its device-resident step (resnet18 at "
        "batch 256; the null model at batch 8 with --smoke)",
    )  # fmt: skip
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return p


def config(args: argparse.Namespace) -> dict[str, Any]:
    """The run's sizes: ``--smoke`` or the full ones, with the flags' overrides."""
    cfg = dict(SMOKE if args.smoke else FULL)
    if args.workers:
        cfg["workers"] = tuple(int(w) for w in args.workers.split(","))
    if args.batches:
        cfg["batches"] = tuple(int(b) for b in args.batches.split(","))
    for key in ("clips", "seconds"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    return cfg


def run(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """Build or find the records, then every backend's rows in a fresh process each."""
    from benchmarks.hardware import environment

    cfg = config(args)
    data_dir = args.data_dir or args.out / "data"
    if args.data_dir is None:  # a --data_dir holds a dataset already built, of any config
        ensure_dataset(data_dir, args.config)
    doc: dict[str, Any] = {**environment(command), "settings": {**cfg, "config": args.config}}
    rows: list[dict[str, Any]] = []
    for backend in args.backends.split(","):
        payload = {"backend": backend, "cfg": cfg, "data_dir": str(data_dir), "config": args.config,
                   "end_to_end": args.end_to_end and backend == "jax"}  # fmt: skip
        rows += in_subprocess(payload, args.timeout_s, module="benchmarks.input_pipeline")["rows"]
    doc["rows"] = rows
    one = [r["clips_per_s"] for r in rows if r["kind"] == "input" and r["workers"] == 1
           and r["backend"] == "jax"]  # fmt: skip
    doc["gpu_needs"] = gpu_needs(max(one)) if one else []
    return doc


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.child is not None:
        rows = backend_rows(json.loads(args.child))
        print(RESULT_MARKER + json.dumps({"rows": rows}), flush=True)
        return 0
    if args.out is None:
        raise BenchmarkError("--out=DIR is required (where input_pipeline.json goes)")
    args.out.mkdir(parents=True, exist_ok=True)
    doc = run(args, " ".join([PROG, *(sys.argv[1:] if argv is None else argv)]))
    (args.out / "input_pipeline.json").write_text(json.dumps(doc, indent=2) + "\n")
    print(f"{doc['device']['cpu']}, {doc['device']['cpu_count']} CPUs\n\n{markdown(doc['rows'])}")
    return 0


if __name__ == "__main__":
    from shared_data.cli import run_main

    run_main(main)
