"""Fold assignment: one fold per song, deterministic; hash folds stable under corpus growth and
balanced; stratified folds holding every label, a pure function of the song set."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from shared_data.dataset.folds import (
    assign_fold,
    song_folds,
    stratified_folds,
    validate_k,
    validate_method,
)
from shared_data.errors import DataError

song_ids = st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=60, unique=True)
ks = st.integers(min_value=2, max_value=12)


# No deadline: a loaded CI machine must not turn a slow example into a failure.
@settings(deadline=None)
@given(song_ids, ks)
def test_every_song_in_exactly_one_fold(ids: list[str], k: int) -> None:
    folds = {f: [s for s in ids if assign_fold(s, k) == f] for f in range(k)}
    members = [s for f in range(k) for s in folds[f]]
    assert sorted(members) == sorted(ids)  # each song once, in one fold, none missing
    assert all(0 <= assign_fold(s, k) < k for s in ids)


@settings(deadline=None)
@given(song_ids, song_ids, ks)
def test_adding_songs_never_moves_existing_ones(ids: list[str], extra: list[str], k: int) -> None:
    before = {s: assign_fold(s, k) for s in ids}
    grown = ids + [s for s in extra if s not in before]
    after = {s: assign_fold(s, k) for s in grown}
    assert {s: after[s] for s in ids} == before


def test_deterministic_across_processes() -> None:
    # Python's str hash is salted per process; the fold must not be.
    ids = ["blues.00000", "rock/01", "ünïcødé", "a,b"]
    code = (
        "from shared_data.dataset.folds import assign_fold; "
        f"print([assign_fold(s, 5) for s in {ids!r}])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == str([assign_fold(s, 5) for s in ids])


def test_known_values_are_pinned() -> None:
    # Pinned so that a change of hash (which would reshuffle every stored dataset) fails loudly.
    assert [assign_fold(f"song{i}", 5) for i in range(10)] == [0, 3, 3, 4, 2, 0, 2, 2, 3, 3]
    digest = hashlib.sha256(b"blues.00000").digest()
    assert assign_fold("blues.00000", 7) == int.from_bytes(digest[:8], "big") % 7 == 5


@pytest.mark.parametrize("k", [2, 5, 10])
def test_roughly_balanced_for_many_songs(k: int) -> None:
    n = 5000
    counts = [0] * k
    for i in range(n):
        counts[assign_fold(f"genre{i % 10}.{i:05d}", k)] += 1
    # A uniform assignment passes a chi-square goodness-of-fit test; a biased one (e.g. every
    # song in fold 0, or a modulo on a short hash) does not.
    assert stats.chisquare(counts).pvalue > 1e-3
    assert min(counts) > 0.8 * n / k


@pytest.mark.parametrize("bad", [0, 1, -3, 2.5, True, "5"])
def test_invalid_k_is_a_user_error(bad: object) -> None:
    with pytest.raises(DataError, match="--folds"):
        validate_k(bad)  # type: ignore[arg-type]
    with pytest.raises(DataError):
        assign_fold("x", bad)  # type: ignore[arg-type]


# (song_id, label) sets: few labels so that some have >= K songs and some fewer.
labelled_songs = st.lists(
    st.tuples(st.text(min_size=1, max_size=20), st.sampled_from(["a", "b", "c", "dd", "é"])),
    min_size=1,
    max_size=80,
    unique_by=lambda pair: pair[0],
)


@settings(deadline=None)
@given(labelled_songs, ks, st.randoms(use_true_random=False))
def test_stratified_folds_hold_every_large_label(pairs, k, rnd) -> None:
    folds = stratified_folds(pairs, k)
    assert sorted(folds) == sorted(s for s, _ in pairs)  # each song once, none missing
    assert all(0 <= f < k for f in folds.values())
    labels = {label for _, label in pairs}
    for label in labels:
        members = [s for s, lab in pairs if lab == label]
        held = {folds[s] for s in members}
        if len(members) >= k:
            assert held == set(range(k)), (label, len(members))
        else:
            assert len(held) == len(members)  # dealt round-robin: no two in one fold
    sizes = [sum(f == i for f in folds.values()) for i in range(k)]
    assert max(sizes) - min(sizes) <= 1
    # A pure function of the set: order and repeats do not matter.
    shuffled = list(pairs) + list(pairs[: len(pairs) // 2])
    rnd.shuffle(shuffled)
    assert stratified_folds(shuffled, k) == folds


def test_small_labels_do_not_all_start_in_fold_0() -> None:
    # 3 songs in each of 10 labels over 5 folds: the deal runs on across labels, so every fold
    # gets 6 songs (a per-label deal from fold 0 would leave folds 3 and 4 empty).
    pairs = [(f"{g}.{i}", g) for g in "abcdefghij" for i in range(3)]
    folds = stratified_folds(pairs, 5)
    assert [sum(f == k for f in folds.values()) for k in range(5)] == [6] * 5


def test_stratified_known_values_are_pinned() -> None:
    pairs = [(f"song{i}", "xy"[i % 2]) for i in range(6)]
    # x: song2, song0, song4 by hash -> folds 0, 1, 2; y's deal goes on at position 3 -> fold 0.
    assert stratified_folds(pairs, 3) == {
        "song2": 0, "song0": 1, "song4": 2, "song1": 0, "song5": 1, "song3": 2,
    }  # fmt: skip


def test_song_folds_methods_and_unlabelled_songs() -> None:
    pairs = [("a", "x"), ("b", "x"), ("u", None)]
    assert song_folds(pairs, 5, "hash") == {s: assign_fold(s, 5) for s in "abu"}
    strat = song_folds(pairs, 5, "stratified")
    assert strat["u"] == assign_fold("u", 5)  # the test split keeps hash folds
    assert {strat["a"], strat["b"]} == {0, 1}
    with pytest.raises(DataError, match="--fold_method must be one of stratified|hash"):
        validate_method("random")
