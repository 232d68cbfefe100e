"""What a run directory records about its run."""

from __future__ import annotations

import json

from shared_data.training.recipe import Recipe
from shared_data.training.runinfo import RECIPE_FILE, run_metadata, versions, write_run_info


def test_versions_are_read_without_importing_the_frameworks():
    v = versions()
    assert v["python"].count(".") == 2
    for name in ("numpy", "jax", "flax", "optax", "torch"):
        assert v[name], name


def test_write_run_info_round_trips_the_recipe(tmp_path):
    r = Recipe(model="lstm", epochs=4).resolved("jax", accelerator=False)
    path = write_run_info(tmp_path / "run", r, "jax", extra={"devices": 4})
    assert path == tmp_path / "run" / RECIPE_FILE
    info = json.loads(path.read_text())
    assert info["run"]["backend"] == "jax" and info["run"]["devices"] == 4
    assert set(info["run"]["git"]) == {"commit", "dirty"}
    assert Recipe.from_json(path.read_text()) == r
    assert [p.name for p in path.parent.iterdir()] == [RECIPE_FILE]  # no temporary file left


def test_run_metadata_names_the_backend():
    meta = run_metadata("torch")
    assert meta["backend"] == "torch"
    assert meta["started_utc"].endswith("+00:00")
