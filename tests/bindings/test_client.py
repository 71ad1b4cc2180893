"""The Python client against a live ControlServer, and EventListener against a real PUB."""
import socket
import time

import numpy as np
import pytest
import zmq

from bindings import Client, EventListener
from bindings.client import ServerError, ServerUnavailable
from engine.controls import STYLES
from realtime import protocol

from .conftest import MOTIF, VOICES, VOICES_SENT


def free_tcp_address():
    """An address nobody listens on (a port the OS just gave out and took back)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def test_every_method_sends_the_validated_message(control_server):
    address, recorded = control_server
    with Client(address, timeout=5) as client:
        hello = client.hello()
        assert hello["protocol"] == protocol.PROTOCOL_VERSION and "combat" in hello["states"]
        assert hello["server"] == "ostinato"
        assert client.mood(arousal=0.9)["for"] == "mood"
        client.mood(-0.5, 0.1, 0.2, transition="now", tonality=0.7, critic=0)
        client.state("combat", critic=0)
        client.tempo(150, ramp_beats=8)
        client.key("eb", mode="minor", transition="beat")
        client.stinger("hit", transition="now")
        client.start()
        client.pause()
        client.stop()
        client.open_session("p2", state="stealth")
        client.mood(valence=0.3, session="p2")
        client.close_session("p2")
        pong = client.ping()
        assert pong["type"] == "pong" and pong["rtt_ns"] > 0
    got = [(m["type"], m["session"]) for m in recorded]
    assert got == [("hello", "main"), ("mood", "main"), ("mood", "main"), ("state", "main"),
                   ("tempo", "main"), ("key", "main"), ("stinger", "main"), ("start", "main"),
                   ("pause", "main"), ("stop", "main"), ("session", "p2"), ("mood", "p2"),
                   ("session", "p2"), ("ping", "main")]
    assert recorded[1]["valence"] is None and recorded[1]["arousal"] == 0.9
    assert recorded[2]["transition"] == "now" and recorded[2]["valence"] == -0.5
    assert (recorded[2]["tonality"], recorded[2]["critic"]) == (0.7, 0)
    assert recorded[1]["critic"] is None and recorded[3]["critic"] == 0
    assert (recorded[4]["bpm"], recorded[4]["ramp_beats"]) == (150.0, 8.0)
    assert (recorded[5]["key"], recorded[5]["mode"]) == ("Eb", "minor")
    assert recorded[10]["action"] == "open" and recorded[10]["state"] == "stealth"
    assert recorded[12]["action"] == "close" and recorded[12]["state"] is None


def test_error_replies_raise_server_error(control_server):
    address, recorded = control_server
    with Client(address, timeout=5) as client:
        with pytest.raises(ServerError) as info:
            client.tempo(1000)
        assert (info.value.code, info.value.field, info.value.allowed) == ("out_of_range", "bpm", "30.0..300.0")
        with pytest.raises(ServerError) as info:  # this server was started without a critic
            client.mood(critic=3)
        assert (info.value.code, info.value.field) == ("out_of_range", "critic")
        with pytest.raises(ServerError) as info:
            client.state("napping")
        assert info.value.code == "bad_choice" and "combat" in info.value.allowed
        with pytest.raises(ServerError) as info:
            client.mood()
        assert info.value.code == "missing_field"
        with pytest.raises(ServerError) as info:  # semantic error from the engine
            client.close_session("never-opened")
        assert (info.value.code, info.value.field) == ("bad_choice", "session")
        assert client.start()["ok"]  # still in step after errors


def test_theme_by_notes_and_by_name_and_free_on_a_theme_model(theme_control_server):
    """theme() sends notes (numpy arrays as plain lists, whole pitches as integers) or a
    name, with variation/blend_beats only when given; the reply says what was understood;
    free_theme() goes back to free composition."""
    address, recorded = theme_control_server
    with Client(address, timeout=5) as client:
        reply = client.theme(MOTIF, variation=0.2, transition="now")
        assert reply["for"] == "theme" and reply["theme"]["key"] == "D minor", reply
        assert (reply["theme"]["notes"], reply["variation"], reply["blend_beats"]) == (6, 0.2, 0.0)
        reply = client.theme(np.array(MOTIF, dtype=np.float64), blend_beats=2)  # float pitches
        assert reply["theme"] == {"key": "D minor", "bars": 2, "notes": 6, "source": "notes"}
        reply = client.theme(name="hero", variation=0.5, transition="beat")
        assert reply["theme"]["source"] == "hero" and reply["theme"]["key"] == "D minor"
        client.open_session("p2")
        assert client.theme(MOTIF, session="p2")["session"] == "p2"
        reply = client.free_theme(transition="now", blend_beats=4)
        assert reply["theme"] is None and reply["blend_beats"] == 4.0
        assert client.free_theme()["theme"] is None
    themes = [m for m in recorded if m["type"] == "theme"]
    assert [(m["action"], m["session"], m["name"], m["transition"]) for m in themes] == [
        ("set", "main", None, "now"), ("set", "main", None, "bar"), ("set", "main", "hero", "beat"),
        ("set", "p2", None, "bar"), ("free", "main", None, "now"), ("free", "main", None, "bar")]
    assert themes[0]["notes"] == MOTIF and themes[1]["notes"] == MOTIF
    assert all(type(n[0]) is int for m in themes[:2] for n in m["notes"])  # pitches as integers
    assert [(m["variation"], m["blend_beats"]) for m in themes] == [  # None: the defaults
        (0.2, 0.0), (0.3, 2.0), (0.5, 0.0), (0.3, 0.0), (0.3, 4.0), (0.3, 0.0)]
    assert themes[4]["notes"] is None and themes[2]["notes"] is None


def test_themes_on_any_model_and_bad_ones_raise_server_error_naming_the_field(
        control_server, theme_control_server):
    """The shipped model is no theme model and a theme model's server is: either takes a
    theme by notes or by name, the reply saying what was understood, and action free; a
    bad theme is refused on notes whatever the model."""
    for address in (control_server[0], theme_control_server[0]):
        with Client(address, timeout=5) as client:
            assert client.theme(MOTIF)["theme"] == {"key": "D minor", "bars": 2, "notes": 6,
                                                    "source": "notes"}
            assert client.theme(name="hero")["theme"]["source"] == "hero"
            assert client.free_theme()["ok"]
            with pytest.raises(ServerError) as info:  # two notes: too few
                client.theme(MOTIF[:2])
            assert (info.value.code, info.value.field) == ("out_of_range", "notes")
            assert "at least 3 notes" in str(info.value)
            with pytest.raises(ServerError) as info:  # neither notes nor name
                client.theme(variation=0.5)
            assert (info.value.code, info.value.field) == ("missing_field", "notes,name")
            with pytest.raises(ServerError) as info:
                client.theme(MOTIF, name="hero")
            assert info.value.code == "unknown_field"


def test_voices_on_mood_state_and_open_session(ensemble_control_server):
    """voices= goes as the protocol's object (validation's normalised form reaches the
    server) on mood (alone, a mood of voices only), state and session open; the ensemble
    model takes them, and its hello lists the voices with their channels and programs."""
    address, recorded = ensemble_control_server
    with Client(address, timeout=5) as client:
        voices = client.hello()["capabilities"]["voices"]
        assert [(v["name"], v["channel"], v["program"]) for v in voices] == [
            ("melody", 0, 73), ("bass", 1, 33), ("harmony", 2, 48), ("drums", 9, 0)]
        assert client.mood(voices=VOICES)["ok"]
        assert client.mood(arousal=0.9, voices={"drums": True}, transition="now")["ok"]
        assert client.state("stealth", voices={"bass": {"program": 38}})["ok"]
        assert client.open_session("p2", state="calm", voices={"melody": {"channel": 5}})["ok"]
        client.state("combat")  # no voices: none sent
    sent = [(m["type"], m.get("voices")) for m in recorded[1:]]
    assert sent == [("mood", VOICES_SENT), ("mood", {"drums": {"play": True}}),
                    ("state", {"bass": {"program": 38}}), ("session", {"melody": {"channel": 5}}),
                    ("state", None)]


def test_repetition_on_mood_state_and_open_session(control_server):
    """repetition= goes on mood (alone, a mood of repetition only), state and session open;
    the replies carry the repetition in effect (the server's default where none is set), the
    open reply the session's form too; out of range is refused naming the field."""
    address, recorded = control_server
    with Client(address, timeout=5) as client:
        assert client.hello()["repetition"] == 0.0
        assert client.mood(repetition=0.6)["repetition"] == 0.6
        assert client.mood(arousal=0.7)["repetition"] == 0.6  # left out: the session's stays
        assert client.state("combat", repetition=0.9)["repetition"] == 0.9
        assert client.state("explore")["repetition"] == 0.85  # the preset's (states.toml)
        opened = client.open_session("p2", state="calm", repetition=0.3)
        assert opened["repetition"] == 0.3
        assert opened["form"] == {"shape": "ABAB", "bars": 8, "bass_loop": 2, "drums_loop": 1,
                                 "bass_share": 1.0, "drums_share": 1.0}
        client.close_session("p2")
        with pytest.raises(ServerError) as info:
            client.mood(repetition=1.5)
        assert (info.value.code, info.value.field, info.value.allowed) == \
            ("out_of_range", "repetition", "0.0..1.0")
    sent = [(m["type"], m.get("repetition")) for m in recorded[1:]]
    assert sent == [("mood", 0.6), ("mood", None), ("state", 0.9), ("state", None),
                    ("session", 0.3), ("session", None)]


def test_style_on_mood_and_state(styled_control_server):
    """style= goes on mood (alone, a mood of style only) and state, to a server whose model is
    told styles (its hello lists them); the replies carry the style in effect (the preset's,
    none, where a state gives none); one no model knows is refused naming the field."""
    address, recorded = styled_control_server
    with Client(address, timeout=5) as client:
        assert client.hello()["capabilities"]["styles"] == list(STYLES)
        assert client.mood(style="baroque")["style"] == "baroque"
        assert client.mood(arousal=0.7)["style"] == "baroque"  # left out: the session's stays
        assert client.state("combat", style="game")["style"] == "game"
        assert client.state("explore")["style"] is None  # the preset's (states.toml): none
        with pytest.raises(ServerError) as info:
            client.mood(style="jazz")
        assert (info.value.code, info.value.field, info.value.allowed) == \
            ("bad_choice", "style", list(STYLES))
    sent = [(m["type"], m.get("style")) for m in recorded[1:]]
    assert sent == [("mood", "baroque"), ("mood", None), ("state", "game"), ("state", None)]


def test_style_refused_by_a_model_told_none(control_server, live_server):
    """The shipped model is told no styles: its hello lists none, its replies carry none,
    and a mood's or a state's style is refused out_of_range on field style."""
    if live_server.music.spec.styles:
        pytest.skip("the shipped model is told styles: no model here is told none")
    address, recorded = control_server
    with Client(address, timeout=5) as client:
        assert client.hello()["capabilities"]["styles"] == []
        assert client.mood(arousal=0.7)["style"] is None
        for call in (lambda: client.mood(style="game"), lambda: client.state("combat", style="game")):
            with pytest.raises(ServerError) as info:
                call()
            assert (info.value.code, info.value.field) == ("out_of_range", "style")
        assert client.state("combat")["style"] is None  # still in step
    assert [(m["type"], m.get("style")) for m in recorded[1:]] == [
        ("mood", None), ("mood", "game"), ("state", "game"), ("state", None)]


def test_voices_refused_naming_the_part(control_server, ensemble_control_server):
    """A bad value is refused by validation naming its part, whatever the model; the
    one-line model refuses any voices on field voices; an ensemble session a channel
    another of its voices has."""
    with Client(ensemble_control_server[0], timeout=5) as client:
        for voices, code, field in (({"kazoo": True}, "bad_choice", "voices"),
                                    ({"bass": {"program": 128}}, "out_of_range", "voices.bass.program"),
                                    (dict.fromkeys(("melody", "bass", "harmony", "drums"), False),
                                     "out_of_range", "voices"),
                                    ({"bass": {"channel": 0}}, "out_of_range", "voices")):  # melody's
            with pytest.raises(ServerError) as info:
                client.mood(voices=voices)
            assert (info.value.code, info.value.field) == (code, field), str(info.value)
        assert client.mood(voices={"bass": {"channel": 0}, "melody": {"channel": 3}})["ok"]  # a swap
    with Client(control_server[0], timeout=5) as client:
        with pytest.raises(ServerError) as info:
            client.mood(voices={"drums": True})
        assert (info.value.code, info.value.field) == ("out_of_range", "voices")
        assert "ensemble" in str(info.value)


def test_timeout_when_nothing_listens_and_recovery():
    address = free_tcp_address()
    with Client(address, timeout=0.3) as client:
        t0 = time.monotonic()
        with pytest.raises(ServerUnavailable, match="no reply"):
            client.ping()
        assert time.monotonic() - t0 < 5  # generous: only checks that it does not hang
        with pytest.raises(ServerUnavailable):
            client.mood(arousal=1)


def test_late_reply_does_not_desync(control_server):
    address, recorded = control_server
    with Client(address, timeout=5) as client:
        client.timeout = 0.0  # expire at once: the reply to this ping arrives late
        with pytest.raises(ServerUnavailable):
            client.ping()
        client.timeout = 5
        reply = client.stop()
        assert reply["for"] == "stop"


def test_send_nowait_and_poll_replies(control_server):
    address, recorded = control_server
    with Client(address, timeout=5) as client:
        ids = [client.send_nowait("mood", arousal=i / 10) for i in range(5)]
        ids.append(client.send_nowait("tempo", bpm=1))
        replies = []
        deadline = time.monotonic() + 5
        while len(replies) < len(ids) and time.monotonic() < deadline:
            replies += client.poll_replies()
            time.sleep(0.005)
        assert sorted(r["id"] for r in replies) == ids
        assert [r["ok"] for r in replies if r["id"] == ids[-1]] == [False]
        assert [m["arousal"] for m in recorded] == [0.0, 0.1, 0.2, 0.3, 0.4]


def test_default_session_of_a_client(control_server):
    address, recorded = control_server
    with Client(address, timeout=5, session="layer2") as client:
        client.open_session("layer2")
        client.state("calm")
    assert [m["session"] for m in recorded] == ["layer2", "layer2"]


def test_event_listener_reads_the_stream():
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.bind("tcp://127.0.0.1:*")
    address = pub.getsockopt(zmq.LAST_ENDPOINT).decode()
    try:
        with EventListener(address, types=["note_on", "tempo"], timeout=0.2) as listener:
            # PUB drops messages until the subscription arrives: publish until one is seen.
            deadline = time.monotonic() + 5
            while listener.recv(timeout=0.02) is None and time.monotonic() < deadline:
                pub.send(protocol.encode_event("tempo", "main", 0, 0, 0.0, bpm=100.0))
            for seq in range(1, 4):
                pub.send(protocol.encode_event("note_off", "main", seq, 10, seq, 0, 60, 0))
                pub.send(protocol.encode_event("note_on", "main", seq, 10, seq + 0.5, 9, 36 + seq, 80,
                                               voice="drums"))
            events = list(listener)
        assert [e["pitch"] for e in events if e["type"] == "note_on"] == [37, 38, 39]
        assert [e["voice"] for e in events if e["type"] == "note_on"] == ["drums"] * 3
        assert all(e["type"] in ("note_on", "tempo") for e in events)
    finally:
        pub.close(0)
        ctx.term()


def test_notes_run_ahead_and_due_in_puts_them_on_this_clock(playing_server):
    """With the stream 40 ms ahead, each note arrives before its t_ns; sync_clock finds the
    server's clock, which on one machine is this one's (offset within a round trip), and
    due_in is t_ns minus now on this clock.  Correctness only: no figure is timed."""
    control, events = playing_server
    with Client(control) as client:
        offset = client.sync_clock(pings=4)
        assert client.clock_offset_ns == offset
        rtts = [client.ping()["rtt_ns"] for _ in range(3)]
    assert abs(offset) <= max(rtts) + 50_000_000  # the same CLOCK_MONOTONIC, to within a ping
    with EventListener(events, types=["note_on"], timeout=5) as listener:
        for _, event in zip(range(5), listener):
            before = time.monotonic_ns()
            due = EventListener.due_in(event, offset)
            after = time.monotonic_ns()
            assert before - 1000 <= event["t_ns"] - offset - due * 1e9 <= after + 1000
