"""The event vocabulary and its codec: notes in beats <-> token ids.

Performance RNN's vocabulary (note-on, note-off, time-shift, velocity) with the time
axis in ticks of a beat instead of milliseconds, so the sequencer can change tempo
without retraining.  The vocabulary is one table, ``Vocab.counts``: each row is a kind
of event and how many values it takes; token ids are laid out row after row.

An ensemble vocabulary (``n_voices`` > 0) adds one row, last so that no other kind's
ids move: VOICE, whose value is a voice id (``engine.ensemble``).  One stream carries
every voice, Notochord's way but compact: a voice token is written only before a note
event whose voice differs from the one in force, as a velocity token only when the bin
changes.  Each piece (each START) begins with no voice in force, so its first note
event always names its voice.  In notes, the ``channel`` field holds the voice id.
With ``n_voices`` = 0 the table, the ids and every stream are those of one line.

A token stream is canonical when, at each instant, the events come voice by voice
(one voice token before each voice's events when the voice changes), and within a
voice its note-offs (by pitch) before its note-ons (by pitch), each note-on after a
velocity token when the bin changes.  With one line that is: offs, then ons.  ``encode`` produces canonical streams, ``decode``
accepts any stream.
"""
from dataclasses import asdict, dataclass

import numpy as np

from engine.errors import InvalidMessage, InvalidToken
from engine.notes import NOTE_DTYPE, normalise

START, NOTE_ON, NOTE_OFF, TIME_SHIFT, VELOCITY, VOICE = range(6)
KIND_NAMES = ("start", "note_on", "note_off", "time_shift", "velocity", "voice")
NO_VOICE = -1  # the voice in force before a piece's first voice token


@dataclass(frozen=True)
class Vocab:
    """Sizes of the event vocabulary; everything else is derived from them."""

    ticks_per_beat: int = 12
    max_shift_beats: int = 4
    n_velocity: int = 0  # 0: no velocity tokens, every note plays at DEFAULT_VELOCITY
    default_velocity: int = 80
    n_voices: int = 0  # 0: one line, no voice tokens; else voices 0..n_voices-1

    def __post_init__(self):
        if not isinstance(self.n_voices, int) or self.n_voices < 0:
            raise InvalidToken(f"n_voices must be an integer >= 0, got {self.n_voices!r}")

    @property
    def max_shift(self):
        return self.ticks_per_beat * self.max_shift_beats

    @property
    def counts(self):
        """Values per kind, in ``KIND_NAMES`` order: the vocabulary table."""
        return (1, 128, 128, self.max_shift, self.n_velocity, self.n_voices)

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

    # -- voices ----------------------------------------------------------------------
    def normalise(self, notes):
        """``engine.notes.normalise`` per voice: overlaps are cut only within a voice, so
        two voices may hold one pitch at once.  Sorted by start, pitch, voice.  A one-line
        vocabulary normalises as one voice (the channel is ignored, as it is encoded)."""
        notes = np.asarray(notes, dtype=NOTE_DTYPE)
        if not self.n_voices:
            return normalise(notes)
        ch = notes["channel"]
        bad = (ch < 0) | (ch >= self.n_voices)
        if bad.any():
            raise InvalidMessage(
                f"channel {int(ch[bad][0])} is not a voice id: an ensemble note's channel "
                f"holds its voice, 0..{self.n_voices - 1}", field="channel",
                allowed=f"0..{self.n_voices - 1}")
        parts = [normalise(notes[ch == v]) for v in np.unique(ch)]
        out = np.concatenate(parts) if parts else np.zeros(0, NOTE_DTYPE)
        return out[np.lexsort((out["channel"], out["pitch"], out["start"]))]

    def voices_of(self, tokens):
        """The voice in force at each token (after it), vectorised: the value of the last
        voice token at or before it, ``NO_VOICE`` before the first one of its piece (a
        START clears it).  Works on a stream of many pieces end to end."""
        tokens = np.asarray(tokens)
        kinds, values = self.tables()
        k = kinds[tokens]
        marks = (k == VOICE) | (k == START)
        last = np.where(marks, np.arange(len(tokens)), -1)
        np.maximum.accumulate(last, out=last)
        held = np.where(k[np.maximum(last, 0)] == VOICE, values[tokens[np.maximum(last, 0)]],
                        NO_VOICE)
        return np.where(last >= 0, held, NO_VOICE).astype(np.int32)

    # -- codec -----------------------------------------------------------------------
    def encode(self, notes, start=True):
        """Notes (``NOTE_DTYPE``, ticks) -> canonical int32 token array.

        With voices, each note's ``channel`` is its voice id (InvalidMessage on field
        ``channel`` for one outside 0..n_voices-1); without, the channel is ignored."""
        notes = self.normalise(notes)
        n = len(notes)
        times = np.concatenate([notes["end"], notes["start"]])
        # at one instant voice by voice (one voice token each), and within a voice its
        # note-offs (0) before its note-ons (1), each by pitch: grouping by voice first
        # halves the voice tokens (measured on chorales and Freedoom: 1.3 -> 0.7 a note)
        order_kind = np.concatenate([np.zeros(n, np.int8), np.ones(n, np.int8)])
        pitches = np.concatenate([notes["pitch"], notes["pitch"]])
        vels = np.concatenate([notes["velocity"], notes["velocity"]])
        voices = np.concatenate([notes["channel"], notes["channel"]]) if self.n_voices \
            else np.zeros(2 * n, np.int16)
        order = np.lexsort((pitches, order_kind, voices, times))
        out = [self.offsets[START]] if start else []
        now, vbin, voice = 0, -1, NO_VOICE
        on, off = self.offsets[NOTE_ON], self.offsets[NOTE_OFF]
        for i in order:
            t = int(times[i])
            while t > now:
                step = min(t - now, self.max_shift)
                out.append(self.offsets[TIME_SHIFT] + step - 1)
                now += step
            if self.n_voices and voices[i] != voice:
                voice = int(voices[i])
                out.append(self.offsets[VOICE] + voice)
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
        """Token ids -> notes (``NOTE_DTYPE``, ticks), sorted by start, pitch, voice.

        A note-on of a sounding (voice, pitch) ends the earlier note there; notes still
        sounding at the end are closed at the final time (at least one tick long).
        Each note's channel is its voice (0 for one line, and for a note event before
        any voice token).
        """
        kinds, values = self.tables()
        tokens = np.asarray(tokens)
        if len(tokens) and (tokens.min() < 0 or tokens.max() >= self.size):
            bad = tokens[(tokens < 0) | (tokens >= self.size)][0]
            raise InvalidToken(f"token {bad} outside [0, {self.size - 1}]")
        sounding = {}
        rows = []
        now, voice = 0, 0
        vel = self.default_velocity
        for tok in tokens:
            k, v = kinds[tok], int(values[tok])
            if k == TIME_SHIFT:
                now += v
            elif k == VELOCITY:
                vel = self.bin_velocity(v)
            elif k == VOICE:
                voice = v
            elif k == NOTE_ON:
                if (voice, v) in sounding:
                    s, sv = sounding.pop((voice, v))
                    rows.append((s, max(now, s + 1), v, sv, voice))
                sounding[voice, v] = (now, vel)
            elif k == NOTE_OFF and (voice, v) in sounding:
                s, sv = sounding.pop((voice, v))
                # an off at the onset instant keeps the note one tick
                rows.append((s, max(now, s + 1), v, sv, voice))
        for (voice, v), (s, sv) in sounding.items():
            rows.append((s, max(now, s + 1), v, sv, voice))
        notes = np.array(rows, dtype=NOTE_DTYPE)
        return notes[np.lexsort((notes["channel"], notes["pitch"], notes["start"]))]
