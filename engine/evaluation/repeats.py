"""Form's figures: how often a line repeats a bar, a phrase, and at what distance.

Real music states a figure, repeats it and returns to it.  Three figures say how much,
per line of a piece, over its 8-bar windows (``window_bars``; bars of ``beats_per_bar``
beats; the windows follow each other from the piece's first bar line at or after its
first note, so a pickup is left out and a window is a phrase of the tune):

- **bar-repeat rate**: the share of bars 2..8 of a window whose pattern equals that of an
  earlier bar of the window (any earlier bar, not only the one before); a bar with no
  onset is not counted;
- **phrase-repeat rate**: the share of windows whose second 4-bar phrase (``phrase_bars``)
  repeats the first: at least ``near`` (75 %) of the bar pairs that sound are equal;
- **self-similarity profile**: for a lag of d = 1..7 bars, the mean similarity (Jaccard of
  their patterns) of bars i and i + d where both sound; real music peaks at 2 and 4.

A bar's **pattern** (``bar_patterns``) is a set: for a pitched line, one element per onset,
(tick in the bar, interval in semitones from the onset before it in the bar; None for the
bar's first): the same rhythm and intervals, whatever the transposition.  A line is the
top note of each onset (a melody, one-line music, the harmony), the lowest for the bass
(``texture_critic._line``); the drums keep every hit, (tick, pitch): a drum's pitch is its
instrument.  Two bars are equal when their patterns are.

``engine.evaluation.form`` applies them to held-out real music and to the sampler's.
"""
import numpy as np

from engine.ensemble import BASS, DRUMS, HARMONY, MELODY
from engine.evaluation.texture_critic import _line
from engine.metrics import interval

#: The lines measured: name -> (voices, how a line is read: "top", "bottom" or "hits").
ONE_LINE = {"line": (None, "top")}
ENSEMBLE_LINES = {"melody": ((MELODY,), "top"), "bass": ((BASS,), "bottom"),
                  "harmony": ((HARMONY,), "top"), "drums": ((DRUMS,), "hits"),
                  "top": ((MELODY, BASS, HARMONY), "top")}


def bar_patterns(notes, bar, first, n, how="top"):
    """The pattern (a frozenset) of each of the ``n`` bars from bar ``first`` of ``notes``:
    pitched lines (``how`` "top" or "bottom": the top or lowest note of each onset) as
    (tick in the bar, interval from the onset before in the bar, None for the first);
    "hits" as (tick in the bar, pitch) of every note.  An empty set: no onset."""
    out = [set() for _ in range(n)]
    lo, hi = first * bar, (first + n) * bar
    sel = notes[(notes["start"] >= lo) & (notes["start"] < hi)]
    if how == "hits":
        for s, p in zip(sel["start"].tolist(), sel["pitch"].tolist()):
            out[(s - lo) // bar].add((s % bar, p))
        return [frozenset(x) for x in out]
    if len(sel):
        starts, pitches = np.unique(sel["start"]), _line(sel, top=how == "top")
        last = {}
        for s, p in zip(starts.tolist(), pitches.tolist()):
            b = (s - lo) // bar
            out[b].add((s % bar, None if b not in last else p - last[b]))
            last[b] = p
    return [frozenset(x) for x in out]


def bar_repeats(patterns):
    """(repeated, counted): bars 2.. of a window that sound, and those whose pattern equals
    an earlier bar's."""
    counted = [i for i in range(1, len(patterns)) if patterns[i]]
    return sum(patterns[i] in patterns[:i] for i in counted), len(counted)


def phrase_repeat(patterns, phrase=4, near=0.75):
    """Whether the second ``phrase``-bar phrase repeats the first: at least ``near`` of the
    bar pairs where either sounds are equal; None when no pair sounds."""
    pairs = [(patterns[k], patterns[k + phrase]) for k in range(phrase)
             if patterns[k] or patterns[k + phrase]]
    return None if not pairs else sum(a == b for a, b in pairs) >= near * len(pairs)


def jaccard(a, b):
    """|a & b| / |a | b| of two patterns; None when either is empty (a bar not counted)."""
    return len(a & b) / len(a | b) if a and b else None


def line_figures(notes, how, first, windows, cfg):
    """One line's figures over ``windows`` windows from bar ``first``: bar_repeat (pooled
    over the windows), phrase_repeat, similarity (per lag 1..window_bars-1); NaN where
    nothing was counted."""
    bar = cfg.beats_per_bar * cfg.ticks_per_beat
    rep = cnt = 0
    phrases, sims = [], [[] for _ in range(cfg.window_bars - 1)]
    for w in range(windows):
        pats = bar_patterns(notes, bar, first + w * cfg.window_bars, cfg.window_bars, how)
        r, c = bar_repeats(pats)
        rep, cnt = rep + r, cnt + c
        p = phrase_repeat(pats[:2 * cfg.phrase_bars], cfg.phrase_bars, cfg.near)
        if p is not None:
            phrases.append(p)
        for d in range(1, cfg.window_bars):
            sims[d - 1] += [j for j in (jaccard(pats[i], pats[i + d])
                                        for i in range(cfg.window_bars - d)) if j is not None]
    nan = float("nan")
    return dict(bar_repeat=rep / cnt if cnt else nan, bars=cnt,
                phrase_repeat=float(np.mean(phrases)) if phrases else nan,
                similarity=[float(np.mean(s)) if s else nan for s in sims])


def span(notes, cfg, max_windows=None):
    """(first bar, windows) of a real piece (bar lines at multiples of the bar from tick 0):
    its whole windows from the first bar line at or after its first note, at most
    ``max_windows``."""
    bar = cfg.beats_per_bar * cfg.ticks_per_beat
    if not len(notes):
        return 0, 0
    first = -(-int(notes["start"].min()) // bar)
    windows = max(0, (-(-int(notes["end"].max()) // bar) - first) // cfg.window_bars)
    return first, windows if max_windows is None else min(windows, max_windows)


def piece_figures(notes, lines, cfg, where):
    """{line: ``line_figures``} of a piece over the windows ``where`` = (first bar, windows)
    says (``span`` for real music; (0, its bars // window_bars) for a generated piece, whose
    form starts at tick 0), and ``windows``."""
    first, windows = where
    out = dict(windows=windows)
    for name, (voices, how) in lines.items():
        sel = notes if voices is None else notes[np.isin(notes["channel"], voices)]
        out[name] = line_figures(sel, how, first, windows, cfg)
    return out


FIGURES = ("bar_repeat", "phrase_repeat")


def set_figures(per_piece, lines, cfg):
    """Each line's figures over a set of pieces (``piece_figures`` each, pieces with no
    window left out): each figure's mean over pieces, its 95 % t-interval and n (pieces
    measured), the similarity profile's means, and windows."""
    per_piece = [f for f in per_piece if f["windows"]]
    out = dict(pieces=len(per_piece), windows=sum(f["windows"] for f in per_piece))
    for name in lines:
        row = {}
        for fig in FIGURES:
            iv = interval([f[name][fig] for f in per_piece])
            row[fig] = dict(mean=iv["mean"], lo=iv["lo"], hi=iv["hi"],
                            n=sum(s is not None for s in iv["seeds"]))
        sims = np.array([f[name]["similarity"] for f in per_piece]).reshape(-1, cfg.window_bars - 1)
        row["similarity"] = [None if np.isnan(c).all() else float(np.nanmean(c)) for c in sims.T]
        out[name] = row
    return out


def over_seeds(sets, lines):
    """Figures of one set per seed (``set_figures``) as a mean and 95 % t-interval over the
    seeds, the profile's means likewise."""
    out = dict(pieces=sets[0]["pieces"], windows=sets[0]["windows"], seeds=len(sets))
    for name in lines:
        row = {fig: interval([s[name][fig]["mean"] for s in sets]) for fig in FIGURES}
        row["similarity"] = [interval([s[name]["similarity"][d] for s in sets])["mean"]
                             for d in range(len(sets[0][name]["similarity"]))]
        out[name] = row
    return out
