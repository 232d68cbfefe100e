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


# Models a tool registers for its own runs (the input benchmark's zero-cost model): the recipe
# accepts them once registered, while the zoo, its listing and the parity tests know only
# MODEL_NAMES.
_TOOL_MODELS: set[str] = set()


def register_tool_model_name(name: str) -> None:
    """Let recipes name ``name``, a model a tool registers in the backends' registries."""
    if name in MODEL_NAMES:
        raise ModelError(f"model {name!r} is registered twice")
    _TOOL_MODELS.add(name)


def known_model_names() -> tuple[str, ...]:
    """:data:`MODEL_NAMES` and the names tools registered in this process."""
    return MODEL_NAMES + tuple(sorted(_TOOL_MODELS))


def new_model_registry() -> Registry[Callable[..., Any]]:
    """An empty registry of model factories ``factory(num_classes, in_chans, **kwargs)``."""
    return Registry("model", ModelError)
