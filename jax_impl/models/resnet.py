"""The ResNet family in Flax NNX: ResNet-18 and ResNeXt-50/101 as configurations of one class.

Mirrors torchvision's ``ResNet`` (v1.5: the stride sits on the 3x3 conv of a Bottleneck) with the
reference report's stem (3x3 stride-1 pad-1 ``conv1`` over ``in_chans``; no max-pool). Attribute
paths equal torchvision's state-dict keys (``conv1``, ``bn1``, ``layer1.0.conv1``,
``layer1.0.downsample.0``, ``fc``), so ``jax_impl.convert`` maps weights by rule. NHWC input
``[B, H, W, in_chans]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp
from flax import nnx

from jax_impl.models.layers import (
    BatchNorm,
    check_image_input,
    conv2d,
    default_rngs,
    global_avg_pool,
    kaiming_normal_fan_out,
    linear,
)
from jax_impl.models.registry import register_model

Dtype = Any


class BasicBlock(nnx.Module):
    """Two 3x3 convs (``conv1``/``bn1``, ``conv2``/``bn2``) and an optional ``downsample``."""

    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        *,
        stride: int = 1,
        groups: int = 1,
        width_per_group: int = 64,
        dtype: Dtype,
        param_dtype: Dtype,
        rngs: nnx.Rngs,
    ):
        if groups != 1 or width_per_group != 64:
            raise ValueError("BasicBlock only supports groups=1 and width_per_group=64")
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        ck = dict(kernel_init=kaiming_normal_fan_out, **kw)
        self.conv1 = conv2d(inplanes, planes, 3, stride=stride, padding=1, **ck)
        self.bn1 = BatchNorm(planes, **kw)
        self.conv2 = conv2d(planes, planes, 3, padding=1, **ck)
        self.bn2 = BatchNorm(planes, **kw)
        self.downsample = _downsample(inplanes, planes * self.expansion, stride, **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        out = nnx.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return nnx.relu(out + shortcut(self.downsample, x))


class Bottleneck(nnx.Module):
    """1x1 -> grouped 3x3 (stride here) -> 1x1 (x4); width ``planes * wpg / 64 * groups``."""

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        *,
        stride: int = 1,
        groups: int = 1,
        width_per_group: int = 64,
        dtype: Dtype,
        param_dtype: Dtype,
        rngs: nnx.Rngs,
    ):
        width = int(planes * (width_per_group / 64.0)) * groups
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        ck = dict(kernel_init=kaiming_normal_fan_out, **kw)
        self.conv1 = conv2d(inplanes, width, 1, **ck)
        self.bn1 = BatchNorm(width, **kw)
        self.conv2 = conv2d(width, width, 3, stride=stride, padding=1, groups=groups, **ck)
        self.bn2 = BatchNorm(width, **kw)
        self.conv3 = conv2d(width, planes * self.expansion, 1, **ck)
        self.bn3 = BatchNorm(planes * self.expansion, **kw)
        self.downsample = _downsample(inplanes, planes * self.expansion, stride, **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        out = nnx.relu(self.bn1(self.conv1(x)))
        out = nnx.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return nnx.relu(out + shortcut(self.downsample, x))


def _downsample(
    inplanes: int, outplanes: int, stride: int, **kw: Any
) -> nnx.List[nnx.Module] | None:
    """torchvision's ``downsample = Sequential(conv1x1(stride), BN)`` where the shape changes."""
    if stride == 1 and inplanes == outplanes:
        return None
    conv = conv2d(inplanes, outplanes, 1, stride=stride, kernel_init=kaiming_normal_fan_out, **kw)
    return nnx.List([conv, BatchNorm(outplanes, **kw)])


def shortcut(downsample: nnx.List[nnx.Module] | None, x: jax.Array) -> jax.Array:
    """A residual block's skip path: ``x`` ``[B, H, W, C]`` itself, or through ``downsample``
    (1x1 conv + BatchNorm, from ``_downsample``) where the block changes its shape."""
    if downsample is None:
        return x
    conv, bn = downsample
    return bn(conv(x))


class ResNet(nnx.Module):
    """torchvision's ResNet with the reference report's stem: ``[B, H, W, in_chans] -> [B,
    num_classes]``.

    Args:
        block: ``"basic"`` (ResNet-18/34) or ``"bottleneck"`` (ResNet-50+, ResNeXt), or a block
            class with their constructor and ``expansion`` (``attention.CBAMBasicBlock``), as
            torchvision's ``ResNet(block, layers)`` takes one.
        layers: blocks per stage, e.g. ``(2, 2, 2, 2)``.
        num_classes, in_chans: head size and input channels.
        groups, width_per_group: ResNeXt cardinality and per-group width (1, 64 = plain ResNet).
        dtype: compute dtype (float32; bfloat16 on the GPU). param_dtype: parameter dtype.
        name: the registry name, used in error messages.
    """

    def __init__(
        self,
        block: Literal["basic", "bottleneck"] | type[nnx.Module],
        layers: Sequence[int],
        num_classes: int,
        in_chans: int = 1,
        *,
        groups: int = 1,
        width_per_group: int = 64,
        dtype: Dtype = jnp.float32,
        param_dtype: Dtype = jnp.float32,
        rngs: nnx.Rngs | None = None,
        name: str = "resnet",
    ):
        rngs = default_rngs(rngs)
        named = {"basic": BasicBlock, "bottleneck": Bottleneck}
        block_cls = named[block] if isinstance(block, str) else block
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.name = name
        self.in_chans = in_chans
        self.conv1 = conv2d(in_chans, 64, 3, padding=1, kernel_init=kaiming_normal_fan_out, **kw)
        self.bn1 = BatchNorm(64, **kw)
        inplanes = 64
        for stage, (planes, n_blocks) in enumerate(zip((64, 128, 256, 512), layers, strict=True)):
            blocks = []
            for i in range(n_blocks):
                stride = 2 if (stage > 0 and i == 0) else 1
                blocks.append(
                    block_cls(
                        inplanes,
                        planes,
                        stride=stride,
                        groups=groups,
                        width_per_group=width_per_group,
                        **kw,
                    )
                )
                inplanes = planes * block_cls.expansion
            setattr(self, f"layer{stage + 1}", nnx.List(blocks))
        self.fc = linear(inplanes, num_classes, **kw)

    def __call__(self, x: jax.Array, *, key: jax.Array | None = None) -> jax.Array:
        """Logits ``[B, num_classes]`` (compute dtype) for ``x [B, H, W, in_chans]``.

        ``key`` is accepted for the uniform model call and unused (no random draws).
        """
        check_image_input(x, self.in_chans, self.name)
        x = nnx.relu(self.bn1(self.conv1(x)))
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            for blk in stage:
                x = blk(x)
        return self.fc(global_avg_pool(x))


@register_model("resnet18")
def resnet18(num_classes: int, in_chans: int = 1, **kwargs: Any) -> ResNet:
    """ResNet-18: BasicBlock, (2, 2, 2, 2)."""
    return ResNet("basic", (2, 2, 2, 2), num_classes, in_chans, name="resnet18", **kwargs)


@register_model("resnext50_32x4d")
def resnext50_32x4d(num_classes: int, in_chans: int = 1, **kwargs: Any) -> ResNet:
    """ResNeXt-50 32x4d: Bottleneck, (3, 4, 6, 3), 32 groups of width 4."""
    return ResNet(
        "bottleneck",
        (3, 4, 6, 3),
        num_classes,
        in_chans,
        groups=32,
        width_per_group=4,
        name="resnext50_32x4d",
        **kwargs,
    )


@register_model("resnext101_32x8d")
def resnext101_32x8d(num_classes: int, in_chans: int = 1, **kwargs: Any) -> ResNet:
    """ResNeXt-101 32x8d: Bottleneck, (3, 4, 23, 3), 32 groups of width 8."""
    return ResNet(
        "bottleneck",
        (3, 4, 23, 3),
        num_classes,
        in_chans,
        groups=32,
        width_per_group=8,
        name="resnext101_32x8d",
        **kwargs,
    )
