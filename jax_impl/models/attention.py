"""CBAM attention (Woo et al. 2018, arXiv:1807.06521) on ResNet-18 in Flax NNX: ``cbam_resnet18``.

The mirror of ``torch_ref/models/attention.py`` (which documents the architecture): the family's
:class:`~jax_impl.models.resnet.ResNet` built with :class:`CBAMBasicBlock`, which is the ResNet
``BasicBlock`` plus ``cbam`` on the residual branch after ``bn2``, before the addition. Paths
mirror torchvision's keys plus ``layer{i}.{j}.cbam.channel.fc1`` / ``.fc2`` and
``layer{i}.{j}.cbam.spatial.conv`` / ``.bn``. NHWC throughout.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jax_impl.models.layers import BatchNorm, Dtype, conv2d, kaiming_normal_fan_out, linear
from jax_impl.models.registry import register_model
from jax_impl.models.resnet import BasicBlock, ResNet, shortcut

REDUCTION = 16
SPATIAL_KERNEL = 7


class ChannelAttention(nnx.Module):
    """``x * sigmoid(mlp(avgpool(x)) + mlp(maxpool(x)))`` on ``[B, H, W, C]``."""

    def __init__(self, channels: int, reduction: int = REDUCTION, **kw: Any):
        hidden = max(channels // reduction, 1)
        self.fc1 = linear(channels, hidden, **kw)
        self.fc2 = linear(hidden, channels, **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        def mlp(v: jax.Array) -> jax.Array:
            return self.fc2(jax.nn.relu(self.fc1(v)))

        att = mlp(x.mean(axis=(1, 2))) + mlp(x.max(axis=(1, 2)))
        return x * jax.nn.sigmoid(att)[:, None, None, :]


class SpatialAttention(nnx.Module):
    """``x * sigmoid(BN(conv7x7([max_c(x), mean_c(x)])))`` on ``[B, H, W, C]``."""

    def __init__(self, kernel_size: int = SPATIAL_KERNEL, **kw: Any):
        self.conv = conv2d(
            2, 1, kernel_size, padding=kernel_size // 2, kernel_init=kaiming_normal_fan_out, **kw
        )
        self.bn = BatchNorm(1, **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        pooled = jnp.concatenate(
            [x.max(axis=-1, keepdims=True), x.mean(axis=-1, keepdims=True)], axis=-1
        )
        return x * jax.nn.sigmoid(self.bn(self.conv(pooled)))


class CBAM(nnx.Module):
    """Channel then spatial attention; ``[B, H, W, C] -> [B, H, W, C]``."""

    def __init__(self, channels: int, reduction: int = REDUCTION, **kw: Any):
        self.channel = ChannelAttention(channels, reduction, **kw)
        self.spatial = SpatialAttention(**kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.spatial(self.channel(x))


class CBAMBasicBlock(BasicBlock):
    """The ResNet ``BasicBlock`` with :class:`CBAM` on the branch, before the addition."""

    def __init__(
        self,
        inplanes: int,
        planes: int,
        *,
        dtype: Dtype,
        param_dtype: Dtype,
        rngs: nnx.Rngs,
        **kwargs: Any,
    ):
        super().__init__(
            inplanes, planes, dtype=dtype, param_dtype=param_dtype, rngs=rngs, **kwargs
        )
        self.cbam = CBAM(planes * self.expansion, dtype=dtype, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        out = jax.nn.relu(self.bn1(self.conv1(x)))
        out = self.cbam(self.bn2(self.conv2(out)))
        return jax.nn.relu(out + shortcut(self.downsample, x))


@register_model("cbam_resnet18")
def cbam_resnet18(
    num_classes: int,
    in_chans: int = 1,
    *,
    dtype: Dtype = jnp.float32,
    param_dtype: Dtype = jnp.float32,
    rngs: nnx.Rngs | None = None,
) -> ResNet:
    """ResNet-18 with CBAM in every block and the reference report's stem.

    Input ``[B, H, W, in_chans]``, output logits ``[B, num_classes]``.
    """
    return ResNet(
        CBAMBasicBlock,
        (2, 2, 2, 2),
        num_classes,
        in_chans,
        dtype=dtype,
        param_dtype=param_dtype,
        rngs=rngs,
        name="cbam_resnet18",
    )
