"""Start-up: the control socket answers while the server warms up, and what it accepted
then takes effect when the music starts.

In process, a ``listen_first`` server stays warming up until the test calls ``load``, so
what is answered during the warm-up is checked without racing it.  One test starts the
real ``ostinato serve`` on a cold numba cache (an empty NUMBA_CACHE_DIR of its own: every
kernel compiles, tens of seconds) and talks to it at once.
"""
import contextlib
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zmq

from engine import DEFAULT_ENSEMBLE
from engine.errors import PortError
from realtime.outputs import ZmqPubPort
from realtime.server import Server, ServerConfig

from tests.realtime.test_server import Listener

REPO = Path(__file__).resolve().parents[2]
WAIT_S = 300.0  # a bound on waits for the music, never a figure: a cold start compiles


def dealer(ctx, address, identity=None):
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if identity is not None:
        sock.setsockopt(zmq.IDENTITY, identity)
    sock.connect(address)
    return sock


def ask(sock, obj, timeout_s=WAIT_S):
    """Send one request; its reply (matched by id: a DEALER may have others waiting)."""
    sock.send(obj if isinstance(obj, bytes) else json.dumps(obj).encode())
    want = None if isinstance(obj, bytes) else obj.get("id")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if sock.poll(100):
            reply = json.loads(sock.recv())
            if reply.get("id") == want:
                return reply
    raise AssertionError(f"no reply to {obj!r}")


def starts(mood):
    """The beat a ``mood`` event's music starts at: its pickup's, else its own."""
    return mood.get("pickup_beat", mood["beat"])


def until(listener, match, timeout_s=WAIT_S):
    """The first event on the stream ``match`` accepts (events before it stay in
    ``listener.events``)."""
    deadline = time.monotonic() + timeout_s
    seen = 0
    while time.monotonic() < deadline:
        listener.pump(0.05)
        for ev in listener.events[seen:]:
            if match(ev):
                return ev
        seen = len(listener.events)
    raise AssertionError("the event never came")


@pytest.fixture
def warming(model_path):
    """A ``listen_first`` server, bound and answering, its model not loaded yet; an event
    stream subscriber that hears everything from the start on; a context for clients."""
    pub = ZmqPubPort("tcp://127.0.0.1:*")
    srv = Server(ServerConfig(model=str(model_path), control="tcp://127.0.0.1:*"), [pub],
                 listen_first=True)
    listener = Listener(pub.bound_address)
    ctx = zmq.Context()
    try:
        listener.join(pub)
        yield srv, listener, ctx
    finally:
        listener.close()
        srv.close()
        ctx.destroy(0)


def test_while_warming_up_requests_are_answered_and_apply_in_order_when_the_music_starts(
        warming, caplog):
    srv, listener, ctx = warming
    assert not srv.ready and srv.music is None  # nothing of the model yet
    game = dealer(ctx, srv.control_address, identity=b"game")

    hello = ask(game, {"type": "hello", "id": 1})
    assert hello["ok"] and hello["ready"] is False
    assert hello["server"] == "ostinato" and hello["version"]
    assert "combat" in hello["states"] and "victory" in hello["stingers"]  # states.toml's
    assert ask(game, {"type": "ping", "id": 2})["ok"]

    accepted = ask(game, {"type": "state", "name": "combat", "id": 3})
    assert accepted["ok"] and accepted["for"] == "state"
    assert accepted["ready"] is False and accepted["accepted"] is True
    assert "when the music starts" in accepted["takes_effect"]
    # validation needs no model: a bad request gets its error at once, and is not kept
    bad = ask(game, {"type": "state", "name": "nowhere", "id": 4})
    assert not bad["ok"] and bad["code"] == "bad_choice" and bad["field"] == "name"
    assert "combat" in bad["allowed"]
    assert ask(game, {"type": "session", "action": "open", "session": "layer", "id": 5})["accepted"]
    # valid on the wire, refused when applied: the session is not open
    assert ask(game, {"type": "mood", "session": "nobody", "valence": 0.5, "id": 6})["accepted"]
    assert ask(game, {"type": "hello", "id": 7})["ready"] is False  # still warming up

    srv.load()
    assert not srv.ready  # compiled, but the music has not started: still accepted
    assert ask(game, {"type": "tempo", "bpm": 97, "id": 8})["accepted"]
    with caplog.at_level(logging.ERROR, logger="ostinato.server"):
        srv.start()
    assert srv.ready

    # the failed one is logged with its id and type; the others applied
    failed = [r.getMessage() for r in caplog.records if "accepted while warming up" in r.getMessage()]
    assert len(failed) == 1 and "id=6" in failed[0] and "(mood)" in failed[0]
    told = until(listener, lambda e: e["type"] == "request_failed")
    assert told["id"] == 6 and told["for"] == "mood" and "nobody" in told["message"]
    assert srv.sessions["layer"].owner == b"game".hex()  # the client that sent it owns it

    hello = ask(game, {"type": "hello", "id": 9})
    assert hello["ready"] is True and sorted(hello["sessions"]) == ["layer", "main"]
    now = ask(game, {"type": "key", "key": "D", "id": 10})
    assert now["ok"] and "accepted" not in now and "ready" not in now  # applied as it comes

    # on the stream: the main session's music is combat's from beat 0 (its transition
    # point, or the pickup before it, by states.toml's rule), announced before its first
    # note, and the tempo sent later comes after it (in order)
    first_note = until(listener, lambda e: e["type"] == "note_on" and e["session"] == "main")
    main = [e for e in listener.events if e["session"] == "main"]
    before = main[:main.index(first_note)]
    combat = [e for e in before if e["type"] == "mood" and e.get("name") == "combat"]
    assert combat and starts(combat[-1]) == 0.0
    tempo = [e for e in before if e["type"] == "tempo" and e["bpm"] == 97]
    assert tempo and before.index(tempo[-1]) > before.index(combat[-1])

    # the session opened while warming up is the client's: it closes when the client goes
    game.close(0)
    deadline = time.monotonic() + WAIT_S
    while "layer" in srv.sessions and time.monotonic() < deadline:
        time.sleep(0.02)
    assert set(srv.sessions) == {"main"}


def test_a_request_accepted_while_warming_up_that_fails_at_the_start_is_published(warming):
    """Valid on the wire, refused when applied (a transition at a cue nobody placed):
    its client was told "accepted", so the event stream says it failed, with its id,
    type, error code and message, in order with the markers of the requests around it."""
    srv, listener, ctx = warming
    game = dealer(ctx, srv.control_address)
    assert ask(game, {"type": "state", "name": "combat", "id": 1})["accepted"]
    no_cue = ask(game, {"type": "state", "name": "calm", "transition": "cue:door", "id": 2})
    assert no_cue["ok"] and no_cue["accepted"] is True
    assert ask(game, {"type": "tempo", "bpm": 97, "id": 3})["accepted"]
    srv.start()

    until(listener, lambda e: e["type"] == "note_on")
    kinds = [e["type"] for e in listener.events]
    failed = [e for e in listener.events if e["type"] == "request_failed"]
    assert len(failed) == 1
    told = failed[0]
    assert told["id"] == 2 and told["for"] == "state" and told["code"] == "bad_choice"
    assert "no cue 'door' waiting" in told["message"] and told["session"] == "main"
    combat = next(i for i, e in enumerate(listener.events)
                  if e["type"] == "mood" and e.get("name") == "combat")
    tempo = next(i for i, e in enumerate(listener.events)
                 if e["type"] == "tempo" and e["bpm"] == 97)
    at = listener.events.index(told)
    assert combat < at < tempo < kinds.index("note_on")
    assert not any(e["type"] == "mood" and e.get("name") == "calm" for e in listener.events)


def test_when_the_child_cannot_compile_the_server_compiles_itself_and_says_why(
        warming, monkeypatch, caplog):
    """The child process that compiles the kernels fails for real: numba refuses its
    cache locator setting (NUMBA_CACHE_LOCATOR_CLASSES, read as each module with cached
    kernels is imported, which this process did already).  The server says why and
    compiles (here: loads from its cache) in its own process.

    The one stand-in: this process's numba cache is warm, so a cold one is played by
    ``compiles_refused`` raising ``CacheCold`` at once (a real cold cache compiles for
    tens of seconds; the real-process test below has one)."""
    import realtime.server
    from realtime.warmup import CacheCold

    @contextlib.contextmanager
    def cold_cache():
        raise CacheCold("the test's stand-in for a cold cache")
        yield

    srv, _, ctx = warming
    monkeypatch.setattr(realtime.server, "compiles_refused", cold_cache)
    monkeypatch.setenv("NUMBA_CACHE_LOCATOR_CLASSES", "NoSuchLocator")
    game = dealer(ctx, srv.control_address)
    with caplog.at_level(logging.WARNING, logger="ostinato.server"):
        srv.load()
    why = [r.getMessage() for r in caplog.records if "in a child process failed" in r.getMessage()]
    assert len(why) == 1 and "NoSuchLocator" in why[0] and "status 1" in why[0]
    assert srv.music is not None and not srv.ready
    assert ask(game, {"type": "hello", "id": 1})["ready"] is False
    srv.start()
    assert ask(game, {"type": "hello", "id": 2})["ready"] is True


def test_a_client_lost_while_warming_up_loses_its_session_after_it_opens(warming):
    srv, _, ctx = warming
    game = dealer(ctx, srv.control_address, identity=b"gone")
    assert ask(game, {"type": "session", "action": "open", "session": "gone", "id": 1})["accepted"]
    game.close(0)  # gone before the music starts: its loss waits behind its open
    deadline = time.monotonic() + WAIT_S
    while len(srv._warming._queue) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)  # the control thread's monitor reports the disconnect
    assert [m["type"] for m in srv._warming._queue] == ["session", "_lost"]
    srv.start()
    deadline = time.monotonic() + WAIT_S
    while "gone" in srv.sessions and time.monotonic() < deadline:
        time.sleep(0.02)
    assert set(srv.sessions) == {"main"}


def test_closed_before_the_music_starts_the_held_requests_are_dropped_and_said_so(
        model_path, caplog):
    srv = Server(ServerConfig(model=str(model_path), control="tcp://127.0.0.1:*"), [],
                 listen_first=True)
    ctx = zmq.Context()
    game = dealer(ctx, srv.control_address)
    try:
        assert ask(game, {"type": "state", "name": "calm", "id": 1})["accepted"]
        with caplog.at_level(logging.WARNING, logger="ostinato.server"):
            srv.close()
        assert any("1 request(s) accepted while warming up were not applied" in r.getMessage()
                   for r in caplog.records)
        assert srv.control is None and srv.music is None
    finally:
        game.close(0)
        ctx.destroy(0)


def test_a_model_that_fails_to_load_closes_the_control_socket_it_bound(tmp_path):
    bad = tmp_path / "broken.npz"
    bad.write_bytes(b"not a model")
    srv = Server(ServerConfig(model=str(bad), control="tcp://127.0.0.1:*"), [],
                 listen_first=True)
    address = srv.control_address
    with pytest.raises(Exception, match="broken.npz"):
        srv.load()
    assert srv.control is None
    # the port is free again: a new server binds it
    from realtime.control import ControlServer

    with ControlServer(lambda msg: {}, address):
        pass
    srv.close()


def test_a_control_address_in_use_is_refused_before_the_model_loads(tmp_path):
    ctx = zmq.Context()
    taken = ctx.socket(zmq.ROUTER)
    taken.setsockopt(zmq.LINGER, 0)
    taken.bind("tcp://127.0.0.1:*")
    address = taken.getsockopt(zmq.LAST_ENDPOINT).decode()
    try:  # the model file does not exist: refused for the address, it was never read
        with pytest.raises(PortError, match="cannot bind control socket"):
            Server(ServerConfig(model=str(tmp_path / "absent.npz"), control=address), [],
                   listen_first=True)
    finally:
        taken.close(0)
        ctx.destroy(0)


def test_serve_answers_at_once_on_a_cold_kernel_cache(tmp_path):
    """``ostinato serve`` as a game starts it, on a machine whose numba cache is empty
    (its own NUMBA_CACHE_DIR): it answers while every kernel compiles, and the state it
    accepted then is the music's when it starts."""
    from benchmarks.stats import free_port

    cache = tmp_path / "numba"
    cache.mkdir()
    control, events = (f"tcp://127.0.0.1:{free_port()}" for _ in range(2))
    ctx = zmq.Context()
    listener = Listener(events)
    game = dealer(ctx, control)
    proc = subprocess.Popen(
        [sys.executable, "-m", "realtime.cli", "serve", "--model", str(DEFAULT_ENSEMBLE),
         "--midi", "none", "--osc", "0", "--control", control, "--events", events],
        cwd=REPO, env=dict(os.environ, NUMBA_CACHE_DIR=str(cache)), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        hello = ask(game, {"type": "hello", "id": 1})
        assert hello["ok"] and hello["ready"] is False
        accepted = ask(game, {"type": "state", "name": "combat", "id": 2})
        assert accepted["ok"] and accepted["accepted"] is True and accepted["ready"] is False
        bad = ask(game, {"type": "mood", "valence": 7, "id": 3})
        assert not bad["ok"] and bad["code"] == "out_of_range" and bad["field"] == "valence"

        mood = until(listener, lambda e: e["type"] == "mood" and e.get("name") == "combat")
        assert mood["session"] == "main" and starts(mood) == 0.0
        assert ask(game, {"type": "hello", "id": 5})["ready"] is True
        assert any(cache.rglob("*.nbi"))  # it did compile, into the empty cache
    finally:
        game.close(0)
        listener.close()
        proc.terminate()
        out = proc.communicate(timeout=60)[0]
        ctx.destroy(0)
    assert "answers now; warming up" in out and "ready in" in out
    # the child compiled them, and the server loaded them from the cache it wrote
    assert "in a child process failed" not in out and "did not keep them" not in out
    assert out.index("answers now; warming up") < out.index("ready in")
