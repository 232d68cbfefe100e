"""Spleeter's source-separation U-Net (Deezer, 2019) in Flax NNX, NHWC.

Mirrors ``torch_ref/models/spleeter_unet.py`` name for name; attribute paths (``down1.conv``,
``up3.bn``, ``final``) are the torch state-dict keys, so ``jax_impl.convert.load_torch_state``
converts the weights by its rule table (conv OIHW -> HWIO, transposed conv IOHW -> flipped HWIO, BN
running statistics). One network per stem. Input: the magnitude spectrogram of a stereo patch,
``[B, T, F, 2]`` float32 (T = 512 frames, F = 1024 bins); output: the stem's estimated magnitude,
same shape (a sigmoid mask times the input).

As in ``spleeter/model/functions/unet.py``: skip connections and the first up-sampling take the
convolution outputs before batch norm; the sixth down block's batch norm + activation feed nothing;
TF ``padding="same"`` (asymmetric at stride 2) is computed explicitly by
:func:`~shared_data.architecture.spleeter_unet.same_padding`. Not a classifier, hence not in the
model registry; ``jax_impl/spleeter.py`` builds it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jax_impl.models import layers
from shared_data.architecture import spleeter_unet as spec

BN_MOMENTUM = spec.KERAS_BN_MOMENTUM  # Flax decay


class DownBlock(nnx.Module):
    """5x5 stride-2 "same" convolution, then batch norm and LeakyReLU(0.2)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        dtype: layers.Dtype,
        param_dtype: layers.Dtype,
        rngs: nnx.Rngs,
    ):
        self.conv = layers.conv2d(
            in_channels,
            out_channels,
            spec.KERNEL,
            stride=spec.STRIDE,
            bias=True,
            kernel_init=layers.torch_default_kernel_init,
            dtype=dtype,
            param_dtype=param_dtype,
            rngs=rngs,
        )
        self.bn = layers.BatchNorm(
            out_channels,
            momentum=BN_MOMENTUM,
            epsilon=spec.BN_EPS,
            dtype=dtype,
            param_dtype=param_dtype,
            rngs=rngs,
        )

    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``x [B, H, W, C]`` -> (conv output, activated output), each ``[B, ⌈H/2⌉, ⌈W/2⌉, C']``."""
        pads = [spec.same_padding(x.shape[axis], spec.KERNEL, spec.STRIDE) for axis in (1, 2)]
        conv = self.conv(jnp.pad(x, ((0, 0), *pads, (0, 0))))
        return conv, jax.nn.leaky_relu(self.bn(conv), spec.LEAKY_SLOPE)


class UpBlock(nnx.Module):
    """5x5 stride-2 "same" transposed convolution, then ReLU, batch norm and optional dropout."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        dropout: bool,
        *,
        dtype: layers.Dtype,
        param_dtype: layers.Dtype,
        rngs: nnx.Rngs,
    ):
        self.conv = layers.conv_transpose2d(
            in_channels,
            out_channels,
            spec.KERNEL,
            stride=spec.STRIDE,
            bias=True,
            dtype=dtype,
            param_dtype=param_dtype,
            rngs=rngs,
        )
        self.bn = layers.BatchNorm(
            out_channels,
            momentum=BN_MOMENTUM,
            epsilon=spec.BN_EPS,
            dtype=dtype,
            param_dtype=param_dtype,
            rngs=rngs,
        )
        # No RNG stream is stored (it would be state with no torch counterpart); training-mode
        # calls pass a key instead.
        self.dropout = nnx.Dropout(spec.DROPOUT) if dropout else None

    def __call__(self, x: jax.Array, *, key: jax.Array | None = None) -> jax.Array:
        """``x [B, H, W, C]`` -> ``[B, 2H, 2W, C']``; ``key`` feeds dropout in training mode."""
        (top, bottom), (left, right) = (
            spec.transposed_same_crop(x.shape[axis], spec.KERNEL, spec.STRIDE) for axis in (1, 2)
        )
        y = self.conv(x)
        y = y[:, top : y.shape[1] - bottom, left : y.shape[2] - right, :]
        y = self.bn(jax.nn.relu(y))
        if self.dropout is not None and not self.dropout.deterministic:
            if key is None:
                raise ValueError("SpleeterUNet in training mode needs key= for dropout")
            y = self.dropout(y, rngs=nnx.Rngs(dropout=key))
        return y


class SpleeterUNet(nnx.Module):
    """Spleeter's U-Net for one stem: ``[B, T, F, in_channels]`` magnitudes -> same shape.

    T and F must be divisible by 64 (six halvings), as Spleeter's 512 x 1024 patches are. Starts in
    training mode like a torch module; call ``.eval()`` for inference.
    """

    def __init__(
        self,
        in_channels: int = 2,
        *,
        dtype: layers.Dtype = jnp.float32,
        param_dtype: layers.Dtype = jnp.float32,
        rngs: nnx.Rngs | None = None,
    ):
        rngs = layers.default_rngs(rngs)
        kw = {"dtype": dtype, "param_dtype": param_dtype, "rngs": rngs}
        ins = (in_channels, *spec.DOWN_CHANNELS[:-1])
        for i, (cin, cout) in enumerate(zip(ins, spec.DOWN_CHANNELS, strict=True), start=1):
            setattr(self, f"down{i}", DownBlock(cin, cout, **kw))
        # Up block i maps the previous output (concatenated with the skip, except for the first)
        # to the channels of down block 6 - i; the last one to a single channel.
        up_out = (*spec.DOWN_CHANNELS[-2::-1], 1)
        up_in = (spec.DOWN_CHANNELS[-1], *(2 * c for c in up_out[:-1]))
        for i, (cin, cout) in enumerate(zip(up_in, up_out, strict=True), start=1):
            setattr(self, f"up{i}", UpBlock(cin, cout, i <= spec.DROPOUT_BLOCKS, **kw))
        # "same" padding of an odd effective kernel (7)
        pad = spec.FINAL_DILATION * (spec.FINAL_KERNEL - 1) // 2
        self.final = layers.conv2d(
            1,
            in_channels,
            spec.FINAL_KERNEL,
            dilation=spec.FINAL_DILATION,
            padding=pad,
            bias=True,
            kernel_init=layers.torch_default_kernel_init,
            **kw,
        )

    def __call__(self, x: jax.Array, *, key: jax.Array | None = None) -> jax.Array:
        """Estimated stem magnitude ``[B, T, F, C]`` for input magnitudes ``x`` (same shape).

        ``key`` feeds the dropout of the first three up blocks in training mode; ignored in eval.
        """
        if x.shape[1] % 64 or x.shape[2] % 64:
            raise ValueError(f"SpleeterUNet needs T and F divisible by 64, got {tuple(x.shape)}")
        skips = []
        h = x
        for i in range(1, len(spec.DOWN_CHANNELS) + 1):
            conv, h = getattr(self, f"down{i}")(h)
            skips.append(conv)
        keys = [None] * len(spec.DOWN_CHANNELS) if key is None else list(jax.random.split(key, 6))
        # Spleeter feeds the last convolution output, not its activation, to the decoder.
        u = self.up1(skips[-1], key=keys[0])
        for i, skip in enumerate(reversed(skips[:-1]), start=2):
            u = getattr(self, f"up{i}")(jnp.concatenate([skip, u], axis=-1), key=keys[i - 1])
        mask = jax.nn.sigmoid(self.final(u))
        return mask * x
