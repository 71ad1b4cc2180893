"""bindings/godot: run the GDScript client in headless Godot 3 against the OSC endpoint."""
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from bindings import EventListener
from engine.controls import STYLES

from .conftest import MOTIF

ROOT = Path(__file__).resolve().parents[2]


def godot_command():
    """The headless Godot 3 command, or skip saying why there is none."""
    if shutil.which("godot3-server"):
        return ["godot3-server"]
    if shutil.which("godot3"):
        if os.environ.get("DISPLAY"):
            return ["godot3", "--no-window"]
        pytest.skip("godot3 needs an X11 display even with --no-window; install the headless "
                    "runtime (Debian godot3-server) to run this test")
    pytest.skip("Godot 3 not installed (Debian godot3-server): GDScript client not tested")


def run_client(port, tmp_path, script="godot_client_test.gd"):
    """``script`` (in tests/bindings) run headless against the OSC endpoint on ``port``: its output."""
    env = dict(os.environ, OSTINATO_OSC_PORT=str(port), OSTINATO_GD=str(ROOT / "bindings/godot/ostinato.gd"),
               HOME=str(tmp_path))  # Godot writes its user data under HOME
    done = subprocess.run([*godot_command(), "-s", str(ROOT / "tests/bindings" / script)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


# The theme calls at the end of godot_client_test.gd, ids 20..23, on a theme model's server
# (and on any other).
THEME_REPLIES = {"20": "ok theme ack", "21": "ok theme ack",
                 "22": "error out_of_range notes 3..512 [pitch 0..127, start_beat >= 0, "
                       "duration_beats > 0], at most 8 bars of 4 beats",
                 "23": "ok theme ack"}


def style_replies(styles):
    """What the style calls at the end of godot_client_test.gd, ids 29..31, are answered on a
    server whose model is told ``styles``: taken by one told them, refused naming style by one
    told none; a style no model knows is refused by validation, naming style too."""
    refused = "error out_of_range style none (this server's model has no styles)"
    return {"29": "ok mood ack" if styles else refused, "30": "ok state ack" if styles else refused,
            "31": "error bad_choice style game, baroque, classical, renaissance"}


def test_gdscript_client_against_the_osc_endpoint(osc_server, live_server, tmp_path):
    port, recorded = osc_server
    out = run_client(port, tmp_path)
    replies = dict(re.findall(r"^reply (\d+) (.*)$", out, re.M))
    assert replies == {
        "1": "ok hello hello", "2": "ok mood ack", "3": "ok state ack", "4": "ok tempo ack",
        "5": "ok key ack", "6": "ok mood ack", "7": "ok state ack", "8": "ok key ack",
        "9": "error out_of_range tonality 0.0..1.0",
        "10": "error out_of_range critic 0 (this server has no critic: serve --critic PATH)",
        "11": "error bad_type critic 0..16", "12": "ok mood ack", "13": "ok stinger ack",
        "14": "ok start ack", "15": "error out_of_range bpm 30.0..300.0", "16": "ok session ack",
        "17": "ok mood ack", "18": "ok session ack", "19": "ok ping pong",
        # the shipped model is no theme model: it takes themes all the same
        **THEME_REPLIES,
        "24": "ok mood ack", "25": "ok state ack", "26": "ok session ack", "27": "ok session ack",
        "28": "error out_of_range repetition 0.0..1.0",
        **style_replies(live_server.music.spec.styles)}
    themes = dict(re.findall(r"^theme (\d+) (.*)$", out, re.M))  # what the server understood
    assert themes == {"20": "D minor 10 hero", "21": "D minor 6 notes"}, out
    # tonality and critic in effect, from the acks' JSON (Godot's JSON numbers are floats)
    effect = {i: (float(t), float(k)) for i, t, k in
              re.findall(r"^effect (\d+) (\S+) (\S+)$", out, re.M)}
    assert (effect["6"], effect["7"], effect["8"], effect["12"]) == ((0.9, 0), (0.25, 0), (0.75, 0), (0.75, 0))
    # bad tonality and the fractional critic fail validation, so the handler never sees
    # them; critic 3 is valid and is refused by the server (no critic), so it is recorded.
    assert [(m["type"], m["session"]) for m in recorded] == [
        ("hello", "main"), ("mood", "main"), ("state", "main"), ("tempo", "main"), ("key", "main"),
        ("mood", "main"), ("state", "main"), ("key", "main"), ("mood", "main"), ("mood", "main"),
        ("stinger", "main"), ("start", "main"), ("session", "player2"), ("mood", "player2"),
        ("session", "player2"), ("ping", "main"), ("theme", "main"), ("theme", "main"), ("theme", "main"),
        ("mood", "main"), ("state", "main"), ("session", "player3"), ("session", "player3"),
        ("mood", "main"), ("state", "main")]  # the style calls: refused after validation
    mood, key, second = recorded[1], recorded[4], recorded[13]
    assert (mood["valence"], mood["arousal"], mood["intensity"], mood["transition"]) == (0.5, 0.8, None, "now")
    assert (key["key"], key["mode"]) == ("D", "minor")
    assert (second["valence"], second["arousal"]) == (None, 0.2)
    assert recorded[12]["state"] == "stealth" and recorded[15]["id"] == 19
    # tonality and critic as sent: OSC nil where left out (the server's "not given")
    mood_ex, state_ex, key_ex, critic3, kept = recorded[5:10]
    assert (mood_ex["valence"], mood_ex["arousal"], mood_ex["intensity"], mood_ex["transition"],
            mood_ex["tonality"], mood_ex["critic"]) == (None, None, None, "now", 0.9, 0)
    assert (state_ex["name"], state_ex["tonality"], state_ex["critic"]) == ("combat", 0.25, None)
    assert (key_ex["key"], key_ex["mode"], key_ex["transition"], key_ex["tonality"], key_ex["critic"]) == \
        ("A", None, "beat", 0.75, 0)
    assert (critic3["critic"], critic3["tonality"]) == (3, None)
    assert type(key_ex["critic"]) is int and type(critic3["critic"]) is int  # OSC ints
    assert (kept["intensity"], kept["tonality"], kept["critic"]) == (0.6, None, None)
    for plain in (recorded[1], recorded[2], recorded[4]):  # calls without them send neither
        assert (plain["tonality"], plain["critic"]) == (None, None), plain
    # repetition after voices (nil): in effect in the acks, as sent on the wire
    repetition = {i: float(r) for i, r in re.findall(r"^repetition (\d+) (\S+)$", out, re.M)}
    assert {i: repetition[i] for i in ("6", "24", "25", "26")} == \
        {"6": 0.85, "24": 0.6, "25": 0.9, "26": 0.3}  # 6: the initial preset's
    mood, state, opened, closed = recorded[19:23]
    assert (mood["repetition"], mood["voices"], mood["valence"]) == (0.6, None, None)
    assert (state["name"], state["repetition"], state["voices"]) == ("combat", 0.9, None)
    assert (opened["action"], opened["state"], opened["repetition"]) == ("open", "calm", 0.3)
    assert (closed["action"], closed["repetition"]) == ("close", None)
    assert all(m.get("repetition") is None for m in recorded[:19])
    check_style_sent(recorded)


def check_style_sent(recorded):
    """The style calls as sent: after repetition (nil), the other fields nil; none before."""
    mood, state = recorded[23:25]
    assert (mood["type"], mood["style"], mood["repetition"], mood["valence"], mood["transition"]) == \
        ("mood", "baroque", None, None, "bar")
    assert (state["name"], state["style"], state["repetition"], state["voices"], state["transition"]) == \
        ("combat", "game", None, None, "bar")
    assert all(m.get("style") is None for m in recorded[:23])


def test_gdscript_style_on_a_server_told_styles(styled_osc_server, tmp_path):
    """mood's and state's style, after repetition, reaches a server whose model is told
    styles; the acks' data carries the style in effect; an unknown one is refused naming it."""
    port, recorded = styled_osc_server
    out = run_client(port, tmp_path)
    replies = dict(re.findall(r"^reply (\d+) (.*)$", out, re.M))
    expected = style_replies(STYLES)
    assert {i: replies[i] for i in expected} == expected, replies
    assert dict(re.findall(r"^style (\d+) (.*)$", out, re.M)) == {"29": "baroque", "30": "game"}, out
    assert [m["type"] for m in recorded[23:]] == ["mood", "state"]
    check_style_sent(recorded)


def test_gdscript_themes_on_a_theme_model(theme_osc_server, tmp_path):
    """theme() sends a name positionally, or notes as JSON text (JSON.print) after nil name
    and action; free_theme() action free; the acks' data.theme says what was understood."""
    port, recorded = theme_osc_server
    out = run_client(port, tmp_path)
    replies = dict(re.findall(r"^reply (\d+) (.*)$", out, re.M))
    assert {i: replies[i] for i in THEME_REPLIES} == THEME_REPLIES, replies
    themes = dict(re.findall(r"^theme (\d+) (.*)$", out, re.M))
    assert themes == {"20": "D minor 10 hero", "21": "D minor 6 notes"}, out
    by_name, by_notes, free = [m for m in recorded if m["type"] == "theme"]  # 22: not validated
    assert (by_name["name"], by_name["variation"], by_name["transition"], by_name["blend_beats"],
            by_name["notes"]) == ("hero", 0.25, "beat", 0.0, None)
    assert by_notes["notes"] == MOTIF and all(type(n[0]) is int for n in by_notes["notes"])
    assert (by_notes["name"], by_notes["action"], by_notes["variation"], by_notes["transition"],
            by_notes["blend_beats"]) == (None, "set", 0.3, "now", 2.0)
    assert (free["action"], free["transition"], free["blend_beats"]) == ("free", "bar", 1.5)


def test_gdscript_events_and_clock_over_osc(playing_osc_server, tmp_path):
    """subscribe() gets the notes the server plays, relayed from its event stream, each as
    the stream published it (seq, t_ns, pitch: the same as a ZeroMQ subscriber's);
    sync_clock() puts Godot's clock on the server's, so due_in is t_ns on Godot's clock
    minus now; an unknown type is refused naming the field; after unsubscribe() none come."""
    port, events_address = playing_osc_server
    heard, stop = {}, threading.Event()

    def listen():
        with EventListener(events_address, types=["note_on", "note_off"], timeout=0.1) as listener:
            while not stop.is_set():
                event = listener.recv(0.1)
                if event is not None:
                    heard[event["seq"]] = event

    thread = threading.Thread(target=listen)
    thread.start()
    time.sleep(0.3)  # the SUB socket connects in the background
    try:
        t0 = time.monotonic_ns() // 1000
        out = run_client(port, tmp_path, "godot_events_test.gd")
        t1 = time.monotonic_ns() // 1000
    finally:
        stop.set()
        thread.join()
    replies = re.findall(r"^reply (\d+) (.*)$", out, re.M)
    assert replies[:2] == [("1", "error bad_choice types"), ("2", 'ok subscribe ["note_on","note_off"]')], out
    assert sorted(int(i) for i, r in replies[2:] if r == "ok ping null") == list(range(3, 11)), out
    events = re.findall(r"^event (\S+) (\S+) (\d+) (\d+) (\d+) (\d+) (\d+) (\S+) (\d+) (\d+)$", out, re.M)
    assert len(events) >= 20, out
    seqs = [int(e[2]) for e in events]
    assert seqs == sorted(set(seqs)), seqs
    rtt, offset, godot_now_on_server_clock = re.search(r"^clock (\d+) (\S+) (\S+)$", out, re.M).groups()
    assert int(rtt) >= 0 and t0 <= float(godot_now_on_server_clock) <= t1  # the clocks agree
    for kind, session, seq, t_ns, pitch, velocity, channel, due, before, after in events:
        assert kind in ("note_on", "note_off") and session == "main"
        zmq_event = heard[int(seq)]  # the same event, as the ZeroMQ stream carried it
        assert (zmq_event["type"], zmq_event["t_ns"], zmq_event["pitch"], zmq_event["velocity"],
                zmq_event["channel"]) == (kind, int(t_ns), int(pitch), int(velocity), int(channel))
        # due_in: the event's time on Godot's clock minus the time it was asked (to rounding)
        asked = int(t_ns) / 1000 - float(due) * 1e6 - float(offset)
        assert int(before) - 2 <= asked <= int(after) + 2, (t_ns, due, offset, before, after)
    assert re.search(r"^unsubscribed True then 0 events$", out, re.M), out
