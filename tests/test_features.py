"""The feature definition against librosa, clipping rules and parameters."""

from __future__ import annotations

import json

import librosa
import numpy as np
import pytest

from shared_data.dataset.features import (
    DEFAULT_PARAMS,
    FeatureParams,
    clip_to_mel,
    clips_to_mels,
    mel_filterbank,
    song_to_clips,
    song_to_mels,
    to_mono_22k,
)
from shared_data.errors import DataError

CLIP = 66150


def _librosa_mel(clip: np.ndarray) -> np.ndarray:
    """The reference report's recipe written out with librosa directly."""
    power = librosa.feature.melspectrogram(y=clip, sr=22050, n_fft=2048, hop_length=512, n_mels=128)
    return librosa.power_to_db(power, ref=1.0, amin=1e-10, top_db=None)[:, :128]


def _clips(n: int, seed: int = 0) -> np.ndarray:
    """Varied clips: noise, a chirp, a harmonic tone and quiet noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(CLIP) / 22050
    kinds = [
        0.3 * rng.standard_normal(CLIP),
        0.5 * np.sin(2 * np.pi * (100 + 800 * t) * t),
        sum(0.2 / k * np.sin(2 * np.pi * 220 * k * t) for k in range(1, 6)),
        1e-3 * rng.standard_normal(CLIP),
    ]
    return np.stack([kinds[i % len(kinds)] * (1 + i) / n for i in range(n)]).astype(np.float32)


def test_defaults_are_the_seed_recipe():
    p = DEFAULT_PARAMS
    assert (p.sr, p.n_fft, p.hop_length, p.n_mels, p.htk, p.norm, p.center) == (
        22050, 2048, 512, 128, False, "slaney", True,
    )  # fmt: skip
    assert (p.clip_samples, p.frames, p.clip_hop, p.min_seconds) == (66150, 128, 66150, 1.0)
    assert (p.db_ref, p.db_amin, p.db_top_db, p.stft_frames) == (1.0, 1e-10, None, 130)


def test_clip_to_mel_matches_librosa():
    for clip in _clips(6):
        ours = clip_to_mel(clip)
        assert ours.shape == (128, 128) and ours.dtype == np.float32
        assert np.abs(ours - _librosa_mel(clip)).max() < 1e-4


def test_batched_mels_match_one_at_a_time():
    clips = _clips(70, seed=1)  # more than one internal batch of 64
    batched = clips_to_mels(clips)
    assert batched.shape == (70, 128, 128) and batched.dtype == np.float32
    for i in (0, 33, 63, 64, 69):
        assert np.abs(batched[i] - _librosa_mel(clips[i])).max() < 1e-4
    assert clips_to_mels(np.zeros((0, CLIP), np.float32)).shape == (0, 128, 128)


def test_fixed_reference_keeps_quiet_clips_quiet():
    loud = _clips(1)[0]
    quiet = loud * np.float32(1e-3)
    loud_db, quiet_db = clip_to_mel(loud), clip_to_mel(quiet)
    # A fixed reference makes a gain a constant dB offset (-60 dB here) wherever above the floor;
    # a per-clip maximum reference would make both clips look the same.
    above_floor = quiet_db > -95
    assert above_floor.mean() > 0.9
    np.testing.assert_allclose(quiet_db[above_floor], loud_db[above_floor] - 60.0, atol=1e-2)
    assert loud_db.max() - quiet_db.max() == pytest.approx(60.0, abs=0.01)
    silence = clip_to_mel(np.zeros(CLIP, np.float32))
    np.testing.assert_allclose(silence, np.full((128, 128), -100.0), atol=1e-4)


def test_ten_second_song_gives_four_clips():
    rng = np.random.default_rng(0)
    stereo = (0.2 * rng.standard_normal((2, 10 * 44100))).astype(np.float32)
    mels = song_to_mels(stereo, 44100)
    assert mels.shape == (4, 128, 128) and mels.dtype == np.float32
    mono = to_mono_22k(stereo, 44100)
    assert mono.shape == (10 * 22050,)
    np.testing.assert_allclose(mels, clips_to_mels(song_to_clips(mono)), atol=1e-5)
    # The last clip holds 1 s of audio and 2 s of zero padding.
    np.testing.assert_allclose(mels[3][:, 50:], -100.0, atol=1e-4)  # windows over exact zeros
    assert mels[3][:, :40].mean() > -60


@pytest.mark.parametrize(
    ("samples", "n_clips"),
    [
        (0, 0),
        (22049, 0),  # shorter than min_seconds: no clip (the caller reports the song)
        (22050, 1),
        (CLIP, 1),
        (2 * CLIP + 22049, 2),  # a tail under 1 s is dropped
        (2 * CLIP + 22050, 3),  # a tail of 1 s is zero-padded
        (3 * CLIP, 3),
    ],
)
def test_clip_count_and_tail_rule(samples, n_clips):
    song = np.arange(1, samples + 1, dtype=np.float32)
    clips = song_to_clips(song)
    assert clips.shape == (n_clips, CLIP) and clips.dtype == np.float32
    kept = min(samples, n_clips * CLIP)
    np.testing.assert_array_equal(clips.reshape(-1)[:kept], song[:kept])
    assert not clips.reshape(-1)[kept:].any()


def test_overlapping_clips_do_not_repeat_the_end():
    params = FeatureParams(clip_hop=CLIP // 2)
    song = np.arange(1, 2 * CLIP + 1, dtype=np.float32)
    clips = song_to_clips(song, params)
    assert clips.shape == (3, CLIP)  # starts 0, 1/2, 1 clip; the end is covered, no tail
    np.testing.assert_array_equal(clips[:, 0], [1, CLIP // 2 + 1, 2 * (CLIP // 2) + 1])
    tail = song_to_clips(song[: 2 * CLIP - 100], params)
    assert tail.shape == (3, CLIP) and tail[2, -100:].sum() == 0 and tail[2, -101] > 0


def test_to_mono_22k():
    stereo = np.stack([np.ones(44100), -np.ones(44100)]).astype(np.float32)
    stereo[0] *= 0.5
    mono = to_mono_22k(stereo, 44100)
    assert mono.shape == (22050,) and mono.dtype == np.float32
    np.testing.assert_allclose(mono[100:-100], -0.25, atol=1e-3)
    same_rate = to_mono_22k(stereo[0], 22050)
    np.testing.assert_array_equal(same_rate, stereo[0])


def test_mel_filterbank_is_librosas():
    bank = mel_filterbank(DEFAULT_PARAMS)
    assert bank.shape == (128, 1025) and bank.dtype == np.float32
    np.testing.assert_array_equal(bank, librosa.filters.mel(sr=22050, n_fft=2048, n_mels=128))
    assert not bank.flags.writeable


def test_params_round_trip_through_json():
    params = FeatureParams(clip_hop=33075, min_seconds=1.5)
    restored = FeatureParams.from_dict(json.loads(json.dumps(params.to_dict())))
    assert restored == params
    assert FeatureParams.from_dict({"n_mels": 64}) == FeatureParams(n_mels=64)
    with pytest.raises(DataError, match=r"unknown feature parameters \['colour'\]"):
        FeatureParams.from_dict({"colour": "blue"})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"frames": 131}, "frames=131 not in 1..130"),
        ({"clip_hop": 0}, "clip_hop=0 must be positive"),
        ({"min_seconds": 4.0}, "min_seconds=4.0 must be in"),
        ({"db_ref": 0.0}, "db_ref and db_amin must be positive"),
    ],
)
def test_bad_params_are_refused(kwargs, message):
    with pytest.raises(DataError, match=message):
        FeatureParams(**kwargs)


def test_wrong_shapes_are_refused():
    with pytest.raises(ValueError, match=r"clips must be \[N, 66150\]"):
        clip_to_mel(np.zeros(1000, np.float32))
    with pytest.raises(ValueError, match="mono"):
        song_to_clips(np.zeros((2, CLIP), np.float32))
