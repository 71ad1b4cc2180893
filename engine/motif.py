"""A theme as the game or the composer gives it: notes, checked, measured, made key-relative.

A theme arrives as a list of ``[pitch, start_beat, duration_beats]`` (absolute MIDI
pitches, beats from the theme's start) or as a ``.mid`` file.  ``Motif`` holds it as notes
in the vocabulary's ticks, shifted so its first note starts at 0, with the key it is in
(Krumhansl-Kessler, ``engine.controls.find_key``) and its length in bars.

The theme encoder was trained on key-relative phrases (every piece moved to C), so a
theme is moved to C by the same rule as the data (``engine.controls.to_tonic_c``), and to
the mode it will be played in by scale degree (``engine.controls.parallel_mode``): a minor
theme in a major session is heard as its major version, as a composer would rewrite it.
Torch-free: the server imports it.
"""
import json
import math
import os
from dataclasses import dataclass

import numpy as np

from engine.controls import KEY_NAMES, MODES, find_key, key_shift
from engine.controls import parallel_mode, to_tonic_c
from engine.errors import InvalidMessage
from engine.notes import NOTE_DTYPE, normalise, read_midi

MIN_NOTES = 3
MAX_BARS = 8
#: How far a variation moves from the theme: 0 stays close, 1 composes freely
#: (``engine.sampler.theme.latent``).
VARIATION_RANGE = (0.0, 1.0)


def _bad(field, problem, allowed):
    return InvalidMessage(f"{field}: {problem} (allowed: {allowed})", field=field,
                          allowed=allowed)


@dataclass(frozen=True, eq=False)
class Motif:
    """A checked theme: ``notes`` (``NOTE_DTYPE``, ticks, first onset at 0), its measured
    ``tonic`` (pitch class) and ``mode`` (0 major, 1 minor), and its length in ``bars``."""

    notes: np.ndarray
    tonic: int
    mode: int
    bars: int
    ticks_per_beat: int = 12
    beats_per_bar: int = 4
    source: str = "notes"

    def key_relative(self, mode=None):
        """The notes moved to C, in ``mode`` (default: the theme's own) by scale degree."""
        notes = to_tonic_c(self.notes, self.tonic)
        return notes if mode is None or mode == self.mode else parallel_mode(notes, self.mode)

    def lead(self, variation, mode=None, key=None):
        """What the melody states (``Runtime.lead_at``'s notes, variation and length): the
        notes in the model's space, key-relative (in C, moved to the key by the player), or
        moved to pitch class ``key`` for a model that is not; in ``mode`` (None: the
        theme's own); its bars' length in ticks.  None at variation 1, which is free
        composition.  InvalidMessage naming ``variation`` outside 0..1."""
        lo, hi = VARIATION_RANGE
        if isinstance(variation, bool) or not isinstance(variation, (int, float)) or not (
                lo <= variation <= hi):
            raise _bad("variation", f"{variation!r} is outside {lo:g}..{hi:g}",
                       f"{lo:g}..{hi:g}")
        if variation >= hi:
            return None
        notes = self.key_relative(mode).copy()
        if key is not None:
            notes["pitch"] = np.clip(notes["pitch"].astype(int) + key, 0, 127)
        return notes, float(variation), self.bars * self.beats_per_bar * self.ticks_per_beat

    def tokens(self, vocab, mode=None):
        """The key-relative notes as the encoder reads a phrase: tokens without START."""
        return vocab.encode(self.key_relative(mode), start=False).astype(np.int64)

    def describe(self):
        """One line of what was understood: key, bars, notes."""
        tpb = self.ticks_per_beat
        names = " ".join(f"{KEY_NAMES[p % 12]}{p // 12 - 1}" for p in self.notes["pitch"][:16])
        more = f" ... ({len(self.notes)} in all)" if len(self.notes) > 16 else ""
        span = self.notes["end"].max() / tpb
        return (f"{KEY_NAMES[self.tonic]} {MODES[self.mode]} (measured), {self.bars} "
                f"bar{'s' if self.bars != 1 else ''} of {self.beats_per_bar} beats "
                f"({span:g} beats), {len(self.notes)} notes: {names}{more}")


def from_notes(rows, field="notes", ticks_per_beat=12, beats_per_bar=4, max_bars=MAX_BARS,
               source="notes"):
    """A Motif from ``[[pitch, start_beat, duration_beats], ...]``; InvalidMessage naming
    ``field`` (and the note) for anything else: fewer than 3 notes, more than
    ``max_bars`` bars, pitches outside 0..127, negative starts, durations that are not
    positive or shorter than a tick, two notes of one pitch overlapping."""
    if not isinstance(rows, (list, tuple)):
        raise _bad(field, f"{type(rows).__name__} is not a list of notes",
                   "a list of [pitch, start_beat, duration_beats]")
    if len(rows) < MIN_NOTES:
        raise _bad(field, f"{len(rows)} note{'s' if len(rows) != 1 else ''}",
                   f"at least {MIN_NOTES} notes")
    tpb = ticks_per_beat
    beats = []  # (start, end) in beats, checked before anything becomes ticks
    for i, row in enumerate(rows):
        where = f"{field}[{i}]"
        if not isinstance(row, (list, tuple)) or len(row) != 3 or not all(
                isinstance(x, (int, float)) and not isinstance(x, bool) for x in row):
            raise _bad(where, f"{_brief(row)} is not [pitch, start_beat, duration_beats]",
                       "three numbers")
        try:
            pitch, start, dur = (float(x) for x in row)
        except OverflowError:  # an integer past float range
            raise _bad(where, f"{_brief(row)} is not finite", "finite numbers") from None
        if not all(math.isfinite(x) for x in (pitch, start, dur, start + dur)):
            raise _bad(where, f"{_brief(row)} is not finite", "finite numbers")
        if pitch != int(pitch) or not 0 <= pitch <= 127:
            raise _bad(where, f"pitch {_brief(row[0])}", "an integer MIDI pitch 0..127")
        if start < 0:
            raise _bad(where, f"start_beat {_brief(row[1])}", "0 or more beats")
        if dur <= 0:
            raise _bad(where, f"duration_beats {_brief(row[2])}", "more than 0 beats")
        beats.append((start, start + dur))
    first = min(a for a, _ in beats)
    span = max(b for _, b in beats) - first
    # a beat over the limit: too long however it rounds, checked before ticks (a huge
    # count would overflow them); closer to the limit the ticks decide, in _motif
    if span > max_bars * beats_per_bar + 1:
        raise _bad(field, f"the theme lasts {span:g} beats, more than {max_bars} bars of "
                   f"{beats_per_bar} beats", f"at most {max_bars} bars")
    out = np.zeros(len(rows), NOTE_DTYPE)
    for i, ((a, b), row) in enumerate(zip(beats, rows)):
        a, b = round((a - first) * tpb), round((b - first) * tpb)
        if b <= a:
            raise _bad(f"{field}[{i}]", f"duration_beats {_brief(row[2])} is shorter than "
                       "the grid", f"at least 1/{tpb} beat")
        out[i] = (a, b, int(row[0]), 80, 0)
    order = np.lexsort((out["start"], out["pitch"]))
    srt = out[order]
    clash = np.flatnonzero((srt["pitch"][1:] == srt["pitch"][:-1]) &
                           (srt["start"][1:] < srt["end"][:-1]))
    if len(clash):
        i, j = sorted((int(order[clash[0]]), int(order[clash[0] + 1])))
        raise _bad(f"{field}[{j}]", f"pitch {int(out['pitch'][j])} overlaps {field}[{i}] "
                   "of the same pitch", "notes of one pitch one after another")
    return _motif(out, field, tpb, beats_per_bar, max_bars, source)


def from_midi(path, ticks_per_beat=12, beats_per_bar=4, max_bars=MAX_BARS):
    """A Motif from a MIDI file (every track and channel but drums); InvalidMidi naming
    the file when it cannot be read, InvalidMessage when it is no theme."""
    name = os.fspath(path)
    notes = read_midi(path, ticks_per_beat)
    if len(notes) < MIN_NOTES:
        raise _bad("theme", f"{name} has {len(notes)} notes", f"at least {MIN_NOTES} notes")
    return _motif(normalise(notes), "theme", ticks_per_beat, beats_per_bar, max_bars, name)


def from_command_line(midi=None, notes=None, notes_option="--notes", midi_option="theme"):
    """The Motif a command line names: a .mid path or JSON notes text, exactly one of them
    (InvalidMessage naming the option otherwise, or when the text is not JSON)."""
    if (midi is None) == (notes is None):
        raise InvalidMessage(f"give {midi_option} (a .mid file) or {notes_option} (JSON notes), "
                             "one of them", field=midi_option, allowed="one theme")
    if midi is not None:
        return from_midi(midi)
    try:
        rows = json.loads(notes)
    except json.JSONDecodeError as exc:
        raise InvalidMessage(f"{notes_option} is not JSON ({exc})", field=notes_option,
                             allowed="[[pitch, start_beat, duration_beats], ...]") from None
    return from_notes(rows, field=notes_option)


def _brief(value, limit=60):
    """``repr(value)`` cut to ``limit`` characters: an error quotes what was sent, but a
    row of a million digits must not make the reply that long."""
    text = repr(value) if not isinstance(value, int) or abs(value) < 10 ** limit else "<huge>"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _motif(notes, field, tpb, beats_per_bar, max_bars, source):
    notes = notes[np.lexsort((notes["pitch"], notes["start"]))].copy()
    first = int(notes["start"].min())
    notes["start"] -= first
    notes["end"] -= first
    bar = tpb * beats_per_bar
    bars = max(1, -(-int(notes["end"].max()) // bar))
    if bars > max_bars:
        raise _bad(field, f"the theme lasts {bars} bars of {beats_per_bar} beats",
                   f"at most {max_bars} bars")
    tonic, mode, _ = find_key(notes)
    low, high = int(notes["pitch"].min()), int(notes["pitch"].max())
    move = -key_shift(tonic)  # to C, as engine.controls.to_tonic_c moves it (or an octave more)
    if not any(0 <= low + m and high + m <= 127 for m in (move, move + 12, move - 12)):
        raise _bad(field, f"the theme spans {high - low} semitones ({low}..{high}), too wide to "
                   f"move to C within 0..127", "a span that fits 0..127 when moved by up to a "
                   "tritone")
    return Motif(notes, int(tonic), int(mode), bars, tpb, beats_per_bar, source)
