"""The statistics every measurement shares: ranks, Spearman, ROC AUC, t-intervals.

One definition of each for the critics' architecture comparison (``engine.training``),
the evaluations (``engine.evaluation``) and the theme figures (``engine.theme``); numpy
only, so any layer above may use it.  ``json_ready`` makes a dict of figures strict JSON.
"""
import math

import numpy as np

from engine.errors import InvalidMessage


def ranks(x):
    """1-based ranks, tied values sharing the mean of their ranks."""
    uniq, inv, counts = np.unique(x, return_inverse=True, return_counts=True)
    last = np.cumsum(counts)  # rank of the last member of each group of ties
    return (last - (counts - 1) / 2.0)[inv]


def spearman(x, y):
    """Spearman rank correlation, ties given their average rank; nan if a side is constant."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) != len(y) or len(x) < 2:
        raise InvalidMessage(f"need two equal-length samples, got {len(x)} and {len(y)}",
                             field="y", allowed="as many values as x, at least 2")
    rx, ry = ranks(x), ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    den = np.sqrt((rx ** 2).sum() * (ry ** 2).sum())
    return float((rx * ry).sum() / den) if den > 0 else float("nan")


def roc_auc(positive, negative):
    """ROC AUC as the Mann-Whitney statistic: P(a positive scores above a negative), ties
    counting half, = (rank sum of the positives - n+(n+ + 1)/2) / (n+ n-); nan if a side
    is empty."""
    pos, neg = np.asarray(positive, float), np.asarray(negative, float)
    if not len(pos) or not len(neg):
        return float("nan")
    r = ranks(np.concatenate([pos, neg]))[:len(pos)]
    return float((r.sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def t_quantile(p, df):
    """Student-t quantile (p >= 0.5).  With x = sqrt(df) tan(u) the CDF is
    1/2 + G(df) * integral_0^u cos(v)^(df - 1) dv, G = Gamma((df+1)/2) / (sqrt(pi) Gamma(df/2)),
    a smooth integrand: integrated on a fine grid and inverted by interpolation."""
    u = np.linspace(0, np.pi / 2, 200001)[:-1]
    f = np.cos(u) ** (df - 1)
    g = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(math.pi)
    cdf = 0.5 + g * np.concatenate([[0], np.cumsum((f[1:] + f[:-1]) / 2) * (u[1] - u[0])])
    return float(math.sqrt(df) * math.tan(np.interp(p, cdf, u)))


def interval(values):
    """Mean and 95 % t-interval over the seeds' finite values (lo = hi = None for one)."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], float)
    out = dict(mean=float(v.mean()) if len(v) else None, lo=None, hi=None,
               seeds=[None if x is None or not np.isfinite(x) else float(x) for x in values])
    if len(v) >= 2:
        half = t_quantile(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))
        out.update(lo=out["mean"] - half, hi=out["mean"] + half)
    return out


def write_figures(prog, make, out):
    """An evaluation's command line ends here: ``make()``'s JSON-ready figures written to
    ``out`` (0), or a bad setting it refused (``InvalidMessage``) as one line naming the field,
    no traceback (2)."""
    import json
    import sys
    from pathlib import Path
    try:
        res = make()
    except InvalidMessage as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    Path(out).write_text(json.dumps(res, indent=1, allow_nan=False))
    print(f"wrote {out}")
    return 0


def json_ready(x):
    """NaN/inf -> None and numpy scalars -> Python, so a dict of figures is strict JSON."""
    if isinstance(x, dict):
        return {str(k): json_ready(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_ready(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return None if not np.isfinite(x) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x
