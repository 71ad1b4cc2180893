"""What a theme costs at run time: a generator step with and without one, and encoding.

A step is ``Runtime.advance`` taking one batched step for S sessions (the call the server's
generator thread makes), with the sessions' events discarded as they come so the rings
never fill.  Every condition is fed the same tokens (the forced-token queue: notes, and a
time shift of 1..12 ticks every third token, so the music moves through the theme's
beats), so they do the same work but for what a theme adds: no theme (z = 0), a theme
with one bias (W_z z), and, for a conductor model (``ostinato theme train --positions-per-bar``),
a theme with a bias per position, whose row is copied in at every position change.
(Sampled music would differ between conditions, and so would the sampler's cost.)  They
run in interleaved blocks (A B C A B C ...), so a drift of this shared machine moves all
three alike; each block's median per-step time is one sample, and the figure is the
median over rounds of each condition's difference from "no theme" in the same round.

Encoding is ``ThemeEncoder.encode`` + ``bias`` for held-out-sized themes of 2, 4 and 8
bars (what the server does when a ``theme`` message arrives), the median of 50.
"""
import argparse
import json
import time

import numpy as np

from engine import DEFAULT_THEME
from engine.sampler.generator import Runtime
from engine.sampler.theme import ThemeEncoder
from engine.sampler.weights import Weights

from .stats import summary, us


def _theme_tokens(vocab, bars, seed=0):
    """A theme of ``bars`` bars as the server encodes it: two notes a beat, in C."""
    from engine.motif import from_notes

    rng = np.random.default_rng([seed, bars])
    notes = [[int(60 + rng.choice([0, 2, 4, 5, 7, 9, 11])), i * 0.5, 0.5]
             for i in range(bars * 8)]
    motif = from_notes(notes)
    return motif, motif.tokens(vocab)


def _runtime(w, sessions, bias=None, state=None, seed=0):
    rt = Runtime(w, max_sessions=sessions)
    ctl = w.spec.vector(0, 0, 2.0, 64.0)
    for s in range(sessions):
        rt.open(s, ctl, seed=seed + s)
        if bias is not None:
            rt.set_theme(s, bias, state)
    return rt


def _fed(vocab, n, seed=0):
    """n tokens to feed: notes, and a time shift of 1..12 ticks every third token."""
    rng = np.random.default_rng(seed)
    kinds, _ = vocab.tables()
    shifts = np.flatnonzero(kinds == 3)[:12]
    notes = rng.integers(vocab.offsets[1], vocab.offsets[3], n)
    return np.where(np.arange(n) % 3 == 2, rng.choice(shifts, n), notes)


def _block(rt, fed):
    """Median ns of one batched step of every session, each fed ``fed`` (one a step)."""
    steps = len(fed)
    for s in range(rt.max_sessions):
        rt.queue(s, fed)
    out = np.empty(steps, np.int64)
    target = np.full(rt.max_sessions, 1 << 60, np.int64)
    clock = time.perf_counter_ns
    for i in range(steps):
        t0 = clock()
        rt.advance(target, max_steps=1)
        out[i] = clock() - t0
        rt.head[:] = rt.tail - 1  # played: the ring never fills
    return float(np.median(out))


def step_costs(model, sessions=(1, 64), blocks=15, steps=250, seed=0):
    """{S: {condition: summary of its blocks' median µs a step, and "<condition>_extra_us":
    the median (and range) over rounds of its difference from no theme, a step and a
    session}} for each session count."""
    w, enc = Weights(model), ThemeEncoder(model)
    motif, tokens = _theme_tokens(w.vocab, 4, seed)
    bias, state = enc.bias(enc.encode(tokens)[0], motif.bars)
    # one bias (for a conductor model, its first position's), and the table of them
    conds = {"none": (None, None), "theme": (bias if bias.ndim == 2 else bias[0], None)}
    if bias.ndim == 3:
        conds["conductor"] = (bias, state)
    fed = _fed(w.vocab, steps, seed)
    out = {}
    for S in sessions:
        rts = {k: _runtime(w, S, *v, seed=seed) for k, v in conds.items()}
        for rt in rts.values():  # compile and warm
            _block(rt, fed[:50])
        samples = {k: [] for k in rts}
        for _ in range(blocks):
            for k, rt in rts.items():
                samples[k].append(_block(rt, fed))
        r = {k: summary(us(v)) for k, v in samples.items()}
        for k in rts:
            if k != "none":
                d = us(samples[k]) - us(samples["none"])
                r[f"{k}_extra_us"] = dict(median=float(np.median(d)), min=float(d.min()),
                                          max=float(d.max()),
                                          per_session_median=float(np.median(d)) / S)
        out[str(S)] = r
    return dict(model=str(model), positions_per_bar=enc.per_bar, blocks=blocks,
                steps_per_block=steps, sessions=out)


def encode_costs(model, bars=(2, 4, 8), repeats=50, seed=0):
    """{bars: median ms of encode + bias} for themes of each length."""
    w, enc = Weights(model), ThemeEncoder(model)
    out = {}
    for b in bars:
        motif, tokens = _theme_tokens(w.vocab, b, seed)
        enc.bias(enc.encode(tokens)[0], motif.bars)  # compiled
        t = []
        for _ in range(repeats):
            t0 = time.perf_counter_ns()
            enc.bias(enc.encode(tokens)[0], motif.bars)
            t.append(time.perf_counter_ns() - t0)
        out[str(b)] = dict(tokens=len(tokens), median_ms=float(np.median(t)) / 1e6)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.theme",
                                description=__doc__.split("\n")[0])
    p.add_argument("models", nargs="*", default=[str(DEFAULT_THEME)],
                   help="theme model files (default: the shipped one)")
    p.add_argument("--sessions", default="1,64", help="session counts (1,64)")
    p.add_argument("--blocks", type=int, default=15, help="interleaved blocks (15)")
    p.add_argument("--steps", type=int, default=250, help="steps a block, at most 255 (250)")
    p.add_argument("--json", default=None, metavar="PATH", help="write the figures here")
    args = p.parse_args(argv)
    sessions = tuple(int(x) for x in args.sessions.split(","))
    result = []
    for m in args.models:
        r = step_costs(m, sessions, args.blocks, args.steps)
        r["encode"] = encode_costs(m)
        result.append(r)
        print(f"{m} (positions per bar {r['positions_per_bar']}):")
        for S, row in r["sessions"].items():
            extras = "; ".join(
                f"{k[:-9]} {v['median']:+.2f} µs a step ({v['per_session_median']:+.3f} a "
                f"session; rounds {v['min']:+.2f} .. {v['max']:+.2f})"
                for k, v in row.items() if k.endswith("_extra_us"))
            print(f"  {S} sessions: no theme {row['none']['p50']:.2f} µs a step; {extras}")
        print("  encode + bias: " + ", ".join(f"{b} bars {e['median_ms']:.2f} ms"
                                              for b, e in r["encode"].items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
