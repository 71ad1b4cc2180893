"""The ensemble against game music: the fresh critic, and the features that tell them apart.

The form evaluation's critic judges the ensemble against the held-out ensemble pieces, 29 of
39 of them Bach; the game presets were matched to game music.  The only game music here is
the Freedoom soundtracks, of which the dataset holds out 5 songs, too few for a critic of
their own and, measured, unlike the rest (their melodies step more and leap less).  So this
puts the ensemble against every Freedoom song in 4/4 (most of which it trained on: an
easier test than held-out music, which a model that reproduces its training music passes),
asked for each song's own controls, through-composed and at the game presets' form and
repetition, seeds alike; and lists, per set, the critic's features whose means differ most
(effect size: the difference over the pooled standard deviation of the windows), beside
the held-out songs' means, so a reader sees what the music lacks:

    python -m engine.evaluation.game [--seeds 3] [--preset combat]
"""
import argparse
import sys
import time

import numpy as np

from engine.ensemble import VOICES
from engine.errors import InvalidMessage
from engine.metrics import json_ready, write_figures

#: Features listed per set, the largest effect sizes first.
TOP = 10


def effects(real, made, names):
    """Per feature of the windows ``real`` and ``made`` (rows: windows, columns: ``names``;
    NaN: nothing to measure there): (effect size, name, real mean, generated mean), the
    largest first; features with fewer than 4 finite windows a side left out."""
    out = []
    for i, name in enumerate(names):
        a, b = real[:, i][np.isfinite(real[:, i])], made[:, i][np.isfinite(made[:, i])]
        if len(a) < 4 or len(b) < 4:
            continue
        sd = np.sqrt((a.var() + b.var()) / 2)
        out.append((float((b.mean() - a.mean()) / sd) if sd > 0 else 0.0, name,
                    float(a.mean()), float(b.mean())))
    return sorted(out, key=lambda r: -abs(r[0]))


def onsets_per_beat(pieces, ticks_per_beat):
    """Each voice's note-ons per beat over ``pieces`` (all their beats together, so a long
    song weighs as much as its length), by voice name."""
    beats = sum(float(p["end"].max()) / ticks_per_beat for p in pieces if len(p))
    return {name: sum(int((p["channel"] == v).sum()) for p in pieces) / beats
            for v, name in enumerate(VOICES)}


def measure(seeds=3, preset="combat", source="freedoom", data=None, progress=print,
            limit=None, model=None):
    """The figures (a JSON-ready dict): ``source``'s songs of every split of ``data`` (None:
    the form evaluation's dataset), at most ``limit``, as the form evaluation reads them;
    ``model``: the ensemble (None: the form evaluation's, the shipped one);
    the ensemble composing one piece per song (asked for its controls) through-composed and
    in ``preset``'s form at its repetition; per set the critic's AUC, its top features and
    each voice's onsets per beat; the held-out songs' feature means beside every song's; the
    pitched onsets per beat the songs ask for."""
    from engine.evaluation import form as fe
    from engine.evaluation import texture_critic as tc
    from engine.evaluation.ensemble_texture import critic_over_seeds, mirror
    from engine.evaluation.heldout_ensemble import SPLIT_NAMES
    from engine.generate import load_weights
    t0 = time.process_time()
    form, repetition = fe.preset_plan(preset)
    cfg = fe.FormEvalConfig(**{k: str(v) for k, v in (("ensemble_data", data),
                                                      ("ensemble", model)) if v is not None})
    songs, _ = fe.held_pieces(cfg, SPLIT_NAMES, (source,), limit)
    held = [p["cut"] for p in songs if p["split"] in cfg.splits]
    if len(songs) < 4:
        raise InvalidMessage(f"{len(songs)} {source} pieces with a whole window", field="source",
                             allowed="a source with 4 or more pieces (the critic halves each side)")
    ecfg = tc.EnsembleEvalConfig(bootstrap=0)
    names = tc.feature_names()
    real = [p["cut"] for p in songs]
    windows = np.vstack(tc.piece_windows(real, ecfg))
    held_windows = tc.piece_windows(held, ecfg)
    held_windows = np.vstack(held_windows) if held_windows else None
    asks = [mirror(p["cut"], p["key"], p["windows"] * cfg.window_bars, ecfg, source=p["source"])
            for p in songs]
    w = load_weights(cfg.ensemble)
    progress(f"{len(songs)} {source} songs ({len(held)} held out); {preset}: "
             f"{fe.form_label(form)} at {repetition:g}")
    rows = []
    for label, rep in (("through-composed", 0.0), (preset, repetition)):
        made = [fe.compose(w, asks, seed, rep, form, cfg) for seed in range(seeds)]
        auc = critic_over_seeds(real, made, list(range(seeds)), ecfg)["auc"]
        gen = np.vstack(tc.piece_windows([n for m in made for n in m], ecfg))
        top = [dict(feature=n, effect=e, real=r, generated=g,
                    held_out=(float(np.nanmean(held_windows[:, names.index(n)]))
                              if held_windows is not None else None))
               for e, n, r, g in effects(windows, gen, names)[:TOP]]
        rows.append(dict(set=label, repetition=rep, critic=auc, features=top,
                         onsets_per_beat=onsets_per_beat([n for m in made for n in m],
                                                         ecfg.ticks_per_beat)))
        listed = ", ".join(f"{t['feature']} {t['effect']:+.2f}" for t in top[:4])
        progress(f"{label}: critic AUC against every {source} song {auc['mean']:.3f}; "
                 f"features {listed}")
    return json_ready(dict(source=source, songs=len(songs), held_out=len(held), preset=preset,
                           form=fe.form_label(form), seeds=seeds, generated=rows,
                           onsets_per_beat=onsets_per_beat(real, ecfg.ticks_per_beat),
                           pitched_onsets_asked=float(np.mean([a["density"] for a in asks])),
                           cpu_seconds=time.process_time() - t0))


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m engine.evaluation.game",
                                description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--preset", default="combat", help="whose form and repetition")
    p.add_argument("--out", default="engine/models/game.json")
    p.add_argument("--data", default=None, metavar="NPZ",
                   help="the ensemble dataset (default the form evaluation's)")
    p.add_argument("--model", default=None, help="the ensemble model (default the shipped one)")
    args = p.parse_args(argv)
    if args.seeds < 2:
        p.error("--seeds >= 2 (an interval needs two)")
    return write_figures(p.prog, lambda: measure(
        args.seeds, args.preset, data=args.data, model=args.model,
        progress=lambda m: print(m, file=sys.stderr, flush=True)), args.out)


if __name__ == "__main__":
    sys.exit(main())
