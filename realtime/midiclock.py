"""MIDI clock: 24 pulses a beat of the "main" session, with Start, Continue and Stop.

What a DAW follows with ``serve --clock``: the player sends the pulses due by each look
(``pulses``), and start, pause and stop send the transport messages (``transport``).
The pulses follow the main session's tempo map, ramps included, and go through the
engine's ordered queue with the notes.
"""


class MidiClock:
    """Clock pulses and transport of the session in slot ``s`` of ``seq`` (a
    ``realtime.sequencer.Sequencer`` at ``tpb`` ticks a beat), sent by ``engine``."""

    def __init__(self, seq, tpb, engine):
        self.seq, self.tpb, self.engine = seq, tpb, engine
        self.pulse = 0  # the next pulse, in 24ths of a beat

    def transport(self, status, now, s):
        """MIDI Start (0xFA), Continue (0xFB) or Stop (0xFC), and where the clock goes on
        from: Start restarts it at the session's next beat, Continue picks up the pulse
        that follows now."""
        tick = max(0.0, self.seq.ns_tick(s, now))
        if status == 0xFA:
            self.pulse = int(-(-tick // self.tpb)) * 24
        elif status == 0xFB:
            self.pulse = int(tick * 24 / self.tpb) + 1
        self.engine.send_at(self.engine.routes(), status, 0, 0, now, tick / self.tpb, s)

    def pulses(self, now, s):
        """Send the clock pulses due by ``now``; returns the time of the next one."""
        routes = self.engine.routes()
        while True:
            tick = self.pulse * self.tpb / 24
            t = int(self.seq.tick_ns(s, tick))
            if t > now:
                return t
            self.engine.send_at(routes, 0xF8, 0, 0, t, tick / self.tpb, s)
            self.pulse += 1
