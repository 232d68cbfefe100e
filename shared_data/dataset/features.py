"""The feature definition: a song's waveform -> 3-s log-mel clips ``[n_clips, 128, 128]`` float32.

Exactly (defaults of :class:`FeatureParams`): mono 22,050 Hz (channels averaged, soxr resampling);
the song cut into non-overlapping clips of 66,150 samples (3 s); per clip
``librosa.feature.melspectrogram`` (n_fft 2048, hop 512, Hann window, ``center=True`` with zero
padding, power 2, 128 Slaney-normalised Slaney-scale mel bands, 0 Hz to Nyquist) -> ``[128, 130]``;
``librosa.power_to_db`` against a FIXED reference (``ref=1.0``, ``amin=1e-10``, no ``top_db``), so
dB values are absolute: a nearly silent clip stays near the -100 dB floor instead of being lifted
to 0 dB as a per-clip maximum reference would; the first 128 frames are kept -> ``[128, 128]``.

Last partial clip: when the full clips leave the end of the song uncovered, the window at the next
hop position is kept, zero-padded at the end, if it holds at least ``min_seconds`` of audio, and
dropped otherwise (with the default hop: a 10.0-s song gives 4 clips, a 9.9-s song 3). A song
shorter than ``min_seconds`` gives zero clips; raising an error that names the song is the caller's
job (:func:`shared_data.audio.decode.load_audio` already rejects such files).

Everything here is pure (no I/O). The JAX frontend reproduces :func:`clips_to_mels` with
:func:`mel_filterbank`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

import librosa
import numpy as np

from shared_data.audio.decode import mix_channels
from shared_data.errors import DataError

__all__ = [
    "DEFAULT_PARAMS",
    "FeatureParams",
    "clip_to_mel",
    "clips_to_mels",
    "mel_filterbank",
    "song_to_clips",
    "song_to_mels",
    "to_mono_22k",
]

# Clips per librosa call: batching amortises per-call overhead; 64 clips' STFTs take ~70 MB.
_BATCH = 64


@dataclasses.dataclass(frozen=True)
class FeatureParams:
    """Every number that defines a feature; stored in the dataset metadata (:meth:`to_dict`).

    Attributes:
        sr: sample rate of the featurised mono signal (Hz).
        res_type: librosa resampler used to reach ``sr``.
        n_fft, hop_length, window, center, pad_mode, power: the STFT, as in
            ``librosa.feature.melspectrogram``.
        n_mels, fmin, fmax, htk, norm: the mel filter bank (``librosa.filters.mel``); ``fmax``
            None means ``sr / 2``; ``htk=False`` is the Slaney mel scale.
        db_ref, db_amin, db_top_db: ``librosa.power_to_db`` arguments. ``db_ref`` is a fixed power
            (never a per-clip statistic); values are floored at ``10*log10(db_amin)`` = -100 dB;
            ``db_top_db`` None applies no clip-relative floor.
        clip_samples: samples per clip at ``sr`` (66,150 = 3 s -> 130 STFT frames).
        frames: STFT frames kept per clip (the first ``frames`` of 130).
        clip_hop: samples between clip starts; ``clip_samples`` gives non-overlapping clips.
        min_seconds: a trailing partial clip is kept (zero-padded) when it holds at least this.
    """

    sr: int = 22050
    res_type: str = "soxr_hq"
    n_fft: int = 2048
    hop_length: int = 512
    window: str = "hann"
    center: bool = True
    pad_mode: str = "constant"
    power: float = 2.0
    n_mels: int = 128
    fmin: float = 0.0
    fmax: float | None = None
    htk: bool = False
    norm: str | None = "slaney"
    db_ref: float = 1.0
    db_amin: float = 1e-10
    db_top_db: float | None = None
    clip_samples: int = 66150
    frames: int = 128
    clip_hop: int = 66150
    min_seconds: float = 1.0

    def __post_init__(self) -> None:
        problems = []
        if self.frames < 1 or self.frames > self.stft_frames:
            problems.append(f"frames={self.frames} not in 1..{self.stft_frames}")
        if self.clip_hop < 1:
            problems.append(f"clip_hop={self.clip_hop} must be positive")
        if not 0 < self.min_samples <= self.clip_samples:
            problems.append(f"min_seconds={self.min_seconds} must be in (0, clip length]")
        if self.db_ref <= 0 or self.db_amin <= 0:
            problems.append("db_ref and db_amin must be positive")
        if problems:
            raise DataError("bad feature parameters: " + "; ".join(problems))

    @property
    def stft_frames(self) -> int:
        """STFT frames librosa yields for one clip (130 for the defaults)."""
        if self.center:
            return 1 + self.clip_samples // self.hop_length
        return 1 + (self.clip_samples - self.n_fft) // self.hop_length

    @property
    def min_samples(self) -> int:
        """``min_seconds`` in samples at ``sr``."""
        return int(round(self.min_seconds * self.sr))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> FeatureParams:
        """Inverse of :meth:`to_dict`; absent fields take their defaults, unknown ones raise."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise DataError(
                f"unknown feature parameters {unknown}: the dataset was built by another "
                "version of vocalgenre; rebuild it with python -m shared_data.build"
            )
        return cls(**values)


DEFAULT_PARAMS = FeatureParams()


def mel_filterbank(params: FeatureParams = DEFAULT_PARAMS) -> np.ndarray:
    """The mel filter bank ``[n_mels, n_fft // 2 + 1]`` float32 (read-only; cached)."""
    return _mel_filterbank(params)


@functools.lru_cache(maxsize=8)
def _mel_filterbank(params: FeatureParams) -> np.ndarray:
    basis = librosa.filters.mel(
        sr=params.sr,
        n_fft=params.n_fft,
        n_mels=params.n_mels,
        fmin=params.fmin,
        fmax=params.fmax,
        htk=params.htk,
        norm=params.norm,
        dtype=np.float32,
    )
    basis.setflags(write=False)
    return basis


def to_mono_22k(wave: np.ndarray, sr: int, params: FeatureParams = DEFAULT_PARAMS) -> np.ndarray:
    """Down-mix ``wave`` ``[C, n]`` or ``[n]`` (see :func:`shared_data.audio.decode.mix_channels`)
    and resample it to ``params.sr``: float32 ``[n']``."""
    mono = mix_channels(wave, 1)[0]
    if sr != params.sr:
        mono = librosa.resample(mono, orig_sr=sr, target_sr=params.sr, res_type=params.res_type)
    return np.ascontiguousarray(mono, dtype=np.float32)


def song_to_clips(mono: np.ndarray, params: FeatureParams = DEFAULT_PARAMS) -> np.ndarray:
    """Cut a mono song ``[n]`` at ``params.sr`` into clips float32 ``[n_clips, clip_samples]``.

    Full clips start every ``clip_hop`` samples; then, if the song has samples no full clip covers,
    the window at the next hop position is kept, zero-padded, when it holds at least
    ``min_seconds`` of audio. ``n_clips`` may be 0.
    """
    mono = np.asarray(mono, dtype=np.float32)
    if mono.ndim != 1:
        raise ValueError(f"song_to_clips expects a mono [n] signal, got shape {mono.shape}")
    size, hop = params.clip_samples, params.clip_hop
    n_full = 0 if mono.size < size else 1 + (mono.size - size) // hop
    clips = [np.zeros((0, size), dtype=np.float32)]
    if n_full:
        clips.append(np.lib.stride_tricks.sliding_window_view(mono, size)[::hop][:n_full])
    tail_start = n_full * hop
    covered = (n_full - 1) * hop + size if n_full else 0
    if covered < mono.size and mono.size - tail_start >= params.min_samples:
        tail = np.zeros((1, size), dtype=np.float32)
        tail[0, : mono.size - tail_start] = mono[tail_start:]
        clips.append(tail)
    return np.concatenate(clips, axis=0)


def clips_to_mels(clips: np.ndarray, params: FeatureParams = DEFAULT_PARAMS) -> np.ndarray:
    """Log-mels of a batch of clips ``[N, clip_samples]`` -> float32 ``[N, n_mels, frames]``."""
    clips = np.asarray(clips, dtype=np.float32)
    if clips.ndim != 2 or clips.shape[1] != params.clip_samples:
        raise ValueError(f"clips must be [N, {params.clip_samples}], got shape {clips.shape}")
    out = np.empty((clips.shape[0], params.n_mels, params.frames), dtype=np.float32)
    for start in range(0, clips.shape[0], _BATCH):
        power = librosa.feature.melspectrogram(
            y=clips[start : start + _BATCH],
            sr=params.sr,
            n_fft=params.n_fft,
            hop_length=params.hop_length,
            window=params.window,
            center=params.center,
            pad_mode=params.pad_mode,
            power=params.power,
            n_mels=params.n_mels,
            fmin=params.fmin,
            fmax=params.fmax,
            htk=params.htk,
            norm=params.norm,
        )
        db = librosa.power_to_db(
            power, ref=params.db_ref, amin=params.db_amin, top_db=params.db_top_db
        )
        # Crop after the dB step, so that a clip-relative top_db would see the whole clip.
        out[start : start + _BATCH] = db[..., : params.frames]
    return out


def clip_to_mel(clip: np.ndarray, params: FeatureParams = DEFAULT_PARAMS) -> np.ndarray:
    """Log-mel feature of one clip ``[clip_samples]`` -> float32 ``[n_mels, frames]``."""
    clip = np.asarray(clip, dtype=np.float32)
    if clip.ndim != 1:
        raise ValueError(f"clip must be [{params.clip_samples}], got shape {clip.shape}")
    return clips_to_mels(clip[None], params)[0]


def song_to_mels(wave: np.ndarray, sr: int, params: FeatureParams = DEFAULT_PARAMS) -> np.ndarray:
    """A song ``[C, n]`` or ``[n]`` at ``sr`` -> float32 ``[n_clips, n_mels, frames]``.

    Down-mix, resample to ``params.sr``, cut into clips (:func:`song_to_clips`), featurise.
    ``n_clips`` is 0 for a song shorter than ``params.min_seconds``.
    """
    return clips_to_mels(song_to_clips(to_mono_22k(wave, sr, params), params), params)
