"""Spleeter 2-stem separation in PyTorch (mirrors ``jax_impl/spleeter.py`` name for name).

The numbers and the song chunking are shared (``shared_data.separation.chunks``); this module does
one batch of padded-waveform segments: STFT -> one U-Net per stem -> ratio masks -> inverse STFT.
Runs under ``torch.inference_mode`` on CUDA when present, else the CPU. In precision ``bf16`` the
U-Nets run under ``torch.autocast(device, torch.bfloat16)`` (float32 weights; oneDNN's bf16
kernels on a CPU with bf16 units); the STFT, masks and overlap-add are float32 in either precision.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from shared_data.separation import weights as spleeter_weights
from shared_data.separation.chunks import DEFAULT_PARAMS, SpleeterParams
from shared_data.separation.spleeter import (
    SpleeterBackend,
    SpleeterSeparatorBase,
    register_spleeter_backend,
)
from torch_ref.models.spleeter_unet import SpleeterUNet

BACKEND = "torch"
DEFAULT_BATCH_PATCHES = 4
PRECISION_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def load_unet(state: Mapping[str, np.ndarray], device: torch.device | str = "cpu") -> SpleeterUNet:
    """A ``SpleeterUNet`` in eval mode holding ``state`` (numpy, its own key names), on ``device``.

    Deezer's checkpoints carry no ``num_batches_tracked``; it is set to 0 (it only matters for
    ``momentum=None``). ``load_state_dict`` is strict, so a missing or extra key raises.
    """
    net = SpleeterUNet(in_channels=2)
    tensors = {k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in state.items()}
    for key in net.state_dict():
        if key.endswith("num_batches_tracked"):
            tensors.setdefault(key, torch.zeros((), dtype=torch.long))
    net.load_state_dict(tensors, strict=True)
    return net.eval().to(device)


def stft(segments: torch.Tensor, params: SpleeterParams = DEFAULT_PARAMS) -> torch.Tensor:
    """Segments ``[..., segment_samples]`` float32 -> complex64 ``[..., patch_frames, bins]``.

    Frames start every ``frame_step`` samples (no centring: the padding is in the segment),
    periodic Hann window, first ``bins`` bins of the real FFT.
    """
    window = torch.hann_window(params.frame_length, periodic=True, device=segments.device)
    frames = segments.unfold(-1, params.frame_length, params.frame_step)
    return torch.fft.rfft(frames * window, dim=-1)[..., : params.bins]


def ratio_masks(estimates: torch.Tensor, params: SpleeterParams = DEFAULT_PARAMS) -> torch.Tensor:
    """Spleeter's masks from per-stem magnitude estimates ``[S, ...]`` -> ``[S, ...]`` in [0, 1]:
    ``(m_s^2 + eps / S) / (sum_s m_s^2 + eps)``."""
    power = estimates.square()
    return (power + params.epsilon / estimates.shape[0]) / (power.sum(0) + params.epsilon)


def inverse_stft(spec: torch.Tensor, params: SpleeterParams = DEFAULT_PARAMS) -> torch.Tensor:
    """Complex ``[..., patch_frames, bins]`` -> float32 ``[..., segment_samples]``.

    Bins above ``bins`` are zero (``irfft`` pads them); windowed frames are overlap-added and
    scaled by ``window_compensation``. Frames span ``frame_length / frame_step`` hops, so the
    overlap-add is a sum of that many shifted copies of the frames cut into hop-sized blocks.
    """
    window = torch.hann_window(params.frame_length, periodic=True, device=spec.device)
    frames = torch.fft.irfft(spec, n=params.frame_length, dim=-1) * window
    hops = params.frame_length // params.frame_step
    blocks = frames.unflatten(-1, (hops, params.frame_step))  # [..., T, hops, step]
    t = blocks.shape[-3]
    out = blocks.new_zeros((*blocks.shape[:-3], t + hops - 1, params.frame_step))
    for j in range(hops):
        out[..., j : j + t, :] += blocks[..., :, j, :]
    return out.flatten(-2) * params.window_compensation


def separate_batch(
    nets: Sequence[SpleeterUNet],
    segments: torch.Tensor,
    params: SpleeterParams = DEFAULT_PARAMS,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Segments ``[B, 2, segment_samples]`` -> per-stem waveforms ``[B, S, 2, segment_samples]``.

    The U-Nets see magnitudes ``[B, 2, patch_frames, bins]`` (NCHW: stereo channels, time, freq)
    and compute in ``dtype`` (autocast, for bfloat16); their estimates are taken back to float32
    for the masks.
    """
    spec = stft(segments, params)  # [B, 2, T, F]
    magnitude = spec.abs()
    reduced = dtype != torch.float32
    with torch.autocast(segments.device.type, dtype=dtype, enabled=reduced):
        outputs = [net(magnitude) for net in nets]
    estimates = torch.stack([out.float() for out in outputs])  # [S, B, 2, T, F]
    masked = ratio_masks(estimates, params) * spec
    return inverse_stft(masked, params).transpose(0, 1)


class SpleeterSeparator(SpleeterSeparatorBase):
    """The ``spleeter`` separator on PyTorch: ``separate(songs)`` -> vocals, accompaniment, mix.

    Args:
        batch_patches: 512-frame patches (11.9 s of audio each) per U-Net call; bounds memory.
        device: torch device; CUDA when available by default.
        precision: ``"fp32"``, or ``"bf16"`` for the U-Nets under bfloat16 autocast (fast on CUDA
            and on CPUs with bf16 units; emulated, slow, on other CPUs).
    """

    backend = BACKEND

    def __init__(
        self,
        *,
        batch_patches: int = DEFAULT_BATCH_PATCHES,
        device: torch.device | str | None = None,
        params: SpleeterParams = DEFAULT_PARAMS,
        precision: str = "fp32",
    ):
        self.params = params
        self.batch_patches = batch_patches
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.precision = self.check_precision(precision)
        self.choice = f"{BACKEND} {precision}"
        states = spleeter_weights.load_stem_states()
        self.nets = [load_unet(states[stem], self.device) for stem in params.stems]

    def separate_batch(self, segments: np.ndarray) -> np.ndarray:
        """Segments ``[B, 2, segment_samples]`` -> ``[B, S, 2, segment_samples]``, float32."""
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(segments, dtype=np.float32)).to(self.device)
            dtype = PRECISION_DTYPES[self.precision]
            return separate_batch(self.nets, x, self.params, dtype).cpu().numpy()

    def framework_version(self) -> dict[str, str]:
        return {"torch": torch.__version__}


def has_accelerator() -> bool:
    """Whether torch computes on an accelerator here."""
    return torch.cuda.is_available()


register_spleeter_backend(BACKEND, SpleeterBackend(SpleeterSeparator, has_accelerator))
