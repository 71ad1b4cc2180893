"""A live control server for the binding tests.

The transport (ZeroMQ ROUTER / OSC over UDP), validation and wire format are the real ones;
the music engine behind them is a fake that records the validated messages, because the
tests check what the clients send and how they read replies.  To run these tests against
the real server, make ``engine`` below a ``realtime.server`` handler: the fixtures yield
only (address, recorded messages).
"""
import threading

import pytest

from realtime import protocol
from realtime.control import ControlServer
from realtime.osc import OscServer


class FakeEngine:
    """Fake music engine: records messages, keeps the set of open sessions, answers hello."""

    def __init__(self):
        self.messages = []
        self.sessions = {"main"}
        self._lock = threading.Lock()

    def __call__(self, msg):
        with self._lock:
            self.messages.append(msg)
            session = msg["session"]
            if msg["type"] == "session":
                if msg["action"] == "open":
                    self.sessions.add(session)
                elif session in self.sessions:
                    self.sessions.discard(session)
                else:
                    raise self._not_open(session)
            elif session not in self.sessions:
                raise self._not_open(session)
            if msg["type"] == "hello":
                return {"server": "ostinato-fake-engine", "version": "0",
                        "capabilities": ["sessions", "stingers", "osc"]}
            return {}

    def _not_open(self, session):
        return protocol.reject("bad_choice", f"session {session!r} is not open; open it first",
                               "session", sorted(self.sessions))


@pytest.fixture
def control_server():
    engine = FakeEngine()
    with ControlServer(engine, "tcp://127.0.0.1:*") as server:
        yield server.bound_address, engine.messages


@pytest.fixture
def osc_server():
    engine = FakeEngine()
    with OscServer(engine, port=0) as server:
        yield server.port, engine.messages

