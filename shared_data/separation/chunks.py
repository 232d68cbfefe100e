"""The backend-independent half of Spleeter separation: its numbers and the chunking of songs.

Spleeter (``spleeter/model/__init__.py``) prepends ``frame_length`` zeros to the waveform, takes a
Hann-windowed (periodic) STFT with ``pad_end``, keeps the first 1024 bins of the magnitude, cuts it
into patches of 512 frames (the last zero-padded), runs one U-Net per stem on each patch, turns the
estimates into ratio masks ``(m_s^2 + eps / S) / (sum_s m_s^2 + eps)``, applies them to the complex
STFT (bins above 1024 masked to zero), inverts it by overlap-add times 2/3 (the Hann^2
overlap-add sum at 75 % overlap is 3/2) and crops the prepended zeros and the end padding.

The patches are independent, so the work splits exactly at patch boundaries: patch ``p`` needs the
waveform *segment* that its 512 frames cover, ``(512 - 1) * 1024 + 4096`` samples of the padded
song starting at ``p * 512 * 1024``, and its inverse STFT overlap-adds onto the same segment. A
backend therefore only implements ``separate_batch(segments [B, 2, segment_samples]) ->
[B, S, 2, segment_samples]`` (STFT -> U-Nets -> masks -> inverse STFT of one segment each), and
:func:`separate_in_chunks` feeds it fixed-size batches of segments drawn from all songs and sums
the results into the outputs; segments overlap by 3072 samples, and summing their overlap-adds is
exactly the overlap-add of the whole song. Nothing depends on how songs are grouped.

Memory budget (float32). Per song, the input and the S = 2 outputs stay on the host: 24 bytes per
stereo sample, 635 MB for a 10-minute song (n = 26,460,000, 51 patches). Per batch of B patches
in flight (``batch_patches``, default 4): the segments and their per-stem outputs (12.7 MB per
patch, host and device) and the backend's temporaries, 67 MB per patch under XLA
(``compile().memory_analysis()``: 269 MB for B = 4), independent of the song's length. Fixed: the
two U-Nets (2 x 39 MB) and the frameworks. Measured peak RSS of the whole process separating a
10-minute song on the CPU with B = 4 (``python -m benchmarks.preprocess``, BENCHMARKS.md): 3.0 GB
with JAX, 2.8 GB with PyTorch in fp32, 2.6 GB in bf16. Separating the song in one pass instead
would need 3.4 GB of XLA temporaries alone, growing linearly with the song's length.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from shared_data.errors import DataError

SeparateBatch = Callable[[np.ndarray], np.ndarray]


@dataclasses.dataclass(frozen=True)
class SpleeterParams:
    """Spleeter's 2-stem separation numbers (``spleeter/resources/2stems.json``).

    Attributes:
        sample_rate: the rate the model was trained at (Hz); songs must come at this rate.
        frame_length, frame_step: STFT window and hop (samples); periodic Hann window.
        bins: frequency bins the U-Net sees (of ``frame_length // 2 + 1``); the rest get mask 0.
        patch_frames: STFT frames per U-Net patch.
        epsilon: Spleeter's ``EPSILON`` in the ratio masks.
        window_compensation: overlap-add gain correction (1 / 1.5 for Hann^2 at 75 % overlap).
        stems: output stems, in checkpoint order.
    """

    sample_rate: int = 44100
    frame_length: int = 4096
    frame_step: int = 1024
    bins: int = 1024
    patch_frames: int = 512
    epsilon: float = 1e-10
    window_compensation: float = 2.0 / 3.0
    stems: tuple[str, ...] = ("vocals", "accompaniment")

    @property
    def segment_samples(self) -> int:
        """Padded-waveform samples one patch covers: ``(patch_frames - 1) * step + length``."""
        return (self.patch_frames - 1) * self.frame_step + self.frame_length

    @property
    def patch_step(self) -> int:
        """Samples between the starts of consecutive patches' segments."""
        return self.patch_frames * self.frame_step

    def num_frames(self, n_samples: int) -> int:
        """STFT frames of a song of ``n_samples``: ``ceil((n + frame_length) / frame_step)``."""
        return -(-(n_samples + self.frame_length) // self.frame_step)

    def num_patches(self, n_samples: int) -> int:
        """U-Net patches of a song of ``n_samples`` (the last one zero-padded)."""
        return -(-self.num_frames(n_samples) // self.patch_frames)

    def to_dict(self) -> dict[str, object]:
        """JSON-able dict of every field."""
        return {**dataclasses.asdict(self), "stems": list(self.stems)}


DEFAULT_PARAMS = SpleeterParams()


def check_songs(songs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Validate songs as stereo float waveforms ``[2, n]``; returns them as float32 arrays.

    Raises:
        DataError: a song that is not ``[2, n]`` with ``n >= 1``, or holds NaN/inf.
    """
    checked = []
    for i, song in enumerate(songs):
        arr = np.asarray(song, dtype=np.float32)
        if arr.ndim != 2 or arr.shape[0] != 2 or arr.shape[1] < 1:
            raise DataError(
                f"song {i}: Spleeter separates stereo [2, n] waveforms at 44.1 kHz, got shape "
                f"{arr.shape}; load it with shared_data.audio.decode.load_audio(path)"
            )
        if not np.isfinite(arr).all():
            raise DataError(f"song {i}: the waveform holds NaN or infinite samples")
        checked.append(arr)
    return checked


def song_segment(
    song: np.ndarray, patch: int, params: SpleeterParams = DEFAULT_PARAMS
) -> np.ndarray:
    """The padded-waveform segment ``[2, segment_samples]`` float32 under ``patch`` of ``song``.

    The padded waveform is ``frame_length`` zeros, the song, then zeros; it is never built whole.
    """
    start = patch * params.patch_step - params.frame_length  # in song coordinates
    segment = np.zeros((song.shape[0], params.segment_samples), dtype=np.float32)
    lo, hi = max(start, 0), min(start + params.segment_samples, song.shape[1])
    if hi > lo:
        segment[:, lo - start : hi - start] = song[:, lo:hi]
    return segment


def batch_size_for(n_items: int, batch_patches: int) -> int:
    """Size of the next batch when ``n_items`` segments remain: ``batch_patches``, or the smallest
    power of two that holds them all if that is smaller (so a short song, or the remainder of a
    long one, does not pay for a full batch, and a jitted backend compiles at most
    ``log2(batch_patches) + 2`` shapes)."""
    size = 1
    while size < min(n_items, batch_patches):
        size *= 2
    return min(size, batch_patches)


def separate_in_chunks(
    songs: Sequence[np.ndarray],
    separate_batch: SeparateBatch,
    *,
    batch_patches: int,
    params: SpleeterParams = DEFAULT_PARAMS,
) -> list[dict[str, np.ndarray]]:
    """Separate songs ``[2, n_i]`` float32 with a backend's ``separate_batch``, batch by batch.

    Args:
        songs: stereo waveforms at ``params.sample_rate``.
        separate_batch: ``segments [B, 2, segment_samples] float32 -> [B, S, 2, segment_samples]``,
            each the overlap-added, window-compensated inverse STFT of one segment per stem.
        batch_patches: segments per call (bounds the memory in flight). The remainder goes in
            a batch of the next power of two, zero-padded (see :func:`batch_size_for`).

    Returns:
        Per song ``{stem: [2, n_i] float32 for stem in params.stems, "mix": the song}``.
    """
    if batch_patches < 1:
        raise DataError(f"batch_patches must be at least 1, got {batch_patches}")
    songs = check_songs(songs)
    outputs = [
        [np.zeros_like(song) for _ in params.stems] for song in songs
    ]  # per song, per stem: [2, n]
    items = [
        (i, p) for i, song in enumerate(songs) for p in range(params.num_patches(song.shape[1]))
    ]
    first = 0
    while first < len(items):
        size = batch_size_for(len(items) - first, batch_patches)
        chunk = items[first : first + size]
        first += size
        batch = np.zeros((size, 2, params.segment_samples), dtype=np.float32)
        for j, (i, p) in enumerate(chunk):
            batch[j] = song_segment(songs[i], p, params)
        separated = np.asarray(separate_batch(batch))
        for j, (i, p) in enumerate(chunk):
            _add_segment(outputs[i], separated[j], p, params)
    return [
        {**dict(zip(params.stems, stems, strict=True)), "mix": song}
        for song, stems in zip(songs, outputs, strict=True)
    ]


def _add_segment(
    stems: list[np.ndarray], segment: np.ndarray, patch: int, params: SpleeterParams
) -> None:
    """Overlap-add one segment's per-stem output ``[S, 2, segment_samples]`` into ``stems``,
    dropping what falls on the prepended zeros or past the song's end."""
    start = patch * params.patch_step - params.frame_length
    n = stems[0].shape[1]
    lo, hi = max(start, 0), min(start + params.segment_samples, n)
    if hi <= lo:
        return
    for out, seg in zip(stems, segment, strict=True):
        out[:, lo:hi] += seg[:, lo - start : hi - start]
