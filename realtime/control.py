"""The control transport: a ZeroMQ ROUTER that validates requests and answers each once.

Games connect REQ or DEALER sockets.  Every request is parsed by ``protocol.parse``; only
validated dicts reach ``handler(msg) -> dict`` (extra reply fields).  The handler runs on
this module's thread; InvalidMessage from it becomes an error reply with its code, any other
exception a ``server_error`` reply, and the server keeps serving.
"""
import threading
import time
import uuid

import zmq
from zmq.utils.monitor import parse_monitor_message

from engine.errors import InvalidMessage, PortError
from realtime import protocol


class ControlServer:
    """Serve the control protocol on ``address`` until closed. Use as a context manager.

    handler: ``handler(msg) -> dict | None``, called on the server thread.
    presets, stingers: names ``state``/``stinger`` accept (default: those of the states
    file, see ``protocol.load_states``).
    on_client_lost: optional ``callback(client)``, called on the server thread when a
    connection that sent requests goes away; ``client`` is the hex routing id that the
    handler also sees as ``msg["client"]``.
    """

    def __init__(self, handler, address=protocol.CONTROL_ADDRESS, *, presets=None, stingers=None,
                 on_client_lost=None, hwm=1000, context=None):
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

    @property
    def bound_address(self):
        """The address actually bound (``tcp://127.0.0.1:*`` resolved to its port)."""
        return self._bound

    def start(self):
        router = self._context.socket(zmq.ROUTER)
        router.setsockopt(zmq.LINGER, 0)
        router.setsockopt(zmq.ROUTER_MANDATORY, 0)  # a vanished client's reply is dropped
        router.setsockopt(zmq.SNDHWM, self.hwm)
        router.setsockopt(zmq.RCVHWM, self.hwm)
        router.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_MESSAGE_BYTES * 2)
        try:
            router.bind(self.address)
        except zmq.ZMQError as exc:
            router.close()
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
        self._thread = threading.Thread(target=self._serve, args=(wake_end,),
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
        self._close_context()

    def _close_context(self):
        if self._own_context and not self._context.closed:
            self._context.term()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()
        return False

    # ------------------------------------------------------------ server thread

    def _serve(self, wake_end):
        poller = zmq.Poller()
        poller.register(self._router, zmq.POLLIN)
        poller.register(wake_end, zmq.POLLIN)
        if self._monitor is not None:
            poller.register(self._monitor, zmq.POLLIN)
        fd_clients = {}  # connection fd -> routing ids seen on it
        try:
            while True:
                ready = dict(poller.poll())
                if wake_end in ready:
                    return
                if self._monitor in ready:
                    self._lost(fd_clients)
                if self._router in ready:
                    self._answer_all(fd_clients)
        finally:
            wake_end.close(0)

    def _answer_all(self, fd_clients):
        while True:
            try:
                frames = self._router.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            if self._monitor is not None:
                # ZMQ_SRCFD maps a routing id to its TCP connection, whose close the monitor reports.
                try:
                    fd_clients.setdefault(frames[0].get(zmq.SRCFD), set()).add(frames[0].bytes)
                except zmq.ZMQError:
                    pass  # a libzmq without SRCFD: no loss reports
            self._answer([f.bytes for f in frames])

    def _answer(self, frames):
        # REQ puts an empty delimiter between routing id and body; DEALER usually does not.
        if b"" in frames[1:]:
            cut = len(frames) - frames[::-1].index(b"")
        else:
            cut = 1
        envelope, body = frames[:cut], frames[cut:]
        if len(body) != 1:
            reply = protocol.error_reply(protocol.reject(
                "invalid_json", f"request must be one frame, got {len(body)}", None, "one frame"))
        else:
            reply = self._reply(body[0], envelope[0])
        try:
            self._router.send_multipart(envelope + [reply], zmq.NOBLOCK)
        except zmq.Again:
            pass  # that client's queue is full (gone or not reading): drop, never block

    def _reply(self, body, routing_id):
        t_ns = time.monotonic_ns()
        try:
            msg = protocol.parse(body, self.presets, self.stingers)
        except InvalidMessage as exc:
            return protocol.error_reply(exc)
        msg["client"] = routing_id.hex()
        return respond(self.handler, msg, self.presets, self.stingers, t_ns)

    def _lost(self, fd_clients):
        while True:
            try:
                event = parse_monitor_message(self._monitor.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                return
            for client in fd_clients.pop(event["value"], ()):
                try:
                    self.on_client_lost(client.hex())
                except Exception:  # noqa: BLE001 - a callback bug must not stop the server
                    pass


def respond(handler, msg, presets, stingers, t_ns=None):
    """Run ``handler`` on a validated message and build the reply bytes (never raises).

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
        return protocol.error_reply(exc, msg.get("id"))
