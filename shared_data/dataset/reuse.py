"""Reusing an existing ``vocal_mels`` dataset: only with the same settings and input files."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shared_data.dataset import inputs as inputs_lib
from shared_data.dataset.configs import NAME
from shared_data.errors import AudioError, DataError


def check_existing(builder: Any, stored: dict[str, Any]) -> None:
    """Refuse to reuse the dataset of ``builder`` (a ``VocalMels``) whose metadata is ``stored``
    when it was built with other settings or, for folder/csv, from other input files.

    Raises:
        DataError: naming what differs and the fix (``--overwrite`` or another ``--data_dir``).
    """
    where = f"{NAME}/{builder.builder_config.name} at {builder.data_path}"
    fix = "pass --overwrite to rebuild it, or choose another --data_dir"
    old, new = stored.get("settings"), builder._settings()
    if old != new:
        old = old or {}
        keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        diffs = "; ".join(f"{k}: built {old.get(k)!r}, asked {new.get(k)!r}" for k in keys)
        raise DataError(f"{where} was built with different settings ({diffs}); {fix}")
    items, _ = builder._list_inputs()
    before = stored.get("checksums", {})
    if builder.builder_config.source == "synthetic":
        # The corpus is defined by the config, but by the generator's code too: regenerating
        # one song (well under a second) catches a changed generator.
        config, first = builder.builder_config, items[0]
        song = inputs_lib.read_song(
            first, params=config.feature_params, seed=config.seed, seconds=config.seconds
        )
        if before.get(first.path) != song.sha256:
            raise DataError(
                f"the synthetic generator's output changed since {where} was built "
                f"({first.path} differs); {fix}"
            )
        return
    now = checksums(items)
    if now != before:
        added = sorted(set(now) - set(before))
        removed = sorted(set(before) - set(now))
        changed = sorted(p for p in set(now) & set(before) if now[p] != before[p])
        parts = [
            f"{len(v)} {what} (e.g. {v[0]})"
            for what, v in (("added", added), ("removed", removed), ("changed", changed))
            if v
        ]
        raise DataError(f"the input files of {where} changed: {', '.join(parts)}; {fix}")


def checksums(items: Sequence[inputs_lib.SongInput]) -> dict[str, str | None]:
    """``{path: SHA-256}`` of listed files; the report's rule: None for files rejected before
    reading (or unreadable now)."""
    now: dict[str, str | None] = {}
    for item in items:
        now[item.path] = None
        if item.file is not None and item.reject_reason is None:
            with contextlib.suppress(AudioError):
                now[item.path] = inputs_lib.sha256_file(item.file)
    return now


def remove_stale_incomplete(data_path: Path, version: Any) -> int:
    """Remove the TFDS temporary folders (``incomplete.*_<version>`` beside ``data_path``) that a
    killed build left; the caller holds the build lock. Returns how many."""
    stale = [p for p in data_path.parent.glob(f"incomplete.*_{version}") if p.is_dir()]
    for path in stale:
        shutil.rmtree(path)
    return len(stale)
