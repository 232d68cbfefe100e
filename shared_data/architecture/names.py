"""The one list of model names both backends register, and the error for a bad model.

Parity tests iterate over this tuple; each backend's registry must hold exactly these names.
"""

from collections.abc import Callable
from typing import Any

from shared_data.errors import UserError
from shared_data.registry import Registry


class ModelError(UserError):
    """Unknown model name, duplicate registration, or an input of the wrong shape."""


MODEL_NAMES: tuple[str, ...] = (
    "resnet18",
    "resnext50_32x4d",
    "resnext101_32x8d",
    "densenet201",
    "shake_shake26_2x96d",
    "shake_shake_resnext26",
    "cbam_resnet18",
    "lstm",
)


def new_model_registry() -> Registry[Callable[..., Any]]:
    """An empty registry of model factories ``factory(num_classes, in_chans, **kwargs)``."""
    return Registry("model", ModelError)
