"""The JAX log-mel frontend against the librosa features of ``shared_data.dataset.features``."""

from __future__ import annotations

import jax
import librosa
import numpy as np
import pytest

from jax_impl import features as jax_features
from shared_data.corpus.synthetic import GENRES, generate_song
from shared_data.dataset import features

MAX_DB_DIFF = 1e-3


@pytest.fixture(scope="module", autouse=True)
def _full_fp32():
    previous = jax.config.jax_default_matmul_precision
    jax.config.update("jax_default_matmul_precision", "float32")
    yield
    jax.config.update("jax_default_matmul_precision", previous)


@pytest.fixture(scope="module")
def clips() -> np.ndarray:
    """>= 20 varied clips [N, 66150] at 22,050 Hz: stems and mixes of synthetic songs of three
    genres, a faded song tail (zero-padded by ``song_to_clips``), quiet noise and silence."""
    streams = []
    for genre in (GENRES[0], GENRES[4], GENRES[6]):
        song = generate_song(genre, 3, seed=5, seconds=7.5)
        streams += [song.mix, song.vocals, song.accompaniment]
    parts = [features.song_to_clips(features.to_mono_22k(s, 44100)) for s in streams]
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((2, features.DEFAULT_PARAMS.clip_samples)).astype(np.float32)
    extra = np.stack([noise[0] * 1e-3, noise[1] * 0.3, np.zeros_like(noise[0])])
    return np.concatenate([*parts, extra]).astype(np.float32)


def test_jax_mels_match_librosa(clips):
    assert clips.shape[0] >= 20
    ours = np.asarray(jax_features.clips_to_mels(clips))
    reference = features.clips_to_mels(clips)
    assert ours.shape == reference.shape == (clips.shape[0], 128, 128)
    assert ours.dtype == np.float32
    diff = float(np.abs(ours - reference).max())
    print(f"\nJAX log-mel vs librosa on {clips.shape[0]} clips: max abs diff {diff:.2e} dB")
    assert diff <= MAX_DB_DIFF
    # The features span a real range, so the comparison is not between two constant arrays.
    assert reference.min() <= -99.0 and reference.max() >= 0.0


def test_reference_is_librosa_itself(clips):
    """Guard against both sides sharing a mistake in ``shared_data.dataset.features``: one clip
    recomputed with librosa's documented defaults for the project's parameters."""
    clip = clips[1]
    power = librosa.feature.melspectrogram(
        y=clip, sr=22050, n_fft=2048, hop_length=512, n_mels=128, center=True, pad_mode="constant"
    )
    expected = librosa.power_to_db(power, ref=1.0, amin=1e-10, top_db=None)[:, :128]
    ours = np.asarray(jax_features.clip_to_mel(clip))
    assert np.abs(ours - expected).max() <= MAX_DB_DIFF


def test_batch_size_does_not_change_features(clips):
    together = np.asarray(jax_features.clips_to_mels(clips[:5]))
    alone = np.stack([np.asarray(jax_features.clip_to_mel(c)) for c in clips[:5]])
    np.testing.assert_allclose(together, alone, atol=MAX_DB_DIFF)


def test_bad_clip_shape_is_rejected():
    with pytest.raises(ValueError, match=r"\[N, 66150\]"):
        jax_features.clips_to_mels(np.zeros((2, 1000), np.float32))
