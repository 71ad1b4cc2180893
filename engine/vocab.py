"""The event vocabulary and its codec: notes in beats <-> token ids.

Performance RNN's vocabulary (note-on, note-off, time-shift, velocity) with the time
axis in ticks of a beat instead of milliseconds, so the sequencer can change tempo
without retraining.  The vocabulary is one table, ``Vocab.TABLE``: each row is a kind
of event and how many values it takes; token ids are laid out row after row.

A token stream is canonical when, at each instant, note-offs come first (by pitch),
then for each note-on (by pitch) an optional velocity token and the note-on.
``encode`` produces canonical streams, ``decode`` accepts any stream.
"""
from dataclasses import asdict, dataclass

import numpy as np

from engine.errors import InvalidToken
from engine.notes import NOTE_DTYPE, normalise

START, NOTE_ON, NOTE_OFF, TIME_SHIFT, VELOCITY = range(5)
KIND_NAMES = ("start", "note_on", "note_off", "time_shift", "velocity")


@dataclass(frozen=True)
class Vocab:
    """Sizes of the event vocabulary; everything else is derived from them."""

    ticks_per_beat: int = 12
    max_shift_beats: int = 4
    n_velocity: int = 0  # 0: no velocity tokens, every note plays at DEFAULT_VELOCITY
    default_velocity: int = 80

    @property
    def max_shift(self):
        return self.ticks_per_beat * self.max_shift_beats

    @property
    def counts(self):
        """Values per kind, in ``KIND_NAMES`` order: the vocabulary table."""
        return (1, 128, 128, self.max_shift, self.n_velocity)

    @property
    def offsets(self):
        out, acc = [], 0
        for n in self.counts:
            out.append(acc)
            acc += n
        return tuple(out)

    @property
    def size(self):
        return sum(self.counts)

    # -- single tokens ---------------------------------------------------------------
    def token(self, kind, value=0):
        """Token id of an event. Time shifts take ticks (1..max_shift), velocity a bin."""
        lo = 1 if kind == TIME_SHIFT else 0
        n = self.counts[kind]
        if not lo <= value < lo + n:
            raise InvalidToken(
                f"{KIND_NAMES[kind]} value {value} outside [{lo}, {lo + n - 1}]")
        return self.offsets[kind] + value - lo

    def event(self, token):
        """(kind, value) of a token id: the inverse of ``token``."""
        if not 0 <= token < self.size:
            raise InvalidToken(f"token {token} outside [0, {self.size - 1}]")
        kinds, values = self.tables()
        return int(kinds[token]), int(values[token])

    def tables(self):
        """Arrays kind[token] and value[token], for vectorised and numba code."""
        kinds = np.empty(self.size, np.int32)
        values = np.empty(self.size, np.int32)
        for k, (off, n) in enumerate(zip(self.offsets, self.counts)):
            kinds[off:off + n] = k
            values[off:off + n] = np.arange(n) + (1 if k == TIME_SHIFT else 0)
        return kinds, values

    def velocity_bin(self, velocity):
        return min(self.n_velocity - 1, max(0, int(velocity) - 1) * self.n_velocity // 127)

    def bin_velocity(self, b):
        """Representative MIDI velocity (centre of the bin) for a velocity bin."""
        lo = b * 127 // self.n_velocity + 1
        hi = (b + 1) * 127 // self.n_velocity
        return (lo + hi) // 2

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, d):
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    # -- codec -----------------------------------------------------------------------
    def encode(self, notes, start=True):
        """Notes (``NOTE_DTYPE``, ticks) -> canonical int32 token array."""
        notes = normalise(notes)
        times = np.concatenate([notes["end"], notes["start"]])
        # note-offs (0) before note-ons (1) at the same instant, each by pitch
        order_kind = np.concatenate([np.zeros(len(notes), np.int8), np.ones(len(notes), np.int8)])
        pitches = np.concatenate([notes["pitch"], notes["pitch"]])
        vels = np.concatenate([notes["velocity"], notes["velocity"]])
        order = np.lexsort((pitches, order_kind, times))
        out = [self.offsets[START]] if start else []
        now, vbin = 0, -1
        on, off = self.offsets[NOTE_ON], self.offsets[NOTE_OFF]
        for i in order:
            t = int(times[i])
            while t > now:
                step = min(t - now, self.max_shift)
                out.append(self.offsets[TIME_SHIFT] + step - 1)
                now += step
            if order_kind[i]:
                if self.n_velocity:
                    b = self.velocity_bin(vels[i])
                    if b != vbin:
                        out.append(self.offsets[VELOCITY] + b)
                        vbin = b
                out.append(on + int(pitches[i]))
            else:
                out.append(off + int(pitches[i]))
        return np.asarray(out, np.int32)

    def decode(self, tokens):
        """Token ids -> notes (``NOTE_DTYPE``, ticks).

        A note-on of a sounding pitch ends the earlier note there; notes still
        sounding at the end are closed at the final time (at least one tick long).
        """
        kinds, values = self.tables()
        tokens = np.asarray(tokens)
        if len(tokens) and (tokens.min() < 0 or tokens.max() >= self.size):
            bad = tokens[(tokens < 0) | (tokens >= self.size)][0]
            raise InvalidToken(f"token {bad} outside [0, {self.size - 1}]")
        sounding = {}
        rows = []
        now = 0
        vel = self.default_velocity
        for tok in tokens:
            k, v = kinds[tok], int(values[tok])
            if k == TIME_SHIFT:
                now += v
            elif k == VELOCITY:
                vel = self.bin_velocity(v)
            elif k == NOTE_ON:
                if v in sounding:
                    s, sv = sounding.pop(v)
                    rows.append((s, max(now, s + 1), v, sv, 0))
                sounding[v] = (now, vel)
            elif k == NOTE_OFF and v in sounding:
                s, sv = sounding.pop(v)
                if now > s:
                    rows.append((s, now, v, sv, 0))
                else:  # an off at the onset instant: keep the note one tick
                    rows.append((s, s + 1, v, sv, 0))
        for v, (s, sv) in sounding.items():
            rows.append((s, max(now, s + 1), v, sv, 0))
        notes = np.array(rows, dtype=NOTE_DTYPE)
        return notes[np.lexsort((notes["pitch"], notes["start"]))]
