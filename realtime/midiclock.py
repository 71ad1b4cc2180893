"""MIDI clock: 24 pulses a beat of the "main" session, with Start, Continue and Stop.

``MidiClock`` is the part of ``realtime.server.Server`` that a DAW follows with
``serve --clock``: the player sends the pulses due by each look (``_clock``), and
start, pause and stop send the transport messages (``_transport``).  The pulses follow
the main session's tempo map, ramps included, and go through the same ordered queue as
the notes.
"""


class MidiClock:
    """Clock pulses and transport, mixed into ``Server`` (``_pulse`` is its state)."""

    def _transport(self, status, now):
        """MIDI Start (0xFA), Continue (0xFB) or Stop (0xFC), and where the clock goes on
        from: Start restarts it at the main session's next beat, Continue picks up the
        pulse that follows now."""
        main = self.sessions.get("main")
        if not self.cfg.clock or main is None:
            return
        tick = max(0.0, self.seq.ns_tick(main.slot, now))
        if status == 0xFA:
            self._pulse = int(-(-tick // self.tpb)) * 24
        elif status == 0xFB:
            self._pulse = int(tick * 24 / self.tpb) + 1
        self._last_t = max(now, self._last_t)
        self._emit(self._routes(), status, 0, 0, self._last_t, tick / self.tpb, main.slot)

    def _clock(self, now):
        """Send the clock pulses due by ``now``; returns the time of the next one."""
        s = self.sessions["main"].slot
        routes = self._routes()
        while True:
            tick = self._pulse * self.tpb / 24
            t = int(self.seq.tick_ns(s, tick))
            if t > now:
                return t
            self._last_t = t = max(t, self._last_t)  # stamps never go back: see _send
            self._emit(routes, 0xF8, 0, 0, t, tick / self.tpb, s)
            self._pulse += 1
