"""The per-song cache that makes ``vocal_mels`` builds resumable.

Separation is the slow stage, so each song's features are stored as soon as they exist, under a
key that changes whenever anything that shapes them changes (input bytes, separator and its
weights, feature parameters). An entry holds every stem of the separation (the arrays of
:func:`shared_data.dataset.stage.featurise_song`), so a later build that stores another choice
of stems separates nothing again. Entries are written to a temporary name and ``os.replace``-d
into place, so a build killed at any instant leaves only whole entries; the next build reuses them.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from shared_data.errors import DataError

CACHE_DIRNAME = ".vocal_mels_cache"
# Bumped when the layout of an entry changes, so old entries are never misread. 2: every stem
# of the separation in one entry (1: the mels of one stem, whose name was part of the key).
CACHE_FORMAT = 2


def cache_key(
    *,
    input_sha256: str,
    separator: dict[str, Any],
    feature_params: dict[str, Any],
) -> str:
    """A hex key for one song's features: SHA-256 of everything that determines them, as JSON.

    ``separator`` is the separator's ``info()``, which names its backend and weights.
    """
    blob = json.dumps(
        {
            "format": CACHE_FORMAT,
            "input": input_sha256,
            "separator": separator,
            "features": feature_params,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


class SongCache:
    """A folder of ``<key>.npz`` entries, each a set of named arrays (one song's features)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def __len__(self) -> int:
        return sum(1 for _ in self.root.glob("*.npz"))

    def _path(self, key: str) -> Path:
        return self.root / f"{key}.npz"

    def get_entry(self, key: str) -> dict[str, np.ndarray] | None:
        """Every array of the entry ``key``, or ``None`` when absent or unreadable (then
        recomputed)."""
        path = self._path(key)
        if not path.exists():
            return None
        try:
            with np.load(path) as z:
                return {name: np.asarray(z[name]) for name in z.files}
        except (OSError, ValueError, KeyError):
            # Only a foreign or damaged file lands here (writes are atomic); recomputing is safe.
            path.unlink(missing_ok=True)
            return None

    def put(self, key: str, arrays: Mapping[str, np.ndarray]) -> None:
        """Store the named ``arrays`` as entry ``key`` atomically (temporary file +
        ``os.replace``)."""
        path = self._path(key)
        tmp = path.with_name(f".{key}.{os.getpid()}.tmp")
        with tmp.open("wb") as f:
            np.savez(f, **{name: np.asarray(a) for name, a in arrays.items()})
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def clean_partial(self) -> int:
        """Remove temporary files a killed build left behind; returns how many."""
        partial = list(self.root.glob(".*.tmp"))
        for path in partial:
            path.unlink(missing_ok=True)
        return len(partial)

    @contextlib.contextmanager
    def lock(self, what: str) -> Iterator[None]:
        """Hold an exclusive lock for a build; a second concurrent build fails clearly."""
        with (self.root / ".lock").open("w") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise DataError(
                    f"another build of {what} is running (lock {self.root / '.lock'}); wait for "
                    "it to finish or use another --data_dir"
                ) from None
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
