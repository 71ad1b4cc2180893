"""The ZeroMQ event stream: every note and marker as JSON on a PUB socket, for game
engines and tools that follow the music (``PROTOCOL.md``, "events")."""
import threading
import time

import zmq

from engine.errors import InvalidMessage, PortError
from realtime.keys import guard_for, require_keys
from realtime.protocol import EVENT_ADDRESS, EVENT_TYPES, SYNC_TYPES, encode_event, type_prefix

from realtime.outputs.base import (BasePort, Sounding, midi_bytes, note_of, session_names,
                                   voice_map)


# How often the XPUB's subscription messages are read (and applied): a new subscriber
# misses at most this much more than ZeroMQ's own slow-joiner window.
TAKE_EVERY_NS = 1_000_000


class ZmqPubPort(BasePort):
    """Note events and the server's markers as single JSON frames on a ZeroMQ PUB socket.

    Frames are ``realtime.protocol.encode_event``'s; ``seq`` counts every frame this
    port publishes but the sync events, which count apart (they are opt-in), so a
    subscriber sees what it missed.  Bind to port ``*`` (or 0)
    for a free port; ``bound_address`` says which.  Clock and controller messages are
    not published: the stream carries notes, and markers through ``publish``.
    keys: ``realtime.keys.ServerKeys``: only authorised clients subscribe (CurveZMQ);
    without keys only a loopback ``address`` is allowed (else AuthError).
    ahead_ms: 0 (the default) publishes each note at its time; more publishes it up to
    that long before, with its ``t_ns``, so that a client can schedule it exactly (the
    model of OSC bundles and SuperCollider's server latency): jitter is then the
    client's scheduling, not the network's.
    Taps (``add_tap``) get every frame as it is published, with its fields: the OSC
    endpoint relays the stream to its subscribers that way.
    Voices: a note's event names the voice of its session's channel (``voices``, set by
    the server in order with the notes); a channel with no voice known has no field.
    Sync events (``protocol.SYNC_TYPES``: beat, bar, phrase) are opt-in: the socket is an
    XPUB that handles subscriptions itself (``Subscriptions``), so a subscriber to
    everything gets every type but those, and one that names a sync type gets it.
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
        self._names = session_names(sessions)
        self._voices = {}  # replaced whole, so that _send reads it without a lock
        self._sounding = Sounding()
        self._lock = threading.Lock()  # send() and publish() come from different threads
        self._seq = 0
        self._sync_seq = 0  # the sync events' own count (``seq`` counts the others)
        self._next_take = 0  # when the subscriptions are looked at next (monotonic ns)
        self._beat = 0.0
        self._taps = ()  # replaced whole, so that _emit reads it without a lock
        context = context or zmq.Context.instance()
        self._guard = guard_for(context, keys)  # before any subscriber connects
        self._socket = context.socket(zmq.XPUB)
        self._socket.setsockopt(zmq.XPUB_MANUAL, 1)
        self._subscriptions = Subscriptions(self._socket)
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
        self._names = session_names(sessions)

    @property
    def voices(self):
        """{slot: {channel: voice name}} naming each note's voice; set it whole."""
        return {slot: dict(channels) for slot, channels in self._voices.items()}

    @voices.setter
    def voices(self, voices):
        self._voices = voice_map(voices)

    def _emit(self, kind, session, t_ns, beat, **fields):
        # the caller holds self._lock: a zmq socket is not thread-safe
        name = session if isinstance(session, str) else self._names.get(session, str(session))
        sync = kind in SYNC_TYPES  # opt-in: counted apart, so that "" sees no gaps
        seq = self._sync_seq if sync else self._seq
        frame = encode_event(kind, name, seq, t_ns, beat, **fields)
        now = time.monotonic_ns()
        if now >= self._next_take:  # who subscribed since gets this frame; looked at
            self._subscriptions.take()  # once a millisecond (a look costs ~2 us a frame)
            self._next_take = now + TAKE_EVERY_NS
        self._socket.send(frame)
        for tap in self._taps:
            tap(frame, kind, name, seq, t_ns, beat, fields)
        if sync:
            self._sync_seq += 1
        else:
            self._seq += 1

    def add_tap(self, tap):
        """Call ``tap(frame, type, session name, seq, t_ns, beat, fields)`` with every frame
        published from now on (its bytes and what they were made from, so that a tap need
        not parse them), on the publishing thread and under this port's lock: it must be
        quick and not raise."""
        with self._lock:
            self._taps = self._taps + (tap,)

    def remove_tap(self, tap):
        with self._lock:
            self._taps = tuple(t for t in self._taps if t is not tap)

    def _send(self, status, data1, data2, t_ns, beat, session):
        message = midi_bytes(status, data1, data2)
        note = note_of(message)
        if note is None:
            return
        with self._lock:
            # a note-off is the note's own session's, even when another session's retrigger
            # ended it
            owner = self._sounding.update(message, beat, session)
            self._beat = beat
            if owner is not None:
                session = owner
            channel = message[0] & 0x0F
            channels = self._voices.get(session)  # inline: this runs once per note
            voice = channels.get(channel) if channels else None
            if voice is None:
                self._emit("note_" + note, session, t_ns, beat, channel=channel,
                           pitch=message[1], velocity=message[2] if note == "on" else 0)
            else:
                self._emit("note_" + note, session, t_ns, beat, channel=channel,
                           pitch=message[1], velocity=message[2] if note == "on" else 0,
                           voice=voice)

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
                    voice = self._voices.get(session, {}).get(channel)
                    self._emit("note_off", session, now, self._beat, channel=channel,
                               pitch=pitch, **({} if voice is None else {"voice": voice}))
            finally:
                self._socket.close()
                if self._guard is not None:
                    self._guard.close()


_SYNC_PREFIXES = tuple(type_prefix(t) for t in SYNC_TYPES)
_OTHER_PREFIXES = tuple(type_prefix(t) for t in EVENT_TYPES if t not in SYNC_TYPES)


class Subscriptions:
    """The subscriptions of an XPUB socket in manual mode (``XPUB_MANUAL``), applied so
    that sync events are opt-in.

    A subscriber's topic that would match a sync frame without naming its type ("",
    ``{"v":1``, ``{"v":1,"type":"b``) stands for the other types it matches: the pipe is
    subscribed to each of their prefixes instead.  Any other topic (one naming a sync
    type, a note type, a session) is applied as it is.  Unsubscribing mirrors it.  libzmq
    counts each pipe's subscriptions, so overlapping ones come and go correctly.
    """

    def __init__(self, socket):
        self._socket = socket

    @staticmethod
    def topics(topic):
        """What a subscription to ``topic`` (bytes) subscribes the pipe to."""
        if any(p.startswith(topic) and p != topic for p in _SYNC_PREFIXES):
            return tuple(p for p in _OTHER_PREFIXES if p.startswith(topic))
        return (topic,)

    def take(self):
        """Apply the subscription messages that arrived since the last call (each is
        applied to the pipe it came from, as libzmq asks: right after it is read)."""
        socket = self._socket
        while socket.get(zmq.EVENTS) & zmq.POLLIN:
            try:
                msg = socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if not msg or msg[0] not in (0, 1):
                continue
            option = zmq.SUBSCRIBE if msg[0] == 1 else zmq.UNSUBSCRIBE
            for topic in self.topics(msg[1:]):
                socket.setsockopt(option, topic)
