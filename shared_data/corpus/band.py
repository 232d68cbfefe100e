"""The accompaniment of a synthetic song: drums, bass and chords, mixed to a stereo stem.

Drums come from :mod:`shared_data.corpus.drums` (synthesised once per song, placed on the step
grid); bass and chord notes are
wavetable oscillators (band-limited by construction) with per-note envelopes, and each part gets its
genre's track treatment (tremolo, saturation, sidechain pumping, chorus) before panning.
"""

from __future__ import annotations

import numpy as np

from shared_data.corpus import dsp
from shared_data.corpus.drums import place, render_drums
from shared_data.corpus.score import Chord, Score
from shared_data.corpus.styles import BandStyle

# ---------------------------------------------------------------------------------------------
# bass


def _bass_root(chord: Chord, tonic: int) -> int:
    root = chord.root_midi
    while root > tonic + 7:
        root -= 12
    return root


def _bass_bar(pattern: str, chord: Chord, next_chord: Chord, tonic: int, rng) -> list[tuple]:
    """Notes ``(beat offset, beats, midi, velocity)`` of one chord-long bar of a bass pattern."""
    r = _bass_root(chord, tonic)
    third = chord.intervals[1]
    if pattern == "boogie":  # blues shuffle: root-3-5-6-b7-6-5-3 on swung eighths
        degs = (0, third, 7, 9, 10, 9, 7, third)
        return [(0.5 * i, 0.45, r + d, 0.9 if i % 2 == 0 else 0.7) for i, d in enumerate(degs)]
    if pattern == "pizz":
        return [(0.0, 0.6, r, 0.9), (2.0, 0.6, r + 7, 0.7)]
    if pattern == "rootfifth":  # country boom-chick
        return [(0.0, 0.9, r, 0.95), (2.0, 0.9, r - 5, 0.8)]
    if pattern == "octave":  # disco octave jumps
        return [(0.5 * i, 0.4, r + 12 * (i % 2), 0.9 if i % 2 == 0 else 0.75) for i in range(8)]
    if pattern == "sub":  # 808 on the kick steps
        return [(0.0, 1.6, r, 1.0), (1.75, 0.7, r, 0.85), (2.5, 1.4, r + 7 - 12, 0.9)]
    if pattern == "walking":  # quarter notes, chromatic approach into the next root
        nxt = _bass_root(next_chord, tonic)
        second = r + int(rng.choice((third, 7, 2)))
        third_note = r + int(rng.choice((7, 12, third + 12, 5)))
        approach = nxt + int(rng.choice((-1, 1)))
        return [(float(i), 0.95, m, 0.9) for i, m in enumerate((r, second, third_note, approach))]
    if pattern == "root16":  # metal chug: sixteenth notes, accents on the beat
        return [(0.25 * i, 0.2, r, 1.0 if i % 4 == 0 else 0.75) for i in range(16)]
    if pattern == "pop8":
        return [(0.5 * i, 0.45, r + (12 if i == 7 else 0), 0.85) for i in range(8)]
    if pattern == "reggae":  # one drop: the downbeat is left empty
        degs = ((0.5, 0.45, 0), (1.0, 0.45, 7), (1.5, 0.9, 12), (2.5, 0.45, 7), (3.0, 0.45, 4),
                (3.5, 0.45, 2))  # fmt: skip
        return [(b, d, r + x, 0.9) for b, d, x in degs]
    if pattern == "root8":
        return [(0.5 * i, 0.45, r, 0.9 if i % 2 == 0 else 0.75) for i in range(8)]
    raise ValueError(f"unknown bass pattern {pattern!r}")


def _profile(timbre: str, k: np.ndarray, f0: float) -> np.ndarray:
    """Harmonic amplitudes ``[K]`` (harmonics ``k`` = 1..K) of an instrument at pitch ``f0``."""
    if timbre == "finger":
        return k**-1.6
    if timbre == "cello":
        return k**-1.2 * np.exp(-k * f0 / 2500.0)
    if timbre == "upright":
        return np.exp(-0.75 * (k - 1))
    if timbre in ("synth", "drive", "distgtr"):
        return 1.0 / k
    if timbre == "sub":
        return np.where(k == 1, 1.0, np.where(k == 2, 0.12, 0.0))
    if timbre == "organ":
        drawbars = {1: 1.0, 2: 0.7, 3: 0.45, 4: 0.35, 6: 0.25, 8: 0.2}
        return np.array([drawbars.get(int(i), 0.0) for i in k])
    if timbre == "epiano":  # a sine-like tine with a little body
        amps = np.zeros_like(k)
        base = (1.0, 0.28, 0.07, 0.05)
        amps[: min(len(k), 4)] = base[: min(len(k), 4)]
        return amps
    if timbre == "strings":
        return 1.0 / k * np.exp(-k * f0 / 3500.0)
    if timbre == "acoustic":
        return k**-1.5 * np.exp(-k * f0 / 6000.0)
    if timbre == "synthpluck":
        return 1.0 / k * np.exp(-k * f0 / 4000.0)
    raise ValueError(f"unknown timbre {timbre!r}")


# timbre -> (attack s, decay tau s or 0 for sustained, release s)
ENVELOPES = {
    "finger": (0.005, 0.8, 0.04),
    "cello": (0.003, 0.35, 0.05),
    "upright": (0.003, 0.45, 0.05),
    "synth": (0.003, 0.0, 0.03),
    "drive": (0.003, 0.0, 0.03),
    "sub": (0.005, 1.2, 0.06),
    "organ": (0.008, 0.0, 0.05),
    "epiano": (0.003, 1.0, 0.12),
    "strings": (0.18, 0.0, 0.25),
    "acoustic": (0.002, 0.6, 0.08),
    "synthpluck": (0.002, 0.18, 0.05),
    "distgtr": (0.003, 0.0, 0.04),
}


class _Voices:
    """Wavetable note renderer with a per-song cache of tables by (timbre, MIDI note)."""

    def __init__(self, sr: int):
        self.sr = sr
        self.tables: dict[tuple[str, int], np.ndarray] = {}

    def table(self, timbre: str, midi: int) -> np.ndarray:
        key = (timbre, midi)
        if key not in self.tables:
            f0 = float(dsp.midi_to_hz(midi))
            k = np.arange(1, dsp.harmonic_count(f0, self.sr) + 1, dtype=np.float64)
            self.tables[key] = dsp.wavetable(_profile(timbre, k, f0))
        return self.tables[key]

    def note(self, timbre: str, midi: int, seconds: float, rng, *, attack=None, release=None):
        """One note ``[m]``: ``seconds`` held plus the release tail."""
        att, tau, rel = ENVELOPES[timbre]
        att = att if attack is None else attack
        rel = rel if release is None else release
        hold = int(seconds * self.sr)
        m = hold + int(rel * self.sr)
        f0 = float(dsp.midi_to_hz(midi))
        y = dsp.table_osc(self.table(timbre, midi), dsp.phase_cycles(f0, m, self.sr, rng.random()))
        env = dsp.ar_envelope(m, self.sr, att, hold, rel)
        if tau:
            env *= np.exp(-np.arange(m) / (tau * self.sr))
        return y * env


def render_bass(band: BandStyle, score: Score, rng: np.random.Generator) -> np.ndarray:
    """The bass part ``[2, n]``, centred."""
    sr, n = score.sr, score.n
    voices = _Voices(sr)
    track = np.zeros(n)
    for i, chord in enumerate(score.chords[:-1]):
        nxt = score.chords[i + 1]
        bar = _bass_bar(band.bass_pattern, chord, nxt, score.tonic_midi, rng)
        for off, beats, midi, vel in bar:
            b = chord.start_beat + off
            t0 = score.seconds(b) + rng.normal(0.0, band.humanize_ms / 1000.0)
            dur = score.seconds(b + beats) - score.seconds(b)
            note = voices.note(band.bass_timbre, midi, dur, rng)
            place(track, note, int(round(t0 * sr)), vel)
    if band.bass_timbre == "drive":
        track = dsp.filt(dsp.saturate(track, 3.0), "lowpass", 2500.0, sr)
    elif band.bass_timbre in ("finger", "synth"):
        track = dsp.filt(track, "lowpass", 1400.0, sr)
    elif band.bass_timbre == "sub":
        track = dsp.saturate(track, 1.2)
    return dsp.pan(track, 0.0)


# ---------------------------------------------------------------------------------------------
# chords


def _rhythm(name: str, chord_beats: float, rng) -> list[tuple[float, float, float, int]]:
    """Chord hits ``(beat offset, beats, velocity, strum direction)`` within one chord."""
    if name in ("pad", "swell"):
        return [(0.0, chord_beats, 0.8, 0)]
    if name == "strum":  # D . D U . U D U
        pos = ((0.0, 1), (1.0, 1), (1.5, -1), (2.5, -1), (3.0, 1), (3.5, -1))
        return [(b, 0.5, 0.9 if d > 0 else 0.6, d) for b, d in pos]
    if name == "stabs":
        return [(b + 0.5, 0.3, 0.8, 0) for b in range(int(chord_beats))]
    if name == "skank":
        return [(b + 0.5, 0.2, 0.8, 0) for b in range(int(chord_beats))]
    if name == "comp":  # Charleston with an occasional extra push
        hits = [(0.0, 0.6, 0.8, 0), (1.5, 0.5, 0.7, 0)]
        if rng.random() < 0.4:
            hits.append((float(rng.choice((2.5, 3.0))), 0.5, 0.6, 0))
        return hits
    if name == "chug":
        accents = "x.xxx.xx" * 2
        return [(0.25 * i, 0.2, 1.0 if a == "x" else 0.7, 0) for i, a in enumerate(accents)]
    if name == "pluck8":  # synth plucks on every eighth, accents on the beat
        return [(0.5 * i, 0.45, 0.9 if i % 2 == 0 else 0.6, 0) for i in range(8)]
    if name == "power8":
        return [(0.5 * i, 0.45, 0.9 if i % 2 == 0 else 0.75, 0) for i in range(8)]
    raise ValueError(f"unknown chord rhythm {name!r}")


def voicing(chord: Chord, register: tuple[int, int]) -> list[int]:
    """Fold the chord's notes into the part's register (MIDI, inclusive)."""
    lo, hi = register
    notes = []
    for iv in chord.intervals:
        m = chord.root_midi + iv
        while m < lo:
            m += 12
        while m > hi:
            m -= 12
        notes.append(m)
    return sorted(set(notes))


def render_chords(band: BandStyle, score: Score, rng: np.random.Generator) -> np.ndarray:
    """The harmony part ``[2, n]``: chord hits in the genre's rhythm, timbre and stereo image."""
    sr, n = score.sr, score.n
    voices = _Voices(sr)
    timbre = band.chord_timbre
    track = np.zeros(n)
    staccato = band.chord_rhythm in ("stabs", "skank", "chug")
    for chord in score.chords:
        notes = voicing(chord, band.chord_register)
        for off, beats, vel, direction in _rhythm(band.chord_rhythm, chord.beats, rng):
            b = chord.start_beat + off
            t0 = score.seconds(b) + rng.normal(0.0, band.humanize_ms / 1000.0)
            dur = score.seconds(b + beats) - score.seconds(b)
            order = notes if direction >= 0 else notes[::-1]
            for j, midi in enumerate(order):
                strum = j * 0.012 if direction else 0.0
                note = voices.note(
                    timbre,
                    midi,
                    max(dur - strum, 0.02),
                    rng,
                    attack=0.005 if staccato else None,
                    release=0.06 if staccato else None,
                )
                place(track, note, int(round((t0 + strum) * sr)), vel / np.sqrt(len(notes)))
    t = np.arange(n) / sr
    if timbre == "organ":  # Leslie-like tremolo
        track *= 1.0 + 0.2 * np.sin(2 * np.pi * 6.3 * t)
    elif timbre == "epiano":
        track *= 1.0 + 0.15 * np.sin(2 * np.pi * 4.0 * t)
    elif timbre == "distgtr":
        track = dsp.filt(dsp.saturate(2.5 * track, 6.0), "lowpass", 4500.0, sr)
        track = dsp.filt(track, "highpass", 90.0, sr)
    if band.sidechain:  # ducked by the kick on every beat: the pop/EDM "pumping"
        beat_pos = np.mod(t / score.beat_s, 1.0) * score.beat_s
        track *= 1.0 - band.sidechain * np.exp(-beat_pos / 0.12)
    side = 1.0 if rng.random() < 0.5 else -1.0
    if band.double_tracked:
        other = dsp.delayed(track, int(0.014 * sr))
        return dsp.pan(track, side * band.chord_pan) + dsp.pan(other, -side * band.chord_pan)
    if timbre == "strings":
        return dsp.pan(track, side * band.chord_pan) + 0.7 * dsp.chorus(track, sr, rng)
    haas = 0.35 * dsp.delayed(track, int(0.012 * sr))
    return dsp.pan(track, side * band.chord_pan) + dsp.pan(haas, -side * band.chord_pan)


def render_band(band: BandStyle, score: Score, rng: np.random.Generator) -> np.ndarray:
    """The accompaniment stem ``[2, n]`` float64, parts balanced by the genre's levels."""
    parts = (render_drums(band, score, rng), render_bass(band, score, rng),
             render_chords(band, score, rng))  # fmt: skip
    out = np.zeros((2, score.n))
    for part, db in zip(parts, band.levels_db, strict=True):
        jitter = rng.uniform(-1.5, 1.5)
        out += dsp.normalise_rms(part, 10.0 ** ((db + jitter) / 20.0))
    return out
