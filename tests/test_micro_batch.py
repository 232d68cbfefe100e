"""Gradient accumulation (``--micro_batch_size``) in both backends: the same update as one pass
where nothing depends on the batch's composition (the LSTM), per-micro-batch BatchNorm exactly
where it does, and the draws that stay the same.

Everything runs in float64 (as the parity tests do where rounding would otherwise decide): k
micro-batches and one pass compute the same sums in a different order, so they agree to a few
float64 ulps of the gradient (measured: ~1e-16 of the update), and a bound of 1e-12 of the update
leaves a margin of ~1e4 while a wrong scaling, a dropped micro-batch or a partner from another
micro-batch moves the parameters by a sizeable share of the update.
"""

from __future__ import annotations

import copy
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from flax import nnx

from jax_impl import augment as jaug
from jax_impl import train_step as ts
from jax_impl.models import create_model
from jax_impl.schedule import make_schedule
from shared_data.training.recipe import Recipe
from tests.support.models import tiny_batchnorm_net
from torch_ref import augment as taug
from torch_ref import train_step as torch_steps
from torch_ref.models import create_model as create_torch_model

RTOL_OF_UPDATE = 1e-12


def _max_diff(a, b) -> float:
    return max(
        float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


# --- the draws ------------------------------------------------------------------------------------


def test_micro_batch_partners_stay_in_their_micro_batch():
    perm = np.array([5, 2, 7, 0, 3, 6, 1, 4])
    j = np.asarray(jaug.micro_batch_permutation(jnp.asarray(perm, jnp.int32), 2))
    t = taug.micro_batch_permutation(torch.from_numpy(perm), 2).numpy()
    # Block [5 2 7 0] ranks to [2 1 3 0]; block [3 6 1 4] to [1 3 0 2] (+4).
    assert j.tolist() == t.tolist() == [2, 1, 3, 0, 5, 7, 4, 6]
    assert np.asarray(jaug.micro_batch_permutation(jnp.asarray(perm), 1)).tolist() == perm.tolist()

    # Uniform within the block: over 4000 draws each of the 2 orders of a 2-row block comes up
    # half the time (binomial sd 0.008; bound 5 sd).
    keys = jax.random.split(jax.random.key(0), 4000)
    perms = jax.vmap(lambda k: jax.random.permutation(k, 8))(keys)
    local = np.asarray(jax.vmap(lambda p: jaug.micro_batch_permutation(p, 4))(perms))
    assert all(
        sorted(row[2 * b : 2 * b + 2]) == [2 * b, 2 * b + 1] for row in local for b in range(4)
    )
    assert abs(np.mean(local[:, 0] == 1) - 0.5) < 0.04


def test_micro_batches_keep_the_spec_augment_masks_and_the_mixup_weight():
    recipe = Recipe(batch_size=8, micro_batch_size=2)
    one = ts.StepConfig.from_recipe(dataclasses.replace(recipe, micro_batch_size=None), 3)
    four = ts.StepConfig.from_recipe(recipe, 3)
    assert (one.micro_batches, four.micro_batches) == (1, 4)
    key = ts.step_key(0, 1, 2)
    a, b = (ts.draw_step(key, cfg, (8, 32, 32, 1)) for cfg in (one, four))
    for x, y in zip(a.spec, b.spec, strict=True):
        np.testing.assert_array_equal(x, y)  # every example's masks, unchanged
    assert float(a.mixup.lam) == float(b.mixup.lam)
    expected = jaug.micro_batch_permutation(a.mixup.perm, 4)
    np.testing.assert_array_equal(b.mixup.perm, expected)
    assert np.asarray(b.mixup.perm).reshape(4, 2).min(axis=1).tolist() == [0, 2, 4, 6]


# --- JAX -----------------------------------------------------------------------------------------


def _jax_setup(model, batch_size: int, micro_batches: int):
    recipe = Recipe(model="lstm", batch_size=batch_size, optimizer="sgd", lr=0.1, mixup_alpha=0.4)
    recipe = recipe.resolved("jax", accelerator=False)
    graphs, state = ts.split_model(model)
    schedule = make_schedule(recipe, 10)
    tx = ts.make_optimizer(recipe, schedule)
    state["opt_state"] = tx.init(state["params"])
    cfg = dataclasses.replace(ts.StepConfig.from_recipe(recipe, 3), micro_batches=micro_batches)
    return graphs, state, tx, schedule, cfg


def _jax_steps(graphs, state, tx, schedule, cfg, batch, draws, ks=(1, 2)):
    """``{k: (state, metrics)}`` of the injected step with k micro-batches, same draws."""
    out = {}
    for k in ks:
        step = ts.make_injected_train_step(
            graphs.train, tx, schedule, dataclasses.replace(cfg, micro_batches=k)
        )
        out[k] = jax.device_get(step(jax.tree.map(jnp.array, state), batch, draws, True))
    return out


def test_jax_lstm_two_micro_batches_give_the_one_pass_update():
    """SpecAugment and Mixup on (partners drawn within the micro-batches, for both), SGD."""
    with jax.enable_x64(True):
        f64 = {"dtype": jnp.float64, "param_dtype": jnp.float64}
        model = create_model("lstm", 3, rngs=nnx.Rngs(0), **f64)
        graphs, state, tx, schedule, cfg = _jax_setup(model, 8, micro_batches=2)
        rng = np.random.default_rng(0)
        batch = {"mel": jnp.asarray(rng.normal(size=(8, 128, 16, 1))),
                 "label": jnp.asarray(rng.integers(0, 3, 8), jnp.int32)}  # fmt: skip
        draws = ts.draw_step(ts.step_key(0, 0, 0), cfg, (8, 128, 16, 1))
        out = _jax_steps(graphs, state, tx, schedule, cfg, batch, draws)
    initial = jax.device_get(state["params"])
    update = _max_diff(out[1][0]["params"], initial)
    assert update > 1e-3
    assert _max_diff(out[1][0]["params"], out[2][0]["params"]) <= RTOL_OF_UPDATE * update
    m1, m2 = out[1][1], out[2][1]
    assert float(m2["loss"]) == pytest.approx(float(m1["loss"]), rel=1e-12)
    assert (float(m1["correct"]), int(m1["count"])) == (float(m2["correct"]), int(m2["count"]))


def test_jax_batchnorm_statistics_are_per_micro_batch():
    """The 2-micro-batch step equals an explicit computation: each micro-batch's gradient with
    BatchNorm over its own 4 rows, on the running statistics the previous one left, averaged,
    then one SGD update. And it differs from the one-pass step (BatchNorm over all 8 rows)."""
    with jax.enable_x64(True):
        graphs, state, tx, schedule, cfg = _jax_setup(
            tiny_batchnorm_net(3, dtype=jnp.float64), 8, micro_batches=2
        )
        rng = np.random.default_rng(1)
        batch = {"mel": jnp.asarray(rng.normal(size=(8, 16, 16, 1))),
                 "label": jnp.asarray(rng.integers(0, 3, 8), jnp.int32)}  # fmt: skip
        draws = ts.draw_step(ts.step_key(0, 0, 0), cfg, (8, 16, 16, 1))
        out = _jax_steps(graphs, state, tx, schedule, cfg, batch, draws)

        x = jaug.apply_spec_augment(batch["mel"], draws.spec, cfg.spec.fill_value)
        targets = jaug.one_hot_targets(batch["label"], 3)
        x, targets = jaug.apply_mixup(x, targets, draws.mixup)
        # flax creates the statistics in float32; the step carries them in the model's float64.
        rest = jax.tree.map(lambda v: v.astype(jnp.float64), state["rest"])
        grads = []
        for rows in (slice(0, 4), slice(4, 8)):

            def loss(params, rest=rest, rows=rows):
                model = nnx.merge(graphs.train, params, rest, copy=True)
                ce = optax.softmax_cross_entropy(model(x[rows]), targets[rows]).mean()
                return ce, nnx.split(model, nnx.Param, ...)[2]

            (_, rest), g = jax.value_and_grad(loss, has_aux=True)(state["params"])
            grads.append(g)
        mean = jax.tree.map(lambda a, b: (a + b) / 2, *grads)
        updates, _ = tx.update(mean, state["opt_state"], state["params"])
        expected = jax.device_get(optax.apply_updates(state["params"], updates))
    update = _max_diff(expected, jax.device_get(state["params"]))
    assert _max_diff(out[2][0]["params"], expected) <= RTOL_OF_UPDATE * update
    assert _max_diff(out[2][0]["rest"], jax.device_get(rest)) <= 1e-12
    assert _max_diff(out[1][0]["params"], out[2][0]["params"]) > 1e-2 * update


# --- torch ---------------------------------------------------------------------------------------


def _torch_draws(batch: int, hw: tuple[int, int], micro_batches: int, seed: int = 0):
    recipe = Recipe()
    g = torch.Generator().manual_seed(seed)
    spec = taug.draw_spec_augment(g, recipe.spec_augment(), batch, *hw)
    mix = taug.draw_mixup(g, 0.4, batch)
    return spec, mix._replace(perm=taug.micro_batch_permutation(mix.perm, micro_batches))


def _torch_step(model, x, labels, spec, mix, micro_batches: int):
    """A copy of ``model`` after one SGD step (lr 0.1, momentum, decay) with k micro-batches."""
    model = copy.deepcopy(model)
    recipe = Recipe(optimizer="sgd", lr=0.1).resolved("torch")
    optimizer = torch_steps.make_optimizer(model.parameters(), recipe)
    loss, correct = torch_steps.train_step(
        model, optimizer, x, labels, spec_draws=spec, mixup_draws=mix, num_classes=3,
        micro_batches=micro_batches,
    )  # fmt: skip
    return model, optimizer, float(loss), float(correct)


def _state_diff(a: torch.nn.Module, b: torch.nn.Module) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    return max(float((sa[k].double() - sb[k].double()).abs().max()) for k in sa)


def test_torch_lstm_two_micro_batches_give_the_one_pass_update():
    torch.manual_seed(0)
    model = create_torch_model("lstm", 3).double()
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(8, 1, 128, 16)))
    labels = torch.from_numpy(rng.integers(0, 3, 8))
    spec, mix = _torch_draws(8, (128, 16), micro_batches=2)
    one, _, loss_1, correct_1 = _torch_step(model, x, labels, spec, mix, 1)
    two, _, loss_2, correct_2 = _torch_step(model, x, labels, spec, mix, 2)
    update = _state_diff(one, model)
    assert update > 1e-3
    assert _state_diff(one, two) <= RTOL_OF_UPDATE * update
    assert loss_2 == pytest.approx(loss_1, rel=1e-12) and correct_1 == correct_2


def test_torch_resnet18_batchnorm_statistics_are_per_micro_batch():
    """resnet18 at 32x32, batch 4 in 2 micro-batches: equal to each micro-batch's own forward
    and backward in train mode (BatchNorm over its 2 rows, running statistics updated twice),
    gradients averaged, one SGD step; and unlike the one-pass step.

    float32 (torch's float64 convolutions have no fast CPU kernels): both sides run the same
    kernels on the same rows, and scaling a loss by 1/2 scales every gradient exactly, so they
    differ only where ``g0 / 2 + g1 / 2`` and ``(g0 + g1) / 2`` round differently (1 ulp)."""
    torch.manual_seed(0)
    model = create_torch_model("resnet18", 3)
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.normal(size=(4, 1, 32, 32)).astype(np.float32))
    labels = torch.from_numpy(rng.integers(0, 3, 4))
    spec, mix = _torch_draws(4, (32, 32), micro_batches=2)
    one, _, _, _ = _torch_step(model, x, labels, spec, mix, 1)
    two, _, _, _ = _torch_step(model, x, labels, spec, mix, 2)

    explicit = copy.deepcopy(model)
    optimizer = torch_steps.make_optimizer(
        explicit.parameters(), Recipe(optimizer="sgd", lr=0.1).resolved("torch")
    )
    xa = taug.apply_spec_augment(x, spec)
    xa, targets = taug.apply_mixup(xa, taug.one_hot_targets(labels, 3), mix)
    explicit.train()
    grads = []
    for rows in (slice(0, 2), slice(2, 4)):
        explicit.zero_grad()
        torch_steps.soft_cross_entropy(explicit(xa[rows]), targets[rows]).backward()
        grads.append([p.grad.clone() for p in explicit.parameters()])
    for p, g0, g1 in zip(explicit.parameters(), *grads, strict=True):
        p.grad = (g0 + g1) / 2
    optimizer.step()

    update = _state_diff(explicit, model)
    assert _state_diff(two, explicit) <= 1e-5 * update  # float32: 1 ulp is ~1e-7 of it
    assert int(two.state_dict()["bn1.num_batches_tracked"]) == 2  # once per micro-batch
    assert _state_diff(one, two) > 1e-2 * update


def test_torch_resnet18_still_fits_the_synthetic_clips_with_micro_batches(torch_tiny):
    """8 clips of the tiny synthetic corpus in 2 micro-batches of 4 (BatchNorm over 4 rows),
    the recipe's AdamW at 1e-3, no augmentation: 3 steps take the loss from chance (ln 3 = 1.1)
    to below a tenth of it and every clip right (measured: 1.10, 0.18, 0.02)."""
    from shared_data.dataset.opened import open_dataset
    from shared_data.training.split import load_training_data
    from tests.support.tiny_runs import tiny_recipe

    recipe = tiny_recipe(torch_tiny, torch_tiny["data_dir"], model="resnet18").resolved("torch")
    data = load_training_data(recipe, open_dataset(torch_tiny["data_dir"], torch_tiny["config"]))
    rows = [data.source[int(i)] for i in data.train_indices[:8]]
    mel = np.stack([np.asarray(r["mel"]) for r in rows])[:, None]
    x = torch.from_numpy(((mel - data.mel_mean) / data.mel_std).astype(np.float32))
    labels = torch.tensor([int(r["label"]) for r in rows])
    assert len(set(labels.tolist())) == 3  # every genre is there
    torch.manual_seed(0)
    model = create_torch_model("resnet18", 3, in_chans=1)
    optimizer = torch_steps.make_optimizer(model.parameters(), recipe)
    losses = []
    for _ in range(3):
        loss, correct = torch_steps.train_step(
            model, optimizer, x, labels, spec_draws=None, mixup_draws=None, num_classes=3,
            micro_batches=2,
        )  # fmt: skip
        losses.append(float(loss))
    assert losses[0] > 0.9 and losses[-1] < 0.1 * losses[0], losses
    assert float(correct) == 8
