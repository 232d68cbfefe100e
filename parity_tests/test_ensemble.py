"""Ensembles across backends (``docs/design.md``, parity: "ensembles").

Members: four ``lstm`` runs on ``synthetic_small`` (validation fold 3), seeds 0 and 1 trained by
``jax_impl.train`` and seeds 0 and 1 by ``torch_ref.train``, the torch runs starting from the JAX
runs' initial weights (``tests/support/ensemble_runs.py`` says why). Evaluated on 200 clips of 20
synthetic songs none of them saw (``ensemble_heldout``).

1. The same four members, evaluated by ``jax_impl.ensemble`` and by ``torch_ref.ensemble``, each
   converting the other backend's members, give every member's clip probabilities within 1e-4 and
   the same predicted labels; the ``native`` route (other-backend members run in their own
   backend) gives the same probabilities as the ``convert`` route.
2. The ensemble trained in JAX and the one trained in torch reach clip accuracies within 2 points
   (and their members' probabilities stay close after 8 epochs in two frameworks).
3. Ensemble vs members: the ensemble's cross-entropy is at most its members' mean (Jensen's
   inequality for the probability average, so this checks the combination rule: a product, a max or
   misaligned classes would break it) and its accuracy is at least its worse member's. Its accuracy
   is at least its **best** member's where the members are of comparable quality and below the
   task's ceiling, and that is asserted on five members each trained for 3 epochs on a different 4
   of the 5 folds (``ensemble_runs.fold_member``, seeds 0-4). The same construction with
   seeds b+k, b = 0, 10, ..., 90: members scored 0.44-0.94; the
   five-member ensemble beat its best member in 8 of 10 cases by 3.5 to 11 points (b=0: members
   [0.795 0.535 0.55 0.825 0.795], ensemble 0.89) and lost in the 2 where one member was 10+ points
   better than all the others (b=70: best 0.94, ensemble 0.905; b=80: 0.94, 0.885). Averaging
   cannot lift an outlier member; it combines comparable ones. With saturated members (the 8-epoch
   ones below, 0.9-1.0 on these clips) the best member's accuracy is only printed, because at that
   scale it depends on the seeds. Over seeds 0-3 trained independently on fold 3 (final
   checkpoints, both backends), 7 of 12 two-member ensembles matched or beat their better member,
   11 of 12 their members' mean and 12 of 12 their worse member; on fold 0 (2 of 3 country songs
   held out, so every member shares the same errors and the differences are noise): 4, 9 and 11 of
   12. The lost cases on fold 3 pair a 99-100 % member with an 89-96 % one, where averaging pulls
   some of the better member's right answers down. More, more diverse members do not change that:
   five JAX members each trained on a different fold (seeds b+k, this file's recipe)
   scored [0.90 0.935 1.0 0.93 1.0] -> ensemble 0.99 (b=0), [0.905 0.965 0.97 0.995 0.96] -> 0.995
   (b=10) and [0.905 0.905 0.995 0.915 0.925] -> 0.92 (b=20) on these 200 clips. Nor does the full
   recipe (Mixup, SpecAugment, 12 epochs; seeds 0-3 on fold 3): members scored [0.975 1.0 0.985
   0.975], and 5 of the 11 ensembles of 2, 3 or 4 of them matched or beat their best member, the
   others missing it by 1 or 2 clips of 200.
4. ``predict`` on audio files gives the same song probabilities in both backends.

Figures are printed (``pytest -s`` shows them).
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from jax_impl import ensemble as jax_ensemble
from shared_data.audio.decode import write_wav
from shared_data.corpus.synthetic import SAMPLE_RATE, generate_song
from shared_data.dataset.opened import open_dataset
from shared_data.ensemble import core
from shared_data.ensemble import evaluation as ev
from shared_data.ensemble.predict import SongPrediction, predict_files
from shared_data.separation.registry import get_separator
from tests.support import ensemble_runs as fx
from torch_ref import ensemble as torch_ensemble

BACKENDS = {"jax": jax_ensemble, "torch": torch_ensemble}


@pytest.fixture(autouse=True)
def full_precision():
    with jax.default_matmul_precision("float32"), fx.torch_threads(1):
        yield


@pytest.fixture(scope="module")
def run_dirs(ensemble_runs) -> list:
    """jax seed 0, jax seed 1, torch seed 0, torch seed 1."""
    return [*ensemble_runs.members("jax"), *ensemble_runs.members("torch")]


@pytest.fixture(scope="module")
def heldout(ensemble_runs):
    dataset = open_dataset(ensemble_runs.heldout_dir(), fx.HELDOUT.name)
    clips = ev.select_clips(dataset, "train", None)
    return dataset.source("train"), clips


@pytest.fixture(scope="module")
def results(run_dirs, heldout) -> dict:
    """``{backend: EnsembleResult}`` of the four members, other-backend members converted.

    The final checkpoints: the best-validation one is picked on 6 clips, where one clip decided
    by a rounding difference could pick another epoch in each backend.
    """
    source, clips = heldout
    out = {}
    with jax.default_matmul_precision("float32"), fx.torch_threads(1):
        for name, module in BACKENDS.items():
            predictors = module.load_ensemble(run_dirs, route="convert", checkpoint="latest")
            assert [p.runs_on for p in predictors] == [name] * 4
            out[name] = ev.run_ensemble(predictors, source, clips.indices)
    return out


def test_same_members_give_the_same_probabilities_in_both_backends(results, heldout):
    _, clips = heldout
    assert len(clips) >= 200
    jax_probs, torch_probs = results["jax"].member_probs, results["torch"].member_probs
    assert jax_probs.shape == torch_probs.shape == (4, len(clips), 10)
    gap = np.abs(jax_probs - torch_probs).max()
    print(f"\nmax |p_jax - p_torch| over 4 members x {len(clips)} clips: {gap:.2e}")
    assert gap < 1e-4
    np.testing.assert_array_equal(jax_probs.argmax(-1), torch_probs.argmax(-1))
    np.testing.assert_array_equal(
        results["jax"].probs.argmax(-1), results["torch"].probs.argmax(-1)
    )


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_native_route_matches_the_convert_route(backend, run_dirs, results, heldout):
    source, clips = heldout
    other = "torch" if backend == "jax" else "jax"
    predictors = BACKENDS[backend].load_ensemble(run_dirs, route="native", checkpoint="latest")
    # Each member runs in the backend that trained it, whichever backend loads the ensemble.
    assert [p.runs_on for p in predictors] == ["jax", "jax", "torch", "torch"]
    assert {p.how for p in predictors} == {"native"}
    converted = [i for i, p in enumerate(predictors) if p.runs_on == other]
    rows = clips.indices[:8]
    native = ev.run_ensemble(predictors, source, rows).member_probs
    reference = results[backend].member_probs[:, :8]
    np.testing.assert_allclose(native[converted], reference[converted], atol=1e-4, rtol=0)


def _figures(result: ev.EnsembleResult, clips: ev.SelectedClips, rows: list[int]) -> dict:
    member_probs = result.member_probs[rows]
    ensemble = core.combine_members(member_probs)
    per_song = core.song_labels(clips.labels, clips.song_ids)

    def song_accuracy(probs: np.ndarray) -> float:
        return core.accuracy(core.aggregate_songs(probs, clips.song_ids)[1].argmax(-1), per_song)

    def nll(probs: np.ndarray) -> float:
        return float(-np.log(probs[np.arange(len(clips)), clips.labels]).mean())

    return {
        "members": [core.accuracy(p.argmax(-1), clips.labels) for p in member_probs],
        "members_song": [song_accuracy(p) for p in member_probs],
        "members_nll": [nll(p) for p in member_probs],
        "ensemble": core.accuracy(ensemble.argmax(-1), clips.labels),
        "ensemble_song": song_accuracy(ensemble),
        "ensemble_nll": nll(ensemble),
    }


def test_ensembles_trained_in_jax_and_torch_reach_accuracies_within_2_points(results, heldout):
    _, clips = heldout
    jax_trained = _figures(results["jax"], clips, [0, 1])
    torch_trained = _figures(results["jax"], clips, [2, 3])
    gap = np.abs(results["jax"].member_probs[:2] - results["jax"].member_probs[2:]).max()
    print(
        f"\nheld-out clip accuracy: JAX-trained ensemble {jax_trained['ensemble']:.4f} "
        f"(members {jax_trained['members']}), torch-trained ensemble "
        f"{torch_trained['ensemble']:.4f} (members {torch_trained['members']}); max probability "
        f"gap between the paired members {gap:.1e}"
    )
    assert abs(jax_trained["ensemble"] - torch_trained["ensemble"]) <= 0.02
    assert jax_trained["ensemble"] >= 0.9  # both trained: chance is 0.1


@pytest.mark.parametrize(
    "name, rows", [("JAX-trained", [0, 1]), ("torch-trained", [2, 3]), ("all four", [0, 1, 2, 3])]
)
def test_ensemble_against_its_members(name, rows, results, heldout):
    _, clips = heldout
    f = _figures(results["jax"], clips, rows)
    print(
        f"\n{name}: clip accuracy ensemble {f['ensemble']:.4f}, members {f['members']} "
        f"(best {max(f['members']):.4f}); song accuracy ensemble {f['ensemble_song']:.4f}, "
        f"members {f['members_song']}; cross-entropy ensemble {f['ensemble_nll']:.4f}, members "
        f"{[round(x, 4) for x in f['members_nll']]}"
    )
    assert f["ensemble_nll"] <= np.mean(f["members_nll"]) + 1e-6
    assert f["ensemble"] >= min(f["members"])


def test_an_ensemble_of_comparable_members_beats_its_best_member(heldout, ensemble_runs):
    """Five JAX members, each trained on a different 4 of the 5 folds for 3 epochs (below the
    task's ceiling, see the module docstring), ensembled on the 200 held-out clips."""
    source, clips = heldout
    runs = [ensemble_runs.fold_member(k) for k in range(5)]
    with jax.default_matmul_precision("float32"):
        predictors = jax_ensemble.load_ensemble(runs, checkpoint="latest")
        result = ev.run_ensemble(predictors, source, clips.indices)
    f = _figures(result, clips, list(range(5)))
    print(
        f"\nfold members (3 epochs): clip accuracy ensemble {f['ensemble']:.4f}, members "
        f"{f['members']} (best {max(f['members']):.4f}); song accuracy ensemble "
        f"{f['ensemble_song']:.4f}, members {f['members_song']}"
    )
    assert f["ensemble"] >= max(f["members"])
    assert f["ensemble_nll"] <= np.mean(f["members_nll"]) + 1e-6


def test_predict_gives_the_same_song_probabilities_in_both_backends(run_dirs, tmp_path):
    paths = []
    for genre, index in (("jazz", 7), ("rock", 8)):
        song = generate_song(genre, index, seed=11, seconds=6.0)
        paths.append(tmp_path / f"{song.song_id}.wav")
        write_wav(paths[-1], song.mix, SAMPLE_RATE, subtype="FLOAT")
    predictions: dict[str, list[SongPrediction]] = {}
    for name, module in BACKENDS.items():
        predictors = module.load_ensemble(run_dirs)
        separator = get_separator(predictors[0].info.separator, name)
        predictions[name] = list(predict_files(paths, predictors, separator))
    for a, b in zip(predictions["jax"], predictions["torch"], strict=True):
        assert a.song_id == b.song_id
        np.testing.assert_allclose(a.clip_probs, b.clip_probs, atol=1e-4, rtol=0)
        np.testing.assert_allclose(a.probs, b.probs, atol=1e-4, rtol=0)
        assert a.probs.argmax() == b.probs.argmax()
