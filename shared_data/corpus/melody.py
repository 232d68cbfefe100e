"""The melody of a synthetic song's vocal line: the notes (one syllable each) on the beat grid.

:func:`compose_melody` writes phrases of :class:`VocalNote` with a genre-specific rhythm and contour
(:data:`CONTOURS`), separated by rests and breaths; :mod:`shared_data.corpus.voice` sings them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shared_data.corpus.score import Score
from shared_data.corpus.styles import MAX_REST_S, VoiceStyle


@dataclass(frozen=True)
class VocalNote:
    """One sung syllable. Times in seconds from the start of the song."""

    start_s: float
    dur_s: float  # until the next note's onset on the grid
    midi: int
    vowel: str
    consonant: str | None
    phrase_start: bool


# ---------------------------------------------------------------------------------------------
# melody


def _step_walk(n: int, start: int, steps, rng: np.random.Generator, size: int, peak=None):
    """A bounded random walk over pool indices; ``steps`` are drawn (mirrored after ``peak``)."""
    out = np.empty(n, dtype=np.int64)
    i = start
    for k in range(n):
        out[k] = i
        step = int(rng.choice(steps))
        if peak is not None and k >= peak:
            step = -step
        i = i + step
        if i < 0 or i >= size:  # reflect at the edges of the range
            i = int(np.clip(2 * np.clip(i, 0, size - 1) - i, 0, size - 1))
    return out


def _arch(n, size, mid, octave, motif, rng):
    peak = int(rng.integers(n // 3, max(n // 3 + 1, (2 * n) // 3 + 1)))
    start = max(0, mid - int(rng.integers(1, 3)))
    return _step_walk(n, start, (0, 1, 1, 2), rng, size, peak=peak)


def _descend(n, size, mid, octave, motif, rng):
    start = size - 1 - int(rng.integers(0, 2))
    return _step_walk(n, start, (0, -1, -1, -2, 1), rng, size)


def _speech(n, size, mid, octave, motif, rng):
    # Spoken lines hover around one pitch and drift down over the phrase (declination).
    walk = _step_walk(n, mid + int(rng.integers(0, 2)), (-1, 0, 0, 0, 1), rng, size)
    return np.clip(walk - (np.arange(n) * 2) // max(n, 1), 0, size - 1)


def _leaps(n, size, mid, octave, motif, rng):
    out = np.empty(n, dtype=np.int64)
    i, direction = mid, 1 if rng.random() < 0.5 else -1
    for k in range(n):
        out[k] = i
        jump = int(rng.choice((2, 3, 3, 4, 5)))
        if rng.random() < 0.7:
            direction = -direction
        i = i + direction * jump
        if i < 0 or i >= size:
            direction = -direction
            i = int(np.clip(i + 2 * direction * jump, 0, size - 1))
    return out


def _hook(n, size, mid, octave, motif, rng):
    # A per-song motif repeated through every phrase, with an occasional altered note.
    out = np.resize(motif, n).copy()
    alter = rng.random(n) < 0.1
    out[alter] += rng.choice((-1, 1), size=int(alter.sum()))
    return np.clip(out, 0, size - 1)


def _octave(n, size, mid, octave, motif, rng):
    # Disco's octave-jumping line: the motif's low notes alternate with their upper octave.
    base = np.resize(motif, n)
    up = (np.arange(n) % 2 == 1) & (rng.random(n) < 0.85)
    return np.clip(base + up * octave, 0, size - 1)


def _narrow(n, size, mid, octave, motif, rng):
    lo, hi = max(mid - 1, 0), min(mid + 2, size - 1)
    walk = _step_walk(n, mid, (-1, 0, 1, 1, -1), rng, size)
    return np.clip(walk, lo, hi)


def _sustain(n, size, mid, octave, motif, rng):
    return _step_walk(n, mid + int(rng.integers(-1, 2)), (0, 0, 1, -1, 2, -2), rng, size)


CONTOURS = {
    "arch": _arch,
    "descend": _descend,
    "speech": _speech,
    "leaps": _leaps,
    "hook": _hook,
    "octave": _octave,
    "narrow": _narrow,
    "sustain": _sustain,
}


def note_pool(style: VoiceStyle, tonic_pc: int, centre: float) -> np.ndarray:
    """The MIDI notes the melody may use: the song's scale within the genre's range around
    ``centre`` (the singer's register)."""
    lo = int(round(centre - style.range_st / 2))
    notes = [m for m in range(lo, lo + style.range_st + 1) if (m - tonic_pc) % 12 in style.scale]
    return np.array(notes, dtype=np.int64)


def compose_melody(
    style: VoiceStyle, score: Score, rng: np.random.Generator, centre: float
) -> list[VocalNote]:
    """Phrases of syllables covering the song, separated by short rests (<= MAX_REST_S).

    ``centre`` is the singer's register (MIDI); the notes are the song's scale around it.
    """
    pool = note_pool(style, score.tonic_midi % 12, centre)
    size = len(pool)
    mid = int(np.argmin(np.abs(pool - centre)))
    octave = len(style.scale)
    if style.contour == "octave":
        motif = rng.integers(0, max(size - octave, 1), size=4)
    else:
        motif = np.clip(mid + np.cumsum(rng.integers(-2, 3, size=5)) - 1, 0, size - 1)
    contour = CONTOURS[style.contour]
    lengths = np.array([d for d, _ in style.note_beats])
    weights = np.array([w for _, w in style.note_beats], dtype=np.float64)
    weights /= weights.sum()

    notes: list[VocalNote] = []
    beat = 0.5 if style.offbeat else 0.0
    total = score.n_beats
    while beat < total:
        phrase = int(rng.integers(style.phrase_beats[0], style.phrase_beats[1] + 1))
        durs: list[float] = []
        while sum(durs) < phrase:
            durs.append(float(rng.choice(lengths, p=weights)))
        pitches = pool[contour(len(durs), size, mid, octave, motif, rng)]
        for k, (d, m) in enumerate(zip(durs, pitches, strict=True)):
            start = score.seconds(beat)
            consonant = None
            if rng.random() < style.consonant_prob:
                consonant = str(rng.choice(style.consonants))
            notes.append(
                VocalNote(
                    start_s=start,
                    dur_s=score.seconds(beat + d) - start,
                    midi=int(m),
                    vowel=str(rng.choice(style.vowels)),
                    consonant=consonant,
                    phrase_start=k == 0,
                )
            )
            beat += d
        rest = min(rng.uniform(*style.rest_beats), MAX_REST_S / score.beat_s)
        end, beat = beat, float(np.floor((beat + rest) * 4.0) / 4.0)
        if style.offbeat:  # the latest offbeat that keeps the rest within its cap
            beat = max(np.floor(beat - 0.5) + 0.5, end + 0.5)
    return notes
