"""torch's ``CosineAnnealingWarmRestarts``, built from the recipe and stepped per iteration.

API::

    scheduler = make_schedule(recipe, steps_per_epoch, optimizer=optimizer)  # recipe resolved
    for epoch ...:
        for i, batch in enumerate(loader):                 # i: 0-based step within the epoch
            ... optimizer.step()
            step_scheduler(scheduler, epoch, i, steps_per_epoch)

Convention (shared with ``jax_impl.schedule``): the optimizer step with global index
``k = epoch * steps_per_epoch + i`` uses the scheduler's value at the fractional epoch
``k / steps_per_epoch``. torch's documented loop calls ``scheduler.step(epoch + i / iters)`` after
``optimizer.step()``, which sets the LR of the *next* step to that of the current one (the first two
steps share ``f(0)``). Stepping to ``epoch + (i + 1) / iters`` after step ``i`` gives step ``k+1``
exactly ``f((k+1) / iters)`` and step 0 ``f(0)`` from construction, with no off-by-one and no
"scheduler stepped before optimizer" warning.

A resumed run does not reposition the scheduler: ``torch_ref.train.restore_or_start`` loads the
optimizer's ``state_dict`` (which holds the LR of the next step) and the scheduler's (its place in
the cycle: ``T_cur``, ``T_i``, ``last_epoch``) from the checkpoint, and stepping goes on from
there. :func:`set_scheduler_position` computes the same place from the step count alone; the
parity tests use it to check that place against an uninterrupted run.
"""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import CosineAnnealingWarmRestarts


def make_schedule(
    recipe, steps_per_epoch: int, *, optimizer: torch.optim.Optimizer
) -> CosineAnnealingWarmRestarts:
    """The SGDR scheduler of a resolved :class:`shared_data.training.recipe.Recipe`.

    Same name and leading arguments as ``jax_impl.schedule.make_schedule(recipe,
    steps_per_epoch)``; torch's scheduler also needs the ``optimizer`` whose LR it sets (its
    ``lr`` must already be the recipe's peak LR: torch takes ``base_lr`` from it). torch's
    scheduler counts in fractional epochs, so ``steps_per_epoch`` is not stored in it: it is
    checked here (as JAX checks it) and :func:`step_scheduler` converts each step with it.

    Raises:
        ValueError: the recipe is not resolved, or ``steps_per_epoch`` < 1.
    """
    if recipe.lr is None or recipe.t0_epochs is None:
        raise ValueError("make_schedule needs a resolved recipe (call recipe.resolved())")
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be a positive integer, got {steps_per_epoch}")
    return CosineAnnealingWarmRestarts(
        optimizer, T_0=int(recipe.t0_epochs), T_mult=int(recipe.t_mult), eta_min=recipe.eta_min
    )


def step_scheduler(
    scheduler: CosineAnnealingWarmRestarts, epoch: int, step_in_epoch: int, steps_per_epoch: int
) -> None:
    """After optimizer step ``step_in_epoch`` of ``epoch``, set the LR of the following step."""
    scheduler.step(epoch + (step_in_epoch + 1) / steps_per_epoch)


def set_scheduler_position(
    scheduler: CosineAnnealingWarmRestarts, global_step: int, steps_per_epoch: int
) -> None:
    """Put the scheduler at the LR of optimizer step ``global_step``.

    Training does not call this (a resume loads the scheduler's ``state_dict``); the parity tests
    check with it that step ``global_step``'s LR follows from the step count alone.
    """
    scheduler.step(global_step / steps_per_epoch)
