"""Audio decoding: decoding, mixing, resampling, the length policy and every bad-input reason."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from shared_data.audio.decode import audio_info, load_audio, mix_channels, write_wav
from shared_data.audio.integrity import truncation_reason
from shared_data.errors import AudioError, DataError


def _noise(seconds: float, sr: int, channels: int, seed: int = 0, level: float = 0.3):
    """Frames-first ``[n, channels]`` float32 noise, as soundfile writes it."""
    rng = np.random.default_rng(seed)
    return (level * rng.standard_normal((int(round(seconds * sr)), channels))).astype(np.float32)


def _tone(freq: float, seconds: float, sr: int, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _amplitude(x: np.ndarray, freq: float, sr: int) -> float:
    """Amplitude of the ``freq`` sinusoid in ``x`` (projection onto sin and cos)."""
    t = np.arange(x.size) / sr
    s, c = np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t)
    return float(np.hypot(2 * x @ s / x.size, 2 * x @ c / x.size))


def _reason(path, **kwargs) -> str:
    with pytest.raises(AudioError) as info:
        load_audio(path, **kwargs)
    assert info.value.path == str(path)
    assert str(path) in str(info.value)  # the message names the file
    assert isinstance(info.value, DataError)
    return info.value.reason


def test_stereo_44k_loads_unchanged(tmp_path):
    frames = _noise(4.0, 44100, 2)
    path = tmp_path / "song.wav"
    sf.write(path, frames, 44100, subtype="FLOAT")
    wave = load_audio(path)
    assert wave.dtype == np.float32 and wave.shape == (2, 4 * 44100)
    np.testing.assert_array_equal(wave, frames.T)


def test_mono_8k_becomes_stereo_44k(tmp_path):
    path = tmp_path / "mono8k.wav"
    sf.write(path, _tone(440.0, 4.0, 8000), 8000, subtype="PCM_16")
    wave = load_audio(path)
    assert wave.dtype == np.float32 and wave.shape == (2, 4 * 44100)
    np.testing.assert_array_equal(wave[0], wave[1])
    assert _amplitude(wave[0], 440.0, 44100) == pytest.approx(0.5, rel=0.01)
    assert _amplitude(wave[0], 1000.0, 44100) < 1e-3


def test_48k_six_channels_becomes_stereo_44k(tmp_path):
    # 5.1 in WAVE order FL FR FC LFE BL BR; a distinct tone per channel shows where each went.
    freqs = (300.0, 500.0, 700.0, 60.0, 900.0, 1100.0)
    frames = np.stack([_tone(f, 4.0, 48000) for f in freqs], axis=1)
    path = tmp_path / "surround.wav"
    sf.write(path, frames, 48000, subtype="FLOAT")
    wave = load_audio(path)
    assert wave.shape == (2, 4 * 44100)
    h = np.sqrt(0.5)
    norm = 1 + 2 * h
    left = {300.0: 1 / norm, 500.0: 0, 700.0: h / norm, 60.0: 0, 900.0: h / norm, 1100.0: 0}
    right = {300.0: 0, 500.0: 1 / norm, 700.0: h / norm, 60.0: 0, 900.0: 0, 1100.0: h / norm}
    for side, expected in ((wave[0], left), (wave[1], right)):
        for freq, gain in expected.items():
            assert _amplitude(side, freq, 44100) == pytest.approx(0.5 * gain, abs=2e-3)


def test_mix_channels_keeps_level_and_averages_unknown_layouts():
    ones = np.ones((6, 10), np.float32)
    ones[3] = 5.0  # the LFE is dropped, so its value must not show up
    np.testing.assert_allclose(mix_channels(ones, 2), np.ones((2, 10)), rtol=1e-6)
    np.testing.assert_allclose(mix_channels(ones, 1), np.ones((1, 10)), rtol=1e-6)
    many = np.arange(10, dtype=np.float32)[:, None] * np.ones((1, 4), np.float32)
    np.testing.assert_allclose(mix_channels(many, 2), np.full((2, 4), 4.5), rtol=1e-6)
    stereo = np.stack([np.zeros(4), np.ones(4)]).astype(np.float32)
    np.testing.assert_array_equal(mix_channels(stereo, 1), np.full((1, 4), 0.5, np.float32))
    with pytest.raises(ValueError, match="channels must be 1 or 2"):
        mix_channels(stereo, 3)


@pytest.mark.parametrize(
    ("fmt", "subtype", "expected"),
    [
        ("WAV", "PCM_16", "truncated: header says 132300 frames, file holds "),
        ("AIFF", "PCM_16", "truncated: header says 132300 frames, file holds "),
        ("MP3", None, "truncated: MPEG frame "),
        ("OGG", "VORBIS", "truncated: last Ogg page needs "),
        ("FLAC", "PCM_16", "corrupt data: flac decoder lost sync"),
    ],
)
def test_truncated_files_are_rejected(tmp_path, fmt, subtype, expected):
    whole = tmp_path / f"whole.{fmt.lower()}"
    sf.write(whole, _noise(3.0, 44100, 2), 44100, format=fmt, subtype=subtype)
    assert load_audio(whole).shape == (2, 3 * 44100)
    data = whole.read_bytes()
    cut = tmp_path / f"cut.{fmt.lower()}"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    assert _reason(cut).startswith(expected)


def _layer3_frame_starts(data: bytes) -> list[int]:
    """Frame offsets of an MPEG-1 layer III, 44.1 kHz stream (what libsndfile's LAME writes)."""
    kbps = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
    starts, i = [], 0
    while i + 4 <= len(data) and data[i] == 0xFF and data[i + 1] == 0xFB:
        starts.append(i)
        i += 144 * kbps[data[i + 2] >> 4] * 1000 // 44100 + ((data[i + 2] >> 1) & 1)
    assert i == len(data), "the test's frame walk must cover the whole file"
    return starts


def test_mp3_cut_at_a_frame_boundary_is_caught_by_its_xing_frame_count(tmp_path):
    whole = tmp_path / "whole.mp3"
    sf.write(whole, _noise(3.0, 44100, 2), 44100, format="MP3")
    data = whole.read_bytes()
    starts = _layer3_frame_starts(data)
    assert b"Xing" in data[: starts[1]] or b"Info" in data[: starts[1]]
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(data[: starts[len(starts) // 2]])
    assert _reason(cut).startswith("truncated: header says 132300 frames, file holds ")


def test_mp3_decoded_short_of_its_frames_is_reported(tmp_path):
    # libsndfile stops decoding a VBR mp3 without a Xing frame at its length estimate.
    whole = tmp_path / "whole.mp3"
    sf.write(whole, _noise(3.0, 44100, 2), 44100, format="MP3")
    data = whole.read_bytes()
    n_frames = len(_layer3_frame_starts(data))
    assert truncation_reason(data, "MP3", 132300, 132300) is None
    assert truncation_reason(data, "MP3", 132300, 60000) == (
        f"incomplete decode: MPEG frames hold {n_frames * 1152} samples, decoder returned 60000 "
        "(VBR mp3 without a Xing header?); re-encode the file"
    )


def test_mp3_whose_last_bytes_are_missing_is_truncated(tmp_path):
    whole = tmp_path / "whole.mp3"
    sf.write(whole, _noise(3.0, 44100, 1), 44100, format="MP3")
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(whole.read_bytes()[:-10])
    assert _reason(cut).startswith("truncated: MPEG frame ")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    assert _reason(path) == "empty file"


def test_wav_without_samples(tmp_path):
    path = tmp_path / "nothing.wav"
    sf.write(path, np.zeros((0, 2), np.float32), 44100)
    assert _reason(path) == "empty audio: the file holds no samples"


def test_text_file_named_wav(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio\n" * 20)
    assert _reason(path) == "not an audio file: Format not recognised"


def test_missing_file(tmp_path):
    assert _reason(tmp_path / "absent.wav") == "file not found"


def test_nan_samples(tmp_path):
    frames = _noise(3.0, 44100, 2)
    frames[1000, 1] = np.nan
    frames[2000, 0] = np.inf
    path = tmp_path / "nan.wav"
    sf.write(path, frames, 44100, subtype="FLOAT")
    assert _reason(path) == f"non-finite samples: 2 NaN/inf of {frames.size}"


def test_half_second_clip_is_rejected(tmp_path):
    path = tmp_path / "short.wav"
    sf.write(path, _noise(0.5, 44100, 2), 44100)
    assert _reason(path) == "too short: 0.50 s < 1.00 s"
    assert load_audio(path, min_seconds=0.25).shape == (2, 3 * 44100)


def test_one_and_a_half_second_clip_is_padded_to_three(tmp_path):
    frames = _noise(1.5, 44100, 2)
    path = tmp_path / "short.wav"
    sf.write(path, frames, 44100, subtype="FLOAT")
    wave = load_audio(path)
    assert wave.shape == (2, 3 * 44100)
    np.testing.assert_array_equal(wave[:, : frames.shape[0]], frames.T)
    assert not wave[:, frames.shape[0] :].any()
    assert load_audio(path, pad_to_seconds=0).shape == (2, frames.shape[0])
    assert load_audio(path, pad_to_seconds=2.0).shape == (2, 2 * 44100)


def test_ten_minute_song_loads_whole(tmp_path):
    path = tmp_path / "long.wav"
    sf.write(path, _noise(600.0, 8000, 1, level=0.1), 8000, subtype="PCM_16")
    wave = load_audio(path)
    assert wave.dtype == np.float32 and wave.shape == (2, 600 * 44100)
    # The end is audio, not padding: the last second has the noise's level.
    assert np.std(wave[0, -44100:]) == pytest.approx(0.1, rel=0.05)


def test_mono_output(tmp_path):
    frames = np.stack([_tone(300.0, 1.0, 22050), _tone(500.0, 1.0, 22050)], axis=1)
    path = tmp_path / "stereo.wav"
    sf.write(path, frames, 22050, subtype="FLOAT")
    wave = load_audio(path, sr=22050, channels=1, pad_to_seconds=0)
    assert wave.shape == (1, 22050)
    np.testing.assert_allclose(wave[0], frames.mean(axis=1), atol=1e-7)


def test_write_wav_round_trips(tmp_path):
    wave = np.stack([_tone(440.0, 1.0, 16000), -_tone(440.0, 1.0, 16000)])
    wave[0, 0], wave[1, 0] = 3.0, -3.0  # out of range: clipped, not wrapped
    write_wav(tmp_path / "sub" / "pcm.wav", wave, 16000)
    back, sr = sf.read(tmp_path / "sub" / "pcm.wav", dtype="float32", always_2d=True)
    assert sr == 16000 and back.T.shape == wave.shape
    assert back[0, 0] == pytest.approx(32767 / 32768) and back[0, 1] == -1.0
    np.testing.assert_allclose(back.T[:, 1:], wave[:, 1:], atol=1 / 32768)
    write_wav(tmp_path / "float.wav", wave, 16000, subtype="FLOAT")
    info = audio_info(tmp_path / "float.wav")
    assert (info.subtype, info.channels, info.frames, info.seconds) == ("FLOAT", 2, 16000, 1.0)
    np.testing.assert_array_equal(sf.read(tmp_path / "float.wav", dtype="float32")[0].T, wave)
    wave[0, 5] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        write_wav(tmp_path / "nan.wav", wave, 16000)
