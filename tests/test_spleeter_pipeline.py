"""The Spleeter pipeline's plumbing: chunking, STFT round trip per backend, backend choice, CLI."""

from __future__ import annotations

import dataclasses
import functools
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import soundfile as sf
from flax import nnx

from jax_impl import spleeter as jax_sep
from shared_data.errors import DataError
from shared_data.registry import Registry
from shared_data.separation import chunks as spleeter_chunks
from shared_data.separation import spleeter
from shared_data.separation.chunks import DEFAULT_PARAMS, SpleeterParams, separate_in_chunks
from shared_data.separation.registry import Separator, available_separators, get_separator
from torch_ref import spleeter as torch_sep

# Full-band, small patches: the STFT round trip is then the identity, and a 1.5-s song spans many
# patches, so every chunk boundary and both ends are exercised.
SMALL = dataclasses.replace(
    DEFAULT_PARAMS, bins=DEFAULT_PARAMS.frame_length // 2 + 1, patch_frames=8
)


def _round_trip_torch(segments: np.ndarray, params: SpleeterParams) -> np.ndarray:
    import torch

    spec = torch_sep.stft(torch.from_numpy(segments), params)
    halves = torch.stack([spec * 0.25, spec * 0.75])  # two "stems" with constant masks
    return torch_sep.inverse_stft(halves, params).transpose(0, 1).numpy()


@functools.partial(jax.jit, static_argnums=1)
def _jax_round_trip(segments: jax.Array, params: SpleeterParams) -> jax.Array:
    spec = jax_sep.stft(segments, params)
    halves = jnp.stack([spec * 0.25, spec * 0.75])
    return jnp.swapaxes(jax_sep.inverse_stft(halves, params), 0, 1)


def _round_trip_jax(segments: np.ndarray, params: SpleeterParams) -> np.ndarray:
    return np.asarray(_jax_round_trip(jnp.asarray(segments), params))


@pytest.mark.parametrize("round_trip", [_round_trip_torch, _round_trip_jax], ids=["torch", "jax"])
@pytest.mark.parametrize("batch_patches", [1, 3])
def test_chunked_stft_round_trip_reconstructs_songs(round_trip, batch_patches):
    rng = np.random.default_rng(0)
    songs = [rng.uniform(-1, 1, (2, n)).astype(np.float32) for n in (66_150, 1, 20_000)]
    outs = separate_in_chunks(
        songs, lambda s: round_trip(s, SMALL), batch_patches=batch_patches, params=SMALL
    )
    for song, out in zip(songs, outs, strict=True):
        assert out["mix"] is song or np.array_equal(out["mix"], song)
        assert out["vocals"].shape == out["accompaniment"].shape == song.shape
        assert out["vocals"].dtype == np.float32
        np.testing.assert_allclose(out["vocals"], 0.25 * song, atol=2e-6)
        np.testing.assert_allclose(out["accompaniment"], 0.75 * song, atol=2e-6)


@pytest.mark.parametrize("backend", [torch_sep, jax_sep], ids=["torch", "jax"])
def test_ratio_masks_follow_spleeter(backend):
    estimates = np.array([[3.0, 0.0, 1e-7], [4.0, 0.0, 0.0]], np.float32)
    if backend is torch_sep:
        import torch

        masks = backend.ratio_masks(torch.from_numpy(estimates)).numpy()
    else:
        masks = np.asarray(backend.ratio_masks(estimates))
    eps = DEFAULT_PARAMS.epsilon
    expected = (estimates**2 + eps / 2) / ((estimates**2).sum(0) + eps)
    np.testing.assert_allclose(masks, expected, rtol=1e-6)
    np.testing.assert_allclose(masks[:, 0], [9 / 25, 16 / 25], rtol=1e-6)
    np.testing.assert_allclose(masks[:, 1], [0.5, 0.5])  # silence splits evenly, no NaN


@pytest.fixture(scope="module")
def vocal_state() -> dict[str, np.ndarray]:
    from shared_data.separation.weights import load_stem_states

    return load_stem_states()["vocals"]


def test_unets_keep_the_input_shape_and_reject_other_sizes(vocal_state):
    import torch

    x = np.random.default_rng(0).uniform(0, 2, (1, 64, 128, 2)).astype(np.float32)
    jax_net = jax_sep.load_unet(vocal_state)  # built by conversion: no slow eager random init
    y = np.asarray(nnx.jit(lambda m, v: m(v))(jax_net, jnp.asarray(x)))
    assert y.shape == x.shape and np.all((y >= 0) & (y <= x))  # a [0, 1] mask times the input
    torch_net = torch_sep.load_unet(vocal_state)
    with torch.inference_mode():
        assert torch_net(torch.from_numpy(x.transpose(0, 3, 1, 2))).shape == (1, 2, 64, 128)
        with pytest.raises(ValueError, match="divisible by 64"):
            torch_net(torch.zeros(1, 2, 96, 128))
    with pytest.raises(ValueError, match="divisible by 64"):
        jax.eval_shape(lambda v: jax_net(v), jnp.zeros((1, 64, 100, 2)))


def test_jax_unet_weights_round_trip_through_the_convert_rules(vocal_state):
    from jax_impl.convert import export_torch_state

    exported = export_torch_state(jax_sep.load_unet(vocal_state))
    assert set(exported) - set(vocal_state) == {
        k for k in exported if k.endswith("num_batches_tracked")
    }
    for key, value in vocal_state.items():
        np.testing.assert_array_equal(exported[key], value, err_msg=key)


def test_jax_unet_dropout_needs_a_key_in_training_mode(vocal_state):
    net = jax_sep.load_unet(vocal_state)
    x = jnp.ones((1, 64, 64, 2))
    forward = nnx.jit(lambda m, v, k: m(v, key=k))
    train = nnx.view(net, use_running_average=True, deterministic=False)  # dropout only
    with pytest.raises(ValueError, match="key="):
        jax.eval_shape(lambda v: train(v), x)
    a, b = forward(train, x, jax.random.key(0)), forward(train, x, jax.random.key(1))
    assert not np.allclose(np.asarray(a), np.asarray(b))  # dropout draws differ per key
    assert np.isfinite(np.asarray(a)).all()


def test_patch_arithmetic_matches_spleeter():
    p = DEFAULT_PARAMS
    assert p.segment_samples == 511 * 1024 + 4096
    assert p.num_frames(1) == 5  # 4096 prepended zeros + 1 sample, pad_end
    assert p.num_patches(10 * 44100) == 1
    assert p.num_patches(600 * 44100) == 51
    assert spleeter_chunks.batch_size_for(1, 4) == 1
    assert spleeter_chunks.batch_size_for(3, 4) == 4
    assert spleeter_chunks.batch_size_for(3, 3) == 3
    assert spleeter_chunks.batch_size_for(100, 4) == 4


def test_segments_cover_the_padded_song():
    song = np.arange(2 * 3000, dtype=np.float32).reshape(2, 3000)
    seg = spleeter_chunks.song_segment(song, 0, SMALL)
    assert seg.shape == (2, SMALL.segment_samples)
    assert not seg[:, : SMALL.frame_length].any()  # Spleeter's prepended frame of zeros
    np.testing.assert_array_equal(seg[:, SMALL.frame_length : SMALL.frame_length + 3000], song)


@pytest.mark.parametrize(
    "bad", [np.zeros(100, np.float32), np.zeros((1, 100), np.float32), np.zeros((2, 0))]
)
def test_non_stereo_songs_are_rejected(bad):
    with pytest.raises(DataError, match="stereo"):
        spleeter_chunks.check_songs([np.zeros((2, 10), np.float32), bad])


def test_nan_song_is_rejected():
    song = np.zeros((2, 10), np.float32)
    song[1, 3] = np.nan
    with pytest.raises(DataError, match="song 0: .*NaN"):
        spleeter_chunks.check_songs([song])


def _ports(monkeypatch, **accelerated: bool) -> None:
    """Stand-in ports for the named backends, each reporting whether it sees an accelerator."""
    table = Registry("spleeter backend", DataError)
    for backend, flag in accelerated.items():
        table.register(backend, spleeter.SpleeterBackend(object, lambda flag=flag: flag))
    monkeypatch.setattr(spleeter, "IMPLEMENTATIONS", table)


def _path(choice: spleeter.SeparationChoice) -> tuple[str, str]:
    return choice.backend, choice.precision


def test_auto_resolves_from_the_installed_ports_accelerators_and_cpu_flags(monkeypatch):
    monkeypatch.setattr(spleeter, "cpu_flags", lambda: frozenset({"avx2"}))
    _ports(monkeypatch, jax=True, torch=True)
    assert _path(spleeter.resolve("auto", "auto")) == ("jax", "bf16")
    _ports(monkeypatch, jax=False, torch=True)
    assert _path(spleeter.resolve("auto", "auto")) == ("torch", "bf16")
    _ports(monkeypatch, jax=False, torch=False)
    assert _path(spleeter.resolve("auto", "auto")) == ("torch", "fp32")
    monkeypatch.setattr(spleeter, "cpu_flags", lambda: frozenset({"avx512_bf16", "amx_bf16"}))
    assert _path(spleeter.resolve("auto", "auto")) == ("torch", "bf16")
    assert _path(spleeter.resolve("jax", "auto")) == ("jax", "fp32")
    assert _path(spleeter.resolve("torch", "fp32")) == ("torch", "fp32")
    with pytest.raises(DataError, match=r"auto\|jax\|torch"):
        spleeter.resolve("tensorflow")


def test_auto_takes_the_installed_port_when_the_preferred_one_is_missing(monkeypatch):
    monkeypatch.setattr(spleeter, "cpu_flags", lambda: frozenset({"amx_bf16"}))
    _ports(monkeypatch, jax=False)
    choice = spleeter.resolve("auto", "auto")
    assert _path(choice) == ("jax", "fp32") and "torch is not installed" in choice.reason


def test_both_ports_register_themselves_through_entry_points():
    assert spleeter.IMPLEMENTATIONS.names() == ("jax", "torch")
    assert spleeter.IMPLEMENTATIONS.get("jax").factory is jax_sep.SpleeterSeparator
    assert spleeter.IMPLEMENTATIONS.get("torch").factory is torch_sep.SpleeterSeparator


def test_registering_spleeter_imports_no_framework():
    code = (
        "import sys, shared_data.separation.spleeter; "
        "print(sorted(m for m in ('jax', 'torch', 'flax') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_spleeter_is_registered_and_builds_on_request():
    assert "spleeter" in available_separators()
    sep = get_separator("spleeter", "torch", "fp32")
    assert isinstance(sep, torch_sep.SpleeterSeparator)
    assert isinstance(sep, Separator)
    assert sep.stems == ("vocals", "accompaniment", "mix")
    info = sep.info()
    assert info["backend"] == "torch"
    assert info["weights"]["files"]["vocals"]["sha256"].startswith("385ea337")
    # fp32 keeps the info of the builds made before precisions existed (same cache keys).
    assert "precision" not in info and sep.choice.startswith("torch fp32 (--backend=torch")


def test_separate_cli_writes_stems_like_spleeter(tmp_path, capsys):
    from shared_data.separation import separate_cli as separate

    rng = np.random.default_rng(1)
    song = tmp_path / "in" / "my song.wav"
    song.parent.mkdir()
    sf.write(song, rng.uniform(-0.3, 0.3, (30_000, 2)).astype(np.float32), 44100)
    assert separate.main([str(song), "--out", str(tmp_path / "out"), "--backend", "jax"]) == 0
    for stem in ("vocals", "accompaniment"):
        wave, sr = sf.read(tmp_path / "out" / "my song" / f"{stem}.wav", always_2d=True)
        assert sr == 44100 and wave.shape == (30_000, 2)
        assert np.abs(wave).max() > 0
    err = capsys.readouterr().err
    assert "my song.wav" in err
    assert "separation: spleeter: jax fp32 (--backend=jax; " in err  # the path, and why


def test_separate_cli_reports_clashes_and_missing_files(tmp_path):
    from shared_data.separation import separate_cli as separate

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for d in ("a", "b"):
        sf.write(tmp_path / d / "x.wav", np.zeros((44100, 2), np.float32), 44100)
    out = str(tmp_path / "out")
    with pytest.raises(DataError, match="both write to"):
        separate.main([str(tmp_path / "a" / "x.wav"), str(tmp_path / "b" / "x.wav"), "--out", out])
    with pytest.raises(DataError, match="no such file"):
        separate.main([str(tmp_path / "missing.mp3"), "--out", out])
    with pytest.raises(DataError, match="--batch_patches"):
        separate.main([str(tmp_path / "a" / "x.wav"), "--out", out, "--batch_patches", "0"])
    # The old hyphenated spelling still works, with a one-line note.
    with pytest.raises(DataError, match="--batch_patches must be at least 1"):
        separate.main([str(tmp_path / "a" / "x.wav"), "--out", out, "--batch-patches=0"])
    assert separate.note_old_spellings(["--batch-patches", "2", "--out=x"]) == [
        "note: --batch-patches is deprecated; use --batch_patches"
    ]
