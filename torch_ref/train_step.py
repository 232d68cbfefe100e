"""One training step and one evaluation pass of the torch reference, plus the optimizer and RNG.

API::

    optimizer = make_optimizer(model.parameters(), recipe)    # resolved recipe
    g = step_generator(seed, epoch, step, rank=0)             # augmentation draws of one step
    seed_model_rng(seed, epoch, step, rank=0)                 # global RNG (shake-shake) of one step
    seed_init_rng(seed)                                       # before building the model
    loss, correct = train_step(model, optimizer, x, labels, spec_draws=..., mixup_draws=...,
                               num_classes=10, label_smoothing=0.0, fill_value=0.0,
                               autocast_dtype=torch.bfloat16 or None,
                               micro_batches=1)               # k > 1: gradient accumulation
    logits, indices = eval_logits(model, loader, device, autocast_dtype)   # numpy, host

The step's order is the recipe's (and what ``jax_impl`` mirrors): SpecAugment on the normalised
batch -> one-hot targets (with label smoothing) -> Mixup of inputs and targets -> forward (bf16
autocast when asked) -> soft-target cross-entropy in fp32, mean over the batch -> backward ->
optimizer step. Everything random in a step comes from ``(seed, epoch, step, rank)``.

Gradient accumulation (``micro_batches`` = k > 1, ``--micro_batch_size``), as ``jax_impl``'s: the
(per-process) batch is augmented as a whole, with each Mixup partner drawn inside its micro-batch
(``augment.micro_batch_permutation``), then split into k micro-batches of contiguous rows; each
runs forward and backward with its loss scaled by 1/k, the gradients accumulate in ``.grad``, and
one optimizer step follows. Under DDP the gradient all-reduce runs once, in the last micro-batch's
backward (``no_sync`` for the others); each process splits its own shard, so a global micro-batch
is the j-th part of every process's shard (torch's BatchNorm statistics are per process anyway).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from torch_ref import augment

STREAM_AUGMENT = 0
STREAM_MODEL = 1
STREAM_INIT = 2


def make_optimizer(params: Iterable[torch.nn.Parameter], recipe: Any) -> torch.optim.Optimizer:
    """AdamW (decoupled decay) or SGD (Nesterov momentum, L2 decay) with the recipe's values."""
    if recipe.lr is None or recipe.weight_decay is None:
        raise ValueError("make_optimizer needs a resolved recipe (call recipe.resolved())")
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(
            params,
            lr=recipe.lr,
            betas=(recipe.adam_b1, recipe.adam_b2),
            eps=recipe.adam_eps,
            weight_decay=recipe.weight_decay,
        )
    return torch.optim.SGD(
        params,
        lr=recipe.lr,
        momentum=recipe.momentum,
        nesterov=recipe.nesterov and recipe.momentum > 0,
        weight_decay=recipe.weight_decay,
    )


def step_seed(seed: int, epoch: int, step: int, rank: int, stream: int) -> int:
    """A 63-bit seed that depends on every argument (numpy's SeedSequence hashing)."""
    words = np.random.SeedSequence([seed, epoch, step, rank, stream]).generate_state(2, np.uint32)
    return int((int(words[0]) << 31) ^ int(words[1]))


def step_generator(seed: int, epoch: int, step: int, rank: int = 0) -> torch.Generator:
    """The CPU generator of a step's augmentation draws."""
    return torch.Generator().manual_seed(step_seed(seed, epoch, step, rank, STREAM_AUGMENT))


def seed_model_rng(seed: int, epoch: int, step: int, rank: int = 0) -> None:
    """Seed torch's global RNGs (CPU and CUDA) for a step's in-model randomness (shake-shake)."""
    torch.manual_seed(step_seed(seed, epoch, step, rank, STREAM_MODEL))


def seed_init_rng(seed: int) -> None:
    """Seed torch's global RNGs for the model's initial weights (the same on every rank)."""
    torch.manual_seed(step_seed(seed, 0, 0, 0, STREAM_INIT))


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``-sum(targets * log_softmax(logits))`` (``[B, C]`` each), in
    float32, or float64 for a float64 model (as ``jax_impl.train_step`` scores them)."""
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return -(targets * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean()


def autocast(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` to ``dtype`` on ``device``'s type; a no-op context for None (fp32)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    labels: torch.Tensor,
    *,
    spec_draws: augment.SpecAugmentDraws | None,
    mixup_draws: augment.MixupDraws | None,
    num_classes: int,
    label_smoothing: float = 0.0,
    fill_value: float = 0.0,
    autocast_dtype: torch.dtype | None = None,
    micro_batches: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step on ``x`` float32 ``[B, C, H, W]``, ``labels`` int64 ``[B]``, in
    ``micro_batches`` accumulated passes (module docstring; Mixup's ``perm`` must then keep each
    partner inside its micro-batch).

    Returns:
        the loss (mean over the batch; fp32 scalar, detached) and the correct count of
        :func:`credited_correct` (float32 scalar); both stay on the device (no host sync).
    """
    model.train()
    if spec_draws is not None:
        x = augment.apply_spec_augment(x, spec_draws, fill_value)
    targets = augment.one_hot_targets(labels, num_classes, label_smoothing)
    if mixup_draws is not None:
        x, targets = augment.apply_mixup(x, targets, mixup_draws)
    if micro_batches == 1:
        with autocast(x.device, autocast_dtype):
            logits = model(x)
        loss = soft_cross_entropy(logits, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
    else:
        optimizer.zero_grad(set_to_none=True)
        loss, logits = accumulate_gradients(model, x, targets, micro_batches, autocast_dtype)
    optimizer.step()
    return loss.detach(), credited_correct(logits.detach(), labels, mixup_draws)


def accumulate_gradients(
    model: torch.nn.Module,
    x: torch.Tensor,
    targets: torch.Tensor,
    micro_batches: int,
    autocast_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward and backward over ``micro_batches`` contiguous parts of ``x`` ``[B, ...]`` and
    ``targets`` ``[B, C]``, adding the gradient of the batch's mean loss into ``.grad``.

    Returns the batch's mean loss (detached) and its logits ``[B, C]`` (detached, batch order).
    """
    losses, logits = [], []
    parts = zip(x.chunk(micro_batches), targets.chunk(micro_batches), strict=True)
    for j, (x_j, t_j) in enumerate(parts):
        last = j == micro_batches - 1
        # DDP all-reduces in backward; the first k - 1 micro-batches only accumulate locally.
        sync = contextlib.nullcontext() if last else _no_sync(model)
        with sync:
            with autocast(x.device, autocast_dtype):
                logits_j = model(x_j)
            loss_j = soft_cross_entropy(logits_j, t_j)
            (loss_j / micro_batches).backward()
        losses.append(loss_j.detach())
        logits.append(logits_j.detach())
    return torch.stack(losses).mean(), torch.cat(logits)


def _no_sync(model: torch.nn.Module):
    """DDP's ``no_sync`` (also through ``torch.compile``'s wrapper); a no-op for a plain module."""
    no_sync = getattr(model, "no_sync", None)
    return no_sync() if no_sync is not None else contextlib.nullcontext()


def credited_correct(
    logits: torch.Tensor, labels: torch.Tensor, mixup: augment.MixupDraws | None
) -> torch.Tensor:
    """The batch's correct count (float32 scalar) from ``logits [B, K]`` and ``labels`` ``[B]``:
    argmax hits, each worth ``lam`` on its own label plus ``1 - lam`` on its Mixup partner's
    under Mixup (the mirror of ``jax_impl.train_step.credited_correct``, which says why)."""
    pred = logits.argmax(dim=-1)
    hits = (pred == labels).float()
    if mixup is not None:
        lam = mixup.lam.float()
        hits = lam * hits + (1 - lam) * (pred == labels[mixup.perm]).float()
    return hits.sum()


@torch.no_grad()
def eval_logits(
    model: torch.nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    device: torch.device,
    autocast_dtype: torch.dtype | None = None,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> tuple[np.ndarray, np.ndarray]:
    """The eval-mode logits of every clip ``loader`` yields, with the clips' record indices.

    Returns:
        ``(logits, indices)``: float32 ``[N, C]`` and int64 ``[N]`` numpy arrays on the host
        (``N`` = 0 on a DDP rank without clips: ``[0, 0]`` logits).
    """
    model.eval()
    logits, indices = [], []
    for x, _, index in loader:
        x = x.to(device, non_blocking=True, memory_format=memory_format)
        with autocast(device, autocast_dtype):
            logits.append(model(x).float().cpu())
        indices.append(index.to(torch.int64))
    if not logits:
        return np.zeros((0, 0), np.float32), np.zeros(0, np.int64)
    return torch.cat(logits).numpy(), torch.cat(indices).numpy()
