"""A live text display of what the music does (``ostinato demo``, ``ostinato serve --show``).

``Show`` reads the server's event stream and prints, once a second, one line per
session: the key and mode, the tempo, the notes per second it measured over the last
second, the velocity range, the voices heard (an ensemble's) and the last few notes.  A mood, key or tempo marker is
published when the game's message is handled but takes effect at its ``beat``; the
display applies it when the session's notes reach that beat, so a line shows what is
heard, not what is pending.

It also subscribes to the opt-in sync events ``beat``, ``bar`` and ``phrase``: under each
session's line a "beat" line draws the beats the stream announced in the last second
(``|`` a bar line, ``.`` another beat) with the bar and beat in the bar of the last one,
and each ``cue`` event is printed as it comes.  ``beats`` and ``cues`` keep what came, for
a picture of the performance (``ostinato demo`` draws them on its piano roll).
"""
import collections
import sys
import threading
import time
from dataclasses import dataclass

import zmq

from engine.ensemble import VOICES
from engine.errors import InvalidMessage, PortError
from realtime.protocol import SYNC_TYPES, decode_event, type_prefix

PITCH_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def note_name(pitch):
    """'C4' for MIDI pitch 60, 'F#5' for 78 (scientific pitch notation)."""
    if isinstance(pitch, bool) or not isinstance(pitch, int) or not 0 <= pitch <= 127:
        raise InvalidMessage(f"pitch must be an integer 0..127, got {pitch!r}",
                             field="pitch", allowed="0..127")
    return f"{PITCH_NAMES[pitch % 12]}{pitch // 12 - 1}"


@dataclass(frozen=True)
class ShowConfig:
    """How often a line is printed, and what it measures over."""

    interval_s: float = 1.0   # one status line per session this often
    window_s: float = 1.0     # notes/s and velocities are measured over this window
    last_notes: int = 4       # note names shown
    poll_ms: int = 50         # longest wait on the socket, so close() answers quickly
    keep_beats: int = 16384   # sync events kept in ``Show.beats`` (the last ones; 0: none)

    def __post_init__(self):
        for field, lo, hi in (("interval_s", 0.05, 60.0), ("window_s", 0.05, 60.0),
                              ("last_notes", 0, 32), ("poll_ms", 1, 1000),
                              ("keep_beats", 0, 1_000_000)):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
                raise InvalidMessage(f"ShowConfig.{field} is {value!r}; allowed {lo}..{hi}",
                                     field=field, allowed=f"{lo}..{hi}")


def _number(event, field, default=None):
    value = event.get(field, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise InvalidMessage(f"event field {field!r} is {value!r}; allowed a number",
                             field=field, allowed="a number")
    return value


def _byte(event, field):
    value = event.get(field)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 127:
        raise InvalidMessage(f"event field {field!r} is {value!r}; allowed 0..127",
                             field=field, allowed="0..127")
    return value


class _Session:
    """What one session is playing, as far as the event stream tells."""

    def __init__(self, last_notes):
        self.key = self.mode = self.bpm = self.name = None
        self.transport = "playing"
        self.beat = 0.0
        self.pending = []                       # (beat, fields) not yet reached
        self.onsets = collections.deque()       # (t_ns, pitch, velocity, voice) in the window
        self.recent = collections.deque(maxlen=max(last_notes, 1))
        self.notes = 0
        self.ticks = collections.deque()        # (t_ns, downbeat, bar, beat_in_bar) of beats

    def apply(self, fields):
        for k in ("key", "mode", "bpm", "name"):
            if fields.get(k) is not None:
                setattr(self, k, fields[k])

    def reach(self, beat):
        """The notes got to ``beat``: markers due by then take effect."""
        self.beat = max(self.beat, beat)
        due = [f for b, f in self.pending if b <= self.beat + 1e-9]
        if due:
            self.pending = [(b, f) for b, f in self.pending if b > self.beat + 1e-9]
            for fields in due:
                self.apply(fields)


class Show:
    """Prints what the music does; a context manager (entering starts the listener).

    address: the event stream's ZeroMQ address, or None to be fed events by ``feed``.
    stream: where lines go (default sys.stdout at construction).  t0: the monotonic
    time (s) that line stamps count from (default: now).
    """

    def __init__(self, address=None, stream=None, config=ShowConfig(), t0=None):
        self.config = config
        self.stream = sys.stdout if stream is None else stream
        self.t0 = time.monotonic() if t0 is None else t0
        self.sessions = {}
        self.events = 0
        self.returns = []        # (session, beat) of each return of a theme announced
        # (session, beat, type) of each sync event announced ("beat", "bar" or "phrase"),
        # the last ``keep_beats``; (session, beat, name, t_ns) of each cue that played
        self.beats = collections.deque(maxlen=config.keep_beats)
        self.cues = []
        self.bad_frames = 0      # frames on the stream that were not version-1 events
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        self._context = self._socket = None
        self._broken = False     # the stream refused a write (e.g. a closed pipe)
        self.address = address
        if address is not None:
            self._context = zmq.Context()
            self._socket = self._context.socket(zmq.SUB)
            self._socket.setsockopt(zmq.LINGER, 0)
            self._socket.setsockopt(zmq.SUBSCRIBE, b"")  # every type but the sync ones
            for kind in SYNC_TYPES:  # opt-in: only a subscription naming one gets it
                self._socket.setsockopt(zmq.SUBSCRIBE, type_prefix(kind))
            try:
                self._socket.connect(address)
            except zmq.ZMQError as exc:
                self._close_socket()
                raise PortError(f"cannot subscribe to the event stream {address!r}: {exc}") from exc

    # -- events in -------------------------------------------------------------------
    def feed(self, event):
        """Take one decoded event (a dict as ``protocol.decode_event`` returns).

        Raises InvalidMessage naming the field when a note event lacks a usable one.
        """
        kind = event.get("type")
        beat = _number(event, "beat", 0.0)
        note = said = None
        if kind == "note_on":
            note = (int(_number(event, "t_ns")), _byte(event, "pitch"), _byte(event, "velocity"),
                    event.get("voice"))
        elif kind == "beat":
            tick = (int(_number(event, "t_ns")), _number(event, "beat_in_bar") == 0,
                    int(_number(event, "bar")), int(_number(event, "beat_in_bar")))
        elif kind == "cue":
            t_ns = int(_number(event, "t_ns"))
            said = (f"stream: cue {event.get('name')} plays at beat {beat:g} "
                    f"({event.get('session')})")
        with self._lock:
            self.events += 1
            sess = self.sessions.get(event.get("session"))
            if sess is None:
                sess = self.sessions[event.get("session")] = _Session(self.config.last_notes)
            if kind in ("note_on", "note_off"):
                sess.reach(beat)
                if note is not None:
                    sess.onsets.append(note)
                    sess.recent.append(note[1])
                    sess.notes += 1
            elif kind in ("mood", "key", "tempo", "state"):
                sess.pending.append((beat, event))
                sess.reach(sess.beat)  # a marker at or before the playhead applies at once
            elif kind == "theme_return":
                self.returns.append((event.get("session"), beat))
            elif kind in SYNC_TYPES:
                self.beats.append((event.get("session"), beat, kind))
                if kind == "beat":
                    sess.ticks.append(tick)
            elif kind == "cue":
                self.cues.append((event.get("session"), beat, event.get("name"), t_ns))
            elif kind == "transport":
                sess.transport = {"start": "playing", "stop": "stopped",
                                  "pause": "paused"}.get(event.get("state"), sess.transport)
        if said is not None:
            self.say(said)

    # -- lines out -------------------------------------------------------------------
    def status(self, now_ns=None):
        """One line per session about the last ``window_s`` before ``now_ns`` (monotonic)."""
        now_ns = time.monotonic_ns() if now_ns is None else now_ns
        cut = now_ns - int(self.config.window_s * 1e9)
        lines = []
        with self._lock:
            for name, sess in self.sessions.items():
                while sess.onsets and sess.onsets[0][0] <= cut:
                    sess.onsets.popleft()
                window = [o for o in sess.onsets if o[0] <= now_ns]
                lines.append(self._line(name, sess, window))
                while sess.ticks and sess.ticks[0][0] <= cut:
                    sess.ticks.popleft()
                ticks = [t for t in sess.ticks if t[0] <= now_ns]
                if ticks:
                    lines.append(self._beat_line(name, ticks))
        return lines

    @staticmethod
    def _beat_line(name, ticks):
        """The beats announced in the window: ``|`` a downbeat, ``.`` another beat, and
        where the last one is (its events come at their ``t_ns``, or early with
        ``serve --events-ahead``: a beat shows once its time has come)."""
        drawn = " ".join("|" if down else "." for _, down, _, _ in ticks)
        _, _, bar, in_bar = ticks[-1]
        return f"{name} beat: {drawn}  (bar {bar} beat {in_bar + 1})"

    def _line(self, name, sess, window):
        key = f"{sess.key} {sess.mode}" if sess.key else "key ?"
        bpm = f"{sess.bpm:g} BPM" if sess.bpm else "BPM ?"
        rate = len(window) / self.config.window_s
        vels = [o[2] for o in window]
        vel = f"vel {min(vels)}-{max(vels)}" if vels else "vel -"
        heard = {o[3] for o in window if isinstance(o[3], str)}
        voices = ("" if not heard or heard == {"melody"} else
                  " | " + " ".join(sorted(heard, key=lambda v: (v not in VOICES, VOICES.index(v)
                                                                   if v in VOICES else 0, v))))
        shown = list(sess.recent)[-self.config.last_notes:] if self.config.last_notes else []
        recent = " ".join(note_name(p) for p in shown) or "-"
        state = f" [{sess.name}]" if sess.name else ""
        idle = "" if sess.transport == "playing" else f" ({sess.transport})"
        return (f"{name}{state}: {key}, {bpm} | {rate:4.1f} notes/s, {vel}{voices} | "
                f"{recent}{idle}")

    def say(self, text, now=None):
        """Write ``text`` as one line stamped with seconds since ``t0``."""
        now = time.monotonic() if now is None else now
        self.write([f"[{now - self.t0:6.1f} s] {text}"])

    def write(self, lines):
        """Write whole lines, never interleaved with the listener's."""
        with self._lock:
            if self._broken:
                return
            try:
                self.stream.write("".join(line + "\n" for line in lines))
                self.stream.flush()
            except (OSError, ValueError):  # a closed pipe or file: stop writing, keep running
                self._broken = True

    # -- the listener thread ---------------------------------------------------------
    def start(self):
        if self._socket is None:
            raise PortError("this Show has no event stream address to listen to")
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="ostinato-show", daemon=True)
            self._thread.start()
        return self

    def _loop(self):
        interval = int(self.config.interval_s * 1e9)
        next_line = time.monotonic_ns() + interval
        while not self._stop.is_set():
            wait_ms = max(0, min(self.config.poll_ms, (next_line - time.monotonic_ns()) // 1_000_000))
            if self._socket.poll(wait_ms):
                self._drain()
            now = time.monotonic_ns()
            if now >= next_line:
                stamp = now / 1e9 - self.t0
                self.write([f"[{stamp:6.1f} s]   {line}" for line in self.status(now)])
                next_line += interval
                if next_line <= now:  # fell behind (a suspended process): do not burst
                    next_line = now + interval

    def _drain(self):
        while True:
            try:
                frame = self._socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                self.feed(decode_event(frame))
            except InvalidMessage:  # not an event this display can read: count it, go on
                self.bad_frames += 1

    def close(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._close_socket()

    def _close_socket(self):
        if self._socket is not None:
            self._socket.close(0)
            self._socket = None
        if self._context is not None:
            self._context.term()
            self._context = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()
        return False


def start_show(event_address, stream=None, config=ShowConfig()):
    """A ``Show`` on ``event_address``; ``with start_show(addr): ...`` prints while inside.

    stream: default sys.stdout as it is when called (so captured output is followed).
    """
    return Show(event_address, stream, config)
