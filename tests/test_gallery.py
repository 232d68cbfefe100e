"""The mel gallery: which clip is drawn per label, and the PNG it writes."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from shared_data.dataset.gallery import first_clip_per_label, render_gallery


def _record(label: int, song: str, clip: int) -> dict:
    return {
        "mel": np.full((128, 128), 10 * label + clip, np.float32),
        "label": label,
        "song_id": song.encode(),
        "clip_index": clip,
    }


def test_first_clip_per_label_is_order_free() -> None:
    records = [
        _record(1, "b", 1),
        _record(-1, "u", 0),  # unlabelled: never drawn
        _record(0, "z", 0),
        _record(1, "b", 0),
        _record(0, "a", 2),
        _record(1, "c", 0),
    ]
    names = ["blues", "rock", "jazz"]  # jazz has no clip
    for order in (records, records[::-1]):
        picked = first_clip_per_label(order, names)
        assert list(picked) == ["blues", "rock"]
        assert [(s, c) for _, s, c in picked.values()] == [("a", 2), ("b", 0)]
        assert picked["rock"][0][0, 0] == 10.0


def test_render_gallery_writes_a_grid_png(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    clips = {f"g{i}": (rng.normal(-50, 10, (128, 128)), f"s{i}", 0) for i in range(5)}
    path = render_gallery(clips, tmp_path / "sub" / "g.png", title="t", columns=4)
    image = matplotlib.image.imread(path)
    height, width = image.shape[:2]
    assert width > height > 0  # 4 columns x 2 rows
    assert image.std() > 0.05  # not a blank canvas
    with pytest.raises(ValueError, match="no clips"):
        render_gallery({}, tmp_path / "empty.png")
