"""``ostinato eval``: how good is a model, measured four ways.

1. Held-out NLL per event of the LSTM beside a 5-gram (``engine.ngram``) fitted on the
   training tokens, both scored on the same pieces and the same predicted tokens.
2. Control adherence of generated music: does ``find_key`` hear the requested key and
   mode, and does the realised onset rate rise with the requested density (Spearman)?
3. Distribution overlap of generated and held-out music (histogram intersection and
   Jensen-Shannon divergence): pitch classes relative to the detected tonic, pitch
   range per piece, inter-onset intervals.  Held-out pieces are cut to the generated
   length so that range and interval counts compare like with like.
4. A piano roll of a few generated pieces.
"""
import json
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import DEFAULT_MODEL
from .controls import KEY_NAMES, MODES, find_key
from .errors import InvalidMessage, ModelError
from .ngram import NGram

SPLITS = ("train", "valid", "test")
IOI_MAX = 48     # inter-onset histogram bins 1..48 ticks; longer gaps fall in the last
RANGE_MAX = 48   # pitch-range histogram bins 0..48 semitones; wider falls in the last


@dataclass(frozen=True)
class EvalConfig:
    """What the evaluation generates and scores."""

    split: str = "test"
    pieces_per_key: int = 8            # per key x mode: 24 x this pieces for key adherence
    bars: int = 16
    beats_per_bar: int = 4
    densities: tuple = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0)  # requested onsets per beat
    pieces_per_density: int = 8
    key_density: float = None          # density for the key pieces; None: held-out median
    max_pieces: int = None             # held-out pieces for NLL and overlap; None: all
    ngram_order: int = 5
    roll_pieces: int = 4
    temperature: float = 1.0
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
        _check(self.key_density is None or 0 < self.key_density <= 16, "key_density",
               "(0, 16] onsets per beat", self.key_density)
        _check(self.max_pieces is None or self.max_pieces >= 1, "max_pieces", ">= 1",
               self.max_pieces)
        _check(0 < self.temperature <= 10, "temperature", "(0, 10]", self.temperature)

    def quick(self):
        """A small run: one piece per key, at most 8 bars, four densities, 64 held-out pieces."""
        return replace(self, pieces_per_key=1, bars=min(self.bars, 8),
                       densities=(0.5, 1.0, 2.0, 4.0), pieces_per_density=2,
                       max_pieces=min(self.max_pieces or 64, 64))


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
def detect_key(notes):
    """(tonic, mode) heard by ``find_key``, or None for a piece without notes."""
    if len(notes) == 0 or (notes["end"] - notes["start"]).sum() <= 0:
        return None
    tonic, mode, _ = find_key(notes)
    return tonic, mode


def key_adherence(requests, pieces):
    """Fractions of pieces whose detected key matches the requested (tonic, mode):
    both, the mode only, the tonic only.  A piece without notes matches nothing."""
    if len(requests) != len(pieces) or not requests:
        raise InvalidMessage(f"{len(requests)} requests for {len(pieces)} pieces",
                             field="requests", allowed="one (tonic, mode) per piece, at least one")
    found = [detect_key(n) for n in pieces]
    tonic = np.array([f is not None and f[0] == r[0] % 12 for r, f in zip(requests, found)])
    mode = np.array([f is not None and f[1] == r[1] for r, f in zip(requests, found)])
    return dict(key_and_mode=float((tonic & mode).mean()), mode=float(mode.mean()),
                tonic=float(tonic.mean()))


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


def overlap(generated, held_out):
    """Intersection and JS divergence of each feature histogram, generated vs held out."""
    feats = dict(
        pitch_class=lambda ps: pitch_class_histogram(ps),
        pitch_class_major=lambda ps: pitch_class_histogram(ps, mode=0),
        pitch_class_minor=lambda ps: pitch_class_histogram(ps, mode=1),
        pitch_range=range_histogram,
        ioi=ioi_histogram)
    out = {}
    for name, f in feats.items():
        g, h = f(generated), f(held_out)
        out[name] = dict(intersection=histogram_intersection(g, h), js_bits=js_divergence(g, h),
                         generated=(_normalised(g) if g.sum() else g).round(4).tolist(),
                         held_out=(_normalised(h) if h.sum() else h).round(4).tolist())
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


def evaluate(model_path=DEFAULT_MODEL, data="data/dataset.npz", cfg=EvalConfig(),
             plot_path=None, progress=True):
    """Run the whole evaluation; returns a JSON-ready dict of every figure."""
    from .generate import generate
    from .model import load_model

    clock = {}
    t0 = time.monotonic()
    model, vocab, spec, meta = load_model(model_path)
    model.default_register = meta.get("info", {}).get("mean_register", 67.0)
    ds = _load_data(data)
    if ds.vocab != vocab or ds.spec != spec:
        raise ModelError(f"{model_path}: vocabulary or controls differ from the data's "
                         f"({vocab} {spec} vs {ds.vocab} {ds.spec})")
    rng = np.random.default_rng(cfg.seed)
    held = ds.pieces(cfg.split)
    if cfg.max_pieces and len(held) > cfg.max_pieces:
        held = [held[i] for i in np.sort(rng.choice(len(held), cfg.max_pieces, replace=False))]
    train = [t for t, _ in ds.pieces("train")]
    nll = nll_figures(model, train, held, cfg.ngram_order, vocab.size)
    clock["nll"] = time.monotonic() - t0

    beats = cfg.bars * cfg.beats_per_bar
    window = beats * vocab.ticks_per_beat
    real = [_crop(vocab.decode(t), window) for t, _ in held]
    real_density = [onsets_per_beat(n, min(beats, _beats(n, vocab.ticks_per_beat)))
                    for n in real if len(n)]
    key_density = cfg.key_density or round(float(
        np.median(real_density if real_density else cfg.densities)), 2)

    t1 = time.monotonic()
    requests = [(k, m) for k in range(12) for m in range(2) for _ in range(cfg.pieces_per_key)]
    ladder = [(d, int(rng.integers(12)), int(rng.integers(2)))
              for d in cfg.densities for _ in range(cfg.pieces_per_density)]
    jobs = [(k, m, key_density) for k, m in requests] + [(k, m, d) for d, k, m in ladder]
    made = []
    for i, (k, m, d) in enumerate(tqdm(jobs, desc="generate", unit="piece", disable=not progress,
                                       file=sys.stderr, dynamic_ncols=True)):
        made.append(generate(model, vocab, spec, k, m, d, cfg.bars, seed=cfg.seed * 100003 + i,
                             beats_per_bar=cfg.beats_per_bar, temperature=cfg.temperature))
    keyed, laddered = made[:len(requests)], made[len(requests):]
    clock["generate"] = time.monotonic() - t1

    keys = key_adherence(requests, keyed)
    per = cfg.pieces_per_key
    keys["per_key"] = {f"{KEY_NAMES[k]} {MODES[m]}": key_adherence(
        requests[i:i + per], keyed[i:i + per])["key_and_mode"] for i, (k, m) in
        enumerate(requests) if i % per == 0}
    keys.update(pieces=len(keyed), density=key_density, bars=cfg.bars)
    realised = np.array([onsets_per_beat(n, beats) for n in laddered])
    requested = np.array([d for d, _, _ in ladder])
    density = dict(requested=list(cfg.densities),
                   realised_mean=[float(realised[requested == d].mean()) for d in cfg.densities],
                   spearman=spearman(requested, realised),
                   pieces_per_density=cfg.pieces_per_density)
    over = overlap(keyed + laddered, real)
    over.update(generated_pieces=len(keyed) + len(laddered), held_out_pieces=len(real))

    if plot_path and cfg.roll_pieces:
        from .pianoroll import plot_pianoroll
        pick = np.linspace(0, len(ladder) - 1, min(cfg.roll_pieces, len(ladder)))
        pick = pick.round().astype(int)
        titles = [_title(ladder[i], laddered[i], beats) for i in pick]
        plot_pianoroll([laddered[i] for i in pick], titles, plot_path,
                       ticks_per_beat=vocab.ticks_per_beat, beats_per_bar=cfg.beats_per_bar)
    clock["total"] = time.monotonic() - t0
    return _clean(dict(model=str(model_path), data=str(getattr(ds, "path", data)),
                       config=asdict(cfg), nll=nll, key=keys, density=density, overlap=over,
                       plot=str(plot_path) if plot_path else None, seconds=clock))


def _load_data(data):
    """A dataset object (with .vocab, .spec, .pieces) as is, or ``Dataset.load`` of a path."""
    if hasattr(data, "pieces"):
        return data
    from .data import Dataset
    return Dataset.load(data)


def _crop(notes, window):
    n = notes[notes["start"] < window].copy()
    n["end"] = np.minimum(n["end"], window)
    return n


def _beats(notes, tpb):
    return max(1, -(-int(notes["end"].max()) // tpb)) if len(notes) else 1


def _title(request, notes, beats):
    d, k, m = request
    found = detect_key(notes)
    heard = f"{KEY_NAMES[found[0]]} {MODES[found[1]]}" if found else "nothing"
    return (f"asked {KEY_NAMES[k]} {MODES[m]}, {d:g} onsets/beat; "
            f"heard {heard}, {onsets_per_beat(notes, beats):.2f} onsets/beat")


def _clean(x):
    """NaN -> None and numpy scalars -> Python, so the dict is strict JSON."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return None if not np.isfinite(x) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    return x


def format_table(r):
    """The human-readable summary printed by ``ostinato eval``."""
    n, k, d, o = r["nll"], r["key"], r["density"], r["overlap"]
    f = lambda v, s="{:.3f}": "n/a" if v is None else s.format(v)
    lines = [
        f"held-out NLL on {n['pieces']} pieces, {n['tokens']} predicted events",
        f"  LSTM       {f(n['lstm_nats'])} nats/event  {f(n['lstm_bits'])} bits/event",
        f"  {n['ngram_order']}-gram KN  {f(n['ngram_nats'])} nats/event  "
        f"{f(n['ngram_bits'])} bits/event",
        f"  improvement over the n-gram: {f(n['improvement'], '{:.1%}')}",
        f"key adherence on {k['pieces']} pieces ({k['bars']} bars, {k['density']:g} onsets/beat)",
        f"  key and mode {f(k['key_and_mode'], '{:.1%}')}   mode {f(k['mode'], '{:.1%}')}   "
        f"tonic {f(k['tonic'], '{:.1%}')}",
        f"density: Spearman {f(d['spearman'])} over {d['pieces_per_density']} pieces per value",
        "  requested " + " ".join(f"{v:6g}" for v in d["requested"]),
        "  realised  " + " ".join(f"{v:6.2f}" for v in d["realised_mean"]),
        f"overlap, {o['generated_pieces']} generated vs {o['held_out_pieces']} held-out pieces"
        "  (intersection 1 = same; JS bits 0 = same)",
    ]
    for name in ("pitch_class", "pitch_class_major", "pitch_class_minor", "pitch_range", "ioi"):
        lines.append(f"  {name:18s} {f(o[name]['intersection'])}  JS {f(o[name]['js_bits'])}")
    lines.append(f"took {r['seconds']['total']:.0f} s")
    return "\n".join(lines)


# -- command line --------------------------------------------------------------------
def add_arguments(p):
    p.add_argument("--model", default=str(DEFAULT_MODEL), help="model .npz (default: shipped)")
    p.add_argument("--data", default="data/dataset.npz", help="dataset from `ostinato data`")
    p.add_argument("--split", default="test", choices=SPLITS, help="held-out split (default test)")
    p.add_argument("--pieces-per-key", type=int, default=None,
                   help=f"generated pieces per key and mode (default {EvalConfig.pieces_per_key})")
    p.add_argument("--bars", type=int, default=None,
                   help=f"bars per generated piece (default {EvalConfig.bars})")
    p.add_argument("--max-pieces", type=int, default=None,
                   help="held-out pieces to score (default: all)")
    p.add_argument("--json", nargs="?", const="eval.json", default=None, metavar="PATH",
                   help="write every figure to a JSON file (default eval.json)")
    p.add_argument("--plot", default=None, metavar="PATH.png",
                   help="write a piano roll of generated pieces")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true",
                   help="a small run for a first look (options given explicitly still apply)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args):
    cfg = EvalConfig(split=args.split, seed=args.seed)
    cfg = cfg.quick() if args.quick else cfg
    given = dict(pieces_per_key=args.pieces_per_key, bars=args.bars, max_pieces=args.max_pieces)
    cfg = replace(cfg, **{k: v for k, v in given.items() if v is not None})
    result = evaluate(args.model, args.data, cfg, plot_path=args.plot,
                      progress=not args.no_progress)
    print(format_table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, allow_nan=False))
        print(f"wrote {args.json}")
    if args.plot:
        print(f"wrote {args.plot}")
    return 0
