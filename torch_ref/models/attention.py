"""CBAM attention (Woo et al. 2018, arXiv:1807.06521) on torchvision's ResNet-18: ``cbam_resnet18``.

The reference report's "ResNet integrated with attention modules". torchvision's ``ResNet`` is
reused by configuration: :class:`CBAMBasicBlock` is torchvision's ``BasicBlock`` plus a ``cbam``
submodule applied to the residual branch after its last BN and before the addition, passed as
``block`` to ``torchvision.models.resnet.ResNet`` with ``[2, 2, 2, 2]``; the stem change is the one
every ResNet here gets (``torch_ref.models.resnet``). State-dict keys are torchvision's plus
``layer{i}.{j}.cbam.*``.

CBAM on ``x [B, C, H, W]``:

* channel attention ``cbam.channel``: a shared MLP ``fc1`` (C -> C/16, bias) - ReLU - ``fc2``
  (C/16 -> C, bias) over the global average- and max-pooled features; the two outputs are summed,
  passed through a sigmoid and scale ``x`` per channel;
* spatial attention ``cbam.spatial``: the channel-wise max and mean maps (in that order, as in the
  authors' code) stacked to ``[B, 2, H, W]``, a 7x7 conv (pad 3, no bias) to one map, BN, sigmoid,
  scaling ``x`` per pixel.

The BN keeps torch's default momentum (0.1) like every other BN here; the authors used 0.01.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet

from torch_ref.models.registry import register_model
from torch_ref.models.resnet import resnet_with_report_stem

REDUCTION = 16
SPATIAL_KERNEL = 7


class ChannelAttention(nn.Module):
    """``x * sigmoid(mlp(avgpool(x)) + mlp(maxpool(x)))`` on ``[B, C, H, W]``."""

    def __init__(self, channels: int, reduction: int = REDUCTION):
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        def mlp(v: torch.Tensor) -> torch.Tensor:
            return self.fc2(F.relu(self.fc1(v)))

        att = mlp(x.mean(dim=(2, 3))) + mlp(x.amax(dim=(2, 3)))
        return x * torch.sigmoid(att)[:, :, None, None]


class SpatialAttention(nn.Module):
    """``x * sigmoid(BN(conv7x7([max_c(x), mean_c(x)])))`` on ``[B, C, H, W]``."""

    def __init__(self, kernel_size: int = SPATIAL_KERNEL):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.bn(self.conv(pooled)))


class CBAM(nn.Module):
    """Channel then spatial attention; ``[B, C, H, W] -> [B, C, H, W]``."""

    def __init__(self, channels: int, reduction: int = REDUCTION):
        super().__init__()
        self.channel = ChannelAttention(channels, reduction)
        self.spatial = SpatialAttention()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.channel(x))


class CBAMBasicBlock(BasicBlock):
    """torchvision's ``BasicBlock`` with :class:`CBAM` on the branch, before the addition."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.cbam = CBAM(self.bn2.num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.cbam(self.bn2(self.conv2(out)))
        return self.relu(out + identity)


def _cbam_resnet18_builder(*, weights: None = None, num_classes: int) -> ResNet:
    # torchvision's ResNet initialises the CBAM convs and BN too (kaiming fan_out; BN 1, 0).
    return ResNet(CBAMBasicBlock, [2, 2, 2, 2], num_classes=num_classes)


@register_model("cbam_resnet18")
def cbam_resnet18(num_classes: int, in_chans: int = 1) -> ResNet:
    """ResNet-18 with CBAM in every block and the reference report's stem; logits ``[B, C]``."""
    return resnet_with_report_stem(_cbam_resnet18_builder, "cbam_resnet18", num_classes, in_chans)
