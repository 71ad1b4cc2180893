"""A live server for the binding tests: the real music engine behind the real transports.

``control_server`` and ``osc_server`` run ``realtime.server.Server`` on the shipped model
(OSTINATO_TEST_MODEL overrides it), with its ZeroMQ control socket or the OSC endpoint
on a free port.  They yield (address or port, recorded messages): the recorder wraps the
server's handler, so the tests also see what each client actually sent.
``playing_server`` plays on the shipped model, publishing its notes 40 ms ahead on an
event stream (``serve --events-ahead 40``): it yields (control address, event address),
for the clients' event listeners and clock sync.  ``playing_osc_server`` is the same
behind the OSC endpoint, which relays that stream: it yields (OSC port, event address).
``theme_control_server`` and ``theme_osc_server`` are the same on a theme model (the shipped
model with a theme encoder, as tests/realtime/test_server_theme.py builds it): both take a
theme (the melody states it); the theme model's encoder also steers the music towards it.
``ensemble_control_server`` and ``ensemble_osc_server`` run the shipped ensemble model, which
takes ``voices`` (the default one-line model refuses them, naming the field).
``styled_control_server`` and ``styled_osc_server`` run the shipped ensemble told styles
(tests/conftest.py's ``styled_ensemble``), which takes ``style`` (a model told none refuses it,
naming the field).
"""
import os
import threading

import pytest

from engine import DEFAULT_ENSEMBLE, DEFAULT_MODEL
from realtime.control import ControlServer
from realtime.osc import OscServer
from realtime.outputs import ZmqPubPort
from realtime.server import Server, ServerConfig

# What every binding sends as voices, and what validation makes of it: the drums out, the
# harmony a warm pad an octave down, the bass left to layering.
VOICES = {"drums": False, "harmony": {"program": 89, "octave": -1}, "bass": "auto"}
VOICES_SENT = {"drums": {"play": False}, "harmony": {"program": 89, "octave": -1},
               "bass": {"play": "auto"}}

# A theme in D minor (up the triad to the octave, down the scale): what every binding sends.
MOTIF = [[62, 0, 1], [65, 1, 1], [69, 2, 1], [74, 3, 1], [72, 4, 0.5], [70, 4.5, 0.5]]


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


def _model():
    return os.environ.get("OSTINATO_TEST_MODEL") or str(DEFAULT_MODEL)


@pytest.fixture
def live_server():
    yield from _live(_model())


@pytest.fixture
def live_theme_server(theme_model):
    yield from _live(theme_model)


def _live(model):
    """A server on ``model`` (a path) with no outputs and no control socket of its own."""
    with Server(ServerConfig(model=str(model)), ports=[], control=False) as srv:
        yield srv


def _control(live):
    engine = Recorder(live)
    with ControlServer(engine, "tcp://127.0.0.1:*", on_client_lost=live.client_lost) as server:
        yield server.bound_address, engine.messages


def _osc(live):
    engine = Recorder(live)
    with OscServer(engine, port=0) as server:
        yield server.port, engine.messages


@pytest.fixture
def playing_server():
    stream = ZmqPubPort("tcp://127.0.0.1:*", ahead_ms=40.0)
    with Server(ServerConfig(model=_model()), ports=[stream], control=False) as srv:
        with ControlServer(srv.handle, "tcp://127.0.0.1:*", on_client_lost=srv.client_lost) as server:
            srv.call("start")
            yield server.bound_address, stream.bound_address


@pytest.fixture
def playing_osc_server():
    stream = ZmqPubPort("tcp://127.0.0.1:*", ahead_ms=40.0)
    with Server(ServerConfig(model=_model()), ports=[stream], control=False) as srv:
        with OscServer(srv.handle, port=0, events=stream) as server:
            srv.call("start")
            yield server.port, stream.bound_address


@pytest.fixture
def live_ensemble_server():
    yield from _live(DEFAULT_ENSEMBLE)


@pytest.fixture
def ensemble_control_server(live_ensemble_server):
    yield from _control(live_ensemble_server)


@pytest.fixture
def ensemble_osc_server(live_ensemble_server):
    yield from _osc(live_ensemble_server)


@pytest.fixture
def live_styled_server(styled_ensemble):
    yield from _live(styled_ensemble)


@pytest.fixture
def styled_control_server(live_styled_server):
    yield from _control(live_styled_server)


@pytest.fixture
def styled_osc_server(live_styled_server):
    yield from _osc(live_styled_server)


@pytest.fixture
def control_server(live_server):
    yield from _control(live_server)


@pytest.fixture
def osc_server(live_server):
    yield from _osc(live_server)


@pytest.fixture
def theme_control_server(live_theme_server):
    yield from _control(live_theme_server)


@pytest.fixture
def theme_osc_server(live_theme_server):
    yield from _osc(live_theme_server)


def check_tonality_and_critic(lines, recorded):
    """What the C and C# examples print and send for tonality and critic: the reply to
    each change carries the tonality and critic then in effect; the calls with them send
    both (critic as a JSON integer, which validation insists on); the plain calls neither."""
    for expected in ("mood-ex tonality 0.9 critic 0", "state-ex tonality 0.25 critic 0",
                     "key-ex tonality 0.75 critic 0", "mood-kept tonality 0.75 critic 0",
                     "bad-tonality error out_of_range tonality",
                     "critic-3 error out_of_range critic"):  # this test server loads no critic
        assert expected in lines, (expected, lines)
    mood_ex, state_ex, key_ex, critic3, kept = recorded[5:10]
    assert (mood_ex["type"], mood_ex["tonality"], mood_ex["critic"], mood_ex["transition"]) == \
        ("mood", 0.9, 0, "now")
    assert (mood_ex["valence"], mood_ex["arousal"], mood_ex["intensity"]) == (None, None, None)
    assert type(mood_ex["critic"]) is int
    assert (state_ex["name"], state_ex["tonality"], state_ex["critic"]) == ("combat", 0.25, None)
    assert (key_ex["key"], key_ex["mode"], key_ex["transition"], key_ex["tonality"],
            key_ex["critic"]) == ("A", None, "beat", 0.75, 0)
    assert (critic3["type"], critic3["critic"], critic3["tonality"]) == ("mood", 3, None)
    assert type(critic3["critic"]) is int
    assert (kept["intensity"], kept["tonality"], kept["critic"]) == (0.6, None, None)
    for plain in (recorded[1], recorded[2], recorded[4]):  # mood, state, key without them
        assert (plain["tonality"], plain["critic"]) == (None, None), plain


def check_example_themes(lines, recorded):
    """What the C and C# examples print and send for themes: by notes (pitches as JSON
    integers), by name and free, each with its fields and the null ones left out; the
    replies carry the theme understood; a 2-note theme is refused naming notes."""
    for expected in ("theme-notes ok", "theme-notes theme D minor 6 notes", "theme-name ok",
                     "theme-name theme D minor 10 notes", "theme-bad error out_of_range notes",
                     "theme-free ok", "stop ok"):
        assert expected in lines, (expected, lines)
    by_notes, by_name, free = [m for m in recorded if m["type"] == "theme"]  # bad: not validated
    assert by_notes["notes"] == MOTIF and all(type(n[0]) is int for n in by_notes["notes"])
    assert (by_notes["variation"], by_notes["transition"], by_notes["blend_beats"]) == (0.2, "now", 0.0)
    assert (by_name["name"], by_name["variation"], by_name["transition"], by_name["blend_beats"]) == \
        ("hero", 0.3, "bar", 2.0)
    assert (free["action"], free["transition"], free["notes"], free["name"]) == ("free", "beat", None, None)


def check_example_voices(lines, recorded, ensemble):
    """What the C and C# examples print and send for voices: a mood with the voices alone,
    a state with the drums out, and a program out of range that validation refuses naming
    voices.bass.program.  An ensemble model takes the first two; the one-line model refuses
    them on field voices."""
    answer = "ok" if ensemble else "error out_of_range voices"
    for expected in (f"voices {answer}", f"state-voices {answer}",
                     "bad-voices error out_of_range voices.bass.program"):
        assert expected in lines, (expected, lines)
    mood, state = [m for m in recorded if m.get("voices") is not None]
    assert (mood["type"], mood["voices"], mood["valence"], mood["transition"]) == \
        ("mood", VOICES_SENT, None, "bar")
    assert (state["type"], state["name"], state["voices"]) == ("state", "calm", {"drums": {"play": False}})


def check_example_style(lines, recorded, styles):
    """What the C and C# examples print and send for style: a mood with it alone and a state
    with it.  A server whose model is told ``styles`` takes both, each reply carrying the
    style then in effect; one told none refuses both on field style (after validation, so
    they are recorded).  A style no model knows is refused by validation naming the field."""
    told = {"style": "baroque", "state-style": "game"}
    for what, style in told.items():
        expected = f"{what} style {style}" if style in styles else f"{what} error out_of_range style"
        assert expected in lines, (expected, lines)
    assert "bad-style error bad_choice style" in lines, lines
    mood, state = [m for m in recorded if m.get("style") is not None]
    assert (mood["type"], mood["style"], mood["valence"], mood["repetition"], mood["transition"]) == \
        ("mood", "baroque", None, None, "bar")
    assert (state["type"], state["name"], state["style"], state["tonality"], state["transition"]) == \
        ("state", "combat", "game", None, "bar")


def check_example_repetition(lines, recorded):
    """What the C and C# examples print and send for repetition: a mood with it alone, a
    state and a session open with it, each reply carrying the repetition then in effect;
    one out of range refused by validation naming the field."""
    for expected in ("repetition ok", "repetition repetition 0.6", "state-repetition repetition 0.9",
                     "open-repetition repetition 0.3", "close-repetition ok",
                     "bad-repetition error out_of_range repetition"):
        assert expected in lines, (expected, lines)
    mood, state, opened = [m for m in recorded if m.get("repetition") is not None]
    assert (mood["type"], mood["repetition"], mood["valence"], mood["transition"]) == \
        ("mood", 0.6, None, "bar")
    assert (state["type"], state["name"], state["repetition"], state["tonality"]) == \
        ("state", "combat", 0.9, None)
    assert (opened["type"], opened["session"], opened["action"], opened["state"], opened["repetition"]) == \
        ("session", "player3", "open", "calm", 0.3)
