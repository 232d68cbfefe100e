"""A model that costs nothing, for measuring what the training loop around the model costs.

``null``: the mean of every mel bin over time (``[B, 128]``), then one linear layer to the
classes: ~1,300 multiply-adds per clip, against resnet18's 26 billion. Trained by the real
``train_and_evaluate`` of a backend, it gives that loop's host ceiling: the samples/s no model
can exceed on this host, set by the loader, the augmentation inside the step, the transfers,
logging, checkpoints and validation.

:func:`register` puts it in one backend's model registry and lets recipes name it; only the
benchmark's child processes call it, so the zoo's listing and the parity tests never see it.
"""

from __future__ import annotations

from typing import Any

from shared_data.architecture.names import register_tool_model_name

NAME = "null"


def _jax_factory(num_classes: int, in_chans: int = 1, *, rngs: Any, dtype: Any = None,
                 param_dtype: Any = None, **_: Any) -> Any:  # fmt: skip
    import jax.numpy as jnp
    from flax import nnx

    class NullModel(nnx.Module):
        def __init__(self) -> None:
            self.head = nnx.Linear(128 * in_chans, num_classes, rngs=rngs, dtype=dtype,
                                   param_dtype=param_dtype or jnp.float32)  # fmt: skip

        def __call__(self, x: Any, key: Any = None) -> Any:  # x: NHWC [B, 128, T, C]
            return self.head(jnp.mean(x, axis=2).reshape(x.shape[0], -1))

    return NullModel()


def _torch_factory(num_classes: int, in_chans: int = 1, **_: Any) -> Any:
    import torch

    class NullModel(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = torch.nn.Linear(128 * in_chans, num_classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: NCHW [B, C, 128, T]
            return self.head(x.mean(dim=3).flatten(1))

    return NullModel()


def register(backend: str) -> str:
    """Register :data:`NAME` in ``backend``'s (``jax`` or ``torch``) registry; returns it."""
    register_tool_model_name(NAME)
    if backend == "jax":
        from jax_impl.models.registry import MODELS
    else:
        from torch_ref.models.registry import MODELS
    MODELS.register(NAME, _jax_factory if backend == "jax" else _torch_factory)
    return NAME
