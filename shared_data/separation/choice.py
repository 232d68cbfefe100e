"""Which Spleeter port and precision separate fastest on this machine: the ``auto`` rule.

A separation path is a backend (``jax`` or ``torch``) and a precision (``fp32`` or ``bf16``: the
U-Nets in bfloat16, the STFT, masks and overlap-add in float32). :func:`choose` resolves
``--backend`` and ``--separation_precision`` (each ``auto`` or a value) into one concrete
:class:`SeparationChoice` with the reason, from what the machine has: which ports are installed,
which of them see an accelerator, and the CPU's flags (:func:`cpu_flags`). It is a pure function
of those, so the rule is tested on any machine.

The rule for ``auto``/``auto`` (``BENCHMARKS.md``, "Separation paths", has the measurements):

1. JAX sees an accelerator (GPU/TPU): JAX in bf16. Not yet measured on a GPU: bf16 is what the
   training's ``--precision=auto`` uses there, and ``benchmarks.gpu_check`` times both.
2. Else torch sees CUDA: torch in bf16 (autocast), on the same grounds.
3. Else a CPU with bf16 units (``amx_bf16``, or ``avx512_bf16`` without AMX): torch under
   ``torch.autocast("cpu", bfloat16)``, through oneDNN: 2.4x the JAX fp32 port on an Intel Xeon
   with AMX, 1.3-1.5x on an AMD EPYC with ``avx512_bf16``. XLA:CPU does not reach those units,
   so JAX in bf16 is no faster there than in fp32 (slower, on the EPYC).
4. Else (no bf16 unit: torch would emulate bf16, 20x slower than fp32 on the EPYC held to AVX2)
   :data:`CPU_FP32_BACKEND` in fp32: torch's fp32 port was 1.1-1.2x JAX's on both CPUs, and with
   both frameworks held to AVX2.

A backend that is not installed is never chosen when another one is; a precision given
explicitly is kept (bf16 on a CPU without bf16 units is allowed, emulated and slow).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from pathlib import Path

from shared_data.backends import SEPARATION_BACKENDS
from shared_data.errors import DataError

PRECISIONS = ("auto", "fp32", "bf16")
#: The CPU flags (as Linux's ``/proc/cpuinfo`` names them) of bf16 matrix units, best first.
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
#: The port for bf16 on a CPU: torch's autocast reaches oneDNN's bf16 kernels, XLA:CPU does not.
CPU_BF16_BACKEND = "torch"
#: The port for fp32 on a CPU (the faster fp32 port on every CPU measured; see the module doc).
CPU_FP32_BACKEND = "torch"


@dataclasses.dataclass(frozen=True)
class SeparationChoice:
    """A concrete separation path and why it was taken.

    Attributes:
        backend: ``"jax"`` or ``"torch"``.
        precision: ``"fp32"`` or ``"bf16"`` (the U-Nets' compute dtype).
        reason: one clause for the build summary, e.g. ``"CPU has amx_bf16"``.
    """

    backend: str
    precision: str
    reason: str

    def describe(self) -> str:
        """``"torch bf16 (CPU has amx_bf16)"``: the summary's words."""
        return f"{self.backend} {self.precision} ({self.reason})"


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The flags of the first CPU in ``cpuinfo``; empty where there is no such file (not Linux),
    which the rule reads as a CPU without bf16 units."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def bf16_unit(flags: Collection[str]) -> str | None:
    """The best bf16 matrix unit among ``flags`` (:data:`BF16_CPU_FLAGS`), or None."""
    return next((flag for flag in BF16_CPU_FLAGS if flag in flags), None)


def check_choices(backend: str, precision: str) -> None:
    """Raises:
    DataError: ``backend`` not in :data:`~shared_data.backends.SEPARATION_BACKENDS` or
        ``precision`` not in :data:`PRECISIONS`.
    """
    if backend not in SEPARATION_BACKENDS:
        raise DataError(
            f"unknown backend {backend!r}; choose one of --backend={'|'.join(SEPARATION_BACKENDS)}"
        )
    if precision not in PRECISIONS:
        raise DataError(
            f"unknown separation precision {precision!r}; choose one of "
            f"--separation_precision={'|'.join(PRECISIONS)}"
        )


def choose(
    backend: str,
    precision: str,
    *,
    installed: Collection[str],
    accelerated: Mapping[str, bool],
    flags: Collection[str],
) -> SeparationChoice:
    """Resolve ``backend`` (``auto|jax|torch``) and ``precision`` (``auto|fp32|bf16``).

    Args:
        installed: the ports that can be built (``"jax"``, ``"torch"``).
        accelerated: per port, whether it computes on an accelerator here (missing: no).
        flags: the CPU's flags (:func:`cpu_flags`).

    Raises:
        DataError: an unknown backend or precision.
    """
    check_choices(backend, precision)
    unit = bf16_unit(flags)
    if backend == "auto":
        backend, why = _auto_backend(precision, installed, accelerated, unit)
    else:
        why = f"--backend={backend}"
    on_accelerator = bool(accelerated.get(backend))
    if precision == "auto":
        precision, because = _auto_precision(backend, on_accelerator, unit)
    else:
        because = f"--separation_precision={precision}"
        if precision == "bf16" and not on_accelerator and unit is None:
            because += ", emulated: this CPU has no bf16 unit"
    reason = "; ".join(dict.fromkeys(c for c in (why, because) if c))
    return SeparationChoice(backend, precision, reason)


def _auto_backend(
    precision: str, installed: Collection[str], accelerated: Mapping[str, bool], unit: str | None
) -> tuple[str, str]:
    """``(backend, why)`` for ``--backend=auto`` (rules 1-4 of the module doc)."""
    for name, device in (("jax", "an accelerator"), ("torch", "CUDA")):
        if name in installed and accelerated.get(name):
            return name, f"{name} sees {device}"
    if precision == "bf16" or (precision == "auto" and unit is not None):
        preferred = CPU_BF16_BACKEND
        why = f"CPU has {unit}" if unit else "torch is the bf16 port on the CPU"
    else:
        preferred = CPU_FP32_BACKEND
        why = "CPU has no bf16 unit" if precision == "auto" else "the faster fp32 port on the CPU"
    if preferred in installed or not installed:
        return preferred, why
    return sorted(installed)[0], f"{preferred} is not installed"


def _auto_precision(backend: str, on_accelerator: bool, unit: str | None) -> tuple[str, str]:
    """``(precision, why)`` for ``--separation_precision=auto`` on ``backend``."""
    if on_accelerator:
        return "bf16", "bf16 on the accelerator (not yet measured on a GPU)"
    if unit is None:
        return "fp32", "CPU has no bf16 unit"
    if backend == CPU_BF16_BACKEND:
        return "bf16", f"CPU has {unit}"
    return "fp32", "XLA:CPU does not use the CPU's bf16 units"
