"""ResNet-18 and ResNeXt-50/101 from torchvision, configured with the reference report's stem.

torchvision builds all three from one ``ResNet`` class (ResNeXt = ``groups`` and
``width_per_group``); here each is that builder plus the stem change: ``conv1`` becomes a 3x3,
stride-1, pad-1 conv over ``in_chans`` channels and ``maxpool`` is removed, so a 128x128 log-mel
keeps 4x more resolution into ``layer1`` than an ImageNet image does.
"""

from __future__ import annotations

from collections.abc import Callable

import torchvision
from torch import nn

from torch_ref.models.layers import add_input_check, stem_conv
from torch_ref.models.registry import register_model


def resnet_with_report_stem(
    builder: Callable[..., torchvision.models.ResNet], name: str, num_classes: int, in_chans: int
) -> torchvision.models.ResNet:
    """torchvision's ``builder`` (no weights) with the reference report's stem.

    Input ``[B, in_chans, H, W]``.
    """
    model = builder(weights=None, num_classes=num_classes)
    model.conv1 = stem_conv(in_chans, model.conv1.out_channels, init="fan_out")
    model.maxpool = nn.Identity()
    return add_input_check(model, in_chans, name)


@register_model("resnet18")
def resnet18(num_classes: int, in_chans: int = 1) -> torchvision.models.ResNet:
    """ResNet-18 (BasicBlock, [2, 2, 2, 2]) with the reference report's stem; logits ``[B, C]``."""
    return resnet_with_report_stem(torchvision.models.resnet18, "resnet18", num_classes, in_chans)


@register_model("resnext50_32x4d")
def resnext50_32x4d(num_classes: int, in_chans: int = 1) -> torchvision.models.ResNet:
    """ResNeXt-50 32x4d (Bottleneck, [3, 4, 6, 3], groups 32, width 4), the report's stem."""
    return resnet_with_report_stem(
        torchvision.models.resnext50_32x4d, "resnext50_32x4d", num_classes, in_chans
    )


@register_model("resnext101_32x8d")
def resnext101_32x8d(num_classes: int, in_chans: int = 1) -> torchvision.models.ResNet:
    """ResNeXt-101 32x8d (Bottleneck, [3, 4, 23, 3], groups 32, width 8), the report's stem."""
    return resnet_with_report_stem(
        torchvision.models.resnext101_32x8d, "resnext101_32x8d", num_classes, in_chans
    )
