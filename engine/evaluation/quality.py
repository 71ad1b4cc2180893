"""``ostinato quality``: generation methods compared honestly on the same held-out data.

Each method (a generator model, optionally with a play-time critic: K candidates judged
by D) composes through ``engine.generate.generate_many``, the numba sampler the server
plays, at every temperature of the config and for every seed.  The requests mirror the
held-out pieces: each asks for a test piece's mode, density (onsets per beat) and
register, in a random key.  Splits: the generators were trained on "train"; the
independent LM below is trained on "valid"; "test" is the held-out real music.

- **LM score** (quality): NLL, nats per event, of the generated music under an
  independent ``MusicLSTM`` trained (``engine.training.train.train``) on the "valid" split only
  (its own early-stopping pieces are a random tenth of "valid"), cached in
  ``<out>/lm``.  Lower is closer to real music; the held-out real pieces' own score
  is given beside it.
- **Reverse LM score** (diversity): NLL of the held-out real pieces under a small LSTM
  trained on one cell's generated music.  Music that covers little of real music's
  variety trains an LM that finds real music unlikely.
- **Self-BLEU-4** (diversity, lower is more diverse) over pitch-interval n-grams.
- **Fresh-critic AUC**: a new ``engine.training.critics.ConvCritic`` (never the D of
  adversarial training) trained on whole ``window_bars``-bar windows of the held-out
  real pieces against those of the generated ones, each side split by piece into the
  critic's train and test halves; ROC AUC (Mann-Whitney) on its test windows.  0.5: it
  cannot tell them apart.
- **Guardrails**: the generator's test NLL (``MusicLSTM.nll``), key and mode adherence
  (``judges.key_adherence``, the Krumhansl-Kessler judge; music21's with
  ``music21=True``) and the Spearman correlation of requested and realised density.

Every figure is given per seed and as a 95 % Student-t interval over the seeds,
mean +- t(0.975, n-1) * sd / sqrt(n), and each method's row as its difference from
the baseline method's (the one named "mle", else the first) at the same temperature.
The models trained to score are in ``engine.evaluation.scorers``; the interval in
``engine.metrics``; the plot in ``engine.evaluation.plots``.
"""
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from engine import DEFAULT_MODEL
from engine.controls import find_key, key_shift, to_tonic_c
from engine.errors import InvalidMessage, ModelError
from engine.evaluation.features import onsets_per_beat
from engine.evaluation.judges import adherence, judge_keys, key_adherence
from engine.evaluation.likelihood import mean_nll
from engine.evaluation.pieces import crop, encode, load_data, windows
from engine.evaluation.plots import plot_quality
from engine.evaluation.scorers import fresh_critic_auc, independent_lm, reverse_lm
from engine.generate import Request, generate_many, load_weights
from engine.metrics import interval, json_ready, spearman
from engine.training.model import load_model

METRICS = ("lm_score", "reverse_lm", "self_bleu4", "critic_auc", "key_and_mode", "mode",
           "tonic", "density_spearman")


@dataclass(frozen=True)
class QualityConfig:
    """What is generated per cell (method x temperature x seed) and how it is scored."""

    temperatures: tuple = (0.7, 0.85, 1.0, 1.15, 1.3)
    seeds: tuple = (0, 1, 2)
    pieces: int = 64              # generated pieces per cell
    bars: int = 16                # per generated piece (held-out pieces are cut to it)
    window_bars: int = 8          # the fresh critic's windows
    beats_per_bar: int = 4
    max_test_pieces: int = None   # held-out pieces used; None: all
    lm_embed: int = 32            # the independent LM
    lm_hidden: int = 128
    lm_steps: int = 600
    reverse_hidden: int = 64      # each reverse LM
    reverse_steps: int = 200
    critic_embed: int = 16        # each fresh critic
    critic_hidden: int = 64
    critic_steps: int = 300
    critic_lr: float = 1e-3
    batch_size: int = 32
    seq_len: int = 128
    lr: float = 2e-3
    music21: bool = False         # also music21's key judge (slow)
    threads: int = 1              # torch CPU threads while training

    def __post_init__(self):
        ok = (len(self.temperatures) >= 1 and all(0 < t <= 10 for t in self.temperatures)
              and len(self.seeds) >= 1 and self.pieces >= 2 and 1 <= self.bars <= 256
              and 1 <= self.window_bars <= self.bars and 1 <= self.beats_per_bar <= 16
              and min(self.lm_steps, self.reverse_steps, self.critic_steps) >= 1
              and (self.max_test_pieces is None or self.max_test_pieces >= 2))
        if not ok:
            raise InvalidMessage(f"impossible quality config {self}", field="config",
                                 allowed="temperatures in (0, 10], >= 1 seed, >= 2 pieces, "
                                         "1 <= window_bars <= bars, steps >= 1")

    def quick(self):
        """A tiny run for CI and a first look: two temperatures, two seeds, tiny models."""
        return replace(self, temperatures=(0.7, 1.3), seeds=(0, 1), pieces=6, bars=2,
                       window_bars=1, max_test_pieces=8, lm_embed=8, lm_hidden=16, lm_steps=150,
                       reverse_hidden=8, reverse_steps=10, critic_embed=8, critic_hidden=8,
                       critic_steps=10, batch_size=8, seq_len=32)


def intervals(notes):
    """Pitch intervals of the melody line: the highest pitch at each distinct onset, and
    the difference of each from the one before (semitones, -127..127)."""
    if len(notes) < 2:
        return np.zeros(0, np.int64)
    o = np.lexsort((-notes["pitch"].astype(np.int64), notes["start"]))
    s, p = notes["start"][o], notes["pitch"][o].astype(np.int64)
    return np.diff(p[np.r_[True, s[1:] != s[:-1]]])


def self_bleu(seqs, n_max=4, eps=0.1):
    """Self-BLEU-n (Zhu et al. 2018, Texygen): the mean over sequences of the BLEU of each
    against all the others as references.  BLEU (Papineni et al. 2002) =
    BP * exp(mean_n log p_n), p_n the modified n-gram precision (each n-gram's count
    clipped to its largest count in any one reference), BP = exp(1 - r/c) when the length
    c is not above r, the reference length nearest c (the shorter on a tie).  Smoothing:
    Chen & Cherry (2014) method 1, a zero numerator becomes ``eps``, as nltk's
    ``SmoothingFunction().method1`` that Texygen uses; no unigram match gives 0."""
    seqs = [np.asarray(s, np.int64) for s in seqs]
    N = len(seqs)
    if N < 2:
        return float("nan")
    c = np.array([len(s) for s in seqs])
    logp, first = np.zeros((N, n_max)), None
    for n in range(1, n_max + 1):
        grams = [np.lib.stride_tricks.sliding_window_view(s + 128, n) @ (256 ** np.arange(n))
                 if len(s) >= n else np.zeros(0, np.int64) for s in seqs]
        owner = np.repeat(np.arange(N), [len(g) for g in grams])
        uniq, inv = np.unique(np.concatenate(grams), return_inverse=True)
        C = np.zeros((N, len(uniq)), np.int64)
        np.add.at(C, (owner, inv), 1)
        top2 = np.sort(C, 0)[-2:] if len(uniq) else np.zeros((2, 0), np.int64)
        ref = np.where(C == top2[1], top2[0], top2[1])   # largest count among the others
        num = np.minimum(C, ref).sum(1)
        first = num if first is None else first
        logp[:, n - 1] = np.log(np.where(num > 0, num, eps) / np.maximum(C.sum(1), 1))
    scores = np.zeros(N)
    for i in range(N):
        others = np.delete(c, i)
        r = min(others, key=lambda x: (abs(x - c[i]), x))
        bp = 1.0 if c[i] > r else math.exp(1 - r / c[i]) if c[i] else 0.0
        scores[i] = bp * math.exp(logp[i].mean()) if first[i] > 0 else 0.0
    return float(scores.mean())


# -- the comparison --------------------------------------------------------------------------
class HeldOut:
    """The held-out real music and the requests that mirror it, the same for every cell.

    ``test``: the test pieces (at most ``max_test_pieces``, a fixed sample); ``cut``:
    their notes cut to ``bars`` bars and ``real`` those encoded; ``windows``: per piece,
    its ``window_bars``-bar windows; ``requests``: (key, mode, density, register) per
    generated piece, from a test piece (cycled): its mode, onsets per beat and mean pitch
    (a key-relative model then composes at the piece's own register), a random key."""

    def __init__(self, ds, cfg):
        tpb, rng = ds.vocab.ticks_per_beat, np.random.default_rng(0)
        self.beats = beats = cfg.bars * cfg.beats_per_bar
        self.test = ds.pieces("test")
        if cfg.max_test_pieces and len(self.test) > cfg.max_test_pieces:
            pick = np.sort(rng.choice(len(self.test), cfg.max_test_pieces, False))
            self.test = [self.test[i] for i in pick]
        full = [ds.vocab.decode(t) for t, _ in self.test]
        self.cut = [crop(n, beats * tpb) for n in full]
        self.real = [encode(ds, n) for n in self.cut]
        self.windows = [windows(ds, n, cfg.window_bars * cfg.beats_per_bar * tpb) for n in full]
        self.requests = []
        for j in rng.permutation(len(full))[np.arange(cfg.pieces) % len(full)]:
            n = self.cut[j]
            tonic, mode, _ = find_key(full[j]) if len(full[j]) else (0, 0, 0)
            key = int(rng.integers(12)) if ds.key_relative else tonic
            move = key_shift(key) if ds.key_relative else 0
            reg = float(np.clip(n["pitch"].mean() + move, 0, 127)) if len(n) else None
            self.requests.append((key, int(mode), float(np.clip(len(n) / beats, 0.25, 16)), reg))
        self.bleu_sample = rng.permutation(len(full))[:cfg.pieces]


def measure_cell(ds, weights, critic, held, lm, T, seed, cfg):
    """Every figure of one method at one temperature and seed (a dict of floats)."""
    reqs = [Request(k, m, d, seed=seed * 1_000_003 + i, register=r)
            for i, (k, m, d, r) in enumerate(held.requests)]
    kw = dict(critic=str(critic[0]), critic_k=int(critic[1])) if critic else {}
    notes = generate_many(weights, reqs, cfg.bars, beats_per_bar=cfg.beats_per_bar,
                          temperature=T, **kw)
    # the model's own pitch space, as the data is stored (a key-relative set: in C)
    space = [to_tonic_c(n, r.key) if ds.key_relative and len(n) else n
             for n, r in zip(notes, reqs)]
    gen = [encode(ds, n) for n in space]
    window = cfg.window_bars * cfg.beats_per_bar * ds.vocab.ticks_per_beat
    fake = [windows(ds, n, window, held.beats * ds.vocab.ticks_per_beat) for n in space]
    km = [(r.key, r.mode) for r in reqs]
    cell = dict(key_adherence(km, notes), lm_score=mean_nll(lm, gen),
                reverse_lm=reverse_lm(ds, gen, held.real, cfg, seed),
                self_bleu4=self_bleu([intervals(n) for n in notes]),
                critic_auc=fresh_critic_auc(ds, held.windows, fake, cfg, seed),
                density_spearman=spearman([r.density for r in reqs],
                                          [onsets_per_beat(n, held.beats) for n in notes]))
    if cfg.music21:
        found = judge_keys(notes, ds.vocab.ticks_per_beat)["music21"]
        cell["music21_key_and_mode"] = adherence(km, found)["key_and_mode"]
    return cell


def compare(methods, data, out, cfg=QualityConfig(), progress=False):
    """Compare ``methods``, a list of (name, generator model path, None or (critic path,
    K)), on ``data`` (a ``Dataset`` or its path); writes ``<out>/quality.json`` and
    ``<out>/quality.png`` and returns the same dict:

    ``config``, ``splits``, ``interval`` (how intervals are made), ``baseline`` (a method
    name), ``independent_lm`` (path, cached, config, valid_nll), ``real`` (the held-out
    pieces' own lm_score and self_bleu4, pieces, windows), ``methods``: {name: {model,
    critic, critic_k, test_nll, test_nll_change (relative to the baseline's), rows: [one
    per temperature: {temperature, pieces, and per figure in METRICS {mean, lo, hi,
    seeds: [...]}, vs_baseline: {figure: mean - the baseline's mean}}]}}, ``plot``,
    ``seconds``.  A figure that cannot be computed is null."""
    t0, out = time.monotonic(), Path(out)
    methods = [(n, m, c if c and int(c[1]) > 0 else None) for n, m, c in methods]
    names = [m[0] for m in methods]
    if not methods or len(set(names)) != len(names):
        raise InvalidMessage(f"methods {names} are empty or repeat a name", field="method",
                             allowed="one or more methods with distinct names")
    out.mkdir(parents=True, exist_ok=True)
    ds = load_data(data)
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        held = HeldOut(ds, cfg)
        lm, lm_info = independent_lm(ds, out / "lm", cfg, progress)
        real = dict(pieces=len(held.real), windows=sum(map(len, held.windows)),
                    lm_score=mean_nll(lm, held.real),
                    self_bleu4=self_bleu([intervals(held.cut[i]) for i in held.bleu_sample]))
        result = dict(data=str(data) if isinstance(data, (str, Path)) else None,
                      config=asdict(cfg), independent_lm=lm_info, real=real,
                      splits=dict(generators="train", independent_lm="valid", held_out="test"),
                      interval="95% Student-t interval over seeds: "
                               "mean +- t(0.975, n-1) sd/sqrt(n)",
                      baseline="mle" if "mle" in names else names[0], methods={})
        bar = tqdm(total=len(methods) * len(cfg.temperatures) * len(cfg.seeds), desc="quality",
                   unit="cell", disable=not progress, file=sys.stderr, dynamic_ncols=True)
        test_nll = {}
        for name, model_path, critic in methods:
            weights = load_weights(model_path)
            if weights.vocab != ds.vocab or weights.spec != ds.spec:
                raise ModelError(f"{model_path}: vocabulary or controls differ from the data's")
            if str(model_path) not in test_nll:   # a play-time critic leaves G's NLL as it is
                test_nll[str(model_path)] = mean_nll(load_model(model_path)[0], held.test)
            rows = []
            for T in cfg.temperatures:
                cells = []
                for seed in cfg.seeds:
                    bar.set_description(f"{name} T={T:g} seed {seed}")
                    cells.append(measure_cell(ds, weights, critic, held, lm, T, seed, cfg))
                    bar.update(1)
                rows.append(dict(temperature=T, pieces=cfg.pieces,
                                 **{k: interval([c[k] for c in cells]) for k in cells[0]}))
            result["methods"][name] = dict(
                model=str(model_path), critic=str(critic[0]) if critic else None,
                critic_k=int(critic[1]) if critic else 0, test_nll=test_nll[str(model_path)],
                rows=rows)
        bar.close()
    finally:
        torch.set_num_threads(threads)
    base = result["methods"][result["baseline"]]
    for m in result["methods"].values():
        m["test_nll_change"] = m["test_nll"] / base["test_nll"] - 1
        for row, b in zip(m["rows"], base["rows"]):
            row["vs_baseline"] = {k: None if row[k]["mean"] is None or b[k]["mean"] is None
                                  else row[k]["mean"] - b[k]["mean"] for k in METRICS}
    result["plot"] = str(plot_quality(result, out / "quality.png"))
    result["seconds"] = dict(total=time.monotonic() - t0)
    result = json_ready(result)
    (out / "quality.json").write_text(json.dumps(result, indent=1, allow_nan=False))
    return result


def format_table(r):
    """The summary printed by ``ostinato quality``: one line per method and temperature,
    each figure as mean +- the half-width of its interval."""
    g = lambda v: "n/a" if v is None else f"{v:.3f}"
    f = lambda iv: g(iv["mean"]) + ("" if iv["lo"] is None
                                    else f" +-{(iv['hi'] - iv['lo']) / 2:.3f}")
    cols = ("lm_score", "reverse_lm", "self_bleu4", "critic_auc", "key_and_mode",
            "density_spearman")
    lines = [f"held-out real: LM score {g(r['real']['lm_score'])}, Self-BLEU-4 "
             f"{g(r['real']['self_bleu4'])} ({r['real']['pieces']} pieces); {r['interval']}",
             f"{'method':14s} {'T':>5s} " + " ".join(f"{c:>16s}" for c in cols)]
    for name, m in r["methods"].items():
        lines += [f"{name:14s} {row['temperature']:5g} " + " ".join(f"{f(row[c]):>16s}"
                                                                 for c in cols)
                  for row in m["rows"]]
        lines.append(f"{'':14s} test NLL {g(m['test_nll'])} nats/event "
                     f"({m['test_nll_change'] or 0:+.2%} vs {r['baseline']})")
    return "\n".join(lines)


# -- command line ----------------------------------------------------------------------------
def parse_method(text):
    """NAME=MODEL or NAME=MODEL:CRITIC:K -> (name, model, None or (critic, K))."""
    name, sep, rest = text.partition("=")
    parts = rest.rsplit(":", 2)
    if sep and name and len(parts) == 3 and parts[2].isdigit() and parts[0] and parts[1]:
        return name, parts[0], (parts[1], int(parts[2])) if int(parts[2]) else None
    if not (sep and name and rest) or ":" in rest:
        raise InvalidMessage(f"method {text!r} is not NAME=MODEL or NAME=MODEL:CRITIC:K",
                             field="method", allowed="NAME=MODEL[:CRITIC:K]")
    return name, rest, None


def add_arguments(p):
    p.add_argument("--method", action="append", default=[], metavar="NAME=MODEL[:CRITIC:K]",
                   help="a method to compare (repeatable); K candidates judged by CRITIC at "
                        "play time (default: mle=the shipped model)")
    p.add_argument("--data", default="data/dataset.npz", help="dataset from `ostinato data`")
    p.add_argument("--out", default="runs/quality",
                   help="folder for quality.json, quality.png and the cached independent LM")
    p.add_argument("--pieces", type=int, default=None, help="generated pieces per cell")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (default 3)")
    p.add_argument("--temperatures", default=None, metavar="T,T,...",
                   help="sampling temperatures (default 0.7,0.85,1,1.15,1.3)")
    p.add_argument("--quick", action="store_true", help="a tiny run (CI, a first look)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args):
    methods = [parse_method(m) for m in args.method] or [("mle", str(DEFAULT_MODEL), None)]
    cfg = QualityConfig().quick() if args.quick else QualityConfig()
    cfg = replace(cfg, pieces=cfg.pieces if args.pieces is None else args.pieces,
                  seeds=cfg.seeds if args.seeds is None else tuple(range(args.seeds)))
    if args.temperatures:
        try:
            temps = tuple(float(t) for t in args.temperatures.split(","))
        except ValueError:
            raise InvalidMessage(f"temperatures {args.temperatures!r} are not numbers",
                                 field="temperatures", allowed="T,T,... in (0, 10]") from None
        cfg = replace(cfg, temperatures=temps)
    result = compare(methods, args.data, args.out, cfg, progress=not args.no_progress)
    print(format_table(result))
    print(f"wrote {Path(args.out) / 'quality.json'} and {result['plot']}")
    return 0
