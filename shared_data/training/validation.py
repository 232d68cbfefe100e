"""Validation metrics of a training run, computed the same way for both backends.

Each backend gathers the validation fold's logits (all processes' clips, in the fold's order) and
calls :func:`validation_metrics`; song accuracy uses the ensemble's song rule
(:mod:`shared_data.ensemble.core`: mean of the clips' softmax probabilities per song).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from shared_data.ensemble import core


def validation_metrics(
    logits: np.ndarray, labels: np.ndarray, song_ids: Sequence[str]
) -> dict[str, float]:
    """``{"val_loss", "val_acc", "val_song_acc"}`` of one validation pass.

    Args:
        logits: float ``[N, C]`` (any float dtype; scored in float64).
        labels: int ``[N]``.
        song_ids: ``N`` song ids (the song of each clip).

    Returns:
        ``val_loss``: mean cross-entropy; ``val_acc``: clip accuracy (argmax); ``val_song_acc``:
        song accuracy of the mean clip probabilities.
    """
    logits = np.asarray(logits, np.float64)
    labels = np.asarray(labels, np.int64)
    if logits.ndim != 2 or logits.shape[0] != len(labels) or len(labels) != len(song_ids):
        raise ValueError(
            f"logits must be [N, C] with N = {len(labels)} labels and song ids "
            f"({len(song_ids)}), got {logits.shape}"
        )
    shifted = logits - logits.max(-1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    _, song_probs = core.aggregate_songs(np.exp(logp), song_ids)
    return {
        "val_loss": float(-logp[np.arange(len(labels)), labels].mean()),
        "val_acc": core.accuracy(logits.argmax(-1), labels),
        "val_song_acc": core.accuracy(song_probs.argmax(-1), core.song_labels(labels, song_ids)),
    }
