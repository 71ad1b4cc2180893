"""The OSC endpoint, for Godot, Max, Pd, TouchDesigner and SuperCollider.

``/ostinato/<type> args...`` maps positional args onto the message's fields in the order of
the protocol table (``/ostinato/mood 0.5 0.8 0.3 now``); ``/ostinato/<type>/<field> value``
sets one field (``/ostinato/mood/arousal 0.8``); trailing ``session <name>`` and ``id <id>``
pairs fill the envelope.  Values OSC cannot carry (a theme's ``notes``, ``voices``) come as
JSON text (``/ostinato/mood/voices '{"drums": false}'``), which validation reads.  The dict goes through ``protocol.validate`` and the same handler
as the ZeroMQ transport.  Replies go back to the sender, or to the port it named with
``/ostinato/hello <reply_port>`` (for Max/Pd, which send and listen on different sockets).

Nothing a sender does stops the endpoint: every OSC message, however malformed, is answered
(``/ostinato/error`` when it is refused) and logged on ``ostinato.osc``; a datagram that is not
OSC at all is logged and dropped.  Bundles are taken apart and their messages handled at
once, in order (timetags are not waited for: a far-future one must not stall the endpoint).

``/ostinato/subscribe [type ...]`` relays the event stream to the sender (or its reply port),
for clients without ZeroMQ (Godot): each event comes as a bundle timetagged with the
event's time, holding ``/ostinato/event/<type>`` (``_event_packet``), as early as the
stream publishes it (``serve --events-ahead``); ``/ostinato/unsubscribe`` ends it.
"""
import json
import logging
import struct
import threading
import time

from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.osc_packet import OscPacket
from pythonosc.osc_server import BlockingOSCUDPServer

from engine.errors import InvalidMessage, PortError
from realtime import protocol
from realtime.control import respond
from realtime.keys import require_local_osc

PREFIX = "/ostinato"
KEYWORDS = ("session", "id")
MAX_TEXT = 2048  # longest string argument of a reply: it must fit a UDP datagram whatever was sent
MAX_SUBSCRIBERS = 16  # a 17th subscriber replaces the oldest (UDP cannot tell one that left)
NTP_EPOCH_S = 2208988800  # 1900-01-01 to 1970-01-01: OSC timetags count from 1900
log = logging.getLogger("ostinato.osc")


def to_message(address, args):
    """Turn an OSC address and its arguments into a protocol dict (not yet validated)."""
    parts = address.strip("/").split("/")
    if len(parts) < 2 or parts[0] != PREFIX[1:] or parts[1] not in protocol.MESSAGE_TYPES \
            or len(parts) > 3:
        raise protocol.reject("unknown_type", f"unknown OSC address {address!r}; allowed: "
                              f"{PREFIX}/<type>[/<field>] with type one of "
                              f"{', '.join(protocol.MESSAGE_TYPES)}", "type", list(protocol.MESSAGE_TYPES))
    spec = protocol.message_spec(parts[1])
    msg = {"type": spec.name}
    args = [_number(a) for a in args]
    if len(parts) == 3:
        names = [f.name for f in spec.fields] + list(KEYWORDS)
        if parts[2] not in names:
            raise protocol.reject("unknown_field", f"unknown field {parts[2]!r} in '{spec.name}'; "
                                  f"allowed: {', '.join(names)}", parts[2], names)
        if not args:
            raise protocol.reject("missing_field", f"{address} needs a value", parts[2], "one value")
        msg[parts[2]] = args.pop(0)
    else:
        for name in spec.positional():
            if not args or _is_keyword(args):
                break
            value = args.pop(0)
            if value is not None:  # OSC nil: keep the current value
                msg[name] = value
    while args:
        if not _is_keyword(args):
            raise protocol.reject("unknown_field", f"too many arguments for {address}: {args!r}; "
                                  f"allowed: {' '.join(spec.positional())} then session/id pairs",
                                  None, list(spec.positional()) + list(KEYWORDS))
        key = args.pop(0)
        msg[key] = args.pop(0)
    return msg


def _number(value):
    # OSC floats are 32-bit: 0.8f arrives as 0.800000011920929; 7 digits gives back 0.8.
    return float(f"{value:.7g}") if isinstance(value, float) else value


def _is_keyword(args):
    return len(args) >= 2 and args[0] in KEYWORDS


class OscServer:
    """Serve the OSC mapping on UDP ``host:port`` until closed (port 0: any free port).

    handler: the same ``handler(msg) -> dict`` as ControlServer's; it is called on this
    server's thread (so possibly alongside ControlServer's thread: make it thread-safe).
    allow_remote: OSC has no authentication, so a ``host`` that is not loopback is an
    AuthError unless this is True (then it is logged as a warning).
    events: the server's event stream (``ZmqPubPort``), which ``/ostinato/subscribe`` relays;
    None: subscribing is refused.
    """

    def __init__(self, handler, host="127.0.0.1", port=protocol.OSC_PORT, *, presets=None,
                 stingers=None, allow_remote=False, events=None):
        require_local_osc(host, port, allow_remote)
        self.presets, self.stingers = protocol.state_names(presets, stingers)
        self.handler = handler
        self.host, self._port = host, port
        self._server = self._thread = None
        self._reply_ports = {}  # sender (ip, port) -> port it listens on
        self.events = events
        # (ip, port) -> type prefixes (empty: all); replaced whole, read on the publishing thread
        self._subscribers = {}

    @property
    def port(self):
        return self._server.server_address[1] if self._server else self._port

    def start(self):
        try:
            self._server = _Endpoint((self.host, self._port), self._on_datagram)
        except OSError as exc:
            raise PortError(f"cannot bind OSC port {self.host}:{self._port}: {exc.strerror}") from None
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="ostinato-osc", daemon=True)
        self._thread.start()
        if self.events is not None:
            self.events.add_tap(self._relay)
        return self

    def close(self):
        if self.events is not None:
            self.events.remove_tap(self._relay)
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        if self._server is not None:
            self._server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()
        return False

    def _on_datagram(self, data, sender):
        """One UDP datagram: not OSC is logged and dropped; OSC that does not parse is
        answered ``invalid_json``; each message of it is answered on its own."""
        if not data.startswith((b"/", b"#bundle")):
            log.warning("dropped a %d-byte datagram from %s:%s: not OSC", len(data), *sender[:2])
            return
        try:
            messages = [timed.message for timed in OscPacket(data).messages]
        except Exception as exc:  # noqa: BLE001 - ParseError; RecursionError for bundles nested deep
            log.info("malformed OSC from %s:%s: %s: %s", *sender[:2], type(exc).__name__, exc)
            self._send(sender, json.loads(protocol.error_reply(protocol.reject(
                "invalid_json", f"not a valid OSC packet: {type(exc).__name__}: {exc}", None,
                "an OSC 1.0 message or bundle"))))
            return
        for message in messages:
            self._on_message(sender, message.address, *message.params)

    def _on_message(self, sender, address, *args):
        msg_id = None
        try:
            args = list(args)
            if address.rstrip("/") == PREFIX + "/hello" and args and isinstance(args[0], int) \
                    and not isinstance(args[0], bool):
                port = args.pop(0)
                if not 0 <= port <= 65535:
                    raise protocol.reject("out_of_range", f"reply_port is {port}; allowed 0..65535 "
                                          "(0: reply to the sending port)", "reply_port", "0..65535")
                self._reply_ports[sender] = port or sender[1]
            if address.rstrip("/") in (PREFIX + "/subscribe", PREFIX + "/unsubscribe"):
                reply, msg_id = self._subscribe(sender, address.rstrip("/")[len(PREFIX) + 1:], args)
                self._send(sender, reply)
                return  # a reply of its own: not a message of the protocol table
            msg = protocol.validate(to_message(address, args), self.presets, self.stingers)
            msg_id = msg["id"]
            msg["client"] = f"osc:{sender[0]}:{sender[1]}"
            reply = json.loads(respond(self.handler, msg, self.presets, self.stingers, logger=log))
        except InvalidMessage as exc:  # the id is echoed when validate could read it
            reply = json.loads(protocol.error_reply(exc))
        except BaseException as exc:  # noqa: BLE001 - a bug, even SystemExit: answer, serve on
            log.error("OSC %s (id %r) from %s:%s failed: server_error", address, msg_id, *sender[:2],
                      exc_info=True)
            reply = json.loads(protocol.error_reply(exc, msg_id))
        if not reply["ok"]:
            log.info("refused OSC %s from %s:%s: %s on %r", address, *sender[:2], reply["code"],
                     reply["field"])
        self._send(sender, reply)

    def _subscribe(self, sender, kind, args):
        """``/ostinato/subscribe [type ...]`` or ``/ostinato/unsubscribe``, then the usual
        ``session``/``id`` pairs:
        the reply and the request id.  Refused (InvalidMessage) when a type is unknown or
        this endpoint has no event stream."""
        msg_id = None
        while len(args) >= 2 and args[-2] in KEYWORDS:
            key, value = args[-2], args.pop()
            args.pop()
            if key == "id":
                msg_id = value if protocol.check_id(value) else None  # as validate reads an id
            # session: accepted and ignored; every session's events are relayed, each named
        try:
            return self._subscription(sender, kind, args, msg_id), msg_id
        except InvalidMessage as exc:
            exc.msg_id = msg_id
            raise

    def _subscription(self, sender, kind, args, msg_id):
        target = (sender[0], self._reply_ports.get(sender, sender[1]))
        subscribers = dict(self._subscribers)
        if kind == "unsubscribe":
            if args:
                raise protocol.reject("unknown_field", f"/ostinato/unsubscribe takes no arguments "
                                      f"but id; got {args!r}", None, ["id"])
            subscribers.pop(target, None)
            self._subscribers = subscribers
            return json.loads(protocol.ok_reply({"type": kind, "id": msg_id}, subscribed=False))
        if self.events is None:
            raise protocol.reject("unknown_type", "this server publishes no event stream "
                                  "(started with --events none): nothing to subscribe to", "type",
                                  list(protocol.MESSAGE_TYPES))
        allowed = list(protocol.EVENT_TYPES)
        for kind_of_event in args:
            if not isinstance(kind_of_event, str) or kind_of_event not in protocol.EVENT_TYPES:
                raise protocol.reject("bad_choice", f"event type {protocol.brief(kind_of_event)} "
                                      f"is unknown; allowed: {', '.join(allowed)}", "types", allowed)
        subscribers.pop(target, None)  # a repeated subscription moves to the end, types replaced
        if len(subscribers) >= MAX_SUBSCRIBERS:
            oldest = next(iter(subscribers))
            log.warning("OSC event subscriber %s:%s replaced by %s:%s (at most %d)",
                        *oldest, *target, MAX_SUBSCRIBERS)
            del subscribers[oldest]
        # no types: every type but the sync ones, which are opt-in (as on the ZeroMQ stream)
        types = list(args) or [t for t in allowed if t not in protocol.SYNC_TYPES]
        subscribers[target] = tuple(protocol.type_prefix(t) for t in types)
        self._subscribers = subscribers
        log.info("OSC %s:%s subscribed to %s", *target, ", ".join(args) or "every event but sync")
        return json.loads(protocol.ok_reply(
            {"type": kind, "id": msg_id}, subscribed=True, types=types,
            events_ahead_ms=self.events.lead_ns / 1e6))

    def _relay(self, frame, kind, session, seq, t_ns, beat, fields):
        """The event stream's tap: the event to every subscriber whose types it is, as OSC.
        On the publishing thread: a datagram each, nothing waits."""
        subscribers = self._subscribers
        if not subscribers or self._server is None:
            return
        packet = None
        try:
            for target, prefixes in subscribers.items():
                if prefixes and not frame.startswith(prefixes):
                    continue
                if packet is None:
                    packet = _event_packet(frame, kind, session, seq, t_ns, beat, fields)
                try:
                    self._server.socket.sendto(packet, target)
                except OSError:
                    pass  # nobody listens there now: UDP is best effort
        except Exception:  # noqa: BLE001 - a bug here must not cost the event stream itself
            log.error("OSC event relay failed on %r", frame[:200], exc_info=True)

    def _send(self, sender, reply):
        builder = OscMessageBuilder(PREFIX + ("/ack" if reply["ok"] else "/error"))
        if reply["ok"]:
            args = [reply["for"], _osc_id(reply["id"]), json.dumps(reply, separators=(",", ":"))]
        else:
            allowed = reply["allowed"]
            allowed = ", ".join(map(str, allowed)) if isinstance(allowed, list) else str(allowed or "")
            args = [reply["code"], _cut(reply["field"] or ""), _cut(allowed), _cut(reply["message"]),
                    _osc_id(reply["id"])]
        for arg in args:
            builder.add_arg(arg)
        target = (sender[0], self._reply_ports.get(sender, sender[1]))
        try:
            self._server.socket.sendto(builder.build().dgram, target)
        except OSError:
            pass  # nobody listens there: UDP replies are best effort


class _Endpoint(BlockingOSCUDPServer):
    """python-osc's UDP server handing every datagram, whole (up to 64 KiB, not socketserver's
    8 KiB), to ``on_datagram(data, sender)``, which parses it so that malformed OSC gets an
    answer.  The dispatcher python-osc requires goes unused."""

    max_packet_size = 65535

    def __init__(self, address, on_datagram):
        super().__init__(address, Dispatcher())
        self.on_datagram = on_datagram

    def verify_request(self, request, client_address):
        return True  # on_datagram tells OSC from the rest, and logs the rest

    def finish_request(self, request, client_address):
        self.on_datagram(request[0], client_address)

    def handle_error(self, request, client_address):
        log.error("OSC datagram from %s failed", client_address, exc_info=True)


def _event_packet(frame, kind, session, seq, t_ns, beat, fields):
    """One event (its JSON ``frame`` and what it was made from) as an OSC bundle timetagged
    with its time (NTP, from the wall clock) holding ``/ostinato/event/<type> session seq
    t_ns beat ...``: notes then carry channel, pitch and velocity (ints) and, when the event
    names one, the voice (a string); other types their whole JSON event as text.  seq is an
    int32, t_ns the server's CLOCK_MONOTONIC nanoseconds as an int64 (``h``), beat a float32."""
    args = [("s", session), ("i", seq & 0x7FFFFFFF), ("h", t_ns), ("f", beat)]
    if kind in ("note_on", "note_off"):
        args += [("i", fields["channel"]), ("i", fields["pitch"]), ("i", fields["velocity"])]
        if fields.get("voice") is not None:
            args.append(("s", fields["voice"]))
    else:
        args.append(("s", frame.decode()))
    body = [_osc_string(f"{PREFIX}/event/{kind}"), _osc_string("," + "".join(t for t, _ in args))]
    for tag, value in args:
        body.append(_osc_string(value) if tag == "s" else struct.pack(_PACK[tag], value))
    message = b"".join(body)
    wall_ns = time.time_ns() + (t_ns - time.monotonic_ns())
    seconds, rest = divmod(wall_ns, 1_000_000_000)
    timetag = struct.pack(">II", (seconds + NTP_EPOCH_S) & 0xFFFFFFFF, (rest << 32) // 1_000_000_000)
    return b"#bundle\0" + timetag + struct.pack(">i", len(message)) + message


_PACK = {"i": ">i", "h": ">q", "f": ">f"}  # OSC's int32, int64 and float32, big-endian


def _osc_string(text):
    data = text.encode()
    return data + b"\0" * (4 - len(data) % 4)  # NUL-terminated, padded to 4 bytes


def _cut(text):
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT - 3] + "..."


def _osc_id(value):
    if isinstance(value, int) and -2**31 <= value < 2**31:
        return value
    return "" if value is None else str(value)
