"""The embedded synthetic music corpus: procedurally generated, deterministic songs with stems.

Each song is stereo 44.1 kHz float32 with drums, bass, chords and a sung vocal line (a Rosenberg
glottal source with vibrato through vowel formant cascades, syllables with consonant onsets,
phrases separated by breaths). Genre identity lives in the vocal line (register, vibrato, syllable
rate, contour, pitch gestures, voice quality, effects) and in the band (tempo, groove, kit, bass
line, chord colour, timbre); :mod:`shared_data.corpus.styles` holds the table. Songs of one genre
differ in key (+-2 semitones), singer's register (+-1), tempo (+-4 %), progression, melody, mix
levels and details.

Determinism: a song's random generator derives only from ``(seed, genre index in GENRES, index)``,
so a song is bit-identical whatever the corpus size or order it is generated in.

Speed (numpy/scipy, one thread, no per-sample Python loops), measured with::

    python -m shared_data.synthetic --benchmark --seconds 30

on the 2-core development machine while other jobs kept its load average near 8: 30 s of stereo
audio in 0.31-0.40 s of CPU time per genre, 84x real time over all genres (75x for the slowest,
metal); 67-85x in earlier runs under heavier contention.

CLI (GTZAN layout, mixes only unless ``--stems``; ``--instrumental`` leaves the vocal line out)::

    python -m shared_data.synthetic --out DIR --songs_per_genre N --seconds S --seed K [--stems]
        [--instrumental]

writes ``DIR/<genre>/<song_id>.wav``; with ``--stems`` also
``STEMS_DIR/<genre>/<song_id>.vocals.wav`` and ``.accompaniment.wav`` where ``STEMS_DIR`` is
``--stems_dir`` (default ``DIR_stems``), kept outside ``DIR`` so that ``DIR`` stays a clean
``<label>/<file>`` tree for the ``folder`` dataset config.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared_data.corpus.band import render_band
from shared_data.corpus.score import make_score
from shared_data.corpus.styles import GENRES, STYLES
from shared_data.corpus.voice import render_vocals
from shared_data.errors import DataError

__all__ = ["GENRES", "SAMPLE_RATE", "SyntheticSong", "generate_corpus", "generate_song", "main"]

SAMPLE_RATE = 44100
PEAK = 0.89  # -1 dBFS: headroom so that no stem or mix sample reaches full scale
VOCAL_DB = (0.0, 2.5)  # vocal level over the accompaniment (RMS), drawn per song


@dataclass(frozen=True)
class SyntheticSong:
    """One generated song and its ground-truth stems.

    Attributes:
        song_id: ``"<genre>.<index:05d>"``, GTZAN style.
        genre: one of :data:`GENRES`.
        mix, vocals, accompaniment: ``[2, n]`` float32 at :data:`SAMPLE_RATE`, peak <= 0.89;
            ``mix == vocals + accompaniment`` exactly (the sum is taken in float32), and one gain
            normalised all three.
    """

    song_id: str
    genre: str
    mix: np.ndarray
    vocals: np.ndarray
    accompaniment: np.ndarray


def _check_args(genre: str, index: int, seed: int, seconds: float) -> None:
    if genre not in STYLES:
        raise DataError(f"unknown synthetic genre {genre!r}; valid genres: {', '.join(GENRES)}")
    if int(index) < 0 or int(seed) < 0:
        raise DataError(f"synthetic song index and seed must be >= 0, got {index=} {seed=}")
    if not round(seconds * SAMPLE_RATE) >= 1:
        raise DataError(f"synthetic song length must be > 0 seconds (one sample), got {seconds}")


def generate_song(
    genre: str, index: int, *, seed: int, seconds: float, instrumental: bool = False
) -> SyntheticSong:
    """Render song ``index`` of ``genre``: ``[2, round(seconds * 44100)]`` float32 mix and stems.

    ``instrumental=True`` renders the same song without its vocal line: ``vocals`` is all zeros
    and ``mix == accompaniment``. The band's random draws do not depend on the flag, so the
    accompaniment is the vocal version's up to the final peak gain.

    Raises:
        DataError: unknown genre (the message lists the valid ones), negative index or seed, or a
            non-positive length.
    """
    _check_args(genre, index, seed, seconds)
    rng = np.random.default_rng([int(seed), GENRES.index(genre), int(index)])
    style = STYLES[genre]
    n = int(round(seconds * SAMPLE_RATE))
    key_offset = int(rng.integers(-2, 3))
    score = make_score(style.band, rng, sr=SAMPLE_RATE, n=n, key_offset=key_offset)
    # independent streams: a change to one part's draws never shifts the other's
    voice_rng, band_rng, mix_rng = rng.spawn(3)
    # The voice's stream is its own, so skipping it leaves the band's draws unchanged.
    vocals = np.zeros((2, n)) if instrumental else render_vocals(style.voice, score, voice_rng)
    accompaniment = render_band(style.band, score, band_rng)

    acc_rms = np.sqrt(np.mean(accompaniment**2))
    voc_rms = np.sqrt(np.mean(vocals**2))
    vocal_db = mix_rng.uniform(*VOCAL_DB)
    if voc_rms > 0 and acc_rms > 0:
        vocals *= acc_rms / voc_rms * 10.0 ** (vocal_db / 20.0)
    peak = max(np.max(np.abs(vocals + accompaniment)), np.max(np.abs(vocals)),
               np.max(np.abs(accompaniment)))  # fmt: skip
    gain = PEAK / peak if peak > 0 else 1.0
    vocals32 = (vocals * gain).astype(np.float32)
    accompaniment32 = (accompaniment * gain).astype(np.float32)
    return SyntheticSong(
        song_id=f"{genre}.{int(index):05d}",
        genre=genre,
        mix=vocals32 + accompaniment32,
        vocals=vocals32,
        accompaniment=accompaniment32,
    )


def generate_corpus(
    *,
    songs_per_genre: int,
    seconds: float,
    seed: int,
    genres: Sequence[str] = GENRES,
    instrumental: bool = False,
) -> Iterator[SyntheticSong]:
    """Yield ``songs_per_genre`` songs of each genre (genre-major order), lazily;
    ``instrumental`` as in :func:`generate_song`.

    Raises:
        DataError: an unknown genre (raised before any song is generated) or a negative count.
    """
    genres = tuple(genres)
    for genre in genres:
        _check_args(genre, 0, seed, seconds)
    if songs_per_genre < 0:
        raise DataError(f"songs_per_genre must be >= 0, got {songs_per_genre}")
    for genre in genres:
        for index in range(songs_per_genre):
            yield generate_song(genre, index, seed=seed, seconds=seconds, instrumental=instrumental)


# ---------------------------------------------------------------------------------------------
# CLI


def _write(path: Path, wave: np.ndarray) -> None:
    from shared_data.audio.decode import write_wav

    write_wav(path, wave, SAMPLE_RATE)


def _benchmark(seconds: float, seed: int, repeats: int = 3) -> None:
    """Print, per genre, the best of ``repeats`` CPU times (this process, one thread) and wall
    times for one song of ``seconds``, and the corpus-wide real-time factors."""
    cpu_total = wall_total = 0.0
    for genre in GENRES:
        generate_song(genre, 0, seed=seed, seconds=2.0)  # warm caches and imports
        cpu, wall = [], []
        for _ in range(repeats):
            c0, w0 = time.process_time(), time.perf_counter()
            generate_song(genre, 1, seed=seed, seconds=seconds)
            cpu.append(time.process_time() - c0)
            wall.append(time.perf_counter() - w0)
        cpu_total += min(cpu)
        wall_total += min(wall)
        print(
            f"{genre:10s} {seconds:.0f} s of stereo audio: CPU {min(cpu):.3f} s "
            f"({seconds / min(cpu):5.1f}x real time), wall {min(wall):.3f} s"
        )
    audio = seconds * len(GENRES)
    print(f"all genres: {audio / cpu_total:.1f}x real time (CPU), {audio / wall_total:.1f}x (wall)")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m shared_data.synthetic",
        description="Write the synthetic corpus as WAV files: <out>/<genre>/<song_id>.wav.",
    )
    p.add_argument("--out", type=Path, help="output directory of the mixes")
    p.add_argument("--songs_per_genre", type=int, default=10)
    p.add_argument("--seconds", type=float, default=30.0, help="length of every song")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--genres", default=",".join(GENRES), help="comma-separated subset of genres")
    p.add_argument("--stems", action="store_true", help="also write vocals and accompaniment stems")
    p.add_argument(
        "--instrumental", action="store_true", help="render the songs without their vocal line"
    )
    p.add_argument(
        "--stems_dir", type=Path, default=None, help="where stems go (default: <out>_stems)"
    )
    p.add_argument(
        "--benchmark", action="store_true", help="time one song per genre instead of writing"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m shared_data.synthetic``; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.benchmark:
        _benchmark(args.seconds, args.seed)
        return 0
    if args.out is None:
        raise DataError("--out is required: the directory to write <genre>/<song_id>.wav into")
    genres = [g for g in args.genres.split(",") if g]
    stems_dir = args.stems_dir or args.out.with_name(args.out.name + "_stems")
    count = 0
    for song in generate_corpus(
        songs_per_genre=args.songs_per_genre,
        seconds=args.seconds,
        seed=args.seed,
        genres=genres,
        instrumental=args.instrumental,
    ):
        _write(args.out / song.genre / f"{song.song_id}.wav", song.mix)
        if args.stems:
            _write(stems_dir / song.genre / f"{song.song_id}.vocals.wav", song.vocals)
            _write(stems_dir / song.genre / f"{song.song_id}.accompaniment.wav", song.accompaniment)
        count += 1
    where = f" (stems in {stems_dir})" if args.stems else ""
    print(f"wrote {count} songs to {args.out}{where}")
    return 0


if __name__ == "__main__":
    from shared_data.cli import run_main

    run_main(main)
