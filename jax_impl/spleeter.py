"""Spleeter 2-stem separation in JAX (mirrors ``torch_ref/spleeter.py`` name for name).

The numbers and the song chunking are shared (``shared_data.separation.chunks``); this module does
one batch of padded-waveform segments: STFT -> one U-Net per stem -> ratio masks -> inverse STFT,
as one jitted function on the default device (the accelerator when present). In precision
``bf16`` the U-Nets compute in bfloat16 (float32 parameters and BatchNorm statistics, as the
training's bf16); the STFT, masks and overlap-add are float32 in either precision.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jax_impl.convert import load_torch_state
from jax_impl.models.spleeter_unet import SpleeterUNet
from shared_data.separation import weights as spleeter_weights
from shared_data.separation.chunks import DEFAULT_PARAMS, SpleeterParams
from shared_data.separation.spleeter import (
    SpleeterBackend,
    SpleeterSeparatorBase,
    register_spleeter_backend,
)

BACKEND = "jax"
DEFAULT_BATCH_PATCHES = 4


PRECISION_DTYPES = {"fp32": jnp.float32, "bf16": jnp.bfloat16}


def load_unet(state: Mapping[str, np.ndarray], dtype: jnp.dtype = jnp.float32) -> SpleeterUNet:
    """A ``SpleeterUNet`` in eval mode holding ``state`` (numpy, torch key names and layouts),
    converted by ``jax_impl.convert``'s rules onto an abstract model (no random init), computing
    in ``dtype`` (its parameters stay float32)."""
    abstract = nnx.eval_shape(lambda: SpleeterUNet(in_channels=2, dtype=dtype))
    net = load_torch_state(abstract, state)
    net.eval()
    return net


def hann_window(length: int) -> jax.Array:
    """Periodic Hann window ``[length]`` float32 (``torch.hann_window(periodic=True)``)."""
    n = jnp.arange(length, dtype=jnp.float32)
    return 0.5 - 0.5 * jnp.cos(2.0 * jnp.pi * n / length)


def stft(segments: jax.Array, params: SpleeterParams = DEFAULT_PARAMS) -> jax.Array:
    """Segments ``[..., segment_samples]`` float32 -> complex64 ``[..., patch_frames, bins]``.

    Frames start every ``frame_step`` samples (no centring: the padding is in the segment),
    periodic Hann window, first ``bins`` bins of the real FFT. A frame spans ``frame_length /
    frame_step`` hop-sized blocks, so frames are concatenations of shifted block sequences.
    """
    hops = params.frame_length // params.frame_step
    t = params.patch_frames
    blocks = segments.reshape(*segments.shape[:-1], t + hops - 1, params.frame_step)
    frames = jnp.concatenate([blocks[..., j : j + t, :] for j in range(hops)], axis=-1)
    return jnp.fft.rfft(frames * hann_window(params.frame_length), axis=-1)[..., : params.bins]


def ratio_masks(estimates: jax.Array, params: SpleeterParams = DEFAULT_PARAMS) -> jax.Array:
    """Spleeter's masks from per-stem magnitude estimates ``[S, ...]`` -> ``[S, ...]`` in [0, 1]:
    ``(m_s^2 + eps / S) / (sum_s m_s^2 + eps)``."""
    power = jnp.square(estimates)
    return (power + params.epsilon / estimates.shape[0]) / (power.sum(0) + params.epsilon)


def inverse_stft(spec: jax.Array, params: SpleeterParams = DEFAULT_PARAMS) -> jax.Array:
    """Complex ``[..., patch_frames, bins]`` -> float32 ``[..., segment_samples]``.

    Bins above ``bins`` are zero (``irfft`` pads them); windowed frames are overlap-added and
    scaled by ``window_compensation``. Frames span ``frame_length / frame_step`` hops, so the
    overlap-add is a sum of that many shifted copies of the frames cut into hop-sized blocks.
    """
    frames = jnp.fft.irfft(spec, n=params.frame_length, axis=-1)
    frames = frames * hann_window(params.frame_length)
    hops = params.frame_length // params.frame_step
    blocks = frames.reshape(*frames.shape[:-1], hops, params.frame_step)  # [..., T, hops, step]
    lead = [(0, 0)] * (blocks.ndim - 3)
    out = sum(
        jnp.pad(blocks[..., :, j, :], [*lead, (j, hops - 1 - j), (0, 0)]) for j in range(hops)
    )
    return out.reshape(*out.shape[:-2], -1) * params.window_compensation


def separate_batch(
    nets: Sequence[SpleeterUNet], segments: jax.Array, params: SpleeterParams = DEFAULT_PARAMS
) -> jax.Array:
    """Segments ``[B, 2, segment_samples]`` -> per-stem waveforms ``[B, S, 2, segment_samples]``.

    The U-Nets see magnitudes ``[B, patch_frames, bins, 2]`` (NHWC: time, freq, stereo channels)
    and compute in their own dtype; their estimates are taken back to float32 for the masks.
    """
    spec = stft(segments, params)  # [B, 2, T, F]
    magnitude = jnp.moveaxis(jnp.abs(spec), 1, -1)
    estimates = jnp.stack(
        [jnp.moveaxis(net(magnitude).astype(jnp.float32), -1, 1) for net in nets]
    )  # [S, B, 2, T, F]
    masked = ratio_masks(estimates, params) * spec
    return jnp.swapaxes(inverse_stft(masked, params), 0, 1)


@functools.partial(jax.jit, static_argnums=(0, 3))
def _separate_batch_jit(
    graphdef: nnx.GraphDef, state: nnx.State, segments: jax.Array, params: SpleeterParams
) -> jax.Array:
    nets = nnx.merge(graphdef, state)
    return separate_batch(nets, segments, params)


class SpleeterSeparator(SpleeterSeparatorBase):
    """The ``spleeter`` separator on JAX: ``separate(songs)`` -> vocals, accompaniment, mix.

    Args:
        batch_patches: 512-frame patches (11.9 s of audio each) per jitted call; bounds memory.
        device: a ``jax.Device``; the default device (the accelerator when present) by default.
        precision: ``"fp32"``, or ``"bf16"`` for the U-Nets in bfloat16 (fast on accelerators;
            XLA:CPU computes it no faster than fp32).
    """

    backend = BACKEND

    def __init__(
        self,
        *,
        batch_patches: int = DEFAULT_BATCH_PATCHES,
        device: jax.Device | None = None,
        params: SpleeterParams = DEFAULT_PARAMS,
        precision: str = "fp32",
    ):
        self.params = params
        self.batch_patches = batch_patches
        self.device = device or jax.devices()[0]
        self.precision = self.check_precision(precision)
        self.choice = f"{BACKEND} {precision}"
        dtype = PRECISION_DTYPES[precision]
        states = spleeter_weights.load_stem_states()
        nets = nnx.List([load_unet(states[stem], dtype) for stem in params.stems])
        self._graphdef, state = nnx.split(nets)
        self._state = jax.device_put(state, self.device)

    def separate_batch(self, segments: np.ndarray) -> np.ndarray:
        """Segments ``[B, 2, segment_samples]`` -> ``[B, S, 2, segment_samples]``, float32."""
        x = jax.device_put(np.asarray(segments, dtype=np.float32), self.device)
        return np.asarray(_separate_batch_jit(self._graphdef, self._state, x, self.params))

    def framework_version(self) -> dict[str, str]:
        return {"jax": jax.__version__}


def has_accelerator() -> bool:
    """Whether jax computes on an accelerator here."""
    return any(d.platform != "cpu" for d in jax.devices())


register_spleeter_backend(BACKEND, SpleeterBackend(SpleeterSeparator, has_accelerator))
