"""Repetition and form on a real server over 127.0.0.1 (issue 28): each session keeps its
repetition (the message's, else its preset's, else the server's default) and its form (its
preset's, else ``Form()``) and hands both to the sampler (``Runtime.set_form``) when it opens
or starts afresh and whenever they change; the replies, hello and the mood events report
them; bad values are refused naming the field (a states file's, its file, preset and key)
and the music goes on; a theme longer than the session's form is refused naming its field.

What the runtime is handed is recorded by wrapping the server's own ``Runtime.set_form``
(the call goes through to it, so the sampler really follows the form)."""
import time

import pytest
import zmq

from engine.errors import InvalidMessage
from engine.form import Form
from realtime.cli import main
from realtime.outputs import ZmqPubPort
from realtime.protocol import DEFAULT_STATES
from realtime.server import Server, ServerConfig

from .test_server import Listener, balance, request

# Two presets with a form, one with a repetition: appended to the shipped states.
FORMED = '''
[presets.plain]
valence = 0.4
arousal = 0.35
intensity = 0.4

[presets.loop]
valence = 0.2
arousal = 0.5
intensity = 0.6
repetition = 1.0
form = { shape = "AB", bars = 2, bass_loop = 1 }

[presets.brief]
valence = 0.2
arousal = 0.5
intensity = 0.6
form = { shape = "A", bars = 1, bass_loop = 1 }
'''
LOOP = Form(shape="AB", bars=2, bass_loop=1, drums_loop=Form().drums_loop)
BRIEF = Form(shape="A", bars=1, bass_loop=1, drums_loop=1)
MOTIF = [[62, 0, 1], [65, 1, 1], [69, 2, 1], [74, 3, 1], [72, 4, 0.5], [70, 4.5, 0.5]]  # 2 bars


class FormWire:
    """A server on 127.0.0.1 (states: the shipped file and FORMED), its event stream read
    by a Listener, and every ``set_form`` its runtime is handed, as (session slot,
    repetition, form, bar_ticks, origin)."""

    def __init__(self, model, states, **cfg):
        self.pub = ZmqPubPort("tcp://127.0.0.1:*")
        self.srv = Server(ServerConfig(model=str(model), control="tcp://127.0.0.1:*",
                                       states=str(states), max_sessions=4, **cfg), [self.pub])
        self.forms = []
        rt = self.srv.rt
        handed = rt.set_form

        def set_form(s, repetition, form=Form(), bar_ticks=None, origin=0):
            self.forms.append((s, repetition, form, bar_ticks, origin))
            return handed(s, repetition, form, bar_ticks=bar_ticks, origin=origin)

        rt.set_form = set_form
        self.listener = Listener(self.pub.bound_address)
        self.req = zmq.Context.instance().socket(zmq.REQ)
        self.req.setsockopt(zmq.LINGER, 0)
        self.listener.join(self.pub)
        self.srv.start()
        self.req.connect(self.srv.control_address)
        self.bar = self.srv.tpb * self.srv.cfg.beats_per_bar

    def ask(self, **msg):
        return request(self.req, msg)

    def slot(self, session="main"):
        return self.srv.sessions[session].slot

    def handed(self, session="main"):
        """What the runtime was last handed for ``session``: (repetition, form)."""
        s = self.slot(session)
        last = [f for f in self.forms if f[0] == s][-1]
        assert last[3:] == (self.bar, 0)  # bars of the server's metre, counted from tick 0
        return last[1:3]

    def notes(self):
        return sum(e["type"] == "note_on" for e in self.listener.events)

    def close(self):
        self.req.close()
        self.srv.close()
        self.listener.pump(0.5)
        self.listener.close()
        return self.listener.events


@pytest.fixture
def states(tmp_path):
    path = tmp_path / "states.toml"
    path.write_text(DEFAULT_STATES.read_text() + FORMED)
    return path


@pytest.fixture
def wire(model_path, states):
    made = []

    def make(model=model_path, **cfg):
        made.append(FormWire(model, states, **cfg))
        return made[-1]

    yield make
    for w in made:
        assert balance(w.close()) == set()


def test_the_server_default_reaches_every_session_and_the_runtime(wire):
    w = wire(repetition=0.4, initial_state="plain")
    assert w.ask(type="hello")["repetition"] == 0.4
    assert w.handed() == (0.4, Form())  # main, in plain (no repetition, no form), on start
    reply = w.ask(type="mood", arousal=0.8, transition="now")
    assert reply["ok"] and reply["repetition"] == 0.4
    opened = w.ask(type="session", action="open", session="b")
    assert (opened["repetition"], opened["form"]) == (0.4, {"shape": "ABAB", "bars": 8,
                                                            "bass_loop": 2, "drums_loop": 1,
                                                            "bass_share": 1.0, "drums_share": 1.0})
    assert w.handed("b") == (0.4, Form())


def test_mood_state_and_open_set_the_session_s_repetition_and_form(wire):
    w = wire(initial_state="plain")
    assert w.ask(type="hello")["repetition"] == 0.0  # ServerConfig's default
    assert w.handed() == (0.0, Form())
    assert w.ask(type="mood", repetition=0.7)["repetition"] == 0.7
    assert w.handed() == (0.7, Form())
    n = len(w.forms)
    # left out: the session's stays, and the runtime is not handed it again
    assert w.ask(type="mood", arousal=0.9, transition="now")["repetition"] == 0.7
    assert w.ask(type="key", key="D", mode="minor", transition="beat")["repetition"] == 0.7
    assert len(w.forms) == n
    # a preset's repetition and form; the message's repetition over the preset's
    assert w.ask(type="state", name="loop")["repetition"] == 1.0
    assert w.handed() == (1.0, LOOP)
    assert w.ask(type="state", name="loop", repetition=0.3, transition="now")["repetition"] == 0.3
    assert w.handed() == (0.3, LOOP)
    # a preset without either: the server's default and Form()
    assert w.ask(type="state", name="plain")["repetition"] == 0.0
    assert w.handed() == (0.0, Form())
    # session open: the message's over the preset's, the form the preset's
    opened = w.ask(type="session", action="open", session="b", state="loop", repetition=0.5)
    assert (opened["repetition"], opened["form"]) == (0.5, {"shape": "AB", "bars": 2,
                                                            "bass_loop": 1, "drums_loop": 1,
                                                            "bass_share": 1.0, "drums_share": 1.0})
    assert w.handed("b") == (0.5, LOOP)
    opened = w.ask(type="session", action="open", session="c", state="brief")
    assert (opened["repetition"], opened["form"]["bars"]) == (0.0, 1)
    assert w.handed("c") == (0.0, BRIEF)
    # the mood events carry the repetition in effect, per session (waited for, not timed: a
    # loaded machine publishes them later; once this read a fixed second and missed one)
    want = {("main", 0.7), ("main", 0.3), ("b", 0.5)}
    deadline = time.monotonic() + 30.0
    while True:
        marked = {(e["session"], e["repetition"]) for e in w.listener.events
                  if e["type"] == "mood"}
        if want <= marked or time.monotonic() > deadline:
            break
        w.listener.pump(0.1)
    assert want <= marked, marked


def test_a_stopped_session_starts_afresh_with_its_repetition_and_form(wire):
    w = wire()
    assert w.ask(type="state", name="loop", repetition=0.6, transition="now")["ok"]
    assert w.ask(type="session", action="open", session="b", state="brief")["ok"]
    assert w.ask(type="stop")["ok"]
    n = len(w.forms)
    assert w.ask(type="start")["ok"]
    assert len(w.forms) == n + 2  # the runtime opened both afresh, each without a form
    assert (w.handed(), w.handed("b")) == ((0.6, LOOP), (0.0, BRIEF))


@pytest.mark.parametrize("msg, field", [
    (dict(type="mood", repetition=1.5), "repetition"),
    (dict(type="mood", repetition=-0.1, valence=0.2), "repetition"),
    (dict(type="state", name="combat", repetition=2), "repetition"),
    (dict(type="session", action="open", session="b", repetition=1.01), "repetition"),
])
def test_repetition_out_of_range_is_refused_naming_it_and_the_music_goes_on(wire, msg, field):
    w = wire()
    w.listener.pump(0.5)
    n = len(w.forms)
    reply = w.ask(**msg)
    assert (reply["ok"], reply["code"], reply["field"], reply["allowed"]) == \
        (False, "out_of_range", field, "0.0..1.0")
    assert "repetition" in reply["message"] and "0.0..1.0" in reply["message"]
    assert len(w.forms) == n and "b" not in w.srv.sessions  # nothing changed
    before = w.notes()
    w.listener.pump(1.5)
    assert w.notes() > before, "the music stopped after a bad repetition"


def test_repetition_on_a_session_close_is_refused(wire):
    w = wire()
    assert w.ask(type="session", action="open", session="b")["ok"]
    reply = w.ask(type="session", action="close", session="b", repetition=0.5)
    assert (reply["ok"], reply["code"], reply["field"]) == (False, "unknown_field", "repetition")
    assert "b" in w.srv.sessions


def test_a_theme_longer_than_the_session_s_form_is_refused_naming_its_field(theme_model, wire):
    w = wire(model=theme_model)
    assert w.ask(type="session", action="open", session="b", state="brief")["ok"]
    for msg, field in ((dict(name="hero"), "name"), (dict(notes=MOTIF), "notes")):
        reply = w.ask(type="theme", session="b", **msg)
        assert (reply["ok"], reply["code"], reply["field"]) == (False, "out_of_range", field)
        assert reply["allowed"] == "a theme of at most 1 bars (the session's form)"
        assert "2 bars" in reply["message"] and "A in 1 bars" in reply["message"]
        assert w.srv.sessions["b"].theme is None  # nothing changed
    # the same themes fit main's forms: Form()'s 8 bars, then the loop preset's 2
    assert w.ask(type="theme", name="hero")["theme"]["bars"] == 2
    assert w.ask(type="state", name="loop")["ok"]
    assert w.ask(type="theme", notes=MOTIF, transition="now")["theme"]["bars"] == 2
    before = w.notes()
    w.listener.pump(1.5)
    assert w.notes() > before


@pytest.mark.parametrize("body, where", [
    ('form = { shape = "AXBA" }', "presets.odd.form.shape"),
    ("form = { bars = 32 }", "presets.odd.form.bars"),
    ("form = { bars = 6 }", "presets.odd.form.bars"),
    ("form = { drums_loop = 9 }", "presets.odd.form.drums_loop"),
    ("repetition = 1.5", "presets.odd.repetition"),
])
def test_a_bad_form_or_repetition_in_states_toml_stops_start_up_naming_it(
        model_path, tmp_path, body, where):
    path = tmp_path / "states.toml"
    path.write_text(DEFAULT_STATES.read_text() +
                    f"\n[presets.odd]\nvalence = 0\narousal = 0\nintensity = 0\n{body}\n")
    with pytest.raises(InvalidMessage) as info:
        Server(ServerConfig(model=str(model_path), states=str(path)), [], control=False)
    text = str(info.value)
    assert text.startswith(f"{path}, line ") and f": {where}: " in text, text
    assert info.value.field == where


@pytest.mark.parametrize("value", [1.5, -0.1, "0.5", True])
def test_a_bad_server_default_is_refused_naming_it(model_path, value):
    with pytest.raises(InvalidMessage) as info:
        Server(ServerConfig(model=str(model_path), repetition=value), [], control=False)
    assert info.value.field == "repetition" and "0.0..1.0" in str(info.value)


@pytest.mark.parametrize("value", ["1.5", "-0.1", "loop"])
def test_serve_refuses_a_repetition_outside_0_1(value, capsys):
    with pytest.raises(SystemExit) as info:
        main(["serve", "--repetition", value, "--midi", "none"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--repetition" in err and "0.0..1.0" in err
