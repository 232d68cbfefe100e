"""Ensemble arithmetic and classification metrics: pure numpy functions both backends share.

Ensemble rule (the reference report's): the members' clip probabilities are summed and the label
with the largest sum wins. :func:`combine_members` returns the sum divided by the number of members
(the mean), which has the same argmax and stays a probability distribution, so the same numbers can
be printed as "probabilities" and compared across backends.

Song rule: a song's probabilities are the mean of its clips' probabilities (``"mean_prob"``, soft
voting; equivalently the sum of clip probabilities, renormalised). Why not the mean of clip
log-probabilities (``"mean_log_prob"``, a product of experts, also provided)?

- The features are the vocal stem: intros, solos and breaks give clips with little or no voice,
  whose predictions are noise. Under the log rule one such clip that puts ~0 probability on the
  true genre vetoes it for the whole song; under the mean it only costs its 1/n share.
- The clips of a song are not independent evidence (same singer, same mix), which is the
  assumption that makes summing log-probabilities the right posterior.
- It is linear, like the member rule: averaging over members and over clips commute, so the song
  prediction of an ensemble is the same whichever is aggregated first.

``evaluate`` reports the log rule's song accuracy beside the default for comparison.

Metric conventions: the confusion matrix has true labels on rows and predictions on columns; a
class with no predictions has precision 0 and one with no examples recall 0 (F1 is then 0), as
scikit-learn's ``zero_division=0``; macro averages are taken over classes with examples.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "SONG_RULES",
    "accuracy",
    "aggregate_songs",
    "classification_summary",
    "combine_members",
    "confusion_matrix",
    "group_songs",
    "per_class_metrics",
    "softmax",
    "song_labels",
    "top_k",
]

SONG_RULES: tuple[str, ...] = ("mean_prob", "mean_log_prob")
# Floor of the log rule: log(1e-12) keeps one near-zero clip finite without changing any
# probability a float32 model can tell apart from zero.
_LOG_FLOOR = 1e-12


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax of ``logits`` ``[..., C]`` -> float32 probabilities (same shape).

    Computed in float64 so that two backends' float32 logits map to probabilities that differ
    only by the logits' own difference.
    """
    x = np.asarray(logits, dtype=np.float64)
    x = x - x.max(axis=axis, keepdims=True)
    e = np.exp(x)
    return (e / e.sum(axis=axis, keepdims=True)).astype(np.float32)


def combine_members(member_probs: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """The ensemble's clip probabilities: the members' sum over ``M``, divided by ``M``.

    Args:
        member_probs: ``M`` arrays ``[N, C]`` (or one array ``[M, N, C]``) of probabilities.

    Returns:
        float32 ``[N, C]``; its argmax is the argmax of the plain sum (the reference report's rule).
    """
    stacked = np.asarray(member_probs, dtype=np.float64)
    if stacked.ndim != 3 or stacked.shape[0] == 0:
        raise ValueError(f"member_probs must be [M >= 1, N, C], got shape {stacked.shape}")
    return (stacked.sum(axis=0) / stacked.shape[0]).astype(np.float32)


def group_songs(song_ids: Sequence[str]) -> tuple[tuple[str, ...], np.ndarray]:
    """Songs in order of first appearance and, per clip, its song's index.

    Returns:
        ``(songs, index)``: ``songs`` the distinct ids, ``index`` int64 ``[N]`` with
        ``songs[index[i]] == song_ids[i]``.
    """
    order: dict[str, int] = {}
    index = np.empty(len(song_ids), dtype=np.int64)
    for i, song in enumerate(song_ids):
        index[i] = order.setdefault(song, len(order))
    return tuple(order), index


def aggregate_songs(
    clip_probs: np.ndarray, song_ids: Sequence[str], rule: str = "mean_prob"
) -> tuple[tuple[str, ...], np.ndarray]:
    """Per-song probabilities from clip probabilities (see the module docstring for the rules).

    Args:
        clip_probs: ``[N, C]`` probabilities.
        song_ids: ``N`` song ids (clips of one song need not be adjacent).
        rule: ``"mean_prob"`` (default) or ``"mean_log_prob"`` (renormalised geometric mean).

    Returns:
        ``(songs, probs)``: songs in first-appearance order, float32 ``[S, C]`` rows summing to 1.
    """
    if rule not in SONG_RULES:
        raise ValueError(f"unknown song rule {rule!r}; choose one of {SONG_RULES}")
    probs = np.asarray(clip_probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] != len(song_ids):
        raise ValueError(
            f"clip_probs must be [N, C] with N = {len(song_ids)} song ids, got {probs.shape}"
        )
    songs, index = group_songs(song_ids)
    counts = np.bincount(index, minlength=len(songs)).astype(np.float64)[:, None]
    values = probs if rule == "mean_prob" else np.log(np.maximum(probs, _LOG_FLOOR))
    sums = np.zeros((len(songs), probs.shape[1]), dtype=np.float64)
    np.add.at(sums, index, values)
    means = sums / counts
    if rule == "mean_log_prob":
        return songs, softmax(means)
    return songs, (means / means.sum(axis=1, keepdims=True)).astype(np.float32)


def song_labels(labels: np.ndarray, song_ids: Sequence[str]) -> np.ndarray:
    """The label of each song (order of :func:`group_songs`), int64 ``[S]``.

    Raises:
        ValueError: a song's clips carry different labels (a corrupt dataset).
    """
    labels = np.asarray(labels, dtype=np.int64)
    songs, index = group_songs(song_ids)
    out = np.full(len(songs), -1, dtype=np.int64)
    out[index] = labels
    if np.any(out[index] != labels):
        bad = songs[int(index[np.flatnonzero(out[index] != labels)[0]])]
        raise ValueError(f"the clips of song {bad!r} carry different labels")
    return out


def accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of ``predictions`` ``[N]`` equal to ``labels`` ``[N]`` (NaN when ``N == 0``)."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    if predictions.shape != labels.shape:
        raise ValueError(f"shape mismatch: {predictions.shape} vs {labels.shape}")
    return float(np.mean(predictions == labels)) if labels.size else float("nan")


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts int64 ``[C, C]``: row = true label, column = predicted label."""
    labels = np.asarray(labels, dtype=np.int64)
    predictions = np.asarray(predictions, dtype=np.int64)
    for name, values in (("labels", labels), ("predictions", predictions)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(
                f"{name} must be in [0, {num_classes}), got {values.min()}..{values.max()}"
            )
    flat = labels * num_classes + predictions
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def per_class_metrics(confusion: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall and F1 float64 ``[C]`` and support int64 ``[C]`` from a confusion matrix.

    Zero denominators give 0 (see the module docstring).
    """
    confusion = np.asarray(confusion, dtype=np.int64)
    tp = np.diag(confusion).astype(np.float64)
    predicted = confusion.sum(axis=0).astype(np.float64)
    support = confusion.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support}


def top_k(probs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most probable classes per row of ``probs`` ``[N, C]``, most probable first.

    Returns:
        ``(indices int64 [N, k'], values float32 [N, k'])`` with ``k' = min(k, C)``; ties keep the
        lower class index first.
    """
    probs = np.asarray(probs, dtype=np.float32)
    k = min(k, probs.shape[1])
    indices = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return indices.astype(np.int64), np.take_along_axis(probs, indices, axis=1)


def _level_summary(
    probs: np.ndarray, labels: np.ndarray, label_names: Sequence[str]
) -> dict[str, Any]:
    predictions = probs.argmax(axis=1)
    confusion = confusion_matrix(labels, predictions, len(label_names))
    metrics = per_class_metrics(confusion)
    present = metrics["support"] > 0
    return {
        "n": int(labels.size),
        "accuracy": accuracy(predictions, labels),
        "macro_f1": float(metrics["f1"][present].mean()) if present.any() else float("nan"),
        "per_class": {
            name: {
                "precision": float(metrics["precision"][c]),
                "recall": float(metrics["recall"][c]),
                "f1": float(metrics["f1"][c]),
                "support": int(metrics["support"][c]),
            }
            for c, name in enumerate(label_names)
        },
        "confusion": confusion.tolist(),
    }


def classification_summary(
    clip_probs: np.ndarray,
    labels: np.ndarray,
    song_ids: Sequence[str],
    label_names: Sequence[str],
    song_rule: str = "mean_prob",
) -> dict[str, Any]:
    """Clip- and song-level accuracy, per-class P/R/F1 and confusion matrices (JSON-able).

    Args:
        clip_probs: ``[N, C]`` probabilities; labels: int ``[N]``; song_ids: ``N`` ids;
        label_names: ``C`` names (index = label); song_rule: see :func:`aggregate_songs`.

    Returns:
        ``{"clip": {...}, "song": {...}, "song_rule": ..., "song_accuracy_by_rule": {rule: acc}}``
        where each level holds ``n``, ``accuracy``, ``macro_f1``, ``per_class`` and ``confusion``.
    """
    clip_probs = np.asarray(clip_probs, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64)
    songs, song_probs = aggregate_songs(clip_probs, song_ids, song_rule)
    per_song = song_labels(labels, song_ids)
    by_rule = {
        rule: accuracy(aggregate_songs(clip_probs, song_ids, rule)[1].argmax(axis=1), per_song)
        for rule in SONG_RULES
    }
    return {
        "clip": _level_summary(clip_probs, labels, label_names),
        "song": _level_summary(song_probs, per_song, label_names),
        "song_rule": song_rule,
        "song_accuracy_by_rule": by_rule,
        "label_names": list(label_names),
    }
