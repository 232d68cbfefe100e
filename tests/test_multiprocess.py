"""Two JAX processes on localhost train one run together, and resume together after a kill.

Every run here is ``python -m jax_impl.train`` with the documented multi-host flags
(``--coordinator_address=127.0.0.1:PORT --num_processes=2 --process_id=I``) and 2 fake CPU devices
per process (``XLA_FLAGS=--xla_force_host_platform_device_count=2``): 4 devices in one job, the
same count as the one-process reference with 4 fake devices. The model is the ``lstm`` (the
cheapest registered model) for one epoch of ``synthetic_small`` (fold 0: 48 training clips) at a
global batch of 16, 3 steps, with Mixup and SpecAugment on, so the random draws of every step are
exercised too. Few steps, because on the CPU each is slow across processes: XLA:CPU all-reduces
the LSTM's weight gradients inside the backward loop, once per time frame (128 per layer and
direction), and each of those goes through gloo over TCP.

Tolerance of the loss comparison: both layouts run the same global batch, the same draws (keyed by
seed, epoch and step, not by device) and the same reductions inside each device; what differs is how
the 4 per-device gradient partial sums are combined (gloo's cross-process all-reduce against XLA's
in-process one); each device holds 4 rows of every batch in both. Reassociating a sum of 4 fp32
terms moves it by at most ~3 ulp (2**-22 relative); after the optimizer steps of one epoch that
leaves the losses within 1e-5 relative (measured: 1e-7), far inside what a wrong shard (another
batch, a dropped process: differences of 1e-2 and more) gives.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from tests.support.import_blocker import REPO
from tests.support.tensorboard import scalars

FLAGS = [
    "--model=lstm",
    "--dataset=synthetic_small",
    "--fold=0",
    "--epochs=1",
    "--batch_size=16",
    "--log_every=1",
    "--checkpoint_every=1",
    "--no_progress",
]
TIMEOUT_S = 300
KILL_AT_STEP = 2  # after the mid-epoch checkpoint of step 1 is on disk, before the epoch ends (3)

# jax_impl.train's CLI, plus one step hook that SIGKILLs the process at step KILL_AT_STEP once
# the step-1 checkpoint is committed (orbax renames its directory only when every process has
# written its shards). A kill from outside would race the run: an epoch here takes seconds.
KILLER = """
import os, signal, sys, time
from pathlib import Path
from jax_impl import train
from shared_data.cli import run_main

at, saved = int(os.environ["KILL_AT_STEP"]), Path(os.environ["KILL_AFTER"])
cli_hooks = train.cli_hooks

def kill(info):
    if info.global_step == at:
        deadline = time.monotonic() + 120
        while not saved.is_dir() and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGKILL)

train.cli_hooks = lambda args, *, is_main: (*cli_hooks(args, is_main=is_main), kill)
run_main(train.main, sys.argv[1:])
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(devices: int, cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    # The three two-process runs compile the same steps: JAX's persistent compilation cache
    # compiles them once (it changes no number, only the start-up).
    env["JAX_COMPILATION_CACHE_DIR"] = str(cache)
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    return env


def _launch(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(argv, cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def _train(data_dir: Path, workdir: Path, *, processes: int, killer: bool = False) -> list[str]:
    """Run the CLI as ``processes`` processes (4 devices in all); their outputs, by process."""
    flags = [*FLAGS, f"--data_dir={data_dir}", f"--workdir={workdir}"]
    cache = workdir.parent / "xla_cache"
    if processes == 1:
        commands, env = [[sys.executable, "-m", "jax_impl.train", *flags]], _env(4, cache)
    else:
        port, env = _free_port(), _env(2, cache)
        head = [sys.executable, "-m", "jax_impl.train"]
        if killer:
            head = [sys.executable, "-c", KILLER]
            env |= {"KILL_AT_STEP": str(KILL_AT_STEP), "KILL_AFTER": str(workdir / "checkpoints/1")}
        commands = [
            [*head, *flags, f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
             f"--process_id={i}"]
            for i in range(processes)
        ]  # fmt: skip
    logs = [workdir.parent / f"{workdir.name}.process{i}.log" for i in range(len(commands))]
    procs = [_launch(c, env, log) for c, log in zip(commands, logs, strict=True)]
    deadline = time.monotonic() + TIMEOUT_S
    for p in procs:
        try:
            p.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail(f"training timed out after {TIMEOUT_S} s: " + logs[0].read_text()[-3000:])
    outputs = [log.read_text() for log in logs]
    want = -9 if killer else 0
    for i, (p, out) in enumerate(zip(procs, outputs, strict=True)):
        assert p.returncode == want, f"process {i} exited {p.returncode}:\n{out[-3000:]}"
    return outputs


def _final_params(workdir: Path) -> dict[str, np.ndarray]:
    """The latest checkpoint's parameters as ``{path: array}``, restored onto this process's one
    device (the checkpoint records the 4-device sharding it was written with)."""
    import orbax.checkpoint as ocp

    steps = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    path = workdir / "checkpoints" / str(steps[-1]) / "state"
    here = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    checkpointer = ocp.StandardCheckpointer()
    target = jax.tree.map(
        lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=here),
        checkpointer.metadata(path).item_metadata.tree,
    )
    flat = jax.tree_util.tree_flatten_with_path(checkpointer.restore(path, target)["params"])[0]
    return {jax.tree_util.keystr(k): np.asarray(v) for k, v in flat}


@pytest.fixture(scope="module")
def runs(ensemble_runs, tmp_path_factory) -> dict[str, Path | list[str]]:
    """The one-process reference, an uninterrupted two-process run, and a two-process run
    killed at step 2 then started again."""
    data_dir, root = ensemble_runs.data_dir(), tmp_path_factory.mktemp("multiprocess")
    out: dict[str, Path | list[str]] = {}
    for name, processes in (("one", 1), ("two", 2)):
        out[f"{name}_log"] = _train(data_dir, root / name, processes=processes)
        out[name] = root / name
    _train(data_dir, root / "resumed", processes=2, killer=True)
    out["killed_steps"] = sorted(p.name for p in (root / "resumed" / "checkpoints").iterdir())
    out["resumed_log"] = _train(data_dir, root / "resumed", processes=2)
    out["resumed"] = root / "resumed"
    return out


@pytest.mark.slow
def test_two_processes_take_the_steps_of_one_process_with_four_devices(runs):
    info = json.loads((runs["two"] / "recipe.json").read_text())["run"]
    assert (info["processes"], info["devices"]) == (2, 4)
    one, two = scalars(runs["one"], "train/loss"), scalars(runs["two"], "train/loss")
    assert sorted(one) == sorted(two) == [1, 2, 3]  # every step, logged once
    steps = sorted(one)
    np.testing.assert_allclose([two[s] for s in steps], [one[s] for s in steps], rtol=1e-5)


@pytest.mark.slow
def test_both_processes_write_checkpoint_shards_and_only_process_0_logs(runs):
    state = next((runs["two"] / "checkpoints").glob("[0-9]*")) / "state"
    shards = {p.name for p in state.rglob("ocdbt.process_*")}
    assert shards == {"ocdbt.process_0", "ocdbt.process_1"}, shards
    records = [
        json.loads(line) for line in (runs["two"] / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["epoch"] for r in records] == [0]  # one writer: no interleaved copies
    assert len(list((runs["two"] / "tensorboard").glob("events.out.tfevents.*"))) == 1
    log0, log1 = runs["two_log"]
    assert "epoch 1/1" in log0 and "epoch 1/1" not in log1


@pytest.mark.slow
def test_killed_processes_resume_to_the_parameters_of_an_uninterrupted_run(runs):
    # The kill left the mid-epoch checkpoint of step 1 and nothing later.
    assert [s for s in runs["killed_steps"] if s.isdigit()] == ["1"], runs["killed_steps"]
    assert "from step 1 (epoch 1, step 1)" in runs["resumed_log"][0]
    want, got = _final_params(runs["two"]), _final_params(runs["resumed"])
    assert sorted(got) == sorted(want)
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
