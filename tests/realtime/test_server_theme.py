"""The `theme` message on a real server over 127.0.0.1: a theme model (the shipped generator
with random z weights) changes what plays and leaves no note hanging through themes,
blends, a mode change and going free; a plain model states a theme in its melody; a bad
theme names its field; a states file's missing .mid stops the server at start-up."""
import pytest

from engine.errors import InvalidMessage
from realtime.protocol import DEFAULT_STATES
from realtime.server import Server, ServerConfig

from .test_critic import Wire
from .test_server import balance

MOTIF = [[62, 0, 1], [65, 1, 1], [69, 2, 1], [74, 3, 1], [72, 4, 0.5], [70, 4.5, 0.5]]


@pytest.fixture(params=["theme_model", "conductor_model"])
def any_theme_model(request):
    """A theme model with one bias per theme, and one with a bias per beat of it."""
    return request.getfixturevalue(request.param)


def test_a_theme_changes_what_plays(any_theme_model):
    theme_model = any_theme_model
    pitches = {}
    for name, theme in (("free", None), ("free again", None), ("theme", MOTIF)):
        wire = Wire(theme_model, seed=2)
        try:
            if theme is not None:
                r = wire.ask(type="theme", notes=theme, transition="now", variation=0.0)
                assert r["ok"] and r["theme"]["key"] == "D minor", r
            pitches[name] = wire.notes(8)
        finally:
            assert balance(wire.close()) == set()
    assert pitches["free"] == pitches["free again"]
    assert pitches["theme"] != pitches["free"]


def test_themes_blends_modes_and_free_leave_no_note_hanging(any_theme_model):
    wire = Wire(any_theme_model, max_sessions=3)
    try:
        caps = wire.ask(type="hello")["capabilities"]["themes"]
        assert caps["loaded"] and "hero" in caps["names"]
        assert wire.ask(type="session", action="open", session="b", state="combat")["ok"]
        steps = [dict(type="theme", name="hero", transition="bar", variation=0.25),
                 dict(type="theme", notes=MOTIF, transition="beat", session="b"),
                 dict(type="key", key="A", mode="major", transition="now"),  # re-encoded
                 dict(type="theme", notes=MOTIF, blend_beats=2.0, variation=0.5),
                 dict(type="mood", valence=-0.7, transition="beat", session="b"),
                 dict(type="theme", action="free", transition="now", session="b"),
                 dict(type="theme", name="hero", transition="now", blend_beats=1.0),
                 dict(type="theme", action="free", blend_beats=4.0)]
        for msg in steps:
            wire.listener.pump(0.4)
            r = wire.ask(**msg)
            assert r["ok"], r
            if msg["type"] == "theme":
                assert (r["theme"] is None) == (msg.get("action") == "free")
        wire.listener.pump(1.0)
        assert wire.ask(type="stop")["ok"]
        assert balance(wire.listener.pump(0.5)) == set()
        assert wire.ask(type="start")["ok"]
        wire.listener.pump(0.5)
    finally:
        events = wire.close()
    themes = [e for e in events if e["type"] == "theme"]
    assert len(themes) == 6 and {e["session"] for e in themes} == {"main", "b"}
    assert {e["session"] for e in events if e["type"] == "note_on"} >= {"main", "b"}
    for session in ("main", "b"):
        assert balance([e for e in events if e.get("session") == session]) == set()


def test_a_plain_model_states_a_theme_and_bad_themes_name_their_field(model_path, theme_model):
    """No theme model: a theme by notes or name is taken all the same, and at variation 0
    the melody plays it note for note from the transition (moved to the session's key)."""
    wire = Wire(model_path)
    try:
        assert not wire.ask(type="hello")["capabilities"]["themes"]["loaded"]
        assert wire.ask(type="theme", name="hero")["theme"]["source"] == "hero"
        assert wire.ask(type="key", key="A", mode="minor", transition="now")["ok"]
        r = wire.ask(type="theme", notes=MOTIF, transition="now", variation=0.0)
        assert r["ok"] and r["theme"]["key"] == "D minor", r
        before = sum(e["type"] == "note_on" for e in wire.listener.events)
        wire.notes(before + 2 * len(MOTIF))
        ons = sorted((e["beat"], e["pitch"]) for e in wire.listener.events
                     if e["type"] == "note_on" and e["session"] == "main" and e["beat"] >= r["beat"])
        heard = [p for _, p in ons[:len(MOTIF)]]
        assert [round(b - ons[0][0], 6) for b, _ in ons[:len(MOTIF)]] == [b for _, b, _ in MOTIF], ons
        assert [p - heard[0] for p in heard] == [p - MOTIF[0][0] for p, *_ in MOTIF], ons
        assert (heard[0] - 9) % 12 == 0  # D minor's tonic moved to A minor's
        assert wire.ask(type="theme", action="free")["ok"]
    finally:
        assert balance(wire.close()) == set()
    wire = Wire(theme_model)
    try:
        for msg, code, field, text in (
                (dict(notes=MOTIF[:2]), "out_of_range", "notes", "at least 3 notes"),
                (dict(notes=[[62, 0, 1], [65, 1, 1], [130, 2, 1]]), "out_of_range", "notes",
                 "notes[2]: pitch 130"),
                (dict(notes=[[62, 0, 1], [65, 1, 0], [69, 2, 1]]), "out_of_range", "notes",
                 "more than 0 beats"),
                (dict(notes=[[60, 0, 1], [62, 1, 1], [64, 40, 1]]), "out_of_range", "notes",
                 "at most 8 bars"),
                (dict(notes="not json"), "bad_type", "notes", "not JSON"),
                (dict(name="villain"), "bad_choice", "name", "hero"),
                (dict(), "missing_field", "notes,name", "notes or name"),
                (dict(action="free", name="hero"), "unknown_field", "name", "free"),
                (dict(notes=MOTIF, variation=1.5), "out_of_range", "variation", "0.0..1.0"),
                (dict(notes=MOTIF, blend_beats=-1), "out_of_range", "blend_beats", "0.0..64.0")):
            r = wire.ask(type="theme", **msg)
            assert not r["ok"] and (r["code"], r["field"]) == (code, field), r
            assert text in r["message"], r
        wire.notes(4)
    finally:
        assert balance(wire.close()) == set()


def test_a_missing_theme_file_stops_the_server_at_start_up(model_path, tmp_path):
    states = tmp_path / "states.toml"
    shipped = DEFAULT_STATES
    states.write_text(shipped.read_text() + '\n[themes.villain]\nmidi = "villain.mid"\n')
    with pytest.raises(InvalidMessage, match=r"themes\.villain.*villain\.mid"):
        Server(ServerConfig(model=str(model_path), states=str(states)), [], control=False)
    states.write_text(shipped.read_text() + "\n[themes.bad]\nnotes = [[60, 0, 1]]\n")
    with pytest.raises(InvalidMessage, match=r"themes\.bad.*at least 3 notes"):
        Server(ServerConfig(model=str(model_path), states=str(states)), [], control=False)
