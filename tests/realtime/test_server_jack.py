"""The server's virtual MIDI port on a real JACK server, read by a second JACK client
as a DAW would read it.

What the DAW heard is paired with what the server sent by content and order
(``realtime.jack.align``), not by when the test read it: notes of the old mood that
are still on their way through JACK when the mood changes belong to the old mood."""
import threading

import pytest

from realtime.jack import align, jack_ports
from realtime.jackreader import NativeJackReader
from realtime.outputs import BasePort, JackMidiPort, RtMidiPort
from realtime.server import Server, ServerConfig


class Tape(BasePort):
    """Keeps every channel message the server sends, and where each mood marker fell
    among them (the server publishes markers on its sending thread, in order)."""

    def __init__(self):
        super().__init__()
        self.sent, self.marks = [], []
        self._lock = threading.Lock()
        self._notes = threading.Condition(self._lock)

    def _send(self, status, data1, data2, t_ns, beat, session):
        if status < 0xF0:
            with self._notes:
                self.sent.append((status, data1, data2))
                self._notes.notify_all()

    def publish(self, type, **fields):
        if type == "mood":
            with self._notes:
                self.marks.append(len(self.sent))
                self._notes.notify_all()

    def wait_marks(self, count, timeout_s=30.0):
        """Until ``count`` mood markers came: with an output that takes messages early
        (native JACK), a marker reaches this port after the messages queued before it."""
        with self._notes:
            self._notes.wait_for(lambda: len(self.marks) >= count, timeout_s)

    def wait_note_ons(self, count, after=0, timeout_s=30.0):
        """Until ``count`` note-ons were sent past index ``after`` (a guard, not a timing
        claim: a loaded machine only makes it take longer)."""
        with self._notes:
            self._notes.wait_for(lambda: _ons(self.sent[after:]) >= count, timeout_s)


def _ons(messages):
    return sum(1 for s, _, v in messages if s & 0xF0 == 0x90 and v > 0)


def _sounding(messages):
    on = set()
    for status, pitch, vel in messages:
        if status & 0xE0 != 0x80:
            continue
        key = (status & 0x0F, pitch)
        if status & 0xF0 == 0x90 and vel > 0:
            assert key not in on, f"note-on of a sounding note {key}"
            on.add(key)
        else:
            assert key in on, f"note-off of a silent note {key}"
            on.discard(key)
    return on


@pytest.mark.parametrize("backend", ["native", "rtmidi"])
def test_ostinato_port_on_jack_plays_balanced_notes_and_follows_the_mood(
        jack_server, model_path, unique_name, backend):
    if backend == "native":  # the default: each message at its frame, handed over early
        port, full = JackMidiPort(unique_name), f"{unique_name}:out"
    else:
        port = RtMidiPort(unique_name, api="jack", client_name=unique_name)
        full = f"{unique_name}:{unique_name}"
    tape = Tape()
    assert any(p.name == full and p.is_midi and p.is_output for p in jack_ports())
    # the reader counts JACK's xruns: a cycle the server missed loses the MIDI in it
    # (tests/README.md, "No stuck notes"), which an overloaded 2-core machine causes now and then
    with NativeJackReader(full, client_name=unique_name + "-daw") as daw:
        daw.sync(lambda: port.send(0xFE, 0, 0, 0, 0.0))
        xruns = daw.stats()["xruns"]
        srv = Server(ServerConfig(model=str(model_path)), [port, tape], control=False)
        with srv:
            marks = len(tape.marks)
            srv.call("mood", intensity=0.0, arousal=0.5, transition="now")
            tape.wait_marks(marks + 1)
            tape.wait_note_ons(4, after=tape.marks[-1])
            srv.call("mood", intensity=1.0, transition="now")
            tape.wait_marks(marks + 2)
            tape.wait_note_ons(4, after=tape.marks[-1])
        sent = list(tape.sent)
        heard = [m for _, m in daw.wait_for(len(sent), timeout_s=10.0)
                 if len(m) == 3 and m[0] < 0xF0]
        xruns = daw.stats()["xruns"] - xruns
    quiet, loud = tape.marks[-2], tape.marks[-1]
    pairs, lost, unmatched = align(sent, heard)
    assert unmatched == [], (len(sent), len(heard), unmatched[:5])  # nothing extra, in order
    assert _sounding(sent) == set()  # shutdown ended every note it started
    if xruns == 0:
        assert lost == [], (len(sent), len(heard), lost[:5])
        assert _sounding(heard) == set()  # on the DAW's side too
    else:  # what fell in a missed cycle is gone; the rest arrived
        assert len(lost) < len(sent) // 2, (xruns, len(sent), lost[:5])
    before = [v for s, _, v in sent[quiet:loud] if s & 0xF0 == 0x90 and v > 0]
    after = [v for s, _, v in sent[loud:] if s & 0xF0 == 0x90 and v > 0]
    assert len(before) >= 3 and len(after) >= 3
    assert max(before) < min(after)


class Names(BasePort):
    """Records each channel message with the name of its session at the time it came,
    as the event stream and the recording name them."""

    def __init__(self):
        super().__init__()
        self.names, self.got = {0: "main"}, []
        self._lock = threading.Condition()

    @property
    def sessions(self):
        return dict(self.names)

    @sessions.setter
    def sessions(self, sessions):
        self.names = dict(sessions)

    def _send(self, status, data1, data2, t_ns, beat, session):
        if 0x80 <= status < 0xA0:
            with self._lock:
                self.got.append(((status, data1, data2), self.names.get(session)))
                self._lock.notify_all()

    def wait(self, what, timeout_s=30.0):
        with self._lock:
            self._lock.wait_for(lambda: what(self.got), timeout_s)


def test_a_closing_session_keeps_its_name_on_its_last_notes_behind_a_lead(
        jack_server, model_path, unique_name):
    """With an output that takes messages early (native JACK), the others get them from a
    queue at their time; a session's closing note-offs wait there, and the outputs must
    still name them by the closing session, not by whatever has its slot by then."""
    names = Names()
    srv = Server(ServerConfig(model=str(model_path)), [JackMidiPort(unique_name), names],
                 control=False)
    with srv:
        srv.call("session", action="open", session="b")
        names.wait(lambda got: sum(1 for m, n in got if n == "b" and m[0] & 0xF0 == 0x90
                                   and m[2]) >= 2)
        srv.call("session", action="close", session="b")
        srv.call("session", action="open", session="c")  # may take b's slot
        names.wait(lambda got: any(n == "c" for _, n in got))
    sounding = {}
    for (status, pitch, vel), name in names.got:
        key = (status & 0x0F, pitch)
        if status & 0xF0 == 0x90 and vel:
            sounding[key] = name
        else:
            assert sounding.pop(key, None) == name, (key, name)
    assert not sounding
