"""The evaluations' figures drawn: the tonality sweep of ``ostinato eval`` and the
quality-diversity plane of ``ostinato quality`` (matplotlib's Agg canvas, no display).
"""
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from engine.evaluation.judges import JUDGE_NAMES, JUDGES


def sweep_path(plot_path):
    """Where the sweep's plot goes: ``<plot stem>-tonality.png`` beside the piano roll."""
    p = Path(plot_path)
    return p.with_name(f"{p.stem}-tonality.png")


def plot_sweep(sweep, path):
    """Key adherence (both judges) against held-out NLL under the prior, one point per
    tonality value.  An infinite NLL (a held-out note forbidden) is drawn at the right
    edge, marked with an x and the forbidden share.  Returns the path written."""
    rows = sweep["rows"]
    fig = Figure(figsize=(7.5, 4.8))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    nll = np.array([np.nan if r["nll_nats"] is None else r["nll_nats"] for r in rows], float)
    fin = np.isfinite(nll)
    lo = np.nanmin(nll[fin]) if fin.any() else 0.0
    hi = np.nanmax(nll[fin]) if fin.any() else 1.0
    edge = hi + max(0.1 * (hi - lo), 0.05)
    x = np.where(fin, nll, edge)
    for judge, colour in zip(JUDGES, ("tab:blue", "tab:orange")):
        y = np.array([100 * r[judge]["key_and_mode"] for r in rows])
        ax.plot(x[fin], y[fin], "-o", color=colour, label=JUDGE_NAMES[judge])
        if (~fin).any():
            ax.plot(x[~fin], y[~fin], "x", color=colour, markersize=9)
        for xi, yi, r in zip(x, y, rows):
            ax.annotate(f"{r['tonality']:g}", (xi, yi), textcoords="offset points",
                        xytext=(4, 4), fontsize=8, color=colour)
    for xi, r in zip(x[~fin], [r for r, f in zip(rows, fin) if not f]):
        ax.annotate(f"NLL inf: {100 * r['forbidden_share']:.1f}% of\nheld-out events forbidden",
                    (xi, 100), textcoords="offset points", xytext=(-110, -22), fontsize=7)
    ax.set_xlabel("held-out NLL under the prior (nats/event)")
    ax.set_ylabel("tonic and mode realised (%)")
    ax.set_ylim(0, 102)
    ax.set_title(f"tonality sweep ({sweep['pieces']} pieces per value; labels: tonality)",
                 fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return Path(path)


def plot_quality(result, path, x="self_bleu4"):
    """Quality against diversity: x = Self-BLEU-4 (or ``reverse_lm``), y = LM score, one
    curve per method through its temperatures (labelled), 95 % intervals as error bars,
    the held-out real music as a star (for Self-BLEU).  Returns the path written."""
    fig = Figure(figsize=(7.5, 5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    mean = lambda iv: np.nan if iv["mean"] is None else iv["mean"]
    err = lambda ivs: np.array([(0, 0) if iv["lo"] is None else (iv["mean"] - iv["lo"],
                                                                 iv["hi"] - iv["mean"])
                                for iv in ivs]).T
    for name, m in result["methods"].items():
        xi, yi = [r[x] for r in m["rows"]], [r["lm_score"] for r in m["rows"]]
        ax.errorbar([mean(v) for v in xi], [mean(v) for v in yi], xerr=err(xi), yerr=err(yi),
                    fmt="-o", capsize=3, label=name)
        for a, b, r in zip(xi, yi, m["rows"]):
            ax.annotate(f"T={r['temperature']:g}", (mean(a), mean(b)), fontsize=7,
                        textcoords="offset points", xytext=(4, 4))
    real = result["real"]
    if real.get(x) is not None and real["lm_score"] is not None:
        ax.plot([real[x]], [real["lm_score"]], "k*", markersize=12, label="held-out real")
    ax.set_xlabel({"self_bleu4": "Self-BLEU-4 of pitch intervals (lower: more diverse)",
                   "reverse_lm": "reverse LM score, nats/event (lower: more diverse)"}[x])
    ax.set_ylabel("LM score: NLL under the independent LM, nats/event (lower: better)")
    ax.set_title("quality vs diversity (95% intervals over seeds)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return Path(path)
