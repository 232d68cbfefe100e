"""The optax schedule against torch's CosineAnnealingWarmRestarts at every optimizer step."""

from __future__ import annotations

import functools
import inspect

import jax
import numpy as np
import pytest
import torch

from jax_impl import schedule as jax_schedule
from jax_impl.schedule import cosine_restarts_schedule
from shared_data.training.recipe import Recipe
from torch_ref import schedule as torch_schedule
from torch_ref.schedule import set_scheduler_position, step_scheduler


def torch_lrs(*, base_lr, steps_per_epoch, t0_epochs, t_mult, eta_min, epochs) -> np.ndarray:
    """The LR torch's optimizer uses at each step of ``epochs`` epochs, read from param_groups."""
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=base_lr)
    recipe = Recipe(lr=base_lr, t0_epochs=t0_epochs, t_mult=t_mult, eta_min=eta_min)
    scheduler = torch_schedule.make_schedule(recipe, steps_per_epoch, optimizer=optimizer)
    lrs = []
    for epoch in range(epochs):
        for i in range(steps_per_epoch):
            lrs.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            step_scheduler(scheduler, epoch, i, steps_per_epoch)
    return np.asarray(lrs, dtype=np.float64)


CASES = [
    # (t_mult, t0_epochs, steps_per_epoch, epochs): >= 3 complete cycles, then past the plan.
    pytest.param(1, 2, 7, 9, id="tmult1-4cycles-plus"),
    pytest.param(2, 1, 5, 16, id="tmult2-4cycles-plus"),
    pytest.param(2, 2, 3, 31, id="tmult2-t0_2"),
    pytest.param(3, 1, 4, 15, id="tmult3"),
]


@pytest.mark.parametrize("t_mult,t0_epochs,steps_per_epoch,epochs", CASES)
def test_every_step_matches_torch(t_mult, t0_epochs, steps_per_epoch, epochs):
    kw = dict(base_lr=0.1, steps_per_epoch=steps_per_epoch, t0_epochs=t0_epochs, t_mult=t_mult)
    eta_min = 1e-3
    expected = torch_lrs(**kw, eta_min=eta_min, epochs=epochs)
    sched = jax.jit(cosine_restarts_schedule(**kw, eta_min=eta_min))
    got = np.asarray(jax.vmap(sched)(np.arange(len(expected), dtype=np.int32)), np.float64)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=0)
    # The run restarted at least three times: the peak LR comes back >= 3 times after step 0.
    restarts = np.flatnonzero(np.isclose(expected, 0.1, rtol=1e-12))
    assert len(restarts) >= 4, restarts


def test_eta_min_zero_relative_precision_at_cycle_end():
    """Near a cycle's end the LR is tiny; it is still within 1e-6 relative of torch's."""
    kw = dict(base_lr=1.0, steps_per_epoch=1000, t0_epochs=1, t_mult=1)
    expected = torch_lrs(**kw, eta_min=0.0, epochs=2)
    got = np.asarray(jax.vmap(cosine_restarts_schedule(**kw))(np.arange(len(expected))))
    assert expected[999] < 1e-5  # the last step of a cycle: 1 + cos(pi * 999/1000) ~ 2.5e-6
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=0)


def test_never_falls_off_the_end():
    """Far beyond any planned run it still restarts (optax.sgdr_schedule would sit at its floor)."""
    sched = cosine_restarts_schedule(base_lr=0.5, steps_per_epoch=10, t0_epochs=3, eta_min=0.01)
    far = 10 * 3 * 100_000
    np.testing.assert_allclose(float(sched(far)), 0.5, rtol=1e-6)
    np.testing.assert_allclose(float(sched(far + 15)), 0.01 + 0.49 * 0.5, rtol=1e-6)
    sched2 = cosine_restarts_schedule(base_lr=0.5, steps_per_epoch=10, t0_epochs=1, t_mult=2)
    start_of_cycle_20 = 10 * (2**20 - 1)
    np.testing.assert_allclose(float(sched2(start_of_cycle_20)), 0.5, rtol=1e-6)
    assert float(sched2(start_of_cycle_20 - 1)) < 1e-10


def test_resume_position_matches_uninterrupted():
    """A scheduler rebuilt and positioned at step k gives the LR the uninterrupted one had."""
    expected = torch_lrs(
        base_lr=0.1, steps_per_epoch=6, t0_epochs=1, t_mult=2, eta_min=1e-3, epochs=7
    )
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=0.1)
    scheduler = torch_schedule.make_schedule(
        Recipe(lr=0.1, t0_epochs=1, t_mult=2, eta_min=1e-3), 6, optimizer=optimizer
    )
    for k in (0, 5, 6, 17, 18, 40):
        set_scheduler_position(scheduler, k, 6)
        assert optimizer.param_groups[0]["lr"] == pytest.approx(expected[k], rel=1e-12)


def test_make_schedule_uses_resolved_defaults():
    recipe = Recipe(epochs=12, restarts=2, lr=0.2, eta_min=0.02).resolved("jax")
    assert recipe.t0_epochs == 4
    sched = jax_schedule.make_schedule(recipe, steps_per_epoch=5)
    for restart_step in (0, 20, 40):
        assert float(sched(restart_step)) == pytest.approx(0.2, rel=1e-6)
    assert float(sched(19)) == pytest.approx(
        0.02 + 0.18 * (1 + np.cos(np.pi * 19 / 20)) / 2, rel=1e-6
    )


def test_both_factories_take_the_same_leading_arguments_and_refuse_the_same_input():
    """``make_schedule(recipe, steps_per_epoch, ...)`` in both; the same LRs; the same refusals."""
    jax_params = list(inspect.signature(jax_schedule.make_schedule).parameters)
    torch_params = list(inspect.signature(torch_schedule.make_schedule).parameters)
    assert jax_params == torch_params[:2] == ["recipe", "steps_per_epoch"]
    recipe = Recipe(epochs=4, restarts=1, lr=0.3, eta_min=0.01).resolved("jax")
    expected = torch_lrs(base_lr=0.3, steps_per_epoch=3, t0_epochs=recipe.t0_epochs,
                         t_mult=recipe.t_mult, eta_min=0.01, epochs=4)  # fmt: skip
    sched = jax_schedule.make_schedule(recipe, 3)
    got = [float(sched(k)) for k in range(len(expected))]
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.3)
    for make in (jax_schedule.make_schedule,
                 functools.partial(torch_schedule.make_schedule, optimizer=optimizer)):  # fmt: skip
        with pytest.raises(ValueError, match="resolved recipe"):
            make(Recipe(epochs=4), 3)
        with pytest.raises(ValueError, match="steps_per_epoch"):
            make(recipe, 0)
