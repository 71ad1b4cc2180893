"""Python client for an Ostinato server: one file, needs only pyzmq.

``Client`` sends control messages over a DEALER socket and waits (up to ``timeout``) for
the reply with the same id; ``send_nowait``/``poll_replies`` never block, for game loops.
``EventListener`` subscribes to the server's event stream.  Copy this file into a game or
tool as is; inside Ostinato its errors are engine.errors' classes.

A server started with CurveZMQ keys (``ostinato keys``; needed off loopback) answers only
clients that pass ``server_key`` (its public key: the ``server.key`` file or the Z85 string)
and ``client_key`` (this client's ``NAME.key_secret`` file, or a (public, secret) Z85 pair).
A client without them, or with keys the server does not know, hears nothing: ZeroMQ
drops the handshake, so requests time out with ServerUnavailable.
"""
import itertools
import json
import math
import numbers
import os
import time

import zmq
import zmq.auth


class ServerError(RuntimeError):
    """The server answered with an error reply: its code, the field and what is allowed."""

    def __init__(self, message, code=None, field=None, allowed=None):
        super().__init__(message)
        self.code, self.field, self.allowed = code, field, allowed


class ServerUnavailable(ConnectionError):
    """The server did not answer in time."""


CONTROL_ADDRESS = "tcp://127.0.0.1:5555"
EVENT_ADDRESS = "tcp://127.0.0.1:5556"


class _Endpoint:
    """A ZeroMQ socket and, unless one was given, the context it lives in."""

    _socket = None
    _curve = None  # (server public, client public, client secret), Z85 bytes

    def _secure(self, sock):
        if self._curve is not None:
            sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = self._curve
        return sock

    def close(self):
        if self._socket is not None:
            self._socket.close(0)
            self._socket = None
        if self._own_context and not self._context.closed:
            self._context.term()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class Client(_Endpoint):
    """A connection to an Ostinato control socket. Use as a context manager.

    timeout: seconds to wait for each reply before raising ServerUnavailable.
    session: default session id for messages that do not name one (None: the server's "main").
    server_key, client_key: CurveZMQ keys, for a server started with them (see the top).
    """

    def __init__(self, address=CONTROL_ADDRESS, timeout=1.0, session=None, context=None,
                 server_key=None, client_key=None):
        self.address, self.timeout, self.session = address, timeout, session
        self._curve = curve_keys(server_key, client_key)
        self._own_context = context is None
        self._context = context or zmq.Context()
        self._ids = itertools.count(1)
        self._socket = None
        self._pending = []  # replies received while waiting for another one
        self.clock_offset_ns = 0  # the server's clock minus this one's, by sync_clock()
        self._connect()

    def _connect(self):
        sock = self._secure(self._context.socket(zmq.DEALER))
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, 1000)
        sock.connect(self.address)
        self._socket = sock


    # ------------------------------------------------------------ messages

    def hello(self):
        """Handshake: protocol version, server, types, states, stingers, capabilities."""
        return self.request("hello")

    def mood(self, valence=None, arousal=None, intensity=None, transition="bar", session=None,
             tonality=None, critic=None, voices=None, repetition=None, style=None):
        """Move the mood; axes left None keep their current value.  transition (here and
        on every call that has one): "now", "beat", "bar", "phrase" (the next phrase of the
        session's form), "bars:N" (N 1..64: the next line of an N-bar grid) or "cue:NAME"
        (a cue placed with ``cue``); the reply gives the ``beat`` and ``t_ns`` it takes
        effect at.  tonality: 0 (free) ..
        1 (strict, scale notes only); critic: drafts of each beat the discriminator judges
        (0 off, up to 16; the server needs `serve --critic`); None keeps the session's.
        voices: the ensemble's voices (a server with an ensemble model), a dict {voice name:
        True (forced on) | False (off) | "auto" (layering by intensity and arousal) |
        {"play", "program", "channel", "octave"}}, e.g. ``{"drums": False, "harmony":
        {"program": 89}}``; voices not named keep theirs; they change at the next bar line.
        repetition: how much the music repeats itself along the session's form, 0
        (through-composed) .. 1 (a loop), from the next bar line; None keeps the session's.
        style: the texture asked of the model, as the collection it learned it from plays
        ("game", "baroque", "classical" or "renaissance"), from the transition; it needs a
        model told styles (``hello()["capabilities"]["styles"]``: another refuses it,
        out_of_range on field style); None keeps the session's.  The reply carries the
        ``style`` in effect (None: none, the mix of them all)."""
        return self.request("mood", session, valence=valence, arousal=arousal, intensity=intensity,
                            transition=transition, tonality=tonality, critic=critic, voices=voices,
                            repetition=repetition, style=style)

    def state(self, name, transition=None, session=None, tonality=None, critic=None, voices=None,
              repetition=None, style=None):
        """Switch to a preset; tonality (0..1), critic (0..16), repetition (0..1) and style
        (as for ``mood``; None: the preset's, else none) override the preset's; voices (as
        for ``mood``) go on top of the preset's.  transition None: states.toml's rule for
        this pair of presets (``[[transitions]]``), else "bar"; the reply names the ``rule``,
        the ``transition`` used and its ``pickup_beat``."""
        return self.request("state", session, name=name, transition=transition, tonality=tonality,
                            critic=critic, voices=voices, repetition=repetition, style=style)

    def tempo(self, bpm, ramp_beats=0, transition="beat", session=None):
        return self.request("tempo", session, bpm=bpm, ramp_beats=ramp_beats, transition=transition)

    def key(self, key, mode=None, transition="bar", session=None, tonality=None, critic=None):
        return self.request("key", session, key=key, mode=mode, transition=transition,
                            tonality=tonality, critic=critic)

    def stinger(self, name=None, transition="beat", session=None, notes=None,
                min_interval_beats=None, queue=None):
        """A one-shot motif over the current harmony, on the grid: ``name``, one of
        states.toml's stingers, or ``notes`` of your own (``[[pitch, start_beat,
        duration_beats], ...]`` in any key, checked as a theme's), with their
        ``min_interval_beats`` (0..64) and ``queue`` ("drop" or "queue": what happens to
        one within the interval).  The reply says whether it ``played`` and at which
        ``beat`` and ``t_ns`` (else the ``reason`` and ``next_beat``)."""
        return self.request("stinger", session, name=name, notes=_notes(notes),
                            transition=transition, min_interval_beats=min_interval_beats,
                            queue=queue)

    def cue(self, name, at="bar", beat=None, session=None):
        """Place cue ``name`` at the next grid point ``at`` ("beat", "bar", "phrase",
        "bars:N") or at ``beat`` (a beat of the session, ahead of it).  The stream
        announces it (a ``cue`` event, subscribed to as any type) when it plays, and a
        transition ``"cue:NAME"`` lands there.  The reply gives its ``beat`` and ``t_ns``."""
        return self.request("cue", session, name=name, at=at, beat=beat)

    def position(self, session=None):
        """Where the music is now: ``beat``, ``bar``, ``beat_in_bar``, ``phrase``,
        ``bar_in_phrase``, ``phrase_bars``, ``bpm``, ``key``, ``mode``, ``state``,
        ``transport``, the server's ``t_ns`` now, ``next_downbeat`` and
        ``next_phrase`` (beats) with their ``..._t_ns``, and the ``cues`` waiting
        ({name: beat}).  ``EventListener.due_in(reply["next_downbeat_t_ns"])`` is the
        seconds until the next bar line: start a cutscene there."""
        return self.request("position", session)

    def theme(self, notes=None, name=None, variation=None, transition="bar", blend_beats=None,
              session=None):
        """Compose from a theme (a leitmotif), given once: ``notes`` as ``[[pitch,
        start_beat, duration_beats], ...]`` (MIDI pitches, in any key; tuples and numpy
        arrays are fine) or ``name``, a theme of states.toml's ``[themes]``.  variation: 0
        keeps close to the theme .. 1 composes freely; blend_beats: beats over which the
        music moves to it (0, the default: its phrase starts at the transition); None
        leaves either out (the server's defaults, 0.3 and 0).  The reply's ``theme`` says
        what was understood (``key``, ``bars``, ``notes``, ``source``).  Any server takes
        it: the melody states it (a theme model's also steers the music towards it).
        ``free_theme`` goes back to free composition."""
        return self.request("theme", session, notes=_notes(notes), name=name, variation=variation,
                            transition=transition, blend_beats=blend_beats)

    def free_theme(self, transition="bar", blend_beats=None, session=None):
        """Back to free composition (the theme's action "free"; fine on any server): at the
        transition, or moving there over ``blend_beats`` beats."""
        return self.request("theme", session, action="free", transition=transition,
                            blend_beats=blend_beats)

    def start(self, session=None):
        return self.request("start", session)

    def stop(self, session=None):
        return self.request("stop", session)

    def pause(self, session=None):
        return self.request("pause", session)

    def open_session(self, id, state=None, voices=None, repetition=None):  # noqa: A002 - the protocol's word
        """Open session ``id`` in preset ``state`` (None: the server's), its ``voices`` (as
        for ``mood``) on top of the preset's, its ``repetition`` (0..1) over the preset's
        (None: the preset's, else the server's).  The reply carries the session's
        ``repetition`` and ``form``."""
        return self.request("session", id, action="open", state=state, voices=voices,
                            repetition=repetition)

    def close_session(self, id):  # noqa: A002
        return self.request("session", id, action="close")

    def ping(self):
        """Round trip; returns the reply with ``rtt_ns`` (client-measured) added."""
        t0 = time.monotonic_ns()
        reply = self.request("ping")
        reply["rtt_ns"] = time.monotonic_ns() - t0
        return reply

    def sync_clock(self, pings=8):
        """The server's clock minus this machine's ``time.monotonic_ns()``, in ns, from
        ``pings`` pings: the pong's ``t_ns`` against the midpoint of the shortest round
        trip.  About 0 on one Linux machine (both are CLOCK_MONOTONIC); on another machine
        pass it to ``EventListener.due_in``.  Also kept as ``clock_offset_ns``."""
        best = None
        for _ in range(pings):
            t0 = time.monotonic_ns()
            server = self.request("ping")["t_ns"]
            t1 = time.monotonic_ns()
            if best is None or t1 - t0 < best[0]:
                best = (t1 - t0, server - (t0 + t1) // 2)
        self.clock_offset_ns = best[1]
        return self.clock_offset_ns

    # ------------------------------------------------------------ transport

    def request(self, msg_type, session=None, **fields):
        """Send one message and wait for its reply; raises ServerError or ServerUnavailable."""
        msg_id = self.send_nowait(msg_type, session, **fields)
        deadline = time.monotonic() + self.timeout
        while True:
            for i, reply in enumerate(self._pending):
                if reply.get("id") == msg_id:
                    del self._pending[i]
                    return _checked(reply)
            left = deadline - time.monotonic()
            if left <= 0:
                # A late reply would land in the next request's place: start a fresh socket.
                self._socket.close(0)
                self._connect()
                self._pending.clear()
                raise ServerUnavailable(f"no reply from Ostinato at {self.address} within "
                                        f"{self.timeout:g} s (is `ostinato serve` running?)")
            self._socket.poll(max(1, math.ceil(left * 1000)))
            self._receive()

    def send_nowait(self, msg_type, session=None, **fields):
        """Queue a message without waiting; returns its id (replies come from poll_replies)."""
        msg_id = next(self._ids)
        msg = {"type": msg_type, "id": msg_id}
        session = session if session is not None else self.session
        if session is not None:
            msg["session"] = session
        msg.update((k, v) for k, v in fields.items() if v is not None)
        try:
            self._socket.send(json.dumps(msg, separators=(",", ":")).encode(), zmq.DONTWAIT)
        except zmq.Again:
            raise ServerUnavailable(f"cannot send to Ostinato at {self.address}: not connected "
                                    "or queue full") from None
        return msg_id

    def poll_replies(self):
        """Every reply received so far, as dicts (errors included, not raised); never blocks."""
        self._receive()
        replies, self._pending = self._pending, []
        return replies

    def _receive(self):
        while True:
            try:
                frames = self._socket.recv_multipart(zmq.DONTWAIT)
            except zmq.Again:
                return
            try:
                self._pending.append(json.loads(frames[-1]))
            except ValueError:
                pass  # not ours: ignore


def curve_keys(server_key, client_key):
    """(server public, client public, client secret) as Z85 bytes, or None for no keys.

    server_key: the server's public key file (``server.key``) or its 40-character Z85 string.
    client_key: this client's ``.key_secret`` file, or a (public, secret) pair of Z85 strings.
    """
    if server_key is None and client_key is None:
        return None
    if server_key is None or client_key is None:
        raise ValueError("CurveZMQ needs both server_key (the server's public key) and "
                         "client_key (this client's key pair); got only one")
    server_public = _z85(server_key) if _is_key(server_key) else \
        zmq.auth.load_certificate(server_key)[0]
    if isinstance(client_key, (tuple, list)):
        public, secret = (_z85(k) for k in client_key)
    else:
        public, secret = zmq.auth.load_certificate(client_key)
        if secret is None:
            raise ValueError(f"client_key {client_key} holds no secret key: give the client's "
                             ".key_secret file, not its public .key")
    for name, key in (("server_key", server_public), ("client public key", public),
                      ("client secret key", secret)):
        if key is None or len(key) != 40:
            raise ValueError(f"{name} is neither a 40-character Z85 CurveZMQ key nor a key file")
    return server_public, public, secret


def _is_key(value):
    """A key itself (bytes, or a string that names no file) rather than a key file."""
    return isinstance(value, (bytes, bytearray)) or (isinstance(value, str) and not os.path.isfile(value))


def _z85(key):
    return key.encode() if isinstance(key, str) else bytes(key)


def _notes(notes):
    """A theme's notes as JSON lists of plain numbers: numpy scalars and tuples become
    floats and lists, a whole pitch an integer (62.0 -> 62).  Anything else is sent as it
    is, for the server to refuse naming the note; None (no notes) and a JSON string (which
    the server reads) pass through."""
    if notes is None or isinstance(notes, str):
        return notes
    rows = []
    for note in notes:
        if isinstance(note, (str, bytes, dict)) or not hasattr(note, "__iter__"):
            rows.append(note)
            continue
        row = [_plain(x) for x in note]
        if row and isinstance(row[0], float) and row[0].is_integer():
            row[0] = int(row[0])
        rows.append(row)
    return rows


def _plain(x):
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        return x
    return int(x) if isinstance(x, numbers.Integral) else float(x)


def _checked(reply):
    if not reply.get("ok"):
        raise ServerError(reply.get("message", "error reply"), code=reply.get("code"),
                          field=reply.get("field"), allowed=reply.get("allowed"))
    return reply


SYNC_TYPES = ("beat", "bar", "phrase")  # sent only to a subscriber that names them


class EventListener(_Endpoint):
    """Subscribe to the server's event stream (notes, mood, tempo, transport markers, cues,
    stingers, and the sync events ``SYNC_TYPES``).  A note event's ``voice`` names the voice
    that plays it ("melody", "bass", "harmony", "drums" or "stinger"; absent where the
    server knows none for its channel).  A sync event (``beat`` at every beat, ``bar`` at
    every bar line, ``phrase`` where a phrase of the form begins) has ``bar``,
    ``beat_in_bar``, ``phrase``, ``bar_in_phrase`` (0-based) and ``bpm``; its ``t_ns`` is
    the one a note on that beat has, so it is scheduled as notes are (``due_in``).

    types: event types to receive (None: every type but the sync ones, which come only when
    named, e.g. ``types=["beat", "cue"]``); iterate to get event dicts until ``timeout``
    seconds pass without one (None: wait forever).  Use as a context manager.
    server_key, client_key: CurveZMQ keys, as for Client.
    """

    def __init__(self, address=EVENT_ADDRESS, types=None, timeout=None, context=None,
                 server_key=None, client_key=None):
        self.address, self.timeout = address, timeout
        self._curve = curve_keys(server_key, client_key)
        self._own_context = context is None
        self._context = context or zmq.Context()
        self._socket = self._secure(self._context.socket(zmq.SUB))
        self._socket.setsockopt(zmq.LINGER, 0)
        for kind in types or [""]:
            # Events start {"v":1,"type":"...", so a prefix subscription filters by type.
            prefix = f'{{"v":1,"type":"{kind}"' if kind else ""
            self._socket.setsockopt(zmq.SUBSCRIBE, prefix.encode())
        self._socket.connect(address)

    @staticmethod
    def due_in(event, clock_offset_ns=0):
        """Seconds from now until ``event`` is due (negative: past): its ``t_ns`` is the
        server's ``CLOCK_MONOTONIC``, which is this machine's ``time.monotonic_ns()``
        when client and server run on one machine; on another, pass the offset
        ``Client.sync_clock()`` measured.  With ``serve --events-ahead MS`` notes and sync
        events arrive up to MS ms early: schedule each ``due_in`` seconds from now (an
        audio engine's scheduled play, or a sleep to the deadline) and the network's jitter
        drops out.  ``event`` may also be a time itself (an int, e.g. a ``position``
        reply's ``next_downbeat_t_ns``)."""
        t_ns = event if isinstance(event, numbers.Integral) else event["t_ns"]
        return (int(t_ns) - (time.monotonic_ns() + clock_offset_ns)) / 1e9

    def recv(self, timeout=None):
        """The next event, or None if none came within ``timeout`` seconds (None: forever)."""
        if not self._socket.poll(None if timeout is None else max(0, int(timeout * 1000))):
            return None
        return json.loads(self._socket.recv())

    def __iter__(self):
        while True:
            event = self.recv(self.timeout)
            if event is None:
                return
            yield event

