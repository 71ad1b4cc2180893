"""Serving a fine-tuned model: its step and generate latency against the shipped model's.

A model file that ``ostinato train --init MODEL --midi DIR`` writes is read by the same
``Weights`` the server and ``ostinato generate`` read (no new package, no torch), and it
has the starting model's size, so it should cost what the shipped model costs.  This
measures it, with nothing fine-tuned here: the shipped model, the same file loaded a
second time (``shipped again``: the two can only differ by noise, so their difference is
this run's noise) and the fine-tuned file are taken in turn, round after round, each
first in every third round, so that they share the machine's state.  Each round times, for each model:

- ``step``: the median of a block of bare ``lstm_step`` calls at batch 1 (``benchmarks.step``);
- ``advance``: one session composing 8 bars in ``Runtime.advance`` (the kernel the server
  runs: a step and a sample per token), its wall time over its steps (``benchmarks.form``);
- ``generate``: ``engine.generate.generate`` of 4 bars from a fresh ``Runtime``, in ms
  (what ``ostinato generate`` pays per piece, kernels already compiled).

Reported: the median over rounds of each, and for ``fine-tuned`` and ``shipped again`` the
median of the per-round differences to ``shipped`` with a 95 % bootstrap interval.  The
machine's floor is measured in the same run as ``benchmarks.step`` measures it: the
weights' bytes over the copy bandwidth of a buffer of their size.

    python -m benchmarks.finetuned --finetuned mine.npz [--rounds 150] [--out FILE]
"""
import argparse
import json
import sys
import time

import numpy as np

from engine import DEFAULT_MODEL
from engine.errors import InvalidMessage
from engine.generate import generate
from engine.metrics import json_ready
from engine.sampler.generator import Runtime
from engine.sampler.weights import Weights

from benchmarks.form import _chunk
from benchmarks.stats import machine, summary
from benchmarks.step import _stepper, _timed, copy_bandwidth

MODELS = ("shipped", "shipped again", "fine-tuned")
MEASURES = {"step": "us", "advance": "us/step", "generate": "ms"}


def _same_shape(a, b, names):
    """InvalidMessage unless the two Weights have the same size and vocabulary."""
    fields = ("hidden", "layers", "n_controls", "nbytes")
    differ = [f for f in fields if getattr(a, f) != getattr(b, f)]
    if differ or a.vocab.size != b.vocab.size:
        raise InvalidMessage(f"finetuned: {names[1]} is not the size of {names[0]} "
                             f"({', '.join(differ or ['vocabulary'])} differ)",
                             field="finetuned", allowed="a model fine-tuned from the shipped one")


def _interval(diffs, seed=0, draws=2000):
    """The median of ``diffs`` and a 95 % bootstrap interval of it."""
    d = np.asarray(diffs, np.float64)
    rng = np.random.default_rng(seed)
    meds = np.median(d[rng.integers(0, len(d), (draws, len(d)))], axis=1)
    lo, hi = np.percentile(meds, [2.5, 97.5])
    return {"median": float(np.median(d)), "ci95": [float(lo), float(hi)]}


def run(finetuned, shipped=DEFAULT_MODEL, rounds=150, block=200, bars=4, warmup=2):
    """{model: {measure: summary}}, the differences to "shipped" per round, the floor."""
    paths = {"shipped": shipped, "shipped again": shipped, "fine-tuned": finetuned}
    ws = {name: Weights(path) for name, path in paths.items()}  # two loads of the shipped file
    _same_shape(ws["shipped"], ws["fine-tuned"], (shipped, finetuned))
    rts = {name: Runtime(w, max_sessions=1) for name, w in ws.items()}
    steppers = {name: _stepper(w, block)[1] for name, w in ws.items()}
    samples = {name: {m: [] for m in MEASURES} for name in MODELS}

    def one_round(i, keep):
        for j in range(len(MODELS)):  # each model first in turn: no place in the round is theirs
            name = MODELS[(i + j) % len(MODELS)]
            w = ws[name]
            step_ns = np.median(_timed(steppers[name], block))
            adv_ns = _chunk(rts[name], w, "off", 1000 + i)
            t0 = time.perf_counter_ns()
            generate(w, key=0, mode=0, density=2.0, bars=bars, seed=2000 + i)
            gen_ns = time.perf_counter_ns() - t0
            if keep:
                samples[name]["step"].append(step_ns / 1e3)
                samples[name]["advance"].append(adv_ns / 1e3)
                samples[name]["generate"].append(gen_ns / 1e6)

    for i in range(warmup):  # compiled and warm
        one_round(i, False)
    for i in range(rounds):
        one_round(i, True)
    w = ws["shipped"]
    bw = copy_bandwidth(w.nbytes)
    res = {"models": {name: {m: summary(v) for m, v in per.items()}
                      for name, per in samples.items()},
           "vs_shipped": {name: {m: _interval(np.subtract(samples[name][m],
                                                          samples["shipped"][m]))
                                 for m in MEASURES} for name in MODELS[1:]},
           "floor": {"copy_GBps_weights_size": bw / 1e9,
                     "bound_us_weights_size": w.nbytes / bw * 1e6,
                     "weight_bytes": int(w.nbytes)},
           "units": MEASURES, "rounds": rounds, "block": block, "bars": bars,
           "files": {"shipped": str(shipped), "fine-tuned": str(finetuned)}}
    return res


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.finetuned",
                                description=__doc__.split("\n")[0])
    p.add_argument("--finetuned", required=True, metavar="MODEL",
                   help="a model file from `ostinato train --init ... --midi DIR`")
    p.add_argument("--shipped", default=DEFAULT_MODEL, help="the model it started from")
    p.add_argument("--rounds", type=int, default=150)
    p.add_argument("--out", default="benchmarks/results/finetuned.json")
    args = p.parse_args(argv)
    res = run(args.finetuned, args.shipped, args.rounds)
    res["machine"] = dict(machine(), command="python -m benchmarks.finetuned "
                          + " ".join(sys.argv[1:] if argv is None else argv))
    for m, unit in MEASURES.items():
        line = ", ".join(f"{name} {res['models'][name][m]['p50']:.2f}" for name in MODELS)
        diffs = "; ".join(f"{name} - shipped {d[m]['median']:+.2f} "
                          f"[{d[m]['ci95'][0]:+.2f}, {d[m]['ci95'][1]:+.2f}]"
                          for name, d in res["vs_shipped"].items())
        print(f"{m} ({unit}) medians: {line}; {diffs}")
    f = res["floor"]
    print(f"floor: weights / copy bandwidth {f['bound_us_weights_size']:.1f} us "
          f"({f['copy_GBps_weights_size']:.0f} GB/s)")
    with open(args.out, "w") as fh:
        json.dump(json_ready(res), fh, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
