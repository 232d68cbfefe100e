"""Shared torch helpers for the model zoo: the stem change and the input-shape check.

Mirrors ``jax_impl/models/layers.py`` (which holds the NNX building blocks; torch has its own).
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from torch_ref.models.registry import ModelError


def stem_conv(in_chans: int, out_channels: int, *, init: str = "fan_out") -> nn.Conv2d:
    """The reference report's stem: a 3x3, stride-1, pad-1 conv without bias, initialised like
    torchvision.

    ``init`` is the kaiming-normal mode torchvision uses for the family ("fan_out" for ResNet,
    "fan_in" for DenseNet), so the replaced stem starts like the rest of the network.
    """
    conv = nn.Conv2d(in_chans, out_channels, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(conv.weight, mode=init, nonlinearity="relu")
    return conv


def check_image_input(x: torch.Tensor, in_chans: int, model_name: str) -> None:
    """Raise ``ModelError`` unless ``x`` is ``[B, in_chans, H, W]`` (NCHW)."""
    shape = tuple(x.shape)
    if len(shape) == 4 and shape[1] == in_chans:
        return
    fix = (
        f"build the model with in_chans={shape[1]} or pass {in_chans} channel(s)"
        if len(shape) == 4
        else "add the channel axis at dim 1 (x.unsqueeze(1))"
    )
    raise ModelError(
        f"model {model_name!r} expects an NCHW batch of shape [B, {in_chans}, H, W] "
        f"(H, W >= 32), got shape {list(shape)}; {fix}"
    )


def _check_hook(module: nn.Module, args: tuple, *, in_chans: int, model_name: str) -> None:
    check_image_input(args[0], in_chans, model_name)


def add_input_check(model: nn.Module, in_chans: int, model_name: str) -> nn.Module:
    """Attach :func:`check_image_input` as a forward pre-hook; state-dict keys are unchanged.

    A hook rather than a wrapper module keeps torchvision's key names (``conv1.weight``, not
    ``model.conv1.weight``); ``functools.partial`` of a module-level function keeps it picklable.
    """
    model.register_forward_pre_hook(
        functools.partial(_check_hook, in_chans=in_chans, model_name=model_name)
    )
    return model
