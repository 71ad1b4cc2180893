"""The JACK rig itself: starting a private server, listing and wiring ports (the reader
is tested in test_jackreader)."""
import os
import shutil
import time

import pytest
import rtmidi

from engine.errors import PortError
from realtime.jack import JackConfig, JackServer, jack_connect, jack_ports, server_running
from realtime.jackreader import NativeJackReader

pytestmark = pytest.mark.skipif(shutil.which("jackd") is None and not os.environ.get("CI"),
                                reason="jackd not installed (Debian package jackd2)")


def test_starts_and_stops_its_own_server_when_none_answers(unique_name):
    config = JackConfig(server=unique_name, start_timeout_s=20.0)
    assert not server_running(unique_name)
    with JackServer(config) as server:
        assert server.owned and server_running(unique_name)
        names = {p.name for p in jack_ports(unique_name)}
        assert {"system:playback_1", "system:capture_1"} <= names
        with JackServer(config) as again:  # a second user reuses it and leaves it running
            assert not again.owned
        assert server_running(unique_name)
    assert not server_running(unique_name)
    with pytest.raises(PortError, match="answers"):
        jack_ports(unique_name)


def test_jack_ports_parses_types_and_directions(jack_server, unique_name):
    out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name=unique_name)
    try:
        out.open_virtual_port("out")
        ports = {p.name: p for p in jack_ports()}
        mine = ports[f"{unique_name}:out"]
        assert mine.is_midi and mine.is_output and mine.type == "8 bit raw midi"
        playback = ports["system:playback_1"]
        assert not playback.is_midi and not playback.is_output and "physical" in playback.flags
    finally:
        out.delete()


def test_jack_connect_wires_a_virtual_input(jack_server, unique_name):
    out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name=f"{unique_name}-out")
    try:
        out.open_virtual_port("out")
        with NativeJackReader(None, client_name=f"{unique_name}-in") as inp:
            jack_connect(f"{unique_name}-out:out", inp.input_name)
            # a new connection carries bytes a few process cycles later: send until one lands
            deadline = time.monotonic() + 5
            while not inp.messages and time.monotonic() < deadline:
                out.send_message((0x90, 61, 1))
                time.sleep(0.02)
            with pytest.raises(PortError, match="jack_connect"):
                jack_connect(f"{unique_name}-out:out", "nobody:nothing")
            received = [m for _, m in inp.messages]
    finally:
        out.delete()
    assert received and set(received) == {(0x90, 61, 1)}
