"""The genre table of the synthetic corpus: how each genre sings and how its band plays.

Genre identity lives in BOTH halves on purpose. A classifier that only sees the separated vocal
stem must still tell genres apart, so every genre's voice differs from every other's in several
cues that show up inside any 3-s window: register (where the harmonics sit), vibrato rate/depth,
syllable rate, melodic contour, pitch gestures (scoops, falls, autotune steps, speech glides), voice
quality (open quotient, tilt, breathiness, formant set) and effects (reverb, echo, chorus,
distortion). The band differs by tempo, groove, drum kit, bass line, chord colour and timbre.

Song-to-song variation inside a genre (key, tempo, progression, melody, levels) is drawn in
:mod:`shared_data.corpus.synthetic` and kept moderate, so a genre is a family of different songs,
not one song repeated.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Pitch classes, relative to the tonic, of the scales the melodies use.
BLUES = (0, 3, 5, 6, 7, 10)
MAJOR = (0, 2, 4, 5, 7, 9, 11)
MAJOR_PENTA = (0, 2, 4, 7, 9)
MINOR_PENTA = (0, 3, 5, 7, 10)
BEBOP = (0, 2, 3, 4, 5, 7, 9, 10, 11)
PHRYGIAN = (0, 1, 3, 5, 7, 8, 10)
MIXOLYDIAN = (0, 2, 4, 5, 7, 9, 10)

#: Chord qualities as semitone intervals above the root.
CHORDS: dict[str, tuple[int, ...]] = {
    "maj": (0, 4, 7),
    "min": (0, 3, 7),
    "dom7": (0, 4, 7, 10),
    "maj7": (0, 4, 7, 11),
    "min7": (0, 3, 7, 10),
    "min9": (0, 3, 7, 10, 14),
    "dom9": (0, 4, 7, 10, 14),
    "power": (0, 7, 12),
}


@dataclass(frozen=True)
class VoiceStyle:
    """How a genre sings. Times in seconds, pitches in MIDI numbers/semitones, depths in cents."""

    register_midi: float  # centre of the melody: the singer's register (+-1 semitone per song)
    range_st: int  # span of the melody in semitones
    scale: tuple[int, ...]  # pitch classes (relative to the tonic) the melody uses
    contour: str  # melody generator, see synth_voice.CONTOURS
    note_beats: tuple[tuple[float, float], ...]  # (note length in beats, weight)
    phrase_beats: tuple[int, int]  # phrase length range in beats
    rest_beats: tuple[float, float]  # rest between phrases in beats (capped at MAX_REST_S)
    offbeat: bool  # phrases start half a beat late (reggae's lilt)
    legato: float  # voiced fraction of each note (1.0 = notes touch)
    attack_s: float
    release_s: float
    vibrato_hz: float
    vibrato_cents: float  # peak deviation
    vibrato_delay_s: float  # vibrato starts this long into each note, then ramps in
    portamento_s: float  # glide time constant between notes
    scoop_st: float  # notes start this far below and slide up (country twang)
    fall_st: float  # long notes fall off by this much at their end (blues)
    glide_st: float  # pitch slope across each syllable (speech intonation in rap)
    drift_cents: float  # slow random pitch wander (0 = autotuned)
    shimmer: float  # random cycle-to-cycle amplitude variation (roughness)
    open_quotient: float  # glottal open phase: high = breathy/soft, low = pressed/bright
    tilt: float  # one-pole lowpass coefficient on the source: higher = darker
    breathiness: float  # aspiration noise relative to the voiced source
    vowels: tuple[str, ...]
    formant_shift: float  # scales formant frequencies (~1.15 for female voices)
    extra_formants: tuple[tuple[float, float], ...]  # (Hz, bandwidth): singer's formant, twang
    consonant_prob: float
    consonants: tuple[str, ...]
    drive: float  # saturation after the formants (0 = clean)
    growl: float  # alternate-cycle amplitude modulation: a subharmonic rasp
    chorus: float  # wet level of a stereo double
    echo: float  # wet level of a tempo-synced echo
    echo_beats: float
    reverb_s: float  # RT60
    reverb_wet: float
    eq_hz: tuple[float, float]  # the vocal chain's high-pass and low-pass corners (0 = none)


@dataclass(frozen=True)
class BandStyle:
    """How a genre's band plays."""

    bpm: float
    swing: float  # 0 straight, 1 full triplet shuffle
    tonic_midi: int  # bass register of the tonic before the key offset
    progressions: tuple[tuple[tuple[int, str], ...], ...]  # options of (root offset, quality)
    chord_beats: float
    drums: tuple[tuple[str, str], ...]  # (drum voice, step pattern: 16 steps a bar, looped)
    kit: str  # "acoustic", "808", "electro", "metal", "jazz", "orchestral"
    bass_pattern: str
    bass_timbre: str
    chord_rhythm: str
    chord_timbre: str
    chord_register: tuple[int, int]  # MIDI range the chord voicings are folded into
    chord_pan: float  # harmony placement; double-tracked parts mirror it
    double_tracked: bool
    sidechain: float  # depth of the chords' ducking on every beat (0 = none)
    levels_db: tuple[float, float, float]  # drums, bass, chords before the mix
    humanize_ms: float  # timing jitter of every hit and note


@dataclass(frozen=True)
class GenreStyle:
    voice: VoiceStyle
    band: BandStyle


_VOICE_DEFAULTS = dict(
    offbeat=False,
    scoop_st=0.0,
    fall_st=0.0,
    glide_st=0.0,
    drift_cents=10.0,
    shimmer=0.05,
    extra_formants=(),
    consonants=("t", "s", "m", "n", "l", "k", "d"),
    drive=0.0,
    growl=0.0,
    chorus=0.0,
    echo=0.0,
    echo_beats=0.75,
    eq_hz=(80.0, 0.0),
)


def _voice(**kw) -> VoiceStyle:
    return VoiceStyle(**{**_VOICE_DEFAULTS, **kw})


_BAND_DEFAULTS = dict(
    swing=0.0,
    chord_beats=4.0,
    chord_register=(52, 67),
    chord_pan=0.45,
    double_tracked=False,
    sidechain=0.0,
    levels_db=(0.0, -3.0, -4.0),
    humanize_ms=4.0,
)


def _band(**kw) -> BandStyle:
    return BandStyle(**{**_BAND_DEFAULTS, **kw})


# A table: one line per group of related settings reads better than one line per field.
# fmt: off
STYLES: dict[str, GenreStyle] = {
    # Low baritone, slow wide vibrato, descending blues-scale lines with falls and scoops, grit.
    "blues": GenreStyle(
        voice=_voice(
            register_midi=49, range_st=10, scale=BLUES, contour="descend",
            note_beats=((0.5, 5), (1.0, 3), (2.0, 1)), phrase_beats=(6, 8), rest_beats=(1.0, 1.5),
            legato=0.9, attack_s=0.03, release_s=0.08,
            vibrato_hz=4.6, vibrato_cents=60, vibrato_delay_s=0.25, portamento_s=0.05,
            scoop_st=1.0, fall_st=3.0, open_quotient=0.55, tilt=0.4, breathiness=0.08,
            vowels=("a", "o", "u"), formant_shift=1.0, consonant_prob=0.6,
            drive=1.2, growl=0.12, shimmer=0.1, reverb_s=0.8, reverb_wet=0.12,
        ),
        band=_band(
            bpm=80, swing=1.0, tonic_midi=40,
            progressions=(
                ((0, "dom7"), (5, "dom7"), (0, "dom7"), (0, "dom7"), (5, "dom7"), (5, "dom7"),
                 (0, "dom7"), (0, "dom7"), (7, "dom7"), (5, "dom7"), (0, "dom7"), (7, "dom7")),
            ),
            drums=(("kick", "x.......x......."), ("snare", "....x.......x..."),
                   ("hat", "x.o.x.o.x.o.x.o.")),
            kit="acoustic", bass_pattern="boogie", bass_timbre="finger",
            chord_rhythm="swell", chord_timbre="organ",
        ),
    ),
    # Soprano, wide operatic vibrato, long legato notes in arches, singer's formant, big hall.
    "classical": GenreStyle(
        voice=_voice(
            register_midi=75, range_st=12, scale=MAJOR, contour="arch",
            note_beats=((1.0, 2), (2.0, 3), (3.0, 1), (4.0, 1)), phrase_beats=(8, 12),
            rest_beats=(0.5, 1.0), legato=1.0, attack_s=0.08, release_s=0.15,
            vibrato_hz=5.6, vibrato_cents=90, vibrato_delay_s=0.12, portamento_s=0.06,
            drift_cents=6.0, open_quotient=0.65, tilt=0.3, breathiness=0.04,
            vowels=("a", "o", "e"), formant_shift=1.18, extra_formants=((2900.0, 300.0),),
            consonant_prob=0.3, consonants=("l", "m", "n", "d"), reverb_s=2.4, reverb_wet=0.27,
        ),
        band=_band(
            bpm=66, tonic_midi=48,
            progressions=(
                ((0, "maj"), (9, "min"), (5, "maj"), (7, "dom7")),
                ((0, "maj"), (5, "maj"), (7, "dom7"), (0, "maj")),
                ((0, "maj"), (2, "min"), (7, "dom7"), (0, "maj")),
            ),
            drums=(("timpani", "x..............................."),),
            kit="orchestral", bass_pattern="pizz", bass_timbre="cello",
            chord_rhythm="pad", chord_timbre="strings", chord_register=(55, 76),
            chord_pan=0.3, levels_db=(-10.0, -5.0, 0.0), humanize_ms=0.0,
        ),
    ),
    # Baritone-tenor, twang formant, scoops into most notes, light fast vibrato at note ends.
    "country": GenreStyle(
        voice=_voice(
            register_midi=57, range_st=9, scale=MAJOR_PENTA, contour="arch",
            note_beats=((0.5, 4), (1.0, 3), (2.0, 1)), phrase_beats=(6, 8), rest_beats=(1.0, 2.0),
            legato=0.85, attack_s=0.02, release_s=0.06,
            vibrato_hz=6.4, vibrato_cents=25, vibrato_delay_s=0.3, portamento_s=0.03,
            scoop_st=2.0, open_quotient=0.5, tilt=0.15, breathiness=0.05,
            vowels=("a", "e"), formant_shift=1.02, extra_formants=((2600.0, 180.0),),
            consonant_prob=0.6, reverb_s=0.7, reverb_wet=0.11,
        ),
        band=_band(
            bpm=112, tonic_midi=43,
            progressions=(
                ((0, "maj"), (5, "maj"), (7, "maj"), (0, "maj")),
                ((0, "maj"), (0, "maj"), (5, "maj"), (7, "maj")),
            ),
            drums=(("kick", "x.......x......."), ("brush", "-.-.x.-.-.-.x.-."),
                   ("hat", "..o...o...o...o.")),
            kit="acoustic", bass_pattern="rootfifth", bass_timbre="upright",
            chord_rhythm="strum", chord_timbre="acoustic",
        ),
    ),
    # High falsetto, octave leaps on staccato eighths, chorus double, four-on-the-floor.
    "disco": GenreStyle(
        voice=_voice(
            register_midi=71, range_st=12, scale=MINOR_PENTA, contour="octave",
            note_beats=((0.5, 6), (1.0, 2)), phrase_beats=(6, 8), rest_beats=(1.0, 2.0),
            legato=0.6, attack_s=0.015, release_s=0.04,
            vibrato_hz=5.5, vibrato_cents=35, vibrato_delay_s=0.15, portamento_s=0.02,
            open_quotient=0.72, tilt=0.6, breathiness=0.25,
            vowels=("u", "o"), formant_shift=1.15, consonant_prob=0.4, chorus=0.35,
            reverb_s=1.4, reverb_wet=0.18,
        ),
        band=_band(
            bpm=120, tonic_midi=45,
            progressions=(
                ((0, "min7"), (5, "dom7")),
                ((0, "min7"), (10, "maj"), (8, "maj"), (10, "maj")),
            ),
            drums=(("kick", "x...x...x...x..."), ("clap", "....x.......x..."),
                   ("hat", "x...x...x...x..."), ("openhat", "..x...x...x...x.")),
            kit="electro", bass_pattern="octave", bass_timbre="synth",
            chord_rhythm="stabs", chord_timbre="strings", humanize_ms=1.0,
        ),
    ),
    # Low spoken register, no vibrato, fast sixteenth-note syllables dense with consonants,
    # falling speech intonation inside each syllable, dry.
    "hiphop": GenreStyle(
        voice=_voice(
            register_midi=43, range_st=5, scale=MINOR_PENTA, contour="speech",
            note_beats=((0.25, 6), (0.5, 3), (0.75, 1)), phrase_beats=(8, 12),
            rest_beats=(0.5, 1.0), legato=0.75, attack_s=0.008, release_s=0.03,
            vibrato_hz=0.0, vibrato_cents=0.0, vibrato_delay_s=0.0, portamento_s=0.02,
            glide_st=-2.5, drift_cents=25.0, open_quotient=0.5, tilt=0.4, breathiness=0.1,
            vowels=("a", "e", "i", "o", "u"), formant_shift=1.0, consonant_prob=0.95,
            consonants=("t", "k", "p", "s", "sh", "f", "n"), reverb_s=0.3, reverb_wet=0.03,
        ),
        band=_band(
            bpm=90, swing=0.3, tonic_midi=38,
            progressions=(((0, "min7"), (8, "maj7")), ((0, "min9"), (5, "min7"))),
            drums=(("kick", "x......x..x....."), ("snare", "....x.......x..."),
                   ("hat", "x-x-x-x-x-x-x-x-")),
            kit="808", bass_pattern="sub", bass_timbre="sub",
            chord_rhythm="pad", chord_timbre="epiano", levels_db=(0.0, -1.0, -7.0),
        ),
    ),
    # Alto, wide leaps over a bebop scale, swing eighths, smooth portamento, late vibrato.
    "jazz": GenreStyle(
        voice=_voice(
            register_midi=63, range_st=14, scale=BEBOP, contour="leaps",
            note_beats=((0.5, 4), (1.0, 3), (1.5, 1), (2.0, 1)), phrase_beats=(6, 10),
            rest_beats=(1.0, 2.0), legato=0.95, attack_s=0.04, release_s=0.08,
            vibrato_hz=5.0, vibrato_cents=45, vibrato_delay_s=0.3, portamento_s=0.07,
            scoop_st=0.7, fall_st=1.5, open_quotient=0.65, tilt=0.6, breathiness=0.2,
            vowels=("a", "o", "u"), formant_shift=1.12, consonant_prob=0.5,
            consonants=("d", "b", "l", "m", "n"), reverb_s=1.0, reverb_wet=0.15,
        ),
        band=_band(
            bpm=140, swing=1.0, tonic_midi=41,
            progressions=(
                ((2, "min7"), (7, "dom9"), (0, "maj7"), (9, "dom7")),
                ((0, "maj7"), (9, "min7"), (2, "min7"), (7, "dom9")),
            ),
            drums=(("ride", "x...x.o.x...x.o."), ("hat", "....x.......x..."),
                   ("kick", "-...-...-...-..."), ("brush", "......-.......-.")),
            kit="jazz", bass_pattern="walking", bass_timbre="upright",
            chord_rhythm="comp", chord_timbre="epiano", chord_register=(53, 66),
            levels_db=(-2.0, -2.0, -5.0),
        ),
    ),
    # High belted tenor, heavy distortion and growl, long held notes, fast narrow vibrato.
    "metal": GenreStyle(
        voice=_voice(
            register_midi=68, range_st=7, scale=PHRYGIAN, contour="sustain",
            note_beats=((1.0, 2), (2.0, 3), (4.0, 2)), phrase_beats=(8, 12),
            rest_beats=(1.0, 2.0), legato=0.95, attack_s=0.02, release_s=0.06,
            vibrato_hz=6.8, vibrato_cents=30, vibrato_delay_s=0.2, portamento_s=0.03,
            drift_cents=15.0, shimmer=0.25, open_quotient=0.35, tilt=0.0, breathiness=0.45,
            vowels=("a", "e"), formant_shift=1.05, consonant_prob=0.5,
            drive=8.0, growl=0.35, reverb_s=1.2, reverb_wet=0.15,
        ),
        band=_band(
            bpm=160, tonic_midi=40,
            progressions=(
                ((0, "power"), (1, "power"), (0, "power"), (8, "power")),
                ((0, "power"), (3, "power"), (5, "power"), (1, "power")),
            ),
            drums=(("kick", "xxxxxxxxxxxxxxxx"), ("snare", "....x.......x..."),
                   ("ride", "x.x.x.x.x.x.x.x."), ("crash", "x" + "." * 63)),
            kit="metal", bass_pattern="root16", bass_timbre="drive",
            chord_rhythm="chug", chord_timbre="distgtr", chord_register=(40, 55),
            chord_pan=0.8, double_tracked=True, levels_db=(0.0, -4.0, -1.0), humanize_ms=2.0,
        ),
    ),
    # Female, breathy, bright "ee/eh" vowels with studio air, a repeated hook, light late vibrato,
    # chorus double.
    "pop": GenreStyle(
        voice=_voice(
            register_midi=66, range_st=8, scale=MAJOR, contour="hook",
            note_beats=((0.5, 5), (1.0, 3), (2.0, 1)), phrase_beats=(6, 8), rest_beats=(1.0, 2.0),
            legato=0.9, attack_s=0.02, release_s=0.05,
            vibrato_hz=5.5, vibrato_cents=15, vibrato_delay_s=0.3, portamento_s=0.03,
            drift_cents=8.0, shimmer=0.03, open_quotient=0.75, tilt=0.5, breathiness=0.35,
            vowels=("i", "e"), formant_shift=1.15, extra_formants=((8500.0, 3000.0),),
            consonant_prob=0.5, chorus=0.3,
            reverb_s=1.2, reverb_wet=0.18,
        ),
        band=_band(
            bpm=100, tonic_midi=45,
            progressions=(
                ((0, "maj"), (7, "maj"), (9, "min"), (5, "maj")),
                ((9, "min"), (5, "maj"), (0, "maj"), (7, "maj")),
            ),
            drums=(("kick", "x.....x.x......."), ("clap", "....x.......x..."),
                   ("hat", "x.x.x.x.x.x.x.x.")),
            kit="electro", bass_pattern="pop8", bass_timbre="synth",
            chord_rhythm="pluck8", chord_timbre="synthpluck", sidechain=0.5, humanize_ms=1.0,
        ),
    ),
    # Baritone, narrow lilting lines of short offbeat syllables, gentle vibrato, a lo-fi
    # band-limited dub vocal chain with echo.
    "reggae": GenreStyle(
        voice=_voice(
            register_midi=53, range_st=6, scale=MAJOR_PENTA, contour="narrow",
            note_beats=((0.5, 6), (1.0, 2)), phrase_beats=(4, 6), rest_beats=(1.0, 1.5),
            offbeat=True, legato=0.55, attack_s=0.02, release_s=0.05,
            vibrato_hz=5.0, vibrato_cents=20, vibrato_delay_s=0.25, portamento_s=0.04,
            open_quotient=0.6, tilt=0.4, breathiness=0.08, vowels=("o", "a", "e"),
            formant_shift=1.0, consonant_prob=0.5, echo=0.45, echo_beats=0.75,
            reverb_s=1.0, reverb_wet=0.12, eq_hz=(250.0, 3500.0),
        ),
        band=_band(
            bpm=76, swing=0.4, tonic_midi=43,
            progressions=(((0, "maj"), (5, "maj")),
                          ((0, "maj"), (7, "maj"), (5, "maj"), (0, "maj"))),
            drums=(("kick", "........x......."), ("rim", "........x......."),
                   ("hat", "x.x.x.x.x.x.x.x."), ("openhat", "..............o.")),
            kit="acoustic", bass_pattern="reggae", bass_timbre="sub",
            chord_rhythm="skank", chord_timbre="organ", levels_db=(0.0, -1.0, -6.0),
        ),
    ),
    # Tenor, mild grit, arch phrases ending on held vibrato notes, slap echo, guitars L/R.
    "rock": GenreStyle(
        voice=_voice(
            register_midi=60, range_st=10, scale=MIXOLYDIAN, contour="arch",
            note_beats=((0.5, 5), (1.0, 3), (2.0, 2)), phrase_beats=(6, 8), rest_beats=(1.0, 2.0),
            legato=0.9, attack_s=0.02, release_s=0.06,
            vibrato_hz=6.0, vibrato_cents=35, vibrato_delay_s=0.25, portamento_s=0.035,
            scoop_st=0.5, fall_st=1.0, shimmer=0.1, open_quotient=0.45, tilt=0.2,
            breathiness=0.1, vowels=("a", "e", "o"), formant_shift=1.0,
            extra_formants=((3000.0, 400.0),), consonant_prob=0.6, drive=1.3, growl=0.1,
            echo=0.12, echo_beats=0.25, reverb_s=0.9, reverb_wet=0.13,
        ),
        band=_band(
            bpm=124, tonic_midi=40,
            progressions=(
                ((0, "maj"), (10, "maj"), (5, "maj"), (0, "maj")),
                ((0, "maj"), (5, "maj"), (7, "maj"), (5, "maj")),
            ),
            drums=(("kick", "x.....x.x......."), ("snare", "....x.......x..."),
                   ("hat", "x.x.x.x.x.x.x.x."), ("crash", "x" + "." * 63)),
            kit="acoustic", bass_pattern="root8", bass_timbre="drive",
            chord_rhythm="power8", chord_timbre="distgtr", chord_register=(45, 60),
            chord_pan=0.7, double_tracked=True, levels_db=(0.0, -3.0, -2.0),
        ),
    ),
}
# fmt: on

#: The genres, in label order.
GENRES: tuple[str, ...] = tuple(STYLES)

#: No rest between phrases is longer than this, so every 3-s clip holds singing.
MAX_REST_S = 0.9
