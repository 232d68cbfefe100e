"""Audio decoding: any file -> float32 ``[channels, samples]`` at a fixed rate, or a clear error.

Decoding goes through libsndfile (``soundfile``: WAV, AIFF, FLAC, Ogg/Vorbis/Opus, MP3, ...) and
falls back to ``audioread`` (whatever backend it finds, e.g. ffmpeg) for other formats. Every
problem with a file raises :class:`~shared_data.errors.AudioError` naming the file and a short,
stable reason (the first words are fixed, so build reports can group by them):

============================  ==============================================================
``empty file``                the file has zero bytes
``not an audio file: ...``    no decoder recognises the format
``corrupt data: ...``         the decoder failed part-way (e.g. ``flac decoder lost sync``)
``truncated: ...``            the container promises more than the file holds; see
                              :mod:`shared_data.audio.integrity` for the rule per format
``incomplete decode: ...``    an MP3 decoder returned less than its frames hold
``empty audio: ...``          a valid header with no samples
``non-finite samples: ...``   NaN or inf anywhere in the decoded samples
``too short: ...``            shorter than ``min_seconds``
============================  ==============================================================

Length policy: a song shorter than ``min_seconds`` (default 1 s) is rejected; one between
``min_seconds`` and ``pad_to_seconds`` (default 3 s, one feature clip) is zero-padded at the end to
``pad_to_seconds``; longer songs are returned whole. Both bounds are parameters of
:func:`load_audio`; ``pad_to_seconds=0`` turns padding off.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf

from shared_data.audio.integrity import truncation_reason
from shared_data.errors import AudioError

__all__ = ["AudioInfo", "audio_info", "load_audio", "mix_channels", "write_wav"]

_HALF = float(np.sqrt(0.5))
# Where each source channel goes in a stereo down-mix, by WAVE_FORMAT_EXTENSIBLE's default speaker
# order for that channel count (also FLAC's). ITU-R BS.775 gains: fronts 1, centre and surrounds
# 1/sqrt(2), LFE dropped; each output row is then normalised to sum to one (see mix_channels).
_L, _R, _C, _LFE, _LS, _RS = (1, 0), (0, 1), (_HALF, _HALF), (0, 0), (_HALF, 0), (0, _HALF)
_STEREO_GAINS = {
    3: (_L, _R, _C),  # FL FR FC
    4: (_L, _R, _LS, _RS),  # FL FR BL BR
    5: (_L, _R, _C, _LS, _RS),  # FL FR FC BL BR
    6: (_L, _R, _C, _LFE, _LS, _RS),  # FL FR FC LFE BL BR (5.1)
    7: (_L, _R, _C, _LFE, _C, _LS, _RS),  # FL FR FC LFE BC SL SR (6.1)
    8: (_L, _R, _C, _LFE, _LS, _RS, _LS, _RS),  # FL FR FC LFE BL BR SL SR (7.1)
}


@dataclass(frozen=True)
class AudioInfo:
    """What a file's header says, without decoding it."""

    path: str
    sample_rate: int
    channels: int
    frames: int
    format: str
    subtype: str

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate


def audio_info(path: str | os.PathLike[str]) -> AudioInfo:
    """Header information of a file libsndfile reads; raises :class:`AudioError` otherwise."""
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, OSError) as err:
        raise AudioError(path, f"not an audio file: {_sf_message(err)}") from err
    return AudioInfo(
        str(path), info.samplerate, info.channels, info.frames, info.format, info.subtype
    )


def mix_channels(wave: np.ndarray, channels: int) -> np.ndarray:
    """Down-mix or up-mix ``wave`` ``[C, n]`` to ``[channels, n]`` float32 (``channels`` 1 or 2).

    - to stereo: mono is duplicated; stereo is unchanged; 3-8 channels are read in the WAVE/FLAC
      speaker order and mixed with ITU-R BS.775 gains (fronts 1, centre and surrounds 1/sqrt(2),
      LFE dropped), each side's gains normalised to sum to one, so a signal present in every
      (non-LFE) channel keeps its level and nothing can clip; more than 8 channels of unknown
      layout are averaged into both sides.
    - to mono: the stereo mix (as above) averaged, i.e. ``mean(L, R)`` for stereo input.

    Input that already has ``channels`` float32 channels is returned as is, not copied.
    """
    if channels not in (1, 2):
        raise ValueError(f"channels must be 1 or 2, got {channels}")
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim == 1:
        wave = wave[None]
    n_in = wave.shape[0]
    if n_in == 1:
        stereo = np.repeat(wave, 2, axis=0)
    elif n_in == 2:
        stereo = wave
    else:
        gains = np.asarray(_STEREO_GAINS.get(n_in, [(1, 1)] * n_in), dtype=np.float32).T
        stereo = (gains / gains.sum(axis=1, keepdims=True)) @ wave
    if channels == 2:
        return stereo
    return wave if n_in == 1 else stereo.mean(axis=0, keepdims=True, dtype=np.float32)


def load_audio(
    path: str | os.PathLike[str],
    *,
    sr: int = 44100,
    channels: int = 2,
    min_seconds: float = 1.0,
    pad_to_seconds: float = 3.0,
) -> np.ndarray:
    """Decode, check, mix and resample one file.

    Args:
        path: any file libsndfile or audioread decodes.
        sr: output sample rate; resampled with soxr (``librosa.resample``, ``soxr_hq``).
        channels: 1 or 2 (see :func:`mix_channels` for the mixing rule).
        min_seconds: shorter files are rejected (``too short``).
        pad_to_seconds: shorter files (but >= ``min_seconds``) are zero-padded at the end to
            this length; 0 disables padding.

    Returns:
        float32 ``[channels, samples]``, ``samples >= round(pad_to_seconds * sr)``.

    Raises:
        AudioError: the file is unusable; ``.reason`` says why (see the module docstring).
    """
    if sr <= 0 or min_seconds < 0 or pad_to_seconds < 0:
        raise ValueError(f"bad load_audio arguments: {sr=}, {min_seconds=}, {pad_to_seconds=}")
    wave, native_sr = _decode(Path(path))
    if wave.shape[1] == 0:
        raise AudioError(path, "empty audio: the file holds no samples")
    bad = wave.size - int(np.isfinite(wave).sum())
    if bad:
        raise AudioError(path, f"non-finite samples: {bad} NaN/inf of {wave.size}")
    seconds = wave.shape[1] / native_sr
    if seconds < min_seconds:
        raise AudioError(path, f"too short: {seconds:.2f} s < {min_seconds:.2f} s")
    wave = mix_channels(wave, channels)
    if native_sr != sr:
        wave = librosa.resample(wave, orig_sr=native_sr, target_sr=sr, res_type="soxr_hq")
    target = int(round(pad_to_seconds * sr))
    if wave.shape[1] < target:
        wave = np.pad(wave, ((0, 0), (0, target - wave.shape[1])))
    return np.ascontiguousarray(wave, dtype=np.float32)


def write_wav(
    path: str | os.PathLike[str], wave: np.ndarray, sr: int, *, subtype: str = "PCM_16"
) -> None:
    """Write ``wave`` ``[C, n]`` (or ``[n]``, mono) float32 in [-1, 1] as a WAV file.

    ``subtype="PCM_16"`` (default, compact, what other tools expect) clips to [-1, 1] first, since
    libsndfile would otherwise wrap out-of-range samples; it refuses non-finite samples.
    ``subtype="FLOAT"`` stores the float32 samples bit-exactly, NaN and inf included. Missing parent
    directories are created.
    """
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim == 1:
        wave = wave[None]
    if wave.ndim != 2:
        raise ValueError(f"wave must be [channels, samples], got shape {wave.shape}")
    if subtype != "FLOAT":
        if not np.isfinite(wave).all():
            raise ValueError(f"{path}: cannot write non-finite samples as {subtype}")
        wave = np.clip(wave, -1.0, 1.0)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wave.T, sr, subtype=subtype, format="WAV")


def _decode(path: Path) -> tuple[np.ndarray, int]:
    """Decode ``path`` to float32 ``[C, n]`` at its native rate, checking it is complete."""
    try:
        data = path.read_bytes()
    except FileNotFoundError as err:
        raise AudioError(path, "file not found") from err
    except OSError as err:
        raise AudioError(path, f"unreadable: {err.strerror or err}") from err
    if not data:
        raise AudioError(path, "empty file")
    try:
        stream = sf.SoundFile(io.BytesIO(data))
    except sf.LibsndfileError as err:
        return _decode_audioread(path, _sf_message(err))
    with stream:
        container, declared, native_sr = stream.format, stream.frames, stream.samplerate
        try:
            frames = stream.read(dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as err:
            raise AudioError(path, f"corrupt data: {_sf_message(err)}") from err
    reason = truncation_reason(data, container, declared, frames.shape[0])
    if reason is not None:
        raise AudioError(path, reason)
    return np.ascontiguousarray(frames.T), native_sr


def _decode_audioread(path: Path, sf_reason: str) -> tuple[np.ndarray, int]:
    """The fallback for formats libsndfile does not know (audioread yields 16-bit PCM)."""
    import audioread  # a librosa dependency; imported lazily since it is rarely needed

    try:
        # Its stdlib backend imports the deprecated aifc, audioop and sunau modules.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            with audioread.audio_open(str(path)) as stream:
                native_sr, n_channels = stream.samplerate, stream.channels
                pcm = b"".join(stream)
    except (audioread.DecodeError, OSError, EOFError) as err:
        raise AudioError(path, f"not an audio file: {sf_reason}") from err
    samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % (2 * n_channels)], dtype="<i2")
    wave = samples.reshape(-1, n_channels).T.astype(np.float32) / np.float32(32768.0)
    return np.ascontiguousarray(wave), int(native_sr)


def _sf_message(err: Exception) -> str:
    """libsndfile's own words, without the repeated file name."""
    message = getattr(err, "error_string", None) or str(err)
    message = message.strip().removeprefix("Error :").strip().rstrip(".")
    return message.replace("\n", " ")[:200]
