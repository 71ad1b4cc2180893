"""A live server for the binding tests: the real music engine behind the real transports.

``control_server`` and ``osc_server`` run ``realtime.server.Server`` on the shipped model
(OSTINATO_TEST_MODEL overrides it), with its ZeroMQ control socket or the OSC endpoint
on a free port.  They yield (address or port, recorded messages): the recorder wraps the
server's handler, so the tests also see what each client actually sent.
"""
import os
import threading

import pytest

from engine import DEFAULT_MODEL
from realtime.control import ControlServer
from realtime.osc import OscServer
from realtime.server import Server, ServerConfig


class Recorder:
    """The server's handler, recording each validated message before it runs."""

    def __init__(self, server):
        self.server = server
        self.messages = []
        self._lock = threading.Lock()

    def __call__(self, msg):
        with self._lock:
            self.messages.append(msg)
        return self.server.handle(msg)


@pytest.fixture
def live_server():
    model = os.environ.get("OSTINATO_TEST_MODEL") or str(DEFAULT_MODEL)
    with Server(ServerConfig(model=model), ports=[], control=False) as srv:
        yield srv


@pytest.fixture
def control_server(live_server):
    engine = Recorder(live_server)
    with ControlServer(engine, "tcp://127.0.0.1:*", on_client_lost=live_server._client_lost) as server:
        yield server.bound_address, engine.messages


@pytest.fixture
def osc_server(live_server):
    engine = Recorder(live_server)
    with OscServer(engine, port=0) as server:
        yield server.port, engine.messages

