"""A run directory's files read back safely: every kind of broken checkpoint gives one clear
error naming the step directory or file and the fix, ``restore_readable`` falls back past it with
a warning, and ``recipe.json`` is validated field by field (:func:`read_run_info`)."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jax_impl import checkpoint as jax_ckpt
from shared_data.training.recipe import Recipe
from shared_data.training.resume_check import CheckpointError
from shared_data.training.runinfo import RunInfoError, read_run_info, write_run_info
from torch_ref import checkpoint as torch_ckpt

# --- JAX (orbax) ---------------------------------------------------------------------------


def _truncate_data(step_dir: Path) -> None:
    for f in (step_dir / "state").rglob("d/*"):
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def _drop(name: str):
    def drop(step_dir: Path) -> None:
        for f in (step_dir / "state").rglob(name):
            f.unlink()

    return drop


JAX_DAMAGE = {
    "truncated_data": _truncate_data,
    "missing_metadata": _drop("_METADATA"),
    "missing_manifest": _drop("manifest.ocdbt"),
}


@pytest.fixture(scope="module")
def jax_run(tmp_path_factory) -> Path:
    """Steps 2 (best, val_acc 0.5) and 4 (latest) of a small state."""
    workdir = tmp_path_factory.mktemp("jax_ckpts")
    ckpts = jax_ckpt.Checkpoints(workdir)
    for step, val_acc in ((2, 0.5), (4, None)):
        ckpts.save(step, {"w": jnp.arange(3.0) + step}, {"step": step}, val_acc=val_acc)
    ckpts.close()
    return workdir


@pytest.mark.parametrize("damage", sorted(JAX_DAMAGE))
def test_a_damaged_orbax_checkpoint_names_its_step_and_the_fix(jax_run, damage, tmp_path):
    shutil.copytree(jax_run, tmp_path / "run")
    JAX_DAMAGE[damage](tmp_path / "run" / "checkpoints" / "4")
    ckpts = jax_ckpt.Checkpoints(tmp_path / "run")
    # No target, as predict/evaluate read a member (with a target orbax needs no _METADATA).
    target = None
    with pytest.raises(CheckpointError) as err:
        ckpts.restore("latest", target)
    step_dir = tmp_path / "run" / "checkpoints" / "4"
    assert f"checkpoint {step_dir} cannot be read" in str(err.value)
    assert "delete that step directory" in str(err.value)

    warnings: list[str] = []
    got = ckpts.restore_readable("latest", target, warn=warnings.append)
    assert got.step == 2 and got.meta == {"step": 2}
    np.testing.assert_array_equal(got.state["w"], np.arange(3.0) + 2)
    assert len(warnings) == 1 and str(step_dir) in warnings[0] and got.skipped == warnings
    ckpts.close()


def test_orbax_fallback_from_best_and_set_aside(jax_run, tmp_path):
    shutil.copytree(jax_run, tmp_path / "run")
    _truncate_data(tmp_path / "run" / "checkpoints" / "2")
    ckpts = jax_ckpt.Checkpoints(tmp_path / "run")
    got = ckpts.restore_readable("best", None, warn=None, set_aside=True)
    assert got.step == 4 and "moved to" in got.skipped[0]
    assert (tmp_path / "run" / "unreadable_checkpoints" / "2").is_dir()
    assert ckpts.all_steps() == [4]  # out of orbax's sight: later saves order after step 4
    ckpts.close()


# --- torch -----------------------------------------------------------------------------------


class _Payload:
    """A pickled object whose loading would run code (creates the marker file)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _torch_run(workdir: Path) -> torch_ckpt.Checkpoints:
    ckpts = torch_ckpt.Checkpoints(workdir)
    for step, val_acc in ((2, 0.5), (4, None)):
        state = {"model": {"w": torch.full((3,), float(step))}}
        ckpts.save(step, state, {"global_step": step, "epoch": step // 2}, val_acc=val_acc)
    return ckpts


@pytest.mark.parametrize("damage", ["truncated", "pickle_payload", "empty"])
def test_a_damaged_pt_file_names_itself_and_the_fix(damage, tmp_path):
    ckpts = _torch_run(tmp_path)
    marker = tmp_path / "executed"
    if damage == "truncated":
        data = ckpts.latest_path.read_bytes()
        ckpts.latest_path.write_bytes(data[: len(data) // 2])
    elif damage == "pickle_payload":
        ckpts.latest_path.write_bytes(pickle.dumps({"global_step": 4, "x": _Payload(marker)}))
    else:
        ckpts.latest_path.write_bytes(b"")
    with pytest.raises(CheckpointError) as err:
        ckpts.restore("latest")
    assert f"checkpoint {ckpts.latest_path} cannot be read" in str(err.value)
    assert "delete it" in str(err.value) and not marker.exists()

    warnings: list[str] = []
    got = ckpts.restore_readable("latest", warn=warnings.append)
    assert got.step == 2 and got.meta["epoch"] == 1
    assert torch.equal(got.state["model"]["w"], torch.full((3,), 2.0))
    assert len(warnings) == 1 and str(ckpts.latest_path) in warnings[0]
    assert ckpts.latest_step() is None and ckpts.best_step() == 2


def test_torch_checkpoints_keep_latest_and_best_and_report_steps(tmp_path):
    ckpts = _torch_run(tmp_path)
    assert (ckpts.latest_step(), ckpts.best_step(), ckpts.all_steps()) == (4, 2, [2, 4])
    assert ckpts.path("best") == ckpts.best_path and ckpts.path(4) == ckpts.latest_path
    state, meta = ckpts.restore("best")
    assert set(state) == {"model"} and meta == {"global_step": 2, "epoch": 1}
    assert ckpts.read_meta() == {"global_step": 4, "epoch": 2}
    with pytest.raises(CheckpointError, match="holds no checkpoint"):
        torch_ckpt.Checkpoints(tmp_path / "empty").restore_readable()


# --- recipe.json -----------------------------------------------------------------------------


def _info(tmp_path: Path) -> dict:
    recipe = Recipe(model="lstm", epochs=2).resolved("torch", accelerator=False)
    extra = {"dataset": {"label_names": ["blues", "metal"], "mel_mean": -30.0, "mel_std": 12.0,
                         "separator": "none", "stem": "mix", "feature_params": {}}}  # fmt: skip
    return json.loads(write_run_info(tmp_path, recipe, "torch", extra=extra).read_text())


def test_read_run_info_accepts_what_training_writes(tmp_path):
    written = _info(tmp_path)
    info = read_run_info(tmp_path)
    assert info.recipe == Recipe.from_dict(written["recipe"]) and info.backend == "torch"
    assert info.dataset["label_names"] == ["blues", "metal"]
    assert info.path == tmp_path / "recipe.json"


BAD = [
    (lambda i: i["run"]["dataset"].update(mel_std=0.0), "run.dataset.mel_std"),
    (lambda i: i["run"]["dataset"].update(mel_std=float("nan")), "run.dataset.mel_std"),
    (lambda i: i["run"]["dataset"].update(mel_std="12"), "run.dataset.mel_std"),
    (lambda i: i["run"]["dataset"].update(mel_mean=float("inf")), "run.dataset.mel_mean"),
    (lambda i: i["run"]["dataset"].update(label_names=[]), "run.dataset.label_names"),
    (lambda i: i["run"]["dataset"].update(label_names=["a", "a"]), "run.dataset.label_names"),
    (lambda i: i["run"].update(backend="tensorflow"), "run.backend"),
    (lambda i: i["recipe"].update(epochs="two"), "--epochs must be of type int"),
    (lambda i: i["recipe"].update(model="resnet9000"), "resnet9000"),
    (lambda i: i["recipe"].update(colour="red"), "unknown recipe fields"),
    (lambda i: i.pop("run"), "run must be an object"),
]


@pytest.mark.parametrize("edit, field", BAD, ids=[f for _, f in BAD])
def test_read_run_info_names_the_file_and_the_bad_field(tmp_path, edit, field):
    info = _info(tmp_path)
    edit(info)
    # allow_nan: the file may hold NaN/Infinity literals (Python's json writes them).
    (tmp_path / "recipe.json").write_text(json.dumps(info))
    with pytest.raises(RunInfoError) as err:
        read_run_info(tmp_path / "recipe.json")
    assert str(tmp_path / "recipe.json") in str(err.value) and field in str(err.value)


@pytest.mark.parametrize("text", ["", "{not json", "[1, 2]"])
def test_read_run_info_refuses_unparsable_files(tmp_path, text):
    (tmp_path / "recipe.json").write_text(text)
    with pytest.raises(RunInfoError, match=str(tmp_path / "recipe.json")):
        read_run_info(tmp_path)
    with pytest.raises(RunInfoError, match="not a training run directory"):
        read_run_info(tmp_path / "elsewhere")
