"""`make demo`'s commands parse into what the README says the demo runs.

The demo itself takes about 12 minutes (README, "What make demo does"); this checks, in seconds,
that the Makefile's flags are valid for the CLIs they are passed to and give the demo's recipe.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from jax_impl import train as jax_train
from shared_data.dataset import build_cli as build
from shared_data.training.recipe_flags import recipe_from_args

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo_commands() -> dict[str, list[str]]:
    """``module -> argv`` of each project ``python -m module ...`` line ``make -n demo`` prints
    (the venv's ``pip install`` lines, printed when the venv is missing or stale, are left out)."""
    if shutil.which("make") is None:
        pytest.fail("`make` is not installed; the README's two commands need it")
    out = subprocess.run(
        ["make", "-n", "demo"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    commands = {}
    for line in out.replace("\\\n", " ").splitlines():
        words = shlex.split(line)
        if len(words) > 2 and words[1] == "-m" and words[2] != "pip":
            commands[words[2]] = words[3:]
    return commands


def test_demo_builds_trains_and_evaluates_in_order(demo_commands):
    assert list(demo_commands) == [
        "shared_data.build",
        "jax_impl.train",
        "jax_impl.evaluate",
    ]


def test_demo_builds_the_synthetic_corpus(demo_commands):
    args = build.build_parser().parse_args(demo_commands["shared_data.build"])
    assert args.config == "synthetic"


def test_demo_trains_resnet18_with_the_short_run_recipe(demo_commands):
    args = jax_train.build_parser().parse_args(demo_commands["jax_impl.train"])
    recipe = recipe_from_args(args).resolved("jax", accelerator=False)
    assert (recipe.model, recipe.dataset, recipe.epochs, recipe.batch_size) == (
        "resnet18",
        "synthetic",
        3,
        8,
    )
    assert recipe.lr == 5e-4 and recipe.precision == "fp32"
    assert not any(recipe.mixup_active(e) for e in range(recipe.epochs))
    spec = recipe.spec_augment()
    assert spec.num_time_masks == 0 and spec.num_freq_masks == 0
