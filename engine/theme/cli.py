"""``ostinato theme``: train a theme model, its held-out figures, its evaluation through
the sampler that plays, and what a theme is understood as.

``ostinato theme train`` (``engine.theme.train``), ``ostinato theme figures MODEL``
(``engine.theme.figures``), ``ostinato theme eval MODEL`` (those figures and
``engine.theme.variations``) and ``ostinato theme encode FILE.mid`` (what a theme is
understood as, and the z the server's encoder gives it).
"""
import json
import math
import sys
import time
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch

from engine import DEFAULT_MODEL
from engine.controls import MODES
from engine.errors import ModelError
from engine.evaluation.quality import QualityConfig
from engine.evaluation.scorers import independent_lm
from engine.modelfile import read_model_file
from engine.motif import from_command_line
from engine.sampler import theme as sampler_theme
from engine.theme.figures import format_figures, theme_figures
from engine.theme.model import ThemeConfig, ThemeVAE, check_range, load_theme, theme_config
from engine.theme.train import ThemeTrainConfig, train_theme
from engine.theme.variations import evaluate_variations
from engine.training.data import Dataset
from engine.training.model import load_model
from engine.vocab import Vocab


def _add_config(p, cls):
    """One option per field of a config dataclass, its help from the field's metadata."""
    for f in fields(cls):
        p.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=f.default,
                       help=f"{f.metadata['help']} (default: %(default)s)")


def add_arguments(p):
    acts = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    t = acts.add_parser("train", help="train a theme VAE from the shipped generator",
                        description="train the theme encoder and the z-conditioned decoder "
                                    "(ELBO, KL annealing, free bits); writes OUT/theme.npz")
    t.add_argument("--data", default="data/dataset.npz", help="dataset from `ostinato data`")
    t.add_argument("--base", default=str(DEFAULT_MODEL),
                   help="the plain generator the decoder starts from (default: %(default)s)")
    t.add_argument("--out", default="runs/theme", help="run folder (default: %(default)s)")
    _add_config(t, ThemeConfig)
    _add_config(t, ThemeTrainConfig)
    t.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    t.add_argument("--max-minutes", type=float, default=None, help="wall-time budget")
    t.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    t.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    f = acts.add_parser("figures", help="held-out figures of a theme model",
                        description="ELBO NLL, KL, active units, MI and accuracy on held-out "
                                    "phrases, and the z = 0 decoder against the base model")
    f.add_argument("model", help="theme model file (theme.npz)")
    f.add_argument("--data", default="data/dataset.npz", help="dataset from `ostinato data`")
    f.add_argument("--split", default="valid", choices=("train", "valid", "test"))
    f.add_argument("--bars", type=int, nargs="+", default=[2, 4], help="phrase lengths (2 4)")
    f.add_argument("--n", type=int, default=256, help="phrases of each length (256)")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--base", default=None, help="plain model to compare with (default: the "
                                                "one the theme model was trained from)")
    f.add_argument("--stream-windows", type=int, default=None,
                   help="256-token windows of the stream for the NLL at z = 0 (default: all)")
    f.add_argument("--json", action="store_true", help="print the figures as JSON")
    f.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    v = acts.add_parser("eval", help="the theme model on held-out themes, through the sampler "
                        "that plays", description="held-out figures (as `figures`) and the "
                        "variation evaluation (engine/theme/variations.py): reconstruction at "
                        "variation 0, similarity and novelty against variation, a fresh "
                        "critic's AUC at each variation, the plain model primed with each "
                        "theme as the baseline, and interpolation between held-out themes")
    v.add_argument("model", help="theme model file (theme.npz)")
    v.add_argument("--data", default="data/dataset.npz", help="dataset from `ostinato data`")
    v.add_argument("--split", default="test", choices=("train", "valid", "test"))
    v.add_argument("--n", type=int, default=64, help="held-out themes of each length (64)")
    v.add_argument("--seeds", type=int, default=2, help="pieces per theme and setting (2)")
    v.add_argument("--base", default=None, help="plain model for the baseline (default: the "
                                                "one the theme model was trained from)")
    v.add_argument("--json", default=None, metavar="PATH", help="write every figure here")
    v.add_argument("--lm-dir", default="runs/quality/lm", help="where the independent LSTM "
                   "(engine/evaluation/scorers.py, trained on the valid split) is cached (%(default)s)")
    v.add_argument("--quick", action="store_true", help="tiny critics and independent LSTM "
                   "(QualityConfig.quick): a first look, not figures to quote")
    v.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    e = acts.add_parser("encode", help="what a theme is understood as: key, bars, notes, z",
                        description="read a theme (a .mid file, or --notes) as the server "
                                    "would: its measured key, length and notes; with a theme "
                                    "model, the latent it encodes to (torch-free encoder)")
    e.add_argument("theme", nargs="?", help="a .mid file (every track and channel but drums)")
    e.add_argument("--notes", default=None, metavar="JSON",
                   help='the theme as [[pitch, start_beat, duration_beats], ...] instead')
    e.add_argument("--mode", choices=("major", "minor"), default=None,
                   help="the mode it is to be played in (default: its own)")
    e.add_argument("--model", default=None, help="theme model file (theme.npz) to encode with")


def run(args):
    if getattr(args, "threads", None) is not None:  # encode runs no torch
        check_range("threads", args.threads, 1, 1024)
        torch.set_num_threads(args.threads)
    return ACTIONS[args.action](args)


def _run_train(args):
    cfg = ThemeConfig(**{f.name: getattr(args, f.name) for f in fields(ThemeConfig)})
    tc = ThemeTrainConfig(**{f.name: getattr(args, f.name) for f in fields(ThemeTrainConfig)})
    last = train_theme(args.data, args.base, args.out, cfg, tc, resume=args.resume,
                       max_minutes=args.max_minutes, device=args.device,
                       command="ostinato theme " + " ".join(sys.argv[2:]))
    print(f"step {last.get('step')}: ce {last.get('ce_token', math.nan):.4f} nats/token, KL "
          f"{last.get('kl', math.nan):.2f} nats/phrase -> {Path(args.out) / 'theme.npz'}")
    return 0


def _run_figures(args):
    for k in args.bars:
        check_range("bars", k, 1, 32)
    check_range("n", args.n, 1, 100000)
    if args.stream_windows is not None:
        check_range("stream_windows", args.stream_windows, 0, 10 ** 6)
    enc, dec, vocab, spec, meta = load_theme(args.model)
    cfg = theme_config(meta)
    if max(args.bars) > cfg.max_bars:
        check_range("bars", max(args.bars), 1, cfg.max_bars)
    data = Dataset.load(args.data)
    if vocab != data.vocab or spec != data.spec:
        raise ModelError(f"{args.model}: its vocabulary or controls differ from the dataset's")
    base_path = args.base or meta.get("info", {}).get("base") or str(DEFAULT_MODEL)
    base = load_model(base_path)[0]
    tc = meta.get("info", {}).get("theme_train", {})
    figs = theme_figures(ThemeVAE(enc, dec, cfg), data, args.split, tuple(args.bars), args.n,
                         args.seed, base=base, stream_windows=args.stream_windows,
                         max_tokens=tc.get("max_tokens", ThemeTrainConfig.max_tokens))
    if args.json:
        print(json.dumps(dict(model=str(args.model), base=str(base_path), split=args.split,
                              figures=figs), indent=1))
    else:
        print(f"{args.model} on {args.data} ({args.split}), base {base_path}")
        print(format_figures(figs))
    return 0


def _run_encode(args):
    motif = from_command_line(args.theme, args.notes)
    mode = None if args.mode is None else MODES.index(args.mode)
    print(f"{motif.source}: {motif.describe()}")
    if mode is not None and mode != motif.mode:
        print(f"  played in {args.mode}: mapped by scale degree to the parallel {args.mode}")
    if args.model:
        enc = sampler_theme.ThemeEncoder(args.model)  # the server's: what plays is measured
        meta = read_model_file(args.model)[0]
        vocab = Vocab.from_dict(meta["vocab"])
        tokens = motif.tokens(vocab, mode)
        t0 = time.perf_counter()
        mu, logvar = enc.encode(tokens)
        ms = 1e3 * (time.perf_counter() - t0)
        kl = 0.5 * float(np.sum(mu ** 2 + np.exp(logvar) - 1.0 - logvar))
        print(f"  {len(tokens)} tokens -> z of {len(mu)} dimensions: |mu| {np.linalg.norm(mu):.2f}, "
              f"mean sigma {float(np.exp(0.5 * logvar).mean()):.3f}, KL to the prior "
              f"{kl:.1f} nats (encoded in {ms:.1f} ms, numba; the first call compiles)")
    return 0


def _run_eval(args):
    check_range("n", args.n, 1, 100000)
    check_range("seeds", args.seeds, 1, 100)
    t0 = time.monotonic()
    enc, dec, vocab, spec, meta = load_theme(args.model)
    data = Dataset.load(args.data)
    if vocab != data.vocab or spec != data.spec:
        raise ModelError(f"{args.model}: its vocabulary or controls differ from the dataset's")
    base_path = args.base or meta.get("info", {}).get("base") or str(DEFAULT_MODEL)
    tc = meta.get("info", {}).get("theme_train", {})
    figs = theme_figures(ThemeVAE(enc, dec, theme_config(meta)), data, args.split, (2, 4),
                         args.n * 4, base=load_model(base_path)[0],
                         max_tokens=tc.get("max_tokens", ThemeTrainConfig.max_tokens))
    qc = QualityConfig(window_bars=8)
    qc = qc.quick() if args.quick else qc
    lm, lm_info = independent_lm(data, args.lm_dir, qc, progress=True)
    var = evaluate_variations(args.model, base_path, data, args.split, args.n,
                              tuple(range(args.seeds)), quality=qc, lm=lm)
    var["independent_lm"] = lm_info
    out = dict(model=str(args.model), base=str(base_path), data=str(args.data),
               split=args.split, figures=figs, variations=var,
               seconds=round(time.monotonic() - t0, 1))
    print(format_figures(figs))
    for k in ("2_bars", "4_bars"):
        r = var.get(k, {})
        if not r.get("themes"):
            continue
        rec = r["reconstruction"]
        print(f"{k.replace('_', ' ')}: {r['themes']} themes; at variation 0, note accuracy "
              f"{rec['note_accuracy']:.3f}, onsets {rec['onset_accuracy']:.3f}; Spearman of "
              f"similarity on variation {r['spearman']:.3f} over pieces, "
              f"{r['spearman_within_theme']:.3f} within themes, {r['spearman_curve']:.3f} "
              "of the curve")
        for name, curve in (("variation", r["variation"]), ("primed, temperature", r["primed"])):
            print(f"  {name:20s} " + "  ".join(
                f"{x}: sim {c['similarity']:.3f} nov {c['novelty']:.3f}" for x, c in curve.items()))
        if "critic_auc" in r:
            print("  critic AUC           " + "  ".join(
                f"{x}: {c['mean']:.3f} ({c['vs_free']:+.3f})" for x, c in r["critic_auc"].items()))
        ip = r.get("interpolation", {})
        if ip.get("pairs"):
            print(f"  interpolation, {ip['pairs']} pairs: midpoint NLL {ip['midpoint_nll']:.3f} "
                  f"vs endpoints {ip['endpoint_nll']:.3f} ({ip['midpoint_vs_endpoints']:+.1%}); "
                  f"edit distance never falls in {ip['monotone_share']:.0%} of pairs; mean "
                  "distance " + " ".join(f"{d:.2f}" for d in ip["distance"]))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=float))
        print(f"wrote {args.json}")
    return 0


ACTIONS = {"train": _run_train, "figures": _run_figures, "eval": _run_eval,
           "encode": _run_encode}
