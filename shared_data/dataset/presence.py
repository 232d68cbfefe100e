"""Stem presence: is the separated stem that a build featurises really there?

Featurising the vocal stem of instrumental music gives clips of separator residue, near the
-100 dB floor, that carry no genre. The build measures, per song and per clip, the level of each
separated stem against the mix it was separated from, both as mean power of the channel average in
dB re full scale (:func:`level_db`), and flags a song or clip as near-silent when

    stem_db <= mix_db + NEAR_SILENT_DB   or   stem_db < FLOOR_DBFS

(:data:`NEAR_SILENT_DB` = -20 dB, :data:`FLOOR_DBFS` = -90 dBFS: below 16-bit quantisation, the
stem holds nothing, whatever the mix). -20 dB lies between the levels of sung and instrumental
songs' separated vocal stems; BENCHMARKS.md ("Stem presence") has the measurements. When more than
:data:`WARN_FRACTION` of the songs are near-silent in a stored stem, the build warns and names the
fix: another stem of the same dataset, or a stem ensemble (``--strict``: fails). A build of the
mix alone has nothing to check. Each record keeps its clip's two numbers (``level_<stem>``, the
stem against the mix, and ``mix_dbfs``), so :func:`clip_near_silent` applies the same rule at
evaluation time (presence-aware stem ensembles, :mod:`shared_data.ensemble.fusion`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from shared_data.dataset.features import FeatureParams

MIX = "mix"

NEAR_SILENT_DB = -20.0
FLOOR_DBFS = -90.0
WARN_FRACTION = 0.25
WORST_LISTED = 5
_POWER_FLOOR = 1e-12  # -120 dBFS: digital silence gets a finite level


def level_db(wave: np.ndarray) -> float:
    """Mean power of ``wave`` (``[C, n]`` or ``[n]``, channels averaged) in dB re full scale,
    floored at -120 dB; an empty ``wave`` is at the floor."""
    x = np.asarray(wave, dtype=np.float64)
    mono = x.mean(axis=0) if x.ndim == 2 else x
    power = float(np.mean(mono**2)) if mono.size else 0.0
    return 10.0 * np.log10(max(power, _POWER_FLOOR))


def measure(
    separated: Mapping[str, np.ndarray],
    mix: np.ndarray,
    n_clips: int,
    params: FeatureParams,
    sr: int,
) -> dict[str, np.ndarray]:
    """Levels of one song's separated stems and its ``mix`` (each ``[2, n]`` at ``sr``).

    Returns:
        ``{"mix_db", "db_<stem>" per separated stem}``, float64 ``[1 + n_clips]`` in dBFS:
        index 0 is the whole song, index ``1 + i`` the audio under clip ``i`` (the features'
        clip grid, mapped to ``sr``; a padded tail clip is measured on the audio it holds).
    """
    scale = sr / params.sr
    size, hop = params.clip_samples * scale, params.clip_hop * scale
    spans = [(0, mix.shape[-1])] + [
        (int(round(i * hop)), int(round(i * hop + size))) for i in range(n_clips)
    ]
    out = {"mix_db": np.array([level_db(mix[..., a:b]) for a, b in spans])}
    for stem, wave in separated.items():
        out[f"db_{stem}"] = np.array([level_db(wave[..., a:b]) for a, b in spans])
    return out


def relative_db(levels: Mapping[str, np.ndarray], stem: str) -> np.ndarray:
    """``stem``'s level against the mix (dB), float64 ``[1 + n_clips]``, from :func:`measure`."""
    return np.asarray(levels[f"db_{stem}"]) - np.asarray(levels["mix_db"])


def clip_near_silent(level: np.ndarray, mix_dbfs: np.ndarray) -> np.ndarray:
    """The near-silent rule from what a record holds: ``level`` (the stem against the mix, dB)
    and ``mix_dbfs`` (the mix's level); bool, the shape of the inputs."""
    level, mix_dbfs = np.asarray(level, np.float64), np.asarray(mix_dbfs, np.float64)
    return near_silent(level + mix_dbfs, mix_dbfs)


def near_silent(stem_db: np.ndarray, mix_db: np.ndarray) -> np.ndarray:
    """The near-silent rule (module docstring), elementwise: bool, the shape of the inputs."""
    stem_db, mix_db = np.asarray(stem_db), np.asarray(mix_db)
    return (stem_db <= mix_db + NEAR_SILENT_DB) | (stem_db < FLOOR_DBFS)


def row_fields(levels: Mapping[str, np.ndarray] | None, stems: Sequence[str]) -> dict[str, Any]:
    """The report fields of one song from its :func:`measure` levels: ``mix_db`` and, per
    separated stem of ``stems``, ``presence[stem]`` = ``{stem_db, stem_relative_db,
    near_silent, clips_near_silent}`` (``{}`` when not measured)."""
    separated = [s for s in stems if s != MIX and levels is not None and f"db_{s}" in levels]
    if not separated:
        return {}
    out: dict[str, Any] = {"mix_db": round(float(levels["mix_db"][0]), 2), "presence": {}}
    for stem in separated:
        stem_db = np.asarray(levels[f"db_{stem}"])
        silent = near_silent(stem_db, levels["mix_db"])
        out["presence"][stem] = {
            "stem_db": round(float(stem_db[0]), 2),
            "stem_relative_db": round(float(stem_db[0] - levels["mix_db"][0]), 2),
            "near_silent": bool(silent[0]),
            "clips_near_silent": int(silent[1:].sum()),
        }
    return out


def _fixes(stem: str, stems: Sequence[str]) -> str:
    others = [s for s in stems if s != stem]
    if others:
        flags = " or ".join(f"--stem={s}" for s in others)
        return (
            f"the dataset also holds {', '.join(others)}: train with {flags}, or combine the "
            f"stems in an ensemble (python -m jax_impl.cv --stems={','.join(stems)})"
        )
    rest = [s for s in ("vocals", "accompaniment", MIX) if s != stem]
    return (
        f"build with --stems={','.join([stem, *rest])} (songs already separated come from the "
        "cache) and train with another --stem or a stem ensemble"
    )


def _stem_summary(ok: Sequence[dict[str, Any]], stem: str, stems: Sequence[str]) -> dict[str, Any]:
    measured = [(r, r["presence"][stem]) for r in ok if stem in r.get("presence", {})]
    songs = sum(p["near_silent"] for _, p in measured)
    clips = sum(p["clips_near_silent"] for _, p in measured)
    n_clips = sum(r["n_clips"] for r, _ in measured)
    worst = sorted(measured, key=lambda rp: rp[1]["stem_relative_db"])[:WORST_LISTED]
    fraction = songs / len(measured) if measured else 0.0
    warning = None
    if fraction > WARN_FRACTION:
        names = ", ".join(f"{r['path']} ({p['stem_relative_db']:+.1f} dB)" for r, p in worst)
        warning = (
            f"the {stem} stem is near-silent (at least {-NEAR_SILENT_DB:.0f} dB below the mix) in "
            f"{songs} of {len(measured)} songs ({100 * fraction:.0f}%, {clips} of {n_clips} "
            f"clips), e.g. {names}; if the music has no {stem}, {_fixes(stem, stems)}"
        )
    return {
        "songs_measured": len(measured),
        "songs_not_measured": len(ok) - len(measured),
        "songs_near_silent": songs,
        "fraction_songs": round(fraction, 4),
        "clips_measured": n_clips,
        "clips_near_silent": clips,
        "fraction_clips": round(clips / n_clips, 4) if n_clips else 0.0,
        "worst": [{"path": r["path"], "stem_relative_db": p["stem_relative_db"]} for r, p in worst],
        "warning": warning,
    }


def summarise(rows: Sequence[dict[str, Any]], stems: Sequence[str]) -> dict[str, Any]:
    """The report's ``stem_presence`` section from the file rows of a build storing ``stems``.

    Returns:
        ``checked`` False with a ``reason`` when the build stores the mix alone; else the
        thresholds, per separated stem (``stems[stem]``) the counts and fractions of near-silent
        songs and clips among the measured ones, the :data:`WORST_LISTED` songs with the lowest
        stem level relative to the mix and a ``warning`` (None, or the message naming the fix),
        and ``warnings``, every stem's warning.
    """
    separated = [s for s in stems if s != MIX]
    if not separated:
        return {
            "checked": False,
            "reason": "the build stores the mix alone: there is no separated stem to check",
        }
    ok = [r for r in rows if r["status"] == "ok"]
    per_stem = {stem: _stem_summary(ok, stem, stems) for stem in separated}
    return {
        "checked": True,
        "near_silent_db": NEAR_SILENT_DB,
        "floor_dbfs": FLOOR_DBFS,
        "warn_fraction": WARN_FRACTION,
        "stems": per_stem,
        "warnings": [p["warning"] for p in per_stem.values() if p["warning"]],
    }
