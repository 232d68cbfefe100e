"""What a benchmark figure needs to be read: the device, the load, versions, peak memory.

API::

    env = environment(command)     # {"device": {...}, "versions": {...}, "load": {...}, ...}
    base = reset_host_peak_rss()   # start a peak window at the current resident set (Linux)
    rss = host_peak_rss_bytes()    # this process's peak resident set since then

Peak memory kinds (the ``peak_mem_kind`` of a result):

- ``"device_peak_bytes_in_use"``: JAX on an accelerator, ``memory_stats()['peak_bytes_in_use']``.
- ``"cuda_max_memory_allocated"``: torch on CUDA, ``torch.cuda.max_memory_allocated()``
  (the caching allocator's live tensors; cached-but-free blocks are not counted).
- ``"host_peak_rss_delta"``: on the CPU, the growth of the process's peak resident set size
  (``VmHWM``, reset just before the model is built) to the end of the run. Every combination
  runs in a fresh process, so earlier runs do not hide its peak; the figure includes the
  framework's own allocations (XLA's compiler, torch's caches), so it bounds the step's memory
  from above.
"""

from __future__ import annotations

import datetime
import os
import platform
import resource
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PEAK_MEM_KINDS: tuple[str, ...] = (
    "device_peak_bytes_in_use",
    "cuda_max_memory_allocated",
    "host_peak_rss_delta",
)


def _status_bytes(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` (``VmHWM``, ``VmRSS``) in bytes; None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def host_peak_rss_bytes() -> int:
    """This process's peak resident set in bytes since the last :func:`reset_host_peak_rss`.

    ``VmHWM`` belongs to the address space, so unlike ``ru_maxrss`` it does not carry over the
    peak of the process that forked and exec'd this one (a large pytest parent would otherwise
    hide the child's whole run). Falls back to ``ru_maxrss`` where ``/proc`` is missing.
    """
    hwm = _status_bytes("VmHWM")
    if hwm is not None:
        return hwm
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_host_peak_rss() -> int:
    """Start a new peak window at the current resident set and return its size in bytes.

    Writing ``5`` to ``/proc/self/clear_refs`` resets ``VmHWM`` to ``VmRSS`` (Linux >= 4.0);
    where that is not allowed the window keeps the process's earlier peak, and the delta
    measured against it can only under-report.
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    return host_peak_rss_bytes()


def load_average() -> dict[str, float] | None:
    """The 1/5/15-minute load averages (other work on the machine skews CPU figures)."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return None
    return {"1m": one, "5m": five, "15m": fifteen}


def nvidia_driver() -> str | None:
    """The NVIDIA driver version from ``nvidia-smi``, or None where there is none."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.strip().splitlines()[0] if out.strip() else None


def accelerator_name() -> str | None:
    """The first accelerator's name as JAX reports it (``device_kind``), None on a CPU-only host."""
    import jax

    device = jax.devices()[0]
    return None if device.platform == "cpu" else str(device.device_kind)


# Versions recorded with every figure; a package that is not installed is recorded as None.
VERSIONED_PACKAGES: tuple[str, ...] = (
    "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "torch", "torchvision", "numpy",
    "librosa", "soxr", "jax-cuda12-plugin", "jax-cuda13-plugin",
)  # fmt: skip


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else ``platform.processor()``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def host_environment(packages: Sequence[str]) -> dict[str, Any]:
    """Date, CPU, Python, the frameworks' devices and the versions of ``packages``.

    Imports only jax and torch (no librosa or data-pipeline packages): it must run on a GPU
    image that has the frameworks and nothing else.
    """
    import jax
    import torch

    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_average_1_5_15min": os.getloadavg(),
        "torch_threads": torch.get_num_threads(),
        "jax_devices": [str(d) for d in jax.devices()],
        "torch_cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "versions": {name: _version(name) for name in packages},
    }


def environment(command: str) -> dict[str, Any]:
    """The record's header: ``device``, ``versions``, ``command``, ``date`` and ``load``.

    Built on :func:`host_environment` (CPU model, versions, date), adding the accelerator, its
    driver, CUDA and the machine's load average.
    """
    import torch

    base = host_environment(VERSIONED_PACKAGES)

    accelerator = accelerator_name()
    device = {
        "kind": "gpu" if accelerator else "cpu",
        "name": accelerator or base["cpu"],
        "cpu": base["cpu"],
        "cpu_count": base["cpu_count"],
        "torch_threads": base["torch_threads"],
        "jax_devices": base["jax_devices"],
        "torch_cuda": base["torch_cuda"],
        "driver": nvidia_driver(),
        "torch_cuda_build": torch.version.cuda,
    }
    versions = {"python": base["python"], **base["versions"]}
    versions["torch_git"] = torch.version.git_version
    return {
        "device": device,
        "versions": versions,
        "command": command,
        "date": base["date"],
        "load": load_average(),
    }


def _version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
