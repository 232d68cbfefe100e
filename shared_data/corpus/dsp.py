"""DSP building blocks of the synthetic corpus: oscillators, filters, envelopes and effects.

Everything here is a pure function over whole notes or whole tracks (numpy/scipy, no per-sample
Python loops), which is what lets :mod:`shared_data.corpus.synthetic` render far faster than real
time. Signals are 1-D float64 arrays (mono) or ``[2, n]`` float64 arrays (stereo); the public API
converts to float32 once, at the end.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import signal

TABLE_SIZE = 4096  # wavetable length; a power of two so indices wrap with a bit mask
REVERB_DECIMATION = 4  # reverb tails run at sr / 4: rooms absorb the highs anyway


def wavetable(harmonic_amps: np.ndarray) -> np.ndarray:
    """One period of a waveform with the given sine-phase harmonic amplitudes.

    Args:
        harmonic_amps: ``[k]`` amplitudes of harmonics 1..k (k < TABLE_SIZE / 2).

    Returns:
        ``[TABLE_SIZE]`` float64 table; an inverse real FFT, so it is band-limited by construction.
    """
    spec = np.zeros(TABLE_SIZE // 2 + 1, dtype=np.complex128)
    spec[1 : len(harmonic_amps) + 1] = -0.5j * TABLE_SIZE * np.asarray(harmonic_amps)
    return np.fft.irfft(spec, TABLE_SIZE)


def harmonic_count(freq_hz: float, sr: int, cap: int = 64) -> int:
    """How many harmonics of ``freq_hz`` stay below 0.45 * sr (so wavetables never alias)."""
    return int(max(1, min(cap, (0.45 * sr) // max(freq_hz, 1.0))))


def phase_cycles(freq_hz: float | np.ndarray, n: int, sr: int, phase0: float = 0.0) -> np.ndarray:
    """Running phase in cycles ``[n]`` float64 of an oscillator at a fixed or time-varying pitch.

    A time-varying ``freq_hz`` (``[n]``) is integrated with a cumulative sum, so glides, vibrato and
    slides stay phase-continuous.
    """
    if np.ndim(freq_hz) == 0:
        return phase0 + float(freq_hz) / sr * np.arange(n)
    return phase0 + (np.cumsum(freq_hz) - freq_hz[0]) / sr


def table_osc(table: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """Read a wavetable at phases given in cycles (non-negative). Returns ``[len(phase)]``."""
    idx = (phase * TABLE_SIZE).astype(np.int64) & (TABLE_SIZE - 1)
    return table[idx]


def midi_to_hz(midi: float | np.ndarray) -> float | np.ndarray:
    """Equal-tempered frequency of a (fractional) MIDI note number, A4 = 69 = 440 Hz."""
    return 440.0 * 2.0 ** ((np.asarray(midi) - 69.0) / 12.0)


def ar_envelope(n: int, sr: int, attack_s: float, hold_n: int, release_s: float) -> np.ndarray:
    """Attack-hold-release envelope ``[n]``: linear attack, flat until ``hold_n``, linear fall."""
    att = max(attack_s * sr, 1.0)
    rel = max(release_s * sr, 1.0)
    env = np.ones(n)
    a = min(int(np.ceil(att)), n)
    env[:a] = np.arange(a) / att
    h = min(max(hold_n, 0), n)
    env[h:] *= np.clip(1.0 - np.arange(n - h) / rel, 0.0, 1.0)
    return env


def perc_envelope(n: int, sr: int, attack_s: float, decay_s: float) -> np.ndarray:
    """Percussive envelope ``[n]``: linear attack, then exponential decay (time constant)."""
    t = np.arange(n, dtype=np.float64) / sr
    return np.minimum(t / max(attack_s, 1.0 / sr), 1.0) * np.exp(-t / decay_s)


def resonator_sos(freq_hz: float, bandwidth_hz: float, sr: int) -> np.ndarray:
    """One formant resonator as a second-order section ``[6]`` with unity gain at DC.

    Unity DC gain (Klatt's cascade convention) means a cascade of them gives the natural relative
    formant levels without per-formant gains.
    """
    r = np.exp(-np.pi * bandwidth_hz / sr)
    a1 = -2.0 * r * np.cos(2.0 * np.pi * freq_hz / sr)
    a2 = r * r
    return np.array([1.0 + a1 + a2, 0.0, 0.0, 1.0, a1, a2])


@functools.lru_cache(maxsize=256)
def butter_sos(kind: str, cutoff_hz: float | tuple[float, float], sr: int, order: int = 2):
    """Cached Butterworth design (``kind`` is ``lowpass``, ``highpass`` or ``bandpass``)."""
    return signal.butter(order, cutoff_hz, btype=kind, fs=sr, output="sos")


def filt(x: np.ndarray, kind: str, cutoff_hz, sr: int, order: int = 2) -> np.ndarray:
    """Butterworth-filter a signal along its last axis."""
    cutoff = tuple(cutoff_hz) if np.ndim(cutoff_hz) else float(cutoff_hz)
    return signal.sosfilt(butter_sos(kind, cutoff, sr, order), x, axis=-1)


def one_pole_lowpass(x: np.ndarray, coef: float) -> np.ndarray:
    """``y[n] = (1 - c) x[n] + c y[n-1]``: gentle smoothing (pitch glides, spectral tilt)."""
    return signal.lfilter([1.0 - coef], [1.0, -coef], x)


def smooth_noise(rng: np.random.Generator, n: int, sr: int, rate_hz: float) -> np.ndarray:
    """Slowly varying random curve ``[n]`` with unit standard deviation and ~rate_hz bandwidth.

    Drawn at a low control rate and linearly interpolated up to ``sr``.
    """
    n_ctrl = int(n * rate_hz / sr) + 3
    ctrl = rng.standard_normal(n_ctrl)
    ctrl = np.convolve(ctrl, np.ones(2) / np.sqrt(2.0), mode="same")
    return np.interp(np.arange(n) * (rate_hz / sr), np.arange(n_ctrl), ctrl)


def pan(mono: np.ndarray, position: float) -> np.ndarray:
    """Constant-power pan of ``[n]`` to ``[2, n]``; position -1 is hard left, +1 hard right."""
    angle = (np.clip(position, -1.0, 1.0) + 1.0) * np.pi / 4.0
    return np.outer([np.cos(angle), np.sin(angle)], mono)


def delayed(x: np.ndarray, n_delay: int) -> np.ndarray:
    """``x`` delayed by ``n_delay`` samples along the last axis (same length, zeros shifted in)."""
    if n_delay <= 0:
        return x.copy()
    out = np.zeros_like(x)
    out[..., n_delay:] = x[..., :-n_delay]
    return out


def saturate(x: np.ndarray, drive: float) -> np.ndarray:
    """Soft clipping ``tanh(drive * x)`` normalised so small signals keep their level."""
    if drive <= 0.0:
        return x
    return np.tanh(drive * x) / drive


def chorus(x: np.ndarray, sr: int, rng: np.random.Generator, depth_ms: float = 2.5) -> np.ndarray:
    """A modulated-delay double of ``[n]`` as ``[2, n]`` stereo (wet only).

    The input is read through a slowly wobbling 10-16 ms delay (linear interpolation), which
    detunes it slightly, as a second singer or a double-tracked part would be; the right side
    hears the same double 8 ms later, which widens it.
    """
    n = x.shape[-1]
    t = np.arange(n, dtype=np.float64)
    rate = rng.uniform(0.3, 0.9)
    mod = depth_ms * np.sin(2.0 * np.pi * rate / sr * t + rng.uniform(0, 2 * np.pi))
    wet = np.interp(t - (13.0 + mod) * (sr / 1000.0), t, x, left=0.0)
    return np.stack([wet, delayed(wet, int(0.008 * sr))])


def echo(x: np.ndarray, sr: int, delay_s: float, feedback: float, repeats: int = 5) -> np.ndarray:
    """Tape-style echo of ``[n]`` (wet only): darkened repeats decaying by ``feedback`` each."""
    d = int(round(delay_s * sr))
    n = x.shape[-1]
    dark = filt(x, "lowpass", 3500.0, sr, order=1)
    out = np.zeros_like(x)
    for k in range(1, repeats + 1):
        if k * d >= n:
            break
        out[k * d :] += feedback**k * dark[: n - k * d]
    return out


def reverb_ir(rng: np.random.Generator, seconds: float, sr: int) -> np.ndarray:
    """A stereo room impulse response ``[2, m]`` at ``sr / REVERB_DECIMATION``: decorrelated noise
    with an exponential decay (RT60 = ``seconds``) whose highs die faster, as in a real room."""
    sr = sr // REVERB_DECIMATION
    m = int(seconds * sr)
    t = np.arange(m) / sr
    # partly shared between the channels: a wide but still centred image
    raw = rng.standard_normal((3, m))
    noise = (0.6 * raw[:1] + 0.8 * raw[1:]) * np.exp(-6.9 * t / seconds)
    dark = filt(noise, "lowpass", 2500.0, sr, order=1)
    bright_part = noise * np.exp(-6.9 * t / (0.4 * seconds))  # highs decay 2.5x faster
    ir = dark + 0.5 * bright_part
    ir[:, : int(0.012 * sr)] = 0.0  # pre-delay: the dry sound arrives first
    return ir / np.sqrt(np.sum(ir**2, axis=-1, keepdims=True))


@functools.lru_cache(maxsize=4)
def _resampling_fir(q: int) -> np.ndarray:
    # Short anti-alias/anti-image FIR for the reverb path; a tail needs no steep transition band.
    return signal.firwin(8 * q + 1, 0.8 / q)


def reverb(x: np.ndarray, ir: np.ndarray) -> np.ndarray:
    """Convolve mono ``[n]`` with a stereo impulse response ``[2, m]`` (from :func:`reverb_ir`,
    made at ``sr / REVERB_DECIMATION``); returns the wet ``[2, n]``.

    The FFT convolution runs at a quarter of the sample rate, which makes it ~4x cheaper; the
    tail then has no energy above ~4.4 kHz, like a damped room.
    """
    n = x.shape[-1]
    q = REVERB_DECIMATION
    fir = _resampling_fir(q)
    low = signal.upfirdn(fir, x, down=q)[q : q + (n + q - 1) // q]
    wet = signal.oaconvolve(low[None, :], ir, axes=-1)[:, : low.shape[0]]
    up = signal.upfirdn(q * fir, wet, up=q, axis=-1)
    return up[:, 4 * q : 4 * q + n]


def rms(x: np.ndarray) -> float:
    """Root mean square over all samples (0.0 for silence)."""
    return float(np.sqrt(np.mean(np.square(x)))) if x.size else 0.0


def normalise_rms(x: np.ndarray, target: float) -> np.ndarray:
    """Scale ``x`` so its RMS equals ``target`` (silence stays silence)."""
    level = rms(x)
    return x * (target / level) if level > 0 else x
