"""The native JACK MIDI output: each message written at its frame by a compiled
process callback (``realtime.jackwriter``), handed over a lead ahead of its time."""
import contextlib
import logging
import threading
import time

import rtmidi

from engine.errors import InvalidMessage, PortError

from realtime.outputs.base import BasePort, Sounding, midi_bytes
from realtime.outputs.virtual import pick_port

log = logging.getLogger("ostinato.outputs")


class JackMidiPort(BasePort):
    """MIDI out as a JACK client of our own: each message at the frame of its time.

    rtmidi's JACK output writes every message at frame 0 of the next period, so what a
    DAW records jitters by up to a period.  Here the process callback is native code
    (``realtime.jackwriter.NativeJackWriter``) that writes each message at the offset of
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
    and sustain-off (CC 64) on every channel, then the last program change sent on each
    channel, as it also does when a wanted input is connected anew: a synth that missed
    note-offs starts clean, and one that started anew plays each voice's instrument.
    """

    name = "jack"

    def __init__(self, name="Ostinato", port="out", connect=(), margin_ms=3.0, reconnect_s=1.0,
                 capacity=1 << 14):
        from realtime.jackwriter import NativeJackWriter

        super().__init__()
        if not 0.0 <= margin_ms <= 1000.0:
            raise InvalidMessage(f"margin_ms must be 0..1000, got {margin_ms!r}",
                                 field="margin_ms", allowed="0..1000")
        self.margin_ns = int(margin_ms * 1e6)
        self.reconnect_s = reconnect_s
        self.connections = [connect] if isinstance(connect, str) else list(connect)
        self._writer = NativeJackWriter(name, port, capacity).open()
        self.port_name = self._writer.full_name
        self._sounding = Sounding()
        self._programs = {}  # channel -> the last program sent on it, sent again by _reset
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
        return inputs[pick_port(inputs, wanted, rtmidi.API_UNIX_JACK)]

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
        """All notes off and sustain off on every channel, then each channel's program,
        four periods from now: a JACK connection carries data from the next cycle JACK
        starts after it is made, and what a port writes before is heard by nobody."""
        with self._lock:
            self._last_t = max(self._last_t, time.monotonic_ns() + 4 * self._writer.period_ns)
            for channel in range(16):
                self._writer.push(self._last_t, (0xB0 | channel, 123, 0))
                self._writer.push(self._last_t, (0xB0 | channel, 64, 0))
            for channel, program in sorted(self._programs.items()):
                self._writer.push(self._last_t, (0xC0 | channel, program))

    def _send(self, status, data1, data2, t_ns, beat, session):
        message = midi_bytes(status, data1, data2)
        with self._lock:
            self._sounding.update(message, beat, session)
            if message[0] & 0xF0 == 0xC0:
                self._programs[message[0] & 0x0F] = message[1]
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
