"""The JACK rig itself: starting a private server, listing and wiring ports, the reader."""
import os
import shutil
import time

import pytest
import rtmidi

from engine.errors import PortError
from realtime.jack import (JackConfig, JackMidiReader, JackServer, jack_connect, jack_ports,
                           server_running)

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
    received = []
    out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name=f"{unique_name}-out")
    inp = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name=f"{unique_name}-in")
    try:
        out.open_virtual_port("out")
        inp.set_callback(lambda event, data: received.append(tuple(event[0])))
        inp.open_virtual_port("in")
        jack_connect(f"{unique_name}-out:out", f"{unique_name}-in:in")
        # a new connection carries bytes a few process cycles later: send until one lands
        deadline = time.monotonic() + 5
        while not received and time.monotonic() < deadline:
            out.send_message((0x90, 61, 1))
            time.sleep(0.02)
        with pytest.raises(PortError, match="jack_connect"):
            jack_connect(f"{unique_name}-out:out", "nobody:nothing")
    finally:
        inp.delete()
        out.delete()
    assert received and set(received) == {(0x90, 61, 1)}


def test_reader_syncs_then_records_system_messages(jack_server, unique_name):
    out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name=unique_name)
    try:
        out.open_virtual_port("late")
        with JackMidiReader(f"{unique_name}:late") as reader:
            reader.sync(lambda: out.send_message((0xFE,)))
            out.send_message((0xFE,))  # a late probe: counted, never recorded
            out.send_message((0xFA,))
            out.send_message((0xF8,))
            got = reader.wait_for(2)
            assert [m for _, m in got] == [(0xFA,), (0xF8,)]
            reader.clear()
            assert reader.messages == []
            assert reader.wait_for(1, timeout_s=0.2) == []  # nothing more came
    finally:
        out.delete()


def test_reader_for_a_missing_port_is_a_port_error(jack_server, unique_name):
    with pytest.raises(PortError, match="did not appear"):
        with JackMidiReader(f"{unique_name}:nothing", timeout_s=0.3):
            pass
