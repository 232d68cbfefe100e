"""Ensemble members: what a run directory says about its model and the data it expects.

A member is one training run directory (``jax_impl.train`` or ``torch_ref.train``): its
``recipe.json`` (:mod:`shared_data.training.runinfo`) gives the backend, the model and the dataset;
the dataset's build metadata gives the label names, the feature definition, the separator and,
for the stem the run trained on, the mel mean/std the model was trained to see. That data
description is read, in order, from

1. ``recipe.json["run"]["dataset"]`` (:func:`dataset_record`, written by the training CLIs when
   they record it), so a run stays usable after its dataset is moved or deleted;
2. otherwise the dataset itself, opened at the recipe's ``data_dir``/``dataset``.

Members of one ensemble must agree on the label names (same order), the feature parameters and
the separator: their clip probabilities are only comparable, and one separation of a song only
serves all of them, if so. :func:`check_compatible` refuses anything else, naming the field and
the members that differ. Their stems may differ (a stem ensemble: each member reads its own stem
of the same records or of the same separation), and so may the mel mean/std (each member
normalises its own input).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from shared_data.backends import TRAINING_BACKENDS
from shared_data.dataset.features import FeatureParams
from shared_data.errors import DataError

__all__ = [
    "DATASET_KEY",
    "MemberError",
    "MemberInfo",
    "check_compatible",
    "dataset_record",
    "parse_members_flag",
    "read_member",
    "read_members",
]

RECIPE_FILE = (
    "recipe.json"  # shared_data.training.runinfo.RECIPE_FILE; repeated to keep this import-light
)
#: Key under ``recipe.json["run"]`` holding :func:`dataset_record` of the training data.
DATASET_KEY = "dataset"
_COMPARED = ("label_names", "feature_params", "separator")


class MemberError(DataError):
    """A run directory that cannot be an ensemble member, or members that do not fit together."""


@dataclasses.dataclass(frozen=True)
class MemberInfo:
    """One member's identity and the input it expects.

    Attributes:
        run_dir: the run directory.
        backend: ``"jax"`` or ``"torch"`` (the backend that trained it).
        model: registered model name; in_chans: input channels (1: one log-mel).
        label_names: class names, index = label (``num_classes`` = their number).
        feature_params: the feature definition of its training data.
        separator, stem: how its training songs were separated and which stem was kept.
        mel_mean, mel_std: its input normalisation ``(mel - mean) / std``.
        dataset, data_dir, fold, folds: where it was trained and which fold it held out.
        recipe: the whole resolved recipe dict.
    """

    run_dir: Path
    backend: str
    model: str
    label_names: tuple[str, ...]
    feature_params: FeatureParams
    separator: str
    stem: str
    mel_mean: float
    mel_std: float
    dataset: str
    data_dir: str | None
    fold: int
    folds: int
    in_chans: int = 1
    recipe: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False)

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    @property
    def name(self) -> str:
        """A short label for tables: ``<backend>:<model>@<run dir name>``."""
        return f"{self.backend}:{self.model}@{self.run_dir.name}"


def dataset_record(dataset: Any, stem: str) -> dict[str, Any]:
    """What a run trained on ``stem`` needs to remember of its dataset (an ``OpenedDataset``),
    JSON-able: the stem and its mel statistics among the rest.

    Training CLIs store it as ``write_run_info(..., extra={DATASET_KEY: record})``.
    """
    meta = dataset.metadata
    mean, std = dataset.mel_stats(stem)
    return {
        "config": dataset.config,
        "path": os.fspath(dataset.path),
        "label_names": list(dataset.label_names),
        "mel_mean": mean,
        "mel_std": std,
        "separator": meta["separator"],
        "stem": stem,
        "feature_params": dict(meta["feature_params"]),
        "folds": int(meta.get("folds", 5)),
    }


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise MemberError(
            f"{path.parent} is not a training run directory: it has no {path.name}; pass the "
            "--workdir of a jax_impl.train or torch_ref.train run"
        ) from None
    except (OSError, json.JSONDecodeError) as err:
        raise MemberError(f"cannot read {path}: {err}") from err


def _dataset_of(run_dir: Path, recipe: Mapping[str, Any], run: Mapping[str, Any]) -> dict:
    stored = run.get(DATASET_KEY)
    if isinstance(stored, Mapping) and "label_names" in stored:
        return dict(stored)
    from shared_data.dataset.opened import open_dataset  # TFDS import only on this fallback path

    try:
        from shared_data.dataset.stems import resolve_stem

        opened = open_dataset(recipe.get("data_dir"), recipe["dataset"])
        return dataset_record(opened, resolve_stem(recipe.get("stem"), opened.stems))
    except DataError as err:
        raise MemberError(
            f"run {run_dir} does not record its dataset and the dataset cannot be opened: {err}"
        ) from err


def read_member(run_dir: str | os.PathLike[str]) -> MemberInfo:
    """Read one run directory's :class:`MemberInfo`.

    Raises:
        MemberError: no or unreadable ``recipe.json``, an unknown backend, or no way to learn the
            dataset's description.
    """
    path = Path(run_dir).expanduser()
    if not path.is_dir():
        raise MemberError(f"member {path} does not exist (or is not a directory)")
    info = _read_json(path / RECIPE_FILE)
    recipe, run = info.get("recipe"), info.get("run", {})
    if not isinstance(recipe, Mapping) or "model" not in recipe:
        raise MemberError(
            f"{path / RECIPE_FILE} holds no recipe; was it written by a training run?"
        )
    backend = run.get("backend")
    if backend not in TRAINING_BACKENDS:
        raise MemberError(
            f"{path / RECIPE_FILE}: unknown backend {backend!r} "
            f"(expected one of {TRAINING_BACKENDS})"
        )
    data = _dataset_of(path, recipe, run)
    try:
        params = FeatureParams.from_dict(data["feature_params"])
    except DataError as err:
        raise MemberError(f"member {path}: {err}") from err
    _check_dataset_record(path / RECIPE_FILE, data)
    return MemberInfo(
        run_dir=path,
        backend=backend,
        model=str(recipe["model"]),
        label_names=tuple(data["label_names"]),
        feature_params=params,
        separator=str(data["separator"]),
        stem=str(data["stem"]),
        mel_mean=float(data["mel_mean"]),
        mel_std=float(data["mel_std"]),
        dataset=str(recipe.get("dataset", data.get("config", "?"))),
        data_dir=recipe.get("data_dir"),
        fold=int(recipe.get("fold", 0)),
        folds=int(recipe.get("folds", data.get("folds", 5))),
        in_chans=int(recipe.get("in_chans", 1)),
        recipe=dict(recipe),
    )


def _check_dataset_record(where: Path, data: Mapping[str, Any]) -> None:
    """Refuse a dataset record that would make predictions meaningless (NaN probabilities from a
    zero or non-finite ``mel_std``, no classes, a field of the wrong type), naming the field."""

    def bad(field: str, why: str) -> MemberError:
        return MemberError(
            f"{where}: {field} {why} (got {data.get(field)!r}); the file is damaged: retrain, or "
            "copy recipe.json back from the run that wrote it"
        )

    labels = data.get("label_names")
    if not isinstance(labels, list | tuple) or not labels:
        raise bad("label_names", "must be a non-empty list of class names")
    if not all(isinstance(x, str) for x in labels):
        raise bad("label_names", "must hold strings")
    for field in ("mel_mean", "mel_std"):
        value = data.get(field)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise bad(field, "must be a finite number")
    if data["mel_std"] <= 0:
        raise bad("mel_std", "must be positive")
    for field in ("separator", "stem"):
        if not isinstance(data.get(field), str):
            raise bad(field, "must be a string")


def _describe(field: str, value: Any) -> str:
    if field == "feature_params":
        return "{" + ", ".join(f"{k}={v!r}" for k, v in value.to_dict().items()) + "}"
    return repr(list(value) if isinstance(value, tuple) else value)


def _feature_diff(a: FeatureParams, b: FeatureParams) -> str:
    da, db = a.to_dict(), b.to_dict()
    return ", ".join(f"{k}: {da[k]!r} vs {db[k]!r}" for k in da if da[k] != db[k])


def check_compatible(members: Sequence[MemberInfo]) -> None:
    """Refuse members that disagree on label names, feature parameters or separator.

    Raises:
        MemberError: no members, or a mismatch; the message names the field, the differing values
            and the run directories holding each.
    """
    if not members:
        raise MemberError("no ensemble members given; pass --members=DIR[,DIR...]")
    first = members[0]
    for other in members[1:]:
        for field in _COMPARED:
            a, b = getattr(first, field), getattr(other, field)
            if a == b:
                continue
            if field == "feature_params":
                detail = _feature_diff(a, b)
            else:
                detail = f"{_describe(field, a)} vs {_describe(field, b)}"
            raise MemberError(
                f"ensemble members disagree on {field.replace('_', ' ')}: {first.run_dir} and "
                f"{other.run_dir} differ ({detail}); every member must be trained on data with the "
                "same labels, feature parameters and separator"
            )


def parse_members_flag(text: str) -> list[Path]:
    """``"runs/a,runs/b"`` -> paths; raises :class:`MemberError` on an empty list."""
    paths = [Path(p.strip()).expanduser() for p in text.split(",") if p.strip()]
    if not paths:
        raise MemberError("--members is empty; pass --members=DIR[,DIR...] (training run dirs)")
    return paths


def read_members(run_dirs: Sequence[str | os.PathLike[str]]) -> list[MemberInfo]:
    """:func:`read_member` of each directory, then :func:`check_compatible`."""
    members = [read_member(d) for d in run_dirs]
    check_compatible(members)
    return members
