"""The log-mel frontend in JAX: ``shared_data.dataset.features.clips_to_mels`` on the accelerator.

Computes exactly the features of :mod:`shared_data.dataset.features` (librosa's ``melspectrogram`` +
``power_to_db``) from clips already at ``params.sr``: the same window
(``librosa.filters.get_window``), the same mel filter bank
(:func:`shared_data.dataset.features.mel_filterbank`), librosa's ``center=True`` padding
(``pad_mode``, "constant" = zeros in librosa 0.11), power, dB with the fixed reference and floor,
and the first ``params.frames`` frames. The FFT runs in float64 as librosa's does (see
``_clips_to_mels``); the mel projection runs at full float32 precision even where the default matmul
precision is lower (TF32 on NVIDIA GPUs), so GPU features match the CPU reference. Resampling and
slicing songs into clips stay in ``shared_data.dataset.features`` (soxr on the host).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import librosa
import numpy as np

from shared_data.dataset.features import DEFAULT_PARAMS, FeatureParams, mel_filterbank


def _frames(clips: jax.Array, params: FeatureParams) -> jax.Array:
    """Clips ``[N, clip_samples]`` -> librosa's STFT frames ``[N, stft_frames, n_fft]``."""
    if params.center:
        pad = params.n_fft // 2
        clips = jnp.pad(clips, ((0, 0), (pad, pad)), mode=params.pad_mode)
    starts = np.arange(params.stft_frames) * params.hop_length
    index = starts[:, None] + np.arange(params.n_fft)[None, :]
    return clips[:, index]


def _clips_to_mels(clips: jax.Array, basis: jax.Array, params: FeatureParams) -> jax.Array:
    # librosa multiplies the float32 frames by a float64 window, so its FFT runs in float64 and is
    # rounded to complex64 afterwards. A float32 FFT's rounding noise (~-145 dB of the clip's peak
    # per bin) would shift the quietest mel bands (the top band of a resampled song sits 120-130 dB
    # below the peak) by up to 0.2 dB; the float64 FFT matches librosa there to ~1e-5 dB.
    window = librosa.filters.get_window(params.window, params.n_fft, fftbins=True)
    frames = _frames(clips, params).astype(jnp.float64) * jnp.asarray(window, jnp.float64)
    spec = jnp.fft.rfft(frames, axis=-1).astype(jnp.complex64)
    power = jnp.abs(spec) ** params.power  # [N, frames, bins] float32
    mel = jnp.einsum("mf,ntf->nmt", basis, power, precision=jax.lax.Precision.HIGHEST)
    db = 10.0 * jnp.log10(jnp.maximum(mel, params.db_amin))
    db = db - 10.0 * np.log10(max(params.db_amin, params.db_ref))
    if params.db_top_db is not None:
        # Clip-relative floor over all the clip's frames, before cropping.
        db = jnp.maximum(db, db.max(axis=(1, 2), keepdims=True) - params.db_top_db)
    return db[..., : params.frames].astype(jnp.float32)


@functools.lru_cache(maxsize=8)
def _compiled(params: FeatureParams):
    basis = jnp.asarray(mel_filterbank(params))
    return jax.jit(functools.partial(_clips_to_mels, basis=basis, params=params))


def clips_to_mels(
    clips: jax.Array | np.ndarray, params: FeatureParams = DEFAULT_PARAMS
) -> jax.Array:
    """Log-mels of clips ``[N, clip_samples]`` float32 -> ``[N, n_mels, frames]`` float32.

    Jitted per ``params`` (and per batch size ``N``); runs on the default device and returns a
    device array. Equal to ``shared_data.dataset.features.clips_to_mels`` within float32 rounding.
    """
    clips = jnp.asarray(clips, dtype=jnp.float32)
    if clips.ndim != 2 or clips.shape[1] != params.clip_samples:
        raise ValueError(f"clips must be [N, {params.clip_samples}], got shape {clips.shape}")
    # 64-bit types only inside this call (thread-local), for the FFT; the result is float32.
    with jax.enable_x64(True):
        return _compiled(params)(clips)


def clip_to_mel(clip: jax.Array | np.ndarray, params: FeatureParams = DEFAULT_PARAMS) -> jax.Array:
    """Log-mel feature of one clip ``[clip_samples]`` -> float32 ``[n_mels, frames]``."""
    clip = jnp.asarray(clip, dtype=jnp.float32)
    if clip.ndim != 1:
        raise ValueError(f"clip must be [{params.clip_samples}], got shape {clip.shape}")
    return clips_to_mels(clip[None], params)[0]
