"""``ostinato eval``: how good is a model, measured on the music the runtime plays.

Every generated piece is composed by ``engine.generate`` through the numba runtime the
server plays (``engine.sampler.generator``), so every figure measures what a game hears.

1. Held-out NLL per event of the LSTM beside a 5-gram (``engine.evaluation.ngram``) fitted on the
   training tokens, both scored on the same pieces and the same predicted tokens
   (``engine.evaluation.likelihood``).
2. Key adherence, two judges: the project's Krumhansl-Kessler analysis (``find_key``)
   and music21's own key analysis (``analyze("key")``, Aarden-Essen profiles), over all
   24 keys at several densities, as per-key tables (tonic and mode, tonic, mode).
   Density adherence: does the realised onset rate rise with the requested density
   (Spearman)?
3. Distribution overlap of generated and held-out music (histogram intersection and
   Jensen-Shannon divergence): pitch classes relative to the detected tonic, pitch
   range per piece, inter-onset intervals, note lengths and simultaneous voices.
   Held-out pieces are cut to the generated length so that counts compare like with like
   (``engine.evaluation.features``).
4. The tonality sweep: key adherence (both judges), held-out NLL under the same prior
   applied to the model's note-on logits, and pitch-class overlap, per tonality value.
5. A piano roll of a few generated pieces (and a plot of the sweep,
   ``engine.evaluation.plots``).
6. Form: every piece is composed at ``repetition`` (0 through-composed .. 1 a loop, the
   default form), and its bar- and phrase-repeat rates and self-similarity profile are
   given (``engine.evaluation.form``); real music's own, measured on bar lines the dataset
   does not keep (meters, pickups), are in ``python -m engine.evaluation.form``'s JSON.
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
from engine.controls import KEY_NAMES, MODES
from engine.errors import InvalidMessage, ModelError
from engine.evaluation.features import (note_lengths, onsets_per_beat, overlap,
                                        overlap_pitch_class, quantiles, texture, voice_counts)
from engine.evaluation.judges import (JUDGE_NAMES, JUDGES, adherence, confusion, detect_key,
                                      judge_keys, key_table, real_music)
from engine.evaluation.likelihood import nll_figures, prior_nll
from engine.evaluation.pieces import crop, load_data
from engine.evaluation.plots import plot_sweep, sweep_path
from engine.generate import DEFAULT_TONALITY, Request, generate_many, load_weights
from engine.metrics import json_ready, spearman
from engine.pianoroll import plot_pianoroll
from engine.training.corpus import annotated_keys as source_keys
from engine.training.model import load_model

SPLITS = ("train", "valid", "test")
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
    repetition: float = 0.0            # of every generated piece: 0 through-composed .. 1
    tonality_sweep: bool = True        # key adherence / NLL / overlap per tonality value
    sweep_tonalities: tuple = SWEEP
    sweep_pieces_per_key: int = None   # per key x mode x key density; None: pieces_per_key
    seed: int = 0
    # held-out NLL only, against the n-gram: for a model the sampler does not play yet
    # (the ensemble's voice tokens), where composing through it would measure nothing
    likelihood_only: bool = False

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
        _check(0 <= self.repetition <= 1, "repetition", "0..1", self.repetition)
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


# -- the evaluation ------------------------------------------------------------------
def evaluate(model_path=DEFAULT_MODEL, data="data/dataset.npz", cfg=EvalConfig(),
             plot_path=None, progress=True):
    """Run the whole evaluation; returns a JSON-ready dict of every figure."""
    clock = {}
    t0 = time.monotonic()
    model, vocab, spec, meta = load_model(model_path)
    ds = load_data(data)
    if ds.vocab != vocab or ds.spec != spec:
        raise ModelError(f"{model_path}: vocabulary or controls differ from the data's "
                         f"({vocab} {spec} vs {ds.vocab} {ds.spec})")
    tonality = DEFAULT_TONALITY if cfg.tonality is None else cfg.tonality
    tpb = vocab.ticks_per_beat
    rng = np.random.default_rng(cfg.seed)
    held = ds.pieces(cfg.split)
    rows = ds.piece_rows(cfg.split)
    if cfg.max_pieces and len(held) > cfg.max_pieces:
        pick = np.sort(rng.choice(len(held), cfg.max_pieces, replace=False))
        held, rows = [held[i] for i in pick], rows[pick]
    train = [t for t, _ in ds.pieces("train")]
    nll = nll_figures(model, train, held, cfg.ngram_order, vocab.size)
    clock["nll"] = time.monotonic() - t0
    if cfg.likelihood_only:
        return json_ready(dict(model=str(model_path), data=str(getattr(ds, "path", data)),
                               config=asdict(cfg), nll=nll, seconds=clock))
    weights = load_weights(model_path)
    key_relative = bool((getattr(ds, "summary", None) or {}).get("key_relative",
                                                                  weights.key_relative))

    beats = cfg.bars * cfg.beats_per_bar
    window = beats * tpb
    real = [crop(vocab.decode(t), window) for t, _ in held]

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
                                 temperature=cfg.temperature, progress=bar.update,
                                 repetition=cfg.repetition)

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
        note_length=quantiles(note_lengths([n for n, r in zip(laddered, requested) if r == d],
                                            tpb)),
        voices=quantiles(np.concatenate([voice_counts(n) for n, r in zip(laddered, requested)
                                          if r == d and len(n)] or [[]])))
        for d in cfg.densities}

    form = form_section(keyed + laddered, cfg)
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
    return json_ready(dict(model=str(model_path), data=str(getattr(ds, "path", data)),
                       config=asdict(cfg), nll=nll, key=keys, density=density, overlap=over,
                       texture=tex, form=form, tonality_sweep=sweep,
                       plot=str(plot_path) if plot_path else None,
                       sweep_plot=str(sweep_plot) if sweep_plot else None, seconds=clock))


def form_section(pieces, cfg):
    """The generated pieces' form figures (``engine.evaluation.form``, over their whole
    8-bar windows from tick 0) at the repetition they were composed at."""
    from engine.evaluation.form import FormEvalConfig
    from engine.evaluation.repeats import ONE_LINE, piece_figures, set_figures
    fc = FormEvalConfig(beats_per_bar=cfg.beats_per_bar)
    where = (0, cfg.bars // fc.window_bars)
    return dict(repetition=cfg.repetition, window_bars=fc.window_bars,
                **set_figures([piece_figures(n, ONE_LINE, fc, where) for n in pieces],
                              ONE_LINE, fc))


def annotated_keys(ds, rows, key_relative):
    """{i: (tonic, mode)} for the pieces ``rows`` of ``ds`` whose source text names their
    key (the ABC collections' ``K:`` field; ``engine.training.corpus.annotated_keys``); a
    key-relative dataset moved each to C, so its tonic is C.  Pieces whose key was only
    measured are left out: that would score the judges against one of themselves."""
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


def _title(request, notes, beats):
    d, k, m = request
    found = detect_key(notes)
    heard = f"{KEY_NAMES[found[0]]} {MODES[found[1]]}" if found else "nothing"
    return (f"asked {KEY_NAMES[k]} {MODES[m]}, {d:g} onsets/beat; "
            f"heard {heard}, {onsets_per_beat(notes, beats):.2f} onsets/beat")


def format_nll(n):
    """The held-out NLL lines: the LSTM beside the n-gram on the same events."""
    f = lambda v, s="{:.3f}": "n/a" if v is None else s.format(v)
    return "\n".join([
        f"held-out NLL on {n['pieces']} pieces, {n['tokens']} predicted events",
        f"  LSTM       {f(n['lstm_nats'])} nats/event  {f(n['lstm_bits'])} bits/event",
        f"  {n['ngram_order']}-gram KN  {f(n['ngram_nats'])} nats/event  "
        f"{f(n['ngram_bits'])} bits/event",
        f"  improvement over the n-gram: {f(n['improvement'], '{:.1%}')}"])


def format_table(r):
    """The human-readable summary printed by ``ostinato eval``."""
    n, k, d, o = r["nll"], r["key"], r["density"], r["overlap"]
    f = lambda v, s="{:.3f}": "n/a" if v is None else s.format(v)
    pc = lambda v: f(v, "{:.1%}")
    dens = ", ".join(f"{x:g}" for x in k["densities"])
    lines = [
        format_nll(n),
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
    fm = r.get("form")
    if fm and fm.get("line"):
        ln = fm["line"]
        lines.append(f"form at repetition {fm['repetition']:g}, {fm['windows']} windows of "
                     f"{fm['window_bars']} bars: bar repeat {pc(ln['bar_repeat']['mean'])}, "
                     f"phrase repeat {pc(ln['phrase_repeat']['mean'])}, similarity at lag "
                     "1..7 " + " ".join(f(v, "{:.2f}") for v in ln["similarity"]))
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
    p.add_argument("--repetition", type=float, default=None, metavar="R",
                   help="compose every piece at this repetition, 0 through-composed .. 1 a "
                        "loop (default 0), and give its form figures")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--likelihood-only", action="store_true",
                   help="held-out NLL against the n-gram only (a model the sampler does not "
                        "play yet: the ensemble)")
    p.add_argument("--quick", action="store_true",
                   help="a small run for a first look (options given explicitly still apply)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args):
    cfg = EvalConfig(split=args.split, seed=args.seed)
    cfg = cfg.quick() if args.quick else cfg
    given = dict(pieces_per_key=args.pieces_per_key, bars=args.bars, max_pieces=args.max_pieces,
                 tonality=args.tonality, tonality_sweep=args.tonality_sweep,
                 repetition=args.repetition,
                 sweep_pieces_per_key=args.sweep_pieces_per_key)
    cfg = replace(cfg, **{k: v for k, v in given.items() if v is not None})
    cfg = replace(cfg, likelihood_only=args.likelihood_only)
    result = evaluate(args.model, args.data, cfg, plot_path=args.plot,
                      progress=not args.no_progress)
    print(format_nll(result["nll"]) if cfg.likelihood_only else format_table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, allow_nan=False))
        print(f"wrote {args.json}")
    if args.plot:
        print(f"wrote {args.plot}")
        if result.get("sweep_plot"):
            print(f"wrote {result['sweep_plot']}")
    return 0
