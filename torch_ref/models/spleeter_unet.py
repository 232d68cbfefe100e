"""Spleeter's source-separation U-Net (Deezer, 2019) in PyTorch, NCHW.

One network per stem. Input: the magnitude spectrogram of a stereo patch, ``[B, 2, T, F]`` float32
(T = 512 STFT frames, F = 1024 bins); output: the stem's estimated magnitude, same shape (a sigmoid
mask times the input).

The layout follows ``spleeter/model/functions/unet.py`` exactly, including two quirks that matter
for the pretrained weights: the skip connections and the first up-sampling take the convolution
outputs *before* batch norm, and the sixth down block's batch norm + activation feed nothing. TF's
``padding="same"`` pads asymmetrically at stride 2 (more after than before), so the padding of the
strided convolutions and the cropping of the transposed convolutions are computed explicitly from
the input size by :func:`~shared_data.architecture.spleeter_unet.same_padding`
(``jax_impl/models/spleeter_unet.py`` uses the same rule).

Not a classifier, hence not in the model registry; ``torch_ref/spleeter.py`` builds it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from shared_data.architecture import spleeter_unet as spec

BN_MOMENTUM = 0.01  # torch's convention for Keras' 0.99 (spec.KERAS_BN_MOMENTUM)


class DownBlock(nn.Module):
    """5x5 stride-2 "same" convolution, then batch norm and LeakyReLU(0.2)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, spec.KERNEL, stride=spec.STRIDE)
        self.bn = nn.BatchNorm2d(out_channels, eps=spec.BN_EPS, momentum=BN_MOMENTUM)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x [B, C, H, W]`` -> (conv output, activated output), each ``[B, C', ⌈H/2⌉, ⌈W/2⌉]``."""
        top, bottom = spec.same_padding(x.shape[2], spec.KERNEL, spec.STRIDE)
        left, right = spec.same_padding(x.shape[3], spec.KERNEL, spec.STRIDE)
        conv = self.conv(F.pad(x, (left, right, top, bottom)))
        return conv, F.leaky_relu(self.bn(conv), spec.LEAKY_SLOPE)


class UpBlock(nn.Module):
    """5x5 stride-2 "same" transposed convolution, then ReLU, batch norm and optional dropout."""

    def __init__(self, in_channels: int, out_channels: int, dropout: bool):
        super().__init__()
        self.conv = nn.ConvTranspose2d(in_channels, out_channels, spec.KERNEL, stride=spec.STRIDE)
        self.bn = nn.BatchNorm2d(out_channels, eps=spec.BN_EPS, momentum=BN_MOMENTUM)
        self.dropout = nn.Dropout(spec.DROPOUT) if dropout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, C, H, W]`` -> ``[B, C', 2H, 2W]``."""
        top, bottom = spec.transposed_same_crop(x.shape[2], spec.KERNEL, spec.STRIDE)
        left, right = spec.transposed_same_crop(x.shape[3], spec.KERNEL, spec.STRIDE)
        y = self.conv(x)
        y = y[:, :, top : y.shape[2] - bottom, left : y.shape[3] - right]
        return self.dropout(self.bn(F.relu(y)))


class SpleeterUNet(nn.Module):
    """Spleeter's U-Net for one stem: ``[B, in_channels, T, F]`` magnitudes -> same shape.

    T and F need not be powers of two; the network restores the input size as long as each is
    divisible by 64 (six halvings), which Spleeter's 512 x 1024 patches are.

    State-dict keys: ``down{1..6}.{conv,bn}.*``, ``up{1..6}.{conv,bn}.*``, ``final.*``
    (``shared_data.separation.weights`` renames Deezer's checkpoint keys to these).
    """

    def __init__(self, in_channels: int = 2):
        super().__init__()
        ins = (in_channels, *spec.DOWN_CHANNELS[:-1])
        for i, (cin, cout) in enumerate(zip(ins, spec.DOWN_CHANNELS, strict=True), start=1):
            self.add_module(f"down{i}", DownBlock(cin, cout))
        # Up block i maps the previous output (concatenated with the skip, except for the first)
        # to the channels of down block 6 - i; the last one to a single channel.
        up_out = (*spec.DOWN_CHANNELS[-2::-1], 1)
        up_in = (spec.DOWN_CHANNELS[-1], *(2 * c for c in up_out[:-1]))
        for i, (cin, cout) in enumerate(zip(up_in, up_out, strict=True), start=1):
            self.add_module(f"up{i}", UpBlock(cin, cout, dropout=i <= spec.DROPOUT_BLOCKS))
        # "same" padding of an odd effective kernel (7)
        pad = spec.FINAL_DILATION * (spec.FINAL_KERNEL - 1) // 2
        self.final = nn.Conv2d(
            1, in_channels, spec.FINAL_KERNEL, dilation=spec.FINAL_DILATION, padding=pad
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Estimated stem magnitude ``[B, C, T, F]`` for input magnitudes ``x`` (same shape)."""
        if x.shape[2] % 64 or x.shape[3] % 64:
            raise ValueError(f"SpleeterUNet needs T and F divisible by 64, got {tuple(x.shape)}")
        skips = []
        h = x
        for i in range(1, len(spec.DOWN_CHANNELS) + 1):
            conv, h = getattr(self, f"down{i}")(h)
            skips.append(conv)
        # Spleeter feeds the last convolution output, not its activation, to the decoder.
        u = self.up1(skips[-1])
        for i, skip in enumerate(reversed(skips[:-1]), start=2):
            u = getattr(self, f"up{i}")(torch.cat([skip, u], dim=1))
        mask = torch.sigmoid(self.final(u))
        return mask * x
