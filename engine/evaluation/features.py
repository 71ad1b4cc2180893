"""Features of pieces, and how far a generated set lies from held-out music in them.

Duration-weighted pitch classes relative to each piece's detected tonic, pitch range
per piece, inter-onset intervals, note lengths and simultaneous voices, each as a
histogram; two sets compared by histogram intersection (1: the same) and Jensen-Shannon
divergence (0 bits: the same).  Numpy only: what ``ostinato eval`` and ``ostinato
quality`` measure of the notes, apart from the models that made them.
"""
import numpy as np

from engine.evaluation.judges import detect_key

IOI_MAX = 48     # inter-onset histogram bins 1..48 ticks; longer gaps fall in the last
RANGE_MAX = 48   # pitch-range histogram bins 0..48 semitones; wider falls in the last
LENGTH_FINE_BEATS = 4   # note-length bins: one per tick up to 4 beats,
LENGTH_MAX_BEATS = 16   # then one per beat up to 16 beats; longer falls in the last
VOICES_MAX = 16  # simultaneous-voice bins 0..16; more falls in the last


# -- comparing histograms ----------------------------------------------------------------
def histogram_intersection(p, q):
    """Sum of the bin-wise minimum of two histograms, each normalised: 1 is identical."""
    p, q = _normalised(p), _normalised(q)
    return float(np.minimum(p, q).sum()) if p is not None and q is not None else float("nan")


def js_divergence(p, q):
    """Jensen-Shannon divergence in bits (0 identical, 1 disjoint); needs no smoothing."""
    p, q = _normalised(p), _normalised(q)
    if p is None or q is None:
        return float("nan")
    m = (p + q) / 2

    def kl(a):
        nz = a > 0
        return float((a[nz] * np.log2(a[nz] / m[nz])).sum())
    return max(0.0, (kl(p) + kl(q)) / 2)


def _normalised(h):
    h = np.asarray(h, float)
    s = h.sum()
    return h / s if s > 0 else None


# -- features of pieces ------------------------------------------------------------------
def onsets_per_beat(notes, beats):
    """Realised density: note onsets (every note of a chord counts) per beat."""
    return len(notes) / beats


def pitch_class_histogram(pieces, mode=None):
    """Duration-weighted pitch classes relative to each piece's detected tonic (12 bins);
    with ``mode`` given, only pieces detected in that mode."""
    h = np.zeros(12)
    for n in pieces:
        k = detect_key(n)
        if k is None or (mode is not None and k[1] != mode):
            continue
        np.add.at(h, (n["pitch"].astype(int) - k[0]) % 12, (n["end"] - n["start"]).astype(float))
    return h


def range_histogram(pieces):
    """Pitch range (highest - lowest, semitones) per piece: bins 0..RANGE_MAX."""
    r = [int(n["pitch"].max()) - int(n["pitch"].min()) for n in pieces if len(n)]
    return np.bincount(np.minimum(r, RANGE_MAX), minlength=RANGE_MAX + 1).astype(float)


def ioi_histogram(pieces):
    """Gaps between successive distinct onsets, in ticks: bins 1..IOI_MAX (index 0 unused)."""
    gaps = [np.diff(np.unique(n["start"])) for n in pieces if len(n) > 1]
    g = np.concatenate(gaps) if gaps else np.empty(0, int)
    return np.bincount(np.minimum(g, IOI_MAX), minlength=IOI_MAX + 1)[1:].astype(float)


def length_edges(ticks_per_beat=12):
    """Left edges (beats) of the note-length bins: a tick each up to LENGTH_FINE_BEATS,
    a beat each up to LENGTH_MAX_BEATS; the last bin is open (that long or longer)."""
    fine = np.arange(1, LENGTH_FINE_BEATS * ticks_per_beat) / ticks_per_beat
    return np.concatenate([fine, np.arange(LENGTH_FINE_BEATS, LENGTH_MAX_BEATS + 1)])


def note_lengths(pieces, ticks_per_beat=12):
    """Every note's length in beats, all pieces together."""
    d = [(n["end"] - n["start"]) / ticks_per_beat for n in pieces if len(n)]
    return np.concatenate(d) if d else np.empty(0)


def length_histogram(pieces, ticks_per_beat=12):
    """Note lengths in beats over ``length_edges`` bins (counts of notes)."""
    edges = length_edges(ticks_per_beat)
    i = np.searchsorted(edges, note_lengths(pieces, ticks_per_beat) + 1e-9, "right") - 1
    return np.bincount(np.clip(i, 0, len(edges) - 1), minlength=len(edges)).astype(float)


def voice_counts(notes):
    """Notes sounding at each tick from 0 to the last note's end (rests count as 0)."""
    if len(notes) == 0:
        return np.empty(0, np.int64)
    span = int(notes["end"].max())
    d = np.zeros(span + 1, np.int64)
    np.add.at(d, notes["start"], 1)
    np.add.at(d, notes["end"], -1)
    return np.cumsum(d)[:span]


def voices_histogram(pieces):
    """Ticks with 0, 1, ..., VOICES_MAX (or more) notes sounding, all pieces together."""
    v = [np.minimum(voice_counts(n), VOICES_MAX) for n in pieces if len(n)]
    v = np.concatenate(v) if v else np.empty(0, np.int64)
    return np.bincount(v, minlength=VOICES_MAX + 1).astype(float)


def quantiles(x):
    """p50, p90, max and mean of the values (NaN each when there are none)."""
    x = np.asarray(x, float)
    if len(x) == 0:
        return dict(p50=float("nan"), p90=float("nan"), max=float("nan"), mean=float("nan"))
    return dict(p50=float(np.percentile(x, 50)), p90=float(np.percentile(x, 90)),
                max=float(x.max()), mean=float(x.mean()))


def texture(generated, held_out, ticks_per_beat=12):
    """Note lengths (beats) and simultaneous voices, generated vs held out: quantiles
    (p50, p90, max, mean), histograms and their overlap."""
    out = {}
    for name, hist, values in (
            ("note_length", lambda ps: length_histogram(ps, ticks_per_beat),
             lambda ps: note_lengths(ps, ticks_per_beat)),
            ("voices", voices_histogram,
             lambda ps: np.concatenate([voice_counts(n) for n in ps if len(n)] or [[]]))):
        g, h = hist(generated), hist(held_out)
        out[name] = dict(
            generated=dict(quantiles(values(generated)), histogram=_share(g)),
            held_out=dict(quantiles(values(held_out)), histogram=_share(h)),
            intersection=histogram_intersection(g, h), js_bits=js_divergence(g, h))
    out["note_length"]["bin_edges_beats"] = length_edges(ticks_per_beat).round(4).tolist()
    out["voices"]["bins"] = list(range(VOICES_MAX + 1))
    return out


def _share(h):
    return (_normalised(h) if h.sum() else h).round(4).tolist()


def overlap(generated, held_out, ticks_per_beat=12):
    """Intersection and JS divergence of each feature histogram, generated vs held out."""
    feats = dict(
        pitch_class=lambda ps: pitch_class_histogram(ps),
        pitch_class_major=lambda ps: pitch_class_histogram(ps, mode=0),
        pitch_class_minor=lambda ps: pitch_class_histogram(ps, mode=1),
        pitch_range=range_histogram,
        ioi=ioi_histogram,
        note_length=lambda ps: length_histogram(ps, ticks_per_beat),
        voices=voices_histogram)
    out = {}
    for name, f in feats.items():
        g, h = f(generated), f(held_out)
        out[name] = dict(intersection=histogram_intersection(g, h), js_bits=js_divergence(g, h),
                         generated=_share(g), held_out=_share(h))
    return out


def overlap_pitch_class(generated, held_out):
    """Pitch-class (relative to the detected tonic) overlap: intersection, JS bits."""
    g, h = pitch_class_histogram(generated), pitch_class_histogram(held_out)
    return dict(intersection=histogram_intersection(g, h), js_bits=js_divergence(g, h))
