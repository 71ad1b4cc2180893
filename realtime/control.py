"""The control transport: a ZeroMQ ROUTER that validates requests and answers each once.

Games connect REQ or DEALER sockets.  Every request is parsed by ``protocol.parse``; only
validated dicts reach ``handler(msg) -> dict`` (extra reply fields).  The handler runs on
this module's thread; InvalidMessage from it becomes an error reply with its code, any other
exception a ``server_error`` reply (logged on ``ostinato.control`` with the request's id),
and the server keeps serving.  Requests up to ``max_bytes`` are read and answered (over
``protocol.MAX_MESSAGE_BYTES``: ``too_large``); larger ones make libzmq drop the connection.
Should anything escape the serving loop all the same, the thread logs it, answers the
request it was on and serves again: a supervisor loop in the same thread.
"""
import logging
import threading
import time
import uuid

import zmq
from zmq.utils.monitor import parse_monitor_message

from engine.errors import InvalidMessage, PortError
from realtime.keys import guard_for, require_keys
from realtime import protocol

log = logging.getLogger("ostinato.control")


class ControlServer:
    """Serve the control protocol on ``address`` until closed. Use as a context manager.

    handler: ``handler(msg) -> dict | None``, called on the server thread.
    presets, stingers: names ``state``/``stinger`` accept (default: those of the states
    file, see ``protocol.load_states``).
    on_client_lost: optional ``callback(client)``, called on the server thread when a
    connection that sent requests goes away; ``client`` is the hex routing id that the
    handler also sees as ``msg["client"]``.
    max_bytes: the hard cap on a request frame (the ROUTER's MAXMSGSIZE): requests up to it
    get an answer, larger ones lose their connection.
    keys: ``realtime.keys.ServerKeys``: only the clients whose keys it authorises get in
    (CurveZMQ).  Without keys only a loopback ``address`` is allowed (else AuthError).
    """

    def __init__(self, handler, address=protocol.CONTROL_ADDRESS, *, presets=None, stingers=None,
                 on_client_lost=None, hwm=1000, context=None, keys=None,
                 max_bytes=protocol.MAX_REQUEST_BYTES):
        require_keys(address, keys, "control")
        self.keys = keys
        self.presets, self.stingers = protocol.state_names(presets, stingers)
        self.handler = handler
        self.address = address
        self.on_client_lost = on_client_lost
        self.hwm = hwm
        self._own_context = context is None
        self._context = context or zmq.Context()
        self._thread = None
        self._router = self._wake = self._monitor = None
        self._bound = None
        if not (isinstance(max_bytes, int) and protocol.MAX_MESSAGE_BYTES <= max_bytes < 2**63):
            raise ValueError(f"max_bytes is {max_bytes!r}; allowed: an integer "
                             f">= {protocol.MAX_MESSAGE_BYTES} (MAX_MESSAGE_BYTES)")
        self.max_bytes = max_bytes
        self.restarts = 0  # how often the serving loop died and was started again
        self._fd_clients = {}  # connection fd -> routing ids seen on it (kept over restarts)
        self._current = None  # the envelope of the request being answered
        self._guard = None

    @property
    def thread(self):
        """The serving thread (None until started, and once closed)."""
        return self._thread

    @property
    def bound_address(self):
        """The address actually bound (``tcp://127.0.0.1:*`` resolved to its port)."""
        return self._bound

    def start(self):
        self._guard = guard_for(self._context, self.keys)  # before any client connects
        router = self._context.socket(zmq.ROUTER)
        if self._guard is not None:
            self._guard.secure(router)
        router.setsockopt(zmq.LINGER, 0)
        router.setsockopt(zmq.ROUTER_MANDATORY, 0)  # a vanished client's reply is dropped
        router.setsockopt(zmq.SNDHWM, self.hwm)
        router.setsockopt(zmq.RCVHWM, self.hwm)
        router.setsockopt(zmq.MAXMSGSIZE, self.max_bytes)
        try:
            router.bind(self.address)
        except zmq.ZMQError as exc:
            router.close()
            self._close_guard()
            self._close_context()
            raise PortError(f"cannot bind control socket {self.address}: {exc}") from None
        self._router = router
        self._bound = router.getsockopt(zmq.LAST_ENDPOINT).decode()
        wake_address = f"inproc://ostinato-control-wake-{uuid.uuid4().hex}"
        self._wake = self._context.socket(zmq.PAIR)
        self._wake.setsockopt(zmq.LINGER, 0)
        self._wake.bind(wake_address)
        wake_end = self._context.socket(zmq.PAIR)
        wake_end.setsockopt(zmq.LINGER, 0)
        wake_end.connect(wake_address)
        if self.on_client_lost is not None:
            self._monitor = router.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        self._thread = threading.Thread(target=self._supervise, args=(wake_end,),
                                        name="ostinato-control", daemon=True)
        self._thread.start()
        return self

    def close(self):
        if self._thread is not None:
            self._wake.send(b"")
            self._thread.join()
            self._thread = None
        # the router first: closing it ends its monitor too.  (disable_monitor() after the
        # monitor's PAIR socket is gone can block forever in libzmq.)
        for sock in (self._router, self._monitor, self._wake):
            if sock is not None:
                sock.close(0)
        self._router = self._wake = self._monitor = None
        self._close_guard()
        self._close_context()

    def _close_guard(self):
        # after the router (no handshake is left to check), before the context's term
        if self._guard is not None:
            self._guard.close()
            self._guard = None

    def _close_context(self):
        if self._own_context and not self._context.closed:
            self._context.term()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()
        return False

    # ------------------------------------------------------------ server thread

    def _supervise(self, wake_end):
        """The thread's body: serve until closed.  Whatever escapes the serving loop (a
        BaseException from the handler, a bug here) is logged, the request in hand gets its
        ``server_error`` answer, and the loop starts again in this same thread."""
        try:
            while True:
                try:
                    self._serve(wake_end)
                    return
                except zmq.ContextTerminated:
                    return  # the context was ended under us: there is nothing left to serve
                except BaseException as exc:  # noqa: BLE001 - the control plane must not die
                    self.restarts += 1
                    envelope, msg_id = self._current or (None, None)
                    self._current = None
                    log.critical("control thread died on request id=%r (%s: %s); restarting it "
                                 "(restart %d)", msg_id, type(exc).__name__, exc, self.restarts,
                                 exc_info=True)
                    if envelope is not None:
                        self._send(envelope, _error_reply(exc, msg_id))
                    # A loop that dies at once again must not spin: a short pause, which
                    # close() can still interrupt.
                    if wake_end.poll(50):
                        return
        finally:
            wake_end.close(0)

    def _serve(self, wake_end):
        poller = zmq.Poller()
        poller.register(self._router, zmq.POLLIN)
        poller.register(wake_end, zmq.POLLIN)
        if self._monitor is not None:
            poller.register(self._monitor, zmq.POLLIN)
        while True:
            ready = dict(poller.poll())
            if wake_end in ready:
                return
            if self._monitor in ready:
                self._lost()
            if self._router in ready:
                self._answer_all()

    def _answer_all(self):
        while True:
            try:
                frames = self._router.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            if self._monitor is not None:
                # ZMQ_SRCFD maps a routing id to its TCP connection, whose close the monitor reports.
                try:
                    self._fd_clients.setdefault(frames[0].get(zmq.SRCFD), set()).add(frames[0].bytes)
                except zmq.ZMQError:
                    pass  # a libzmq without SRCFD: no loss reports
            self._answer([f.bytes for f in frames])

    def _answer(self, frames):
        """Answer one request (routing id, optional delimiter, body frames) exactly once."""
        # REQ puts an empty delimiter between routing id and body; DEALER usually does not.
        # The delimiter is the last empty frame that has a frame after it, so an empty body
        # (a DEALER's send(b"")) is a body, not an envelope waiting for one.
        cut = 1
        for i in range(len(frames) - 2, 0, -1):
            if not frames[i]:
                cut = i + 1
                break
        envelope, body = frames[:cut], frames[cut:]
        self._current = (envelope, None)
        if len(body) != 1:
            reply = protocol.error_reply(protocol.reject(
                "invalid_json", f"request must be one frame, got {len(body)}", None, "one frame"))
        else:
            reply = self._reply(body[0], envelope[0])
        self._send(envelope, reply)
        self._current = None

    def _reply(self, body, routing_id):
        t_ns = time.monotonic_ns()
        try:
            msg = protocol.parse(body, self.presets, self.stingers)
        except InvalidMessage as exc:
            return protocol.error_reply(exc)
        except Exception as exc:  # noqa: BLE001 - a parser bug: answer it, log it, serve on
            log.error("request of %d bytes could not be parsed (id unknown)", len(body), exc_info=True)
            return _error_reply(exc, None)
        self._current = (self._current[0], msg.get("id"))
        msg["client"] = routing_id.hex()
        return respond(self.handler, msg, self.presets, self.stingers, t_ns)

    def _send(self, envelope, reply):
        try:
            self._router.send_multipart(envelope + [reply], zmq.NOBLOCK)
        except zmq.Again:
            pass  # that client's queue is full (gone or not reading): drop, never block

    def _lost(self):
        while True:
            try:
                event = parse_monitor_message(self._monitor.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                return
            for client in self._fd_clients.pop(event["value"], ()):
                try:
                    self.on_client_lost(client.hex())
                except Exception:  # noqa: BLE001 - a callback bug must not stop the server
                    log.error("on_client_lost(%s) failed", client.hex(), exc_info=True)


def _error_reply(exc, msg_id):
    """The error reply for ``exc``; a fixed server_error text if even that cannot be built (an
    exception whose str() raises, say)."""
    try:
        return protocol.error_reply(exc, msg_id)
    except Exception:  # noqa: BLE001
        return protocol.error_reply(RuntimeError(f"{type(exc).__name__} (its text cannot be shown)"),
                                    msg_id if isinstance(msg_id, (int, str)) else None)


def respond(handler, msg, presets, stingers, t_ns=None, logger=log):
    """Run ``handler`` on a validated message and build the reply bytes (never raises).

    A failure other than InvalidMessage is answered ``server_error`` and logged on
    ``logger`` with the request's id.

    The transport fills in what it knows: ``hello`` gets protocol version, message types,
    states and stingers (the handler adds server name, version and capabilities); ``ping``
    gets ``t_ns``, the server's ``time.monotonic_ns()`` when the request arrived.
    """
    try:
        extra = handler(msg) or {}
        if msg["type"] == "hello":
            extra = {"protocol": protocol.PROTOCOL_VERSION, "types": list(protocol.MESSAGE_TYPES),
                     "states": list(presets), "stingers": list(stingers), **extra}
        elif msg["type"] == "ping":
            extra = {"t_ns": time.monotonic_ns() if t_ns is None else t_ns, **extra}
        return protocol.ok_reply(msg, **extra)
    except Exception as exc:  # noqa: BLE001 - the server must keep answering
        if not isinstance(exc, InvalidMessage):  # a semantic error is an answer, not a fault
            logger.error("request id=%r (%s) failed: server_error", msg.get("id"), msg.get("type"),
                         exc_info=True)
        return _error_reply(exc, msg.get("id"))
