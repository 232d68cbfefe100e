"""Preprocessing throughput: Spleeter separation per path (backend x precision) and log-mels.

    python -m benchmarks.preprocess --out preprocess.json [--seconds 60] [--repeats 2]
        [--paths jax:fp32,jax:bf16,torch:fp32,torch:bf16] [--quality-songs 10]
        [--quality-seconds 12] [--memory-seconds 600] [--batch-patches 4]

A separation *path* is a backend and a precision (``shared_data.separation.choice``). Speeds are
multiples of real time (seconds of audio per second of wall clock) on the default device of each
framework (the CPU unless a GPU is present). Every path is built and warmed up first (JAX
compilation excluded), then the timed calls go round the paths ``--repeats`` times, so that a
burst of load from other processes hits every path alike; each path reports its best call
(``x_realtime``) and the mean. The record also says which path ``--backend=auto`` takes here and
why. The song is a synthetic one (``shared_data.corpus.synthetic``); the mel frontends featurise
its 3-s clips (mono 22,050 Hz).

Quality (``--quality-songs N``, 0 skips it): N synthetic songs of ``--quality-seconds`` with
their true vocals, one per genre, separated on every path: the mean vocal SDR against the truth
per path, and per bf16 path how far its stems lie from the same backend's fp32 stems
(``shared_data.separation.quality.sdr_db``; the lowest and the median over songs and stems) and
the largest change of a song's vocal SDR.

Peak memory of separating one ``--memory-seconds`` song (white noise: memory does not depend on
content) is measured per path in a fresh subprocess: peak RSS (``VmHWM``) after a warm-up on a
short song, and after the long one. ``--memory-seconds 0`` skips it. Not a test: nothing is
asserted.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from shared_data.corpus.synthetic import GENRES, generate_song
from shared_data.dataset import features
from shared_data.separation.chunks import DEFAULT_PARAMS, batch_size_for
from shared_data.separation.quality import sdr_db
from shared_data.separation.spleeter import make_spleeter, resolve

SR = DEFAULT_PARAMS.sample_rate
PACKAGES = ("jax", "jaxlib", "flax", "torch", "librosa", "numpy", "soxr")
PATHS = "jax:fp32,jax:bf16,torch:fp32,torch:bf16"


def _timed(fn: Any, repeats: int) -> dict[str, float]:
    """Mean wall and process-CPU seconds of ``fn()`` over ``repeats`` calls, after a warm-up call.

    CPU seconds (all threads) are reported too because the development machine is shared: wall
    time rises under others' load, CPU time much less."""
    fn()
    cpu, start = _cpu_seconds(), time.perf_counter()
    for _ in range(repeats):
        fn()
    return {
        "wall_s": (time.perf_counter() - start) / repeats,
        "cpu_s": (_cpu_seconds() - cpu) / repeats,
    }


def parse_paths(text: str) -> list[tuple[str, str]]:
    """``"jax:fp32,torch:bf16"`` -> ``[("jax", "fp32"), ("torch", "bf16")]``."""
    paths = []
    for item in filter(None, text.split(",")):
        backend, _, precision = item.partition(":")
        paths.append((backend, precision or "fp32"))
    return paths


def path_name(backend: str, precision: str) -> str:
    """The record's key of a path: ``"torch bf16"``."""
    return f"{backend} {precision}"


def build_separators(paths: list[tuple[str, str]], batch_patches: int) -> dict[str, Any]:
    """One separator per path, keyed by :func:`path_name`."""
    return {path_name(b, p): make_spleeter(b, p, batch_patches=batch_patches) for b, p in paths}


def separation_speed(separators: dict[str, Any], song: np.ndarray, repeats: int) -> dict:
    """Separation of ``song [2, n]`` on every path, timed in rounds (module doc): per path the
    best and mean wall seconds, mean CPU seconds and multiples of real time."""
    for separator in separators.values():
        separator.separate([song])  # warm-up: compilation, oneDNN's kernel choice
    walls: dict[str, list[float]] = {name: [] for name in separators}
    cpus: dict[str, list[float]] = {name: [] for name in separators}
    for _ in range(repeats):
        for name, separator in separators.items():
            cpu, start = _cpu_seconds(), time.perf_counter()
            separator.separate([song])
            walls[name].append(time.perf_counter() - start)
            cpus[name].append(_cpu_seconds() - cpu)
    audio = song.shape[1] / SR
    out = {}
    for name, separator in separators.items():
        info = separator.info()
        best, mean = min(walls[name]), sum(walls[name]) / repeats
        out[name] = {
            "backend": info["backend"],
            "precision": separator.precision,
            "device": info["device"],
            "best_wall_s": best,
            "wall_s": mean,
            "cpu_s": sum(cpus[name]) / repeats,
            "x_realtime": audio / best,
            "x_realtime_mean": audio / mean,
        }
    return out


def separation_quality(separators: dict[str, Any], n_songs: int, seconds: float) -> dict:
    """Vocal SDR against the truth per path, and bf16 against fp32 per backend (module doc)."""
    songs = [generate_song(g, 0, seed=0, seconds=seconds) for g in GENRES[:n_songs]]
    stems = {
        name: [separator.separate([song.mix])[0] for song in songs]
        for name, separator in separators.items()
    }
    sdrs = {
        name: [sdr_db(song.vocals, o["vocals"]) for song, o in zip(songs, outs, strict=True)]
        for name, outs in stems.items()
    }
    paths = {
        name: {"vocal_sdr_db": values, "mean_vocal_sdr_db": float(np.mean(values))}
        for name, values in sdrs.items()
    }
    for name, outs in stems.items():
        backend, _, precision = name.partition(" ")
        fp32 = path_name(backend, "fp32")
        if precision == "fp32" or fp32 not in stems:
            continue
        apart = [
            sdr_db(ref[stem], o[stem])
            for ref, o in zip(stems[fp32], outs, strict=True)
            for stem in ("vocals", "accompaniment")
        ]
        moved = [b - a for a, b in zip(sdrs[fp32], sdrs[name], strict=True)]
        paths[name].update(
            min_db_vs_fp32=min(apart),
            median_db_vs_fp32=float(np.median(apart)),
            max_abs_sdr_change_db=max(abs(m) for m in moved),
        )
    out: dict[str, Any] = {"songs": n_songs, "song_seconds": seconds, "paths": paths}
    if "jax fp32" in stems and "torch fp32" in stems:
        out["jax_fp32_vs_torch_fp32_min_db"] = min(
            sdr_db(a[stem], b[stem])
            for a, b in zip(stems["torch fp32"], stems["jax fp32"], strict=True)
            for stem in ("vocals", "accompaniment")
        )
    return out


def mel_speed(clips: np.ndarray, repeats: int) -> dict[str, dict]:
    """Log-mels of ``clips [N, 66150]`` with librosa and with JAX (the feature definition of
    ``shared_data.dataset.features``)."""
    from jax_impl import features as jax_features

    audio = clips.shape[0] * clips.shape[1] / features.DEFAULT_PARAMS.sr
    librosa_t = _timed(lambda: features.clips_to_mels(clips), repeats)
    jax_t = _timed(lambda: np.asarray(jax_features.clips_to_mels(clips)), repeats)
    return {
        "librosa": {**librosa_t, "x_realtime": audio / librosa_t["wall_s"]},
        "jax": {**jax_t, "x_realtime": audio / jax_t["wall_s"]},
    }


def _peak_rss_bytes() -> int:
    """This process's peak resident set (``VmHWM``). Not ``ru_maxrss``: Linux carries that over
    ``exec`` from the parent, so a child would report the benchmark driver's own peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def memory_child(path: str, seconds: float, batch_patches: int) -> dict:
    """Peak RSS of this process around separating a ``seconds``-long song on ``path``
    (``backend:precision``; run in a subprocess)."""
    rng = np.random.default_rng(0)
    ((backend, precision),) = parse_paths(path)
    separator = make_spleeter(backend, precision, batch_patches=batch_patches)
    # Warm up (compile) every batch shape the long song can use: a song of each batch size.
    for size in sorted({batch_size_for(k, batch_patches) for k in range(1, batch_patches + 1)}):
        n = size * DEFAULT_PARAMS.patch_step - DEFAULT_PARAMS.frame_length  # exactly `size` patches
        separator.separate([rng.random((2, n), dtype=np.float32) - 0.5])
    warm = _peak_rss_bytes()
    song = rng.random((2, int(seconds * SR)), dtype=np.float32) - 0.5  # no float64 temporary
    start = time.perf_counter()
    separator.separate([song])
    return {
        "song_seconds": seconds,
        "patches": DEFAULT_PARAMS.num_patches(song.shape[1]),
        "batch_patches": batch_patches,
        "peak_rss_after_warmup_bytes": warm,
        "peak_rss_bytes": _peak_rss_bytes(),
        "wall_s": time.perf_counter() - start,
    }


def peak_memory(path: str, seconds: float, batch_patches: int) -> dict:
    """:func:`memory_child` in a fresh interpreter, so earlier peaks do not hide this one."""
    command = [
        sys.executable, "-m", "benchmarks.preprocess", "--memory-child", path,
        "--memory-seconds", str(seconds), "--batch-patches", str(batch_patches),
    ]  # fmt: skip
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def environment() -> dict[str, Any]:
    """Device, date, versions: what a benchmark figure needs to be read."""
    from benchmarks.hardware import host_environment

    command = " ".join(["python", "-m", "benchmarks.preprocess", *sys.argv[1:]])
    return {**host_environment(PACKAGES), "command": command}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The benchmark's flags (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.preprocess", description=__doc__)
    parser.add_argument("--out", type=Path, help="JSON file for the results")
    parser.add_argument("--seconds", type=float, default=60.0, help="song length for speed")
    parser.add_argument("--repeats", type=int, default=2, help="timed calls per measurement")
    parser.add_argument("--batch-patches", type=int, default=4)
    parser.add_argument("--memory-seconds", type=float, default=600.0)
    parser.add_argument(
        "--paths", default=PATHS, help="comma-separated backend:precision (default %(default)s)"
    )
    parser.add_argument("--quality-songs", type=int, default=10, help="0: no quality rows")
    parser.add_argument("--quality-seconds", type=float, default=12.0)
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the measurements, print the JSON and write it to ``--out``; returns 0."""
    args = parse_args(argv)
    if args.memory_child:
        print(json.dumps(memory_child(args.memory_child, args.memory_seconds, args.batch_patches)))
        return 0
    paths = parse_paths(args.paths)
    song = generate_song("rock", 0, seed=0, seconds=args.seconds).mix
    clips = features.song_to_clips(features.to_mono_22k(song, SR))
    results: dict[str, Any] = {"environment": environment(), "song_seconds": args.seconds}
    results["auto"] = resolve("auto", "auto").describe()
    separators = build_separators(paths, args.batch_patches)
    results["separation"] = separation_speed(separators, song, args.repeats)
    if args.quality_songs > 0:
        results["quality"] = separation_quality(
            separators, args.quality_songs, args.quality_seconds
        )
    del separators
    results["mel"] = {"clips": int(clips.shape[0]), **mel_speed(clips, max(args.repeats, 3))}
    if args.memory_seconds > 0:
        results["memory"] = {
            path_name(b, p): peak_memory(f"{b}:{p}", args.memory_seconds, args.batch_patches)
            for b, p in paths
        }
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    from shared_data.cli import run_main

    run_main(main)
