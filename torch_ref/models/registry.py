"""The PyTorch model registry; its names are ``shared_data.architecture.names.MODEL_NAMES``."""

from shared_data.architecture.names import ModelError, new_model_registry

MODELS = new_model_registry()
register_model, get_factory, available_models = MODELS.decorator, MODELS.get, MODELS.names

__all__ = ["MODELS", "ModelError", "available_models", "get_factory", "register_model"]
