"""Song-grouped cross-validation folds: stratified by label (the default), or a hash of the song id.

The split unit is the song (``docs/design.md``, "Data flow"): every clip of a song carries the same
fold, so no song is ever on both sides of a train/validation split. Both assignments are pure
functions of the songs (SHA-256, never Python's salted ``hash``), so they are the same on every
machine and in every process. :data:`FOLD_METHODS`:

- ``stratified`` (:func:`stratified_folds`, the default): within each label the songs, ordered by
  the SHA-256 of their id, are dealt round-robin over the folds; the labels are dealt in sorted
  order and each label's deal starts on the fold after the previous label's last song. So every
  fold holds every label that has at least K songs, and fold sizes differ by at most one song.
  The price: the fold of a song depends on the other songs, so adding or removing a song can move
  songs of its label, and of the labels sorted after it, to other folds.
- ``hash`` (:func:`assign_fold`): the fold is the song id's SHA-256 modulo K. Adding songs never
  moves the songs already there, but a small label can miss folds entirely (3 songs over 5 folds
  leave at least 2 folds without it), and fold sizes vary.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from shared_data.errors import DataError

DEFAULT_FOLDS = 5
FOLD_METHODS = ("stratified", "hash")
DEFAULT_FOLD_METHOD = "stratified"


def validate_k(k: int) -> int:
    """Return ``k`` if it is a usable number of folds (an int >= 2); else raise ``DataError``."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise DataError(
            f"--folds must be an integer >= 2 (got {k!r}); the default is {DEFAULT_FOLDS}"
        )
    return k


def validate_method(method: str) -> str:
    """Return ``method`` if it is one of :data:`FOLD_METHODS`; else raise ``DataError``."""
    if method not in FOLD_METHODS:
        raise DataError(
            f"--fold_method must be one of {'|'.join(FOLD_METHODS)} (got {method!r}); the default "
            f"is {DEFAULT_FOLD_METHOD}"
        )
    return method


def _hash64(text: str) -> int:
    # 64 bits of the digest: the modulo bias against k is below 2**-58, far under sampling noise.
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def assign_fold(song_id: str, k: int = DEFAULT_FOLDS) -> int:
    """The ``hash`` fold in ``[0, k)`` of the song ``song_id``.

    Args:
        song_id: the song's id (any string; compared as its UTF-8 bytes).
        k: the number of folds (>= 2).

    Returns:
        An int in ``0..k-1`` that depends only on ``song_id`` and ``k``.
    """
    validate_k(k)
    return _hash64(song_id) % k


def stratified_folds(songs: Iterable[tuple[str, str]], k: int = DEFAULT_FOLDS) -> dict[str, int]:
    """The ``stratified`` fold of every song (see the module docstring for the rule).

    Args:
        songs: ``(song_id, label)`` pairs; repeats are ignored, and a song id given with several
            labels is dealt under the smallest of them (a song has one fold).
        k: the number of folds (>= 2).

    Returns:
        ``{song_id: fold in 0..k-1}``, a pure function of the set of pairs and ``k``.
    """
    validate_k(k)
    label_of: dict[str, str] = {}
    for song_id, label in songs:
        if song_id not in label_of or label < label_of[song_id]:
            label_of[song_id] = label
    by_label: dict[str, list[str]] = {}
    for song_id, label in label_of.items():
        by_label.setdefault(label, []).append(song_id)
    folds: dict[str, int] = {}
    position = 0  # the deal runs on across labels: overall fold sizes differ by at most one
    for label in sorted(by_label):
        # The id breaks (astronomically unlikely) 64-bit hash ties, so the order is total.
        for song_id in sorted(by_label[label], key=lambda s: (_hash64(s), s)):
            folds[song_id] = position % k
            position += 1
    return folds


def song_folds(
    songs: Iterable[tuple[str, str | None]], k: int = DEFAULT_FOLDS, method: str = "stratified"
) -> dict[str, int]:
    """The fold of every song of a build: ``(song_id, label or None)`` -> ``{song_id: fold}``.

    Labelled songs are assigned by ``method``; unlabelled ones (the ``test`` split, never used for
    cross-validation) always by :func:`assign_fold`.
    """
    validate_method(method)
    songs = list(songs)
    labelled = [(s, label) for s, label in songs if label is not None]
    if method == "stratified":
        folds = stratified_folds(labelled, k)
    else:
        folds = {s: assign_fold(s, k) for s, _ in labelled}
    for song_id, label in songs:
        if label is None and song_id not in folds:
            folds[song_id] = assign_fold(song_id, k)
    return folds
