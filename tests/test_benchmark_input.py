"""``benchmarks.input_pipeline --smoke --end_to_end``: every row kind of both backends on the CPU.

Two fresh interpreters (one per backend) read a 60-clip dataset built without separation with a
loader worker, train the null model through each backend's ``train_and_evaluate``, and (JAX)
compare that loop with the model's device-resident step. About a minute.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from benchmarks.input_pipeline import gpu_needs, markdown
from tests.support.import_blocker import REPO


@pytest.fixture(scope="module")
def smoke(tmp_path_factory, jax_tiny):
    out = tmp_path_factory.mktemp("input_pipeline")
    data = [f"--data_dir={jax_tiny['data_dir']}", f"--config={jax_tiny['config']}"]
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.input_pipeline", "--smoke", "--end_to_end",
         f"--out={out}", *data],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"proc": proc, "doc": json.loads((out / "input_pipeline.json").read_text())}


def test_every_backend_and_worker_count_has_both_rows(smoke):
    rows = smoke["doc"]["rows"]
    keys = {(r["kind"], r["backend"], r["workers"]) for r in rows if r["kind"] != "end_to_end"}
    assert keys == {(k, b, 1) for k in ("input", "loop") for b in ("jax", "torch")}
    for r in rows:
        if r["kind"] == "input":
            assert (
                r["batches_timed"] >= 1 and math.isfinite(r["clips_per_s"]) and r["clips_per_s"] > 0
            )
        elif r["kind"] == "loop":
            assert r["model"] == "null" and r["steps_timed"] > 0 and r["samples_per_s"] > 0
    out = smoke["proc"].stdout
    assert f"{smoke['doc']['device']['cpu']}, " in out and "| jax | 8 | 1 |" in out


def test_the_end_to_end_row_compares_the_loop_with_the_resident_step(smoke):
    (row,) = [r for r in smoke["doc"]["rows"] if r["kind"] == "end_to_end"]
    assert (row["model"], row["batch_size"], row["precision"]) == ("null", 8, "fp32")
    assert row["loop_over_resident"] == pytest.approx(
        row["loop_samples_per_s"] / row["resident_samples_per_s"]
    )


def test_gpu_needs_scale_with_the_model_cost():
    needs = {n["model"]: n for n in gpu_needs(per_worker_clips_s=10_000.0)}
    # resnet18: 52 GFLOP per sample; 30 % of 989 TFLOP/s is 5,706 samples/s, 0.57 workers.
    assert needs["resnet18"]["samples_per_s"][0] == pytest.approx(0.3 * 989e12 / 52e9)
    assert needs["resnet18"]["workers"][0] == pytest.approx(0.3 * 989e12 / 52e9 / 10_000)
    assert needs["densenet201"]["samples_per_s"][1] < needs["resnet18"]["samples_per_s"][1]


def test_the_table_has_one_line_per_backend_batch_and_workers():
    rows = [
        {"kind": "input", "backend": "jax", "batch_size": 64, "workers": 0, "clips_per_s": 1234.4},
        {"kind": "loop", "backend": "jax", "batch_size": 64, "workers": 0, "samples_per_s": 99.6},
        {"kind": "input", "backend": "torch", "batch_size": 64, "workers": 2, "clips_per_s": 10.0},
    ]
    lines = markdown(rows).splitlines()
    assert lines[2:] == ["| jax | 64 | 0 | 1,234 | 100 |", "| torch | 64 | 2 | 10 | - |"]
