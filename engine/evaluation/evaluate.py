"""``ostinato eval``: how good is a model, measured on the music the runtime plays.

Every generated piece is composed by ``engine.generate`` through the numba runtime the
server plays (``engine.sampler.generator``), so every figure measures what a game hears.

1. Held-out NLL per event of the LSTM beside a 5-gram (``engine.evaluation.ngram``) fitted on the
   training tokens, both scored on the same pieces and the same predicted tokens.
2. Key adherence, two judges: the project's Krumhansl-Kessler analysis (``find_key``)
   and music21's own key analysis (``analyze("key")``, Aarden-Essen profiles), over all
   24 keys at several densities, as per-key tables (tonic and mode, tonic, mode).
   Density adherence: does the realised onset rate rise with the requested density
   (Spearman)?
3. Distribution overlap of generated and held-out music (histogram intersection and
   Jensen-Shannon divergence): pitch classes relative to the detected tonic, pitch
   range per piece, inter-onset intervals, note lengths and simultaneous voices.
   Held-out pieces are cut to the generated length so that counts compare like with like.
4. The tonality sweep: key adherence (both judges), held-out NLL under the same prior
   applied to the model's note-on logits, and pitch-class overlap, per tonality value.
5. A piano roll of a few generated pieces (and a plot of the sweep).
"""
import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from engine import DEFAULT_MODEL
from engine.controls import KEY_NAMES, MODES, tonality_bias
from engine.errors import InvalidMessage, ModelError
from engine.evaluation.judges import JUDGE_NAMES, JUDGES, adherence, confusion, detect_key, judge_keys, key_table, real_music
from engine.evaluation.ngram import NGram
from engine.vocab import NOTE_ON

SPLITS = ("train", "valid", "test")
IOI_MAX = 48     # inter-onset histogram bins 1..48 ticks; longer gaps fall in the last
RANGE_MAX = 48   # pitch-range histogram bins 0..48 semitones; wider falls in the last
LENGTH_FINE_BEATS = 4   # note-length bins: one per tick up to 4 beats,
LENGTH_MAX_BEATS = 16   # then one per beat up to 16 beats; longer falls in the last
VOICES_MAX = 16  # simultaneous-voice bins 0..16; more falls in the last
SWEEP = (0.0, 0.25, 0.5, 0.75, 0.9, 1.0)  # tonality values of the sweep


@dataclass(frozen=True)
class EvalConfig:
    """What the evaluation generates and scores."""

    split: str = "test"
    pieces_per_key: int = 8            # per key x mode x key density
    bars: int = 16
    beats_per_bar: int = 4
    key_densities: tuple = (1.0, 2.0, 3.0)  # onsets per beat of the key-adherence pieces
    densities: tuple = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0)  # requested onsets per beat
    pieces_per_density: int = 8
    max_pieces: int = None             # held-out pieces for NLL and overlap; None: all
    ngram_order: int = 5
    roll_pieces: int = 4
    temperature: float = 1.0
    tonality: float = None             # of every generated piece; None: DEFAULT_TONALITY
    tonality_sweep: bool = True        # key adherence / NLL / overlap per tonality value
    sweep_tonalities: tuple = SWEEP
    sweep_pieces_per_key: int = None   # per key x mode x key density; None: pieces_per_key
    seed: int = 0

    def __post_init__(self):
        _check(self.split in SPLITS, "split", ", ".join(SPLITS), self.split)
        for name, lo, hi in (("pieces_per_key", 1, 1000), ("bars", 1, 256),
                             ("beats_per_bar", 1, 16), ("pieces_per_density", 1, 1000),
                             ("ngram_order", 1, 7), ("roll_pieces", 0, 16)):
            v = getattr(self, name)
            _check(isinstance(v, int) and lo <= v <= hi, name, f"{lo}..{hi}", v)
        _check(len(self.densities) >= 2 and all(0 < d <= 16 for d in self.densities),
               "densities", "two or more values in (0, 16] onsets per beat", self.densities)
        _check(len(self.key_densities) >= 1 and all(0 < d <= 16 for d in self.key_densities),
               "key_densities", "one or more values in (0, 16] onsets per beat",
               self.key_densities)
        _check(self.max_pieces is None or self.max_pieces >= 1, "max_pieces", ">= 1",
               self.max_pieces)
        _check(0 < self.temperature <= 10, "temperature", "(0, 10]", self.temperature)
        _check(self.tonality is None or 0 <= self.tonality <= 1, "tonality", "0..1",
               self.tonality)
        _check(len(self.sweep_tonalities) >= 1 and all(0 <= t <= 1 for t in self.sweep_tonalities),
               "sweep_tonalities", "one or more values in 0..1", self.sweep_tonalities)
        v = self.sweep_pieces_per_key
        _check(v is None or (isinstance(v, int) and 1 <= v <= 1000), "sweep_pieces_per_key",
               "1..1000", v)

    def quick(self):
        """A small run: one piece per key and density, at most 8 bars, four ladder
        densities, 64 held-out pieces, no tonality sweep."""
        return replace(self, pieces_per_key=1, bars=min(self.bars, 8),
                       densities=(0.5, 1.0, 2.0, 4.0), pieces_per_density=2,
                       max_pieces=min(self.max_pieces or 64, 64), tonality_sweep=False)


def _check(ok, field, allowed, value):
    if not ok:
        raise InvalidMessage(f"{field} {value!r} outside {allowed}", field=field, allowed=allowed)


# -- statistics ------------------------------------------------------------------------
def spearman(x, y):
    """Spearman rank correlation, ties given their average rank; nan if a side is constant."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) != len(y) or len(x) < 2:
        raise InvalidMessage(f"need two equal-length samples, got {len(x)} and {len(y)}",
                             field="y", allowed="as many values as x, at least 2")
    rx, ry = _ranks(x), _ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    den = np.sqrt((rx ** 2).sum() * (ry ** 2).sum())
    return float((rx * ry).sum() / den) if den > 0 else float("nan")


def _ranks(x):
    """1-based ranks, tied values sharing the mean of their ranks."""
    uniq, inv, counts = np.unique(x, return_inverse=True, return_counts=True)
    last = np.cumsum(counts)  # rank of the last member of each group of ties
    return (last - (counts - 1) / 2.0)[inv]


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


# -- features of pieces --------------------------------------------------------------
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


def _quantiles(x):
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
            generated=dict(_quantiles(values(generated)), histogram=_share(g)),
            held_out=dict(_quantiles(values(held_out)), histogram=_share(h)),
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


# -- the evaluation ------------------------------------------------------------------
def nll_figures(model, train_tokens, pieces, order=5, vocab_size=None):
    """LSTM and n-gram NLL (nats and bits per event) on the same held-out pieces."""
    pieces = [(t, c) for t, c in pieces if len(t) >= 2]
    if not pieces:
        raise InvalidMessage("no held-out piece has two or more tokens", field="split",
                             allowed="a split with pieces")
    total, count = 0.0, 0
    for t, c in pieces:
        n = len(t) - 1  # model.nll predicts tokens[1:]
        total += model.nll(t, c) * n
        count += n
    lstm = total / count
    ngram = NGram(order, vocab_size).fit([t for t in train_tokens])
    ng = ngram.nll([t for t, _ in pieces])
    return dict(pieces=len(pieces), tokens=count, ngram_order=order,
                lstm_nats=lstm, lstm_bits=lstm / np.log(2),
                ngram_nats=ng, ngram_bits=ng / np.log(2), improvement=1 - lstm / ng)


def piece_logits(model, tokens, controls, chunk=512):
    """The model's logits [len - 1, V] (float64) for predicting tokens[1:], the state
    carried across chunks as ``MusicLSTM.nll`` does."""
    import torch
    t = torch.as_tensor(np.asarray(tokens, np.int64))[None]
    c = torch.as_tensor(np.asarray(controls, np.float32))[None]
    out, state = [], None
    with torch.no_grad():
        for i in range(0, t.shape[1] - 1, chunk):
            x = t[:, i:min(i + chunk, t.shape[1] - 1)]
            logits, state = model(x, c[:, i:i + x.shape[1]], state)
            out.append(logits[0].double().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.cfg.vocab_size))


def prior_nll(model, pieces, vocab, spec, tonalities, key_relative):
    """Held-out NLL under the tonality prior, per tonality value.

    The prior (``tonality_bias``) is added to the model's note-on logits and the
    distribution renormalised, as the runtime samples.  Each step's scale comes from
    the mode channel of its controls; its tonic is C for a key-relative dataset (its
    pieces were moved to C) and else the key channel's.  A held-out note the prior
    forbids (tonality 1, a note outside the scale) has probability 0: the NLL is then
    infinite, so the mean over the other tokens and the forbidden share are given too.
    """
    was = model.training
    model.eval()
    sl = spec.slices()
    on0 = vocab.offsets[NOTE_ON]
    pcs = np.arange(128) % 12
    biases = [np.array([tonality_bias(m, t) for m in range(2)]) for t in tonalities]
    total = np.zeros(len(tonalities))
    finite = np.zeros(len(tonalities))
    forbidden = np.zeros(len(tonalities), np.int64)
    count = 0
    for tokens, controls in pieces:
        if len(tokens) < 2:
            continue
        z0 = piece_logits(model, tokens, controls)
        y = np.asarray(tokens[1:], np.int64)
        ctl = np.asarray(controls[:-1], np.float32)
        mode = np.argmax(ctl[:, sl["mode"]], 1)
        tonic = np.zeros(len(y), np.int64) if key_relative else np.argmax(ctl[:, sl["key"]], 1)
        rel = (pcs[None, :] - tonic[:, None]) % 12   # [steps, 128] degree of each pitch
        rows = np.arange(len(y))
        for j, b in enumerate(biases):
            z = z0.copy()
            z[:, on0:on0 + 128] += b[mode[:, None], rel]
            m = z.max(1, keepdims=True)
            lse = m[:, 0] + np.log(np.exp(z - m).sum(1))
            lp = z[rows, y] - lse
            ok = np.isfinite(lp)
            total[j] += -lp.sum() if ok.all() else np.inf
            finite[j] -= lp[ok].sum()
            forbidden[j] += int((~ok).sum())
        count += len(y)
    model.train(was)
    return [dict(tonality=float(t), nll_nats=total[j] / max(count, 1),
                 nll_nats_allowed=finite[j] / max(count - forbidden[j], 1),
                 forbidden_share=forbidden[j] / max(count, 1), tokens=count)
            for j, t in enumerate(tonalities)]


def evaluate(model_path=DEFAULT_MODEL, data="data/dataset.npz", cfg=EvalConfig(),
             plot_path=None, progress=True):
    """Run the whole evaluation; returns a JSON-ready dict of every figure."""
    from engine.generate import DEFAULT_TONALITY, Request, generate_many, load_weights
    from engine.training.model import load_model

    clock = {}
    t0 = time.monotonic()
    model, vocab, spec, meta = load_model(model_path)
    weights = load_weights(model_path)
    ds = _load_data(data)
    if ds.vocab != vocab or ds.spec != spec:
        raise ModelError(f"{model_path}: vocabulary or controls differ from the data's "
                         f"({vocab} {spec} vs {ds.vocab} {ds.spec})")
    key_relative = bool((getattr(ds, "summary", None) or {}).get("key_relative",
                                                                  weights.key_relative))
    tonality = DEFAULT_TONALITY if cfg.tonality is None else cfg.tonality
    tpb = vocab.ticks_per_beat
    rng = np.random.default_rng(cfg.seed)
    held = ds.pieces(cfg.split)
    rows = ds._rows(cfg.split)
    if cfg.max_pieces and len(held) > cfg.max_pieces:
        pick = np.sort(rng.choice(len(held), cfg.max_pieces, replace=False))
        held, rows = [held[i] for i in pick], rows[pick]
    train = [t for t, _ in ds.pieces("train")]
    nll = nll_figures(model, train, held, cfg.ngram_order, vocab.size)
    clock["nll"] = time.monotonic() - t0

    beats = cfg.bars * cfg.beats_per_bar
    window = beats * tpb
    real = [_crop(vocab.decode(t), window) for t, _ in held]

    def key_requests(per):
        return [(k, m, d) for k in range(12) for m in range(2) for d in cfg.key_densities
                for _ in range(per)]

    def compose(jobs, t, desc):
        """Pieces for (key, mode, density) jobs at tonality t; job i has seed base + i,
        so a sweep composes the same requests with the same seeds at each value."""
        reqs = [Request(k, m, d, seed=cfg.seed * 100003 + i, tonality=t)
                for i, (k, m, d) in enumerate(jobs)]
        with tqdm(total=len(reqs), desc=desc, unit="piece", disable=not progress,
                  file=sys.stderr, dynamic_ncols=True) as bar:
            return generate_many(weights, reqs, cfg.bars, beats_per_bar=cfg.beats_per_bar,
                                 temperature=cfg.temperature, progress=bar.update)

    t1 = time.monotonic()
    requests = key_requests(cfg.pieces_per_key)
    ladder = [(d, int(rng.integers(12)), int(rng.integers(2)))
              for d in cfg.densities for _ in range(cfg.pieces_per_density)]
    made = compose(requests + [(k, m, d) for d, k, m in ladder], tonality, "generate")
    keyed, laddered = made[:len(requests)], made[len(requests):]
    clock["generate"] = time.monotonic() - t1

    found = judge_keys(keyed, tpb, progress, clock=clock)
    km = [(k, m) for k, m, _ in requests]
    dens = [d for _, _, d in requests]
    judges = {j: key_table(km, found[j], dens) for j in JUDGES}
    for j in JUDGES:
        judges[j]["confusion"] = confusion(km, found[j])
    keys = dict(judges["kk"])  # the project's judge at the top level, as before
    keys["per_key"] = {k: v["key_and_mode"] for k, v in judges["kk"]["per_key"].items()}
    keys.update(judges=judges, pieces=len(keyed), densities=list(cfg.key_densities),
                pieces_per_key=cfg.pieces_per_key * len(cfg.key_densities), bars=cfg.bars,
                tonality=tonality, key_relative=weights.key_relative,
                data_key_relative=key_relative)
    annotated = annotated_keys(ds, rows, key_relative)
    if annotated:
        idx = sorted(annotated)
        keys["real_music"] = real_music([real[i] for i in idx], [annotated[i] for i in idx],
                                        tpb, progress)
    realised = np.array([onsets_per_beat(n, beats) for n in laddered])
    requested = np.array([d for d, _, _ in ladder])
    density = dict(requested=list(cfg.densities),
                   realised_mean=[float(realised[requested == d].mean()) for d in cfg.densities],
                   spearman=spearman(requested, realised),
                   pieces_per_density=cfg.pieces_per_density)
    over = overlap(keyed + laddered, real, tpb)
    over.update(generated_pieces=len(keyed) + len(laddered), held_out_pieces=len(real))
    tex = texture(keyed + laddered, real, tpb)
    tex["by_density"] = {f"{d:g}": dict(
        note_length=_quantiles(note_lengths([n for n, r in zip(laddered, requested) if r == d],
                                            tpb)),
        voices=_quantiles(np.concatenate([voice_counts(n) for n, r in zip(laddered, requested)
                                          if r == d and len(n)] or [[]])))
        for d in cfg.densities}

    sweep = None
    if cfg.tonality_sweep:
        t4 = time.monotonic()
        per = cfg.sweep_pieces_per_key or cfg.pieces_per_key
        jobs = key_requests(per)
        skm = [(k, m) for k, m, _ in jobs]
        priors = prior_nll(model, held, vocab, spec, cfg.sweep_tonalities, key_relative)
        rows = []
        for t, prior in zip(cfg.sweep_tonalities, priors):
            if per == cfg.pieces_per_key and t == tonality:
                pieces, heard = keyed, found  # the same requests and seeds: already made
            else:
                pieces = compose(jobs, t, f"tonality {t:g}")
                heard = judge_keys(pieces, tpb, progress, f"judge {t:g}", clock)
            pc = overlap_pitch_class(pieces, real)
            rows.append(dict(prior, **{j: adherence(skm, heard[j]) for j in JUDGES},
                             pitch_class=pc))
        sweep = dict(pieces=len(jobs), pieces_per_key=per * len(cfg.key_densities),
                     key_relative=key_relative, rows=rows)
        clock["sweep"] = time.monotonic() - t4

    if plot_path and cfg.roll_pieces:
        from engine.pianoroll import plot_pianoroll
        pick = np.linspace(0, len(ladder) - 1, min(cfg.roll_pieces, len(ladder)))
        pick = pick.round().astype(int)
        titles = [_title(ladder[i], laddered[i], beats) for i in pick]
        plot_pianoroll([laddered[i] for i in pick], titles, plot_path,
                       ticks_per_beat=tpb, beats_per_bar=cfg.beats_per_bar)
    sweep_plot = None
    if plot_path and sweep:
        sweep_plot = plot_sweep(sweep, sweep_path(plot_path))
    clock["music21_per_100_pieces"] = 100 * clock["judge_music21"] / max(1, clock["judged_pieces"])
    clock["total"] = time.monotonic() - t0
    return _clean(dict(model=str(model_path), data=str(getattr(ds, "path", data)),
                       config=asdict(cfg), nll=nll, key=keys, density=density, overlap=over,
                       texture=tex, tonality_sweep=sweep,
                       plot=str(plot_path) if plot_path else None,
                       sweep_plot=str(sweep_plot) if sweep_plot else None, seconds=clock))


def overlap_pitch_class(generated, held_out):
    """Pitch-class (relative to the detected tonic) overlap: intersection, JS bits."""
    g, h = pitch_class_histogram(generated), pitch_class_histogram(held_out)
    return dict(intersection=histogram_intersection(g, h), js_bits=js_divergence(g, h))


def sweep_path(plot_path):
    """Where the sweep's plot goes: ``<plot stem>-tonality.png`` beside the piano roll."""
    p = Path(plot_path)
    return p.with_name(f"{p.stem}-tonality.png")


def plot_sweep(sweep, path):
    """Key adherence (both judges) against held-out NLL under the prior, one point per
    tonality value.  An infinite NLL (a held-out note forbidden) is drawn at the right
    edge, marked with an x and the forbidden share.  Returns the path written."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = sweep["rows"]
    fig = Figure(figsize=(7.5, 4.8))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    nll = np.array([np.nan if r["nll_nats"] is None else r["nll_nats"] for r in rows], float)
    fin = np.isfinite(nll)
    lo = np.nanmin(nll[fin]) if fin.any() else 0.0
    hi = np.nanmax(nll[fin]) if fin.any() else 1.0
    edge = hi + max(0.1 * (hi - lo), 0.05)
    x = np.where(fin, nll, edge)
    for judge, colour in zip(JUDGES, ("tab:blue", "tab:orange")):
        y = np.array([100 * r[judge]["key_and_mode"] for r in rows])
        ax.plot(x[fin], y[fin], "-o", color=colour, label=JUDGE_NAMES[judge])
        if (~fin).any():
            ax.plot(x[~fin], y[~fin], "x", color=colour, markersize=9)
        for xi, yi, r in zip(x, y, rows):
            ax.annotate(f"{r['tonality']:g}", (xi, yi), textcoords="offset points",
                        xytext=(4, 4), fontsize=8, color=colour)
    for xi, r in zip(x[~fin], [r for r, f in zip(rows, fin) if not f]):
        ax.annotate(f"NLL inf: {100 * r['forbidden_share']:.1f}% of\nheld-out events forbidden",
                    (xi, 100), textcoords="offset points", xytext=(-110, -22), fontsize=7)
    ax.set_xlabel("held-out NLL under the prior (nats/event)")
    ax.set_ylabel("tonic and mode realised (%)")
    ax.set_ylim(0, 102)
    ax.set_title(f"tonality sweep ({sweep['pieces']} pieces per value; labels: tonality)",
                 fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return Path(path)


def _load_data(data):
    """A dataset object (with .vocab, .spec, .pieces) as is, or ``Dataset.load`` of a path."""
    if hasattr(data, "pieces"):
        return data
    from engine.training.data import Dataset
    return Dataset.load(data)


def annotated_keys(ds, rows, key_relative):
    """{i: (tonic, mode)} for the pieces ``rows`` of ``ds`` whose source text names their
    key (the ABC collections' ``K:`` field; ``engine.training.corpus.annotated_keys``); a
    key-relative dataset moved each to C, so its tonic is C.  Pieces whose key was only
    measured are left out: that would score the judges against one of themselves."""
    from engine.training.corpus import annotated_keys as source_keys
    by_source, out = {}, {}
    for i, row in enumerate(rows):
        source = str(ds.sources[row])
        if source not in by_source:
            try:
                by_source[source] = source_keys(source)
            except (OSError, KeyError):  # the corpus is not on this machine
                by_source[source] = {}
        key = by_source[source].get(str(ds.ids[row]))
        if key is not None:
            out[i] = (0 if key_relative else key[0], key[1])
    return out


def _crop(notes, window):
    n = notes[notes["start"] < window].copy()
    n["end"] = np.minimum(n["end"], window)
    return n


def _title(request, notes, beats):
    d, k, m = request
    found = detect_key(notes)
    heard = f"{KEY_NAMES[found[0]]} {MODES[found[1]]}" if found else "nothing"
    return (f"asked {KEY_NAMES[k]} {MODES[m]}, {d:g} onsets/beat; "
            f"heard {heard}, {onsets_per_beat(notes, beats):.2f} onsets/beat")


def _clean(x):
    """NaN/inf -> None and numpy scalars -> Python, so the dict is strict JSON."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return None if not np.isfinite(x) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def format_table(r):
    """The human-readable summary printed by ``ostinato eval``."""
    n, k, d, o = r["nll"], r["key"], r["density"], r["overlap"]
    f = lambda v, s="{:.3f}": "n/a" if v is None else s.format(v)
    pc = lambda v: f(v, "{:.1%}")
    dens = ", ".join(f"{x:g}" for x in k["densities"])
    lines = [
        f"held-out NLL on {n['pieces']} pieces, {n['tokens']} predicted events",
        f"  LSTM       {f(n['lstm_nats'])} nats/event  {f(n['lstm_bits'])} bits/event",
        f"  {n['ngram_order']}-gram KN  {f(n['ngram_nats'])} nats/event  "
        f"{f(n['ngram_bits'])} bits/event",
        f"  improvement over the n-gram: {f(n['improvement'], '{:.1%}')}",
        f"key adherence on {k['pieces']} pieces ({k['pieces_per_key']} per key, {k['bars']} "
        f"bars, {dens} onsets/beat, tonality {k['tonality']:g})",
    ]
    if k.get("data_key_relative") is not None and k["data_key_relative"] != k["key_relative"]:
        lines.append(f"  note: the model is {'' if k['key_relative'] else 'not '}key-relative, "
                     f"the data {'is' if k['data_key_relative'] else 'is not'}")
    for j in JUDGES:
        g = k["judges"][j]
        lines.append(f"  {JUDGE_NAMES[j]:30s} key and mode {pc(g['key_and_mode'])}   "
                     f"mode {pc(g['mode'])}   tonic {pc(g['tonic'])}")
    lines.append("  per key          " + "".join(f"{j:>24s}" for j in JUDGES))
    lines.append("                   " + "   key+mode tonic  mode" * len(JUDGES))
    for name in k["judges"]["kk"]["per_key"]:
        row = f"    {name:13s}"
        for j in JUDGES:
            s = k["judges"][j]["per_key"][name]
            row += f"     {s['key_and_mode']:6.0%} {s['tonic']:5.0%} {s['mode']:5.0%}"
        lines.append(row)
    for j in JUDGES:
        worst = ", ".join(f"{w['key']} {w['key_and_mode']:.0%}" for w in k["judges"][j]["worst"])
        lines.append(f"  worst keys, {j}: {worst}")
        if "per_density" in k["judges"][j]:
            lines.append(f"  by density, {j}: " + ", ".join(
                f"{dd} {v:.0%}" for dd, v in k["judges"][j]["per_density"].items()))
        c = k["judges"][j].get("confusion")
        if c and c["misses"]:
            lines.append(f"  misses, {j}: {c['misses']} of {c['pieces']} ("
                         + ", ".join(f"{n} {kind}" for kind, n in sorted(
                             c["kinds"].items(), key=lambda kv: -kv[1])) + "); commonest: "
                         + ", ".join(f"{t['asked']} heard as {t['heard']} {t['count']}"
                                     for t in c["top"][:4]))
    real = k.get("real_music")
    if real:
        lines.append(f"  the judges on {real['pieces']} held-out real pieces against their "
                     f"annotated key ({real['modes']['major']} major, "
                     f"{real['modes']['minor']} minor): " + ", ".join(
                         f"{j} {pc(real[j]['key_and_mode'])}" for j in JUDGES))
    lines += [
        f"density: Spearman {f(d['spearman'])} over {d['pieces_per_density']} pieces per value",
        "  requested " + " ".join(f"{v:6g}" for v in d["requested"]),
        "  realised  " + " ".join(f"{v:6.2f}" for v in d["realised_mean"]),
        f"overlap, {o['generated_pieces']} generated vs {o['held_out_pieces']} held-out pieces"
        "  (intersection 1 = same; JS bits 0 = same)",
    ]
    for name in ("pitch_class", "pitch_class_major", "pitch_class_minor", "pitch_range", "ioi",
                 "note_length", "voices"):
        if name in o:
            lines.append(f"  {name:18s} {f(o[name]['intersection'])}  JS {f(o[name]['js_bits'])}")
    t = r.get("texture")
    if t:
        for name, unit in (("note_length", "beats"), ("voices", "notes sounding")):
            g, h = t[name]["generated"], t[name]["held_out"]
            lines.append(f"  {name} ({unit}): generated p50 {f(g['p50'], '{:.2f}')} p90 "
                         f"{f(g['p90'], '{:.2f}')} max {f(g['max'], '{:.2f}')};  held out p50 "
                         f"{f(h['p50'], '{:.2f}')} p90 {f(h['p90'], '{:.2f}')} max "
                         f"{f(h['max'], '{:.2f}')}")
        if t.get("by_density"):
            lines.append("  by requested density: note length p90 / max (beats), voices p90 / max")
            for dd, v in t["by_density"].items():
                lines.append(f"    {dd:>5s}  {f(v['note_length']['p90'], '{:5.2f}')} / "
                             f"{f(v['note_length']['max'], '{:5.2f}')}   "
                             f"{f(v['voices']['p90'], '{:4.1f}')} / "
                             f"{f(v['voices']['max'], '{:4.1f}')}")
    s = r.get("tonality_sweep")
    if s:
        lines.append(f"tonality sweep, {s['pieces']} pieces per value (key and mode realised; "
                     "held-out NLL under the prior; pitch-class overlap)")
        lines.append("  tonality    kk  music21   NLL nats  (allowed, forbidden)   pitch class")
        for row in s["rows"]:
            nl = "inf" if row["nll_nats"] is None else f"{row['nll_nats']:.3f}"
            lines.append(f"  {row['tonality']:8g}  {row['kk']['key_and_mode']:5.1%}  "
                         f"{row['music21']['key_and_mode']:6.1%}   {nl:>8s}  "
                         f"({f(row['nll_nats_allowed'])}, {row['forbidden_share']:.2%})"
                         f"        {f(row['pitch_class']['intersection'])}")
    lines.append(f"took {r['seconds']['total']:.0f} s")
    return "\n".join(lines)


# -- command line --------------------------------------------------------------------
def add_arguments(p):
    p.add_argument("--model", default=str(DEFAULT_MODEL), help="model .npz (default: shipped)")
    p.add_argument("--data", default="data/dataset.npz", help="dataset from `ostinato data`")
    p.add_argument("--split", default="test", choices=SPLITS, help="held-out split (default test)")
    p.add_argument("--pieces-per-key", type=int, default=None,
                   help="generated pieces per key, mode and key density "
                        f"(default {EvalConfig.pieces_per_key})")
    p.add_argument("--bars", type=int, default=None,
                   help=f"bars per generated piece (default {EvalConfig.bars})")
    p.add_argument("--max-pieces", type=int, default=None,
                   help="held-out pieces to score (default: all)")
    p.add_argument("--tonality", type=float, default=None,
                   help="tonality prior of the generated pieces, 0..1 (default: generate's)")
    p.add_argument("--tonality-sweep", action=argparse.BooleanOptionalAction,
                   default=None, help="key adherence, held-out NLL and overlap at tonality "
                   + ", ".join(f"{t:g}" for t in SWEEP) + " (default: on, off with --quick)")
    p.add_argument("--sweep-pieces-per-key", type=int, default=None,
                   help="pieces per key, mode and key density at each sweep value "
                        "(default: --pieces-per-key)")
    p.add_argument("--json", nargs="?", const="eval.json", default=None, metavar="PATH",
                   help="write every figure to a JSON file (default eval.json)")
    p.add_argument("--plot", default=None, metavar="PATH.png",
                   help="write a piano roll of generated pieces (and, with the sweep, "
                        "PATH-tonality.png)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true",
                   help="a small run for a first look (options given explicitly still apply)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args):
    cfg = EvalConfig(split=args.split, seed=args.seed)
    cfg = cfg.quick() if args.quick else cfg
    given = dict(pieces_per_key=args.pieces_per_key, bars=args.bars, max_pieces=args.max_pieces,
                 tonality=args.tonality, tonality_sweep=args.tonality_sweep,
                 sweep_pieces_per_key=args.sweep_pieces_per_key)
    cfg = replace(cfg, **{k: v for k, v in given.items() if v is not None})
    result = evaluate(args.model, args.data, cfg, plot_path=args.plot,
                      progress=not args.no_progress)
    print(format_table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, allow_nan=False))
        print(f"wrote {args.json}")
    if args.plot:
        print(f"wrote {args.plot}")
        if result.get("sweep_plot"):
            print(f"wrote {result['sweep_plot']}")
    return 0
