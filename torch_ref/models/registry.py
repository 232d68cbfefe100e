"""Model registry: one name -> one factory.

The names are ``shared_data.training.model_names.MODEL_NAMES``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared_data.errors import UserError


class ModelError(UserError):
    """Unknown model name, duplicate registration, or an input of the wrong shape."""


_REGISTRY: dict[str, Callable[..., Any]] = {}


def register_model(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering ``factory(num_classes, in_chans, **kwargs)`` under ``name``."""

    def decorator(factory: Callable[..., Any]) -> Callable[..., Any]:
        if name in _REGISTRY:
            raise ModelError(f"model {name!r} is registered twice")
        _REGISTRY[name] = factory
        return factory

    return decorator


def available_models() -> tuple[str, ...]:
    """The registered model names, sorted."""
    return tuple(sorted(_REGISTRY))


def get_factory(name: str) -> Callable[..., Any]:
    """The factory registered under ``name``; an unknown name lists the valid ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        valid = ", ".join(available_models())
        raise ModelError(f"unknown model {name!r}; valid models: {valid}") from None
