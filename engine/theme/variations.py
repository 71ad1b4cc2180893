"""How a theme model varies a theme, measured on held-out themes through the sampler
that plays (``engine.generate`` on the numba runtime, the encoder in numba).

- **Themes**: held-out phrases of exactly 2 and 4 bars (``engine.theme.data.Phrases``: at bar
  lines of the test pieces), each read as a game would send it (``engine.motif``: its key
  measured, moved to C and back), so the pipeline measured is the one that serves.
- **Reconstruction at variation 0**: the first ``bars`` bars composed from z = mu against
  the theme: the share of the theme's notes played at the same onset and pitch
  ("free-running note accuracy"), and the share of the onsets alone.
- **The variation curve**: 8 bars composed at each ``variation``; similarity to the theme
  is the share of its melodic-interval and its rhythm (inter-onset) 3-grams that occur in
  the piece, averaged; novelty is the share of the piece's 3-grams that are not the
  theme's.  Spearman of similarity against variation says whether the control is monotone.
  Spearman is reported over every piece (themes differ in how similar anything is to
  them, so this is the strict one), within each theme (the mean of the per-theme
  Spearmans over its pieces) and of the curve itself (the mean per variation).
- **Musicality along the curve**: at each variation, the ROC AUC of a fresh critic
  (``engine.evaluation.scorers.fresh_critic_auc``, the one quality comparisons use) telling the
  pieces' 8-bar windows from the test pieces' own, one critic per seed; "kept musical"
  is an AUC within 0.05 of free composition's (variation 1, z = 0).
- **The baseline**: the plain generator primed with the theme's tokens (fed, not played)
  composing the same 8 bars, at temperatures 0.7..1.3 for its own curve, so both sit on
  one similarity-novelty plane.
- **Interpolation**: pairs of held-out themes, z moved from one's posterior mean to the
  other's along ``engine.sampler.theme.slerp`` at t = 0, 0.25, 0.5, 0.75, 1, each point
  composing the themes' length in one request (the first theme's key and mode, the
  pair's mean density and register).  The midpoints' NLL under the independent LSTM of
  ``engine.evaluation.scorers`` (trained on the valid split only) against the endpoints', and per
  pair whether the edit distance of the top line to the first theme never falls along
  the path (each point's distance the mean over seeds).

The melody compared is the top line: the highest pitch of each onset.
"""
import numpy as np

from engine.controls import KEY_NAMES, MODES, to_tonic_c
from engine.evaluation.likelihood import mean_nll
from engine.evaluation.pieces import encode, windows
from engine.evaluation.scorers import fresh_critic_auc
from engine.generate import Request, generate_many, load_weights
from engine.metrics import spearman
from engine.motif import from_notes
from engine.sampler.theme import ThemeEncoder, latent, slerp
from engine.theme.data import Phrases
from engine.theme.model import ThemeConfig

VARIATIONS = (0.0, 0.25, 0.5, 1.0)
TEMPERATURES = (0.7, 1.0, 1.3)
INTERPOLATION = (0.0, 0.25, 0.5, 0.75, 1.0)
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


def edit_distance(a, b):
    """Levenshtein distance between two sequences (insert, delete, substitute: 1 each)."""
    a, b = list(a), list(b)
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def melody_distance(theme, piece, end):
    """The edit distance between the top lines (each note a (pitch, onset) pair) of the
    theme and of the piece before tick ``end``, over the longer line's length: 0 the same
    melody, 1 nothing in common."""
    pa, ta = melody(theme)
    pb, tb = melody(piece[piece["start"] < end])
    a, b = list(zip(pa.tolist(), ta.tolist())), list(zip(pb.tolist(), tb.tolist()))
    return edit_distance(a, b) / max(len(a), len(b), 1)


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
    w, enc = load_weights(model), ThemeEncoder(model)
    mus = [enc.encode(m.tokens(w.vocab))[0] for m in motifs]
    out = {}
    for v in variations:
        reqs = [_request(m, s, theme=enc.bias(latent(mu, v), m.bars))
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


def _in_c(dataset, motif, notes):
    """A piece in a theme's key as the data is stored (key-relative: moved to C)."""
    return to_tonic_c(notes, motif.tonic) if dataset.key_relative and len(notes) else notes


def _spearmans(motifs, var, variations, seeds):
    """Spearman of similarity on variation over every piece, within each theme (mean of
    the per-theme ones that are defined) and of the curve of means."""
    sim = np.array([[[similarity(motifs[i].notes, var[v][i * len(seeds) + j])["similarity"]
                      for j in range(len(seeds))] for v in variations]
                    for i in range(len(motifs))])  # [theme, variation, seed]
    x = np.broadcast_to(np.asarray(variations, float)[None, :, None], sim.shape)
    ok = ~np.isnan(sim)
    every = spearman(x[ok], sim[ok])
    within = [spearman(x[i][ok[i]], sim[i][ok[i]]) for i in range(len(motifs))
              if ok[i].sum() >= 3 and np.ptp(sim[i][ok[i]]) > 0]
    curve = [_mean(sim[:, a].ravel()) for a in range(len(variations))]
    return dict(spearman=every, spearman_within_theme=_mean(within),
                spearman_curve=spearman(np.asarray(variations, float), np.asarray(curve)))


def _critic_aucs(dataset, motifs, var, seeds, real, cfg):
    """{variation: {"mean", "seeds"}}: a fresh critic's AUC per seed on the pieces composed
    at each variation (``engine.evaluation.scorers.fresh_critic_auc``; ``real``: the test pieces'
    windows), with each one's difference from free composition (the last variation)."""
    window = cfg.window_bars * cfg.beats_per_bar * dataset.vocab.ticks_per_beat
    out = {}
    for v, pieces in var.items():
        per = []
        for j, s in enumerate(seeds):
            fake = [windows(dataset, _in_c(dataset, m, pieces[i * len(seeds) + j]), window,
                             window) for i, m in enumerate(motifs)]
            per.append(fresh_critic_auc(dataset, real, fake, cfg, s))
        out[f"{v:g}"] = dict(mean=_mean(per), seeds=per)
    free = out[f"{max(var):g}"]["mean"]
    for r in out.values():
        r["vs_free"] = r["mean"] - free
    return out


def compose_path(model, pairs, ts=INTERPOLATION, seeds=(0,), bars=2):
    """{t: [pieces, one per (pair, seed)]}: z moved from the first theme's posterior
    mean to the second's (``slerp``), each point composing ``bars`` bars in one request
    per (pair, seed): the first theme's key and mode, the pair's mean density and
    register."""
    w, enc = load_weights(model), ThemeEncoder(model)
    mus = [(enc.encode(a.tokens(w.vocab))[0], enc.encode(b.tokens(w.vocab))[0])
           for a, b in pairs]
    out = {}
    for t in ts:
        reqs = []
        for (a, b), (ma, mb) in zip(pairs, mus):
            ra, rb = _request(a, 0), _request(b, 0)
            for s in seeds:
                reqs.append(Request(a.tonic, a.mode, (ra.density + rb.density) / 2, seed=s,
                                    register=(ra.register + rb.register) / 2,
                                    theme=enc.bias(slerp(ma, mb, t), a.bars)))
        out[t] = generate_many(w, reqs, bars)
    return out


def evaluate_interpolation(model, dataset, motifs, lm, seeds=(0, 1), ts=INTERPOLATION):
    """The interpolation figures of the module docstring for pairs of ``motifs`` (each
    with the next, ``len(motifs) // 2`` pairs) under the independent ``lm``."""
    pairs = [(motifs[i], motifs[i + 1]) for i in range(0, len(motifs) - 1, 2)]
    if not pairs:
        return dict(pairs=0)
    bars = pairs[0][0].bars
    end = bars * pairs[0][0].beats_per_bar * dataset.vocab.ticks_per_beat
    path = compose_path(model, pairs, ts, seeds, bars)
    nll = {t: mean_nll(lm, [encode(dataset, _in_c(dataset, pairs[i // len(seeds)][0], p))
                        for i, p in enumerate(pieces)]) for t, pieces in path.items()}
    dist = np.array([[_mean([melody_distance(a.notes, path[t][i * len(seeds) + j], end)
                             for j in range(len(seeds))]) for t in ts]
                     for i, (a, _) in enumerate(pairs)])  # [pair, t]
    ends = (nll[ts[0]] + nll[ts[-1]]) / 2
    mid = [t for t in ts if 0 < t < 1]
    monotone = [bool(np.all(np.diff(d) >= 0)) for d in dist if not np.isnan(d).any()]
    return dict(pairs=len(pairs), t=list(ts), nll=[nll[t] for t in ts],
                midpoint_nll=_mean([nll[t] for t in mid]), endpoint_nll=ends,
                midpoint_vs_endpoints=_mean([nll[t] for t in mid]) / ends - 1,
                distance=[_mean(dist[:, a]) for a in range(len(ts))],
                monotone_share=float(np.mean(monotone)) if monotone else np.nan)


def evaluate_variations(model, base, dataset, split="test", n=64, seeds=(0, 1),
                        variations=VARIATIONS, temperatures=TEMPERATURES, bars_out=8,
                        theme_bars=(2, 4), seed=0, quality=None, lm=None):
    """Every figure of the module docstring, JSON-ready.  ``quality``: the
    ``engine.evaluation.quality.QualityConfig`` of the critics (None: no critic AUCs); ``lm``: the
    independent LSTM (``engine.evaluation.scorers.independent_lm``; None: no interpolation)."""
    out = dict(split=split, seeds=list(seeds), order=ORDER, bars_out=bars_out)
    tpb = dataset.vocab.ticks_per_beat
    real = None
    if quality is not None:
        window = quality.window_bars * quality.beats_per_bar * tpb
        real = [windows(dataset, dataset.vocab.decode(t), window)
                for t, _ in dataset.pieces(split)]
    for k in theme_bars:
        motifs = held_out_themes(dataset, split, k, n, seed)
        if not motifs:
            out[f"{k}_bars"] = dict(themes=0)
            continue
        var = compose_variations(model, motifs, variations, seeds, bars_out)
        end = k * motifs[0].beats_per_bar * tpb
        acc = [note_accuracy(m.notes, p, end) for m, p in
               _per_piece(motifs, var[variations[0]], seeds)]
        curve = _curve(motifs, var, seeds)
        base_curve = _curve(motifs, compose_primed(base, motifs, temperatures, seeds, bars_out),
                            seeds)
        keys = sorted({f"{KEY_NAMES[m.tonic]} {MODES[m.mode]}" for m in motifs})
        r = out[f"{k}_bars"] = dict(
            themes=len(motifs), keys=len(keys),
            reconstruction=dict(variation=variations[0],
                                note_accuracy=float(np.mean([a["notes"] for a in acc])),
                                onset_accuracy=float(_mean([a["onsets"] for a in acc]))),
            variation=curve, **_spearmans(motifs, var, variations, seeds), primed=base_curve)
        if real is not None:
            r["critic_auc"] = _critic_aucs(dataset, motifs, var, seeds, real, quality)
        if lm is not None:
            r["interpolation"] = evaluate_interpolation(model, dataset, motifs, lm, seeds)
    return out
