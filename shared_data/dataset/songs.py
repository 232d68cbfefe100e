"""Per-song processing of a ``vocal_mels`` build: fingerprint -> (cache | decode -> separate ->
featurise) -> a report row, plus the running mel statistics.

One rule lives here besides the pipeline: the same audio twice. A file whose SHA-256 equals that
of a file met earlier in the listing (a copy under another label, or twice under one) is rejected
with a reason naming the first one, so a recording is never in two folds, nor under two labels.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from shared_data.dataset import inputs as inputs_lib
from shared_data.dataset import presence
from shared_data.dataset.cache import SongCache, cache_key
from shared_data.dataset.features import FeatureParams
from shared_data.errors import AudioError

# wave [2, n] float32 @ 44.1 kHz -> its cache entry (shared_data.dataset.stage.featurise_song)
Featurise = Callable[[np.ndarray], dict[str, np.ndarray]]


def mels_key(stem: str) -> str:
    """The song-cache array holding the mels of ``stem``."""
    return f"mels_{stem}"


def entry_clips(entry: Mapping[str, np.ndarray]) -> int:
    """Clips of a song's cache entry (every stem has as many)."""
    return int(next(v.shape[0] for k, v in entry.items() if k.startswith("mels_")))


@dataclasses.dataclass
class MelStats:
    """Running count/mean/M2 in float64 (Chan et al.), combined per song in a fixed order."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def update(self, x: np.ndarray) -> None:
        """Add every value of ``x`` (any shape)."""
        x = np.asarray(x, dtype=np.float64)
        n_b, mean_b = x.size, float(x.mean())
        m2_b = float(((x - mean_b) ** 2).sum())
        n = self.n + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / n
        self.m2 += m2_b + delta * delta * self.n * n_b / n
        self.n = n

    @property
    def std(self) -> float:
        """Population standard deviation (NaN before any update)."""
        return float(np.sqrt(self.m2 / self.n)) if self.n else float("nan")


@dataclasses.dataclass(frozen=True)
class Song:
    """An accepted song of a build (its mels are in the song cache under ``key``)."""

    path: str
    song_id: str
    label: str | None
    key: str
    n_clips: int
    first_clip: int  # clip_index of the first clip: files of one song number on consecutively


@dataclasses.dataclass
class Processed:
    """What processing the listed songs gave: a report row per file, the accepted songs, the
    train mel statistics per stored stem and how many songs came from the cache of an earlier
    build."""

    rows: list[dict[str, Any]]
    songs: list[Song]
    stats: dict[str, MelStats]
    n_cached: int


@dataclasses.dataclass(frozen=True)
class SongSettings:
    """The settings that shape a song's features (its cache key) and how it is generated/read;
    ``stems``: the stems the build stores (not part of the key: an entry holds every stem)."""

    separator_info: dict[str, Any]
    stems: tuple[str, ...]
    params: FeatureParams
    seed: int
    seconds: float


def song_key(data: inputs_lib.SongData, settings: SongSettings) -> str:
    """The cache key of a fingerprinted song under ``settings`` (hex SHA-256)."""
    return cache_key(
        input_sha256=data.sha256,
        separator=settings.separator_info,
        feature_params=settings.params.to_dict(),
    )


def _one(
    item: inputs_lib.SongInput,
    data: inputs_lib.SongData,
    settings: SongSettings,
    cache: SongCache,
    featurise: Featurise,
    fresh: frozenset[str],
) -> tuple[str, dict[str, np.ndarray], bool]:
    """``(cache key, cache entry, came from an earlier build's cache)`` of one fingerprinted
    song; entries whose key is in ``fresh`` were computed by this build. An entry lacking a
    stored stem (another separator's) is recomputed."""
    key = song_key(data, settings)
    entry = cache.get_entry(key)
    if entry is not None and all(mels_key(s) in entry for s in settings.stems):
        return key, entry, key not in fresh
    entry = featurise(data.load())
    if entry_clips(entry) == 0:
        raise AudioError(item.path, "no clip: shorter than the minimum length")
    cache.put(key, entry)
    return key, entry, False


def process_songs(
    items: Sequence[inputs_lib.SongInput],
    settings: SongSettings,
    cache: SongCache,
    featurise: Featurise,
    *,
    desc: str,
    progress: bool,
    fresh: frozenset[str] = frozenset(),
) -> Processed:
    """Process ``items`` in order; a bad file becomes a rejected row, never an exception.

    ``fresh``: cache keys this build already computed (its Beam stage); they are not counted as
    reused from an earlier build.

    Rows: ``path``, ``label``, ``split``, ``status`` (ok|rejected), ``reason``, ``n_clips``,
    ``song_id``/``sha256`` (once known), ``cached`` and the stem-presence fields of
    :func:`shared_data.dataset.presence.row_fields` (ok rows).
    """
    out = Processed([], [], {stem: MelStats() for stem in settings.stems}, 0)
    first_of_sha: dict[str, str] = {}
    clips_of_song: dict[str, int] = {}
    bar = tqdm(items, desc=desc, unit="song", disable=not progress)
    for item in bar:
        split = "train" if item.label is not None else "test"
        row: dict[str, Any] = {"path": item.path, "label": item.label, "split": split}
        try:
            data = inputs_lib.read_song(
                item, params=settings.params, seed=settings.seed, seconds=settings.seconds
            )
            row.update(song_id=data.song_id, sha256=data.sha256)
            if data.sha256 in first_of_sha:
                raise AudioError(
                    item.path,
                    f"same audio as {first_of_sha[data.sha256]} (identical SHA-256); a recording "
                    "is used once, so this copy is left out",
                )
            first_of_sha[data.sha256] = item.path
            key, entry, cached = _one(item, data, settings, cache, featurise, fresh)
        except AudioError as err:
            out.rows.append({**row, "status": "rejected", "reason": err.reason, "n_clips": 0})
            continue
        out.n_cached += cached
        n = entry_clips(entry)
        fields = presence.row_fields(entry, settings.stems)
        out.rows.append(
            {**row, "cached": cached, "status": "ok", "reason": None, "n_clips": n, **fields}
        )
        first = clips_of_song.get(data.song_id, 0)
        clips_of_song[data.song_id] = first + n
        out.songs.append(Song(item.path, data.song_id, item.label, key, n, first))
        if item.label is not None:
            for stem, stats in out.stats.items():
                stats.update(entry[mels_key(stem)])
    bar.close()
    return out
