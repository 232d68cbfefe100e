"""Reusing an existing ``vocal_mels`` dataset: only with the same settings and input files."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from shared_data.dataset import inputs as inputs_lib
from shared_data.dataset.configs import NAME
from shared_data.dataset.settings import BuildSettings
from shared_data.errors import AudioError, DataError

_FIX = "pass --overwrite to rebuild it, or choose another --data_dir"


def check_settings(settings: BuildSettings, stored: Mapping[str, Any], data_path: Path) -> None:
    """Refuse to reuse the dataset at ``data_path`` (metadata ``stored``) for a build of
    ``settings`` when it was built with other settings (:meth:`BuildSettings.to_dict`).

    Raises:
        DataError: naming each setting that differs and the fix (the ``--backend`` and
            ``--separation_precision`` that rebuild the same separation, ``--overwrite`` or
            another ``--data_dir``).
    """
    old, new = stored.get("settings"), settings.to_dict()
    if old == new:
        return
    old = old or {}
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    diffs = "; ".join(_differences(k, old.get(k), new.get(k)) for k in keys)
    built = separation_flags(old.get("separator_info"), new.get("separator_info"))
    fix = (
        f"pass {built} to reuse it, --overwrite to rebuild it, or another --data_dir"
        if built
        else _FIX
    )
    raise DataError(
        f"{_where(settings, data_path)} was built with different settings ({diffs}); {fix}"
    )


def _where(settings: BuildSettings, data_path: Path) -> str:
    return f"{NAME}/{settings.config.name} at {data_path}"


def check_inputs(
    settings: BuildSettings,
    stored: Mapping[str, Any],
    items: Sequence[inputs_lib.SongInput],
    data_path: Path,
) -> None:
    """Refuse to reuse the dataset at ``data_path`` (metadata ``stored``) when the songs a build
    of ``settings`` lists now (``items``) are not those it was built from: for folder/csv/gtzan
    their checksums, for a synthetic config the generator's first song.

    Raises:
        DataError: naming the files added, removed or changed (or the generator's change) and
            the fix.
    """
    config, where, fix = settings.config, _where(settings, data_path), _FIX
    before = stored.get("checksums", {})
    if config.source == "synthetic":
        # The corpus is defined by the config, but by the generator's code too: regenerating
        # one song (well under a second) catches a changed generator.
        first = items[0]
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


def _differences(key: str, old: Any, new: Any) -> str:
    """``"key: built X, asked Y"``; for two dicts (the separator's ``info()``) only the entries
    that differ, as ``key.entry``, since the whole of one runs to hundreds of characters."""
    if isinstance(old, dict) and isinstance(new, dict):
        entries = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        return "; ".join(_differences(f"{key}.{k}", old.get(k), new.get(k)) for k in entries)
    return f"{key}: built {old!r}, asked {new!r}"


def separation_flags(built: Any, asked: Any) -> str | None:
    """The ``--backend=... --separation_precision=...`` that give the separator ``info()``
    ``built`` again when it differs from ``asked`` only in the separation path (the ``auto``
    rule may pick another path than an earlier build did, e.g. torch bf16 on a CPU with bf16
    units where that build took JAX fp32); None when a flag cannot help (other weights,
    parameters or framework version, another device for the same backend). An info without
    ``precision`` is fp32 (the precision is named only for bf16)."""
    if not isinstance(built, dict) or not isinstance(asked, dict) or "backend" not in built:
        return None
    # Each backend's info names its own framework's version; only a key both have can differ.
    shared = (set(built) & set(asked)) - {"backend", "precision"}
    if built.get("backend") != asked.get("backend"):
        shared.discard("device")  # each framework names the CPU in its own words
    if any(built[k] != asked[k] for k in shared) or (set(built) ^ set(asked)) - _PATH_KEYS:
        return None
    return f"--backend={built['backend']} --separation_precision={built.get('precision', 'fp32')}"


_PATH_KEYS = frozenset({"precision", "jax", "torch"})


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
