"""Every stem from one separation: records, the song cache, training's --stem, stem ensembles with
presence-aware fusion, predict's single separation, and the ``cv --stems`` study.

The corpus: 2 synthetic genres x 4 songs x 4 s, songs 1 and 3 of each rendered without their
vocal line, separated by the ``oracle`` separator (the generator's true stems), so the vocals stem
is truly absent from half the songs and every number below can be computed by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from shared_data.corpus.synthetic import GENRES, generate_song
from shared_data.dataset.builder import build_dataset
from shared_data.dataset.configs import VocalMelsConfig
from shared_data.dataset.features import FeatureParams, song_to_mels
from shared_data.dataset.opened import open_dataset
from shared_data.dataset.presence import near_silent
from shared_data.ensemble import core, fusion
from shared_data.ensemble import evaluation as ev
from shared_data.ensemble.members import MemberError, MemberInfo, check_compatible
from shared_data.ensemble.predict import predict_files
from shared_data.errors import DataError
from shared_data.separation import registry as separation
from shared_data.training.recipe import Recipe
from shared_data.training.split import load_training_data
from tests.support.builder_inputs import OracleSeparator, load_report, read_records

GENRE_PAIR = (GENRES[0], GENRES[1])
SONGS, SECONDS = 4, 4.0
CONFIG = VocalMelsConfig(
    name="stems_tiny", source="synthetic", songs_per_genre=SONGS, seconds=SECONDS,
    genres=GENRE_PAIR, instrumental_every=2,
)  # fmt: skip
ALL = ("vocals", "accompaniment", "mix")


def _songs() -> dict[str, object]:
    return {
        f"{g}/{i}": generate_song(g, i, seed=0, seconds=SECONDS, instrumental=i % 2 == 1)
        for g in GENRE_PAIR
        for i in range(SONGS)
    }


@pytest.fixture(scope="module")
def corpus() -> dict[str, object]:
    return _songs()


@pytest.fixture(scope="module")
def stem_data(tmp_path_factory, corpus) -> Path:
    """The corpus built with every stem of the oracle separator, 2 folds."""
    root = tmp_path_factory.mktemp("stems")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(separation.SEPARATORS, "_entries", dict(separation.SEPARATORS._entries))
        separation.register_separator("oracle", lambda backend: OracleSeparator(corpus.values()))
        build_dataset(root, CONFIG, separator="oracle", folds=2, progress=False)
    return root


def test_a_build_stores_every_stem_and_its_levels(stem_data, corpus) -> None:
    ds = open_dataset(stem_data, CONFIG.name)
    assert ds.stems == ALL and set(ds.metadata["mel_stats"]) == set(ALL)
    records = read_records(ds)
    params = FeatureParams()
    for song in corpus.values():
        for stem in ALL:
            mels = song_to_mels(getattr(song, stem), 44100, params)
            for i, mel in enumerate(mels):
                np.testing.assert_array_equal(records[f"{song.song_id}#{i}"][f"mel_{stem}"], mel)
    # The presence rule on the stored levels: the vocals of instrumental songs are near-silent
    # in every clip, those of sung songs in none (the accompaniment is always there).
    bare_songs = {song.song_id for key, song in corpus.items() if int(key.split("/")[1]) % 2}
    for key, r in records.items():
        bare = key.split("#")[0] in bare_songs
        vocals_db = float(r["level_vocals"]) + float(r["mix_dbfs"])
        assert bool(near_silent(vocals_db, float(r["mix_dbfs"]))) is bare, key
        assert float(r["level_accompaniment"]) > -20.0
    # Statistics per stem over every train value, as the training normaliser uses them.
    vocals = np.stack([np.asarray(r["mel_vocals"], np.float64) for r in records.values()])
    np.testing.assert_allclose(ds.mel_stats("vocals"), (vocals.mean(), vocals.std()), rtol=1e-9)
    check = load_report(ds.report_path)["stem_presence"]
    assert check["stems"]["vocals"]["songs_near_silent"] == 4
    assert check["stems"]["accompaniment"]["songs_near_silent"] == 0
    warning = check["stems"]["vocals"]["warning"]
    assert "the dataset also holds accompaniment, mix" in warning and "--stems=" in warning


def test_another_choice_of_stems_separates_nothing(stem_data, tmp_path, monkeypatch) -> None:
    class Refuses(OracleSeparator):
        def separate(self, songs):
            raise AssertionError("a cached song was separated again")

    monkeypatch.setattr(separation.SEPARATORS, "_entries", dict(separation.SEPARATORS._entries))
    separation.register_separator("oracle", lambda backend: Refuses(()))
    builder = build_dataset(
        stem_data, CONFIG, separator="oracle", stems="vocals", folds=2, overwrite=True,
        progress=False,
    )  # fmt: skip
    assert builder.songs_cached == 2 * SONGS
    one = open_dataset(stem_data, CONFIG.name)
    assert one.stems == ("vocals",)
    assert set(one.source("train")[0]) >= {"mel_vocals", "level_vocals", "mix_dbfs"}
    assert "mel_mix" not in one.source("train")[0]
    with pytest.raises(DataError, match=r"--stem=mix: dataset .* holds the stems vocals; .*"
                       r"--stems=vocals,mix --overwrite"):  # fmt: skip
        one.source("train", stem="mix")
    # Back to all three (still from the cache) for the tests below.
    build_dataset(stem_data, CONFIG, separator="oracle", folds=2, overwrite=True, progress=False)


def test_training_data_reads_the_chosen_stem(stem_data) -> None:
    ds = open_dataset(stem_data, CONFIG.name)
    recipe = Recipe(model="lstm", dataset=CONFIG.name, data_dir=str(stem_data), folds=2,
                    batch_size=4, stem="accompaniment")  # fmt: skip
    data = load_training_data(recipe, ds)
    assert data.stem == "accompaniment"
    assert (data.mel_mean, data.mel_std) == ds.mel_stats("accompaniment")
    assert data.record["stem"] == "accompaniment" and data.record["mel_mean"] == data.mel_mean
    i = int(data.train_indices[0])
    np.testing.assert_array_equal(data.source[i]["mel"], ds.source("train")[i]["mel_accompaniment"])
    default = load_training_data(Recipe(**{**recipe.to_dict(), "stem": None}), ds)
    assert default.stem == "vocals"  # the reference report's pipeline


def test_fusion_leaves_out_near_silent_members() -> None:
    probs = np.array(
        [[[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]],  # vocals member
         [[0.3, 0.7], [0.4, 0.6], [0.1, 0.9]]],  # accompaniment member
        np.float32,
    )  # fmt: skip
    # Clip 0: vocals 30 dB below the mix (near-silent); clip 1: both present; clip 2: both
    # near-silent (the accompaniment below -90 dBFS).
    levels = {"vocals": np.array([-30.0, -3.0, -40.0]), "accompaniment": np.array([-1.0, -2, -1])}
    mix_dbfs = np.array([-20.0, -20.0, -89.5])
    present = fusion.member_presence(["vocals", "accompaniment", "mix"], levels, mix_dbfs)
    assert present.tolist() == [[False, True, False], [True, True, False], [True, True, True]]
    fused = fusion.presence_fusion(probs, present[:2])
    np.testing.assert_allclose(fused[0], probs[1, 0])  # the vocals member is left out
    np.testing.assert_allclose(fused, [[0.3, 0.7], [0.3, 0.7], [0.35, 0.65]], atol=1e-7)
    np.testing.assert_allclose(fused[1:], core.combine_members(probs)[1:], atol=1e-7)
    same = np.ones((2, 3), bool)
    np.testing.assert_array_equal(fusion.presence_fusion(probs, same), core.combine_members(probs))


class _Member:
    """A predictor whose logits are a fixed function of its stem's mels (no training needed)."""

    runs_on, how = "jax", "native"

    def __init__(self, stem: str, sign: float, tmp: Path):
        self.info = MemberInfo(
            run_dir=tmp / stem, backend="jax", model="lstm", label_names=GENRE_PAIR,
            feature_params=FeatureParams(), separator="oracle", stem=stem, mel_mean=-40.0,
            mel_std=20.0, dataset=CONFIG.name, data_dir=None, fold=0, folds=2,
        )  # fmt: skip
        self.sign = sign

    def logits(self, mels: np.ndarray) -> np.ndarray:
        m = np.asarray(mels, np.float64).mean(axis=(1, 2))
        return np.stack([self.sign * m, -self.sign * m], axis=1).astype(np.float32)


def test_a_stem_ensemble_combines_clip_by_clip(stem_data, tmp_path) -> None:
    ds = open_dataset(stem_data, CONFIG.name)
    members = [_Member("vocals", 1.0, tmp_path), _Member("mix", -1.0, tmp_path)]
    clips = ev.select_clips(ds, "train", None)
    result = ev.run_ensemble(members, ds.source("train"), clips.indices)
    records = [ds.source("train")[int(i)] for i in clips.indices]
    for m, member in enumerate(members):
        mels = np.stack([r[f"mel_{member.info.stem}"] for r in records])
        expected = core.softmax(member.logits(ev.normalise(mels, member.info)))
        np.testing.assert_array_equal(result.member_probs[m], expected)
    silent = np.array([float(r["level_vocals"]) <= -20 for r in records])
    assert silent.sum() == len(records) // 2  # the instrumental songs' clips
    np.testing.assert_array_equal(result.present[0], ~silent)
    # Where the vocals are near-silent the fusion is the mix member alone; elsewhere the sum.
    np.testing.assert_allclose(result.presence_probs[silent], result.member_probs[1][silent])
    np.testing.assert_allclose(result.presence_probs[~silent], result.probs[~silent], atol=1e-7)
    summary = ev.evaluate_predictions(result, clips, [m.info for m in members])
    assert [m["stem"] for m in summary["members"]] == ["vocals", "mix"]
    assert summary["members"][0]["fraction_near_silent"] == 0.5
    assert summary["fusions"]["presence"]["clips_with_members_left_out"] == silent.sum()
    expected_acc = core.accuracy(result.presence_probs.argmax(1), clips.labels)
    assert summary["fusions"]["presence"]["clip_accuracy"] == expected_acc


def test_members_of_other_datasets_are_still_refused(tmp_path) -> None:
    vocals, mix = _Member("vocals", 1, tmp_path).info, _Member("mix", 1, tmp_path).info
    check_compatible([vocals, mix])  # another stem of the same separation: fine
    other = MemberInfo(**{**vocals.__dict__, "separator": "none", "run_dir": tmp_path / "o"})
    with pytest.raises(MemberError, match=r"disagree on separator: .* \('oracle' vs 'none'\)"):
        check_compatible([vocals, other])


def test_predict_separates_each_song_once(tmp_path, corpus) -> None:
    import soundfile as sf

    song = next(iter(corpus.values()))
    path = tmp_path / "song.wav"
    sf.write(path, song.mix.T, 44100)
    calls = []

    class Counting(OracleSeparator):
        def separate(self, songs):
            calls.append(len(songs))
            # Decoding round-trips the file, so look the stems up by order, not by bytes.
            return [{"vocals": song.vocals, "accompaniment": song.accompaniment, "mix": s}
                    for s in songs]  # fmt: skip

    members = [_Member("vocals", 1.0, tmp_path), _Member("accompaniment", -1.0, tmp_path)]
    (out,) = predict_files([path], members, Counting(()))
    assert calls == [1]
    mels = {s: song_to_mels(getattr(song, s), 44100, FeatureParams()) for s in ("vocals",
            "accompaniment")}  # fmt: skip
    n = mels["vocals"].shape[0]
    assert n == 2  # a sung song: both stems present in both clips
    expected = fusion.presence_fusion(ev.predict_members(members, mels), np.ones((2, n), bool))
    np.testing.assert_allclose(out.clip_probs, expected, atol=1e-6)


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_cv_compares_every_stem_and_ensemble(stem_data, tmp_path, backend, capsys) -> None:
    from importlib import import_module

    main = import_module(f"{'jax_impl' if backend == 'jax' else 'torch_ref'}.cv").main
    root = tmp_path / "study"
    argv = [f"--data_dir={stem_data}", f"--dataset={CONFIG.name}", "--model=lstm", "--folds=2",
            "--epochs=1", "--batch_size=4", f"--workdir={root}", "--stems=vocals,mix",
            "--mixup_fraction=0", "--log_every=100"]  # fmt: skip
    assert main(argv) == 0
    study = json.loads((root / "stems.json").read_text())
    names = [r["name"] for r in study["table"]]
    assert names == ["vocals", "mix", "vocals+mix (sum)", "vocals+mix (presence)"]
    for r in study["table"]:
        folds = [next(x for x in f["rows"] if x["stems"] == r["stems"]
                      and x["fusion"] == r["fusion"]) for f in study["per_fold"]]  # fmt: skip
        assert r["clip_mean"] == pytest.approx(np.mean([x["clip"] for x in folds]))
        assert r["clip_std"] == pytest.approx(np.std([x["clip"] for x in folds], ddof=1))
    pair = study["table"][2]
    best = pair["best_member"]
    diffs = [next(x for x in f["rows"] if x["fusion"] == "sum")["clip"]
             - next(x for x in f["rows"] if x["stems"] == [best])["clip"]
             for f in study["per_fold"]]  # fmt: skip
    assert pair["clip_vs_best_mean"] == pytest.approx(np.mean(diffs))
    assert sum(pair["clip_vs_best_wins"]) == 2
    assert (root / "stems.png").stat().st_size > 1000
    assert "| vocals+mix (presence) |" in (root / "stems.md").read_text()
    recipe = json.loads((root / "mix" / "fold1" / "recipe.json").read_text())
    assert recipe["recipe"]["stem"] == "mix" and recipe["run"]["dataset"]["stem"] == "mix"
    assert "vocals+mix (presence)" in capsys.readouterr().out
