"""The drum stem of a synthetic song: a kit synthesised once per song, placed on the step grid.

Each voice (kick, snare, hats, ...) is a short synthesised sample (:data:`DRUM_VOICES`); its
pattern is looped over the song with humanised timing and velocity, then panned in the kit
(:data:`DRUM_PLACEMENT`). :mod:`shared_data.corpus.band` mixes it with the bass and chords.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from shared_data.corpus import dsp
from shared_data.corpus.score import Score
from shared_data.corpus.styles import BandStyle

VELOCITY = {"X": 1.0, "x": 0.85, "o": 0.6, "-": 0.3}

# (pan position, level) of each drum voice in the kit
DRUM_PLACEMENT = {
    "kick": (0.0, 1.0),
    "snare": (0.05, 0.8),
    "clap": (0.0, 0.7),
    "rim": (0.2, 0.5),
    "brush": (0.1, 0.35),
    "hat": (0.35, 0.3),
    "openhat": (0.35, 0.3),
    "ride": (-0.35, 0.3),
    "crash": (-0.45, 0.35),
    "timpani": (-0.2, 0.8),
}

# kick: (start Hz, end Hz, sweep s, decay s, click level, drive)
KICKS = {
    "acoustic": (110.0, 50.0, 0.03, 0.18, 0.3, 0.0),
    "808": (62.0, 44.0, 0.06, 0.6, 0.1, 1.5),
    "electro": (150.0, 52.0, 0.02, 0.22, 0.4, 0.0),
    "metal": (130.0, 55.0, 0.012, 0.1, 0.8, 0.0),
    "jazz": (90.0, 60.0, 0.03, 0.25, 0.1, 0.0),
    "orchestral": (90.0, 60.0, 0.03, 0.25, 0.1, 0.0),
}


# ---------------------------------------------------------------------------------------------
# drums


def _noise(rng: np.random.Generator, seconds: float, sr: int) -> np.ndarray:
    return rng.standard_normal(int(seconds * sr))


def _metallic(rng: np.random.Generator, seconds: float, sr: int) -> np.ndarray:
    """Inharmonic square-wave cluster (the 808/cymbal recipe), band-passed to 3-10 kHz."""
    n = int(seconds * sr)
    t = np.arange(n) / sr
    freqs = np.array([205.3, 304.4, 369.6, 522.7, 540.0, 800.0]) * rng.uniform(0.95, 1.05)
    cluster = np.sign(np.sin(2.0 * np.pi * freqs[:, None] * t)).sum(axis=0)
    return dsp.filt(cluster, "bandpass", (3000.0, 10000.0), sr)


def _env(sr: int, seconds: float, attack: float, tau: float) -> np.ndarray:
    return dsp.perc_envelope(int(seconds * sr), sr, attack, tau)


def _kick(kit: str, tune: float, rng: np.random.Generator, sr: int) -> np.ndarray:
    f_hi, f_lo, sweep, decay, click, drive = KICKS[kit]
    n = int(decay * 5 * sr)
    t = np.arange(n) / sr
    freq = tune * (f_lo + (f_hi - f_lo) * np.exp(-t / sweep))
    kick = np.sin(2.0 * np.pi * dsp.phase_cycles(freq, n, sr)) * _env(sr, decay * 5, 0.001, decay)
    c = int(0.004 * sr)
    kick[:c] += click * dsp.filt(_noise(rng, 0.004, sr), "highpass", 1500.0, sr) * np.hanning(c)
    return dsp.saturate(kick, drive)


def _snare(kit: str, tune: float, rng: np.random.Generator, sr: int) -> np.ndarray:
    decay = 0.15 if kit == "metal" else 0.12
    noise = dsp.filt(_noise(rng, 0.5, sr), "bandpass", (1500.0, 8000.0), sr)
    tone = np.sin(2 * np.pi * 190.0 * tune * np.arange(noise.size) / sr)
    return noise * _env(sr, 0.5, 0.001, decay) + 0.6 * tone * _env(sr, 0.5, 0.001, 0.06)


def _clap(kit: str, tune: float, rng: np.random.Generator, sr: int) -> np.ndarray:
    bursts = sum(dsp.delayed(_env(sr, 0.4, 0.0005, 0.006), int(d * sr)) for d in (0, 0.011, 0.022))
    tail = dsp.delayed(_env(sr, 0.4, 0.001, 0.08), int(0.03 * sr))
    return dsp.filt(_noise(rng, 0.4, sr), "bandpass", (900.0, 3000.0), sr) * (bursts + tail)


def _rim(kit: str, tune: float, rng: np.random.Generator, sr: int) -> np.ndarray:
    click = dsp.filt(_noise(rng, 0.1, sr), "bandpass", (2000.0, 6000.0), sr)
    tone = np.sin(2 * np.pi * 1700.0 * tune * np.arange(click.size) / sr)
    return tone * _env(sr, 0.1, 0.0005, 0.01) + click * _env(sr, 0.1, 0.0005, 0.008)


def _brush(kit: str, tune: float, rng: np.random.Generator, sr: int) -> np.ndarray:
    noise = dsp.filt(_noise(rng, 0.4, sr), "bandpass", (800.0, 6000.0), sr)
    return noise * _env(sr, 0.4, 0.03, 0.1)


def _hat(kit: str, tune: float, rng: np.random.Generator, sr: int, decay: float = 0.03):
    noise = dsp.filt(_noise(rng, 0.8, sr), "highpass", 7000.0, sr, order=4)
    return (noise + 0.3 * _metallic(rng, 0.8, sr)) * _env(sr, 0.8, 0.001, decay)


def _openhat(kit: str, tune: float, rng: np.random.Generator, sr: int) -> np.ndarray:
    return _hat(kit, tune, rng, sr, decay=0.22)


def _ride(kit: str, tune: float, rng: np.random.Generator, sr: int) -> np.ndarray:
    wash = _metallic(rng, 1.5, sr) + 0.2 * dsp.filt(_noise(rng, 1.5, sr), "highpass", 5000.0, sr)
    bell = np.sin(2 * np.pi * 4900.0 * tune * np.arange(wash.size) / sr)
    return wash * _env(sr, 1.5, 0.001, 0.5) + 0.3 * bell * _env(sr, 1.5, 0.001, 0.4)


def _crash(kit: str, tune: float, rng: np.random.Generator, sr: int) -> np.ndarray:
    noise = dsp.filt(_noise(rng, 2.0, sr), "highpass", 3500.0, sr)
    return (noise + 0.5 * _metallic(rng, 2.0, sr)) * _env(sr, 2.0, 0.002, 0.7)


def _timpani(kit: str, tune: float, rng: np.random.Generator, sr: int) -> np.ndarray:
    t = np.arange(int(1.5 * sr)) / sr
    drum = np.sin(2 * np.pi * 98.0 * tune * t) + 0.4 * np.sin(2 * np.pi * 147.0 * tune * t)
    thud = dsp.filt(_noise(rng, 1.5, sr), "lowpass", 400.0, sr) * _env(sr, 1.5, 0.001, 0.04)
    return drum * _env(sr, 1.5, 0.003, 0.6) + thud


DRUM_VOICES = {
    "kick": _kick,
    "snare": _snare,
    "clap": _clap,
    "rim": _rim,
    "brush": _brush,
    "hat": _hat,
    "openhat": _openhat,
    "ride": _ride,
    "crash": _crash,
    "timpani": _timpani,
}


def make_kit(
    kit: str, voices: Sequence[str], rng: np.random.Generator, sr: int
) -> dict[str, np.ndarray]:
    """One-shot samples ``name -> [m]`` float64 (peak 1) of the drum ``voices`` a genre plays,
    tuned slightly per song."""
    tune = rng.uniform(0.95, 1.05)
    samples = {name: DRUM_VOICES[name](kit, tune, rng, sr) for name in voices}
    return {name: s / np.max(np.abs(s)) for name, s in samples.items()}


def place(out: np.ndarray, sample: np.ndarray, start: int, gain: float) -> None:
    """Add ``gain * sample`` into ``out`` ([n]) at ``start``, clipped at both ends."""
    n = out.shape[0]
    if start >= n:
        return
    skip = max(0, -start)
    start = max(start, 0)
    m = min(sample.shape[0] - skip, n - start)
    if m > 0:
        out[start : start + m] += gain * sample[skip : skip + m]


def render_drums(band: BandStyle, score: Score, rng: np.random.Generator) -> np.ndarray:
    """The drum stem ``[2, n]``: every voice's pattern looped over the song, humanised."""
    sr, n = score.sr, score.n
    kit = make_kit(band.kit, [voice for voice, _ in band.drums], rng, sr)
    out = np.zeros((2, n))
    total_steps = int(np.ceil(score.n_beats * 4)) + 1
    for voice, pattern in band.drums:
        track = np.zeros(n)
        steps = np.arange(total_steps)
        chars = np.array(list(pattern))[steps % len(pattern)]
        vel = np.array([VELOCITY.get(c, 0.0) for c in chars])
        hits = np.nonzero(vel)[0]
        times = score.seconds(hits / 4.0) + rng.normal(0.0, band.humanize_ms / 1000.0, hits.size)
        gains = vel[hits] * rng.uniform(0.9, 1.0, hits.size)
        for t, g in zip(times, gains, strict=True):
            place(track, kit[voice], int(round(t * sr)), g)
        position, level = DRUM_PLACEMENT[voice]
        out += level * dsp.pan(track, position)
    return out
