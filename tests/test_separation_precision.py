"""Separation precision: the ``auto`` rule, bf16 against fp32 on songs with known stems, and how
the precision keeps fp32 and bf16 builds apart.

Quality thresholds, from the measurements of ``BENCHMARKS.md`` ("Separation paths"). bf16 keeps 8
bits of mantissa: one rounding is at most 2^-9 relative (-54 dB), and each separated stem of the
two test songs lies 50.2-53.6 dB from its fp32 counterpart, with either port, on the AMD EPYC of
the measurement (50.6-54.3 dB with oneDNN held to AVX2, ``ONEDNN_MAX_CPU_ISA=AVX2``, where it
emulates bf16). The rounding is the same on every CPU (round to nearest even; the convolutions
accumulate in fp32 with oneDNN's AMX, AVX-512 BF16 or emulated kernels and with XLA), so only the
order of fp32 sums differs between machines: :data:`MIN_DB_VS_FP32` allows the error twice the
measured amplitude (6 dB). Above :data:`MAX_DB_VS_FP32` the U-Nets did not run in bf16 at all
(the two fp32 ports agree to 114 dB). The vocal SDR against the truth moved by at most 0.024 dB
on these songs (0.07 dB over one song of each of the ten genres): within :data:`SDR_MARGIN_DB`,
itself below the most that an error at :data:`MIN_DB_VS_FP32` could move it
(:func:`~shared_data.separation.quality.sdr_change_bound_db`, 0.22 dB here). The songs are 2.8 s
and the patches 128 frames (one patch per song, a quarter of Spleeter's 512): a CPU without bf16
units emulates torch's bf16, many times slower.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from shared_data.corpus.synthetic import generate_song
from shared_data.dataset import build_cli
from shared_data.dataset.builder import build_dataset
from shared_data.dataset.cache import cache_key
from shared_data.dataset.configs import VocalMelsConfig
from shared_data.dataset.reuse import separation_flags
from shared_data.errors import DataError
from shared_data.separation import registry as separation
from shared_data.separation import weights as spleeter_weights
from shared_data.separation.choice import choose, cpu_flags
from shared_data.separation.chunks import DEFAULT_PARAMS
from shared_data.separation.quality import sdr_change_bound_db, sdr_db
from tests.support.builder_inputs import OracleSeparator, load_report

MIN_DB_VS_FP32 = 44.0
MAX_DB_VS_FP32 = 80.0
SDR_MARGIN_DB = 0.1
MIN_VOCAL_SDR_DB = 6.0  # fp32 measured 10.7 and 9.7 dB: the songs are really separated
SONGS = (("blues", 0), ("metal", 0))
SECONDS = 2.8
PARAMS = dataclasses.replace(DEFAULT_PARAMS, patch_frames=128)

AMX = {"avx512f", "avx512_bf16", "amx_tile", "amx_bf16"}
ZEN4 = {"avx512f", "avx512_bf16"}
OLD = {"avx2", "avx512f"}
BOTH = ("jax", "torch")
CPU_ONLY = {"jax": False, "torch": False}


@pytest.mark.parametrize(
    ("backend", "precision", "installed", "accelerated", "flags", "path", "why"),
    [
        ("auto", "auto", BOTH, CPU_ONLY, AMX, ("torch", "bf16"), "CPU has amx_bf16"),
        ("auto", "auto", BOTH, CPU_ONLY, ZEN4, ("torch", "bf16"), "CPU has avx512_bf16"),
        ("auto", "auto", BOTH, CPU_ONLY, OLD, ("torch", "fp32"), "CPU has no bf16 unit"),
        ("auto", "auto", ("jax",), CPU_ONLY, OLD, ("jax", "fp32"), "torch is not installed"),
        ("auto", "auto", BOTH, {"jax": True, "torch": True}, OLD, ("jax", "bf16"), "jax sees"),
        ("auto", "auto", BOTH, {"jax": False, "torch": True}, AMX, ("torch", "bf16"), "CUDA"),
        ("auto", "auto", ("jax",), CPU_ONLY, AMX, ("jax", "fp32"), "torch is not installed"),
        ("auto", "fp32", BOTH, CPU_ONLY, AMX, ("torch", "fp32"), "faster fp32 port"),
        ("auto", "bf16", BOTH, CPU_ONLY, OLD, ("torch", "bf16"), "emulated"),
        ("jax", "auto", BOTH, CPU_ONLY, AMX, ("jax", "fp32"), "XLA:CPU does not use"),
        ("torch", "auto", BOTH, CPU_ONLY, OLD, ("torch", "fp32"), "no bf16 unit"),
        ("torch", "auto", BOTH, CPU_ONLY, ZEN4, ("torch", "bf16"), "--backend=torch"),
        ("jax", "bf16", BOTH, CPU_ONLY, AMX, ("jax", "bf16"), "--separation_precision=bf16"),
    ],
)
def test_auto_rule(backend, precision, installed, accelerated, flags, path, why):
    choice = choose(backend, precision, installed=installed, accelerated=accelerated, flags=flags)
    assert (choice.backend, choice.precision) == path
    assert why in choice.reason
    assert choice.describe() == f"{path[0]} {path[1]} ({choice.reason})"


def test_unknown_precision_names_the_flag():
    with pytest.raises(DataError, match=r"--separation_precision=auto\|fp32\|bf16"):
        choose("auto", "fp16", installed=BOTH, accelerated=CPU_ONLY, flags=AMX)


def test_cpu_flags_come_from_the_first_cpu(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nflags\t\t: fpu avx512_bf16 amx_bf16\n\nprocessor\t: 1\nflags\t\t: fpu\n"
    )
    assert cpu_flags(cpuinfo) == {"fpu", "avx512_bf16", "amx_bf16"}
    assert cpu_flags(tmp_path / "absent") == frozenset()  # not Linux: no bf16 unit assumed


@pytest.fixture(scope="module")
def separated():
    """The test songs separated by both ports in both precisions: ``{(backend, precision):
    [stems per song]}``, and the songs."""
    from jax_impl.spleeter import SpleeterSeparator as JaxSeparator
    from torch_ref.spleeter import SpleeterSeparator as TorchSeparator

    songs = [generate_song(genre, i, seed=0, seconds=SECONDS) for genre, i in SONGS]
    states = spleeter_weights.load_stem_states()
    out = {}
    with pytest.MonkeyPatch.context() as patch:  # read and check the weights once, not 4 times
        patch.setattr(spleeter_weights, "load_stem_states", lambda: states)
        for backend, port in (("jax", JaxSeparator), ("torch", TorchSeparator)):
            for precision in ("fp32", "bf16"):
                separator = port(params=PARAMS, precision=precision)
                stems = separator.separate([s.mix for s in songs])
                out[backend, precision] = (separator.info(), stems)
    return songs, out


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_bf16_stems_stay_close_to_fp32_and_as_good(separated, backend):
    songs, out = separated
    (_, fp32), (_, bf16) = out[backend, "fp32"], out[backend, "bf16"]
    for song, a, b in zip(songs, fp32, bf16, strict=True):
        for stem in ("vocals", "accompaniment"):
            assert b[stem].dtype == np.float32 and b[stem].shape == song.mix.shape
            apart = sdr_db(a[stem], b[stem])
            assert MIN_DB_VS_FP32 <= apart <= MAX_DB_VS_FP32, (song.song_id, stem, apart)
        sdr_fp32 = sdr_db(song.vocals, a["vocals"])
        sdr_bf16 = sdr_db(song.vocals, b["vocals"])
        assert sdr_fp32 >= MIN_VOCAL_SDR_DB, song.song_id
        assert abs(sdr_bf16 - sdr_fp32) <= SDR_MARGIN_DB, (song.song_id, sdr_fp32, sdr_bf16)
        # The margin is below what the bf16 error allowed by MIN_DB_VS_FP32 could cost at most.
        assert SDR_MARGIN_DB < sdr_change_bound_db(sdr_fp32, MIN_DB_VS_FP32)


def test_precision_is_in_the_info_and_the_cache_key(separated):
    _, out = separated
    for backend in ("jax", "torch"):
        fp32, bf16 = out[backend, "fp32"][0], out[backend, "bf16"][0]
        # fp32 reports no precision: the info (and so the cache keys) of earlier builds.
        assert "precision" not in fp32 and bf16["precision"] == "bf16"
        assert {k: v for k, v in bf16.items() if k != "precision"} == fp32
        keys = {
            cache_key(input_sha256="0" * 64, separator=info, feature_params={})
            for info in (fp32, bf16)
        }
        assert len(keys) == 2


def test_sdr_change_bound_holds_for_the_worst_perturbations():
    rng = np.random.default_rng(0)
    truth = rng.standard_normal(10_000)
    estimate = truth + 0.3 * rng.standard_normal(10_000)  # about 10.5 dB
    sdr, bound = sdr_db(truth, estimate), sdr_change_bound_db(sdr_db(truth, estimate), 40.0)
    # The worst perturbations of a given size point along the error, or against it.
    error = estimate - truth
    size = 10 ** (-40 / 20) * np.linalg.norm(estimate)
    for sign in (1, -1):
        moved = estimate + sign * size * error / np.linalg.norm(error)
        assert sdr_db(estimate, moved) == pytest.approx(40.0)
        assert abs(sdr_db(truth, moved) - sdr) <= bound
    assert sdr_db(truth, moved) - sdr > 0.75 * bound  # against the error: the bound is close


class _PathSeparator(OracleSeparator):
    """The oracle (true stems) reporting a separation path, as the Spleeter separator does."""

    name = "pathed"

    def __init__(self, songs, backend: str, precision: str):
        super().__init__(songs)
        self.backend = "jax" if backend == "auto" else backend
        self.precision = "fp32" if precision == "auto" else precision
        self.choice = f"{self.backend} {self.precision} (asked)"

    def info(self):
        info = {**super().info(), "backend": self.backend, "device": "cpu"}
        return info | ({"precision": "bf16"} if self.precision == "bf16" else {})


def test_a_bf16_build_refuses_the_fp32_dataset_and_names_the_flags(tmp_path, monkeypatch):
    monkeypatch.setattr(separation.SEPARATORS, "_entries", dict(separation.SEPARATORS._entries))
    songs = [generate_song("blues", i, seed=0, seconds=4.0) for i in range(2)]
    separation.register_separator("pathed", lambda b, p: _PathSeparator(songs, b, p))
    config = VocalMelsConfig(
        name="synthetic_tiny", source="synthetic", songs_per_genre=2, seconds=4.0,
        genres=("blues",),
    )  # fmt: skip
    options = {"separator": "pathed", "folds": 2, "progress": False}
    built = build_dataset(tmp_path, config, separation_precision="fp32", **options)
    report = load_report(built.report_path)
    assert report["separation"] == "pathed: jax fp32 (asked)"
    assert report["separation_precision"] == "fp32"
    summary = build_cli.format_summary(
        report, dict(built.info.metadata), dataset_path=Path(built.data_path),
        report_path=built.report_path, reused=False, seconds=1.0,
    )  # fmt: skip
    line = "  separator pathed: jax fp32 (asked), stems vocals,accompaniment,mix, 2 folds"
    assert line in summary
    with pytest.raises(
        DataError, match=r"separator_info.precision: built None, asked 'bf16'"
    ) as err:
        build_dataset(tmp_path, config, separation_precision="bf16", **options)
    assert "pass --backend=jax --separation_precision=fp32 to reuse it" in str(err.value)
    build_dataset(tmp_path, config, separation_precision="fp32", **options)  # reused as it is


def test_separation_flags_only_when_a_flag_can_help():
    jax_fp32 = {"name": "spleeter", "backend": "jax", "device": "TFRT_CPU_0", "jax": "0.10.2"}
    torch_bf16 = {
        "name": "spleeter", "backend": "torch", "device": "cpu", "torch": "2.14.1",
        "precision": "bf16",
    }  # fmt: skip
    assert separation_flags(jax_fp32, torch_bf16) == "--backend=jax --separation_precision=fp32"
    assert separation_flags(torch_bf16, jax_fp32) == "--backend=torch --separation_precision=bf16"
    assert separation_flags(jax_fp32, {**jax_fp32, "jax": "0.12.0"}) is None  # another version
    assert separation_flags(jax_fp32, {**jax_fp32, "device": "cuda:0"}) is None  # another device
    assert separation_flags({"name": "none"}, jax_fp32) is None


def test_a_beam_worker_on_another_path_stops_the_build_naming_the_flags(tmp_path, monkeypatch):
    pytest.importorskip("apache_beam")
    from shared_data.dataset.beam_stage import SongStageFn
    from shared_data.dataset.features import FeatureParams
    from shared_data.dataset.songs import SongSettings
    from shared_data.dataset.stage import StageSpec

    monkeypatch.setattr(separation.SEPARATORS, "_entries", dict(separation.SEPARATORS._entries))
    separation.register_separator("pathed", lambda b, p: _PathSeparator([], b, p))
    driver = _PathSeparator([], "jax", "bf16").info()
    settings = SongSettings(driver, "vocals", FeatureParams(), 0, 4.0)
    cache = str(tmp_path / "cache")
    SongStageFn(StageSpec("pathed", "jax", settings, cache, "bf16")).setup()  # the same path
    with pytest.raises(DataError, match=r"worker backend jax fp32, .*driver backend jax bf16"):
        SongStageFn(StageSpec("pathed", "jax", settings, cache, "fp32")).setup()
