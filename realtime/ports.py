"""Outputs: one port abstraction with small backends, as mido's BasePort + _send.

Every output (virtual MIDI port, ZeroMQ event stream, .mid recording, audio preview)
receives the same thing from the sequencer's sending thread: a channel message as
three MIDI bytes plus its scheduled time.  A backend implements ``_send`` (and
``_close`` if it holds resources); ``send`` is what the sequencer calls.
"""
import contextlib
import json
import logging
import math
import operator
import os
import sys
import tempfile
import threading
import time

import mido
import rtmidi
import zmq
from rtmidi.midiutil import get_api_from_environment

from engine.errors import InvalidMessage, PortError
from realtime.keys import guard_for, require_keys
from realtime.protocol import EVENT_ADDRESS, EVENT_TYPES, encode_event

log = logging.getLogger("ostinato.ports")


class BasePort:
    """An output of performed MIDI events. Use as a context manager."""

    name = "base"
    #: how long before its time a message should reach this port (ns): 0 for a port that
    #: sends what it gets at once (the player calls it at the message's time); a port that
    #: schedules each message by its ``t_ns`` itself asks for some lead (native JACK)
    lead_ns = 0

    def __init__(self):
        self.closed = False

    def send(self, status, data1, data2, t_ns, beat, session=0):
        """Send one MIDI message.

        status, data1, data2: MIDI bytes (0x90 note-on, 0x80 note-off, 0xF8 clock, ...;
        data bytes 0 for one-byte messages).  t_ns: the scheduled time in
        ``time.monotonic_ns()`` nanoseconds.  beat: musical position in beats.
        session: index of the session that produced it.
        """
        if not self.closed:
            self._send(status, data1, data2, t_ns, beat, session)

    def _send(self, status, data1, data2, t_ns, beat, session):
        raise NotImplementedError

    def release(self, t_ns):
        """A note-off now for every note this port has sounding (its ``_sounding``), as
        the port itself counts them: after a failure in the sending thread the
        sequencer's tables no longer say what reached each output."""
        sounding = getattr(self, "_sounding", None)
        if self.closed or sounding is None:
            return
        for session, channel, pitch, beat in sounding.drain():
            self._send(0x80 | channel, pitch, 0, t_ns, beat, session)

    def close(self):
        if not self.closed:
            self.closed = True
            self._close()

    def _close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


# ---------------------------------------------------------------- MIDI bytes

# Length on the wire of each system message we send; SysEx and undefined ones are refused.
_SYSTEM_LENGTH = {0xF1: 2, 0xF2: 3, 0xF3: 2, 0xF6: 1, 0xF8: 1, 0xFA: 1, 0xFB: 1, 0xFC: 1,
                  0xFE: 1, 0xFF: 1}
_LENGTH = bytes((2 if 0xC0 <= s < 0xE0 else 3) if 0x80 <= s < 0xF0 else _SYSTEM_LENGTH.get(s, 0)
                for s in range(256))
_STATUS_ALLOWED = "0x80-0xEF, 0xF1-0xF3, 0xF6, 0xF8, 0xFA-0xFC, 0xFE, 0xFF"


def midi_bytes(status, data1=0, data2=0):
    """The message as the tuple of bytes it has on the wire (1, 2 or 3 of them).

    Raises InvalidMessage naming the field when a byte is out of range, so that a bad
    event never reaches a synth as garbage.  Numpy integers are accepted.
    """
    if type(status) is int and type(data1) is int and type(data2) is int \
            and 0 <= status <= 0xFF and 0 <= data1 <= 127 and 0 <= data2 <= 127:
        n = _LENGTH[status]  # the fast path: plain ints in range
        if n == 3:
            return (status, data1, data2)
        if n:
            return (status, data1, data2)[:n]
    return _checked_bytes(status, data1, data2)


def _checked_bytes(status, data1, data2):
    """midi_bytes for anything but plain in-range ints: converts, or says what is wrong."""
    try:
        status = operator.index(status)
        n = _LENGTH[status] if status >= 0 else 0
    except (TypeError, IndexError):
        n = 0
    if not n:
        raise InvalidMessage(f"status must be a MIDI status byte ({_STATUS_ALLOWED}), "
                             f"got {status!r}", field="status", allowed=_STATUS_ALLOWED)
    out = [status]
    for field, value in (("data1", data1), ("data2", data2))[:n - 1]:
        try:
            byte = operator.index(value)
        except TypeError:
            byte = -1
        if not 0 <= byte <= 127:
            raise InvalidMessage(f"{field} must be an integer 0-127, got {value!r}",
                                 field=field, allowed="0-127")
        out.append(byte)
    return tuple(out)


def _note(message):
    """'on' or 'off' for a note message (a note-on of velocity 0 is an off), else None."""
    kind = message[0] & 0xF0
    if kind == 0x90:
        return "on" if message[2] else "off"
    return "off" if kind == 0x80 else None


class _Sounding:
    """Notes that are on, by wire note (channel, pitch), with the session sounding each.

    Keyed by the wire note, not by session: sessions can share a channel (every stinger
    plays on one, and slots 14 and 15 reuse channels 0 and 1), and the sequencer ends a
    wire note before another session sounds it again, so a note-off ends whichever
    session's note sounds on that channel and pitch.
    """

    def __init__(self):
        self._on = {}

    def update(self, message, beat, session):
        """Track one message; for a note-off, returns the session whose note it ends
        (None when none sounded), else ``session``."""
        note = _note(message)
        if note == "on":
            self._on[(message[0] & 0x0F, message[1])] = (session, beat)
        elif note == "off":
            owner = self._on.pop((message[0] & 0x0F, message[1]), None)
            return None if owner is None else owner[0]
        return session

    def drain(self):
        """[(session, channel, pitch, beat_on)] of every sounding note; forgets them."""
        out = [(session, channel, pitch, beat)
               for (channel, pitch), (session, beat) in self._on.items()]
        self._on.clear()
        return out


def _session_names(sessions):
    """{index: name} from a list of names or a dict; checked so that a typo fails early."""
    if sessions is None:
        return {0: "main"}
    items = sessions.items() if isinstance(sessions, dict) else enumerate(sessions)
    names = {}
    for index, name in items:
        if not isinstance(index, int) or index < 0:
            raise InvalidMessage(f"session index must be an integer >= 0, got {index!r}",
                                 field="sessions", allowed="integer index >= 0")
        if not isinstance(name, str) or not name:
            raise InvalidMessage(f"session name must be a non-empty string, got {name!r}",
                                 field="sessions", allowed="non-empty string")
        names[index] = name
    return names


# ---------------------------------------------------------------- rtmidi

# Our short names for the APIs, and python-rtmidi's RTMIDI_API spellings.
API_ALIASES = {"alsa": "LINUX_ALSA", "jack": "UNIX_JACK", "coremidi": "MACOSX_CORE",
               "windows_mm": "WINDOWS_MM", "dummy": "RTMIDI_DUMMY"}
_API_ALLOWED = ", ".join(API_ALIASES) + " or " + ", ".join(API_ALIASES.values())


def resolve_api(api=None):
    """The rtmidi API constant: ``api``, else $RTMIDI_API, else API_UNSPECIFIED (platform default).

    ``api`` is "alsa", "jack", "coremidi", "windows_mm", an RTMIDI_API name such as
    "UNIX_JACK", or an ``rtmidi.API_*`` constant.  $RTMIDI_API is read by python-rtmidi's
    own ``get_api_from_environment``, except that an unknown value is an error here
    rather than a logged warning.
    """
    if api is None:
        value = os.environ.get("RTMIDI_API")
        if value is not None and not hasattr(rtmidi, "API_" + value.upper()):
            raise InvalidMessage(f"RTMIDI_API={value!r} is not an rtmidi API; use {_API_ALLOWED}",
                                 field="RTMIDI_API", allowed=_API_ALLOWED)
        return get_api_from_environment(rtmidi.API_UNSPECIFIED)
    if isinstance(api, int):
        if not rtmidi.API_UNSPECIFIED <= api <= rtmidi.API_RTMIDI_DUMMY:
            raise InvalidMessage(f"api {api} is not an rtmidi.API_* constant",
                                 field="api", allowed=_API_ALLOWED)
        return api
    key = API_ALIASES.get(str(api).lower(), str(api).upper())
    if not hasattr(rtmidi, "API_" + key):
        raise InvalidMessage(f"api {api!r} is not an rtmidi API; use {_API_ALLOWED}",
                             field="api", allowed=_API_ALLOWED)
    return getattr(rtmidi, "API_" + key)


def api_label(api):
    """'Jack (jack)'-style name of an API for messages."""
    if api == rtmidi.API_UNSPECIFIED:
        return "the platform's default MIDI API"
    return f"{rtmidi.get_api_display_name(api)} ({rtmidi.get_api_name(api)})"


def _check_compiled(api):
    # rtmidi itself falls back to another API with only a printed warning
    compiled = rtmidi.get_compiled_api()
    if api != rtmidi.API_UNSPECIFIED and api not in compiled:
        names = ", ".join(api_label(a) for a in compiled) or "none"
        raise PortError(f"MIDI API {api_label(api)} is not compiled into python-rtmidi here; "
                        f"compiled: {names}")


def _hint(api):
    """Why an API might fail here, for the error message."""
    if api == rtmidi.API_UNIX_JACK:
        return " (start one with `jackd -d dummy -r 48000 -p 256`; $JACK_DEFAULT_SERVER names the server)"
    if api in (rtmidi.API_LINUX_ALSA, rtmidi.API_UNSPECIFIED) and sys.platform.startswith("linux") \
            and not os.path.exists("/dev/snd/seq"):
        return " (no ALSA sequencer: /dev/snd/seq is missing; try api='jack' or RTMIDI_API=UNIX_JACK)"
    return ""


def _pick_port(ports, wanted, api):
    """Index of the port named ``wanted``: its exact name, else the one port containing it."""
    if wanted in ports:
        return ports.index(wanted)
    matches = [i for i, p in enumerate(ports) if wanted in p]
    if len(matches) == 1:
        return matches[0]
    listing = ", ".join(map(repr, ports)) or "none"
    raise PortError(f"{wanted!r} matches {'several' if matches else 'no'} MIDI output port "
                    f"of {api_label(api)}; ports: {listing}")


class RtMidiPort(BasePort):
    """MIDI out through python-rtmidi: a virtual port named ``name`` that a DAW or synth
    connects to, or, with ``connect``, an existing output port (a hardware synth).

    rtmidi has no timestamps: bytes leave when ``send`` is called, so the sequencer
    calls it at the event's time.  Notes still on at close get their note-off.

    With JACK, rtmidi hands bytes to JACK's process thread through a ring buffer, and
    its closePort waits for one process cycle only, which may be one that read the
    buffer before the last bytes arrived (rtmidi issues 24 and 235; here 2 closes in 100
    lost a note-off).  Close therefore waits until ``jack_drain_s`` after the last send:
    two periods of 1024 frames at 48 kHz (0 closes in 100 lost one).
    """

    name = "rtmidi"

    def __init__(self, name="Ostinato", api=None, connect=None, client_name=None,
                 jack_drain_s=0.05):
        super().__init__()
        self.jack_drain_s = jack_drain_s
        self._last_send_ns = 0
        self.api = resolve_api(api)
        _check_compiled(self.api)
        self.port_name = name
        self._sounding = _Sounding()
        self._lock = threading.Lock()  # close() may come from another thread than send()
        try:
            self._out = rtmidi.MidiOut(self.api, name=client_name or name)
        except rtmidi.RtMidiError as exc:
            raise PortError(f"cannot open {api_label(self.api)}: {exc}{_hint(self.api)}") from exc
        self.api = self._out.get_current_api()
        try:
            if connect is None:
                self._out.open_virtual_port(name)
            else:
                ports = self._out.get_ports()
                index = _pick_port(ports, connect, self.api)
                self._out.open_port(index, name)
                self.port_name = ports[index]
        except (rtmidi.RtMidiError, NotImplementedError, PortError) as exc:
            self._out.delete()
            if isinstance(exc, PortError):
                raise
            what = f"connect to {connect!r}" if connect else f"open virtual port {name!r}"
            raise PortError(f"cannot {what} with {api_label(self.api)}: {exc}") from exc

    def _send(self, status, data1, data2, t_ns, beat, session):
        message = midi_bytes(status, data1, data2)
        with self._lock:
            self._sounding.update(message, beat, session)
            try:
                self._out.send_message(message)
            except Exception as exc:  # rtmidi raises its own errors and OSError
                raise PortError(f"MIDI port {self.port_name!r} failed to send: {exc}") from exc
            self._last_send_ns = time.monotonic_ns()

    def _close(self):
        with self._lock:
            try:
                for _, channel, pitch, _ in self._sounding.drain():
                    self._out.send_message((0x80 | channel, pitch, 0))
                    self._last_send_ns = time.monotonic_ns()
                if self.api == rtmidi.API_UNIX_JACK:
                    deadline = self._last_send_ns + int(self.jack_drain_s * 1e9)
                    while (left := deadline - time.monotonic_ns()) > 0:
                        time.sleep(left / 1e9)
            finally:
                self._out.close_port()
                self._out.delete()


# ---------------------------------------------------------------- native JACK

class JackMidiPort(BasePort):
    """MIDI out as a JACK client of our own: each message at the frame of its time.

    rtmidi's JACK output writes every message at frame 0 of the next period, so what a
    DAW records jitters by up to a period.  Here the process callback is native code
    (``realtime.jackmidi.NativeJackWriter``) that writes each message at the offset of
    its ``t_ns`` inside the period, so the player hands messages over ``lead_ns`` early:
    one period plus ``margin_ms`` (3 ms: with 1 ms, one stall of the player at 64
    sessions made 146 notes 2.5 ms late in a bench run).  One that is still late goes at
    the period's start and is counted (``stats()["late"]``).  The lead costs a mood
    change nothing: its first note is composed at once and goes in the next period.

    Names: the client is ``name`` ("Ostinato") and its one port ``port`` ("out"), so a
    DAW lists "Ostinato:out".  Sessions keep the channels the server gives them on that
    one port rather than a port each: a DAW or a General MIDI synth (FluidSynth) takes 16
    channels from one connection, and sessions that open and close while playing would
    otherwise need their connections made anew each time.

    ``connect``: input ports to keep connected to (names, or a part of one name, e.g.
    "fluidsynth"); one that is not there yet (a synth that starts later, or restarts) is
    connected when it appears, checked every ``reconnect_s``.  When the JACK server goes
    away the other outputs play on; this one drops what it is sent, tries to come back
    every ``reconnect_s``, and on its return reconnects and sends all-notes-off (CC 123)
    and sustain-off (CC 64) on every channel, as it also does when a wanted input is
    connected anew: a synth that missed note-offs starts clean.
    """

    name = "jack"

    def __init__(self, name="Ostinato", port="out", connect=(), margin_ms=3.0, reconnect_s=1.0,
                 capacity=1 << 14):
        from .jackmidi import NativeJackWriter

        super().__init__()
        if not 0.0 <= margin_ms <= 1000.0:
            raise InvalidMessage(f"margin_ms must be 0..1000, got {margin_ms!r}",
                                 field="margin_ms", allowed="0..1000")
        self.margin_ns = int(margin_ms * 1e6)
        self.reconnect_s = reconnect_s
        self.connections = [connect] if isinstance(connect, str) else list(connect)
        self._writer = NativeJackWriter(name, port, capacity).open()
        self.port_name = self._writer.full_name
        self._sounding = _Sounding()
        self._lock = threading.Lock()  # push, reopen and close come from different threads
        self._last_t = 0
        self._missing = set()  # wanted inputs not found yet (warned once)
        self.reconnects = 0
        self._quit = threading.Event()
        self._connect_all()
        self._watch = threading.Thread(target=self._watch_loop, name="ostinato-jack-watch",
                                       daemon=True)
        self._watch.start()

    @property
    def lead_ns(self):
        return self._writer.period_ns + self.margin_ns

    @property
    def connected(self):
        """False while the JACK server is gone."""
        return not self._writer.down

    @property
    def linked(self):
        """The inputs of ``connect`` this port is connected to now."""
        inputs = self._writer.inputs() if self.connections else []
        out = []
        for wanted in self.connections:
            with contextlib.suppress(PortError):
                name = self._input(inputs, wanted)
                if self._writer.connected_to(name):
                    out.append(name)
        return out

    @staticmethod
    def _input(inputs, wanted):
        """The one input port of ``inputs`` named (or partly named) ``wanted``."""
        return inputs[_pick_port(inputs, wanted, rtmidi.API_UNIX_JACK)]

    def _connect_all(self):
        """Connect to each wanted input that is there and not connected yet; True if
        any connection was made."""
        if not self.connections:
            return False
        inputs, made = self._writer.inputs(), False
        for wanted in self.connections:
            try:
                name = self._input(inputs, wanted)
                if not self._writer.connected_to(name):
                    self._writer.connect(name)
                    made = True
                    log.info("%s connected to %s", self.port_name, name)
            except PortError as exc:  # not there yet: tried again every reconnect_s
                if wanted not in self._missing:
                    log.warning("%s: %s; connecting when it appears", self.port_name, exc)
                self._missing.add(wanted)
            else:
                self._missing.discard(wanted)
        return made

    def _reset(self):
        """All notes off and sustain off on every channel, four periods from now: a JACK
        connection carries data from the next cycle JACK starts after it is made, and
        what a port writes before is heard by nobody."""
        with self._lock:
            self._last_t = max(self._last_t, time.monotonic_ns() + 4 * self._writer.period_ns)
            for channel in range(16):
                self._writer.push(self._last_t, (0xB0 | channel, 123, 0))
                self._writer.push(self._last_t, (0xB0 | channel, 64, 0))

    def _send(self, status, data1, data2, t_ns, beat, session):
        message = midi_bytes(status, data1, data2)
        with self._lock:
            self._sounding.update(message, beat, session)
            self._last_t = t = max(t_ns, self._last_t)  # the ring is read in order
            self._writer.push(t, message)

    def stats(self):
        """The writer's counters: written, late, late_max_us, dropped, ..."""
        return dict(self._writer.stats(), reconnects=self.reconnects, connected=self.connected)

    def _watch_loop(self):
        while not self._quit.wait(self.reconnect_s):
            if not self._writer.down:
                if self.connections and self._connect_all():
                    self._reset()  # a synth (re)connected: it starts clean
                continue
            with self._lock:
                self._writer.close()
                try:
                    self._writer.open()
                except PortError:
                    continue  # not back yet
                self._sounding.drain()  # what sounded went with the old server
            self._connect_all()  # first, so that what is connected hears the reset
            self._reset()
            self.reconnects += 1
            log.warning("JACK is back: %s reopened, all notes off sent", self.port_name)

    def _close(self):
        self._quit.set()
        self._watch.join()
        with self._lock:
            now = time.monotonic_ns()
            self._last_t = max(self._last_t, now)
            for _, channel, pitch, _ in self._sounding.drain():
                self._writer.push(self._last_t, (0x80 | channel, pitch, 0))
            # what is queued is written by its time; then one more period for the
            # connected clients to read that cycle's buffer
            deadline = max(self._last_t, now) + 3 * self._writer.period_ns + self.margin_ns
            while self._writer.queued and not self._writer.down and time.monotonic_ns() < deadline:
                time.sleep(0.001)
            time.sleep(self._writer.period_ns / 1e9)
            self._writer.close()


# ---------------------------------------------------------------- ZeroMQ event stream

class ZmqPubPort(BasePort):
    """Note events and the server's markers as single JSON frames on a ZeroMQ PUB socket.

    Frames are ``realtime.protocol.encode_event``'s; ``seq`` counts every frame this
    port publishes, so a subscriber sees what it missed.  Bind to port ``*`` (or 0)
    for a free port; ``bound_address`` says which.  Clock and controller messages are
    not published: the stream carries notes, and markers through ``publish``.
    keys: ``realtime.keys.ServerKeys``: only authorised clients subscribe (CurveZMQ);
    without keys only a loopback ``address`` is allowed (else AuthError).
    ahead_ms: 0 (the default) publishes each note at its time; more publishes it up to
    that long before, with its ``t_ns``, so that a client can schedule it exactly (the
    model of OSC bundles and SuperCollider's server latency): jitter is then the
    client's scheduling, not the network's.
    """

    name = "zmq"

    def __init__(self, address=EVENT_ADDRESS, sessions=None, context=None, linger_ms=500,
                 keys=None, ahead_ms=0.0):
        require_keys(address, keys, "event stream")
        if isinstance(ahead_ms, bool) or not isinstance(ahead_ms, (int, float)) or \
                not 0.0 <= ahead_ms <= 1000.0:
            raise InvalidMessage(f"ahead_ms must be 0..1000 (ms), got {ahead_ms!r}",
                                 field="ahead_ms", allowed="0..1000")
        super().__init__()
        self.lead_ns = int(round(ahead_ms * 1e6))
        self._names = _session_names(sessions)
        self._sounding = _Sounding()
        self._lock = threading.Lock()  # send() and publish() come from different threads
        self._seq = 0
        self._beat = 0.0
        context = context or zmq.Context.instance()
        self._guard = guard_for(context, keys)  # before any subscriber connects
        self._socket = context.socket(zmq.PUB)
        if self._guard is not None:
            self._guard.secure(self._socket)
        self._socket.setsockopt(zmq.LINGER, linger_ms)
        try:
            self._socket.bind(address)
        except zmq.ZMQError as exc:
            self._socket.close(0)
            if self._guard is not None:
                self._guard.close()
            raise PortError(f"cannot bind the event stream to {address!r}: {exc}") from exc
        self.bound_address = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)

    @property
    def seq(self):
        """The ``seq`` the next frame will carry."""
        return self._seq

    @property
    def sessions(self):
        """{index: name} of the sessions; set it with a list of names or a dict."""
        return dict(self._names)

    @sessions.setter
    def sessions(self, sessions):
        self._names = _session_names(sessions)

    def _emit(self, kind, session, t_ns, beat, **fields):
        # the caller holds self._lock: a zmq socket is not thread-safe
        name = session if isinstance(session, str) else self._names.get(session, str(session))
        self._socket.send(encode_event(kind, name, self._seq, t_ns, beat, **fields))
        self._seq += 1

    def _send(self, status, data1, data2, t_ns, beat, session):
        message = midi_bytes(status, data1, data2)
        note = _note(message)
        if note is None:
            return
        with self._lock:
            # a note-off is the note's own session's, even when another session's retrigger
            # ended it
            owner = self._sounding.update(message, beat, session)
            self._beat = beat
            self._emit("note_" + note, session if owner is None else owner, t_ns, beat,
                       channel=message[0] & 0x0F,
                       pitch=message[1], velocity=message[2] if note == "on" else 0)

    def publish(self, type, session=0, t_ns=None, beat=None, **fields):
        """Publish a marker (``type`` one of protocol.EVENT_TYPES: mood, tempo, transport, ...).

        session: index or name.  t_ns defaults to now, beat to the beat of the last note sent.
        """
        if type not in EVENT_TYPES:
            raise InvalidMessage(f"event type {type!r} is unknown; allowed: {', '.join(EVENT_TYPES)}",
                                 field="type", allowed=list(EVENT_TYPES))
        if self.closed:
            raise PortError("the event stream is closed")
        with self._lock:
            self._emit(type, session, time.monotonic_ns() if t_ns is None else t_ns,
                       self._beat if beat is None else beat, **fields)

    def _close(self):
        with self._lock:
            try:
                now = time.monotonic_ns()
                for session, channel, pitch, _ in self._sounding.drain():
                    self._emit("note_off", session, now, self._beat, channel=channel, pitch=pitch)
            finally:
                self._socket.close()
                if self._guard is not None:
                    self._guard.close()


# ---------------------------------------------------------------- .mid recording

MIN_BPM = 60e6 / 0xFFFFFF  # a set_tempo holds at most 0xFFFFFF microseconds a beat
MAX_BPM = 60e6             # ... and at least 1


class _Track:
    """One track of a recording, kept as the bytes of its events so far (delta time +
    message), so that writing the file never re-encodes what is already recorded."""

    def __init__(self, title):
        self.title = title
        self.data = bytearray()
        self.tick = 0          # absolute tick of its last event
        self.offset = 0.0      # beats added to its session's beats (a reopened session)
        self.rebase = False    # a new session took this track's name: offset on its next event

    def add(self, tick, message):
        """Append ``message`` at ``tick`` (never before the track's last event)."""
        tick = max(tick, self.tick)
        self.data += _varlen(tick - self.tick)
        self.data += bytes(message)
        self.tick = tick
        return tick


def _varlen(n):
    """A standard MIDI file's variable-length quantity."""
    out = bytearray([n & 0x7F])
    n >>= 7
    while n:
        out.insert(0, 0x80 | (n & 0x7F))
        n >>= 7
    return out


def _chunk(kind, body):
    return kind + len(body).to_bytes(4, "big") + body


def _meta_name(title):
    name = title.encode("utf-8")[:0x7F]
    return b"\x00\xff\x03" + bytes([len(name)]) + name


_END_OF_TRACK = b"\x00\xff\x2f\x00"


class MidiFilePort(BasePort):
    """Records what it is sent to a type 1 .mid file, complete and balanced whenever it
    is read: at close, and at a checkpoint every ``checkpoint_s`` while recording.

    Track 0 holds the tempo map of the timeline session (``tempo(bpm, beat, session)``;
    default "main"), then one track per session *name* (``split="session"``) or per MIDI
    channel (``split="channel"``).  Times come from the events' beats, not the wall
    clock, so the timeline session's track is musically exact; another session's track
    keeps its own beats (it joined the main grid when it opened), so at a tempo of its own
    it drifts from the main track in the file.  A track's events never go back in time:
    an event stamped before the track's last one (an immediate transition plays ahead of
    its beat, then a release stamps the current beat) is placed at the last one, and a
    session reopened under a name whose track has gone further is shifted to follow on.

    A note-off ends the note sounding on its channel and pitch, in the track of the
    session that sounded it (another session's retrigger included); a note-off of a
    silent note is not written (``dropped_offs`` counts them); notes still sounding
    are ended at the recording's last beat.  System messages (clock, transport) are
    not recorded: a standard MIDI file cannot hold them.

    Checkpoints: a thread of the port rewrites ``path`` (a temporary file, then
    ``os.replace``, so a reader never sees half a file) at most every ``checkpoint_s``
    seconds while new events come, with sounding notes closed at the last beat; so a
    process killed outright loses at most that much.  The sending thread only appends
    bytes; the checkpoint copies them under the lock.  ``checkpoint_s=None``: written at
    close only.
    """

    name = "file"

    def __init__(self, path, sessions=None, split="session", ticks_per_beat=480, bpm=120.0,
                 checkpoint_s=1.0, timeline="main"):
        super().__init__()
        if split not in ("session", "channel"):
            raise InvalidMessage(f"split must be 'session' or 'channel', got {split!r}",
                                 field="split", allowed="session, channel")
        if not isinstance(ticks_per_beat, int) or not 1 <= ticks_per_beat <= 0x7FFF:
            raise InvalidMessage(f"ticks_per_beat must be an integer 1-32767, got {ticks_per_beat!r}",
                                 field="ticks_per_beat", allowed="1-32767")
        if checkpoint_s is not None and not (isinstance(checkpoint_s, (int, float))
                                             and 0 < checkpoint_s < math.inf):
            raise InvalidMessage(f"checkpoint_s must be a number of seconds > 0 or None, "
                                 f"got {checkpoint_s!r}", field="checkpoint_s",
                                 allowed="> 0 or None")
        self.path = os.path.abspath(os.fspath(path))
        folder = os.path.dirname(self.path)
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK):  # fail now, not at close
            raise PortError(f"cannot record to {self.path!r}: folder {folder!r} "
                            f"does not exist or is not writable")
        self.split = split
        self.ticks_per_beat = ticks_per_beat
        self.timeline = timeline
        self.checkpoint_s = checkpoint_s
        self.checkpoints = 0      # files written before close
        self.dropped_offs = 0
        self._names = _session_names(sessions)
        self._lock = threading.Lock()  # send() and the checkpoint thread
        self._tracks = {}         # track key (session name or channel) -> _Track
        self._sounding = {}       # (channel, pitch) -> (track key, tick of the note-on)
        self._tempi = []          # (tick, bpm) of the tempo track
        self._last_tick = 0
        self._dirty = False
        self._done = threading.Event()
        self._checkpointer = None
        self.tempo(bpm, 0.0)
        if checkpoint_s is not None:
            self._checkpointer = threading.Thread(target=self._checkpoint_loop, daemon=True,
                                                  name="ostinato-recording")
            self._checkpointer.start()

    @property
    def sessions(self):
        """{index: name} of the sessions, naming their tracks; set it with a list or dict."""
        return dict(self._names)

    @sessions.setter
    def sessions(self, sessions):
        names = _session_names(sessions)
        with self._lock:
            if self.split == "session":
                for name in set(names.values()) - set(self._names.values()):
                    if name in self._tracks:  # a new session under a recorded name
                        self._tracks[name].rebase = True
            self._names = names

    def tempo(self, bpm, beat, session=None):
        """The tempo is ``bpm`` from ``beat`` on: a set_tempo in the tempo track.

        session: the index of the session whose tempo it is; only the timeline
        session's tempo goes into the file (None: the timeline's).  A change the
        recording has not reached yet is replaced by the next one, as the sequencer
        replaces a pending change.
        """
        beat = _check_beat(beat)
        try:
            bpm = float(bpm)
        except (TypeError, ValueError):
            bpm = math.nan
        if not MIN_BPM <= bpm <= MAX_BPM:
            raise InvalidMessage(f"bpm must be {MIN_BPM:.2f}-{MAX_BPM:.0f}, got {bpm!r}",
                                 field="bpm", allowed=f"{MIN_BPM:.2f}-{MAX_BPM:.0f}")
        with self._lock:
            if session is not None and self._names.get(session) != self.timeline:
                return
            main = self._tracks.get(self.timeline)
            reached = main.tick if main is not None else 0
            tick = round((beat + (main.offset if main is not None else 0.0)) * self.ticks_per_beat)
            self._tempi = [(t, b) for t, b in self._tempi if t <= reached] + [(tick, bpm)]
            self._dirty = True

    def _send(self, status, data1, data2, t_ns, beat, session):
        message = midi_bytes(status, data1, data2)
        beat = _check_beat(beat)
        if message[0] >= 0xF0:
            return
        with self._lock:
            self._record(message, beat, session)
            self._dirty = True

    def _record(self, message, beat, session):
        # the caller holds self._lock
        if self.split == "session":
            key = self._names.get(session, f"session {session}")
            title = key
        else:
            key = message[0] & 0x0F
            title = f"channel {key + 1}"
        track = self._tracks.get(key)
        if track is None:
            track = self._tracks[key] = _Track(title)
        if track.rebase:
            track.offset = max(0.0, track.tick / self.ticks_per_beat - beat)
            track.rebase = False
        tick = max(track.tick, round((beat + track.offset) * self.ticks_per_beat))
        note = _note(message)
        wire = (message[0] & 0x0F, message[1])
        if note == "off":
            owner = self._sounding.pop(wire, None)
            if owner is None:
                self.dropped_offs += 1
                return
            track = self._tracks[owner[0]]
        elif note == "on" and wire in self._sounding:  # sounding already: it ends here
            owner = self._sounding.pop(wire)
            self._tracks[owner[0]].add(tick, (0x80 | wire[0], wire[1], 0))
        tick = track.add(tick, message)
        if note == "on":
            self._sounding[wire] = (key, tick)
        self._last_tick = max(self._last_tick, tick)

    def _endings(self):
        """{track key: [(tick, note-off bytes)]} ending every sounding note at the last
        beat (one tick after its note-on at least).  The caller holds self._lock."""
        out = {}
        for (channel, pitch), (key, tick_on) in self._sounding.items():
            end = max(self._last_tick, tick_on + 1, self._tracks[key].tick)
            out.setdefault(key, []).append((end, (0x80 | channel, pitch, 0)))
        for ends in out.values():
            ends.sort()
        return out

    def _snapshot(self, endings):
        """What the file needs, taken under self._lock (the caller holds it) without
        copying the recorded bytes: the tempo map, and each track's title, buffer,
        length and last tick, with ``endings`` to append.  Tracks only grow at the end,
        so ``_file_bytes`` can copy each buffer's first ``length`` bytes later, outside
        the lock, while the sender appends (a bytearray slice is one step under the GIL)."""
        keys = list(self._tracks) if self.split == "session" else sorted(self._tracks)
        tracks = [(t.title, t.data, len(t.data), t.tick, endings.get(key, ()))
                  for key, t in ((k, self._tracks[k]) for k in keys)]
        return sorted(dict(self._tempi).items()), tracks  # the last tempo for a tick wins

    def _file_bytes(self, snapshot):
        """The whole .mid file from a ``_snapshot``; needs no lock."""
        tempi, tracks = snapshot
        tempo = bytearray(_meta_name("tempo"))
        now = 0
        for tick, bpm in tempi:
            tempo += _varlen(tick - now) + b"\xff\x51\x03" + mido.bpm2tempo(bpm).to_bytes(3, "big")
            now = tick
        chunks = [_chunk(b"MTrk", bytes(tempo) + _END_OF_TRACK)]
        # sessions in the order they first played, channels in channel order
        for title, data, length, now, endings in tracks:
            body = bytearray(_meta_name(title))
            body += data[:length]
            for tick, message in endings:
                body += _varlen(tick - now) + bytes(message)
                now = tick
            chunks.append(_chunk(b"MTrk", bytes(body) + _END_OF_TRACK))
        header = _chunk(b"MThd", (1).to_bytes(2, "big") + len(chunks).to_bytes(2, "big")
                        + self.ticks_per_beat.to_bytes(2, "big"))
        return header + b"".join(chunks)

    def _write(self, data):
        """``data`` to ``path`` atomically: a temporary file in its folder, then os.replace."""
        fd, tmp = tempfile.mkstemp(suffix=".mid.part", dir=os.path.dirname(self.path))
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, self.path)  # never leave a half-written file under the real name
        except BaseException as exc:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            if isinstance(exc, OSError):
                raise PortError(f"cannot write {self.path!r}: {exc}") from exc
            raise

    def checkpoint(self):
        """Write what is recorded so far, sounding notes closed at the last beat."""
        with self._lock:  # only what a send could change; the bytes are copied after
            snapshot = self._snapshot(self._endings())
            self._dirty = False
        self._write(self._file_bytes(snapshot))
        self.checkpoints += 1

    def _checkpoint_loop(self):
        deadline = time.monotonic() + self.checkpoint_s
        failed = False
        while not self._done.wait(max(0.0, deadline - time.monotonic())):
            deadline += self.checkpoint_s
            if deadline < time.monotonic():  # fell behind (a loaded machine): no burst
                deadline = time.monotonic() + self.checkpoint_s
            if not self._dirty:
                continue
            try:
                self.checkpoint()
                failed = False
            except (OSError, PortError) as exc:
                if not failed:  # once per run of failures, not once a second
                    log.error("recording checkpoint failed (will retry): %s", exc)
                failed = True

    def _close(self):
        self._done.set()
        if self._checkpointer is not None:
            self._checkpointer.join()
        with self._lock:
            for key, ends in self._endings().items():
                for tick, message in ends:
                    self._tracks[key].add(tick, message)
            self._sounding.clear()
            snapshot = self._snapshot({})
        self._write(self._file_bytes(snapshot))


def _check_beat(beat):
    try:
        beat = float(beat)
    except (TypeError, ValueError):
        beat = math.nan
    if not 0 <= beat < math.inf:
        raise InvalidMessage(f"beat must be a finite number >= 0, got {beat!r}",
                             field="beat", allowed=">= 0")
    return beat


# ---------------------------------------------------------------- fan-out

class MultiPort(BasePort):
    """Sends to several ports.  A port that raises is logged once, closed and dropped
    while the others go on, so a failed recorder never silences the music."""

    name = "multi"

    def __init__(self, ports):
        super().__init__()
        self.ports = tuple(ports)

    def _call(self, method, *args, **kwargs):
        self.call_some(None, method, *args, **kwargs)

    def call_some(self, ahead, method, *args, **kwargs):
        """``method`` of every port that has it (``ahead`` None), or of the ports with a
        lead only (True) or without (False): with a lead in play, what goes with the
        messages (markers, tempo, session names) must reach each port in order with
        them.  ``method`` "sessions" sets that property."""
        for port in self.ports:
            fn = getattr(port, method, None)
            if fn is None or (ahead is not None and bool(port.lead_ns) != ahead):
                continue
            try:
                if method == "sessions":
                    port.sessions = args[0]
                else:
                    fn(*args, **kwargs)
            except Exception as exc:  # whatever one output does wrong stays with it
                self._drop(port, exc)

    def _drop(self, port, exc):
        self.ports = tuple(p for p in self.ports if p is not port)
        log.error("output %r failed and was dropped: %s: %s", port.name, type(exc).__name__, exc)
        try:
            port.close()
        except Exception as close_exc:
            log.error("closing the dropped output %r failed too: %s", port.name, close_exc)

    def _send(self, status, data1, data2, t_ns, beat, session):
        midi_bytes(status, data1, data2)  # a bad message is the caller's error, not a port's
        self._call("send", status, data1, data2, t_ns, beat, session)

    @property
    def lead_ns(self):
        """The longest lead any of the ports asks for (``BasePort.lead_ns``)."""
        return max((p.lead_ns for p in self.ports), default=0)

    @property
    def has_due(self):
        """Whether some port wants messages at their time (lead 0)."""
        return any(not p.lead_ns for p in self.ports)

    def send_ahead(self, status, data1, data2, t_ns, beat, session=0):
        """``send`` to the ports with a lead only (they schedule by ``t_ns``)."""
        if not self.closed:
            midi_bytes(status, data1, data2)
            self.call_some(True, "send", status, data1, data2, t_ns, beat, session)

    def send_due(self, status, data1, data2, t_ns, beat, session=0):
        """``send`` to the ports without a lead only (called at the message's time)."""
        if not self.closed:
            midi_bytes(status, data1, data2)
            self.call_some(False, "send", status, data1, data2, t_ns, beat, session)

    @property
    def sessions(self):
        """{index: name} of the first port that names sessions ({} if none does)."""
        return next((p.sessions for p in self.ports if hasattr(p, "sessions")), {})

    @sessions.setter
    def sessions(self, sessions):
        _session_names(sessions)  # a bad mapping is the caller's error, not a port's
        self.call_some(None, "sessions", sessions)

    def tempo(self, bpm, beat, session=None):
        """Forwarded to the ports that record tempo."""
        self._call("tempo", bpm, beat, session=session)

    def release(self, t_ns):
        """Each port ends the notes it has sounding (``BasePort.release``)."""
        self._call("release", t_ns)

    def publish(self, type, **fields):
        """Forwarded to the ports that publish markers."""
        self._call("publish", type, **fields)

    def _close(self):
        errors = []
        for port in self.ports:
            try:
                port.close()
            except Exception as exc:
                errors.append(f"{port.name}: {exc}")
        if errors:
            raise PortError("closing outputs failed: " + "; ".join(errors))


# ---------------------------------------------------------------- choosing a backend

BACKENDS = {"rtmidi": RtMidiPort, "jack": JackMidiPort, "zmq": ZmqPubPort, "file": MidiFilePort}


def open_port(kind=None, **kwargs):
    """Open an output of ``kind`` ("rtmidi", "jack", "zmq" or "file") with the backend's
    arguments.

    Without ``kind``: $OSTINATO_OUTPUT, else "rtmidi" (as mido reads $MIDO_BACKEND).
    """
    field = "kind"
    if kind is None:
        kind, field = os.environ.get("OSTINATO_OUTPUT", "rtmidi"), "OSTINATO_OUTPUT"
    backend = BACKENDS.get(str(kind).strip().lower())
    if backend is None:
        raise InvalidMessage(f"{field} {kind!r} is not an output kind; allowed: {', '.join(BACKENDS)}",
                             field=field, allowed=", ".join(BACKENDS))
    return backend(**kwargs)


# ---------------------------------------------------------------- `ostinato ports`

def list_ports(api=None):
    """[{api, name, label, inputs, outputs, error}] for each compiled rtmidi API (or ``api``).

    An API that cannot be used here (no JACK server, no ALSA sequencer) has ``error``
    set to the reason and no ports.
    """
    apis = rtmidi.get_compiled_api()
    if api is not None:
        apis = [resolve_api(api)]
        _check_compiled(apis[0])
    rows = []
    for a in apis:
        row = {"api": a, "name": rtmidi.get_api_name(a), "label": api_label(a),
               "inputs": [], "outputs": [], "error": None}
        try:
            for key, cls in (("inputs", rtmidi.MidiIn), ("outputs", rtmidi.MidiOut)):
                probe = cls(a, name="ostinato-ports")
                try:
                    row[key] = probe.get_ports()
                finally:
                    probe.delete()
        except rtmidi.RtMidiError as exc:
            row["error"] = f"{exc}{_hint(a)}"
        rows.append(row)
    return rows


def add_arguments(parser):
    parser.add_argument("--api", help="only this API: " + ", ".join(API_ALIASES)
                        + " (default: every API compiled into python-rtmidi)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def run(args):
    with _no_jack_autostart(), _quiet_fd2():
        rows = list_ports(args.api)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print("Compiled MIDI APIs: " + ", ".join(api_label(a) for a in rtmidi.get_compiled_api()))
    for var in ("RTMIDI_API", "OSTINATO_OUTPUT"):
        print(f"{var}: {os.environ.get(var, '(not set)')}")
    print()
    for row in rows:
        print(f"{row['label']}, RTMIDI_API={_env_name(row['api'])}")
        if row["error"]:
            print(f"  unavailable: {row['error']}\n")
            continue
        for key in ("inputs", "outputs"):
            print(f"  {key.capitalize()}:")
            print("\n".join(f"    {p!r}" for p in row[key]) or "    (none)")
        print()
    return 0


def _env_name(api):
    return next((k[4:] for k in dir(rtmidi) if k.startswith("API_") and getattr(rtmidi, k) == api),
                str(api))


@contextlib.contextmanager
def _no_jack_autostart():
    """Listing ports must not start a JACK server as a side effect, as libjack would."""
    saved = os.environ.get("JACK_NO_START_SERVER")
    os.environ["JACK_NO_START_SERVER"] = "1"
    try:
        yield
    finally:
        if saved is None:
            del os.environ["JACK_NO_START_SERVER"]
        else:
            os.environ["JACK_NO_START_SERVER"] = saved


@contextlib.contextmanager
def _quiet_fd2():
    """Silence file descriptor 2 while ALSA and libjack print their own complaints."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
