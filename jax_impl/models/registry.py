"""The Flax NNX model registry: one name -> one factory ``factory(num_classes, in_chans, **kw)``.

The names are ``shared_data.architecture.names.MODEL_NAMES``; the table itself is a
:class:`shared_data.registry.Registry`, the same kind in both backends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared_data.architecture.names import ModelError
from shared_data.registry import Registry

MODELS: Registry[Callable[..., Any]] = Registry("model", ModelError)
register_model = MODELS.decorator
get_factory = MODELS.get
available_models = MODELS.names

__all__ = ["MODELS", "ModelError", "available_models", "get_factory", "register_model"]
