"""The shared timeline of one synthetic song: tempo, swing, key and the chord sequence.

Voice and band both read it, so the melody lands on the band's beats and chords.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shared_data.corpus.styles import CHORDS, BandStyle


@dataclass(frozen=True)
class Chord:
    start_beat: float
    beats: float
    root_midi: int  # in the bass register
    intervals: tuple[int, ...]


@dataclass(frozen=True)
class Score:
    """Timing and harmony of a song of ``n`` samples at ``sr``."""

    sr: int
    n: int
    beat_s: float
    swing: float
    tonic_midi: int  # bass register, key offset applied
    chords: tuple[Chord, ...]

    @property
    def n_beats(self) -> float:
        return self.n / self.sr / self.beat_s

    def seconds(self, beat: float | np.ndarray) -> float | np.ndarray:
        """Time in seconds of a beat position, with swing: the off-beat eighth moves towards the
        last triplet (at swing 1, 0.5 -> 2/3 of the beat); other positions stretch linearly."""
        beat = np.asarray(beat, dtype=np.float64)
        whole = np.floor(beat)
        frac = np.interp(beat - whole, [0.0, 0.5, 1.0], [0.0, 0.5 + self.swing / 6.0, 1.0])
        out = (whole + frac) * self.beat_s
        return float(out) if out.ndim == 0 else out

    def sample(self, beat: float) -> int:
        return int(round(self.seconds(beat) * self.sr))

    def chord_at(self, beat: float) -> Chord:
        i = int(beat // self.chords[0].beats)
        return self.chords[min(max(i, 0), len(self.chords) - 1)]


def make_score(
    band: BandStyle, rng: np.random.Generator, *, sr: int, n: int, key_offset: int
) -> Score:
    """Draw the song's tempo (+-4 %) and progression, and lay chords over the whole song."""
    bpm = band.bpm * rng.uniform(0.96, 1.04)
    beat_s = 60.0 / bpm
    progression = band.progressions[rng.integers(len(band.progressions))]
    tonic = band.tonic_midi + key_offset
    n_chords = int(np.ceil(n / sr / beat_s / band.chord_beats)) + 1
    chords = tuple(
        Chord(
            start_beat=i * band.chord_beats,
            beats=band.chord_beats,
            root_midi=tonic + progression[i % len(progression)][0],
            intervals=CHORDS[progression[i % len(progression)][1]],
        )
        for i in range(n_chords)
    )
    return Score(sr=sr, n=n, beat_s=beat_s, swing=band.swing, tonic_midi=tonic, chords=chords)
