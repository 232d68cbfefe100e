"""The sung vocal line of a synthetic song: melody, pitch track, glottal source, formants, effects.

Pipeline (all vectorised over whole notes or the whole track):

1. :func:`shared_data.corpus.melody.compose_melody` writes phrases of notes (one syllable each)
   on the song's beat grid, with a genre-specific rhythm and contour, rests and breaths between
   phrases.
2. :func:`pitch_track` turns the notes into a continuous MIDI-pitch curve: portamento, scoops,
   falls, speech glides, delayed vibrato, slow drift and fast jitter.
3. :func:`glottal_source` integrates the pitch into a phase and evaluates the derivative of a
   Rosenberg glottal pulse on it (a band-limited closure via polyBLEP), with shimmer, growl,
   spectral tilt and phase-gated aspiration noise.
4. :func:`render_vocals` cuts the source into syllables, shapes each with an envelope, filters it by
   its vowel's formant cascade, adds consonant noise bursts and breaths, then applies the genre's
   effects (saturation, chorus double, echo, reverb) to give a stereo stem, roughly centred.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import signal

from shared_data.corpus import dsp
from shared_data.corpus.melody import VocalNote, compose_melody
from shared_data.corpus.score import Score
from shared_data.corpus.styles import VoiceStyle

#: Formant frequencies (Hz) of an adult male voice, F1..F5, after Peterson & Barney / Klatt.
VOWELS: dict[str, tuple[float, ...]] = {
    "a": (730.0, 1090.0, 2440.0, 3400.0, 4500.0),
    "e": (530.0, 1840.0, 2480.0, 3400.0, 4500.0),
    "i": (300.0, 2250.0, 3000.0, 3600.0, 4500.0),
    "o": (500.0, 850.0, 2450.0, 3400.0, 4500.0),
    "u": (330.0, 880.0, 2250.0, 3400.0, 4500.0),
}
FORMANT_BANDWIDTHS = (80.0, 100.0, 130.0, 180.0, 250.0)

#: Consonants: (kind, noise band in Hz, duration in s, level relative to the vowel).
CONSONANTS: dict[str, tuple[str, tuple[float, float], float, float]] = {
    "s": ("fricative", (4500.0, 10000.0), 0.075, 0.45),
    "sh": ("fricative", (2000.0, 6000.0), 0.08, 0.45),
    "f": ("fricative", (1200.0, 9000.0), 0.06, 0.2),
    "t": ("plosive", (3000.0, 8000.0), 0.03, 0.6),
    "k": ("plosive", (1500.0, 4000.0), 0.035, 0.55),
    "p": ("plosive", (300.0, 2000.0), 0.025, 0.5),
    "d": ("plosive", (2500.0, 6000.0), 0.015, 0.35),
    "b": ("plosive", (200.0, 1500.0), 0.015, 0.35),
    "m": ("nasal", (250.0, 1000.0), 0.06, 0.3),
    "n": ("nasal", (250.0, 1800.0), 0.055, 0.3),
    "l": ("nasal", (350.0, 1300.0), 0.045, 0.35),
}


# ---------------------------------------------------------------------------------------------
# pitch and source


CONTROL_DECIMATION = 32  # pitch curves are computed at sr / 32 (~1.4 kHz), then interpolated


def pitch_track(
    notes: list[VocalNote], style: VoiceStyle, score: Score, rng: np.random.Generator
) -> np.ndarray:
    """Continuous pitch in (fractional) MIDI numbers, held through rests, at the control rate
    ``sr / CONTROL_DECIMATION``: ``[n // CONTROL_DECIMATION + 2]`` float64, point ``i`` at sample
    ``i * CONTROL_DECIMATION``.

    Pitch moves at most at vibrato speed (~7 Hz), so the control rate loses nothing and keeps the
    per-note work small.
    """
    q = CONTROL_DECIMATION
    sr, n = score.sr / q, score.n // q + 2
    starts = np.array([int(note.start_s * sr) for note in notes])
    midis = np.array([note.midi for note in notes], dtype=np.float64)
    keep = starts < n
    starts, midis = starts[keep], midis[keep]
    bounds = np.append(starts, n)
    bounds[0] = 0  # the first pitch also covers the lead-in
    target = np.repeat(midis, np.diff(bounds))
    coef = np.exp(-1.0 / (max(style.portamento_s, 1e-4) * sr))
    track = dsp.one_pole_lowpass(target, coef)
    track[: starts[0] + 1] = midis[0]  # no glide up from silence at the very start

    vib_depth = np.zeros(n)
    for note, s in zip(notes, starts, strict=False):
        e = min(s + int(note.dur_s * style.legato * sr), n)
        if style.scoop_st and rng.random() < 0.7:
            g = min(int(0.09 * sr), e - s)
            ramp = 1.0 - np.arange(g) / max(g, 1)
            track[s : s + g] -= style.scoop_st * ramp**2
        if style.fall_st and note.dur_s > 0.4 and rng.random() < 0.6:
            g = min(int(0.16 * sr), e - s)
            track[e - g : e] -= style.fall_st * (np.arange(g) / max(g, 1)) ** 2
        if style.glide_st:
            track[s:e] += style.glide_st * (np.arange(e - s) / max(e - s, 1) - 0.3)
        d0 = s + int(style.vibrato_delay_s * sr)
        if style.vibrato_cents and d0 < e:
            vib_depth[d0:e] = np.minimum(np.arange(e - d0) / (0.25 * sr), 1.0)

    if style.vibrato_cents:
        rate = style.vibrato_hz * rng.uniform(0.93, 1.07)
        depth = style.vibrato_cents * rng.uniform(0.85, 1.15) / 100.0
        inst_rate = rate * (1.0 + 0.04 * dsp.smooth_noise(rng, n, sr, 2.0))
        phase = 2.0 * np.pi * dsp.phase_cycles(inst_rate, n, sr, rng.uniform())
        track += depth * vib_depth * np.sin(phase)
    if style.drift_cents:
        track += style.drift_cents / 100.0 * dsp.smooth_noise(rng, n, sr, 3.0)
        track += 0.03 * dsp.smooth_noise(rng, n, sr, 40.0)  # fast jitter, ~3 cents
    return track


GLOTTAL_BITS = 14
GLOTTAL_TABLE = 1 << GLOTTAL_BITS  # samples per period of the tabulated glottal pulse


@functools.lru_cache(maxsize=16)
def glottal_table(open_quotient: float) -> np.ndarray:
    """One period ``[GLOTTAL_TABLE]`` float32 of the derivative of a Rosenberg glottal pulse.

    The glottis opens for 65 % of the open phase (``open_quotient`` of the period; a half sine
    period of the flow) and closes for 35 % (a quarter period), then stays shut. Scaled so the
    abrupt closure, the main excitation, is a step from -1 to 0.
    """
    frac = np.arange(GLOTTAL_TABLE) / GLOTTAL_TABLE
    tp, tn = 0.65 * open_quotient, 0.35 * open_quotient
    opening = frac < tp
    closing = ~opening & (frac < open_quotient)
    out = np.zeros(GLOTTAL_TABLE)
    out[opening] = tn / tp * np.sin(np.pi * frac[opening] / tp)
    out[closing] = -np.sin(0.5 * np.pi * (frac[closing] - tp) / tn)
    return out.astype(np.float32)


def glottal_source(
    f0_ctrl: np.ndarray, n: int, style: VoiceStyle, sr: int, rng: np.random.Generator
) -> np.ndarray:
    """A pulse train ``[n]`` float32 at the control-rate pitch ``f0_ctrl`` (Hz, one point every
    ``CONTROL_DECIMATION`` samples): the tabulated Rosenberg derivative read at the running phase.

    The closure step is band-limited with polyBLEP (the two samples around it are corrected),
    which removes most of its aliasing. Adds shimmer (random per-period amplitude), growl
    (alternate periods louder: a subharmonic rasp), spectral tilt and aspiration noise gated by
    the open phase.
    """
    q = CONTROL_DECIMATION
    # phase at the control points (trapezoid rule), then linear in between: the pitch is
    # piecewise constant over 0.7-ms steps, far finer than any pitch movement
    steps = 0.5 * (f0_ctrl[1:] + f0_ctrl[:-1]) * (q / sr)
    phase_ctrl = 0.25 + np.concatenate([[0.0], np.cumsum(steps)])
    phase = np.interp(np.arange(n, dtype=np.float64), q * np.arange(f0_ctrl.size), phase_ctrl)
    pos = (phase * GLOTTAL_TABLE).astype(np.int64)
    period = pos >> GLOTTAL_BITS
    idx = pos & (GLOTTAL_TABLE - 1)
    src = glottal_table(style.open_quotient)[idx]

    oq = style.open_quotient
    d_max = float(f0_ctrl.max()) / sr * GLOTTAL_TABLE  # table steps per sample, at most
    near = np.nonzero(np.abs(idx - oq * GLOTTAL_TABLE) < d_max)[0]
    near = near[(near > 0) & (near < n - 1)]
    dt = 0.5 * (phase[near + 1] - phase[near - 1])  # this sample's phase increment
    x = (phase[near] - period[near] - oq) / dt
    xa = np.clip(x, -1.0, 1.0)
    blep = np.where(xa >= 0.0, 0.5 * (2.0 * xa - xa**2 - 1.0), 0.5 * (xa**2 + 2.0 * xa + 1.0))
    src[near] += blep.astype(np.float32)

    per_period = 1.0 + style.shimmer * rng.standard_normal(int(period[-1]) + 2)
    per_period[::2] *= 1.0 + style.growl
    src *= per_period.astype(np.float32)[period]
    src = dsp.one_pole_lowpass(src, style.tilt).astype(np.float32)
    if style.breathiness:
        # differenced white noise: a cheap +6 dB/octave (high-frequency) aspiration
        noise = np.diff(rng.standard_normal(n + 1, dtype=np.float32))
        noise *= np.where(idx < oq * GLOTTAL_TABLE, np.float32(1.0), np.float32(0.35))
        src += np.float32(style.breathiness * dsp.rms(src) / dsp.rms(noise)) * noise
    return src


# ---------------------------------------------------------------------------------------------
# syllables and effects


def vowel_filters(style: VoiceStyle, centre_hz: float, sr: int) -> dict[str, np.ndarray]:
    """The formant cascade ``[k, 6]`` (second-order sections) of each vowel the genre sings.

    High voices raise F1 above the pitch, as trained singers do (formant tuning)."""
    out = {}
    for vowel in style.vowels:
        freqs = [f * style.formant_shift for f in VOWELS[vowel]]
        freqs[0] = max(freqs[0], 1.1 * centre_hz)
        freqs[1] = max(freqs[1], freqs[0] + 250.0)
        sections = [
            dsp.resonator_sos(f, b, sr) for f, b in zip(freqs, FORMANT_BANDWIDTHS, strict=True)
        ]
        sections += [dsp.resonator_sos(f, b, sr) for f, b in style.extra_formants]
        out[vowel] = np.stack(sections)
    return out


def _consonant_noise(rng: np.random.Generator, sr: int) -> dict[str, np.ndarray]:
    """Per consonant, 0.5 s of band-limited noise (unit RMS) to cut bursts from."""
    out = {}
    for name, (_, band, _, _) in CONSONANTS.items():
        noise = dsp.filt(rng.standard_normal(sr // 2), "bandpass", band, sr, order=3)
        out[name] = noise / dsp.rms(noise)
    return out


def _syllables(
    notes: list[VocalNote],
    style: VoiceStyle,
    src: np.ndarray,
    sr: int,
    centre_hz: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Formant-filtered vowels ``[n]`` and unvoiced consonants/breaths ``[n]`` (unscaled)."""
    n = src.shape[0]
    filters = vowel_filters(style, centre_hz, sr)
    nasal = np.stack([dsp.resonator_sos(260.0, 80.0, sr), dsp.resonator_sos(2300.0, 300.0, sr)])
    noises = _consonant_noise(rng, sr)
    breath_noise = dsp.filt(rng.standard_normal(sr), "bandpass", (400.0, 2000.0), sr)
    breath_noise /= dsp.rms(breath_noise)
    ring = int(0.03 * sr)
    voiced = np.zeros(n)
    unvoiced = np.zeros(n)
    prev_end = 0
    for note in notes:
        s = int(note.start_s * sr)
        if s >= n:
            break
        note_n = int(note.dur_s * style.legato * sr)
        if note.phrase_start and s - prev_end > int(0.25 * sr):
            # an audible in-breath in the rest before the phrase
            b_len = min(int(0.3 * sr), s - prev_end - int(0.05 * sr))
            b0 = s - b_len - int(0.04 * sr)
            unvoiced[b0 : b0 + b_len] += 0.03 * breath_noise[:b_len] * np.hanning(b_len)
        onset = 0
        if note.consonant is not None:
            kind, _, dur, level = CONSONANTS[note.consonant]
            c_n = min(int(dur * sr), int(0.4 * note_n), n - s)
            if c_n > 8:
                if kind == "nasal":  # voiced murmur through a nasal resonance
                    env = dsp.ar_envelope(c_n, sr, 0.01, c_n, 0.0)
                    burst = signal.sosfilt(nasal, src[s : s + c_n] * env) * level
                    voiced[s : s + c_n] += burst
                else:
                    attack = 0.002 if kind == "plosive" else 0.02
                    tau = dur / (3.0 if kind == "plosive" else 1.5)
                    env = dsp.perc_envelope(c_n, sr, attack, tau)
                    off = int(rng.integers(0, noises[note.consonant].shape[0] - c_n))
                    unvoiced[s : s + c_n] += level * env * noises[note.consonant][off : off + c_n]
                onset = int(0.7 * c_n)
        v0 = s + onset
        v_n = max(note_n - onset, int(0.02 * sr))
        e = min(v0 + v_n + int(style.release_s * sr) + ring, n)
        if e <= v0:
            continue
        env = dsp.ar_envelope(e - v0, sr, style.attack_s, v_n, style.release_s)
        accent = 1.0 if note.phrase_start else rng.uniform(0.75, 1.0)
        voiced[v0:e] += signal.sosfilt(filters[note.vowel], src[v0:e] * env * accent)
        prev_end = v0 + v_n
    return voiced, unvoiced


def render_vocals(style: VoiceStyle, score: Score, rng: np.random.Generator) -> np.ndarray:
    """The vocal stem ``[2, n]`` float64 (unit-ish RMS; the mixer sets the final level).

    The singer keeps the genre's register whatever the song's key (+-1 semitone per song), as
    songs are transposed to suit singers; the melody follows the key. A song too short to reach
    the first syllable (under half a beat) has a silent vocal stem.
    """
    sr = score.sr
    centre = style.register_midi + int(rng.integers(-1, 2))
    notes = compose_melody(style, score, rng, centre)
    if not notes:
        return np.zeros((2, score.n))
    f0_ctrl = dsp.midi_to_hz(pitch_track(notes, style, score, rng))
    src = glottal_source(f0_ctrl, score.n, style, sr, rng)
    centre_hz = float(dsp.midi_to_hz(centre))
    voiced, unvoiced = _syllables(notes, style, src, sr, centre_hz, rng)
    level = dsp.rms(voiced[np.abs(voiced) > 1e-3 * np.max(np.abs(voiced))])
    dry = voiced / (level or 1.0) + 0.5 * unvoiced
    if style.drive:
        dry = dsp.filt(dsp.saturate(0.6 * dry, style.drive) / 0.6, "lowpass", 7000.0, sr)
    # the vocal chain's EQ, after the saturation's low intermodulation products
    low, high = style.eq_hz
    dry = dsp.filt(dry, "highpass", low, sr, order=4)
    if high:
        dry = dsp.filt(dry, "lowpass", high, sr, order=4)
    out = dsp.pan(dry, 0.0)
    if style.chorus:
        out += style.chorus / np.sqrt(2.0) * dsp.chorus(dry, sr, rng)
    if style.echo:
        wet = style.echo / np.sqrt(2.0) * dsp.echo(dry, sr, style.echo_beats * score.beat_s, 0.5)
        out[0] += wet
        out[1] += dsp.delayed(wet, int(0.011 * sr))  # a little spread between the repeats
    if style.reverb_wet:
        ir = dsp.reverb_ir(rng, style.reverb_s, sr)
        out += style.reverb_wet * dsp.reverb(dry, ir)
    return out
