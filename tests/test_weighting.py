"""The reference report's learned ensemble weighting (jax_impl.weighting) and its cross-validation
report.

The members here are synthetic prediction tables with known quality, so what the weighting should
learn is known: the trainer is tested on its own, without training base models.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from jax_impl import weighting as jw
from shared_data.ensemble import core
from shared_data.ensemble.weighting import OOFPredictions, cross_validate, load_predictions
from shared_data.errors import DataError

C = 5


def _member(rng, labels, accuracy, confidence):
    """Probabilities of a member right with ``accuracy``, putting ``confidence`` on its guess."""
    n = labels.size
    guess = np.where(rng.random(n) < accuracy, labels, rng.integers(0, C, n))
    probs = np.full((n, C), (1 - confidence) / (C - 1), np.float32)
    probs[np.arange(n), guess] = confidence
    return probs


@pytest.fixture(scope="module")
def oof() -> OOFPredictions:
    """Two useful members and one confident, uninformative one (n = 500, 5 folds)."""
    rng = np.random.default_rng(0)
    n = 500
    labels = rng.integers(0, C, n)
    noise = rng.dirichlet(np.full(C, 0.3), n).astype(np.float32)
    probs = np.stack([_member(rng, labels, 0.8, 0.7), noise, _member(rng, labels, 0.6, 0.6)], 1)
    return OOFPredictions(
        member_probs=probs,
        labels=labels,
        # Equal folds: one train and one test shape, so the cross-validation compiles once.
        folds=rng.permutation(np.arange(n) % 5),
        song_ids=tuple(f"song{i}" for i in range(n)),
        member_names=("good", "noise", "fair"),
        label_names=tuple("abcde"),
    )


def test_the_weighting_starts_as_the_plain_sum(oof):
    model = jw.fit_weighting(oof.member_probs, oof.labels, steps=1, lr=1e-9)
    np.testing.assert_allclose(jw.member_weights(model), [1 / 3] * 3, rtol=1e-5)
    plain = core.combine_members(oof.member_probs.transpose(1, 0, 2))
    learned = jw.apply_weighting(model, oof.member_probs)
    np.testing.assert_array_equal(learned.argmax(1), plain.argmax(1))
    np.testing.assert_allclose(learned.sum(1), 1.0, rtol=1e-5)


def test_the_weighting_learns_to_ignore_an_uninformative_member(oof):
    weights = jw.member_weights(jw.fit_weighting(oof.member_probs, oof.labels))
    assert weights[1] < 0.25 * min(weights[0], weights[2])
    assert weights[0] > weights[2]


def test_cross_validation_puts_the_weighting_beside_the_sum_on_held_out_folds(oof):
    report = cross_validate(oof, jw.fit_weighting, jw.apply_weighting)
    assert [r["fold"] for r in report["folds"]] == [0, 1, 2, 3, 4]
    assert sum(r["n_clips"] for r in report["folds"]) == 500
    for r in report["folds"]:
        test = oof.folds == r["fold"]
        plain = core.combine_members(oof.member_probs[test].transpose(1, 0, 2))
        assert r["plain"]["clip_accuracy"] == pytest.approx(
            core.accuracy(plain.argmax(1), oof.labels[test])
        )
    mean = report["mean"]
    # The noise member drags the plain sum down; weighting it out helps on unseen folds.
    assert mean["learned"]["clip_accuracy"] > mean["plain"]["clip_accuracy"] + 0.03


def test_a_wide_class_kernel_has_the_capacity_to_overfit(oof):
    train, test = slice(0, 40), slice(40, None)

    def gap(**kw) -> float:
        model = jw.fit_weighting(oof.member_probs[train], oof.labels[train], steps=600, **kw)
        acc = [
            core.accuracy(jw.apply_weighting(model, oof.member_probs[s]).argmax(1), oof.labels[s])
            for s in (train, test)
        ]
        return acc[0] - acc[1]

    assert gap(class_kernel=5) > gap(class_kernel=1)
    with pytest.raises(DataError, match="odd"):
        jw.fit_weighting(oof.member_probs, oof.labels, class_kernel=2)


def _write_predictions(path, oof, rows, names=None):
    np.savez(
        path,
        member_probs=oof.member_probs[rows].transpose(1, 0, 2),
        labels=oof.labels[rows],
        folds=oof.folds[rows],
        song_ids=np.asarray(oof.song_ids)[rows],
        member_names=np.asarray(names or oof.member_names),
        label_names=np.asarray(oof.label_names),
    )
    return path


def test_cli_reads_evaluate_outputs_and_writes_the_report(oof, tmp_path, capsys):
    # Files hold whole folds, one or more each, as jax_impl.evaluate --fold=k writes them.
    a = _write_predictions(tmp_path / "a.npz", oof, oof.folds < 2)
    b = _write_predictions(tmp_path / "b.npz", oof, oof.folds >= 2)
    loaded = load_predictions([a, b])
    assert loaded.member_probs.shape == (500, 3, C)
    assert jw.main([f"--predictions={a},{b}", f"--out={tmp_path / 'w.json'}"]) == 0
    printed = capsys.readouterr().out
    assert "held-out fold" in printed and "noise" in printed
    report = json.loads((tmp_path / "w.json").read_text())
    assert [w["member"] for w in report["weights_fitted_on_all"]] == ["good", "noise", "fair"]
    assert len(report["folds"]) == 5
    c = _write_predictions(tmp_path / "c.npz", oof, oof.folds >= 2, names=["x", "y", "z"])
    with pytest.raises(DataError, match="same models in the same order"):
        load_predictions([a, c])
