"""Where a torch training runs: its DDP rank and device, and the collectives the loop needs.

``torchrun --nproc_per_node=N -m torch_ref.train ...`` runs DDP (``WORLD_SIZE``/``LOCAL_RANK``
from torchrun; NCCL on GPUs, gloo on the CPU); the global ``--batch_size`` is split evenly over the
processes. A single process needs no process group.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Any

import numpy as np
import torch
import torch.distributed as dist


@dataclasses.dataclass(frozen=True)
class Runtime:
    """Where this process trains: its DDP rank among ``world`` and its device."""

    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_runtime() -> Runtime:
    """Join the torchrun process group when ``WORLD_SIZE > 1``; pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local_rank}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    rank = dist.get_rank() if world > 1 else 0
    return Runtime(rank=rank, world=world, local_rank=local_rank, device=device)


def is_main_process() -> bool:
    """True except on the non-zero ranks of a torchrun launch."""
    return int(os.environ.get("RANK", "0")) == 0


def log(message: str) -> None:
    """A status line on stderr, from rank 0 only."""
    if is_main_process():
        print(message, file=sys.stderr, flush=True)


def all_reduce(t: torch.Tensor, rt: Runtime, op=dist.ReduceOp.SUM) -> torch.Tensor:
    """``t`` reduced over the processes, in place (a no-op in a single process)."""
    if rt.world > 1:
        dist.all_reduce(t, op=op)
    return t


def gather_logits(
    logits: np.ndarray, indices: np.ndarray, order: np.ndarray, rt: Runtime
) -> np.ndarray:
    """Every process's ``(logits [n_r, C], record indices [n_r])``, in the order of ``order``.

    Returns:
        float32 ``[len(order), C]``: row ``i`` holds the logits of record ``order[i]``.
    """
    parts = [(logits, indices)]
    if rt.world > 1:
        parts = [None] * rt.world
        dist.all_gather_object(parts, (logits, indices))
    all_logits = np.concatenate([p[0] for p in parts if len(p[1])])
    all_indices = np.concatenate([p[1] for p in parts])
    position = {int(r): i for i, r in enumerate(all_indices)}
    return all_logits[[position[int(r)] for r in order]]


def _barrier() -> None:
    """Every rank waits here until all have arrived (a no-op without a process group)."""
    if dist.is_initialized():
        dist.barrier()


def open_or_build_dataset(recipe: Any, *, log=log) -> Any:
    """:func:`shared_data.training.dataset_access.open_or_build_dataset` for this torch process:
    rank 0 builds a missing synthetic dataset, the other ranks wait for it."""
    from shared_data.training import dataset_access

    return dataset_access.open_or_build_dataset(
        recipe, is_main=is_main_process(), log=log, barrier=_barrier
    )
