"""Several outputs as one: each message to every port, one failing port dropped and
logged while the others play on; the ports with a lead apart from those without."""
import logging


from engine.errors import PortError

from realtime.outputs.base import BasePort, midi_bytes, session_names, voice_map

log = logging.getLogger("ostinato.outputs")


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
        them.  ``method`` "sessions" or "voices" sets that property."""
        for port in self.ports:
            fn = getattr(port, method, None)
            if fn is None or (ahead is not None and bool(port.lead_ns) != ahead):
                continue
            try:
                if method in ("sessions", "voices"):
                    setattr(port, method, args[0])
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
        """``send`` to the ports without a lead only (called at the message's time, by the
        player, message after message: ``call_some``'s work inlined)."""
        if not self.closed:
            midi_bytes(status, data1, data2)
            for port in self.ports:
                if not port.lead_ns:
                    try:
                        port.send(status, data1, data2, t_ns, beat, session)
                    except Exception as exc:  # whatever one output does wrong stays with it
                        self._drop(port, exc)

    @property
    def sessions(self):
        """{index: name} of the first port that names sessions ({} if none does)."""
        return next((names for names in (p.sessions for p in self.ports) if names), {})

    @sessions.setter
    def sessions(self, sessions):
        session_names(sessions)  # a bad mapping is the caller's error, not a port's
        self.call_some(None, "sessions", sessions)

    @property
    def voices(self):
        """{slot: {channel: voice name}} of the first port that names voices ({} if none)."""
        return next((names for names in (p.voices for p in self.ports) if names), {})

    @voices.setter
    def voices(self, voices):
        voice_map(voices)  # a bad mapping is the caller's error, not a port's
        self.call_some(None, "voices", voices)

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
