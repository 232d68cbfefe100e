"""The per-song cache that makes ``vocal_mels`` builds resumable.

Separation is the slow stage, so each song's mels are stored as soon as they exist, under a key
that changes whenever anything that shapes them changes (input bytes, separator and its weights,
stem, feature parameters). Entries are written to a temporary name and ``os.replace``-d into place,
so a build killed at any instant leaves only whole entries; the next build reuses them.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from shared_data.errors import DataError

CACHE_DIRNAME = ".vocal_mels_cache"
# Bumped when the layout of an entry changes, so old entries are never misread.
CACHE_FORMAT = 1


def cache_key(
    *,
    input_sha256: str,
    separator: dict[str, Any],
    stem: str,
    feature_params: dict[str, Any],
) -> str:
    """A hex key for one song's mels: SHA-256 of everything that determines them, as JSON.

    ``separator`` is the separator's ``info()``, which names its backend and weights.
    """
    blob = json.dumps(
        {
            "format": CACHE_FORMAT,
            "input": input_sha256,
            "separator": separator,
            "stem": stem,
            "features": feature_params,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


class SongCache:
    """A folder of ``<key>.npz`` entries, each holding ``mels`` float32 ``[n_clips, 128, 128]``."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def __len__(self) -> int:
        return sum(1 for _ in self.root.glob("*.npz"))

    def _path(self, key: str) -> Path:
        return self.root / f"{key}.npz"

    def get(self, key: str) -> np.ndarray | None:
        """The cached mels for ``key``, or ``None`` when absent (or unreadable: recomputed)."""
        entry = self.get_entry(key)
        return None if entry is None else entry["mels"]

    def get_entry(self, key: str) -> dict[str, np.ndarray] | None:
        """Every array of the entry ``key`` (``mels`` and whatever :meth:`put` got as extras), or
        ``None`` when absent or unreadable (then recomputed)."""
        path = self._path(key)
        if not path.exists():
            return None
        try:
            with np.load(path) as z:
                entry = {name: np.asarray(z[name]) for name in z.files}
            entry["mels"] = np.asarray(entry["mels"], dtype=np.float32)
            return entry
        except (OSError, ValueError, KeyError):
            # Only a foreign or damaged file lands here (writes are atomic); recomputing is safe.
            path.unlink(missing_ok=True)
            return None

    def put(self, key: str, mels: np.ndarray, **extras: np.ndarray) -> None:
        """Store ``mels`` (and named ``extras`` arrays) atomically (temporary file +
        ``os.replace``). Extras are optional for readers: entries written without them stay
        valid, so adding one needs no :data:`CACHE_FORMAT` bump."""
        path = self._path(key)
        tmp = path.with_name(f".{key}.{os.getpid()}.tmp")
        with tmp.open("wb") as f:
            np.savez(f, mels=np.asarray(mels, dtype=np.float32), **extras)
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
