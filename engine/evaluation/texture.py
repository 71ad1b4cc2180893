"""Figures of a multi-voice texture: how the voices of an ensemble piece sound together.

An ensemble piece is a ``NOTE_DTYPE`` array in ticks (``ticks_per_beat``, 12 by default)
whose ``channel`` holds the voice id (``engine.ensemble``: MELODY, BASS, HARMONY, DRUMS),
with bar lines at multiples of ``beats_per_bar`` beats from tick 0.  Each figure is a share
or a rate of one piece (NaN where the piece has nothing to measure); drums never count
towards pitch figures (their pitch is an instrument).

- ``strong_beat_consonance``: the share of pitched note pairs sounding together at strong
  beats whose interval is consonant.
- ``estimate_chords`` / ``bass_root_share``: a chord per beat from all pitched voices, and
  how often the bass plays its root on strong beats (or a given harmonic plan's root).
- ``crossings``: the share of ticks where the voices sound out of their order.
- ``drum_figures``: drum onsets per bar, backbeat share, bar-to-bar repetition.
- ``voice_density`` / ``density_adherence``: onsets per beat per voice, against a request.
- ``texture_key`` / ``key_accuracy``: key and mode of the pitched voices by music21.
"""
import numpy as np

from engine.ensemble import BASS, DRUMS, HARMONY, MELODY, PITCHED, VOICES
from engine.errors import InvalidMessage
from engine.evaluation.judges import adherence, confusion, music21_key

#: Interval classes (semitones mod 12) consonant between any two notes: unison/octave,
#: minor and major third, perfect fifth, minor and major sixth.
CONSONANT = frozenset((0, 3, 4, 7, 8, 9))
#: The perfect fourth: consonant between two upper voices, dissonant against the bass
#: (common-practice rule: the 6/4 chord's fourth above the bass must resolve).
FOURTH = 5
#: Chord qualities matched: intervals above the root.
QUALITIES = (("major", (0, 4, 7)), ("minor", (0, 3, 7)), ("diminished", (0, 3, 6)))
QUALITY_NAMES = tuple(q for q, _ in QUALITIES)
#: General MIDI snare family: side stick, acoustic snare, hand clap, electric snare.
SNARES = frozenset((37, 38, 39, 40))


def _check(notes, beats_per_bar, ticks_per_beat):
    notes = np.asarray(notes)
    if notes.dtype.names is None or "channel" not in notes.dtype.names:
        raise InvalidMessage("an ensemble piece must be a NOTE_DTYPE array",
                             field="notes", allowed="engine.notes.NOTE_DTYPE")
    if int(beats_per_bar) < 1 or int(ticks_per_beat) < 1:
        raise InvalidMessage(f"beats_per_bar {beats_per_bar}, ticks_per_beat {ticks_per_beat}",
                             field="beats_per_bar", allowed="positive integers")
    bad = sorted(set(notes["channel"].tolist()) - set(range(len(VOICES))))
    if bad:
        raise InvalidMessage(f"channel holds {bad}, not voice ids", field="channel",
                             allowed=f"voice ids 0..{len(VOICES) - 1} ({', '.join(VOICES)})")
    return notes


def pitched(notes):
    """The notes of the pitched voices (melody, bass, harmony): drums left out."""
    return notes[np.isin(notes["channel"], PITCHED)]


def strong_beats(beats_per_bar):
    """Strong beats of a bar, 0-based: the downbeat, and the middle beat of an even bar of
    four or more beats (beats 1 and 3 of 4/4, 1 and 4 of 6 beats); 2/4 and 3/4 have beat 1
    only."""
    b = int(beats_per_bar)
    return (0, b // 2) if b % 2 == 0 and b >= 4 else (0,)


def strong_ticks(notes, beats_per_bar=4, ticks_per_beat=12):
    """Ticks of the strong beats from the first bar with a note to the last note's end."""
    if len(notes) == 0:
        return np.empty(0, np.int64)
    bar = beats_per_bar * ticks_per_beat
    first, last = int(notes["start"].min()) // bar, int(notes["end"].max())
    bars = np.arange(first, -(-last // bar)) * bar
    t = (bars[:, None] + np.array(strong_beats(beats_per_bar)) * ticks_per_beat).ravel()
    return t[t < last]


def sounding(notes, tick):
    """Mask of the notes sounding at ``tick`` (struck then or held over it)."""
    return (notes["start"] <= tick) & (notes["end"] > tick)


# -- consonance --------------------------------------------------------------------------
def consonance_counts(notes, beats_per_bar=4, ticks_per_beat=12):
    """(consonant pairs, pairs) of pitched notes sounding together at strong beats.

    Every pair of distinct notes counts (two voices on one pitch are a unison); the
    interval class is the distance mod 12.  A fourth is consonant unless its lower note is
    the bass, the lowest pitch sounding at that tick."""
    notes = pitched(_check(notes, beats_per_bar, ticks_per_beat))
    good = total = 0
    for t in strong_ticks(notes, beats_per_bar, ticks_per_beat):
        p = np.sort(notes["pitch"][sounding(notes, t)].astype(int))
        if len(p) < 2:
            continue
        i, j = np.triu_indices(len(p), 1)          # p[i] <= p[j]: i is the lower note
        ic = (p[j] - p[i]) % 12
        ok = np.isin(ic, list(CONSONANT)) | ((ic == FOURTH) & (p[i] > p[0]))
        good += int(ok.sum())
        total += len(ic)
    return good, total


def strong_beat_consonance(notes, beats_per_bar=4, ticks_per_beat=12):
    """Share of pitched note pairs at strong beats that are consonant (NaN: no pairs)."""
    good, total = consonance_counts(notes, beats_per_bar, ticks_per_beat)
    return good / total if total else float("nan")


# -- chords and the bass -----------------------------------------------------------------
def chord_of(weights):
    """(root pitch class, quality name) of the triad template holding most of the
    duration-weighted pitch classes ``weights`` (12 values), or None for silence.

    Ties (C-E fits C major and A minor) go to the template whose root sounds longer, then
    to major, minor, diminished in that order."""
    w = np.asarray(weights, float)
    if w.sum() <= 0:
        return None
    best, key = None, None
    for qi, (name, iv) in enumerate(QUALITIES):
        for root in range(12):
            k = (w[[(root + i) % 12 for i in iv]].sum(), w[root], -qi, -root)
            if key is None or k > key:
                best, key = (root, name), k
    return best


def estimate_chords(notes, beats_per_bar=4, ticks_per_beat=12, chord_beats=1):
    """The estimated chord of each span of ``chord_beats`` beats from tick 0 (a list; None
    where no pitched voice sounds): ``chord_of`` the pitch classes of all pitched voices,
    each weighted by the ticks it sounds inside the span."""
    notes = pitched(_check(notes, beats_per_bar, ticks_per_beat))
    if len(notes) == 0:
        return []
    span = int(chord_beats * ticks_per_beat)
    if span < 1:
        raise InvalidMessage(f"chord_beats {chord_beats}", field="chord_beats",
                             allowed="a positive number of beats")
    n = -(-int(notes["end"].max()) // span)
    w = np.zeros((n, 12))
    for s, e, p in zip(notes["start"].tolist(), notes["end"].tolist(), notes["pitch"].tolist()):
        for k in range(s // span, -(-e // span)):
            w[k, p % 12] += min(e, (k + 1) * span) - max(s, k * span)
    return [chord_of(row) for row in w]


def plan_chord_at(plan, tick):
    """The chord of an explicit harmonic plan at ``tick``, (root, quality name), or None
    before the first chord.  ``plan`` is sorted by start, each chord holding until the
    next: a structured array with fields start, root, quality (``engine.arranger``'s
    PLAN_DTYPE, quality an index into QUALITY_NAMES), or (start tick, root pitch class,
    quality) tuples."""
    names = getattr(getattr(plan, "dtype", None), "names", None)
    if names:
        starts, roots, quals = plan["start"], plan["root"], plan["quality"]
    else:
        starts, roots, quals = ([c[i] for c in plan] for i in range(3))
    i = int(np.searchsorted(np.asarray(starts, np.int64), tick, "right")) - 1
    if i < 0:
        return None
    q = quals[i]
    return int(roots[i]) % 12, QUALITY_NAMES[int(q)] if not isinstance(q, str) else q


def bass_root_share(notes, beats_per_bar=4, ticks_per_beat=12, plan=None, chord_beats=1):
    """Share of the bass voice's onsets on strong beats whose pitch class is the chord's
    root, and which chords were used: ``dict(share, onsets, source)``.

    The chord is the explicit ``plan``'s (see ``plan_chord_at``; source "plan") when one is
    given, else ``estimate_chords``' for the span holding the onset (source "estimated").
    Of bass notes struck together (octaves) the lowest counts; onsets without a chord are
    left out.  share is NaN without a counted onset."""
    notes = _check(notes, beats_per_bar, ticks_per_beat)
    strong = set(strong_ticks(notes, beats_per_bar, ticks_per_beat).tolist())
    bass = notes[notes["channel"] == BASS]
    lowest = {}
    for s, p in zip(bass["start"].tolist(), bass["pitch"].tolist()):
        if s in strong:
            lowest[s] = min(p, lowest.get(s, 128))
    if plan is None:
        chords = estimate_chords(notes, beats_per_bar, ticks_per_beat, chord_beats)
        span = int(chord_beats * ticks_per_beat)
        chord_at = lambda t: chords[t // span] if t // span < len(chords) else None  # noqa: E731
    else:
        chord_at = lambda t: plan_chord_at(plan, t)  # noqa: E731
    hits = [p % 12 == c[0] for t, p in sorted(lowest.items()) if (c := chord_at(t)) is not None]
    return dict(share=float(np.mean(hits)) if hits else float("nan"), onsets=len(hits),
                source="plan" if plan is not None else "estimated")


# -- voice crossings ---------------------------------------------------------------------
def _extremes(notes, voice, span):
    """Per tick, the voice's highest and lowest sounding pitch (-1 and 999 when silent)."""
    hi, lo = np.full(span, -1), np.full(span, 999)
    sel = notes[notes["channel"] == voice]
    for s, e, p in zip(sel["start"].tolist(), sel["end"].tolist(), sel["pitch"].tolist()):
        np.maximum(hi[s:e], p, out=hi[s:e])
        np.minimum(lo[s:e], p, out=lo[s:e])
    return hi, lo


def crossings(notes, beats_per_bar=4, ticks_per_beat=12):
    """Shares of ticks with voices out of order, each among the ticks where both of its
    voices sound: ``melody_below_harmony`` (the melody's top below the harmony's top),
    ``bass_above_harmony`` (the bass's lowest above the harmony's lowest),
    ``bass_above_melody`` (the bass's lowest above the melody's lowest), and ``any``: ticks
    with any of the three among ticks where any of the three pairs sounds.  A unison is not
    a crossing; NaN where a pair never sounds together."""
    notes = _check(notes, beats_per_bar, ticks_per_beat)
    if len(notes) == 0:
        return dict(melody_below_harmony=float("nan"), bass_above_harmony=float("nan"),
                    bass_above_melody=float("nan"), any=float("nan"))
    span = int(notes["end"].max())
    mh, ml = _extremes(notes, MELODY, span)
    bh, bl = _extremes(notes, BASS, span)
    hh, hl = _extremes(notes, HARMONY, span)
    m_on, b_on, h_on = mh >= 0, bh >= 0, hh >= 0
    pairs = dict(melody_below_harmony=(m_on & h_on, mh < hh),
                 bass_above_harmony=(b_on & h_on, bl > hl),
                 bass_above_melody=(b_on & m_on, bl > ml))
    out = {k: float((cross & both).sum() / both.sum()) if both.any() else float("nan")
           for k, (both, cross) in pairs.items()}
    both = np.zeros(span, bool)
    cross = np.zeros(span, bool)
    for b, c in pairs.values():
        both |= b
        cross |= b & c
    out["any"] = float(cross.sum() / both.sum()) if both.any() else float("nan")
    return out


# -- drums -------------------------------------------------------------------------------
def bar_count(notes, beats_per_bar=4, ticks_per_beat=12):
    """Bars the piece spans: from the bar of its first onset to the bar of its last end."""
    if len(notes) == 0:
        return 0
    bar = beats_per_bar * ticks_per_beat
    return -(-int(notes["end"].max()) // bar) - int(notes["start"].min()) // bar


def drum_figures(notes, beats_per_bar=4, ticks_per_beat=12):
    """The drum voice's figures: ``onsets_per_bar`` (drum onsets over the bars the whole
    piece spans), ``backbeat`` (share of snare-family hits, GM 37-40, struck exactly on
    beats 2, 4, ... of the bar) and ``repetition`` (share of bars whose drum pattern, the
    set of (tick in bar, instrument), equals the previous bar's, over consecutive pairs
    where either bar has drums).  NaN where a figure has nothing to count."""
    notes = _check(notes, beats_per_bar, ticks_per_beat)
    drums = notes[notes["channel"] == DRUMS]
    bars = bar_count(notes, beats_per_bar, ticks_per_beat)
    bar = beats_per_bar * ticks_per_beat
    out = dict(onsets_per_bar=len(drums) / bars if bars else float("nan"))
    snare = drums[np.isin(drums["pitch"], list(SNARES))]
    pos = snare["start"] % bar
    back = (pos % ticks_per_beat == 0) & ((pos // ticks_per_beat) % 2 == 1)
    out["backbeat"] = float(back.mean()) if len(snare) else float("nan")
    patterns = {}
    for s, p in zip(drums["start"].tolist(), drums["pitch"].tolist()):
        patterns.setdefault(s // bar, set()).add((s % bar, p))
    if patterns:
        lo, hi = min(patterns), max(patterns)
        same = [patterns.get(b) == patterns.get(b - 1) for b in range(lo + 1, hi + 1)
                if b in patterns or b - 1 in patterns]
        out["repetition"] = float(np.mean(same)) if same else float("nan")
    else:
        out["repetition"] = float("nan")
    return out


# -- density -----------------------------------------------------------------------------
def voice_density(notes, beats_per_bar=4, ticks_per_beat=12):
    """Onsets per beat of each voice ({voice name: rate}; every note of a chord counts, as
    the density control counts), over the beats from the piece's first onset to its last
    end; NaN for an empty piece."""
    notes = _check(notes, beats_per_bar, ticks_per_beat)
    beats = (int(notes["end"].max()) - int(notes["start"].min())) / ticks_per_beat \
        if len(notes) else 0
    return {name: (int((notes["channel"] == v).sum()) / beats if beats else float("nan"))
            for v, name in enumerate(VOICES)}


def density_adherence(pieces, asked, beats_per_bar=4, ticks_per_beat=12):
    """Realised against asked density per voice: ``asked`` gives each piece a dict
    {voice name: onsets per beat} (voices left out are not scored).  Per voice: the mean
    asked and realised rates, the mean absolute error and the mean realised / asked ratio."""
    if len(pieces) != len(asked):
        raise InvalidMessage(f"{len(asked)} density requests for {len(pieces)} pieces",
                             field="asked", allowed="one {voice: density} dict per piece")
    got = [voice_density(n, beats_per_bar, ticks_per_beat) for n in pieces]
    out = {}
    for name in VOICES:
        pairs = [(a[name], g[name]) for a, g in zip(asked, got) if name in a]
        if not pairs:
            continue
        a, g = np.array(pairs, float).T
        pos = a > 0
        out[name] = dict(asked=float(a.mean()), realised=float(np.nanmean(g)),
                         abs_error=float(np.nanmean(np.abs(g - a))),
                         ratio=float(np.nanmean(g[pos] / a[pos])) if pos.any() else float("nan"),
                         pieces=len(pairs))
    return out


# -- key ---------------------------------------------------------------------------------
def texture_key(notes, ticks_per_beat=12):
    """(tonic, mode) of the pitched voices together by music21's key analysis
    (``engine.evaluation.judges.music21_key``), or None for a piece without pitched notes."""
    return music21_key(pitched(np.asarray(notes)), ticks_per_beat)


def key_accuracy(pieces, keys_asked, ticks_per_beat=12):
    """Shares of pieces whose music21 texture key matches the key asked (24 keys: tonic
    and mode), the mode only, the tonic only; with what was heard instead (``confusion``).
    A piece asked None (a real piece without an annotated key) is left out."""
    if len(pieces) != len(keys_asked):
        raise InvalidMessage(f"{len(keys_asked)} keys for {len(pieces)} pieces",
                             field="keys", allowed="one (tonic, mode) or None per piece")
    asked = [(k[0] % 12, k[1]) for k in keys_asked if k is not None]
    heard = [texture_key(n, ticks_per_beat) for n, k in zip(pieces, keys_asked) if k is not None]
    out = adherence(asked, heard)
    out["confusion"] = confusion(asked, heard)
    out["pieces"] = len(asked)
    out["left_out"] = len(pieces) - len(asked)
    return out
