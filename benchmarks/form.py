"""What the form costs a step: the runtime composing with and without its memory and plan.

One session composes 8 bars at a time in ``Runtime.advance`` (the kernel the server
runs) under four settings, taken in turn chunk after chunk so that they share the
machine's state: no form (``off``), the form at repetition 0 (the memory records, no bar
is recalled), repetition 1 (every recall the form allows, exactly), and repetition 0.5
with a theme stated at the start and coming back (``theme``).  A chunk's cost is its
wall time over the steps it took (each step one token: an LSTM step and a sample or a
forced token); the median over chunks is reported with each setting's extra over
``off``, beside the floor of this machine measured in the same run: one bare
``lstm_step`` of the same model (``benchmarks.step``).

    python -m benchmarks.form [--chunks 40] [--out benchmarks/results/form.json]
"""
import argparse
import json
import sys
import time

import numpy as np

from engine import DEFAULT_ENSEMBLE, DEFAULT_MODEL
from engine.form import Form
from engine.metrics import json_ready
from engine.notes import NOTE_DTYPE
from engine.sampler.generator import Runtime
from engine.sampler.weights import Weights

from benchmarks.step import numba_step
from benchmarks.stats import summary, us

SETTINGS = ("off", "repetition 0", "repetition 1", "theme")
BARS = 8


def _theme(tpb):
    """A 2-bar theme of eight notes (model space)."""
    notes = np.zeros(8, NOTE_DTYPE)
    notes["start"] = np.arange(8) * tpb
    notes["end"] = notes["start"] + tpb
    notes["pitch"] = [72, 74, 76, 79, 77, 74, 72, 71]
    return notes


def _chunk(rt, w, setting, seed):
    """ns per step of one 8-bar chunk composed under ``setting``."""
    ctl, _, bias = w.spec.request(0, 0, 2.0, w.mean_register, 0.5, w.key_relative)
    rt.open(0, ctl, seed=seed)
    rt.pc_bias[0] = rt.next_bias[0] = bias
    if setting != "off":
        rt.set_form(0, {"repetition 0": 0.0, "repetition 1": 1.0, "theme": 0.5}[setting],
                    Form())
    if setting == "theme":
        rt.lead_at(0, 0, _theme(rt.tpb), 0.0, length=2 * 4 * rt.tpb)
    end = BARS * 4 * rt.tpb
    target = np.array([end], np.int64)
    steps, t0 = 0, time.perf_counter_ns()
    while rt.gen_tick[0] < end:
        steps += rt.advance(target, 256)
        rt.head[0] = rt.ready[0] = rt.tail[0]  # played: the ring has room again
    return (time.perf_counter_ns() - t0) / max(steps, 1)


def run(model, chunks=40, warmup=3):
    """{setting: summary of us per step (chunk medians), extra_us over "off"} for
    ``model``, and the floor (us of a bare step)."""
    w = Weights(model)
    rt = Runtime(w, max_sessions=1)
    for i in range(warmup):  # compiled and warm
        for setting in SETTINGS:
            _chunk(rt, w, setting, i)
    per = {setting: [] for setting in SETTINGS}
    for i in range(chunks):
        for setting in SETTINGS:
            per[setting].append(_chunk(rt, w, setting, 1000 + i))
    floor, _ = numba_step(w, 2000)
    out = {setting: summary(us(v)) for setting, v in per.items()}
    base = np.median(per["off"])
    for setting in SETTINGS[1:]:
        out[setting]["extra_us"] = (np.median(per[setting]) - base) / 1e3
    out["floor"] = summary(us(floor))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.form", description=__doc__.split(
        "\n")[0])
    p.add_argument("--chunks", type=int, default=40, help="8-bar chunks per setting")
    p.add_argument("--out", default="benchmarks/results/form.json")
    args = p.parse_args(argv)
    res = {}
    for name, model in (("one line", DEFAULT_MODEL), ("ensemble", DEFAULT_ENSEMBLE)):
        res[name] = r = run(model, args.chunks)
        print(f"{name}: floor (bare lstm_step) median {r['floor']['p50']:.2f} us")
        for setting in SETTINGS:
            extra = r[setting].get("extra_us")
            print(f"  {setting:13s} median {r[setting]['p50']:6.2f} us/step"
                  + ("" if extra is None else f"   extra {extra:+.2f} us"))
    with open(args.out, "w") as f:
        json.dump(json_ready(res), f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
