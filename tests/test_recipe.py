"""The recipe: defaults, resolution, flags, validation and JSON round trips."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from shared_data.architecture.names import MODEL_NAMES
from shared_data.errors import UserError
from shared_data.training.recipe import (
    Recipe,
    RecipeError,
    SpecAugmentSpec,
    default_t0_epochs,
)
from shared_data.training.recipe_flags import add_recipe_flags, recipe_from_args


def parse(*argv: str) -> Recipe:
    parser = argparse.ArgumentParser()
    add_recipe_flags(parser)
    return recipe_from_args(parser.parse_args(list(argv)))


def test_no_flags_gives_the_dataclass_defaults():
    assert parse() == Recipe()


def test_every_field_has_a_flag_and_help():
    parser = argparse.ArgumentParser()
    add_recipe_flags(parser)
    flags = {a.dest: a for a in parser._actions}
    for f in dataclasses.fields(Recipe):
        assert f.name in flags
        assert f.metadata.get("help"), f"field {f.name} has no help text"


def test_flags_parse_types_optionals_and_booleans():
    r = parse(
        "--model=densenet201",
        "--epochs=7",
        "--lr=0.01",
        "--resume=false",
        "--nesterov",
        "--t0_epochs=3",
        "--data_dir=/tmp/x",
    )
    assert (r.model, r.epochs, r.lr, r.resume, r.nesterov) == ("densenet201", 7, 0.01, False, True)
    assert r.t0_epochs == 3 and r.data_dir == "/tmp/x"
    assert parse("--lr=none").lr is None


def test_a_malformed_flag_value_names_the_flag(capsys):
    with pytest.raises(SystemExit):
        parse("--epochs=three")
    assert "--epochs" in capsys.readouterr().err


@pytest.mark.parametrize(
    "kwargs,flag",
    [
        ({"epochs": 0}, "--epochs must be >= 1"),
        ({"batch_size": 0}, "--batch_size"),
        ({"fold": 5, "folds": 5}, "--fold must be in [0, --folds=5)"),
        ({"precision": "fp16"}, "--precision"),
        ({"optimizer": "adam"}, "--optimizer"),
        ({"lr": 0.01, "eta_min": 0.02}, "--eta_min"),
        ({"t_mult": 0}, "--t_mult"),
        ({"mixup_fraction": 1.5}, "--mixup_fraction"),
        ({"max_time_width": -1}, "--max_time_width"),
        ({"epochs": 10, "restarts": 1, "t0_epochs": 3}, "--t0_epochs and --restarts"),
        ({"epochs": "10"}, "--epochs must be of type int"),
        ({"micro_batch_size": 0}, "--micro_batch_size must be >= 1"),
        (
            {"batch_size": 64, "micro_batch_size": 24},
            "--micro_batch_size=24 must divide --batch_size=64 (e.g. --micro_batch_size=16)",
        ),
    ],
)
def test_bad_values_raise_a_user_error_naming_the_flag(kwargs, flag):
    with pytest.raises(RecipeError) as err:
        Recipe(**kwargs)
    assert flag in str(err.value)
    assert isinstance(err.value, UserError)


def test_unknown_model_lists_the_valid_names():
    with pytest.raises(RecipeError) as err:
        parse("--model=resnet9000")
    message = str(err.value)
    assert "resnet9000" in message
    assert all(name in message for name in MODEL_NAMES)


def test_resolved_fills_the_derived_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("VOCALGENRE_DATA_DIR", str(tmp_path))
    r = Recipe(model="lstm", fold=3, epochs=20).resolved("torch", accelerator=False)
    assert r.data_dir == str(tmp_path)
    assert r.workdir == "runs/torch/lstm/fold3"
    assert (r.lr, r.weight_decay, r.t0_epochs, r.precision) == (1e-3, 0.05, 20, "fp32")
    assert Recipe().resolved("jax", accelerator=True).precision == "bf16"
    assert Recipe().resolved("jax").precision == "auto"
    sgd = Recipe(optimizer="sgd", batch_size=256).resolved("jax")
    assert sgd.lr == pytest.approx(0.2) and sgd.weight_decay == 5e-4
    explicit = Recipe(lr=0.3, weight_decay=0.0, workdir="w", data_dir="d").resolved("jax")
    assert (explicit.lr, explicit.weight_decay, explicit.workdir, explicit.data_dir) == (
        0.3,
        0.0,
        "w",
        "d",
    )


@pytest.mark.parametrize(
    "epochs,restarts,t_mult,expected",
    [(30, 0, 1, 30), (12, 2, 1, 4), (10, 2, 1, 4), (14, 2, 2, 2), (15, 2, 2, 3), (1, 3, 2, 1)],
)
def test_default_t0_covers_the_run_with_restarts_plus_one_cycles(
    epochs, restarts, t_mult, expected
):
    t0 = default_t0_epochs(epochs, restarts, t_mult)
    assert t0 == expected
    # The restarts+1 cycles reach at least the end of the run, and one fewer cycle does not.
    ends = [t0 * sum(t_mult**i for i in range(n + 1)) for n in range(restarts + 1)]
    assert ends[-1] >= epochs
    if t0 > 1:
        assert (t0 - 1) * sum(t_mult**i for i in range(restarts + 1)) < epochs


def test_mixup_runs_for_the_first_fraction_of_the_epochs():
    r = Recipe(epochs=10)
    assert [r.mixup_active(e) for e in range(10)] == [True] * 5 + [False] * 5
    assert Recipe(epochs=5).mixup_epochs == 2
    assert Recipe(epochs=10, mixup_alpha=0.0).mixup_epochs == 0
    assert Recipe(epochs=10, mixup_fraction=1.0).mixup_epochs == 10


def test_micro_batches_default_to_one_pass():
    assert Recipe().micro_batch_size is None and Recipe().micro_batches == 1
    assert Recipe(batch_size=64, micro_batch_size=16).micro_batches == 4
    assert parse("--micro_batch_size=8", "--batch_size=32").micro_batches == 4
    assert parse("--micro_batch_size=none").micro_batch_size is None


def test_spec_augment_spec_comes_from_the_recipe():
    r = Recipe(num_time_masks=1, max_time_width=8, num_freq_masks=3, max_freq_width=5)
    assert r.spec_augment() == SpecAugmentSpec(1, 8, 3, 5, 0.0)
    hash(r.spec_augment())  # static jit arguments must be hashable


def test_json_round_trip_and_run_file_wrapper():
    r = Recipe(model="cbam_resnet18", epochs=3, lr=0.5, eta_min=0.25).resolved("jax")
    assert Recipe.from_json(r.to_json()) == r
    wrapped = '{"recipe": ' + r.to_json() + ', "run": {"backend": "jax"}}'
    assert Recipe.from_json(wrapped) == r
    assert Recipe.from_dict({**Recipe().to_dict(), "lr": 1}).lr == 1.0  # JSON int for a float


def test_from_dict_rejects_unknown_fields():
    with pytest.raises(RecipeError, match="unknown recipe fields"):
        Recipe.from_dict({"epochs": 3, "learning_rate": 0.1})


def test_recipe_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Recipe().epochs = 3  # type: ignore[misc]
