"""Cosine annealing with warm restarts as an optax schedule, equal to torch's at every step.

API::

    sched = cosine_restarts_schedule(base_lr=1e-3, steps_per_epoch=100, t0_epochs=10,
                                     t_mult=1, eta_min=0.0)     # optax.Schedule: step -> lr
    sched = make_schedule(recipe.resolved("jax"), steps_per_epoch)
    tx = optax.adamw(learning_rate=sched, ...)                 # optax calls sched(count)

``sched(k)`` is the learning rate of the optimizer update with 0-based index ``k`` (optax's update
count). It equals ``torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(T_0=t0_epochs,
T_mult=t_mult, eta_min=eta_min)`` evaluated at the fractional epoch ``k / steps_per_epoch``, i.e.
the LR torch's optimizer uses for its ``k``-th step when the scheduler is stepped per iteration
with fractional epochs (see ``torch_ref.schedule.step_scheduler``).

Why not ``optax.sgdr_schedule``: it joins a finite list of cycles and stays at its last value
afterwards, so a run longer than the list falls off the end, and its cycles cannot grow by
``T_mult``. Here the cycle index is computed in closed form, so there are as many restarts as the
step count implies, forever. The cosine shape is ``optax.cosine_decay_schedule``'s, but that takes
its cycle length as a Python constant, while here the length changes with the (traced) cycle index,
so the formula is written out.

Precision: everything that locates the step in its cycle is integer arithmetic on the step count
(cycle lengths ``T_0 * T_mult^n * steps_per_epoch`` are whole steps), so cycle boundaries are exact
in int32, with no float ``log`` to misplace them. The cosine factor is evaluated as
``sin^2(pi/2 * remaining / length)``, equal to ``(1 + cos(pi * t / T)) / 2``, whose relative
error stays ~1e-7 in float32 even at the end of a cycle, where ``1 + cos`` would lose all digits.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import optax

_INT32_MAX = 2**31 - 1


def _cycle_starts(cycle_steps: int, t_mult: int) -> list[int]:
    """Start steps of the cycles ``1, 2, ...`` that begin below ``2**31`` (cycle 0 starts at 0)."""
    starts = []
    start, length = 0, cycle_steps
    while True:
        start += length
        length *= t_mult
        if start > _INT32_MAX:
            return starts
        starts.append(start)


def cosine_restarts_schedule(
    *,
    base_lr: float,
    steps_per_epoch: int,
    t0_epochs: int,
    t_mult: int = 1,
    eta_min: float = 0.0,
) -> optax.Schedule:
    """SGDR stepped per iteration: ``step (int32 scalar) -> lr (float32 scalar)``, jit-compatible.

    Args:
        base_lr: peak LR at the start of every cycle (torch's ``base_lr``).
        steps_per_epoch: optimizer steps per epoch (torch's ``iters`` in ``epoch + i / iters``).
        t0_epochs: length of the first cycle in epochs (torch's ``T_0``, an integer).
        t_mult: integer growth factor of the cycle length after each restart (torch's ``T_mult``).
        eta_min: LR floor of every cycle.
    """
    if steps_per_epoch < 1 or t0_epochs < 1 or t_mult < 1:
        raise ValueError(
            "steps_per_epoch, t0_epochs and t_mult must be positive integers, got "
            f"{steps_per_epoch}, {t0_epochs}, {t_mult}"
        )
    cycle_steps = t0_epochs * steps_per_epoch
    if t_mult > 1:
        # Static tables: at most 31 restarts fit below 2**31 steps when T_mult >= 2. Lengths of
        # cycles that end beyond int32 are clipped; no step can reach their end.
        start_list = _cycle_starts(cycle_steps, t_mult)
        starts = jnp.asarray([0, *start_list], dtype=jnp.int32)
        lengths = jnp.asarray(
            [min(cycle_steps * t_mult**n, _INT32_MAX) for n in range(len(start_list) + 1)],
            dtype=jnp.int32,
        )
    amplitude = base_lr - eta_min

    def schedule(step):
        step = jnp.asarray(step, jnp.int32)
        if t_mult == 1:
            t_cur = step % cycle_steps
            length = jnp.int32(cycle_steps)
        else:
            n = jnp.sum(step >= starts[1:])  # restarts before this step = cycle index
            t_cur = step - starts[n]
            length = lengths[n]
        remaining = (length - t_cur).astype(jnp.float32) / length.astype(jnp.float32)
        factor = jnp.square(jnp.sin(0.5 * math.pi * remaining))
        return eta_min + amplitude * factor

    return schedule


def make_schedule(recipe, steps_per_epoch: int) -> optax.Schedule:
    """The schedule of a resolved :class:`~shared_data.training.recipe.Recipe`:
    ``step (int32) -> lr (float32)``.

    Same name and leading arguments as ``torch_ref.schedule.make_schedule(recipe,
    steps_per_epoch, *, optimizer)``; optax needs no optimizer here (the optimizer is built
    around the schedule instead, ``train_step.make_optimizer(recipe, schedule)``).

    Raises:
        ValueError: the recipe is not resolved (``lr``, ``t0_epochs`` unset), or
            ``steps_per_epoch`` < 1.
    """
    if recipe.lr is None or recipe.t0_epochs is None:
        raise ValueError("make_schedule needs a resolved recipe (call recipe.resolved())")
    return cosine_restarts_schedule(
        base_lr=recipe.lr,
        steps_per_epoch=steps_per_epoch,
        t0_epochs=recipe.t0_epochs,
        t_mult=recipe.t_mult,
        eta_min=recipe.eta_min,
    )
