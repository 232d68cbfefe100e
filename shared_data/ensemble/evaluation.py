"""Running an ensemble over a dataset split, whichever backend computes each member.

A backend turns each member into a :class:`Predictor` (``jax_impl.ensemble.load_member`` /
``torch_ref.ensemble.load_member``); everything here works on those and on numpy arrays, so the
two backends' evaluations are one code path.

API::

    clips = select_clips(dataset, split="train", fold=k)        # which records to evaluate
    result = run_ensemble(predictors, dataset.source(split), clips.indices)
    result.member_probs  # float32 [M, N, C];  result.probs  # plain sum [N, C]
    result.present       # bool [M, N]: member's stem present;  result.presence_probs  # [N, C]
    summary = evaluate_predictions(result, clips, members)      # members + both fusions

Each member reads its own stem of the records (``mel_<stem>``); the presence-aware fusion is
:mod:`shared_data.ensemble.fusion`'s.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from shared_data.ensemble import core, fusion
from shared_data.ensemble.members import MemberError, MemberInfo
from shared_data.errors import DataError

__all__ = [
    "CHECKPOINTS",
    "ROUTES",
    "EnsembleResult",
    "Predictor",
    "SelectedClips",
    "dataset_fold",
    "default_fold",
    "evaluate_predictions",
    "normalise",
    "predict_members",
    "run_ensemble",
    "select_clips",
]

#: How a member trained by the other backend is run: its weights converted into this backend
#: (``convert``) or its own backend's model (``native``).
ROUTES: tuple[str, ...] = ("convert", "native")
#: Which checkpoint of a run: the best-validation one (the reference report's choice) or the latest.
CHECKPOINTS: tuple[str, ...] = ("best", "latest")
#: Clips per forward pass of a member.
DEFAULT_BATCH = 64
# Records read (and predicted) at a time: bounds memory on large splits (256 clips = 16 MB).
_CHUNK = 256
ALL_FOLDS = "all"


@runtime_checkable
class Predictor(Protocol):
    """One loaded member.

    Attributes:
        info: the member's :class:`MemberInfo`.
        runs_on: the backend computing it (``"jax"`` or ``"torch"``).
        how: ``"native"``, or ``"converted from <backend>"``.
    """

    info: MemberInfo
    runs_on: str
    how: str

    def logits(self, mels: np.ndarray) -> np.ndarray:
        """Normalised mels float32 ``[N, n_mels, frames]`` -> logits float32 ``[N, C]``."""
        ...


def normalise(mels: np.ndarray, info: MemberInfo) -> np.ndarray:
    """``(mel - mean) * (1 / std)`` in float32, exactly as both training pipelines compute it."""
    mels = np.asarray(mels, dtype=np.float32)
    return (mels - np.float32(info.mel_mean)) * np.float32(1.0 / info.mel_std)


def predict_members(
    predictors: Sequence[Predictor], mels: np.ndarray | Mapping[str, np.ndarray]
) -> np.ndarray:
    """Every member's clip probabilities for raw (unnormalised) mels ``[N, n_mels, frames]``:
    one array for every member, or ``{stem: array}`` from which each member takes its stem's.

    Returns:
        float32 ``[M, N, C]`` (softmax of each member's logits, computed in float64).
    """
    out = []
    for p in predictors:
        x = mels[p.info.stem] if isinstance(mels, Mapping) else mels
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 3:
            raise ValueError(f"mels must be [N, n_mels, frames], got shape {x.shape}")
        out.append(core.softmax(p.logits(normalise(x, p.info))))
    return np.stack(out)


@dataclasses.dataclass(frozen=True)
class SelectedClips:
    """The records an evaluation reads.

    Attributes:
        split: dataset split; fold: the held-out fold evaluated, or None for every clip.
        indices: int64 record positions; labels: int64 ``[N]`` (-1: unlabelled); song_ids:
        ``N`` strings; clip_index: int64 ``[N]``; folds: int64 ``[N]``, each clip's fold.
    """

    split: str
    fold: int | None
    indices: np.ndarray
    labels: np.ndarray
    song_ids: tuple[str, ...]
    clip_index: np.ndarray
    folds: np.ndarray

    def __len__(self) -> int:
        return int(self.indices.size)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def select_clips(dataset: Any, split: str = "train", fold: int | None = None) -> SelectedClips:
    """The clips of ``split`` (an ``OpenedDataset``'s) whose fold is ``fold`` (None: all).

    Raises:
        DataError: no such split, or no clip in that fold.
    """
    source = dataset.source(split)
    indices, labels, songs, clip_index, folds = [], [], [], [], []
    for i in range(len(source)):
        record = source[i]
        if fold is not None and int(record["fold"]) != fold:
            continue
        indices.append(i)
        labels.append(int(record["label"]))
        songs.append(_text(record["song_id"]))
        clip_index.append(int(record["clip_index"]))
        folds.append(int(record["fold"]))
    if not indices:
        where = f"fold {fold} of " if fold is not None else ""
        raise DataError(
            f"{where}split {split!r} of dataset {dataset.path} holds no clips; choose another "
            "--fold (or --fold=all)"
        )
    return SelectedClips(
        split=split,
        fold=fold,
        indices=np.asarray(indices, np.int64),
        labels=np.asarray(labels, np.int64),
        song_ids=tuple(songs),
        clip_index=np.asarray(clip_index, np.int64),
        folds=np.asarray(folds, np.int64),
    )


def default_fold(members: Sequence[MemberInfo], flag: str | None) -> int | None:
    """The fold to evaluate: ``--fold`` if given (``all`` -> None), else the members' shared
    validation fold (the only clips none of them trained on).

    Raises:
        MemberError: no ``--fold`` and the members held out different folds.
    """
    if flag is not None:
        if flag == ALL_FOLDS:
            return None
        try:
            return int(flag)
        except ValueError:
            raise DataError(f"--fold must be an integer or {ALL_FOLDS!r}, got {flag!r}") from None
    folds = sorted({m.fold for m in members})
    if len(folds) == 1:
        return folds[0]
    raise MemberError(
        f"the members held out different folds {folds}, so no fold is unseen by all of them; "
        f"pass --fold=k (or --fold={ALL_FOLDS}) explicitly"
    )


def dataset_fold(dataset: Any, members: Sequence[MemberInfo], flag: str | None) -> int | None:
    """:func:`default_fold`, except for a dataset with fixed splits (a ``validation`` split, e.g.
    GTZAN's fault-filtered one): it has no folds, so every clip of the split is evaluated.

    Raises:
        DataError: ``--fold=k`` on a dataset with fixed splits.
    """
    from shared_data.dataset.split_source import has_fixed_splits

    if not has_fixed_splits(dataset):
        return default_fold(members, flag)
    if flag not in (None, ALL_FOLDS):
        raise DataError(
            f"dataset {dataset.path} has fixed train/validation/test splits and no folds, so "
            f"--fold={flag} does not apply; drop it (--split=test scores the test split)"
        )
    return None


@dataclasses.dataclass(frozen=True)
class EnsembleResult:
    """Probabilities of every member and of the ensemble on the selected clips.

    Attributes:
        member_probs: float32 ``[M, N, C]``; probs: float32 ``[N, C]`` (their mean: the plain
        sum); present: bool ``[M, N]``, whether each member's stem is present in each clip;
        presence_probs: float32 ``[N, C]``, the presence-aware fusion.
    """

    member_probs: np.ndarray
    probs: np.ndarray
    present: np.ndarray
    presence_probs: np.ndarray

    @classmethod
    def of(cls, member_probs: np.ndarray, present: np.ndarray) -> EnsembleResult:
        """Both fusions of ``member_probs`` ``[M, N, C]`` given ``present`` ``[M, N]``."""
        return cls(
            member_probs,
            core.combine_members(member_probs),
            present,
            fusion.presence_fusion(member_probs, present),
        )


def run_ensemble(
    predictors: Sequence[Predictor],
    source: Sequence[dict[str, Any]],
    indices: np.ndarray,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> EnsembleResult:
    """Predict the records ``source[indices]`` with every member (each on its stem's mels,
    ``mel_<stem>``), ``_CHUNK`` records at a time, and fuse them both ways."""
    stems = [p.info.stem for p in predictors]
    chunks, present = [], []
    for start in range(0, len(indices), _CHUNK):
        records = [source[int(i)] for i in indices[start : start + _CHUNK]]
        mels = {
            s: np.stack([np.asarray(r[f"mel_{s}"], np.float32) for r in records])
            for s in set(stems)
        }
        chunks.append(predict_members(predictors, mels))
        present.append(_presence(stems, records))
        if progress is not None:
            progress(min(start + _CHUNK, len(indices)), len(indices))
    return EnsembleResult.of(np.concatenate(chunks, axis=1), np.concatenate(present, axis=1))


def _presence(stems: Sequence[str], records: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """bool ``[M, len(records)]`` from the records' ``level_<stem>`` and ``mix_dbfs``."""
    mix = np.asarray([float(r["mix_dbfs"]) for r in records], np.float64)
    levels = {
        s: np.asarray([float(r[f"level_{s}"]) for r in records], np.float64)
        for s in set(stems)
        if records and f"level_{s}" in records[0]
    }
    return fusion.member_presence(stems, levels, mix)


def _accuracies(
    probs: np.ndarray, clips: SelectedClips, per_song: np.ndarray, song_rule: str
) -> dict[str, float]:
    _, song_probs = core.aggregate_songs(probs, clips.song_ids, song_rule)
    return {
        "clip_accuracy": core.accuracy(probs.argmax(1), clips.labels),
        "song_accuracy": core.accuracy(song_probs.argmax(1), per_song),
    }


def evaluate_predictions(
    result: EnsembleResult,
    clips: SelectedClips,
    members: Sequence[MemberInfo],
    song_rule: str = "mean_prob",
) -> dict[str, Any]:
    """The full report (JSON-able): per member its stem, clip and song accuracy and the share of
    clips where its stem is near-silent; the plain sum's
    :func:`~shared_data.ensemble.core.classification_summary` (``ensemble``); and ``fusions``:
    clip and song accuracy of the plain sum and of the presence-aware fusion
    (:mod:`shared_data.ensemble.fusion`), with how many clips left a member out."""
    label_names = members[0].label_names
    labeled = clips.labels >= 0
    if not labeled.all():
        raise DataError(
            f"split {clips.split!r} holds unlabelled clips, so it cannot be scored; predict it "
            "with python -m jax_impl.predict --csv=FILE instead"
        )
    summary = core.classification_summary(
        result.probs, clips.labels, clips.song_ids, label_names, song_rule
    )
    per_song = core.song_labels(clips.labels, clips.song_ids)
    rows = []
    for info, probs, present in zip(members, result.member_probs, result.present, strict=True):
        rows.append(
            {
                "run_dir": str(info.run_dir),
                "backend": info.backend,
                "model": info.model,
                "stem": info.stem,
                "fold": info.fold,
                **_accuracies(probs, clips, per_song, song_rule),
                "fraction_near_silent": float(1.0 - present.mean()) if present.size else 0.0,
            }
        )
    best = max(r["clip_accuracy"] for r in rows)
    fusions = {
        "sum": _accuracies(result.probs, clips, per_song, song_rule),
        "presence": {
            **_accuracies(result.presence_probs, clips, per_song, song_rule),
            "clips_with_members_left_out": int((~result.present).any(axis=0).sum()),
            "clips_all_members_near_silent": int((~result.present).all(axis=0).sum()),
        },
    }
    return {
        "split": clips.split,
        "fold": clips.fold,
        "num_clips": len(clips),
        "num_songs": int(per_song.size),
        "members": rows,
        "ensemble": summary,
        "fusions": fusions,
        "ensemble_minus_best_member_clip_accuracy": summary["clip"]["accuracy"] - best,
    }
