"""The output contract every backend keeps (mido's ``BasePort`` + ``_send``).

Every output (virtual MIDI port, native JACK port, ZeroMQ event stream, .mid recording,
audio preview) receives the same thing from the player: a channel message as up to
three MIDI bytes plus its scheduled time.  A backend implements ``_send`` (and
``_close`` if it holds resources); the hooks for tempo, markers and session names are
no-ops unless a backend has a use for them.  Also here: the MIDI byte rules, and the
count of sounding notes that ``release`` ends.
"""
import operator


from engine.errors import InvalidMessage


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

    # Hooks the player calls on every output, in order with the messages; each is a no-op
    # here, and a backend overrides the ones it has a use for.
    def tempo(self, bpm, beat, session=None):
        """The tempo is ``bpm`` from ``beat`` on (a recording keeps the tempo map)."""

    def publish(self, type, **fields):
        """A marker (mood, tempo, transport, ...: ``protocol.EVENT_TYPES``) for an output
        that carries them (the event stream)."""

    @property
    def sessions(self):
        """{slot: name} of the sessions, for an output that names them ({} here)."""
        return {}

    @sessions.setter
    def sessions(self, sessions):
        pass

    @property
    def voices(self):
        """{slot: {channel: voice name}} of the sessions, for an output that names each
        note's voice ({} here): ``voice_map``'s form."""
        return {}

    @voices.setter
    def voices(self, voices):
        pass

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


def note_of(message):
    """'on' or 'off' for a note message (a note-on of velocity 0 is an off), else None."""
    kind = message[0] & 0xF0
    if kind == 0x90:
        return "on" if message[2] else "off"
    return "off" if kind == 0x80 else None


class Sounding:
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
        note = note_of(message)
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


def session_names(sessions):
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


def voice_map(voices):
    """{slot: {channel: voice name}} from a mapping of the same form, copied and checked so
    that a bad one fails where it is set, naming the field ``voices``.

    The server maps each session's wire channels to the voices that play them (an
    ensemble's melody, bass, harmony and drums; a one-line session's channel is "melody";
    the stinger channel is "stinger").  None is the empty map.
    """
    if voices is None:
        return {}
    if not isinstance(voices, dict):
        raise InvalidMessage(f"voices must be a dict {{slot: {{channel: name}}}}, got {voices!r}",
                             field="voices", allowed="{slot: {channel 0-15: voice name}}")
    out = {}
    for slot, channels in voices.items():
        if not isinstance(slot, int) or isinstance(slot, bool) or slot < 0:
            raise InvalidMessage(f"voices: session slot must be an integer >= 0, got {slot!r}",
                                 field="voices", allowed="integer slot >= 0")
        if not isinstance(channels, dict):
            raise InvalidMessage(f"voices[{slot}] must be a dict {{channel: name}}, got {channels!r}",
                                 field="voices", allowed="{channel 0-15: voice name}")
        for channel, name in channels.items():
            if not isinstance(channel, int) or isinstance(channel, bool) or not 0 <= channel <= 15:
                raise InvalidMessage(f"voices[{slot}]: channel must be an integer 0-15, got "
                                     f"{channel!r}", field="voices", allowed="channel 0-15")
            if not isinstance(name, str) or not name:
                raise InvalidMessage(f"voices[{slot}][{channel}]: voice name must be a non-empty "
                                     f"string, got {name!r}", field="voices",
                                     allowed="non-empty string")
        out[slot] = dict(channels)
    return out


# ---------------------------------------------------------------- rtmidi

# Our short names for the APIs, and python-rtmidi's RTMIDI_API spellings.
