"""The melody across bar lines: how often it leaps into a bar, and what the lead-in does.

With the form on, a recalled bar's first note follows whatever the free bar before it ended
on, so the melody leaps across bar lines far more often than inside a bar, and far more than
real music does.  The lead-in (``Runtime.leading``, ``engine.sampler.form.lead_in``) draws
the notes of the bar before a recalled one toward the pitch that bar starts with.  This
measures, at a preset's form and repetition, the melody's moves (the top note of each onset)
across bar lines and inside bars, and the fresh critic (``texture_critic``) against the
held-out ensemble pieces, at each lead-in weight asked, seeds alike:

    python -m engine.evaluation.joins [--leading 0,0.6] [--seeds 8] [--preset combat]
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from engine.ensemble import MELODY
from engine.errors import InvalidMessage
from engine.metrics import interval, json_ready

#: A move of at least this many semitones is a leap; at most ``STEP`` a step.
LEAP, STEP = 5, 2


def moves(notes, bar):
    """The melody's moves (semitones, absolute) between successive onsets of its top line:
    (those across a bar line, those inside a bar)."""
    mel = notes[notes["channel"] == MELODY]
    top = {}
    for s, p in zip(mel["start"].tolist(), mel["pitch"].tolist()):
        top[s] = max(p, top.get(s, -1))
    ticks = sorted(top)
    across, inside = [], []
    for a, b in zip(ticks, ticks[1:]):
        (across if a // bar != b // bar else inside).append(abs(top[b] - top[a]))
    return across, inside


def figures(pieces, bar):
    """Leaps and steps across bar lines and inside bars, pooled over ``pieces``."""
    across, inside = [], []
    for n in pieces:
        a, i = moves(n, bar)
        across += a
        inside += i
    out = {}
    for name, m in (("across", np.array(across)), ("inside", np.array(inside))):
        out[f"{name}_leaps"] = float((m >= LEAP).mean()) if len(m) else float("nan")
        out[f"{name}_steps"] = float((m <= STEP).mean()) if len(m) else float("nan")
        out[f"{name}_moves"] = len(m)
    return out


def measure(weights=(0.0, 0.6), seeds=8, preset="combat", progress=print, limit=None):
    """Real and generated figures (a JSON-ready dict): the held-out ensemble pieces as the
    form evaluation reads them, and per lead-in weight the ensemble composing one piece per
    real piece (asked for its controls) in the preset's form at its repetition."""
    from engine.evaluation import form as fe
    from engine.evaluation import texture_critic as tc
    from engine.evaluation.ensemble_texture import critic_over_seeds, mirror
    from engine.evaluation.heldout_ensemble import read_held_out
    from engine.generate import Request, generate_many, load_weights
    import tomllib
    t0 = time.process_time()
    presets = tomllib.loads(Path(fe.STATES).read_text())["presets"]
    if preset not in presets:
        raise InvalidMessage(f"--preset {preset!r} is not in {fe.STATES}", field="--preset",
                             allowed=sorted(presets))
    form, repetition = fe.preset_forms()[preset], float(presets[preset].get("repetition", 0.0))
    cfg = fe.FormEvalConfig()
    bar = cfg.beats_per_bar * cfg.ticks_per_beat
    got, _ = read_held_out(cfg.ensemble_data, cfg.splits, cfg.ticks_per_beat,
                           cfg.beats_per_bar, None)
    held = []
    for p in got[:limit]:
        where = fe.span(p.notes, cfg, cfg.max_windows)
        if where[1]:
            held.append(dict(key=p.key, cut=fe.cut(p.notes, cfg, where), windows=where[1]))
    ecfg = tc.EnsembleEvalConfig(bootstrap=0)
    real = [p["cut"] for p in held]
    asks = [mirror(p["cut"], p["key"], p["windows"] * cfg.window_bars, ecfg) for p in held]
    w = load_weights(cfg.ensemble)
    progress(f"{len(held)} held-out pieces; {preset}: {fe.form_label(form)} at {repetition:g}")
    rows = []
    for lead in weights:
        made = []
        for seed in range(seeds):
            reqs = [Request(a["key"], a["mode"], a["density"], seed=seed * 1_000_003 + i,
                            register=a["register"], voices=a["voices"], leading=lead)
                    for i, a in enumerate(asks)]
            out = generate_many(w, reqs, max(a["bars"] for a in asks),
                                beats_per_bar=cfg.beats_per_bar, repetition=repetition,
                                form=form)
            made.append([fe.cut_bars(n, a["bars"] * bar) for n, a in zip(out, asks)])
        per_seed = [figures(m, bar) for m in made]
        row = dict(leading=lead, critic=critic_over_seeds(real, made, list(range(seeds)),
                                                          ecfg)["auc"])
        for k in per_seed[0]:
            row[k] = interval([f[k] for f in per_seed])
        rows.append(row)
        progress(f"leading {lead:g}: leaps across bar lines {row['across_leaps']['mean']:.3f}, "
                 f"inside {row['inside_leaps']['mean']:.3f}, critic AUC "
                 f"{row['critic']['mean']:.3f}")
    return json_ready(dict(preset=preset, form=fe.form_label(form), repetition=repetition,
                           seeds=seeds, real=figures(real, bar), pieces=len(held),
                           generated=rows, cpu_seconds=time.process_time() - t0))


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m engine.evaluation.joins",
                                description=__doc__.split("\n")[0])
    p.add_argument("--leading", default="0,0.6", metavar="W,W,...",
                   help="the lead-in weights composed at (log-odds per semitone)")
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--preset", default="combat", help="whose form and repetition")
    p.add_argument("--out", default="engine/models/joins.json")
    args = p.parse_args(argv)
    try:
        weights = tuple(float(x) for x in args.leading.split(","))
    except ValueError:
        p.error(f"--leading {args.leading!r}: W,W,... each a number >= 0")
    if any(x < 0 for x in weights) or args.seeds < 2:
        p.error("--leading weights must be >= 0 and --seeds >= 2 (an interval needs two)")
    try:
        res = measure(weights, args.seeds, args.preset,
                      lambda m: print(m, file=sys.stderr, flush=True))
    except InvalidMessage as exc:
        print(f"{p.prog}: {exc}", file=sys.stderr)
        return 2
    Path(args.out).write_text(json.dumps(res, indent=1, allow_nan=False))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
