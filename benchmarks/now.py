"""What a "now" change costs to compose while other sessions are open.

A "now" change composes its session at once, on the caller's thread, until every voice that
plays has struck its first note (``Sessions.compose_now``: ``Runtime.advance`` a step at a
time with only that session's target set).  ``Runtime.advance`` runs each session's
bookkeeping (a bar's plan, a voice or theme due at its tick) before every step; it now does
so only for the sessions a call asks for (a target >= 0).  Both are timed side by side here,
changes taken in turn: the session alone asked (the others' targets -1, as the server calls
it), and every other session asked to stay where it is (its target its own tick: the
bookkeeping of all, as before).  Beside them the floor of this machine in the same run: one
bare ``lstm_step`` of the same model.

    python -m benchmarks.now [--sessions 1,16,64] [--changes 300]
"""
import argparse
import json
import sys
import time

import numpy as np

from engine import DEFAULT_ENSEMBLE, DEFAULT_MODEL
from engine.ensemble import PRIORS
from engine.sampler.generator import Runtime
from engine.sampler.weights import Weights

from benchmarks.step import numba_step
from benchmarks.stats import summary, us

MODES = ("alone", "all asked")
_clock = time.perf_counter_ns


def _runtime(w, n):
    """n sessions opened and composed a bar ahead, as a server's would be."""
    rt = Runtime(w, max_sessions=max(n, 1), ring=4096)
    ctl, _, bias = w.spec.request(0, 0, 2.0, w.mean_register, 0.5, w.key_relative)
    for s in range(n):
        rt.open(s, ctl, seed=s)
        rt.pc_bias[s] = rt.next_bias[s] = bias
        if rt.n_voices:
            rt.set_priors(s, **PRIORS)
    rt.advance(np.full(rt.max_sessions, 4 * rt.tpb))
    return rt


def _change(rt, s, mode, only):
    """ns to compose session s from a fresh entry (``Runtime.enter``, as a "now" change
    begins) to its last voice's first note."""
    only[:] = -1 if mode == "alone" else rt.gen_tick
    only[s] = 1 << 62
    rt.enter(s)
    t0 = _clock()
    for _ in range(64):
        if not rt.entry[s] or not rt.advance(only, 1):
            break
    dt = _clock() - t0
    # the music goes on a beat (untimed), so the next change comes later in the piece, as
    # in a game; played: the ring has room again
    only[:] = -1
    only[s] = rt.gen_tick[s] + rt.tpb
    rt.advance(only)
    rt.head[s] = rt.ready[s] = rt.tail[s]
    return dt



def run(counts=(1, 16, 64), changes=300, models=(DEFAULT_MODEL, DEFAULT_ENSEMBLE), log=print):
    out = {}
    for path in models:
        w = Weights(str(path))
        name = "ensemble" if w.vocab.n_voices else "one line"
        for n in counts:
            rt = _runtime(w, n)
            only = np.full(rt.max_sessions, -1, np.int64)
            times = {m: [] for m in MODES}
            for i in range(changes):
                for m in (MODES if i % 2 else MODES[::-1]):  # in turn, order alternating
                    times[m].append(_change(rt, i % n, m, only))
            row = {m: summary(us(t)) for m, t in times.items()}  # µs
            row["ratio_p50"] = row["all asked"]["p50"] / row["alone"]["p50"]
            out[f"{name}, {n} sessions"] = row
            log(f"{name}, {n} sessions: alone p50 {row['alone']['p50']:.0f} µs, all asked p50 "
                f"{row['all asked']['p50']:.0f} µs ({row['ratio_p50']:.2f}x)")
        floor = summary(us(numba_step(w, 2000)[0]))
        out[f"{name}, floor: one lstm_step"] = floor
        log(f"{name}: floor, one lstm_step p50 {floor['p50']:.1f} µs")
    return out


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.now", description=__doc__.split("\n")[0])
    p.add_argument("--sessions", default="1,16,64", help="open sessions, comma-separated")
    p.add_argument("--changes", type=int, default=300)
    p.add_argument("--out", default="benchmarks/results/now.json")
    a = p.parse_args(argv)
    res = run(tuple(int(x) for x in a.sessions.split(",")), a.changes,
              log=lambda m: print(m, file=sys.stderr, flush=True))
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
