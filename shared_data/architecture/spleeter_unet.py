"""Spleeter's 2-stem U-Net (``spleeter/model/functions/unet.py``): its numbers and padding rules.

Both ports (``jax_impl/models/spleeter_unet.py``, ``torch_ref/models/spleeter_unet.py``) build the
same network from these; only BatchNorm's momentum convention differs between the frameworks.
"""

from __future__ import annotations

DOWN_CHANNELS: tuple[int, ...] = (16, 32, 64, 128, 256, 512)
KERNEL = 5
STRIDE = 2
BN_EPS = 1e-3  # Keras' default, which Spleeter trained with.
KERAS_BN_MOMENTUM = 0.99  # Flax's decay; torch's momentum is 1 - this.
LEAKY_SLOPE = 0.2
DROPOUT = 0.5
DROPOUT_BLOCKS = 3  # the first three up blocks
FINAL_KERNEL = 4
FINAL_DILATION = 2


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TF ``padding="same"``: ``(before, after)`` padding of one axis of length ``size``.

    The output has ``ceil(size / stride)`` positions; the total padding is split with the odd
    element *after* (TF's rule, unlike torch's symmetric ``padding=``).
    """
    effective = (kernel - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def transposed_same_crop(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF ``Conv2DTranspose(padding="same")``: ``(before, after)`` crop of the full output.

    A transposed convolution is the gradient of a strided convolution from ``size * stride`` to
    ``size`` positions; TF crops the full ``(size - 1) * stride + kernel`` output by that forward
    convolution's "same" padding, giving exactly ``size * stride`` positions.
    """
    return same_padding(size * stride, kernel, stride)
