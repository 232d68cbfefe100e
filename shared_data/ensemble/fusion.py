"""How an ensemble's members are combined per clip: the plain sum and presence-aware fusion.

Plain sum (the reference report's rule, :func:`shared_data.ensemble.core.combine_members`): every
member's clip probabilities count.

Presence-aware fusion, for stem ensembles (members trained on different stems of one separation):
a member whose stem is near-silent in a clip, by the build's rule
(:func:`shared_data.dataset.presence.near_silent`: the stem at least 20 dB below the mix, or below
-90 dBFS), sees separator residue there, not music, so it is left out of that clip's sum; a clip
where every member's stem is near-silent falls back to the plain sum. A ``mix`` member is never
left out (its input is the mix itself). In an ensemble of one stem every member is present or
every member is absent in each clip, so both rules give the same probabilities.

The levels come from the records (``level_<stem>``, ``mix_dbfs``) or, in ``predict``, from the
separation of the song being predicted (:func:`shared_data.dataset.presence.measure`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from shared_data.dataset.presence import clip_near_silent

__all__ = ["FUSIONS", "MIX", "fuse", "member_presence", "presence_fusion"]

FUSIONS: tuple[str, ...] = ("sum", "presence")
MIX = "mix"


def member_presence(
    stems: Sequence[str], levels: Mapping[str, np.ndarray], mix_dbfs: np.ndarray
) -> np.ndarray:
    """Whether each member's stem is present in each clip.

    Args:
        stems: the ``M`` members' stems.
        levels: ``{stem: float [N]}``, each separated stem's level against the mix (dB).
        mix_dbfs: float ``[N]``, the mix's level of each clip.

    Returns:
        bool ``[M, N]``; True for a ``mix`` member, or a stem whose level is unknown.
    """
    mix_dbfs = np.asarray(mix_dbfs, np.float64)
    rows = []
    for stem in stems:
        if stem == MIX or stem not in levels:
            rows.append(np.ones(mix_dbfs.shape, bool))
        else:
            rows.append(~clip_near_silent(levels[stem], mix_dbfs))
    return np.stack(rows) if rows else np.zeros((0, *mix_dbfs.shape), bool)


def presence_fusion(member_probs: np.ndarray, present: np.ndarray) -> np.ndarray:
    """The mean of the present members' probabilities per clip; the mean of all where none is.

    Args:
        member_probs: float ``[M, N, C]``; present: bool ``[M, N]``.

    Returns:
        float32 ``[N, C]``, rows summing to 1.
    """
    probs = np.asarray(member_probs, np.float64)
    weights = np.asarray(present, np.float64)
    if probs.ndim != 3 or weights.shape != probs.shape[:2]:
        raise ValueError(f"member_probs [M, N, C] {probs.shape} and present [M, N] {weights.shape}")
    none = weights.sum(axis=0) == 0
    weights[:, none] = 1.0  # every member near-silent: the plain sum
    fused = (weights[..., None] * probs).sum(axis=0) / weights.sum(axis=0)[:, None]
    return fused.astype(np.float32)


def fuse(member_probs: np.ndarray, present: np.ndarray, fusion: str) -> np.ndarray:
    """``fusion`` (:data:`FUSIONS`) of ``member_probs`` ``[M, N, C]`` -> float32 ``[N, C]``."""
    if fusion == "sum":
        from shared_data.ensemble.core import combine_members

        return combine_members(member_probs)
    if fusion == "presence":
        return presence_fusion(member_probs, present)
    raise ValueError(f"unknown fusion {fusion!r}; choose one of {FUSIONS}")
