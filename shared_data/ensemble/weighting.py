"""The reference report's learned ensemble weighting, judged against the plain sum on held-out
folds.

The reference report tried replacing the probability sum by a meta-model (one convolution over the
stacked member outputs, then batch normalisation) and found it overfit. This module is the
backend-free half of that experiment: the out-of-fold predictions it trains on and the
cross-validation that puts it beside the plain sum. The model and its trainer are
``jax_impl/weighting.py``.

Out-of-fold (OOF) predictions: with K-fold training, the run of fold k predicts the clips of fold
k, which it never saw; ``python -m jax_impl.evaluate --members=<fold-k run of each model>
--fold=k --out=DIR_k`` writes them (``predictions.npz``). The K files together give every clip a
prediction from a model that did not train on it. The members must be listed in the same order
(same model per position) in every file.

Cross-validation (:func:`cross_validate`): for each fold f the weighting is fitted on the OOF
predictions of the other folds and scored on fold f, beside the plain sum on fold f; its accuracy
on its own training folds is reported too, so a train/held-out gap (overfitting) shows.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shared_data.ensemble import core
from shared_data.ensemble.report import format_table
from shared_data.errors import DataError

__all__ = [
    "OOFPredictions",
    "cross_validate",
    "format_report",
    "load_predictions",
]


@dataclasses.dataclass(frozen=True)
class OOFPredictions:
    """Stacked member predictions of labelled clips.

    Attributes:
        member_probs: float32 ``[N, M, C]``; labels: int64 ``[N]``; folds: int64 ``[N]``;
        song_ids: ``N`` strings; member_names: ``M`` names; label_names: ``C`` names.
    """

    member_probs: np.ndarray
    labels: np.ndarray
    folds: np.ndarray
    song_ids: tuple[str, ...]
    member_names: tuple[str, ...]
    label_names: tuple[str, ...]


def load_predictions(paths: Sequence[str | os.PathLike[str]]) -> OOFPredictions:
    """Concatenate ``predictions.npz`` files written by ``<backend>.evaluate``.

    Raises:
        DataError: a file is missing or unreadable, or the files disagree on the members' models
            or the label names, or a clip is unlabelled.
    """
    if not paths:
        raise DataError("no predictions given; pass --predictions=FILE[,FILE...]")
    parts = []
    for path in paths:
        try:
            with np.load(Path(path), allow_pickle=False) as data:
                parts.append({k: data[k] for k in data.files})
        except (OSError, ValueError) as err:
            raise DataError(
                f"cannot read predictions {path}: {err}; write them with python -m "
                "jax_impl.evaluate --out=DIR (DIR/predictions.npz)"
            ) from err
    first = parts[0]
    for path, part in zip(paths[1:], parts[1:], strict=True):
        for key in ("member_names", "label_names"):
            if list(part[key]) != list(first[key]):
                raise DataError(
                    f"{path} has {key} {list(part[key])} but {paths[0]} has {list(first[key])}; "
                    "list the same models in the same order for every fold"
                )
    labels = np.concatenate([p["labels"] for p in parts]).astype(np.int64)
    if np.any(labels < 0):
        raise DataError("the predictions hold unlabelled clips; weighting needs labels")
    return OOFPredictions(
        member_probs=np.concatenate([p["member_probs"].transpose(1, 0, 2) for p in parts]),
        labels=labels,
        folds=np.concatenate([p["folds"] for p in parts]).astype(np.int64),
        song_ids=tuple(str(s) for p in parts for s in p["song_ids"]),
        member_names=tuple(str(s) for s in first["member_names"]),
        label_names=tuple(str(s) for s in first["label_names"]),
    )


def _scores(probs: np.ndarray, labels: np.ndarray, song_ids: Sequence[str]) -> dict[str, float]:
    _, song_probs = core.aggregate_songs(probs, song_ids)
    return {
        "clip_accuracy": core.accuracy(probs.argmax(1), labels),
        "song_accuracy": core.accuracy(song_probs.argmax(1), core.song_labels(labels, song_ids)),
    }


def cross_validate(
    oof: OOFPredictions,
    fit: Callable[[np.ndarray, np.ndarray], Any],
    apply: Callable[[Any, np.ndarray], np.ndarray],
) -> dict[str, Any]:
    """Learned weighting vs plain sum, fold by fold.

    Args:
        oof: the stacked predictions. fit: ``(member_probs [n, M, C], labels [n]) -> model``.
        apply: ``(model, member_probs [n, M, C]) -> probabilities [n, C]``.

    Returns:
        ``{"folds": [{"fold", "n_clips", "plain": scores, "learned": scores,
        "learned_train": scores}, ...], "mean": {"plain": ..., "learned": ...,
        "learned_train": ...}, "members": ...}`` where scores are clip and song accuracy; the
        means weight every fold by its clips (clip accuracy) and songs (song accuracy) alike,
        i.e. they are the pooled accuracies over all held-out predictions.
    """
    folds = sorted(set(oof.folds.tolist()))
    if len(folds) < 2:
        raise DataError(
            f"the predictions cover only fold(s) {folds}; cross-validation needs at least two"
        )
    rows = []
    pooled: dict[str, list[np.ndarray]] = {"plain": [], "learned": []}
    for f in folds:
        test, train = oof.folds == f, oof.folds != f
        songs_test = [s for s, t in zip(oof.song_ids, test, strict=True) if t]
        songs_train = [s for s, t in zip(oof.song_ids, train, strict=True) if t]
        model = fit(oof.member_probs[train], oof.labels[train])
        plain = core.combine_members(oof.member_probs[test].transpose(1, 0, 2))
        learned = apply(model, oof.member_probs[test])
        pooled["plain"].append(plain)
        pooled["learned"].append(learned)
        rows.append(
            {
                "fold": f,
                "n_clips": int(test.sum()),
                "plain": _scores(plain, oof.labels[test], songs_test),
                "learned": _scores(learned, oof.labels[test], songs_test),
                "learned_train": _scores(
                    apply(model, oof.member_probs[train]), oof.labels[train], songs_train
                ),
            }
        )
    order = np.concatenate([np.flatnonzero(oof.folds == f) for f in folds])
    labels, songs = oof.labels[order], [oof.song_ids[i] for i in order]
    mean = {k: _scores(np.concatenate(v), labels, songs) for k, v in pooled.items()}
    mean["learned_train"] = {
        key: float(np.mean([r["learned_train"][key] for r in rows]))
        for key in ("clip_accuracy", "song_accuracy")
    }
    return {"folds": rows, "mean": mean, "members": list(oof.member_names)}


def format_report(report: dict[str, Any]) -> str:
    """The cross-validation as a table: one row per held-out fold, then the pooled result."""
    table = []
    for r in report["folds"]:
        table.append(
            (
                str(r["fold"]),
                r["n_clips"],
                r["plain"]["clip_accuracy"],
                r["learned"]["clip_accuracy"],
                r["learned_train"]["clip_accuracy"],
                r["plain"]["song_accuracy"],
                r["learned"]["song_accuracy"],
            )
        )
    m = report["mean"]
    table.append(
        (
            "all",
            sum(r["n_clips"] for r in report["folds"]),
            m["plain"]["clip_accuracy"],
            m["learned"]["clip_accuracy"],
            m["learned_train"]["clip_accuracy"],
            m["plain"]["song_accuracy"],
            m["learned"]["song_accuracy"],
        )
    )
    header = (
        "held-out fold",
        "clips",
        "sum clip_acc",
        "learned clip_acc",
        "learned train clip_acc",
        "sum song_acc",
        "learned song_acc",
    )
    return format_table(header, table)
