"""The per-set texture figures and the fresh critic on 8-bar multi-voice windows.

``set_figures`` gives a set of ensemble pieces its texture figures (``engine.evaluation.texture``:
strong-beat consonance, the bass on the chord root, voice crossings, drum figures,
per-voice density, the music21 key of the texture) as means over pieces with 95 %
t-intervals.  ``critic_auc`` trains a fresh critic on 8-bar multi-voice windows:
hand-made features per window, a logistic regression (numpy) fitted on the windows of half
the pieces of each side and scored on the other half's, reported as ROC AUC (1: told
apart every time, 0.5: indistinguishable); ``real_vs_real`` puts a set against itself
(two disjoint halves of its pieces), the sanity check that should come out near 0.5.
``engine.evaluation.ensemble`` (chorales, the arranger) and
``engine.evaluation.ensemble_texture`` (the learned ensemble) judge their sets with these.
"""
from dataclasses import dataclass

import numpy as np

from engine.ensemble import BASS, DRUMS, HARMONY, MELODY, VOICES
from engine.errors import InvalidMessage
from engine.evaluation import texture as tx
from engine.metrics import interval, roc_auc

@dataclass(frozen=True)
class EnsembleEvalConfig:
    """How ensemble pieces are measured and the critic is trained."""

    ticks_per_beat: int = 12
    beats_per_bar: int = 4
    chord_beats: int = 1        # the chord is estimated per beat (a chorale's harmonic rhythm)
    window_bars: int = 8        # the critic's windows: 8 bars,
    hop_bars: int = 4           # starting every 4 bars
    splits: int = 5             # random train/test splits by piece (AUC: mean and t-interval)
    bootstrap: int = 1000       # resamples of the first split's test pieces (percentile interval)
    l2: float = 1.0             # ridge penalty of the logistic regression (standardised features)



# -- per-piece figures -------------------------------------------------------------------
def piece_figures(notes, cfg=EnsembleEvalConfig(), plan=None):
    """Every texture figure of one piece, a flat dict of numbers (NaN: nothing to measure),
    plus ``chord_source`` ("plan" or "estimated")."""
    b, t = cfg.beats_per_bar, cfg.ticks_per_beat
    root = tx.bass_root_share(notes, b, t, plan, cfg.chord_beats)
    out = dict(consonance=tx.strong_beat_consonance(notes, b, t), bass_root=root["share"])
    out.update({f"crossing_{k}": v for k, v in tx.crossings(notes, b, t).items()})
    out.update({f"drums_{k}": v for k, v in tx.drum_figures(notes, b, t).items()})
    out.update({f"density_{k}": v for k, v in tx.voice_density(notes, b, t).items()})
    out["chord_source"] = root["source"]
    return out


def _mean_interval(values):
    """Mean and 95 % t-interval over the finite values, and how many there were."""
    iv = interval(values)
    return dict(mean=iv["mean"], lo=iv["lo"], hi=iv["hi"],
                n=sum(1 for s in iv["seeds"] if s is not None))


def set_figures(pieces, cfg=EnsembleEvalConfig(), plans=None, keys=None):
    """A set's figures: each texture figure's mean over pieces with its interval, the chord
    source, and with ``keys`` (the key asked per piece) the music21 key accuracy."""
    if plans is not None and len(plans) != len(pieces):
        raise InvalidMessage(f"{len(plans)} harmonic plans for {len(pieces)} pieces",
                             field="plans", allowed="one plan (or None) per piece")
    figs = [piece_figures(n, cfg, plans[i] if plans is not None else None)
            for i, n in enumerate(pieces)]
    out = dict(pieces=len(pieces))
    for name in (k for k in (figs[0] if figs else {}) if k != "chord_source"):
        out[name] = _mean_interval([f[name] for f in figs])
    out["chord_source"] = sorted({f["chord_source"] for f in figs})
    if keys is not None:
        out["key"] = tx.key_accuracy(pieces, keys, cfg.ticks_per_beat)
    return out


# -- the critic's windows and features ---------------------------------------------------
def windows(notes, cfg=EnsembleEvalConfig()):
    """8-bar windows of a piece (``window_bars`` bars every ``hop_bars``), each the notes
    struck inside it, cut at its end and moved to start at tick 0; none for a shorter piece."""
    if len(notes) == 0:
        return []
    bar = cfg.beats_per_bar * cfg.ticks_per_beat
    first, last = int(notes["start"].min()) // bar, -(-int(notes["end"].max()) // bar)
    out = []
    for a in range(first, last - cfg.window_bars + 1, cfg.hop_bars):
        lo, hi = a * bar, (a + cfg.window_bars) * bar
        w = notes[(notes["start"] >= lo) & (notes["start"] < hi)].copy()
        w["end"] = np.minimum(w["end"], hi)
        w["start"] -= lo
        w["end"] -= lo
        out.append(w)
    return out


def _line(sel, top):
    """A voice's line: per distinct onset, its highest (``top``) or lowest pitch."""
    starts, inv = np.unique(sel["start"], return_inverse=True)
    p = np.full(len(starts), -1 if top else 999)
    (np.maximum if top else np.minimum).at(p, inv, sel["pitch"].astype(int))
    return p


def _bar_repetition(sel, bar, relative):
    """Share of bars whose pattern (ticks in bar and pitches, relative to the bar's first
    pitch when ``relative``) equals the previous bar's, over pairs where either sounds."""
    pats = {}
    for s, p in zip(sel["start"].tolist(), sel["pitch"].tolist()):
        pats.setdefault(s // bar, []).append((s % bar, p))
    if not pats:
        return float("nan")
    for b, pat in pats.items():
        pat.sort()
        pats[b] = tuple((t, p - pat[0][1]) if relative else (t, p) for t, p in pat)
    same = [pats.get(b) == pats.get(b - 1) for b in range(min(pats) + 1, max(pats) + 1)
            if b in pats or b - 1 in pats]
    return float(np.mean(same)) if same else float("nan")


_VOICE_STATS = ("density", "mean_pitch", "pitch_std", "mean_interval", "steps", "leaps",
                "mean_length", "repetition")


def feature_names():
    """Names of ``window_features``' columns."""
    names = ["consonance", "bass_root", "crossing_melody_below_harmony",
             "crossing_bass_above_harmony", "crossing_bass_above_melody", "crossing_any",
             "drums_onsets_per_bar", "drums_backbeat", "drums_repetition", "polyphony",
             "silence"]
    return names + [f"{VOICES[v]}_{s}" for v in (MELODY, BASS, HARMONY) for s in _VOICE_STATS]


def window_features(w, cfg=EnsembleEvalConfig()):
    """The critic's hand-made features of one window (``feature_names``; NaN where a figure
    has nothing to measure): the texture figures, polyphony (mean pitched notes sounding per
    tick) and silent share, and per pitched voice its density, register (mean and spread of
    pitch), line intervals (mean size, share of steps <= 2 and of leaps >= 5 semitones; the
    top note of each onset, the lowest for the bass), mean note length in beats and bar
    repetition (same rhythm and intervals as the bar before)."""
    b, t = cfg.beats_per_bar, cfg.ticks_per_beat
    f = piece_figures(w, cfg)
    row = [f["consonance"], f["bass_root"], f["crossing_melody_below_harmony"],
           f["crossing_bass_above_harmony"], f["crossing_bass_above_melody"], f["crossing_any"],
           f["drums_onsets_per_bar"] if (w["channel"] == DRUMS).any() else float("nan"),
           f["drums_backbeat"], f["drums_repetition"]]
    span = cfg.window_bars * b * t
    count = np.zeros(span + 1)
    p = tx.pitched(w)
    np.add.at(count, np.minimum(p["start"], span), 1)
    np.add.at(count, np.minimum(p["end"], span), -1)
    count = np.cumsum(count)[:span]
    row += [count.mean(), float((count == 0).mean())]
    for v in (MELODY, BASS, HARMONY):
        sel = w[w["channel"] == v]
        if len(sel) == 0:
            row += [0.0] + [float("nan")] * (len(_VOICE_STATS) - 1)
            continue
        iv = np.abs(np.diff(_line(sel, top=v != BASS)))
        row += [len(sel) / (span / t), float(sel["pitch"].mean()), float(sel["pitch"].std()),
                float(iv.mean()) if len(iv) else float("nan"),
                float((iv <= 2).mean()) if len(iv) else float("nan"),
                float((iv >= 5).mean()) if len(iv) else float("nan"),
                float((sel["end"] - sel["start"]).mean() / t),
                _bar_repetition(sel, b * t, relative=True)]
    return np.array(row, float)


def piece_windows(pieces, cfg=EnsembleEvalConfig()):
    """Per piece, the feature matrix of its windows (pieces without a window left out)."""
    out = []
    for n in pieces:
        ws = windows(n, cfg)
        if ws:
            out.append(np.stack([window_features(w, cfg) for w in ws]))
    return out


# -- the critic --------------------------------------------------------------------------
def _design(x, mean, std, missing):
    """Standardised features, NaN imputed by the training mean, plus a missing indicator
    for each column that had NaN in training."""
    z = (np.where(np.isnan(x), mean, x) - mean) / std
    return np.hstack([z, np.isnan(x[:, missing]).astype(float)])


def fit_logistic(x, y, l2=1.0, iters=100):
    """(weights, bias) of an L2-penalised logistic regression, classes weighted to count
    equally, fitted by Newton's method (the bias unpenalised)."""
    n, d = x.shape
    xb = np.hstack([x, np.ones((n, 1))])
    sw = np.where(y == 1, 0.5 / max(1, (y == 1).sum()), 0.5 / max(1, (y == 0).sum())) * n
    pen = np.full(d + 1, float(l2))
    pen[-1] = 1e-6
    w = np.zeros(d + 1)
    for _ in range(iters):
        p = 1 / (1 + np.exp(-np.clip(xb @ w, -30, 30)))
        g = xb.T @ (sw * (p - y)) + pen * w
        h = (xb * (sw * p * (1 - p))[:, None]).T @ xb + np.diag(pen)
        step = np.linalg.solve(h, g)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w[:-1], w[-1]


def _split_auc(real, fake, rng, cfg, bootstrap=0):
    """One split by piece: train on half of each side's pieces, AUC on the other half's
    windows (real scoring high); with ``bootstrap``, also the percentile interval over
    resampled test pieces and the standardised weights."""
    def halves(groups):
        order = rng.permutation(len(groups))
        k = (len(groups) + 1) // 2
        return [groups[i] for i in order[:k]], [groups[i] for i in order[k:]]
    (r_tr, r_te), (f_tr, f_te) = halves(real), halves(fake)
    x = np.vstack(r_tr + f_tr)
    y = np.concatenate([np.ones(sum(map(len, r_tr))), np.zeros(sum(map(len, f_tr)))])
    mean = np.array([np.nanmean(c) if (~np.isnan(c)).any() else 0.0 for c in x.T])
    std = np.nanstd(np.where(np.isnan(x), mean, x), axis=0)
    std[std == 0] = 1.0
    missing = np.flatnonzero(np.isnan(x).any(axis=0))
    w, b = fit_logistic(_design(x, mean, std, missing), y, cfg.l2)
    score = lambda groups: [_design(g, mean, std, missing) @ w + b for g in groups]  # noqa: E731
    rs, fs = score(r_te), score(f_te)
    auc = roc_auc(np.concatenate(rs), np.concatenate(fs))
    if not bootstrap:
        return auc, None
    boots = []
    for _ in range(bootstrap):
        ri, fi = rng.integers(len(rs), size=len(rs)), rng.integers(len(fs), size=len(fs))
        boots.append(roc_auc(np.concatenate([rs[i] for i in ri]),
                             np.concatenate([fs[i] for i in fi])))
    names = feature_names() + [f"{feature_names()[i]}_missing" for i in missing]
    top = np.argsort(-np.abs(w))[:6]
    return auc, dict(lo=float(np.nanpercentile(boots, 2.5)), hi=float(np.nanpercentile(boots, 97.5)),
                     test_pieces=[len(rs), len(fs)],
                     top_features={names[i]: float(w[i]) for i in top})


def critic_auc(real_pieces, fake_pieces, seed=0, cfg=EnsembleEvalConfig()):
    """The fresh critic's ROC AUC, real windows against ``fake`` ones, on held-out pieces:
    ``auc`` (mean and 95 % t-interval, clipped to [0, 1], over ``cfg.splits`` random splits
    by piece, each training on half the pieces of each side and scoring the other half's
    windows) and
    ``bootstrap`` (the first split's 95 % percentile interval over resampled test pieces,
    its test piece counts and its largest standardised weights, positive meaning real)."""
    real, fake = piece_windows(real_pieces, cfg), piece_windows(fake_pieces, cfg)
    if min(len(real), len(fake)) < 2:
        raise InvalidMessage(f"{len(real)} real and {len(fake)} generated pieces have "
                             f"{cfg.window_bars}-bar windows", field="pieces",
                             allowed=f"at least 2 pieces of {cfg.window_bars} bars a side")
    aucs, boot = [], None
    for s in range(cfg.splits):
        rng = np.random.default_rng([seed, s])
        auc, b = _split_auc(real, fake, rng, cfg, cfg.bootstrap if s == 0 else 0)
        aucs.append(auc)
        boot = boot or b
    iv = interval(aucs)
    clip = lambda x: None if x is None else float(min(1.0, max(0.0, x)))  # noqa: E731
    return dict(auc=dict(mean=iv["mean"], lo=clip(iv["lo"]), hi=clip(iv["hi"]),
                         splits=iv["seeds"]),
                bootstrap=boot, windows=[sum(map(len, real)), sum(map(len, fake))],
                pieces=[len(real), len(fake)])


def real_vs_real(real_pieces, seed=0, cfg=EnsembleEvalConfig()):
    """The sanity check: the critic on two disjoint random halves of the real pieces."""
    order = np.random.default_rng([seed, 99]).permutation(len(real_pieces))
    k = len(order) // 2
    return critic_auc([real_pieces[i] for i in order[:k]],
                      [real_pieces[i] for i in order[k:]], seed, cfg)
