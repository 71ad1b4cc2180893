"""Paired held-out NLL of two models on the same pieces (``python -m engine.evaluation.compare``).

Two models scored on one dataset's held-out pieces: each one's NLL per event, their
difference, and a 95 % bootstrap interval of the difference over pieces (pieces are
resampled, both models' totals move together, so the interval is paired).
"""
import argparse
import json

import numpy as np

from engine.training.data import Dataset
from engine.training.model import load_model


def piece_nll(model, pieces):
    """Total NLL (nats) of each piece (tokens[1:] predicted)."""
    return np.array([model.nll(t, c.astype(np.float32)) * (len(t) - 1) for t, c in pieces])


def compare(data, first, second, split="test", resamples=2000, seed=0):
    ds = Dataset.load(data)
    pieces = [(t, c) for t, c in ds.pieces(split) if len(t) >= 2]
    a, b = (piece_nll(load_model(m)[0], pieces) for m in (first, second))
    n = np.array([len(t) - 1 for t, _ in pieces])
    idx = np.random.default_rng(seed).integers(0, len(pieces), size=(resamples, len(pieces)))
    diff = (a[idx].sum(1) - b[idx].sum(1)) / n[idx].sum(1)
    return {"data": str(data), "split": split, "pieces": len(pieces), "tokens": int(n.sum()),
            "first": str(first), "second": str(second),
            "first_nats": float(a.sum() / n.sum()), "second_nats": float(b.sum() / n.sum()),
            "first_minus_second": float((a.sum() - b.sum()) / n.sum()),
            "ci95": [float(np.percentile(diff, 2.5)), float(np.percentile(diff, 97.5))],
            "resamples": resamples, "seed": seed}


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m engine.evaluation.compare", description=__doc__.split("\n")[0])
    p.add_argument("data", help="dataset from `ostinato data`")
    p.add_argument("first", help="model .npz")
    p.add_argument("second", help="model .npz")
    p.add_argument("--split", default="test", choices=("train", "valid", "test"))
    p.add_argument("--resamples", type=int, default=2000)
    args = p.parse_args(argv)
    print(json.dumps(compare(args.data, args.first, args.second, args.split, args.resamples),
                     indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
