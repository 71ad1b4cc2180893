"""The native JACK MIDI reader (``realtime.jackreader``) on a real JACK server: it syncs
with a probe, records what follows, and names a port that never appears (the writer's
tests read with it too: test_jackwriter)."""
import pytest
import rtmidi

from engine.errors import PortError
from realtime.jackreader import NativeJackReader


def test_reader_syncs_then_records_system_messages(jack_server, unique_name):
    out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name=unique_name)
    try:
        out.open_virtual_port("late")
        with NativeJackReader(f"{unique_name}:late") as reader:
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
        with NativeJackReader(f"{unique_name}:nothing", timeout_s=0.3):
            pass

