"""ControlServer over real ZeroMQ sockets on 127.0.0.1 (random ports), REQ and DEALER clients."""
import json
import logging
import queue
import threading
import time

import pytest
import zmq

from engine.errors import PortError
from realtime import protocol
from realtime.control import ControlServer

TIMEOUT_MS = 5000


class Recorder:
    """The handler under test: records what it is given, fails on request."""

    def __init__(self):
        self.messages = []
        self.fail_next = None

    def __call__(self, msg):
        self.messages.append(msg)
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc
        if msg["type"] == "hello":
            return {"server": "recorder", "version": "0", "capabilities": ["osc"]}
        return {"seen": len(self.messages)}


@pytest.fixture
def ctx():
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


@pytest.fixture
def served():
    recorder = Recorder()
    with ControlServer(recorder, "tcp://127.0.0.1:*") as server:
        yield server, recorder


def connect(ctx, kind, address):
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, TIMEOUT_MS)
    sock.connect(address)
    return sock


def req(sock, obj):
    sock.send(obj if isinstance(obj, bytes) else json.dumps(obj).encode())
    return json.loads(sock.recv())


def test_bound_address_resolves_the_random_port(served):
    server, _ = served
    host, port = server.bound_address.rsplit(":", 1)
    assert host == "tcp://127.0.0.1" and int(port) > 0


def test_req_client_gets_one_reply_per_request(served, ctx):
    server, recorder = served
    sock = connect(ctx, zmq.REQ, server.bound_address)
    reply = req(sock, {"type": "mood", "id": 1, "arousal": 0.9, "transition": "now"})
    assert reply == {"ok": True, "type": "ack", "id": 1, "for": "mood", "session": "main", "seen": 1}
    got = recorder.messages[0]
    assert got["arousal"] == 0.9 and got["valence"] is None and got["transition"] == "now"
    assert isinstance(got["client"], str) and got["client"]
    reply = req(sock, {"type": "tempo", "id": "t", "bpm": 1000})
    assert (reply["ok"], reply["code"], reply["field"], reply["id"]) == (False, "out_of_range", "bpm", "t")
    assert len(recorder.messages) == 1  # invalid input never reaches the handler


def test_dealer_clients_with_and_without_delimiter(served, ctx):
    server, recorder = served
    plain = connect(ctx, zmq.DEALER, server.bound_address)
    plain.send(b'{"type":"start","id":5}')
    frames = plain.recv_multipart()
    assert len(frames) == 1 and json.loads(frames[0])["id"] == 5
    delimited = connect(ctx, zmq.DEALER, server.bound_address)
    delimited.send_multipart([b"", b'{"type":"stop","id":6}'])
    frames = delimited.recv_multipart()
    assert frames[0] == b"" and json.loads(frames[1])["for"] == "stop"
    plain.send_multipart([b"a", b"b"])
    reply = json.loads(plain.recv_multipart()[-1])
    assert reply["code"] == "invalid_json" and "one frame" in reply["message"]
    assert [m["type"] for m in recorder.messages] == ["start", "stop"]


def test_hello_and_ping_replies(served, ctx):
    server, _ = served
    sock = connect(ctx, zmq.REQ, server.bound_address)
    hello = req(sock, {"type": "hello"})
    presets, stingers = protocol.load_states()
    assert hello["type"] == "hello" and hello["protocol"] == protocol.PROTOCOL_VERSION
    assert hello["types"] == list(protocol.MESSAGE_TYPES)
    assert hello["states"] == list(presets) and hello["stingers"] == list(stingers)
    assert hello["server"] == "recorder" and hello["capabilities"] == ["osc"]
    before = time.monotonic_ns()
    pong = req(sock, {"type": "ping", "id": 2})
    after = time.monotonic_ns()
    assert pong["type"] == "pong" and before <= pong["t_ns"] <= after


def test_handler_errors_become_replies_and_the_server_keeps_answering(served, ctx):
    server, recorder = served
    sock = connect(ctx, zmq.REQ, server.bound_address)
    recorder.fail_next = ZeroDivisionError("division by zero")
    reply = req(sock, {"type": "start", "id": 1})
    assert (reply["code"], reply["id"]) == ("server_error", 1)
    assert "ZeroDivisionError" in reply["message"]
    recorder.fail_next = protocol.reject("bad_choice", "session 'x' is not open", "session", ["main"])
    reply = req(sock, {"type": "stop", "session": "x"})
    assert (reply["code"], reply["field"], reply["allowed"]) == ("bad_choice", "session", ["main"])
    recorder.fail_next = None
    assert req(sock, {"type": "pause"})["ok"] is True


def test_every_error_code_over_the_wire(served, ctx):
    server, _ = served
    sock = connect(ctx, zmq.REQ, server.bound_address)
    cases = {
        b"{nope": "invalid_json",
        b'{"type":"fly"}': "unknown_type",
        b'{"type":"tempo"}': "missing_field",
        b'{"type":"tempo","bpm":"x"}': "bad_type",
        b'{"type":"tempo","bpm":3}': "out_of_range",
        b'{"type":"state","name":"nap"}': "bad_choice",
        b'{"type":"stop","loud":1}': "unknown_field",
        b" " * (protocol.MAX_MESSAGE_BYTES + 1): "too_large",
    }
    for data, code in cases.items():
        assert req(sock, data)["code"] == code


def test_a_vanished_or_stalled_client_does_not_block_the_server(ctx):
    recorder = Recorder()
    with ControlServer(recorder, "tcp://127.0.0.1:*", hwm=10) as server:
        # One client fires requests and disappears without reading any reply ...
        gone = connect(ctx, zmq.DEALER, server.bound_address)
        for i in range(50):
            gone.send(json.dumps({"type": "ping", "id": i}).encode())
        gone.close(0)
        # ... another never reads, so its queue fills far past the server's HWM.
        stalled = connect(ctx, zmq.DEALER, server.bound_address)
        stalled.setsockopt(zmq.RCVHWM, 1)
        for i in range(3000):
            stalled.send(b'{"type":"ping"}')
        deadline = time.monotonic() + 10
        while len(recorder.messages) < 3000 and time.monotonic() < deadline:
            time.sleep(0.01)
        live = connect(ctx, zmq.REQ, server.bound_address)
        assert req(live, {"type": "start", "id": "alive"})["id"] == "alive"
        assert len(recorder.messages) >= 3001


def test_client_loss_is_reported(ctx):
    lost = queue.Queue()
    recorder = Recorder()
    with ControlServer(recorder, "tcp://127.0.0.1:*", on_client_lost=lost.put) as server:
        sock = connect(ctx, zmq.DEALER, server.bound_address)
        sock.send(b'{"type":"session","action":"open","session":"p2"}')
        assert json.loads(sock.recv())["ok"]
        client = recorder.messages[0]["client"]
        sock.close(0)
        assert lost.get(timeout=5) == client


def test_close_stops_the_thread_and_frees_the_port(ctx):
    server = ControlServer(Recorder(), "tcp://127.0.0.1:*").start()
    address = server.bound_address
    with pytest.raises(PortError, match="cannot bind"):
        ControlServer(Recorder(), address).start()
    thread = server.thread
    server.close()
    assert not thread.is_alive()
    assert all(t.name != "ostinato-control" for t in threading.enumerate())
    with ControlServer(Recorder(), address) as again:  # same port, bound again
        assert req(connect(ctx, zmq.REQ, again.bound_address), {"type": "stop"})["ok"]


# ---------------------------------------------------------------- a control plane that cannot die

def test_deep_nesting_is_answered_and_the_next_request_too(served, ctx, caplog):
    server, recorder = served
    sock = connect(ctx, zmq.REQ, server.bound_address)
    reply = req(sock, b"[" * 10000 + b"]" * 10000)
    assert (reply["code"], reply["field"]) == ("too_large", None)
    assert str(protocol.MAX_DEPTH) in reply["allowed"] and "10000 deep" in reply["message"]
    deep_field = b'{"type":"mood","id":3,"valence":' + b"[" * 40 + b"]" * 40 + b"}"
    assert req(sock, deep_field)["code"] == "too_large"
    at_limit = b'{"type":"mood","id":4,"valence":' + b"[" * 31 + b"]" * 31 + b"}"
    assert (req(sock, at_limit)["code"], req(sock, at_limit)["field"]) == ("bad_type", "valence")
    assert req(sock, {"type": "ping", "id": "next"})["id"] == "next"
    assert server.thread.is_alive() and server.restarts == 0


@pytest.mark.parametrize("size", [200_000, 2_000_000])
def test_oversized_requests_are_answered_too_large(served, ctx, size):
    server, _ = served
    sock = connect(ctx, zmq.REQ, server.bound_address)
    reply = req(sock, b'{"type":"ping","pad":"' + b"x" * size + b'"}')
    assert (reply["code"], reply["allowed"]) == ("too_large", f"<= {protocol.MAX_MESSAGE_BYTES} bytes")
    assert str(protocol.MAX_MESSAGE_BYTES) in reply["message"]
    assert req(sock, {"type": "ping", "id": 1})["type"] == "pong"


def test_over_the_hard_cap_the_connection_is_dropped(ctx):
    with ControlServer(Recorder(), "tcp://127.0.0.1:*", max_bytes=2**20) as server:
        assert server.max_bytes == 2**20
        big = connect(ctx, zmq.DEALER, server.bound_address)
        big.setsockopt(zmq.RCVTIMEO, 1000)
        big.send(b" " * (2**20 + 1))
        with pytest.raises(zmq.Again):  # libzmq dropped the connection: no reply comes
            big.recv()
        under = connect(ctx, zmq.REQ, server.bound_address)
        assert req(under, b" " * 2**20)["code"] == "too_large"  # at the cap: answered
    with pytest.raises(ValueError, match="max_bytes"):
        ControlServer(Recorder(), "tcp://127.0.0.1:*", max_bytes=1000)


def test_odd_frames_are_each_answered_once(served, ctx):
    server, _ = served
    dealer = connect(ctx, zmq.DEALER, server.bound_address)
    cases = [([b""], "invalid_json", "not valid JSON"),              # an empty body
             ([b"", b""], "invalid_json", "not valid JSON"),         # delimiter, empty body
             ([b"x", b""], "invalid_json", "one frame, got 2"),
             ([b"\xff\xfe"], "invalid_json", "not UTF-8"),
             ([b'{"type":"ping","id":"\\ud800"}'], None, None),       # a lone surrogate id
             ([b"a", b"b", b"c"], "invalid_json", "one frame, got 3")]
    for frames, code, text in cases:
        dealer.send_multipart(frames)
        reply = json.loads(dealer.recv_multipart()[-1])
        if code is None:
            assert reply["ok"] and reply["id"] == "\ud800"
        else:
            assert reply["code"] == code and text in reply["message"], (frames, reply)
    dealer.send(b'{"type":"ping","id":"last"}')
    assert json.loads(dealer.recv_multipart()[-1])["id"] == "last"  # nothing was answered twice


def test_nan_and_infinity_are_out_of_range(served, ctx):
    server, recorder = served
    sock = connect(ctx, zmq.REQ, server.bound_address)
    for literal in (b"NaN", b"Infinity", b"-Infinity", b"1e400", b"1" + b"0" * 400):
        reply = req(sock, b'{"type":"tempo","id":1,"bpm":' + literal + b"}")
        assert (reply["code"], reply["field"], reply["id"]) == ("out_of_range", "bpm", 1), literal
        assert len(reply["message"]) < 200  # a 401-digit number is not echoed whole
    assert req(sock, b'{"type":"ping","v":NaN}')["code"] == "bad_type"
    assert recorder.messages == []


def test_a_handler_exception_is_logged_with_the_request_id(served, ctx, caplog):
    server, recorder = served
    sock = connect(ctx, zmq.REQ, server.bound_address)
    recorder.fail_next = KeyError("no such thing")
    with caplog.at_level(logging.ERROR, logger="ostinato.control"):
        reply = req(sock, {"type": "start", "id": "r-17"})
    assert (reply["code"], reply["id"]) == ("server_error", "r-17")
    record = next(r for r in caplog.records if r.name == "ostinato.control")
    assert "'r-17'" in record.getMessage() and record.exc_info[0] is KeyError
    assert req(sock, {"type": "stop", "id": 2})["ok"]


def test_the_serving_loop_is_restarted_when_something_escapes_it(served, ctx, caplog):
    """A handler raising SystemExit (a BaseException: respond() lets it through, as it would
    let any BaseException) really kills the serving loop; the supervisor answers that
    request, logs the restart and serves on in the same thread."""
    server, recorder = served
    thread = server.thread
    sock = connect(ctx, zmq.REQ, server.bound_address)
    recorder.fail_next = SystemExit(3)
    with caplog.at_level(logging.CRITICAL, logger="ostinato.control"):
        reply = req(sock, {"type": "pause", "id": 9})
    assert (reply["code"], reply["id"]) == ("server_error", 9) and "SystemExit" in reply["message"]
    assert server.restarts == 1 and server.thread is thread and thread.is_alive()
    assert any("restarting" in r.getMessage() and "id=9" in r.getMessage() for r in caplog.records)
    assert req(sock, {"type": "start", "id": 10})["ok"]
    dealer = connect(ctx, zmq.DEALER, server.bound_address)
    dealer.send(b'{"type":"ping","id":"fresh"}')
    assert json.loads(dealer.recv())["id"] == "fresh"


def test_a_failing_client_lost_callback_is_logged(ctx, caplog):
    def explode(client):
        raise RuntimeError("callback bug")
    with ControlServer(Recorder(), "tcp://127.0.0.1:*", on_client_lost=explode) as server, \
            caplog.at_level(logging.ERROR, logger="ostinato.control"):
        sock = connect(ctx, zmq.DEALER, server.bound_address)
        sock.send(b'{"type":"ping"}')
        sock.recv()
        sock.close(0)
        deadline = time.monotonic() + 10
        while not any("on_client_lost" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, "the callback's failure was never logged"
            time.sleep(0.02)
        assert req(connect(ctx, zmq.REQ, server.bound_address), {"type": "ping", "id": 1})["id"] == 1
