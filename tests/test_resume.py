"""Exact resume: a JAX run killed with SIGKILL in the middle of an epoch, then resumed, ends with
parameters (and optimizer state, BatchNorm statistics, metrics) bit-identical to an uninterrupted
run with the same seed, on the CPU; the killed and resumed runs read with two worker processes, the
reference with none.

Three real processes of ``python -m jax_impl.train``'s ``main``: the uninterrupted reference; a
run that is SIGKILLed after its first mid-epoch checkpoint (``--checkpoint_every=2``) and one
more, unsaved, step; and the same command again, which resumes. The killed process is made to
stop at a known point by a small wrapper (it hangs instead of fetching its next batch), so the kill
lands mid-epoch every time, not at a time that depends on the machine's speed. The processes share
a JAX compilation cache directory, which only saves compile time: a cached executable is the one
the same program compiles to.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from jax_impl.checkpoint import Checkpoints
from tests.support.tiny_runs import tiny_flags

REPO = Path(__file__).resolve().parent.parent

CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path


    def child():
        mode, ready, argv = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
        if mode == "hang":
            from jax_impl import checkpoint as ckpt_lib
            from jax_impl import data as data_lib

            real_save, real_to_device = ckpt_lib.Checkpoints.save, data_lib.to_device
            armed = {"left": None}

            def save(self, step, state, meta, *, val_acc=None):
                real_save(self, step, state, meta, val_acc=val_acc)
                if meta["next_step"] > 0 and armed["left"] is None:  # first mid-epoch checkpoint
                    armed["left"] = 1  # train one more step (not saved), then hang
                    ready.write_text(str(step))

            def to_device(batches, sharding, **kwargs):
                for batch in real_to_device(batches, sharding, **kwargs):
                    if armed["left"] == 0:
                        time.sleep(3600)  # the test SIGKILLs the process here
                    if armed["left"] is not None:
                        armed["left"] -= 1
                    yield batch

            ckpt_lib.Checkpoints.save = save
            data_lib.to_device = to_device

        from jax_impl.train import main

        main(argv)


    if __name__ == "__main__":  # grain's spawned workers import this file too
        child()
    """
)


@pytest.fixture
def tiny(jax_tiny) -> dict:
    return jax_tiny


def _start(script: Path, mode: str, ready: Path, flags: list[str], cache: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "JAX_PLATFORMS": "cpu",
        "JAX_COMPILATION_CACHE_DIR": str(cache),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }
    return subprocess.Popen(
        [sys.executable, str(script), mode, str(ready), *flags, "--no_progress"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    return out


def _state(workdir: Path, step: int) -> dict:
    path = workdir / "checkpoints" / str(step) / "state"
    return ocp.StandardCheckpointer().restore(path.absolute())


def _metrics(workdir: Path) -> list[dict]:
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k != "time_s"} for x in lines]


def test_sigkill_mid_epoch_then_resume_is_bit_identical(tiny, tmp_path):
    script, cache = tmp_path / "child.py", tmp_path / "jax_cache"
    script.write_text(CHILD)
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    ready = tmp_path / "ready"

    _finish(_start(script, "plain", ready, tiny_flags(tiny, reference, num_workers=0), cache))

    # The killed and resumed runs read with 2 worker processes, the reference with none.
    workers = tiny_flags(tiny, killed, num_workers=2)
    proc = _start(script, "hang", ready, workers, cache)
    deadline = time.monotonic() + 600
    while not ready.exists():
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, "no mid-epoch checkpoint was written"
        time.sleep(0.05)
    time.sleep(1.0)  # let it train its unsaved step and reach the hang
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL

    ckpts = Checkpoints(killed)
    step = ckpts.latest_step()
    meta = ckpts.read_meta(step)
    ckpts.close()
    assert step == int(ready.read_text()) == 2  # nothing was saved after the kill point
    assert (meta["next_epoch"], meta["next_step"]) == (0, 2)  # in the middle of epoch 1
    assert not (killed / "metrics.jsonl").read_text().strip()  # no epoch had finished

    out = _finish(_start(script, "plain", ready, workers, cache))
    assert "resuming" in out and "from step 2" in out

    final = 2 * tiny["steps"]
    a, b = _state(reference, final), _state(killed, final)
    assert jax.tree.structure(a) == jax.tree.structure(b)
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(leaves_a) > 10
    for x, y in zip(leaves_a, leaves_b, strict=True):
        assert x.dtype == y.dtype and np.array_equal(x, y), "resumed run differs"
    assert _metrics(killed) == _metrics(reference)
