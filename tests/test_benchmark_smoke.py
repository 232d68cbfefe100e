"""The throughput benchmark end to end on the CPU at toy sizes, and its pure pieces.

The smoke run: resnet18 (the cheapest registered CNN) on 32x32 inputs, batch 2, two timed steps,
fp32, backends ``jax``, ``jax_nnxjit`` and ``torch``, with the frameworks' default threads (on a
busy machine torch's OpenMP threads spin and the run gets slower; ``--cpu_threads`` is checked
separately, cheaply).
``torch_compile`` is left out: inductor generates and compiles C++ for the forward and backward
graphs, which on 2 cores takes minutes, far beyond this file's share of the CI budget; the
benchmark runs it like any other backend where it is asked for. The run costs about 50 s of CPU
(four fresh interpreters, two XLA compilations of the train step).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import subprocess
import sys

import numpy as np
import pytest

from benchmarks import child, report, throughput
from benchmarks.combo import BenchmarkError, Combo, bench_recipe
from benchmarks.flops import dense_peak_flops, mfu, torch_flops
from benchmarks.timing import measure, percentile_ms

SMOKE_ARGS = [
    "--models=resnet18",
    "--input_size=32",
    "--batch_size=2",
    "--steps=2",
    "--warmup=1",
    "--backends=jax,jax_nnxjit,torch",
    "--precision=fp32",
    "--timeout_s=900",
]
NUMERIC_KEYS = (
    "train_samples_per_s",
    "infer_samples_per_s",
    "step_ms_median",
    "step_ms_p90",
    "compile_s",
    "infer_compile_s",
    "peak_mem_bytes",
    "flops_per_sample",
    "infer_flops_per_sample",
    "train_samples_per_cpu_s",
    "infer_samples_per_cpu_s",
)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    argv = [*SMOKE_ARGS, f"--out={out / 'r.json'}", f"--png={out / 'r.png'}"]
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        status = throughput.main(argv)
    doc = json.loads((out / "r.json").read_text())
    return {"status": status, "doc": doc, "stdout": stdout.getvalue(), "dir": out, "argv": argv}


@pytest.mark.slow
def test_smoke_record_follows_the_schema(smoke):
    doc = smoke["doc"]
    assert report.validate(doc) == []
    assert smoke["status"] == 0, doc.get("failures")
    assert doc["schema_version"] == throughput.SCHEMA_VERSION
    for key in ("device", "versions", "command", "date", "results", "ratios", "settings"):
        assert key in doc
    assert doc["command"] == "python -m benchmarks.throughput " + " ".join(smoke["argv"])
    assert doc["device"]["kind"] == "cpu" and doc["device"]["cpu_count"] >= 1
    assert doc["versions"]["jax"] and doc["versions"]["torch"] and doc["versions"]["flax"]
    assert doc["failures"] == [] and doc["preprocess"] is None
    assert sorted(r["backend"] for r in doc["results"]) == ["jax", "jax_nnxjit", "torch"]
    for row in doc["results"]:
        assert (row["model"], row["precision"], row["batch_size"]) == ("resnet18", "fp32", 2)
        for key in NUMERIC_KEYS:
            value = row[key]
            assert isinstance(value, int | float) and math.isfinite(value) and value > 0, key
        # A CPU has no dense-peak entry: MFU is null by design, never a made-up number.
        assert row["peak_flops"] is None and row["mfu"] is None
        assert row["peak_mem_kind"] == "host_peak_rss_delta"
        assert row["step_ms_p90"] >= row["step_ms_median"]
        assert len(row["first_losses"]) == 2 and all(map(math.isfinite, row["first_losses"]))
    assert report.validate(doc) == []


@pytest.mark.slow
def test_smoke_measures_the_same_step_in_every_backend(smoke):
    rows = {r["backend"]: r for r in smoke["doc"]["results"]}
    jax_row, nnx_row, torch_row = rows["jax"], rows["jax_nnxjit"], rows["torch"]
    # nnx.jit runs the functional step's maths: same init and draws give the same losses,
    # before and after one optimizer update.
    np.testing.assert_allclose(nnx_row["first_losses"], jax_row["first_losses"], rtol=1e-5)
    # Donation works: the step consumed its input state, and XLA did not warn that donated
    # buffers were unusable.
    for row in (jax_row, nnx_row):
        assert row["state_donated"] is True
        assert not [w for w in row["warnings"] if "donat" in w.lower()], row["warnings"]
    # The two FLOP counters see the same network: XLA (all ops) within 20% of torch (convs
    # and matmuls only), and a training step is about 3 forward passes (forward + 2x backward).
    ratio = jax_row["flops_per_sample"] / torch_row["flops_per_sample"]
    assert 0.8 < ratio < 1.2, ratio
    for row in (jax_row, torch_row):
        assert 2.5 < row["flops_per_sample"] / row["infer_flops_per_sample"] < 3.6


@pytest.mark.slow
def test_smoke_outputs_ratios_table_and_chart(smoke):
    doc, out = smoke["doc"], smoke["dir"]
    speeds = {r["backend"]: r["train_samples_per_s"] for r in doc["results"]}
    (entry,) = doc["ratios"]
    assert entry["model"] == "resnet18"
    assert entry["jax_over_torch"] == pytest.approx(speeds["jax"] / speeds["torch"])
    assert entry["nnxjit_over_jax"] == pytest.approx(speeds["jax_nnxjit"] / speeds["jax"])
    assert entry["jax_over_torch_compile"] is None  # not measured
    png = (out / "r.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000
    table = smoke["stdout"]
    for backend in ("jax", "jax_nnxjit", "torch"):
        assert f"| resnet18 | {backend} | fp32 | 2 |" in table


def test_bad_flags_are_user_errors():
    with pytest.raises(BenchmarkError, match="resnet18"):
        throughput.main(["--models=resnet19"])
    with pytest.raises(BenchmarkError, match="--backends"):
        throughput.main(["--backends=tensorflow"])
    with pytest.raises(BenchmarkError, match="--steps"):
        throughput.main(["--steps=0"])
    with pytest.raises(BenchmarkError, match="--batch_size"):
        throughput.main(["--batch_size=big"])


def _combos(*flags: str) -> list[Combo]:
    return throughput.combos_from_args(throughput.build_parser().parse_args(list(flags)))


def test_combinations_are_model_major_with_every_batch():
    combos = _combos(
        "--models=resnet18,densenet201", "--backends=jax,torch", "--precision=fp32",
        "--batch_size=256,64",
    )  # fmt: skip
    assert len(combos) == 8
    assert [(c.model, c.batch_size, c.backend) for c in combos[:4]] == [
        ("resnet18", 256, "jax"), ("resnet18", 256, "torch"),
        ("resnet18", 64, "jax"), ("resnet18", 64, "torch"),
    ]  # fmt: skip


def test_memory_efficient_marks_the_densenet_rows_only():
    combos = _combos(
        "--models=resnet18,densenet201", "--backends=jax", "--precision=bf16",
        "--memory_efficient",
    )  # fmt: skip
    assert [(c.label, c.memory_efficient) for c in combos] == [
        ("resnet18", False), ("densenet201[memory_efficient]", True),
    ]  # fmt: skip
    assert bench_recipe(combos[1]).model_kwargs() == {"memory_efficient": True}
    # A plain densenet201 row does not count as the memory-efficient one (--append).
    plain = Combo("densenet201", "jax", "bf16", 256)
    done = [{**plain.to_dict(), "model": plain.label}]
    assert throughput.pending([combos[1], plain], done) == [combos[1]]


def test_append_measures_only_missing_combinations(tmp_path):
    combos = [Combo("resnet18", b, "fp32", 8) for b in ("jax", "torch")] + [
        Combo("resnet18", "jax", "bf16", 8),
        Combo("resnet18", "jax", "fp32", 16),
    ]
    done = [combos[0].to_dict() | {"train_samples_per_s": 1.0}]
    assert throughput.pending(combos, done) == combos[1:]
    record = tmp_path / "r.json"
    record.write_text(json.dumps({"device": {"name": "NVIDIA H100 80GB HBM3"}, "results": done}))
    assert throughput.load_previous(record, {"name": "NVIDIA H100 80GB HBM3"})["results"] == done
    with pytest.raises(BenchmarkError, match="another --out"):
        throughput.load_previous(record, {"name": "cpu"})
    with pytest.raises(BenchmarkError, match="--append needs --out"):
        throughput.main(["--append"])


PEAK_WINDOW_CHILD = """
from benchmarks.hardware import host_peak_rss_bytes, reset_host_peak_rss
base = reset_host_peak_rss()
block = bytearray(64 * 2**20)
block[::4096] = b"1" * len(block[::4096])
print(host_peak_rss_bytes() - base)
"""


def test_a_child_measures_its_own_peak_under_a_larger_parent():
    # ru_maxrss survives fork+exec, so under a parent bigger than the child's whole run the
    # child's growth read 0; VmHWM restarts with the child's address space.
    ballast = bytearray(256 * 2**20)
    ballast[::4096] = b"1" * len(ballast[::4096])
    out = subprocess.run(
        [sys.executable, "-c", PEAK_WINDOW_CHILD], capture_output=True, text=True, check=True
    )
    del ballast
    assert 60 * 2**20 <= int(out.stdout) < 128 * 2**20


def test_cpu_threads_pin_the_child():
    probe = "import os; print(len(os.sched_getaffinity(0)), os.environ['OMP_NUM_THREADS'])"
    out = subprocess.run(
        [sys.executable, "-c", probe],
        env=child.child_env(1),
        preexec_fn=child.child_setup(1),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out == ["1", "1"]


def test_validate_flags_broken_rows():
    row = dict.fromkeys(report.RESULT_KEYS, 1.0) | {"model": "m", "backend": "jax", "mfu": None}
    doc = {"device": {}, "versions": {}, "command": "c", "date": "d", "results": [row]}
    assert report.validate(doc) == []
    assert report.validate(doc | {"results": [row | {"step_ms_p90": math.nan}]})
    assert report.validate(doc | {"results": [row | {"compile_s": -1.0}]})
    assert report.validate(doc | {"results": [row | {"mfu": 0.0}]})
    assert report.validate({"results": []}) != []


class _FakeWork:
    """Counts what the timing protocol calls; each step "takes" no time."""

    batch_size = 4

    def __init__(self):
        self.train, self.infer, self.syncs = [], [], 0

    def train_step(self, i):
        self.train.append(i)

    def infer_step(self, i):
        self.infer.append(i)

    def sync(self):
        self.syncs += 1


def test_measure_follows_the_protocol():
    work = _FakeWork()
    result = measure(work, steps=5, warmup=2)
    # compile step 0, warm-up 1-2, throughput pass 3-7 (one sync), latency pass 8-12 (a sync
    # each); inference: compile call, 2 warm-up, 5 timed (one sync).
    assert work.train == list(range(13))
    assert len(work.infer) == 1 + 2 + 5
    assert work.syncs == 1 + 2 + 1 + 5 + 1 + 2 + 1
    cpu_keys = {"train_samples_per_cpu_s", "infer_samples_per_cpu_s"}
    assert all(v > 0 and math.isfinite(v) for k, v in result.items() if k not in cpu_keys)
    assert percentile_ms([0.001, 0.002, 0.003], 50) == pytest.approx(2.0)


def test_torch_flops_counts_grouped_conv_gradients_per_group():
    import torch

    conv = torch.nn.Conv2d(8, 8, 3, padding=1, groups=4, bias=False)
    x = torch.randn(2, 8, 5, 5, requires_grad=True)
    # 2 FLOPs x batch x output pixels x out channels x (in channels per group) x kernel
    forward = 2 * 2 * 25 * 8 * (8 // 4) * 9
    assert torch_flops(lambda: conv(x)) == forward
    # backward: input gradient + weight gradient, each one forward's worth
    assert torch_flops(lambda: conv(x).sum().backward()) == 3 * forward


def test_peak_table_and_mfu():
    assert dense_peak_flops("NVIDIA H100 80GB HBM3", "bf16") == 989e12
    assert dense_peak_flops("NVIDIA H100 PCIe", "bf16") == 756e12
    assert dense_peak_flops("NVIDIA H200", "bf16") == 989e12
    assert dense_peak_flops("NVIDIA A100-SXM4-80GB", "bf16") == 312e12
    assert dense_peak_flops("cpu", "bf16") is None
    assert mfu(1e9, 1000.0, 2e12) == pytest.approx(0.5)
    assert mfu(None, 1000.0, 2e12) is None and mfu(1e9, 1000.0, None) is None


def test_conv_grad_profile_times_every_part_in_both_backends(tmp_path, capsys):
    from benchmarks import conv_grad

    out = tmp_path / "conv.json"
    args = ["--batch_size=2", "--size=16", "--channels=8", "--repeats=2", f"--out={out}"]
    assert conv_grad.main(args) == 0
    record = json.loads(out.read_text())
    assert record["gflop_per_part"] == pytest.approx(2 * 2 * 16 * 16 * 9 * 8 * 8 / 1e9)
    assert {(r["backend"], r["part"]) for r in record["rows"]} == {
        (b, p) for b in ("jax", "torch") for p in conv_grad.PARTS
    }
    for r in record["rows"]:
        assert r["seconds"] > 0 and math.isfinite(r["gflop_per_s"]) and r["gflop_per_s"] > 0
    table = capsys.readouterr().out
    assert all(f"| {p} |" in table for p in conv_grad.PARTS)
    with pytest.raises(SystemExit):
        conv_grad.main(["--channels=0"])
