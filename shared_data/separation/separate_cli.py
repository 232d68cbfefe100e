"""Separate songs into vocals and accompaniment, like ``spleeter separate -p spleeter:2stems``.

    python -m shared_data.separate SONG... --out DIR [--backend auto|jax|torch]
        [--separation_precision auto|fp32|bf16] [--batch_patches N]

writes ``DIR/<song file name without extension>/vocals.wav`` and ``accompaniment.wav`` (16-bit
PCM, 44.1 kHz stereo, the song's length). Songs are decoded with
``shared_data.audio.decode.load_audio`` (any format it reads; mono is duplicated to stereo, other
rates resampled to 44.1 kHz) and separated one at a time, so memory stays within the chunked
pipeline's budget (``shared_data.separation.chunks``). Missing files and songs whose outputs would
collide are reported before any work starts; a file that cannot be decoded stops the run with an
error naming it (the songs before it are already written). The separation path (backend and
precision, each ``auto`` by default: the fastest measured one for this machine) is printed first,
with the reason it was chosen. The hyphenated spellings of earlier releases (``--batch-patches``,
``--separation-precision``) still work, with a one-line note to use the underscored flag.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from shared_data.audio.decode import load_audio, write_wav
from shared_data.cli import run_main
from shared_data.errors import DataError
from shared_data.separation.chunks import DEFAULT_PARAMS
from shared_data.separation.registry import PRECISIONS, SEPARATION_BACKENDS, describe_separator
from shared_data.separation.spleeter import make_spleeter

OUTPUT_STEMS = ("vocals", "accompaniment")
#: Flags once spelled with hyphens: every other flag of the project is underscored.
OLD_SPELLINGS = {
    "--batch-patches": "--batch_patches",
    "--separation-precision": "--separation_precision",
}


def note_old_spellings(argv: list[str]) -> list[str]:
    """The deprecation notes (one line each, also printed on stderr) for old spellings in argv."""
    used = {arg.split("=", 1)[0] for arg in argv} & set(OLD_SPELLINGS)
    notes = [f"note: {old} is deprecated; use {OLD_SPELLINGS[old]}" for old in sorted(used)]
    for note in notes:
        print(note, file=sys.stderr)
    return notes


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The CLI's flags (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="python -m shared_data.separate",
        description="Split songs into vocals.wav and accompaniment.wav (Spleeter 2-stem model).",
    )
    parser.add_argument(
        "songs", nargs="+", type=Path, help="audio files (wav, mp3, flac, ogg, ...)"
    )
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument(
        "--backend", choices=SEPARATION_BACKENDS, default="auto", help="default: %(default)s"
    )
    parser.add_argument(
        "--separation_precision",
        "--separation-precision",
        choices=PRECISIONS,
        default="auto",
        help="the U-Nets' precision; auto: the fastest measured path here (default: %(default)s)",
    )
    parser.add_argument(
        "--batch_patches",
        "--batch-patches",
        type=int,
        default=4,
        help="11.9-s patches per U-Net call; lower it if memory runs out (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    note_old_spellings(sys.argv[1:] if argv is None else argv)
    return args


def output_dirs(songs: list[Path], out: Path) -> list[Path]:
    """``out / <song stem>`` per song; two songs with the same file stem raise ``DataError``."""
    dirs: dict[Path, Path] = {}
    for song in songs:
        target = out / song.stem
        if target in dirs:
            raise DataError(
                f"{song} and {dirs[target]} would both write to {target}; rename one of them"
            )
        dirs[target] = song
    return list(dirs)


def main(argv: list[str] | None = None) -> int:
    """Separate every song; returns 0."""
    args = parse_args(argv)
    if args.batch_patches < 1:
        raise DataError(f"--batch_patches must be at least 1, got {args.batch_patches}")
    targets = output_dirs(args.songs, args.out)
    missing = [str(s) for s in args.songs if not s.is_file()]
    if missing:
        raise DataError(f"no such file(s): {', '.join(missing)}")
    sr = DEFAULT_PARAMS.sample_rate
    separator = make_spleeter(
        args.backend, args.separation_precision, batch_patches=args.batch_patches
    )
    print(f"separation: {describe_separator(separator)}", file=sys.stderr)
    for song, target in zip(args.songs, targets, strict=True):
        start = time.perf_counter()
        wave = load_audio(song, sr=sr, channels=2, min_seconds=0.0, pad_to_seconds=0.0)
        stems = separator.separate([wave])[0]
        for stem in OUTPUT_STEMS:
            write_wav(target / f"{stem}.wav", np.asarray(stems[stem]), sr)
        seconds = wave.shape[1] / sr
        elapsed = time.perf_counter() - start
        print(f"{song} -> {target}/ ({seconds:.1f} s of audio in {elapsed:.1f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    run_main(main)
