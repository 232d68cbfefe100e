"""DenseNet-201 from torchvision, configured with the reference report's stem.

``features.conv0`` becomes a 3x3, stride-1, pad-1 conv over ``in_chans`` channels and
``features.pool0`` (the 3x3 stride-2 max-pool) is removed, as for the ResNets.
"""

from __future__ import annotations

import torchvision
from torch import nn

from torch_ref.models.layers import add_input_check, stem_conv
from torch_ref.models.registry import register_model


@register_model("densenet201")
def densenet201(
    num_classes: int, in_chans: int = 1, memory_efficient: bool = False
) -> torchvision.models.DenseNet:
    """DenseNet-201 (growth 32, blocks (6, 12, 48, 32), bn_size 4, 64 initial features).

    Input ``[B, in_chans, H, W]``; logits ``[B, num_classes]``. ``memory_efficient`` is
    torchvision's (checkpointed bottlenecks), mirrored by ``jax_impl.models.densenet``.
    """
    model = torchvision.models.densenet201(
        weights=None, num_classes=num_classes, memory_efficient=memory_efficient
    )
    conv0 = model.features.conv0
    model.features.conv0 = stem_conv(in_chans, conv0.out_channels, init="fan_in")
    model.features.pool0 = nn.Identity()
    return add_input_check(model, in_chans, "densenet201")
