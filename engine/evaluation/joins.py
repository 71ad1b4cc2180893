"""The melody across bar lines and sections: its leaps into a bar, what the lead-in and the
join rule do, and how much one 4-bar span contrasts with the next.

With the form on, a recalled bar's first note follows whatever the free bar before it ended
on, so the melody leaps across bar lines far more often than inside a bar, and far more than
real music does.  The lead-in (``Runtime.leading``, ``engine.sampler.plan.lead_in``) draws
the notes of the bar before a recalled one toward the pitch that bar starts with; the join
rule (``Runtime.joining``, ``engine.sampler.plan._joins``) drops a melody recall that would
begin more than so many semitones from the note before it, which costs recalls, so it is
measured at the preset's repetition and at 1.  This measures, at a preset's form, the
melody's moves (the top note of each onset) across bar lines and inside bars, its bar
repeats (the form evaluation's figure) and the fresh critic (``texture_critic``) against
the held-out ensemble pieces, at each lead-in weight and join limit asked, seeds alike;
and the contrast between successive 4-bar spans (the melody's mean pitch, the pitched
onsets), beside the same ensemble through-composed (repetition 0: every span new, the
model's own contrast):

    python -m engine.evaluation.joins [--leading 0,0.6] [--joining 4,8] [--seeds 8]
                                      [--preset combat]
"""
import argparse
import sys
import time
from dataclasses import replace

import numpy as np

from engine.ensemble import BASS, DRUMS, MELODY
from engine.metrics import interval, json_ready, write_figures

#: A move of at least this many semitones is a leap; at most ``STEP`` a step.
LEAP, STEP = 5, 2
#: The spans whose contrast is measured, in bars (a section of an 8-bar ABAB or AABA).
SPAN_BARS = 4


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


def contrasts(notes, bar, bars):
    """Between each two successive ``SPAN_BARS``-bar spans of a piece of ``bars`` bars that
    both have melody: (|difference of the melody's mean pitch|, |log ratio of the pitched
    onsets|)."""
    out, prev = [], None
    for k in range(bars // SPAN_BARS):
        lo, hi = k * SPAN_BARS * bar, (k + 1) * SPAN_BARS * bar
        sel = notes[(notes["start"] >= lo) & (notes["start"] < hi)]
        mel = sel[sel["channel"] == MELODY]
        pitched = sel[sel["channel"] != DRUMS]
        cur = (float(mel["pitch"].mean()), len(pitched)) if len(mel) else None
        if cur is not None and prev is not None:
            out.append((abs(cur[0] - prev[0]), abs(float(np.log(cur[1] / prev[1])))))
        prev = cur
    return out


def downbeats(notes, bar, voice):
    """Per bar line after the first bar, whether ``voice`` sounds there (a note struck on it
    or held over it)."""
    sel = notes[notes["channel"] == voice]
    lines = np.arange(bar, int(notes["end"].max()) if len(notes) else 0, bar)
    return [bool(((sel["start"] <= t) & (sel["end"] > t)).any()) for t in lines]


def figures(pieces, bar, bars=None):
    """Leaps and steps across bar lines and inside bars, and the share of bar lines where
    the melody and the bass sound, pooled over ``pieces``; with ``bars`` (each piece's),
    the contrast between successive spans, pooled too."""
    across, inside = [], []
    for n in pieces:
        a, i = moves(n, bar)
        across += a
        inside += i
    out = {}
    for name, voice in (("melody", MELODY), ("bass", BASS)):
        heard = [x for n in pieces for x in downbeats(n, bar, voice)]
        out[f"{name}_on_downbeats"] = float(np.mean(heard)) if heard else float("nan")
    if bars is not None:
        c = np.array([x for n, b in zip(pieces, bars) for x in contrasts(n, bar, b)])
        out["span_register"] = float(c[:, 0].mean()) if len(c) else float("nan")
        out["span_density"] = float(c[:, 1].mean()) if len(c) else float("nan")
        out["span_pairs"] = len(c)
    for name, m in (("across", np.array(across)), ("inside", np.array(inside))):
        out[f"{name}_leaps"] = float((m >= LEAP).mean()) if len(m) else float("nan")
        out[f"{name}_steps"] = float((m <= STEP).mean()) if len(m) else float("nan")
        out[f"{name}_moves"] = len(m)
    return out


def measure(weights=(0.0, 0.6), seeds=8, preset="combat", progress=print, limit=None,
            data=None, joinings=(), model=None, splits=None, states=None):
    """Real and generated figures (a JSON-ready dict): the held-out ensemble pieces of
    ``data`` (None: the form evaluation's dataset) as the form evaluation reads them, at
    most ``limit`` of them, and per lead-in weight the ensemble composing one piece per
    real piece (asked for its controls) in the preset's form at its repetition; per join
    limit in ``joinings``, the same at the preset's repetition and at 1; ``model``: the
    ensemble model (None: the shipped one); ``splits``: the held-out splits (None: the form
    evaluation's); ``states``: the presets file (None: the shipped one)."""
    from engine.evaluation import form as fe
    from engine.evaluation import repeats as rp
    from engine.evaluation import texture_critic as tc
    from engine.evaluation.ensemble_texture import critic_over_seeds, mirror
    from engine.generate import load_weights
    t0 = time.process_time()
    form, repetition = fe.preset_plan(preset, states or fe.STATES)
    given = dict(ensemble_data=data, ensemble=model)
    cfg = fe.FormEvalConfig(**{k: str(v) for k, v in given.items() if v is not None})
    if splits is not None:
        cfg = replace(cfg, splits=tuple(splits))
    bar = cfg.beats_per_bar * cfg.ticks_per_beat
    held, _ = fe.held_pieces(cfg, cfg.splits, limit=limit)
    ecfg = tc.EnsembleEvalConfig(bootstrap=0)
    real = [p["cut"] for p in held]
    asks = [mirror(p["cut"], p["key"], p["windows"] * cfg.window_bars, ecfg, source=p["source"])
            for p in held]
    w = load_weights(cfg.ensemble)
    progress(f"{len(held)} held-out pieces; {preset}: {fe.form_label(form)} at {repetition:g}")
    bars = [a["bars"] for a in asks]
    rows = []
    # the preset at each lead-in weight, with each join limit (at its repetition and at 1),
    # then through-composed (the model's own sections)
    runs = ([(x, 0.0, repetition) for x in weights] +
            [(0.0, j, r) for j in joinings for r in sorted({repetition, 1.0})] + [(0.0, 0.0, 0.0)])
    for lead, join, rep in runs:
        made = [fe.compose(w, asks, seed, rep, form, cfg, leading=lead, joining=join)
                for seed in range(seeds)]
        per_seed = [figures(m, bar, bars) for m in made]
        repeats = rp.over_seeds([rp.set_figures([rp.piece_figures(
            n, rp.ENSEMBLE_LINES, cfg, (0, a["bars"] // cfg.window_bars)) for n, a in zip(m, asks)],
            rp.ENSEMBLE_LINES, cfg) for m in made], rp.ENSEMBLE_LINES)
        row = dict(leading=lead, joining=join, repetition=rep,
                   critic=critic_over_seeds(real, made, list(range(seeds)), ecfg)["auc"],
                   bar_repeats={v: repeats[v]["bar_repeat"] for v in rp.ENSEMBLE_LINES})
        for k in per_seed[0]:
            row[k] = interval([f[k] for f in per_seed])
        rows.append(row)
        progress(f"leading {lead:g}, joining {join:g}, repetition {rep:g}: leaps across bar "
                 f"lines {row['across_leaps']['mean']:.3f}, inside "
                 f"{row['inside_leaps']['mean']:.3f}, melody bar repeats "
                 f"{row['bar_repeats']['melody']['mean']:.3f}, melody on downbeats "
                 f"{row['melody_on_downbeats']['mean']:.3f}, span register "
                 f"{row['span_register']['mean']:.2f}, critic AUC {row['critic']['mean']:.3f}")
    return json_ready(dict(preset=preset, form=fe.form_label(form), repetition=repetition,
                           seeds=seeds, real=figures(real, bar, bars), pieces=len(held),
                           generated=rows, cpu_seconds=time.process_time() - t0))


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m engine.evaluation.joins",
                                description=__doc__.split("\n")[0])
    p.add_argument("--leading", default="0,0.6", metavar="W,W,...",
                   help="the lead-in weights composed at (log-odds per semitone)")
    p.add_argument("--joining", default="", metavar="J,J,...",
                   help="join limits composed at (semitones), each at the preset's repetition "
                        "and at 1 (default: none)")
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--preset", default="combat", help="whose form and repetition")
    p.add_argument("--out", default="engine/models/joins.json")
    p.add_argument("--model", default=None, help="ensemble model (default: the shipped one)")
    p.add_argument("--splits", default=None, metavar="S,S",
                   help="held-out splits judged against (default test,valid)")
    p.add_argument("--states", default=None, help="the presets file (default the shipped one)")
    p.add_argument("--data", default=None, metavar="NPZ",
                   help="the ensemble dataset whose held-out pieces are real music (default "
                        "the form evaluation's)")
    args = p.parse_args(argv)
    try:
        weights = tuple(float(x) for x in args.leading.split(","))
        joinings = tuple(float(x) for x in args.joining.split(",") if x.strip())
    except ValueError:
        p.error(f"--leading {args.leading!r}, --joining {args.joining!r}: each a list of "
                "numbers >= 0")
    if any(x < 0 for x in weights + joinings) or args.seeds < 2:
        p.error("--leading and --joining must be >= 0 and --seeds >= 2 (an interval needs "
                "two)")
    return write_figures(p.prog, lambda: measure(
        weights, args.seeds, args.preset, lambda m: print(m, file=sys.stderr, flush=True),
        data=args.data, joinings=joinings, model=args.model, states=args.states,
        splits=args.splits.split(",") if args.splits else None), args.out)


if __name__ == "__main__":
    sys.exit(main())
