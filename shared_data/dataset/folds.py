"""Song-grouped cross-validation folds from a stable hash of the song id.

The split unit is the song (DESIGN.md section 1): every clip of a song carries the same fold, so no
song is ever on both sides of a train/validation split. The fold is a pure function of the song id
(SHA-256, never Python's salted ``hash``), so it is the same on every machine and in every process,
and adding songs to a corpus never moves the songs already in it.
"""

from __future__ import annotations

import hashlib

from shared_data.errors import DataError

DEFAULT_FOLDS = 5


def validate_k(k: int) -> int:
    """Return ``k`` if it is a usable number of folds (an int >= 2); else raise ``DataError``."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise DataError(
            f"--folds must be an integer >= 2 (got {k!r}); the default is {DEFAULT_FOLDS}"
        )
    return k


def assign_fold(song_id: str, k: int = DEFAULT_FOLDS) -> int:
    """The fold in ``[0, k)`` of the song ``song_id``.

    Args:
        song_id: the song's id (any string; compared as its UTF-8 bytes).
        k: the number of folds (>= 2).

    Returns:
        An int in ``0..k-1`` that depends only on ``song_id`` and ``k``.
    """
    validate_k(k)
    digest = hashlib.sha256(song_id.encode("utf-8")).digest()
    # 64 bits of the digest: the modulo bias against k is below 2**-58, far under sampling noise.
    return int.from_bytes(digest[:8], "big") % k
