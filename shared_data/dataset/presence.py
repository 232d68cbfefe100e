"""Stem presence: is the separated stem that a build featurises really there?

Featurising the vocal stem of instrumental music gives clips of separator residue, near the
-100 dB floor, that carry no genre. The build measures, per song and per clip, the level of the
selected stem against the mix it was separated from, both as mean power of the channel average in
dB re full scale (:func:`level_db`), and flags a song or clip as near-silent when

    stem_db <= mix_db + NEAR_SILENT_DB   or   stem_db < FLOOR_DBFS

(:data:`NEAR_SILENT_DB` = -20 dB, :data:`FLOOR_DBFS` = -90 dBFS: below 16-bit quantisation, the
stem holds nothing, whatever the mix). -20 dB lies between the levels of sung and instrumental
songs' separated vocal stems; BENCHMARKS.md ("Stem presence") has the measurements. When more than
:data:`WARN_FRACTION` of the songs are near-silent, the build warns and names the fix
(``--strict``: fails). With ``--stem=mix`` there is nothing to check: the featurised signal is the
mix.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from shared_data.dataset.features import FeatureParams

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
    stem: np.ndarray, mix: np.ndarray, n_clips: int, params: FeatureParams, sr: int
) -> dict[str, np.ndarray]:
    """Levels of one song's ``stem`` and ``mix`` (``[2, n]`` at ``sr``).

    Returns:
        ``{"stem_db", "mix_db"}``, float64 ``[1 + n_clips]``: index 0 is the whole song, index
        ``1 + i`` the audio under clip ``i`` (the features' clip grid, mapped to ``sr``; a
        padded tail clip is measured on the audio it holds).
    """
    scale = sr / params.sr
    size, hop = params.clip_samples * scale, params.clip_hop * scale
    spans = [(0, stem.shape[-1])] + [
        (int(round(i * hop)), int(round(i * hop + size))) for i in range(n_clips)
    ]
    return {
        "stem_db": np.array([level_db(stem[..., a:b]) for a, b in spans]),
        "mix_db": np.array([level_db(mix[..., a:b]) for a, b in spans]),
    }


def near_silent(stem_db: np.ndarray, mix_db: np.ndarray) -> np.ndarray:
    """The near-silent rule (module docstring), elementwise: bool, the shape of the inputs."""
    stem_db, mix_db = np.asarray(stem_db), np.asarray(mix_db)
    return (stem_db <= mix_db + NEAR_SILENT_DB) | (stem_db < FLOOR_DBFS)


def row_fields(levels: dict[str, np.ndarray] | None) -> dict[str, Any]:
    """The report fields of one song from its :func:`measure` levels (``None``: not measured)."""
    if levels is None or "stem_db" not in levels:
        return {}
    silent = near_silent(levels["stem_db"], levels["mix_db"])
    return {
        "stem_db": round(float(levels["stem_db"][0]), 2),
        "mix_db": round(float(levels["mix_db"][0]), 2),
        "stem_relative_db": round(float(levels["stem_db"][0] - levels["mix_db"][0]), 2),
        "stem_near_silent": bool(silent[0]),
        "clips_near_silent": int(silent[1:].sum()),
    }


def _fixes(stem: str) -> str:
    others = [s for s in ("mix", "accompaniment", "vocals") if s != stem]
    return " or ".join(f"--stem={s}" for s in others)


def summarise(rows: Sequence[dict[str, Any]], stem: str) -> dict[str, Any]:
    """The report's ``stem_presence`` section from the file rows of a build.

    Returns:
        ``checked`` False with a ``reason`` for ``--stem=mix``; else the counts and fractions of
        near-silent songs and clips among the measured ones, the thresholds, the
        :data:`WORST_LISTED` songs with the lowest stem level relative to the mix, the number of
        accepted songs not measured (cache entries from before the measurement existed) and a
        ``warning`` (None, or the message naming the fix).
    """
    if stem == "mix":
        return {
            "checked": False,
            "reason": "--stem=mix featurises the mix itself: there is no separated stem to check",
        }
    ok = [r for r in rows if r["status"] == "ok"]
    measured = [r for r in ok if "stem_relative_db" in r]
    songs = sum(r["stem_near_silent"] for r in measured)
    clips = sum(r["clips_near_silent"] for r in measured)
    n_clips = sum(r["n_clips"] for r in measured)
    worst = sorted(measured, key=lambda r: r["stem_relative_db"])[:WORST_LISTED]
    fraction = songs / len(measured) if measured else 0.0
    warning = None
    if fraction > WARN_FRACTION:
        names = ", ".join(f"{r['path']} ({r['stem_relative_db']:+.1f} dB)" for r in worst)
        warning = (
            f"the {stem} stem is near-silent (at least {-NEAR_SILENT_DB:.0f} dB below the mix) in "
            f"{songs} of {len(measured)} songs ({100 * fraction:.0f}%, {clips} of {n_clips} "
            f"clips), e.g. {names}; if the music has no {stem}, build with {_fixes(stem)}"
        )
    return {
        "checked": True,
        "near_silent_db": NEAR_SILENT_DB,
        "floor_dbfs": FLOOR_DBFS,
        "warn_fraction": WARN_FRACTION,
        "songs_measured": len(measured),
        "songs_not_measured": len(ok) - len(measured),
        "songs_near_silent": songs,
        "fraction_songs": round(fraction, 4),
        "clips_measured": n_clips,
        "clips_near_silent": clips,
        "fraction_clips": round(clips / n_clips, 4) if n_clips else 0.0,
        "worst": [{"path": r["path"], "stem_relative_db": r["stem_relative_db"]} for r in worst],
        "warning": warning,
    }
