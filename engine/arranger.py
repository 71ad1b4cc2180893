"""The rule-based arranger: the baseline the learned ensemble has to beat (issue 27).

What an authored middleware cue does, written down as rules: a harmonic plan from the key
(and the melody, when one is given), the bass on the chord roots, block chords voiced
close to the chord before, and a fixed General MIDI drum groove per preset with a fill or
a crash at the phrase boundaries.  Without a melody it writes one from chord tones and
passing notes, so the baseline is a full ensemble on its own.

``harmonize`` builds the plan (one diatonic triad per bar or half bar, chosen to cover
the melody's strong-beat pitch classes, a cadence every ``PHRASE_BARS`` bars);
``arrange`` the ensemble (an ``Arrangement``: the notes, ``channel`` = voice id, and the
plan the evaluation checks the bass against).  ``python -m engine.arranger`` writes one
to a multi-track .mid for listening.  Times are in ticks, ``TICKS_PER_BEAT`` a beat.
"""
import argparse
import itertools
import math
from dataclasses import dataclass

import numpy as np

from engine.controls import KEY_NAMES, KEY_SPELLINGS, MODES, parse_key
from engine.ensemble import BASS, DEFAULTS, DRUMS, HARMONY, MELODY, VOICES, write_ensemble_midi
from engine.errors import InvalidMessage
from engine.notes import NOTE_DTYPE, normalise, read_midi

TICKS_PER_BEAT = 12
PHRASE_BARS = 4
MAJ, MIN, DIM = range(3)
QUALITIES = ("major", "minor", "diminished")
TRIADS = ((0, 4, 7), (0, 3, 7), (0, 3, 6))  # intervals above the root, by quality

#: The diatonic triads of each mode: (roman numeral, root above the tonic, quality).
#: Minor has the harmonic minor's V (and vii°) beside the natural minor's III and VII.
CHORDS = (
    (("I", 0, MAJ), ("ii", 2, MIN), ("iii", 4, MIN), ("IV", 5, MAJ), ("V", 7, MAJ),
     ("vi", 9, MIN), ("vii°", 11, DIM)),
    (("i", 0, MIN), ("ii°", 2, DIM), ("III", 3, MAJ), ("iv", 5, MIN), ("V", 7, MAJ),
     ("VI", 8, MAJ), ("VII", 10, MAJ), ("vii°", 11, DIM)),
)
#: The progression of a phrase with no melody to follow (degrees into ``CHORDS``):
#: I-vi-IV-V in major, i-VI-iv-V in minor (the leading tone of V, not VII, says minor).
FALLBACK = ((0, 5, 3, 4), (0, 5, 3, 4))
TONIC, DOMINANT = 0, 4  # degree indices of I and V in both modes
#: A small preference per degree (tonic and the primary chords first), a tie-breaker
#: next to how well a chord covers the melody.
PRIOR = ((0.06, 0.02, 0.0, 0.04, 0.05, 0.03, -0.03),
         (0.06, -0.03, 0.02, 0.04, 0.05, 0.03, 0.01, -0.03))
CADENCE = 0.35  # bonus of the cadence chord at a phrase end
#: The scale steps the melody walks on: major; natural minor, its 7th raised over V and vii°.
SCALE = ((0, 2, 4, 5, 7, 9, 11), (0, 2, 3, 5, 7, 8, 10))

PLAN_DTYPE = np.dtype([("start", np.int64), ("end", np.int64), ("root", np.int16),
                       ("quality", np.int16), ("degree", np.int16)])

# General MIDI percussion keys the grooves use.
KICK, SIDE_STICK, SNARE, CLOSED_HAT, PEDAL_HAT, OPEN_HAT = 36, 37, 38, 42, 44, 46
FLOOR_TOM, LOW_TOM, LOW_MID_TOM, HIGH_TOM = 41, 45, 47, 50
CRASH, RIDE = 49, 51
GM_PERCUSSION = (35, 81)


@dataclass(frozen=True)
class Groove:
    """A preset's fixed accompaniment.  ``bass``: whole | half | root_fifth | eighths;
    ``harmony``: whole | half | beats (block chords held a bar, half a bar, or struck on
    every beat); ``drums``: rock | heavy | light | sparse | march, or None; ``melody``:
    the chances that a beat of the composed melody holds the note before, has one note,
    or two eighths; ``velocity`` of the pitched voices; ``bpm``: the tempo the
    command line writes, the preset's in realtime/states.toml."""

    name: str
    bpm: int
    bass: str
    harmony: str
    drums: str | None
    melody: tuple
    velocity: int


#: One groove per preset of realtime/states.toml.
GROOVES = {g.name: g for g in (
    Groove("menu", 84, "half", "whole", None, (0.35, 0.5, 0.15), 70),
    Groove("explore", 96, "root_fifth", "half", "light", (0.2, 0.5, 0.3), 80),
    Groove("calm", 72, "whole", "whole", None, (0.45, 0.45, 0.1), 60),
    Groove("stealth", 88, "whole", "whole", "sparse", (0.4, 0.45, 0.15), 55),
    Groove("combat", 140, "eighths", "beats", "rock", (0.1, 0.4, 0.5), 100),
    Groove("boss", 156, "eighths", "beats", "heavy", (0.1, 0.35, 0.55), 110),
    Groove("victory", 120, "root_fifth", "beats", "march", (0.15, 0.5, 0.35), 105),
    Groove("defeat", 66, "whole", "whole", None, (0.5, 0.4, 0.1), 55),
)}


@dataclass(frozen=True)
class Arrangement:
    """An arranged piece: ``notes`` (NOTE_DTYPE, ``channel`` = voice id, sorted by start)
    and ``plan`` (PLAN_DTYPE, one chord per bar or half bar)."""

    notes: np.ndarray
    plan: np.ndarray
    key: int
    mode: int
    bars: int
    beats_per_bar: int
    groove: str

    def voice(self, v):
        """The notes of voice ``v`` (an id of engine.ensemble)."""
        return self.notes[self.notes["channel"] == v]

    def chord_names(self):
        """The plan as roman numerals, one per chord."""
        return [CHORDS[self.mode][d][0] for d in self.plan["degree"].tolist()]


def chord_tones(root, quality):
    """Pitch classes of a triad."""
    return {(int(root) + i) % 12 for i in TRIADS[int(quality)]}


def in_key(pitch_classes, key, mode):
    """Whether every pitch class lies in the key's scale (minor: either 7th, as
    ``engine.controls.SCALES``)."""
    scale = {(key + s) % 12 for s in SCALE[mode]} | ({(key + 11) % 12} if mode else set())
    return set(int(p) % 12 for p in pitch_classes) <= scale


def harmonize(key, mode, bars, beats_per_bar=4, melody=None, chords_per_bar=1):
    """The harmonic plan: one diatonic triad per bar (or half bar), PLAN_DTYPE.

    With a melody each slot takes the chord that best covers the melody's pitch classes
    there, weighted by metric strength (the slot's downbeat most, then the other beats,
    off-beats least), with a small prior per degree and a cadence at the phrase ends: V
    (a half cadence) at the end of each ``PHRASE_BARS`` bars, V-I over the last two bars.
    A slot without melody (and a piece without one) takes ``FALLBACK`` with the same
    cadences.  Arguments are validated as in ``arrange``."""
    key, mode, bars, beats_per_bar, melody, chords_per_bar = _check(
        key, mode, bars, beats_per_bar, melody, chords_per_bar)
    return _plan(key, mode, bars, beats_per_bar, melody, chords_per_bar)


def arrange(key, mode, bars=None, beats_per_bar=4, melody=None, groove="explore", seed=0,
            chords_per_bar=1):
    """An ensemble arrangement (``Arrangement``) in ``key`` (tonic pitch class 0..11, or a
    name such as "F#") and ``mode`` (0/"major", 1/"minor") over ``bars`` bars of
    ``beats_per_bar`` beats, for the preset ``groove`` (a name of ``GROOVES``).

    ``melody`` (NOTE_DTYPE in ticks of ``TICKS_PER_BEAT``) is harmonized and returned
    unchanged in the melody voice; without one a melody is composed from the plan's chord
    tones and passing notes (``seed`` decides it; the same seed gives the same notes).
    ``bars`` defaults to the melody's length in bars, or 8.  A bad argument raises
    InvalidMessage naming the field and what is allowed."""
    key, mode, bars, beats_per_bar, melody, chords_per_bar = _check(
        key, mode, bars, beats_per_bar, melody, chords_per_bar)
    if groove not in GROOVES:
        raise InvalidMessage(f"groove {groove!r} is not one of {', '.join(GROOVES)}",
                             field="groove", allowed=list(GROOVES))
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidMessage(f"seed must be a whole number >= 0, got {seed!r}", field="seed",
                             allowed="an integer >= 0")
    g = GROOVES[groove]
    plan = _plan(key, mode, bars, beats_per_bar, melody, chords_per_bar)
    if melody is None:
        rng = np.random.default_rng(int(seed))
        melody = _compose_melody(plan, key, mode, bars, beats_per_bar, g, rng)
    else:
        melody = melody[np.argsort(melody["start"], kind="stable")]
    melody["channel"] = MELODY
    parts = [melody, _bass(plan, g), _harmony(plan, g), _drums(bars, beats_per_bar, g)]
    notes = np.concatenate(parts)
    notes = notes[np.lexsort((notes["pitch"], notes["channel"], notes["start"]))]
    return Arrangement(notes, plan, key, mode, bars, beats_per_bar, groove)


def _check(key, mode, bars, beats_per_bar, melody, chords_per_bar):
    """The arguments validated and normalised: InvalidMessage naming the field."""
    if isinstance(key, str):
        key = parse_key(key)
    if isinstance(key, bool) or not isinstance(key, (int, np.integer)) or not 0 <= key <= 11:
        raise InvalidMessage(f"key must be a tonic pitch class 0..11 or a key name, got {key!r}",
                             field="key", allowed="0..11 or " + ", ".join(KEY_SPELLINGS))
    if isinstance(mode, str) and mode in MODES:
        mode = MODES.index(mode)
    if isinstance(mode, bool) or mode not in (0, 1):
        raise InvalidMessage(f"mode must be 0 (major) or 1 (minor), got {mode!r}",
                             field="mode", allowed="0, 1, major, minor")
    if (isinstance(beats_per_bar, bool) or not isinstance(beats_per_bar, (int, np.integer))
            or not 2 <= beats_per_bar <= 12):
        raise InvalidMessage(f"beats_per_bar must be 2..12, got {beats_per_bar!r}",
                             field="beats_per_bar", allowed="2..12")
    if chords_per_bar not in (1, 2) or isinstance(chords_per_bar, bool):
        raise InvalidMessage(f"chords_per_bar must be 1 or 2, got {chords_per_bar!r}",
                             field="chords_per_bar", allowed="1, 2")
    if chords_per_bar == 2 and beats_per_bar % 2:
        raise InvalidMessage(f"two chords a bar need an even number of beats, not "
                             f"{beats_per_bar}", field="chords_per_bar",
                             allowed="1 (or 2 with an even beats_per_bar)")
    bar_ticks = beats_per_bar * TICKS_PER_BEAT
    if melody is not None:
        try:
            melody = np.array(melody, dtype=NOTE_DTYPE, copy=True).reshape(-1)
        except (TypeError, ValueError):
            raise InvalidMessage("melody must be a notes array (engine.notes.NOTE_DTYPE)",
                                 field="melody", allowed="NOTE_DTYPE notes in ticks") from None
        if len(melody) == 0:
            melody = None
        elif ((melody["start"] < 0).any() or (melody["end"] <= melody["start"]).any()
              or (melody["pitch"] < 0).any() or (melody["pitch"] > 127).any()):
            raise InvalidMessage("melody notes need 0 <= start < end and pitch 0..127",
                                 field="melody", allowed="NOTE_DTYPE notes in ticks")
    if bars is None:
        bars = 8 if melody is None else max(1, -(-int(melody["end"].max()) // bar_ticks))
    if isinstance(bars, bool) or not isinstance(bars, (int, np.integer)) or not 1 <= bars <= 512:
        raise InvalidMessage(f"bars must be 1..512, got {bars!r}", field="bars", allowed="1..512")
    if melody is not None and melody["end"].max() > bars * bar_ticks:
        raise InvalidMessage(f"the melody ends at beat {melody['end'].max() / TICKS_PER_BEAT:g}, "
                             f"after the {bars} bars of {beats_per_bar} beats",
                             field="melody", allowed=f"notes ending by beat {bars * beats_per_bar}")
    return int(key), int(mode), int(bars), int(beats_per_bar), melody, int(chords_per_bar)


def _plan(key, mode, bars, bpb, melody, per_bar):
    """The harmonic plan of ``harmonize`` (arguments already checked)."""
    chords = CHORDS[mode]
    slot = bpb * TICKS_PER_BEAT // per_bar
    n = bars * per_bar
    plan = np.zeros(n, PLAN_DTYPE)
    # (chords, 12): which pitch classes above the tonic each chord holds
    tones = np.array([[i in {(r + j) % 12 for j in TRIADS[q]} for i in range(12)]
                      for _, r, q in chords])
    prev = None
    for s in range(n):
        bar = s // per_bar
        # the cadences: V at a phrase's last chord, V-I over the piece's last two bars
        # (bars, not chords: two chords a bar keep the tonic's and the dominant's weight)
        phrase_end = s % per_bar == per_bar - 1 and bar % PHRASE_BARS == PHRASE_BARS - 1
        cadence = (TONIC if bar == bars - 1 else
                   DOMINANT if phrase_end or bar == bars - 2 else None)
        hist = _weights(melody, s * slot, (s + 1) * slot, bpb, key) if melody is not None else None
        if hist is None or hist.sum() <= 0:
            degree = cadence if cadence is not None else FALLBACK[mode][bar % PHRASE_BARS]
        else:
            hist = hist / hist.sum()
            score = (tones * hist).sum(1) - (~tones * hist).sum(1) + np.array(PRIOR[mode])
            if cadence is not None:
                score[cadence] += CADENCE
            if prev is not None and not (per_bar == 2 and s % 2):
                score[prev] -= 0.05  # move the harmony at a bar line
            degree = int(np.argmax(score))
        _, r, q = chords[degree]
        plan[s] = (s * slot, (s + 1) * slot, (key + r) % 12, q, degree)
        prev = degree
    return plan


def _weights(melody, a, b, bpb, key):
    """Metric weight of each pitch class (relative to the tonic) sounding in [a, b):
    sampled on the eighth-note grid, the slot's downbeat 3, the bar's middle beat 2,
    other beats 1, off-beats 1/4."""
    hist = np.zeros(12)
    bar_ticks = bpb * TICKS_PER_BEAT
    sel = melody[(melody["start"] < b) & (melody["end"] > a)]
    if not len(sel):
        return hist
    half = TICKS_PER_BEAT // 2
    for t in range(a, b, half):
        pos = t % bar_ticks
        w = (3.0 if t == a else 2.0 if bpb % 2 == 0 and pos == bar_ticks // 2
             else 1.0 if pos % TICKS_PER_BEAT == 0 else 0.25)
        sounding = sel[(sel["start"] <= t) & (sel["end"] > t)]
        for p in sounding["pitch"].tolist():
            hist[(p - key) % 12] += w
    return hist


def _register_pitch(pc, register):
    """The pitch of pitch class ``pc`` nearest ``register`` (ties: below)."""
    base = int(math.floor(register)) - 6
    return base + (int(pc) - base) % 12


def _bass(plan, g):
    """Chord roots in the bass register in the groove's rhythm; ``root_fifth`` plays the
    chord's fifth in the second half of a slot."""
    register = DEFAULTS[BASS].register
    vel = min(127, g.velocity + 5)
    rows = []
    for c in plan:
        a, b = int(c["start"]), int(c["end"])
        root = _register_pitch(c["root"], register)
        length = b - a
        fifth_pc = (int(c["root"]) + TRIADS[int(c["quality"])][2]) % 12
        fifth = root + (fifth_pc - int(c["root"])) % 12
        if fifth > register + 10:
            fifth -= 12
        beats = length // TICKS_PER_BEAT
        mid = a + ((beats + 1) // 2) * TICKS_PER_BEAT
        if g.bass == "eighths":
            step = TICKS_PER_BEAT // 2
            rows += [(t, t + step - 1, root, vel if (t - a) % TICKS_PER_BEAT == 0 else vel - 15)
                     for t in range(a, b, step)]
        elif g.bass == "whole" or beats < 2:
            rows.append((a, b, root, vel))
        else:  # half, root_fifth
            rows.append((a, mid, root, vel))
            rows.append((mid, b, fifth if g.bass == "root_fifth" else root, vel - 8))
    return _notes(rows, BASS)


def _voicings(pcs, register):
    """Every voicing of a triad with one pitch per pitch class, within an octave, around
    the harmony register: sorted pitch triples."""
    lo, hi = int(register) - 7, int(register) + 9
    cands = [[p for p in range(lo, hi + 1) if p % 12 == pc] for pc in pcs]
    return [tuple(sorted(v)) for v in itertools.product(*cands) if max(v) - min(v) <= 12]


def _harmony(plan, g):
    """Block chords, each voicing the nearest (summed semitone motion) to the chord before,
    with a pull towards the register so the voicing does not drift."""
    register = DEFAULTS[HARMONY].register
    rows, prev = [], None
    for c in plan:
        pcs = sorted(chord_tones(c["root"], c["quality"]))
        options = _voicings(pcs, register)
        if prev is None:
            cost = [abs(np.mean(v) - register) for v in options]
        else:
            cost = [sum(abs(p - q) for p, q in zip(v, prev)) + 0.3 * abs(np.mean(v) - register)
                    for v in options]
        prev = options[int(np.argmin(cost))]
        a, b = int(c["start"]), int(c["end"])
        if g.harmony == "beats":
            hits = [(t, t + TICKS_PER_BEAT * 2 // 3) for t in range(a, b, TICKS_PER_BEAT)]
        elif g.harmony == "half" and (b - a) // TICKS_PER_BEAT >= 2:
            mid = a + (((b - a) // TICKS_PER_BEAT + 1) // 2) * TICKS_PER_BEAT
            hits = [(a, mid), (mid, b)]
        else:
            hits = [(a, b)]
        vel = g.velocity - 15
        rows += [(s, e, p, vel) for s, e in hits for p in prev]
    return _notes(rows, HARMONY)


def _drums(bars, bpb, g):
    """The groove's General MIDI pattern, bar by bar: a crash on each phrase's downbeat,
    a fill on the last beat of each phrase's last bar (but the piece's)."""
    if g.drums is None:
        return np.zeros(0, NOTE_DTYPE)
    T, E = TICKS_PER_BEAT, TICKS_PER_BEAT // 2
    back = [b for b in range(1, bpb) if b % 2 or (bpb % 2 and b == bpb - 1)]
    down = [b for b in range(bpb) if b not in back]
    rows = []
    for bar in range(bars):
        hits = []  # (tick in bar, key, velocity)
        phrase_start = bar % PHRASE_BARS == 0
        fill = bar % PHRASE_BARS == PHRASE_BARS - 1 and bar < bars - 1
        if g.drums == "rock":
            hits += [(t, CLOSED_HAT, 85 if t % T == 0 else 65) for t in range(0, bpb * T, E)]
            hits += [(b * T, KICK, 105) for b in down]
            if bpb >= 4:
                hits.append(((bpb - 2) * T + E, KICK, 90))
            hits += [(b * T, SNARE, 112) for b in back]
        elif g.drums == "heavy":
            hits += [(t, KICK, 100 if t % T == 0 else 85) for t in range(0, bpb * T, E)]
            hits += [(b * T, RIDE, 90) for b in range(bpb)]
            hits += [(b * T, SNARE, 120) for b in back]
        elif g.drums == "light":
            hits += [(t, CLOSED_HAT, 60 if t % T == 0 else 40) for t in range(0, bpb * T, E)]
            hits += [(0, KICK, 80), ((bpb // 2) * T - E, KICK, 65)]
            hits += [(b * T, SIDE_STICK, 62) for b in back]
        elif g.drums == "sparse":
            hits += [(0, KICK, 55), (back[-1] * T, PEDAL_HAT, 38)]
        elif g.drums == "march":
            hits += [(b * T, KICK, 100) for b in range(bpb)]
            hits += [(b * T, SNARE, 105) for b in back]
            if bar % 2 == 1 and not fill:  # a snare pick-up into the next bar
                hits += [((bpb - 1) * T + t, SNARE, 70 + t * 2) for t in (3, 6, 9)]
        if phrase_start and g.drums != "sparse":
            hits.append((0, CRASH, 70 if g.drums == "light" else 110))
        if fill:
            last = (bpb - 1) * T
            if g.drums == "sparse":
                hits.append((last, FLOOR_TOM, 50))
            elif g.drums == "light":
                hits = [h for h in hits if not (h[1] == CLOSED_HAT and h[0] == last + E)]
                hits.append((last + E, OPEN_HAT, 60))
            else:  # the beat's backbeat stays; toms down on its sixteenths
                hits = [h for h in hits if not (h[0] > last or (h[0] == last and
                                                                h[1] in (CLOSED_HAT, RIDE)))]
                hits += [(last + t, k, 90 + t) for t, k in
                         ((3, HIGH_TOM), (6, LOW_MID_TOM), (9, LOW_TOM))]
        a = bar * bpb * T
        rows += [(a + t, a + t + 3, k, v) for t, k, v in hits]
    return _notes(rows, DRUMS)


def _scale_pitches(key, mode, degree, lo, hi):
    """The melody's scale pitches in [lo, hi] under a chord (minor: the raised 7th over
    V and vii°, so a line never takes the augmented second)."""
    steps = set(SCALE[mode])
    if mode and CHORDS[mode][degree][1] in (7, 11):
        steps = (steps - {10}) | {11}
    return [p for p in range(lo, hi + 1) if (p - key) % 12 in steps]


def _compose_melody(plan, key, mode, bars, bpb, g, rng):
    """A melody over the plan: chord tones on the strong beats (each slot's downbeat and
    the bar's middle beat) and on notes longer than a beat, passing or neighbour notes
    between; it starts on the first chord's root, holds the chord's root at each phrase
    end and ends on the tonic, so the line itself says the key."""
    register = DEFAULTS[MELODY].register
    lo, hi = int(register) - 8, int(register) + 12
    T, bar_ticks = TICKS_PER_BEAT, bpb * TICKS_PER_BEAT
    hold, one, _ = g.melody
    starts = plan["start"]
    onsets, rooted = [], set()  # (tick, strong); the ticks that take the chord's root
    for bar in range(bars):
        phrase_end = bar % PHRASE_BARS == PHRASE_BARS - 1 or bar == bars - 1
        if phrase_end or bar == 0:
            rooted.add(bar * bar_ticks)
        for beat in range(bpb):
            t = bar * bar_ticks + beat * T
            chord_onset = t in starts
            if beat and not chord_onset and (phrase_end or rng.random() < hold):
                continue  # the note before is held through this beat
            strong = chord_onset or (bpb % 2 == 0 and beat == bpb // 2)
            onsets.append((t, strong))
            if not phrase_end and rng.random() >= hold + one:
                onsets.append((t + T // 2, False))
    # a note held past its beat is heard as harmony: a chord tone too
    ends = [t for t, _ in onsets[1:]] + [bars * bar_ticks]
    onsets = [(t, strong or e - t > T) for (t, strong), e in zip(onsets, ends)]
    slot_of = np.searchsorted(starts, [t for t, _ in onsets], side="right") - 1
    pitches = [None] * len(onsets)
    cur = _register_pitch(key, register)
    for i, (t, strong) in enumerate(onsets):  # chord tones on the strong onsets
        if not strong:
            continue
        c = plan[slot_of[i]]
        if t == starts[-1]:
            pcs = {key}
        elif t in rooted:  # the first note and the phrase ends: the chord's root
            pcs = {int(c["root"])}
        else:
            pcs = chord_tones(c["root"], c["quality"])
        tones = [p for p in range(lo, hi + 1) if p % 12 in pcs]
        dist = np.array([abs(p - cur) for p in tones], float)
        w = np.exp(-dist / 3.5) * np.where(dist == 0, 0.3, 1.0)
        cur = tones[int(rng.choice(len(tones), p=w / w.sum()))]
        pitches[i] = cur
    prev = pitches[0]
    for i in range(len(onsets)):  # passing and neighbour notes between them
        if pitches[i] is not None:
            prev = pitches[i]
            continue
        nxt = next((p for p in pitches[i + 1:] if p is not None), prev)
        scale = _scale_pitches(key, mode, int(plan[slot_of[i]]["degree"]), lo, hi)
        j = min(range(len(scale)), key=lambda k: abs(scale[k] - prev))
        jt = min(range(len(scale)), key=lambda k: abs(scale[k] - nxt))
        if abs(jt - j) > 1:
            j += 1 if jt > j else -1  # a passing note towards the next chord tone
        else:
            j += 1 if (jt < j or (jt == j and rng.random() < 0.5)) else -1  # a neighbour
        prev = scale[min(max(j, 0), len(scale) - 1)]
        pitches[i] = prev
    rows = []
    for i, (t, _) in enumerate(onsets):
        bar_end = (t // bar_ticks + 1) * bar_ticks
        end = onsets[i + 1][0] if i + 1 < len(onsets) else bars * bar_ticks
        if end >= bar_end and (t // bar_ticks) % PHRASE_BARS == PHRASE_BARS - 1:
            end = bar_end - 2  # a breath at the phrase end
        rows.append((t, end, pitches[i], g.velocity + (8 if t % bar_ticks == 0 else 0)))
    return _notes(rows, MELODY)


def _notes(rows, voice):
    """A voice's notes from (start, end, pitch, velocity) rows, normalised."""
    notes = np.zeros(len(rows), NOTE_DTYPE)
    for i, (a, b, p, v) in enumerate(rows):
        notes[i] = (a, b, p, max(1, min(127, v)), voice)
    return normalise(notes)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m engine.arranger",
                                description=__doc__.split("\n")[0])
    p.add_argument("--key", default="C", choices=KEY_SPELLINGS, help="tonic (default C)")
    p.add_argument("--mode", default="major", choices=MODES)
    p.add_argument("--groove", default="explore", choices=list(GROOVES),
                   help="the preset whose groove plays (default explore)")
    p.add_argument("--bars", type=int, default=None,
                   help="bars (default: the melody's, or 8)")
    p.add_argument("--beats-per-bar", type=int, default=4)
    p.add_argument("--chords-per-bar", type=int, default=1, choices=(1, 2))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--melody", help="a .mid whose (non-drum) notes are the melody to harmonize")
    p.add_argument("--bpm", type=float, help="tempo written (default: the preset's)")
    p.add_argument("--out", required=True, help="the .mid to write")
    args = p.parse_args(argv)
    melody = read_midi(args.melody, TICKS_PER_BEAT) if args.melody else None
    try:
        arr = arrange(parse_key(args.key), MODES.index(args.mode), args.bars, args.beats_per_bar,
                      melody, args.groove, args.seed, args.chords_per_bar)
    except InvalidMessage as exc:
        p.error(f"{exc.field}: {exc}")
    write_ensemble_midi(arr.notes, args.out, args.bpm or GROOVES[args.groove].bpm, args.beats_per_bar)
    counts = ", ".join(f"{VOICES[v]} {len(arr.voice(v))}" for v in range(len(VOICES)))
    print(f"{KEY_NAMES[arr.key]} {MODES[arr.mode]}, {arr.groove}, {arr.bars} bars: "
          f"{' '.join(arr.chord_names())}")
    print(f"notes: {counts} -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
