"""How a theme model varies a theme, measured on held-out themes through the sampler
that plays (``engine.generate`` on the numba runtime, the encoder in numba).

- **Themes**: held-out phrases of exactly 2 and 4 bars (``engine.theme.Phrases``: at bar
  lines of the test pieces), each read as a game would send it (``engine.motif``: its key
  measured, moved to C and back), so the pipeline measured is the one that serves.
- **Reconstruction at variation 0**: the first ``bars`` bars composed from z = mu against
  the theme: the share of the theme's notes played at the same onset and pitch
  ("free-running note accuracy"), and the share of the onsets alone.
- **The variation curve**: 8 bars composed at each ``variation``; similarity to the theme
  is the share of its melodic-interval and its rhythm (inter-onset) 3-grams that occur in
  the piece, averaged; novelty is the share of the piece's 3-grams that are not the
  theme's.  Spearman of similarity against variation says whether the control is monotone.
- **The baseline**: the plain generator primed with the theme's tokens (fed, not played)
  composing the same 8 bars, at temperatures 0.7..1.3 for its own curve, so both sit on
  one similarity-novelty plane.

The melody compared is the top line: the highest pitch of each onset.
"""
import numpy as np

from .controls import KEY_NAMES, MODES
from .generate import Request, generate_many, load_weights
from .motif import from_notes

VARIATIONS = (0.0, 0.25, 0.5, 1.0)
TEMPERATURES = (0.7, 1.0, 1.3)
ORDER = 3


def _mean(values):
    """The mean of the values that are not NaN; NaN (and no warning) when none is."""
    v = np.asarray(values, float)
    v = v[~np.isnan(v)]
    return float(v.mean()) if len(v) else np.nan


def melody(notes):
    """(pitches, onsets) of the top line: the highest note of each onset, in time order."""
    if len(notes) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    order = np.lexsort((-notes["pitch"].astype(np.int64), notes["start"]))
    n = notes[order]
    first = np.r_[True, n["start"][1:] != n["start"][:-1]]
    return n["pitch"][first].astype(np.int64), n["start"][first].astype(np.int64)


def ngrams(seq, n=ORDER):
    """The set of n-grams (tuples) of a sequence."""
    seq = list(seq)
    return {tuple(seq[i:i + n]) for i in range(len(seq) - n + 1)}


def features(notes, n=ORDER):
    """{"interval": set of melodic-interval n-grams, "rhythm": set of inter-onset n-grams}."""
    p, t = melody(notes)
    return dict(interval=ngrams(np.diff(p).tolist(), n), rhythm=ngrams(np.diff(t).tolist(), n))


def similarity(theme, piece, n=ORDER):
    """Similarity of ``piece`` to ``theme`` (the share of the theme's n-grams heard in the
    piece, interval and rhythm averaged) and novelty (the share of the piece's n-grams
    that are not the theme's), each in 0..1; NaN where a side has no n-grams."""
    a, b = features(theme, n), features(piece, n)
    out = {}
    for k in ("interval", "rhythm"):
        out[k] = len(a[k] & b[k]) / len(a[k]) if a[k] else np.nan
        out[f"{k}_novelty"] = 1 - len(a[k] & b[k]) / len(b[k]) if b[k] else np.nan
    out["similarity"] = float(_mean([out["interval"], out["rhythm"]]))
    out["novelty"] = float(_mean([out["interval_novelty"], out["rhythm_novelty"]]))
    return out


def note_accuracy(theme, piece, end):
    """Shares of the theme's notes that the piece plays, before tick ``end``, at the same
    onset and pitch, and of the theme's onsets that it plays at all."""
    if len(theme) == 0:
        return dict(notes=np.nan, onsets=np.nan)
    p = piece[piece["start"] < end]
    heard = set(zip(p["start"].tolist(), p["pitch"].tolist()))
    onsets = set(p["start"].tolist())
    return dict(notes=float(np.mean([(a, b) in heard for a, b in
                                     zip(theme["start"].tolist(), theme["pitch"].tolist())])),
                onsets=float(np.mean([a in onsets for a in set(theme["start"].tolist())])))


def held_out_themes(dataset, split, bars, n, seed=0, cfg=None):
    """Up to n distinct held-out phrases of exactly ``bars`` bars, each as a ``Motif``
    (absolute pitches as stored: key-relative data is in C)."""
    from .theme import Phrases, ThemeConfig

    cfg = cfg or ThemeConfig()
    pool = Phrases(dataset, split, cfg)
    rows, ks = pool.pick(np.random.default_rng([seed, bars]), n, bars, replace=False)
    tpb = dataset.vocab.ticks_per_beat
    out = []
    for r, k in zip(rows, ks):
        notes = dataset.vocab.decode(pool.phrase(r, k)[0])
        rows_ = [[int(x["pitch"]), x["start"] / tpb, (x["end"] - x["start"]) / tpb]
                 for x in notes]
        if len(rows_) >= 3:
            out.append(from_notes(rows_, source=f"{split} phrase {r}"))
    return out


def _request(motif, seed, **kw):
    """A request in the theme's own key, mode, density and register."""
    beats = motif.bars * motif.beats_per_bar
    return Request(motif.tonic, motif.mode, max(0.25, len(motif.notes) / beats), seed=seed,
                   register=float(np.mean(motif.notes["pitch"])), **kw)


def compose_variations(model, motifs, variations=VARIATIONS, seeds=(0,), bars=8,
                       temperature=1.0):
    """{variation: [pieces, one per (motif, seed)]} composed by a theme model."""
    from realtime.theme import ThemeEncoder, latent

    w, enc = load_weights(model), ThemeEncoder(model)
    mus = [enc.encode(m.tokens(w.vocab))[0] for m in motifs]
    out = {}
    for v in variations:
        reqs = [_request(m, s, theme=enc.bias(latent(mu, v)))
                for m, mu in zip(motifs, mus) for s in seeds]
        out[v] = generate_many(w, reqs, bars, temperature=temperature)
    return out


def compose_primed(model, motifs, temperatures=TEMPERATURES, seeds=(0,), bars=8):
    """{temperature: [pieces]}: the plain generator primed with each theme's tokens."""
    w = load_weights(model)
    out = {}
    for t in temperatures:
        reqs = [_request(m, s, prime=m.tokens(w.vocab)) for m in motifs for s in seeds]
        out[t] = generate_many(w, reqs, bars, temperature=t)
    return out


def _per_piece(motifs, pieces, seeds):
    """(motif, piece) pairs of pieces composed one per (motif, seed), motif-major."""
    return [(m, p) for i, m in enumerate(motifs)
            for p in pieces[i * len(seeds):(i + 1) * len(seeds)]]


def _curve(motifs, pieces_by, seeds):
    """{x: mean similarity figures} over the pieces composed at each x."""
    rows = {}
    for x, pieces in pieces_by.items():
        sims = [similarity(m.notes, p) for m, p in _per_piece(motifs, pieces, seeds)]
        rows[f"{x:g}"] = {k: float(_mean([s[k] for s in sims])) for k in sims[0]}
    return rows


def evaluate_variations(model, base, dataset, split="test", n=64, seeds=(0, 1),
                        variations=VARIATIONS, temperatures=TEMPERATURES, bars_out=8,
                        theme_bars=(2, 4), seed=0):
    """Every figure of the module docstring, JSON-ready."""
    from .evaluate import spearman

    out = dict(split=split, seeds=list(seeds), order=ORDER, bars_out=bars_out)
    for k in theme_bars:
        motifs = held_out_themes(dataset, split, k, n, seed)
        if not motifs:
            out[f"{k}_bars"] = dict(themes=0)
            continue
        var = compose_variations(model, motifs, variations, seeds, bars_out)
        tpb = dataset.vocab.ticks_per_beat
        end = k * motifs[0].beats_per_bar * tpb
        acc = [note_accuracy(m.notes, p, end) for m, p in
               _per_piece(motifs, var[variations[0]], seeds)]
        curve = _curve(motifs, var, seeds)
        base_curve = _curve(motifs, compose_primed(base, motifs, temperatures, seeds, bars_out),
                            seeds)
        x = [v for v in variations for _ in motifs for _ in seeds]
        y = [similarity(m.notes, p)["similarity"] for v in variations
             for m, p in _per_piece(motifs, var[v], seeds)]
        keys = sorted({f"{KEY_NAMES[m.tonic]} {MODES[m.mode]}" for m in motifs})
        out[f"{k}_bars"] = dict(
            themes=len(motifs), keys=len(keys),
            reconstruction=dict(variation=variations[0],
                                note_accuracy=float(np.mean([a["notes"] for a in acc])),
                                onset_accuracy=float(_mean([a["onsets"] for a in acc]))),
            variation=curve, spearman=spearman(np.array(x, float), np.array(y, float)),
            primed=base_curve)
    return out
