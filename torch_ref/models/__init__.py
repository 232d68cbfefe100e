"""PyTorch reference model zoo. ``create_model(name, num_classes, in_chans=1)`` builds any model."""

from __future__ import annotations

from typing import Any

# Importing the family modules registers their models.
from torch_ref.models import attention, densenet, lstm, resnet, shake_shake  # noqa: F401
from torch_ref.models.registry import ModelError, available_models, get_factory, register_model


def create_model(name: str, num_classes: int, in_chans: int = 1, **kwargs: Any) -> Any:
    """Build torch model ``name``: input NCHW ``[B, in_chans, H, W]``, output logits ``[B, C]``."""
    return get_factory(name)(num_classes=num_classes, in_chans=in_chans, **kwargs)


__all__ = ["ModelError", "available_models", "create_model", "register_model"]
