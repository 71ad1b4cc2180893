"""Outputs: one port abstraction with small backends, as mido's BasePort + _send.

Every output (virtual MIDI port, ZeroMQ event stream, .mid recording, audio preview)
receives the same thing from the sequencer's sending thread: a channel message as
three MIDI bytes plus its scheduled time.  A backend implements ``_send`` (and
``_close`` if it holds resources); ``send`` is what the sequencer calls.
"""


class BasePort:
    """An output of performed MIDI events. Use as a context manager."""

    name = "base"

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
