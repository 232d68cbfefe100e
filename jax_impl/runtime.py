"""Where a JAX training runs: the multi-host set-up, the compilation cache, the dataset it
opens, its dtypes.

Multi-host: under SLURM with more than one task, ``jax.distributed.initialize()`` reads the
cluster from the environment; elsewhere pass ``--coordinator_address=host:port --num_processes=N
--process_id=i`` (see ``docs/slurm.md``). Every process runs the same command; process 0 writes
the logs, all processes write their checkpoint shards.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import jax
import jax.numpy as jnp

from shared_data.errors import UserError

#: Where compiled programs are kept between runs, unless ``$VOCALGENRE_JAX_CACHE`` or the
#: training CLI's ``--jax_cache`` says otherwise (``off`` turns the cache off).
CACHE_ENV = "VOCALGENRE_JAX_CACHE"
# Past this size JAX evicts the least recently used entries; setting a size is also what makes
# JAX take a file lock around every read and write of the cache, which makes it safe for the
# several processes of one machine (a multi-GPU run, concurrent folds) that share it.
CACHE_MAX_BYTES = 8 * 2**30
# JAX caches only programs that took at least this long to compile (its default: 1 s). A model's
# initialisation is hundreds of small programs of 0.01-0.4 s each; caching those too cut a warm
# start's compile time for resnet18 from 6.4 s to 1.7 s (cold: 8-10 s; BENCHMARKS.md).
CACHE_MIN_COMPILE_S = 0.05


def default_compilation_cache() -> str:
    """``$VOCALGENRE_JAX_CACHE``, else ``$XDG_CACHE_HOME/vocalgenre/jax`` (``~/.cache/...``)."""
    chosen = os.environ.get(CACHE_ENV)
    if chosen:
        return chosen
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "vocalgenre", "jax")


def use_compilation_cache(location: str | None = None) -> str | None:
    """Keep compiled XLA programs in ``location`` (default :func:`default_compilation_cache`;
    ``"off"``: no cache), so a second start of the same run skips compilation. A directory JAX
    was already given (``JAX_COMPILATION_CACHE_DIR``) is left as it is. Returns the directory
    in use, or None.
    """
    location = location or default_compilation_cache()
    if jax.config.jax_compilation_cache_dir:
        return jax.config.jax_compilation_cache_dir
    if location.lower() == "off":
        return None
    jax.config.update("jax_compilation_cache_dir", os.path.expanduser(location))
    jax.config.update("jax_compilation_cache_max_size", CACHE_MAX_BYTES)
    if jax.config.jax_persistent_cache_min_compile_time_secs == 1.0:  # JAX's default: not chosen
        jax.config.update("jax_persistent_cache_min_compile_time_secs", CACHE_MIN_COMPILE_S)
    return jax.config.jax_compilation_cache_dir


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> bool:
    """Join a multi-process JAX run when one is configured; returns whether it did.

    Explicit flags win; otherwise a SLURM job step with more than one task auto-configures
    (``jax.distributed.initialize()`` reads ``SLURM_*``). A single process does nothing.
    """
    explicit = coordinator_address is not None or num_processes is not None
    slurm_tasks = int(os.environ.get("SLURM_NTASKS", os.environ.get("SLURM_NPROCS", "1")) or 1)
    if not explicit and slurm_tasks <= 1:
        return False
    if explicit and (coordinator_address is None or num_processes is None or process_id is None):
        raise UserError(
            "multi-host runs need all three of --coordinator_address, --num_processes and "
            "--process_id (or none of them under SLURM)"
        )
    _use_cpu_collectives()
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
    )
    return True


def _use_cpu_collectives() -> None:
    """Cross-process collectives for CPU devices (gloo over TCP), unless the user chose some.

    Without them the CPU client of a multi-process job has no way to all-reduce across
    processes. The supported JAX lines default to gloo; this sets it where the option was left
    empty. GPU and TPU clients ignore the option.
    """
    try:
        if jax.config.jax_cpu_collectives_implementation is None:
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
    except AttributeError:  # a JAX line without the option: nothing to choose
        pass


def is_main_process() -> bool:
    return jax.process_index() == 0


def log(message: str) -> None:
    """A status line on stderr, from process 0 only."""
    if is_main_process():
        print(message, file=sys.stderr, flush=True)


def _sync_processes() -> None:
    """Every JAX process waits here until all have arrived (a no-op in a single process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("vocalgenre dataset built")


def open_or_build_dataset(recipe: Any, *, log=log) -> Any:
    """:func:`shared_data.training.dataset_access.open_or_build_dataset` for this JAX process:
    process 0 builds a missing synthetic dataset, the others wait for it."""
    from shared_data.training import dataset_access

    return dataset_access.open_or_build_dataset(
        recipe, is_main=is_main_process(), log=log, barrier=_sync_processes
    )


def compute_dtypes(precision: str) -> tuple[Any, Any]:
    """``(compute dtype, parameter dtype)`` of a resolved ``--precision``."""
    return (jnp.bfloat16 if precision == "bf16" else jnp.float32), jnp.float32
