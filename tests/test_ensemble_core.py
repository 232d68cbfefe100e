"""Ensemble arithmetic and metrics (shared_data.ensemble.core), and the report writers."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared_data.ensemble import core
from shared_data.ensemble.report import format_table, plot_confusion, write_json


def test_softmax_is_stable_and_normalised():
    logits = np.array([[1000.0, 1001.0, 999.0], [-5.0, 0.0, 5.0]], np.float32)
    probs = core.softmax(logits)
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-6)
    e = np.exp([-1.0, 0.0, -2.0])
    np.testing.assert_allclose(probs[0], e / e.sum(), rtol=1e-6)
    np.testing.assert_allclose(core.softmax(logits + 3.0), probs, rtol=1e-6)


def test_combine_members_is_the_mean_and_keeps_the_sums_argmax():
    a = np.array([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]], np.float32)
    b = np.array([[0.1, 0.7, 0.2], [0.5, 0.4, 0.1]], np.float32)
    combined = core.combine_members([a, b])
    np.testing.assert_allclose(combined, (a + b) / 2, rtol=1e-6)
    np.testing.assert_array_equal(combined.argmax(1), (a + b).argmax(1))
    np.testing.assert_allclose(combined.sum(1), 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match="M >= 1"):
        core.combine_members(np.zeros((0, 2, 3)))


def test_songs_average_their_clips_wherever_the_clips_are():
    probs = np.array(
        [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]],
        np.float32,
    )
    songs, song_probs = core.aggregate_songs(probs, ["b", "a", "b", "a"])
    assert songs == ("b", "a")
    np.testing.assert_allclose(song_probs, [[0.75, 0.25], [0.25, 0.75]], rtol=1e-6)


def test_log_rule_is_the_renormalised_geometric_mean():
    probs = np.array([[0.8, 0.2], [0.5, 0.5]], np.float32)
    _, song = core.aggregate_songs(probs, ["s", "s"], "mean_log_prob")
    geo = np.sqrt(probs[0] * probs[1])
    np.testing.assert_allclose(song[0], geo / geo.sum(), rtol=1e-5)


def test_a_voiceless_clip_does_not_veto_its_song_under_the_default_rule():
    # Three clips sure of class 0; one (e.g. an instrumental break) puts ~0 on it. The mean keeps
    # the majority; the product of experts lets the one clip overrule the song: the reason the
    # default is the mean (module docstring).
    probs = np.array([[0.7, 0.3]] * 3 + [[1e-9, 1 - 1e-9]], np.float32)
    _, mean = core.aggregate_songs(probs, ["s"] * 4, "mean_prob")
    _, log = core.aggregate_songs(probs, ["s"] * 4, "mean_log_prob")
    assert mean[0].argmax() == 0
    assert log[0].argmax() == 1


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 4), st.integers(1, 12), st.integers(2, 5), st.integers(0, 2**31 - 1))
def test_members_and_clips_can_be_aggregated_in_either_order(m, n, c, seed):
    rng = np.random.default_rng(seed)
    member_probs = rng.dirichlet(np.ones(c), size=(m, n)).astype(np.float32)
    song_ids = [f"s{i}" for i in rng.integers(0, 3, n)]
    _, first_members = core.aggregate_songs(core.combine_members(member_probs), song_ids)
    per_member = [core.aggregate_songs(p, song_ids)[1] for p in member_probs]
    np.testing.assert_allclose(first_members, core.combine_members(per_member), atol=1e-6)


def test_song_labels_refuse_a_song_with_two_labels():
    np.testing.assert_array_equal(core.song_labels([1, 2, 1], ["a", "b", "a"]), [1, 2])
    with pytest.raises(ValueError, match="'a'"):
        core.song_labels([1, 2, 0], ["a", "b", "a"])


def test_confusion_matrix_and_per_class_metrics_by_hand():
    labels = np.array([0, 0, 0, 1, 1, 2])
    preds = np.array([0, 0, 1, 1, 0, 1])
    cm = core.confusion_matrix(labels, preds, 4)
    np.testing.assert_array_equal(cm, [[2, 1, 0, 0], [1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]])
    m = core.per_class_metrics(cm)
    np.testing.assert_allclose(m["precision"], [2 / 3, 1 / 3, 0, 0])
    np.testing.assert_allclose(m["recall"], [2 / 3, 1 / 2, 0, 0])
    np.testing.assert_allclose(m["f1"], [2 / 3, 0.4, 0, 0])
    np.testing.assert_array_equal(m["support"], [3, 2, 1, 0])
    assert core.accuracy(preds, labels) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="predictions must be in"):
        core.confusion_matrix(labels, preds + 3, 4)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 40), st.integers(2, 6), st.integers(0, 2**31 - 1))
def test_support_weighted_recall_is_the_accuracy(n, c, seed):
    rng = np.random.default_rng(seed)
    labels, preds = rng.integers(0, c, n), rng.integers(0, c, n)
    m = core.per_class_metrics(core.confusion_matrix(labels, preds, c))
    assert (m["recall"] * m["support"]).sum() / n == pytest.approx(core.accuracy(preds, labels))


def test_top_k_orders_by_probability_and_breaks_ties_by_index():
    probs = np.array([[0.1, 0.4, 0.1, 0.4], [0.7, 0.1, 0.15, 0.05]], np.float32)
    idx, val = core.top_k(probs, 3)
    np.testing.assert_array_equal(idx, [[1, 3, 0], [0, 2, 1]])
    np.testing.assert_allclose(val, [[0.4, 0.4, 0.1], [0.7, 0.15, 0.1]])
    assert core.top_k(probs, 10)[0].shape == (2, 4)


def test_classification_summary_levels_agree_with_the_parts():
    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7], [0.45, 0.55]], np.float32)
    labels = np.array([0, 0, 1, 0])
    songs = ["a", "a", "b", "c"]
    s = core.classification_summary(probs, labels, songs, ("x", "y"))
    assert s["clip"]["accuracy"] == pytest.approx(0.5)
    assert s["clip"]["n"] == 4
    # Song a: mean (0.65, 0.35) -> x (right); b -> y (right); c -> y (wrong).
    assert s["song"]["n"] == 3
    assert s["song"]["accuracy"] == pytest.approx(2 / 3)
    assert s["song"]["confusion"] == [[1, 1], [0, 1]]
    assert s["song"]["per_class"]["x"]["support"] == 2
    assert set(s["song_accuracy_by_rule"]) == set(core.SONG_RULES)


def test_report_writers(tmp_path):
    png = plot_confusion(np.array([[3, 1], [0, 2]]), ["a", "b"], tmp_path / "cm.png", title="t")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    path = write_json(
        tmp_path / "r.json", {"x": np.float32(0.5), "n": np.int64(3), "bad": float("nan")}
    )
    assert json.loads(path.read_text()) == {"x": 0.5, "n": 3, "bad": None}
    table = format_table(("name", "acc"), [("a", 0.5), ("bb", 1.0)]).splitlines()
    assert table[0].split() == ["name", "acc"]
    assert table[2].endswith("0.5000") and table[3].endswith("1.0000")
