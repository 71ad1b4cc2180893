"""Piano-roll pictures of pieces: one panel per piece, time in beats, pitch upwards.

Drawn on matplotlib's Agg canvas through ``Figure`` directly, so plotting never
touches pyplot's global state or needs a display.  ``marks`` draws labelled
vertical lines (the demo marks its mood changes with them).
"""
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from engine.errors import InvalidMessage
from engine.notes import NOTE_DTYPE

FORMATS = (".png", ".pdf", ".svg")


LABEL_SPAN = 0.1  # the share of the width a mark's label takes, about


def plot_pianoroll(notes_list, titles, path, marks=None, ticks_per_beat=12, beats_per_bar=4,
                   width=12.0, panel_height=2.6):
    """Write a piano roll of each piece in ``notes_list`` (NOTE_DTYPE, ticks) to ``path``.

    ``titles``: one per piece; ``marks``: (beat, label) vertical lines drawn on every
    panel.  Returns the path written.
    """
    if len(notes_list) == 0:
        raise InvalidMessage("nothing to plot", field="notes_list", allowed="one or more pieces")
    if len(titles) != len(notes_list):
        raise InvalidMessage(f"{len(titles)} titles for {len(notes_list)} pieces",
                             field="titles", allowed=f"exactly {len(notes_list)} titles")
    if ticks_per_beat < 1 or beats_per_bar < 1:
        raise InvalidMessage("ticks_per_beat and beats_per_bar must be >= 1",
                             field="ticks_per_beat" if ticks_per_beat < 1 else "beats_per_bar",
                             allowed=">= 1")
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise InvalidMessage(f"cannot write {path.name!r}", field="path",
                             allowed="a file name ending in " + ", ".join(FORMATS))
    marks = list(marks or [])
    for m in marks:
        if len(m) != 2 or not np.isfinite(float(m[0])):
            raise InvalidMessage(f"mark {m!r} is not (beat, label)", field="marks",
                                 allowed="a list of (beat, label) with a finite beat")

    pieces = [np.asarray(n, dtype=NOTE_DTYPE) for n in notes_list]
    span = max([1.0] + [n["end"].max() / ticks_per_beat for n in pieces if len(n)]
               + [float(b) for b, _ in marks])
    fig = Figure(figsize=(width, panel_height * len(pieces)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(pieces), 1, squeeze=False)[:, 0]
    for ax, notes, title in zip(axes, pieces, titles):
        _panel(ax, notes, str(title), span, ticks_per_beat, beats_per_bar, marks)
    axes[-1].set_xlabel("beats")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def _panel(ax, notes, title, span, tpb, bpb, marks):
    """One piece: a bar per note, shaded by velocity, bar lines, the marks."""
    ax.set_title(title, fontsize=9, loc="left")
    ax.set_xlim(0, span)
    for bar in np.arange(0, span + 1e-9, bpb):
        ax.axvline(bar, color="0.85", linewidth=0.6, zorder=0)
    if len(notes):
        start = notes["start"] / tpb
        dur = (notes["end"] - notes["start"]) / tpb
        shade = np.clip(notes["velocity"] / 127.0, 0.2, 1.0)
        colors = [(0.12, 0.35, 0.65, a) for a in shade]
        ax.barh(notes["pitch"], dur, left=start, height=0.8, color=colors,
                edgecolor="none")
        lo, hi = int(notes["pitch"].min()), int(notes["pitch"].max())
        ax.set_ylim(lo - 2, hi + 2)
    else:
        ax.text(0.5, 0.5, "(no notes)", transform=ax.transAxes, ha="center", va="center")
        ax.set_ylim(48, 84)
    ax.set_ylabel("pitch")
    marks = sorted(marks, key=lambda m: float(m[0]))
    for (beat, label), row in zip(marks, label_rows([float(b) for b, _ in marks], span)):
        ax.axvline(float(beat), color="crimson", linewidth=1.2)
        ax.text(float(beat), 1.0 - 0.1 * row, f" {label}", color="crimson", fontsize=8,
                transform=ax.get_xaxis_transform(), va="top", ha="left")


def label_rows(beats, span, width=LABEL_SPAN):
    """The row (0 at the top) of each mark's label, for beats in order: the first row
    whose last label is at least ``width`` of the ``span`` before it, so that labels of
    close marks do not run into each other."""
    last, rows = [], []
    for beat in beats:
        row = next((i for i, b in enumerate(last) if beat - b >= width * span), len(last))
        last[row:row + 1] = [beat]
        rows.append(row)
    return rows
