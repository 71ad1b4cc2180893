"""MIDI clock as deadlines: 24 pulses a beat, Start, Stop, Continue and Song Position.

Pure functions of a tempo map (beat -> ``time.monotonic_ns()``), so that the sequencer
merges the clock into its own schedule and sends it on the same absolute deadlines as
the notes: a synth or DAW slaved to the clock then follows every tempo change.
Each event is a ``ClockEvent`` whose fields are ``BasePort.send``'s arguments.
"""
import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from engine.errors import InvalidMessage

PPQN = 24                   # MIDI clock pulses a beat (quarter note)
CLOCK, START, CONTINUE, STOP, SONG_POSITION = 0xF8, 0xFA, 0xFB, 0xFC, 0xF2
MIN_BPM, MAX_BPM = 1.0, 1000.0
MAX_SONG_POSITION = 0x3FFF  # sixteenth notes a Song Position Pointer can hold


class ClockEvent(NamedTuple):
    t_ns: int
    beat: float
    status: int
    data1: int = 0
    data2: int = 0


@dataclass(frozen=True)
class TempoMap:
    """Beat -> monotonic time, at constant tempo between changes.

    ``changes`` are (beat, bpm) pairs with strictly increasing beats; beat
    ``changes[0][0]`` falls at ``origin_ns`` and each tempo holds until the next
    change (before the first one, the first tempo).
    """

    origin_ns: int
    changes: tuple = ((0.0, 120.0),)
    _beats: np.ndarray = field(init=False, repr=False, compare=False)
    _ns_per_beat: np.ndarray = field(init=False, repr=False, compare=False)
    _offsets: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if not self.changes:
            raise InvalidMessage("a tempo map needs at least one (beat, bpm) change",
                                 field="changes", allowed="one or more (beat, bpm) pairs")
        beats, bpms = [], []
        for change in self.changes:
            try:
                beat, bpm = (float(x) for x in change)
            except (TypeError, ValueError):
                raise InvalidMessage(f"a tempo change must be a (beat, bpm) pair of numbers, got "
                                     f"{change!r}", field="changes", allowed="(beat, bpm) pairs") from None
            if not math.isfinite(beat) or (beats and beat <= beats[-1]):
                raise InvalidMessage(f"tempo change beats must be finite and increasing, got "
                                     f"{beat!r} after {beats[-1:]}", field="beat",
                                     allowed=f"> {beats[-1]}" if beats else "finite")
            if not MIN_BPM <= bpm <= MAX_BPM:
                raise InvalidMessage(f"bpm must be {MIN_BPM:g}-{MAX_BPM:g}, got {bpm!r}",
                                     field="bpm", allowed=f"{MIN_BPM:g}-{MAX_BPM:g}")
            beats.append(beat)
            bpms.append(bpm)
        beats = np.array(beats)
        ns_per_beat = 60e9 / np.array(bpms)
        # ns from origin_ns to each change
        offsets = np.concatenate(([0.0], np.cumsum(np.diff(beats) * ns_per_beat[:-1])))
        object.__setattr__(self, "changes", tuple(zip(beats.tolist(), bpms)))
        object.__setattr__(self, "_beats", beats)
        object.__setattr__(self, "_ns_per_beat", ns_per_beat)
        object.__setattr__(self, "_offsets", offsets)

    def with_tempo(self, bpm, beat):
        """A new map where the tempo is ``bpm`` from ``beat`` on (later changes dropped)."""
        if not beat >= self._beats[0]:
            raise InvalidMessage(f"a tempo change must come at or after beat {self._beats[0]:g}, "
                                 f"got {beat!r}", field="beat", allowed=f">= {self._beats[0]:g}")
        kept = tuple(c for c in self.changes if c[0] < beat)
        if not kept:  # replacing the anchor's tempo: the anchor stays where it is
            return TempoMap(self.origin_ns, ((self._beats[0], bpm),))
        return TempoMap(self.origin_ns, kept + ((beat, bpm),))

    def bpm(self, beat):
        """The tempo in effect at ``beat``."""
        return float(60e9 / self._ns_per_beat[self._segment(np.float64(beat))])

    def time_ns(self, beat):
        """The monotonic time of ``beat`` (a number or an array), rounded to the nanosecond."""
        beat = np.asarray(beat, dtype=np.float64)
        i = self._segment(beat)
        offset = self._offsets[i] + (beat - self._beats[i]) * self._ns_per_beat[i]
        t = np.rint(offset).astype(np.int64) + np.int64(self.origin_ns)
        return int(t) if t.ndim == 0 else t

    def beat_at(self, t_ns):
        """The beat playing at monotonic time ``t_ns`` (a number or an array)."""
        offset = np.asarray(t_ns, dtype=np.int64) - np.int64(self.origin_ns)
        i = np.clip(np.searchsorted(self._offsets, offset, side="right") - 1, 0, None)
        beat = self._beats[i] + (offset - self._offsets[i]) / self._ns_per_beat[i]
        return float(beat) if beat.ndim == 0 else beat

    def _segment(self, beat):
        return np.clip(np.searchsorted(self._beats, beat, side="right") - 1, 0, None)


def pulse_beats(start_beat, end_beat):
    """Beats of the clock pulses in [start_beat, end_beat): every 1/24 beat."""
    # the small tolerance keeps 1/3 * 24 (= 8.000000000000002) from skipping pulse 8
    first = math.ceil(start_beat * PPQN - 1e-9)
    last = math.ceil(end_beat * PPQN - 1e-9)
    return np.arange(first, max(first, last), dtype=np.int64) / PPQN


def pulses(tempo_map, start_beat, end_beat):
    """(t_ns int64 array, beat array) of the clock pulses in [start_beat, end_beat)."""
    beats = pulse_beats(start_beat, end_beat)
    return np.atleast_1d(tempo_map.time_ns(beats)), beats


def clock_events(tempo_map, start_beat, end_beat):
    """The clock pulses in [start_beat, end_beat) as ClockEvents, in time order."""
    times, beats = pulses(tempo_map, start_beat, end_beat)
    return [ClockEvent(t, b, CLOCK) for t, b in zip(times.tolist(), beats.tolist())]


def song_position(beat):
    """Song Position Pointer data bytes for ``beat``: sixteenth notes as two 7-bit bytes."""
    sixteenths = beat * 4
    if not (0 <= sixteenths <= MAX_SONG_POSITION and sixteenths == int(sixteenths)):
        raise InvalidMessage(f"song position must be a multiple of 1/4 beat in 0-"
                             f"{MAX_SONG_POSITION / 4:g} beats, got {beat!r}", field="beat",
                             allowed=f"multiples of 0.25 in 0-{MAX_SONG_POSITION / 4:g}")
    sixteenths = int(sixteenths)
    return sixteenths & 0x7F, sixteenths >> 7


def start_events(tempo_map, beat=0.0):
    """Transport start at ``beat``: Start from the top, else Song Position then Continue.

    Both are due at the beat's time, before its clock pulse: a receiver starts on the
    first pulse after Start or Continue.
    """
    t = tempo_map.time_ns(beat)
    if beat == 0:
        return [ClockEvent(t, 0.0, START)]
    return [ClockEvent(t, float(beat), SONG_POSITION, *song_position(beat)),
            ClockEvent(t, float(beat), CONTINUE)]


def stop_events(tempo_map, beat):
    """Transport stop at ``beat`` (send no pulse at or after it)."""
    return [ClockEvent(tempo_map.time_ns(beat), float(beat), STOP)]
