"""The server's virtual MIDI port on a real JACK server, read by a second JACK client
as a DAW would read it."""
import time

from realtime.jack import JackMidiReader, jack_ports
from realtime.ports import RtMidiPort
from realtime.server import Server, ServerConfig


def _notes(messages):
    return [(t, m) for t, m in messages if len(m) == 3 and m[0] & 0xE0 == 0x80]


def _sounding(messages):
    on = set()
    for _, (status, pitch, vel) in _notes(messages):
        key = (status & 0x0F, pitch)
        if status & 0xF0 == 0x90 and vel > 0:
            assert key not in on
            on.add(key)
        else:
            assert key in on, f"note-off of a silent note {key}"
            on.discard(key)
    return on


def test_ostinato_port_on_jack_plays_balanced_notes_and_follows_the_mood(
        jack_server, model_path, unique_name):
    port = RtMidiPort(unique_name, api="jack", client_name=unique_name)
    full = f"{unique_name}:{unique_name}"
    assert any(p.name == full and p.is_midi and p.is_output for p in jack_ports())
    with JackMidiReader(full, client_name=unique_name + "-daw") as daw:
        daw.sync(lambda: port.send(0xFE, 0, 0, 0, 0.0))
        srv = Server(ServerConfig(model=str(model_path)), [port], control=False)
        with srv:
            srv.call("mood", intensity=0.0, arousal=0.5, transition="now")
            time.sleep(2.0)
            quiet = len(daw.messages)
            srv.call("mood", intensity=1.0, transition="now")
            time.sleep(2.0)
        msgs = daw.messages
    assert _sounding(msgs) == set()  # shutdown ended every note
    before = [m for _, m in _notes(msgs[:quiet]) if m[0] & 0xF0 == 0x90]
    after = [m for _, m in _notes(msgs[quiet:]) if m[0] & 0xF0 == 0x90]
    assert len(before) >= 3 and len(after) >= 3
    assert max(v for _, _, v in before) < min(v for _, _, v in after)
