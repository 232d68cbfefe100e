"""A PNG grid with one log-mel clip per label: what the classifier sees, at a glance."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shared_data.dataset.stems import resolve_stem


def first_clip_per_label(
    source: Sequence[Mapping[str, Any]], label_names: Sequence[str]
) -> dict[str, tuple[np.ndarray, str, int]]:
    """For each label, its first clip: smallest ``(song_id, clip_index)``, whatever the order.

    Args:
        source: records with ``mel`` float32 ``[n_mels, frames]``, ``label`` int, ``song_id``
            (bytes or str) and ``clip_index`` int.
        label_names: class names, index = label.

    Returns:
        ``{label name: (mel, song_id, clip_index)}`` in ``label_names`` order; labels without any
        clip are absent.
    """
    best: dict[int, tuple[str, int, int]] = {}
    for i in range(len(source)):
        record = source[i]
        label = int(record["label"])
        if not 0 <= label < len(label_names):
            continue  # unlabelled
        song = record["song_id"]
        song = song.decode() if isinstance(song, bytes) else str(song)
        candidate = (song, int(record["clip_index"]), i)
        if label not in best or candidate < best[label]:
            best[label] = candidate
    out = {}
    for label in sorted(best):
        song, clip_index, i = best[label]
        out[label_names[label]] = (np.asarray(source[i]["mel"]), song, clip_index)
    return out


def render_gallery(
    clips: Mapping[str, tuple[np.ndarray, str, int]],
    out: str | os.PathLike[str],
    *,
    title: str = "",
    columns: int = 4,
) -> Path:
    """Draw each clip's mel ``[n_mels, frames]`` (dB) on one shared colour scale; save a PNG.

    Args:
        clips: ``{label: (mel, song_id, clip_index)}`` (see :func:`first_clip_per_label`).
        out: the PNG path (parent folders are created).
        title: figure title.
        columns: grid width.

    Returns:
        The written path.
    """
    if not clips:
        raise ValueError("no clips to draw")
    import matplotlib

    matplotlib.use("Agg")  # no display needed; must precede pyplot's import
    import matplotlib.pyplot as plt

    n = len(clips)
    cols = min(columns, n)
    rows = math.ceil(n / cols)
    mels = [np.asarray(mel, dtype=np.float32) for mel, _, _ in clips.values()]
    # One scale for all panels, so loudness differences between labels stay visible.
    vmin = float(min(m.min() for m in mels))
    vmax = float(max(m.max() for m in mels))
    fig, axes = plt.subplots(
        rows, cols, figsize=(3.2 * cols + 1, 2.9 * rows), squeeze=False, layout="constrained"
    )
    image = None
    panels = zip(axes.flat[:n], clips.items(), mels, strict=True)
    for ax, (label, (_, song_id, clip_index)), mel in panels:
        image = ax.imshow(mel, origin="lower", aspect="auto", cmap="magma", vmin=vmin, vmax=vmax)
        ax.set_title(f"{label}\n{song_id} #{clip_index}", fontsize=9)
        ax.set_xlabel("frame", fontsize=8)
        ax.set_ylabel("mel band", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.colorbar(image, ax=axes, shrink=0.8, label="dB")
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def dataset_gallery(
    dataset: Any, out: str | os.PathLike[str], *, split: str = "train", stem: str | None = None
) -> Path:
    """One clip per label of an opened ``vocal_mels`` dataset (``opened.OpenedDataset``) as PNG,
    of ``stem`` (default: the stem training reads by default, :func:`stems.resolve_stem`)."""
    stem = resolve_stem(stem, dataset.stems)
    clips = first_clip_per_label(dataset.source(split, stem=stem), dataset.label_names)
    meta = dataset.metadata
    title = f"vocal_mels/{dataset.config}: stem={stem}, sep={meta.get('separator')}"
    return render_gallery(clips, out, title=title)
