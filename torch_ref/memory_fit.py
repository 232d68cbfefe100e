"""Fit the torch train step into the device's memory before the first step (the mirror of
``jax_impl.memory_fit``; the rule, the lines and the test knob are
:mod:`shared_data.training.memory_fit`'s).

API::

    limit = device_memory_limit(device)     # bytes; None on the CPU without the knob
    micro = fit_micro_batch(recipe, model, optimizer, (h, w), rt, autocast_dtype=...,
                            limit_bytes=limit)

torch has no compiled program to analyse, so each candidate micro-batch is measured by a trial
forward and backward pass of that many (random) examples per process: on CUDA its peak
``torch.cuda.max_memory_allocated`` (a trial that runs out of memory does not fit); on the CPU,
where the knob is the only way to get here, an estimate (:func:`estimate_trial_bytes`). Either
way the optimizer state, which exists only after the first step, is added from the parameters'
size. The trial leaves no trace: parameters, gradients, BatchNorm statistics and the RNG are as
before.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from shared_data.training.memory_fit import (
    choose_micro_batch,
    injected_device_memory,
    is_out_of_memory,
)
from shared_data.training.recipe import Recipe
from torch_ref import train_step as ts
from torch_ref.runtime import Runtime, all_reduce, log


def device_memory_limit(device: torch.device) -> int | None:
    """The memory torch may use on ``device``, in bytes: ``$VOCALGENRE_DEVICE_MEMORY_BYTES`` when
    set (the test/debug knob); on CUDA the free memory plus what torch's allocator already holds;
    None on the CPU."""
    injected = injected_device_memory()
    if injected is not None:
        return injected
    if device.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(device)
    return int(free + torch.cuda.memory_reserved(device))


def _tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of the optimizer's per-parameter state once it has stepped: what it holds, or for a
    fresh AdamW two parameter-sized buffers and for SGD with momentum one."""
    held = _tensor_bytes(
        v for state in optimizer.state.values() for v in state.values() if torch.is_tensor(v)
    )
    if held:
        return held
    params = _tensor_bytes(p for g in optimizer.param_groups for p in g["params"])
    if isinstance(optimizer, torch.optim.AdamW | torch.optim.Adam):
        return 2 * params
    momentum = any(g.get("momentum", 0) for g in optimizer.param_groups)
    return params if momentum else 0


@contextlib.contextmanager
def _no_trace(model: torch.nn.Module) -> Iterator[None]:
    """Restore the model's buffers (BatchNorm statistics), drop its gradients and keep the RNG
    streams as they were, whatever happens inside."""
    buffers = {k: v.detach().clone() for k, v in model.named_buffers()}
    devices = [model_device(model)] if model_device(model).type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        with torch.no_grad():
            for k, v in model.named_buffers():
                v.copy_(buffers[k])
        model.zero_grad(set_to_none=True)


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _trial_loss(model, x: torch.Tensor, num_classes: int, autocast_dtype) -> torch.Tensor:
    with ts.autocast(x.device, autocast_dtype):
        logits = model(x)
    targets = torch.full((x.shape[0], num_classes), 1.0 / num_classes, device=x.device)
    return ts.soft_cross_entropy(logits, targets)


def estimate_trial_bytes(model, x, num_classes: int, autocast_dtype=None) -> int:
    """An estimate of one step's peak bytes without a device allocator to ask: the tensors
    autograd saves for the backward pass (``saved_tensors_hooks``, each storage once, parameters
    excluded) and the input, plus the parameters with their gradients."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {x.untyped_storage().data_ptr(): x.untyped_storage().nbytes()}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = _trial_loss(model, x, num_classes, autocast_dtype)
    loss.backward()
    return sum(saved.values()) + 2 * _tensor_bytes(model.parameters())


def measured_trial_bytes(model, x, num_classes: int, autocast_dtype=None) -> int:
    """One step's peak bytes on CUDA, as the allocator saw them (parameters, gradients and
    activations included)."""
    device = x.device
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    _trial_loss(model, x, num_classes, autocast_dtype).backward()
    torch.cuda.synchronize(device)
    return int(torch.cuda.max_memory_allocated(device))


def trial_bytes(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    examples: int,
    input_hw: tuple[int, int],
    *,
    num_classes: int,
    world: int = 1,
    autocast_dtype: torch.dtype | None = None,
) -> int | None:
    """Peak bytes of a train step of ``examples`` inputs ``[examples, 1, H, W]`` on this process,
    optimizer state and (``world`` > 1) DDP's gradient buckets included; None when the trial ran
    out of memory."""
    device = model_device(model)
    measure = measured_trial_bytes if device.type == "cuda" else estimate_trial_bytes
    try:
        with _no_trace(model):
            x = torch.randn(examples, 1, *input_hw, device=device)
            peak = measure(model, x.to(memory_format=torch.channels_last), num_classes,
                           autocast_dtype)  # fmt: skip
            del x
    except RuntimeError as err:
        if not is_out_of_memory(err):
            raise
        peak = None
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if peak is None:
        return None
    buckets = _tensor_bytes(model.parameters()) if world > 1 else 0
    return peak + optimizer_state_bytes(optimizer) + buckets


def fit_micro_batch(
    recipe: Recipe,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    input_hw: tuple[int, int],
    rt: Runtime,
    *,
    num_classes: int,
    autocast_dtype: torch.dtype | None = None,
    limit_bytes: int | None,
) -> int:
    """The micro-batch size to train with (global, split over the ``rt.world`` processes).

    With ``limit_bytes`` None: the requested one (``--micro_batch_size``, else the whole batch).
    Otherwise the largest on the halving path whose trial step fits, the smallest choice of all
    processes (they must agree); the choice is logged.

    Raises:
        TrainingError: not even the smallest micro-batch fits (one line naming the flags).
    """
    start = recipe.micro_batch_size or recipe.batch_size
    if limit_bytes is None:
        return start

    def measure(micro: int) -> int | None:
        return trial_bytes(
            model, optimizer, micro // rt.world, input_hw, num_classes=num_classes,
            world=rt.world, autocast_dtype=autocast_dtype,
        )  # fmt: skip

    device = model_device(model)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    fit = choose_micro_batch(
        recipe, shards=rt.world, limit_bytes=limit_bytes, measure=measure, device=name
    )
    chosen = all_reduce(torch.tensor(fit.micro_batch_size, device=rt.device), rt,
                        torch.distributed.ReduceOp.MIN)  # fmt: skip
    log(fit.line)
    return int(chosen.item())
