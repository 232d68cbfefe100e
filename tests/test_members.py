"""Reading ensemble members from run directories and refusing members that do not fit together."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import pytest

from shared_data.dataset import opened as opened_module
from shared_data.dataset.features import FeatureParams
from shared_data.ensemble.evaluation import default_fold
from shared_data.ensemble.members import (
    MemberError,
    check_compatible,
    parse_members_flag,
    read_member,
    read_members,
)
from tests.support.runs import make_run

LABELS = ["blues", "jazz", "rock"]


def _dataset(**changes) -> dict:
    record = {
        "config": "synthetic_small",
        "path": "/nowhere",
        "label_names": list(LABELS),
        "mel_mean": -20.0,
        "mel_std": 15.0,
        "separator": "spleeter",
        "stem": "vocals",
        "feature_params": FeatureParams().to_dict(),
        "folds": 5,
    }
    record.update(changes)
    return record


def test_a_member_reads_backend_model_and_data_description(tmp_path):
    info = read_member(make_run(tmp_path / "a", "torch", dataset=_dataset(), fold=2, seed=4))
    assert (info.backend, info.model, info.fold, info.folds) == ("torch", "lstm", 2, 5)
    assert info.label_names == tuple(LABELS) and info.num_classes == 3
    assert (info.separator, info.stem) == ("spleeter", "vocals")
    assert (info.mel_mean, info.mel_std) == (-20.0, 15.0)
    assert info.feature_params == FeatureParams()
    assert info.name == "torch:lstm@a"


def test_without_a_recorded_dataset_the_dataset_itself_is_read(tmp_path, monkeypatch):
    meta = {k: v for k, v in _dataset(stem="mix").items() if k not in ("config", "path")}
    fake = SimpleNamespace(
        config="synthetic_small",
        path=tmp_path / "ds",
        label_names=tuple(LABELS),
        metadata={k: v for k, v in meta.items() if k not in ("label_names", "stem")},
        stems=("mix",),  # a one-stem dataset: a run without --stem trained on it
        mel_stats=lambda stem: {"mix": (-20.0, 15.0)}[stem],
    )
    opened = []
    monkeypatch.setattr(opened_module, "open_dataset", lambda d, c: opened.append((d, c)) or fake)
    info = read_member(make_run(tmp_path / "a", data_dir=str(tmp_path / "data")))
    assert opened == [(str(tmp_path / "data"), "synthetic_small")]
    assert info.stem == "mix" and info.label_names == tuple(LABELS)


def test_a_missing_dataset_is_named(tmp_path):
    run = make_run(tmp_path / "a", data_dir=str(tmp_path / "nothing_here"))
    with pytest.raises(MemberError, match="does not record its dataset") as err:
        read_member(run)
    assert "python -m shared_data.build" in str(err.value)


@pytest.mark.parametrize(
    "change, field, detail",
    [
        ({"label_names": ["blues", "jazz", "pop"]}, "label names", "'rock'"),
        ({"label_names": ["jazz", "blues", "rock"]}, "label names", "['jazz', 'blues', 'rock']"),
        (
            {"feature_params": FeatureParams(hop_length=256).to_dict()},
            "feature params",
            "hop_length: 512 vs 256",
        ),
        ({"separator": "none"}, "separator", "'spleeter' vs 'none'"),
    ],
)
def test_mismatched_members_are_refused_naming_the_mismatch(tmp_path, change, field, detail):
    a = make_run(tmp_path / "run_a", dataset=_dataset())
    b = make_run(tmp_path / "run_b", "torch", dataset=_dataset(**change))
    with pytest.raises(MemberError) as err:
        read_members([a, b])
    message = str(err.value)
    assert f"disagree on {field}" in message
    assert detail in message
    assert str(a) in message and str(b) in message


def test_members_may_differ_in_backend_model_fold_and_normalisation(tmp_path):
    a = make_run(tmp_path / "a", dataset=_dataset())
    b = make_run(tmp_path / "b", "torch", dataset=_dataset(mel_mean=-3.0, stem="mix"),
                 model="resnet18", fold=1)  # fmt: skip
    members = read_members([a, b])
    assert [m.backend for m in members] == ["jax", "torch"]
    assert [m.mel_mean for m in members] == [-20.0, -3.0]
    assert [m.stem for m in members] == ["vocals", "mix"]  # a stem ensemble


def test_bad_run_directories_are_named(tmp_path):
    with pytest.raises(MemberError, match="does not exist"):
        read_member(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MemberError, match="no recipe.json"):
        read_member(tmp_path / "empty")
    run = make_run(tmp_path / "weird", "mxnet", dataset=_dataset())
    with pytest.raises(MemberError, match="unknown backend 'mxnet'"):
        read_member(run)
    with pytest.raises(MemberError, match="no ensemble members"):
        check_compatible([])
    with pytest.raises(MemberError, match="--members is empty"):
        parse_members_flag(" , ")
    assert parse_members_flag("a, b/c") == [Path("a"), Path("b/c")]


def test_the_evaluated_fold_is_the_one_every_member_held_out(tmp_path):
    a = read_member(make_run(tmp_path / "a", dataset=_dataset(), fold=3))
    b = dataclasses.replace(a, run_dir=tmp_path / "b")
    assert default_fold([a, b], None) == 3
    assert default_fold([a, b], "1") == 1
    assert default_fold([a, b], "all") is None
    c = dataclasses.replace(a, fold=0)
    with pytest.raises(MemberError, match=r"different folds \[0, 3\]"):
        default_fold([a, c], None)


@pytest.mark.parametrize(
    "change, field",
    [
        ({"mel_std": 0.0}, "mel_std must be positive"),
        ({"mel_std": float("nan")}, "mel_std must be a finite number"),
        ({"mel_mean": "loud"}, "mel_mean must be a finite number"),
        ({"label_names": []}, "label_names must be a non-empty list"),
        ({"stem": None}, "stem must be a string"),
    ],
)
def test_a_damaged_dataset_record_is_refused_naming_the_field(tmp_path, change, field):
    run = make_run(tmp_path / "a", dataset=_dataset(**change))
    with pytest.raises(MemberError, match=field) as err:
        read_member(run)
    assert "recipe.json" in str(err.value)
