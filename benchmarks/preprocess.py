"""Preprocessing throughput: Spleeter separation (JAX, PyTorch) and log-mels (librosa, JAX).

    python -m benchmarks.preprocess --out preprocess.json [--seconds 60] [--repeats 2]
        [--memory-seconds 600] [--batch-patches 4]

Speeds are multiples of real time (seconds of audio per second of wall clock), measured after a
warm-up call (JAX compilation excluded) and averaged over ``--repeats`` timed calls, on the default
device of each framework (the CPU unless a GPU is present). The song is a synthetic one
(``shared_data.corpus.synthetic``); the mel frontends featurise its 3-s clips (mono 22,050 Hz).

Peak memory of separating one ``--memory-seconds`` song (white noise: memory does not depend on
content) is measured per backend in a fresh subprocess: peak RSS (``VmHWM``) after a warm-up on
a short song, and after the long one. ``--memory-seconds 0`` skips it. Not a test: nothing is
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

from shared_data.corpus.synthetic import generate_song
from shared_data.dataset import features
from shared_data.separation.chunks import DEFAULT_PARAMS, batch_size_for
from shared_data.separation.spleeter import make_spleeter

SR = DEFAULT_PARAMS.sample_rate
PACKAGES = ("jax", "jaxlib", "flax", "torch", "librosa", "numpy", "soxr")


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


def separation_speed(backend: str, song: np.ndarray, repeats: int, batch_patches: int) -> dict:
    """Separation of ``song [2, n]`` on ``backend``: wall seconds and multiple of real time."""
    separator = make_spleeter(backend, batch_patches=batch_patches)
    timing = _timed(lambda: separator.separate([song]), repeats)
    audio = song.shape[1] / SR
    return {
        "device": separator.info()["device"],
        **timing,
        "x_realtime": audio / timing["wall_s"],
    }


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


def memory_child(backend: str, seconds: float, batch_patches: int) -> dict:
    """Peak RSS of this process around separating a ``seconds``-long song (run in a subprocess)."""
    rng = np.random.default_rng(0)
    separator = make_spleeter(backend, batch_patches=batch_patches)
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


def peak_memory(backend: str, seconds: float, batch_patches: int) -> dict:
    """:func:`memory_child` in a fresh interpreter, so earlier peaks do not hide this one."""
    command = [
        sys.executable, "-m", "benchmarks.preprocess", "--memory-child", backend,
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
    parser.add_argument("--backends", default="jax,torch", help="comma-separated")
    parser.add_argument("--memory-child", choices=("jax", "torch"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the measurements, print the JSON and write it to ``--out``; returns 0."""
    args = parse_args(argv)
    if args.memory_child:
        print(json.dumps(memory_child(args.memory_child, args.memory_seconds, args.batch_patches)))
        return 0
    backends = [b for b in args.backends.split(",") if b]
    song = generate_song("rock", 0, seed=0, seconds=args.seconds).mix
    clips = features.song_to_clips(features.to_mono_22k(song, SR))
    results: dict[str, Any] = {"environment": environment(), "song_seconds": args.seconds}
    results["separation"] = {
        b: separation_speed(b, song, args.repeats, args.batch_patches) for b in backends
    }
    results["mel"] = {"clips": int(clips.shape[0]), **mel_speed(clips, max(args.repeats, 3))}
    if args.memory_seconds > 0:
        results["memory"] = {
            b: peak_memory(b, args.memory_seconds, args.batch_patches) for b in backends
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
