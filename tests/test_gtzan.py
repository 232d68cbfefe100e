"""GTZAN: the shipped fault-filtered lists, both download layouts, the build report's exclusions
and faults, and both backends training on the validation split and scoring the test split.

The generated downloads (:mod:`tests.support.gtzan_tree`) hold 2-s tones under the names of 16
real clips: the first listed clips of three genres per split, one clip of each genre outside the
lists, and an unreadable ``jazz.00054`` (listed for training, as in the widespread copy).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from shared_data.dataset import gtzan
from shared_data.dataset.build_cli import main as build_main
from shared_data.dataset.builder import build_dataset
from shared_data.dataset.configs import VocalMelsConfig
from shared_data.dataset.features import FeatureParams
from shared_data.dataset.opened import open_dataset
from shared_data.dataset.split_source import NO_FOLD
from shared_data.errors import DataError
from shared_data.training.recipe import Recipe
from tests.support.builder_inputs import read_records
from tests.support.ensemble_runs import torch_threads
from tests.support.gtzan_tree import GENRES, UNREADABLE, make_gtzan
from tests.support.tiny_runs import train_module

ROOT = Path(__file__).resolve().parents[1]
# 0.5-s clips of 16 frames (as the torch training tests use): 2-s clips give 4 records each.
TINY = VocalMelsConfig(
    name="gtzan_tiny",
    source="gtzan",
    feature_params=FeatureParams(clip_samples=11025, clip_hop=11025, frames=16, min_seconds=0.4),
)
BUILD = dict(separator="none", stem="mix", progress=False)


def _ids(dataset, split: str) -> list[str]:
    source = dataset.source(split)
    return sorted({source[i]["song_id"].decode() for i in range(len(source))})


def test_the_shipped_lists_are_the_published_split():
    lists = gtzan.fault_filtered_lists()
    assert {k: len(v) for k, v in lists.items()} == {"train": 443, "validation": 197, "test": 290}
    every = [c for ids in lists.values() for c in ids]
    assert len(set(every)) == 930  # no clip in two lists, none twice in one
    assert {c.split(".")[0] for c in every} == set(gtzan.GENRES)
    assert UNREADABLE in lists["train"]
    # The faults data: the unreadable clip is named, and every repetition group is of real ids.
    assert [f["clip"] for f in gtzan.known_faults()] == [UNREADABLE]
    groups = gtzan.repetitions()
    assert len(groups) == 66 and all(len(g["clips"]) >= 2 for g in groups)
    assert all(gtzan.is_clip_id(c) for g in groups for c in g["clips"])


def test_a_built_wheel_carries_the_lists(tmp_path):
    # A copy of the project, so the build's build/ and egg-info never land in the checkout.
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("shared_data", "jax_impl", "torch_ref", "benchmarks"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "--no-index", str(src), "-w", str(tmp_path / "dist")],
        check=True, capture_output=True,
    )  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("vocalgenre-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {
        f"shared_data/dataset/data/{name}"
        for name in [*gtzan.SPLIT_FILES.values(), gtzan.REPETITIONS_FILE, gtzan.FAULTS_FILE]
    }
    assert shipped <= names
    # Installed (not editable) and imported from outside the checkout, it still finds them.
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
         f"--target={site}", str(wheel)],
        check=True, capture_output=True,
    )  # fmt: skip
    probe = (
        "from shared_data.dataset import gtzan; "
        "print(gtzan.__file__, *map(len, gtzan.fault_filtered_lists().values()))"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, check=True,
                          capture_output=True, text=True)  # fmt: skip
    where, *sizes = done.stdout.split()
    assert Path(where).is_relative_to(site)
    assert sizes == ["443", "197", "290"]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    """The tiny config built from each layout (and the download trees)."""
    root = tmp_path_factory.mktemp("gtzan")
    out = {}
    for layout in ("genres_original", "genres"):
        tree = make_gtzan(root / layout, layout)
        data_dir = root / f"data_{layout}"
        build_dataset(data_dir, TINY, input=tree.root, **BUILD)
        out[layout] = {
            "tree": tree,
            "data_dir": data_dir,
            "dataset": open_dataset(data_dir, TINY.name),
        }
    return out


def test_both_layouts_give_the_lists_splits_with_the_same_ids(built):
    wav, au = built["genres_original"], built["genres"]
    tree = wav["tree"]
    for split in ("train", "validation", "test"):
        expected = sorted(c for c, s in tree.split_of.items() if s == split)
        assert _ids(wav["dataset"], split) == expected
        assert _ids(au["dataset"], split) == expected
    meta = wav["dataset"].metadata
    assert meta["split"] == "fault_filtered"
    assert meta["num_songs"] == {"train": 9, "validation": 3, "test": 3}
    assert meta["num_clips"] == {"train": 36, "validation": 12, "test": 12}
    source = wav["dataset"].source("test")
    assert {int(source[i]["fold"]) for i in range(len(source))} == {NO_FOLD}
    # .au and .wav of one tone decode to the same samples, so the records are the same too.
    a, b = read_records(wav["dataset"], "train"), read_records(au["dataset"], "train")
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[k]["mel"], b[k]["mel"]) for k in a)


def test_the_report_names_exclusions_missing_clips_and_faults(built):
    tree = built["genres_original"]["tree"]
    report = json.loads(built["genres_original"]["dataset"].report_path.read_text())
    split = report["split"]
    assert split["listed"] == {"train": 443, "validation": 197, "test": 290}
    assert sorted(e["song_id"] for e in split["excluded"]) == sorted(tree.excluded)
    assert all("not in the fault-filtered lists" in e["reason"] for e in split["excluded"])
    n_missing = sum(len(v) for v in split["missing"].values())
    assert n_missing == 930 - len(tree.split_of) - 1  # the unreadable clip has a file
    assert "jazz.00002" not in split["missing"]["validation"]
    assert "jazz.00004" in split["missing"]["validation"]
    (bad,) = split["listed_but_rejected"]
    assert (bad["song_id"], bad["split"]) == (UNREADABLE, "train")
    row = next(r for r in report["files"] if r["path"] == f"jazz/{UNREADABLE}.wav")
    assert row["status"] == "rejected" and "not an audio file" in row["reason"]
    faults = report["gtzan_faults"]
    assert [f["clip"] for f in faults["clip_faults"]["faults"]] == [UNREADABLE]
    # Every excluded clip here repeats an artist and title of Sturm's index (why it was left out).
    named = {c for g in faults["repetitions"]["groups"] for c in g["clips"]}
    assert set(tree.excluded) <= named
    # Rows are the files read: the listed ones (the unreadable included), not the excluded ones.
    assert report["files_seen"] == report["files_ok"] + report["files_rejected"] == 16


def test_the_cli_builds_gtzan_by_default_fault_filtered_and_kfold_on_request(tmp_path, capsys):
    tree = make_gtzan(tmp_path / "dl")
    common = ["--config=gtzan", "--separator=none", "--stem=mix", "--no_progress"]
    assert build_main([*common, f"--input={tree.root}", f"--data_dir={tmp_path / 'ff'}"]) == 0
    out = capsys.readouterr().out
    assert "split fault_filtered (lists of 443/197/290): songs train 9, validation 3, test 3" in out
    assert f"jazz/{UNREADABLE}.wav: not an audio file" in out
    genre_dirs = tree.root / "genres_original"  # --input may point at the genre folders too
    flags = [*common, f"--input={genre_dirs}", f"--data_dir={tmp_path / 'k'}", "--split=kfold"]
    assert build_main(flags) == 0
    kfold = open_dataset(tmp_path / "k", "gtzan")
    assert kfold.splits == ("train",)
    assert len(_ids(kfold, "train")) == len(tree.split_of) + len(tree.excluded)


def test_listing_rules_and_refusals(tmp_path):
    tree = make_gtzan(tmp_path / "dl")
    base = tree.root / "genres_original"
    (base / "jazz" / "notes.txt").write_text("not a clip")
    shutil.copy(base / "metal" / "metal.00002.wav", base / "jazz" / "metal.00002.wav")
    items, labels = gtzan.gtzan_inputs(tree.root)
    assert labels == sorted(GENRES)
    by_path = {it.path: it for it in items}
    assert by_path["jazz/jazz.00000.wav"].song_id == "jazz.00000"
    for stray in ("jazz/notes.txt", "jazz/metal.00002.wav"):
        assert "not a GTZAN clip of its folder" in by_path[stray].reject_reason
    with pytest.raises(DataError, match="no GTZAN genre folders"):
        gtzan.gtzan_inputs(tmp_path)
    with pytest.raises(DataError, match="--split=fault_filtered is GTZAN's"):
        build_dataset(tmp_path / "d", "folder", input=base, split="fault_filtered", **BUILD)
    # A download without any clip of the validation and test lists cannot give those splits.
    for clip, split in tree.split_of.items():
        if split != "train":
            (base / clip.split(".")[0] / f"{clip}.wav").unlink()
    with pytest.raises(DataError, match="validation and test split would hold no clip"):
        build_dataset(tmp_path / "d", TINY, input=tree.root, **BUILD)


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_training_validates_on_the_validation_split_and_evaluate_scores_test(
    built, backend, tmp_path, capsys
):
    data_dir = built["genres_original"]["data_dir"]
    recipe = Recipe(
        model="lstm", dataset=TINY.name, data_dir=str(data_dir), workdir=str(tmp_path / "run"),
        epochs=1, batch_size=4, seed=0, log_every=1, checkpoint_every=1,
    )  # fmt: skip
    train = train_module(backend)
    with torch_threads(1):
        train.train_and_evaluate(recipe)
        status = capsys.readouterr().err
        assert f"training lstm on {TINY.name} validation split: 36 train / 12 val clips" in status
        # The validation split is what was scored: its 12 clips, not a fold of train.
        run = json.loads((tmp_path / "run" / "recipe.json").read_text())["run"]
        assert (run["val_clips"], run["train_clips"]) == (12, 36)  # the same keys in both
        with pytest.raises(DataError, match="--fold=1 does not apply"):
            train.train_and_evaluate(dataclasses.replace(recipe, fold=1))
        if backend == "jax":
            from jax_impl import cv, evaluate
        else:
            from torch_ref import cv, evaluate
        with pytest.raises(DataError, match="cross-validation does not apply"):
            cv.run_cv(dataclasses.replace(recipe, workdir=str(tmp_path / "cv")))
        out = tmp_path / "eval"
        assert evaluate.main([f"--members={tmp_path / 'run'}", "--split=test", f"--out={out}"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert (report["split"], report["fold"], report["num_clips"]) == ("test", None, 12)
    assert report["num_songs"] == 3
    assert "split test, all clips: 12 clips, 3 songs" in capsys.readouterr().out
