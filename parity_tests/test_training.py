"""Training parity between the JAX step and the torch reference step (``docs/design.md``, parity).

1. One step from the same converted weights, batch and injected draws gives the same parameters
   and BatchNorm statistics (``resnet18``, SGD with Nesterov momentum and L2 decay, SpecAugment
   with and without Mixup; float64, rtol 1e-9).
2. Two epochs of ``synthetic_small`` with the same initial weights, each backend reading the data
   through its own loader in the shared ``(seed, epoch)`` order, and the same injected draws, give
   loss curves within rtol 1e-3 (``lstm``, the recipe's AdamW and cosine schedule, fp32, CPU).
3. Trained independently (each backend its own initialisation, data order and draws from its own
   RNG streams), both reach the same validation accuracy within 2 points; see the test for the
   statistics this relies on.

Both sides run in fp32 with JAX's matmuls at full float32 precision.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from jax_impl import convert
from jax_impl import data as jax_data
from jax_impl import schedule as jax_schedule
from jax_impl import train as jax_train
from jax_impl import train_step as ts
from shared_data.dataset import splits
from shared_data.dataset.builder import build_dataset
from shared_data.dataset.configs import VocalMelsConfig
from shared_data.dataset.opened import open_dataset
from shared_data.training.recipe import Recipe
from shared_data.training.split import load_training_data
from torch_ref import augment as torch_augment
from torch_ref import data as torch_data
from torch_ref import schedule as torch_schedule
from torch_ref import train as torch_train
from torch_ref import train_step as torch_steps
from torch_ref.models import create_model as create_torch_model


@pytest.fixture(autouse=True)
def full_precision():
    with jax.default_matmul_precision("float32"):
        yield


def _torch_draws(draws: ts.StepDraws, mixup: bool):
    """The JAX draws as torch's NamedTuples (int64 indices, float32 lambda)."""
    spec = torch_augment.SpecAugmentDraws(
        *(torch.from_numpy(np.asarray(a).astype(np.int64)) for a in draws.spec)
    )
    mix = None
    if mixup:
        mix = torch_augment.MixupDraws(
            torch.tensor(float(draws.mixup.lam), dtype=torch.float32),
            torch.from_numpy(np.asarray(draws.mixup.perm).astype(np.int64)),
        )
    return spec, mix


def _jax_side(
    name: str, torch_model: torch.nn.Module, num_classes: int, recipe, spe: int, **dtypes
):
    """The JAX model holding torch's weights, split into graphs and a train state; ``dtypes``
    (``dtype``, ``param_dtype``) go to the model."""
    # Copies: on the CPU, jnp.asarray may alias a numpy view of torch's memory, which torch's
    # optimizer then updates in place under JAX's feet.
    weights = {k: v.detach().numpy().copy() for k, v in torch_model.state_dict().items()}
    model = convert.torch_to_jax(name, weights, num_classes, **dtypes)
    graphs, state = ts.split_model(model)
    schedule = jax_schedule.make_schedule(recipe, spe)
    tx = ts.make_optimizer(recipe, schedule)
    state["opt_state"] = tx.init(state["params"])
    cfg = ts.StepConfig.from_recipe(recipe, num_classes)
    return graphs, state, ts.make_injected_train_step(graphs.train, tx, schedule, cfg), cfg


def _as_torch_state(graphdef, state) -> dict[str, np.ndarray]:
    """A JAX train state's parameters and BatchNorm statistics under torch's keys and layouts."""
    return convert.jax_to_torch(nnx.merge(graphdef, state["params"], state["rest"]))


@pytest.mark.parametrize("mixup", [True, False], ids=["mixup", "cross_entropy"])
def test_one_sgd_step_matches_torch(mixup):
    """One SGD step (Nesterov momentum, L2 decay, the recipe's LR for batch 4), in float64 in
    both backends: every parameter and BatchNorm statistic within atol 1e-9 (rtol 1e-7), the loss
    within 1e-12 and the LR exactly.

    Why float64: at 32x32 input layer4's BatchNorm normalises 1x1 maps over 4 examples, which
    amplifies float32 rounding, and by how much depends on the CPU's summation order. In float32
    the two backends agreed to ~2e-8 absolute on Intel Xeon (Sapphire Rapids) but differed by
    4e-6 (0.8 % of the update) in conv1 on AMD EPYC (Zen 4). In float64 the one float32 left is
    the learning rate of JAX's schedule (optax computes it in float32), so an update of size
    ``u`` (at most ~2e-3 here) carries a relative rounding of ~6e-8, i.e. ~1e-10 absolute
    (measured in conv1: 1.2e-10 on AMD EPYC; BatchNorm's running statistics, of order 1, agree
    to 2.4e-8, within the rtol); the bound of 1e-9 leaves a margin of ~10, while a real
    difference between the steps (a wrong decay, momentum or Mixup rule) moves the parameters by
    a sizeable fraction of the update (> 1e-3 here).

    One step, not more: ReLU is not differentiable at 0, and with batch 4 of random input a later
    step can hold a pre-activation within rounding distance of 0; there, a tiny difference in the
    weights flips the kink and moves a layer's gradient by up to 2%. Such a comparison measures
    luck, not the implementations.
    """
    torch.manual_seed(0)
    num_classes, spe = 10, 5
    recipe = Recipe(model="resnet18", batch_size=4, optimizer="sgd", mixup_alpha=0.4)
    recipe = recipe.resolved("jax", accelerator=False)
    torch_model = create_torch_model("resnet18", num_classes).double()
    optimizer = torch_steps.make_optimizer(torch_model.parameters(), recipe)
    initial = {k: v.numpy().copy() for k, v in torch_model.state_dict().items()}

    rng = np.random.default_rng(1)
    mel = rng.normal(size=(4, 1, 32, 32))  # float64; small input: cheap, same code
    labels = rng.integers(0, num_classes, size=4)
    with jax.enable_x64(True):
        f64 = {"dtype": jnp.float64, "param_dtype": jnp.float64}
        graphs, state, jax_step, cfg = _jax_side(
            "resnet18", torch_model, num_classes, recipe, spe, **f64
        )
        draws = ts.draw_step(ts.step_key(7, 0, 0), cfg, (4, 32, 32, 1))
        spec, mix = _torch_draws(draws, mixup=mixup)
        lr_t = optimizer.param_groups[0]["lr"]
        loss_t, _ = torch_steps.train_step(
            torch_model, optimizer, torch.from_numpy(mel), torch.from_numpy(labels),
            spec_draws=spec, mixup_draws=mix, num_classes=num_classes,
            fill_value=cfg.spec.fill_value,
        )  # fmt: skip
        batch = {"mel": jnp.asarray(mel.transpose(0, 2, 3, 1)), "label": jnp.asarray(labels)}
        state, metrics = jax_step(state, batch, draws, mixup)
        got = _as_torch_state(graphs.train, state)
    assert metrics["loss"].dtype == jnp.float64 and loss_t.dtype == torch.float64
    np.testing.assert_allclose(float(metrics["loss"]), float(loss_t), rtol=1e-12)
    assert float(metrics["lr"]) == pytest.approx(lr_t, rel=1e-6) and lr_t == recipe.lr

    expected = {k: v.numpy() for k, v in torch_model.state_dict().items()}
    assert got.keys() == expected.keys()
    worst = 0.0
    for key in expected:
        if key.endswith("num_batches_tracked"):
            continue  # JAX keeps no counter (docs/design.md, "Conventions")
        assert got[key].dtype == np.float64, key
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-7, atol=1e-9, err_msg=key)
        worst = max(worst, float(np.abs(got[key] - expected[key]).max()))
    print(f"largest parameter difference: {worst:.2e}")
    moved = max(np.abs(expected[k] - initial[k]).max() for k in expected if k.endswith("weight"))
    assert moved > 1e-3  # the step did something the comparison can see


# --- two epochs, same everything -------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic_small(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("synthetic_small")
    build_dataset(data_dir, "synthetic_small", progress=False, separator="none", stem="mix")
    return data_dir


def test_two_epochs_of_synthetic_small_give_the_same_loss_curve(synthetic_small):
    """6 steps (2 epochs x 3 batches of 16): Mixup in epoch 1, cross-entropy in epoch 2; AdamW
    with the cosine schedule over the run. Each backend reads through its own loader; the batches
    must be equal element for element, and the per-step losses within rtol 1e-3.

    ``lstm``: besides being the cheapest model on the CPU, it is smooth (sigmoid/tanh, no ReLU
    kinks; see the one-step test), so two backends that agree to rounding stay together.
    """
    recipe = Recipe(
        model="lstm", dataset="synthetic_small", data_dir=str(synthetic_small), epochs=2,
        batch_size=16, seed=0,
    ).resolved("jax", accelerator=False)  # fmt: skip
    dataset = open_dataset(synthetic_small, "synthetic_small")
    data = load_training_data(recipe, dataset)  # the fold split both backends read
    spe, num_classes = data.steps_per_epoch, data.num_classes
    assert spe == 3

    torch.manual_seed(recipe.seed)
    torch_model = create_torch_model("lstm", num_classes)
    optimizer = torch_steps.make_optimizer(torch_model.parameters(), recipe)
    scheduler = torch_schedule.make_schedule(recipe, spe, optimizer=optimizer)
    _, state, jax_step, cfg = _jax_side("lstm", torch_model, num_classes, recipe, spe)
    loader, sampler = torch_data.train_batches(data, recipe)

    losses = {"jax": [], "torch": []}
    for epoch in range(recipe.epochs):
        mixup = recipe.mixup_active(epoch)
        sampler.set_epoch(epoch)
        jax_batches = jax_data.train_batches(
            data.source,
            data.epoch_order(epoch),
            global_batch=recipe.batch_size,
            norm=jax_data.Normalizer(data.mel_mean, data.mel_std),
        )
        for step, ((x, labels, _), batch) in enumerate(zip(loader, jax_batches, strict=True)):
            np.testing.assert_array_equal(x.numpy().transpose(0, 2, 3, 1), batch["mel"])
            np.testing.assert_array_equal(labels.numpy(), batch["label"])
            draws = ts.draw_step(ts.step_key(recipe.seed, epoch, step), cfg, batch["mel"].shape)
            spec, mix = _torch_draws(draws, mixup)
            loss, _ = torch_steps.train_step(
                torch_model, optimizer, x, labels, spec_draws=spec, mixup_draws=mix,
                num_classes=num_classes, label_smoothing=recipe.label_smoothing,
                fill_value=cfg.spec.fill_value,
            )  # fmt: skip
            torch_schedule.step_scheduler(scheduler, epoch, step, spe)
            state, metrics = jax_step(state, jax.tree.map(jnp.asarray, batch), draws, mixup)
            losses["torch"].append(float(loss))
            losses["jax"].append(float(metrics["loss"]))

    assert len(losses["jax"]) == 2 * spe
    np.testing.assert_allclose(losses["jax"], losses["torch"], rtol=1e-3)
    assert np.mean(losses["torch"][-2:]) < np.mean(losses["torch"][:2])  # it trained


# --- independent training --------------------------------------------------------------------

SEPARABLE = VocalMelsConfig(
    name="parity_separable",
    source="synthetic",
    songs_per_genre=8,
    seconds=6.0,  # two whole 3-s clips per song (a 4-s song's second clip is mostly padding)
    genres=("classical", "hiphop", "metal"),
)


def test_independent_training_reaches_the_same_validation_accuracy(tmp_path):
    """Each backend trains ``lstm`` its own way (its own initialisation, data order and draws, from
    different seeds) with its own ``train_and_evaluate``; validation accuracies within 2 points.

    The statistics: a comparison of two independently trained models is a comparison of two
    binomial estimates, and 2 points is far below their noise unless the validation set is large
    (at an accuracy of 0.9 on n clips, one estimate's standard deviation is 30/sqrt(n) points:
    2 points needs n ~ 900 clips per model, or averaging many seeds). A CI-sized test can only make
    the claim where there is no noise: a task both models learn completely. Three synthetic
    genres that differ in instrumentation, tempo and pitch range are separable (either backend
    reaches 100% within 2 epochs here). Fold 2 of this corpus holds 14 validation clips (4, 4 and
    6 per genre) and leaves 34 for training; one misclassified clip is 7 points, so "within 2
    points" means the same count of correct clips, and both must be >= 95%, i.e. all correct. A
    backend with a broken loss, label handling, augmentation, schedule or eval mode would not get
    there, which is what this test is for.
    """
    data_dir = tmp_path / "data"
    build_dataset(
        data_dir, SEPARABLE, progress=False, separator="none", stem="mix", fold_method="hash"
    )  # its fold sizes were measured on hash folds
    source = open_dataset(data_dir, SEPARABLE.name).source("train")
    folds, labels = splits.read_fold_labels(source)
    assert np.bincount(labels[folds == 2]).tolist() == [4, 4, 6]  # the split described above
    common = dict(
        model="lstm", dataset=SEPARABLE.name, data_dir=str(data_dir), fold=2, epochs=3,
        batch_size=8, log_every=100,
    )  # fmt: skip
    jax_run = jax_train.train_and_evaluate(Recipe(**common, seed=1, workdir=str(tmp_path / "jax")))
    torch_run = torch_train.train_and_evaluate(
        Recipe(**common, seed=2, workdir=str(tmp_path / "torch"))
    )
    accs = (jax_run["final_val_acc"], torch_run["final_val_acc"])
    assert min(accs) >= 0.95, accs
    assert abs(accs[0] - accs[1]) <= 0.02, accs
