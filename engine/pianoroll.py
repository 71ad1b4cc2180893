"""Piano-roll pictures of pieces: one panel per piece, time in beats, pitch upwards.

Drawn on matplotlib's Agg canvas through ``Figure`` directly, so plotting never
touches pyplot's global state or needs a display.  ``marks`` draws labelled
vertical lines (the demo marks its mood changes with them); ``beats`` a row of ticks
along the bottom (the demo's beat, bar and phrase events, as the server announced them).  ``voices`` draws an
ensemble's voices each in its colour (``VOICE_COLOURS``) with a legend; a single line
is drawn in the melody's blue, as it always was.
"""
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from engine.errors import InvalidMessage
from engine.notes import NOTE_DTYPE

FORMATS = (".png", ".pdf", ".svg")


LABEL_SPAN = 0.1  # the share of the width a mark's label takes, about

#: The colour of each voice's notes, by the names the protocol gives the voices; none is
#: near the marks' crimson.  A single line is drawn in the melody's.
VOICE_COLOURS = {
    "melody": (0.12, 0.35, 0.65),   # blue
    "bass": (0.10, 0.55, 0.25),     # green
    "harmony": (0.95, 0.60, 0.10),  # orange
    "drums": (0.50, 0.33, 0.20),    # brown (a grey would be lost among the text)
    "stinger": (0.60, 0.20, 0.70),  # purple
}
BEAT_COLOUR = (0.0, 0.62, 0.62)    # teal: the beat ticks, apart from the voices and marks
BEAT_HEIGHTS = (0.04, 0.08, 0.12)  # a tick's height (share of the panel) by its level


def plot_pianoroll(notes_list, titles, path, marks=None, ticks_per_beat=12, beats_per_bar=4,
                   width=12.0, panel_height=2.6, voices=None, beats=None):
    """Write a piano roll of each piece in ``notes_list`` (NOTE_DTYPE, ticks) to ``path``.

    ``titles``: one per piece; ``marks``: (beat, label) vertical lines drawn on every
    panel.  ``voices``: None for pieces of one line (drawn in one colour); for
    ensembles, the voice names (keys of ``VOICE_COLOURS``) that the notes' ``channel``
    values index (an ensemble piece's channel is its voice id: ``engine.ensemble.VOICES``,
    with "stinger" after them where stingers are drawn): each voice in its colour, with
    a legend of the voices a panel has.  ``beats``: (beat, level) ticks drawn along the
    bottom of every panel, taller by level (0 a beat, 1 a bar line, 2 a phrase's start).
    Returns the path written.
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
    beats = list(beats or [])
    levels = range(len(BEAT_HEIGHTS))
    for b in beats:
        if len(b) != 2 or not np.isfinite(float(b[0])) or b[1] not in levels:
            raise InvalidMessage(f"beat tick {b!r} is not (beat, level)", field="beats",
                                 allowed=f"a list of (beat, level) with a finite beat and a "
                                         f"level 0..{len(BEAT_HEIGHTS) - 1}")

    pieces = [np.asarray(n, dtype=NOTE_DTYPE) for n in notes_list]
    names = _voice_names(voices, pieces)
    span = max([1.0] + [n["end"].max() / ticks_per_beat for n in pieces if len(n)]
               + [float(b) for b, _ in marks])
    fig = Figure(figsize=(width, panel_height * len(pieces)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(pieces), 1, squeeze=False)[:, 0]
    for ax, notes, title in zip(axes, pieces, titles):
        _panel(ax, notes, str(title), span, ticks_per_beat, beats_per_bar, marks, names)
        if beats:
            # ticks of a level drawn together; the tallest last, so none hides another
            for level in levels:
                at = [float(b) for b, lv in beats if lv == level]
                ax.vlines(at, 0.0, BEAT_HEIGHTS[level], color=BEAT_COLOUR,
                          linewidth=0.8 + 0.6 * level, transform=ax.get_xaxis_transform())
    axes[-1].set_xlabel("beats")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def _voice_names(voices, pieces):
    """``voices`` as a tuple of names (None stays None), checked against the colours and
    against the channel values of the pieces."""
    if voices is None:
        return None
    if isinstance(voices, str) or not all(isinstance(v, str) for v in voices):
        raise InvalidMessage(f"voices must be a list of voice names, got {voices!r}",
                             field="voices", allowed=list(VOICE_COLOURS))
    names = tuple(voices)
    unknown = [v for v in names if v not in VOICE_COLOURS]
    if unknown or not names:
        raise InvalidMessage(f"voices {unknown or names!r}: each must be one of "
                             f"{', '.join(VOICE_COLOURS)}", field="voices",
                             allowed=list(VOICE_COLOURS))
    for notes in pieces:
        bad = notes["channel"][(notes["channel"] < 0) | (notes["channel"] >= len(names))]
        if len(bad):
            raise InvalidMessage(f"a note's channel (its voice id) is {int(bad[0])}; "
                                 f"{len(names)} voices are named", field="voices",
                                 allowed=f"a name for each voice id 0..{int(bad[0])}")
    return names


def _panel(ax, notes, title, span, tpb, bpb, marks, voices=None):
    """One piece: a bar per note, shaded by velocity (coloured by voice when ``voices``
    names them, with a legend), bar lines, the marks."""
    ax.set_title(title, fontsize=9, loc="left")
    ax.set_xlim(0, span)
    for bar in np.arange(0, span + 1e-9, bpb):
        ax.axvline(bar, color="0.85", linewidth=0.6, zorder=0)
    if len(notes):
        start = notes["start"] / tpb
        dur = (notes["end"] - notes["start"]) / tpb
        shade = np.clip(notes["velocity"] / 127.0, 0.2, 1.0)
        if voices is None:
            colors = [VOICE_COLOURS["melody"] + (a,) for a in shade]
        else:
            colors = [VOICE_COLOURS[voices[v]] + (a,) for v, a in zip(notes["channel"], shade)]
        ax.barh(notes["pitch"], dur, left=start, height=0.8, color=colors,
                edgecolor="none")
        if voices is not None:
            present = sorted(set(notes["channel"].tolist()))
            ax.legend(handles=[Patch(color=VOICE_COLOURS[voices[v]], label=voices[v])
                               for v in present],
                      loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False)
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
