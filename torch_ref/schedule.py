"""torch's ``CosineAnnealingWarmRestarts``, built from the recipe and stepped per iteration.

API::

    scheduler = make_schedule(optimizer, recipe)       # recipe resolved: lr, t0_epochs set
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
"""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import CosineAnnealingWarmRestarts


def make_schedule(optimizer: torch.optim.Optimizer, recipe) -> CosineAnnealingWarmRestarts:
    """The SGDR scheduler of a resolved :class:`shared_data.training.recipe.Recipe`.

    The optimizer's ``lr`` must already be the recipe's peak LR (torch takes ``base_lr`` from it).
    """
    if recipe.t0_epochs is None:
        raise ValueError("make_schedule needs a resolved recipe (call recipe.resolved())")
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
    """Put the scheduler at the LR of optimizer step ``global_step`` (for resuming mid-run)."""
    scheduler.step(global_step / steps_per_epoch)
