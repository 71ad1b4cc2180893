"""bindings/c: compile example.c as C89 and as C++ with the system compilers, run it live
(and c_theme_test.c, the edges of the theme calls, against a server with a theme model;
c_events_test.c, the event stream, clock sync and 64-bit t_ns, against a playing server)."""
import json
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import zmq

from bindings import EventListener
from engine.controls import STYLES
from realtime.keys import ServerKeys, make_keys
from realtime.outputs import ZmqPubPort

from .conftest import (check_example_repetition, check_example_style, check_example_themes,
                       check_example_voices, check_tonality_and_critic)

C_DIR = Path(__file__).resolve().parents[2] / "bindings" / "c"
THEME_TEST = Path(__file__).with_name("c_theme_test.c")
EVENTS_TEST = Path(__file__).with_name("c_events_test.c")
COMPILERS = {
    "c89": ["cc", "-std=c89", "-pedantic", "-Wall", "-Wextra", "-Werror"],
    "c++": ["c++", "-x", "c++", "-std=c++11", "-Wall", "-Wextra", "-Werror"],
}


def compiler(name):
    """The argv of compiler ``name``, or skip saying what is missing."""
    argv = COMPILERS[name]
    if shutil.which(argv[0]) is None:
        pytest.skip(f"{argv[0]} not installed: cannot compile the {name} example")
    if not Path("/usr/include/zmq.h").exists() and not shutil.which("pkg-config"):
        pytest.skip("libzmq headers not installed (Debian libzmq3-dev)")
    return argv


@pytest.fixture(params=list(COMPILERS))
def example(request, tmp_path):
    return compile_example(compiler(request.param), tmp_path / "example")


@pytest.fixture(params=list(COMPILERS))
def theme_test(request, tmp_path):
    return compile_example(compiler(request.param), tmp_path / "theme_test", THEME_TEST)


@pytest.fixture(params=list(COMPILERS))
def events_test(request, tmp_path):
    return compile_example(compiler(request.param), tmp_path / "events_test", EVENTS_TEST)


def compile_example(argv, exe, source=C_DIR / "example.c"):
    """``source`` compiled and linked against libzmq with ``argv``'s compiler, at ``exe``."""
    done = subprocess.run([*argv, "-I", str(C_DIR), "-o", str(exe), str(source), "-lzmq"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return exe


def test_example_against_a_live_server(example, control_server):
    address, recorded = control_server
    done = subprocess.run([str(example), address], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    for expected in ("hello ok", "server ostinato", "mood ok", "state ok", "tempo ok",
                     "key ok", "mood-ex ok", "state-ex ok", "key-ex ok", "mood-kept ok",
                     "stinger ok", "start ok", "bad-tempo error out_of_range bpm",
                     "open ok", "mood2 ok", "close ok", "ping ok", "async replies 3 of 3 (ids 19 20 21)",
                     # the shipped model is no theme model: it takes themes all the same
                     "theme-notes ok", "theme-notes theme D minor 6 notes", "theme-name ok",
                     "theme-name theme D minor 10 notes", "theme-bad error out_of_range notes",
                     "theme-free ok", "stop ok"):
        assert expected in lines, (expected, lines)
    assert any(line.startswith("server clock ") for line in lines)
    by_type = [(m["type"], m["session"]) for m in recorded]
    # bad-tonality fails validation, so the handler never sees it; critic-3 is valid and is
    # refused by the server (no critic), so it is recorded, as are style and state-style
    # (refused: this model is told no styles); bad-style fails validation.
    assert by_type == [("hello", "main"), ("mood", "main"), ("state", "main"), ("tempo", "main"),
                       ("key", "main"), ("mood", "main"), ("state", "main"), ("key", "main"),
                       ("mood", "main"), ("mood", "main"), ("stinger", "main"), ("start", "main"),
                       ("session", "player2"), ("mood", "player2"), ("session", "player2"),
                       ("ping", "main"), ("mood", "main"), ("stinger", "main"), ("pause", "main"),
                       ("theme", "main"), ("theme", "main"), ("theme", "main"), ("mood", "main"),
                       ("state", "main"), ("mood", "main"), ("state", "main"), ("session", "player3"),
                       ("session", "player3"), ("mood", "main"), ("state", "main"), ("stop", "main")]
    mood, key, second = recorded[1], recorded[4], recorded[13]
    assert (mood["valence"], mood["arousal"], mood["intensity"], mood["transition"]) == (0.5, 0.8, None, "now")
    assert (key["key"], key["mode"], key["transition"]) == ("D", "minor", "bar")
    assert (second["arousal"], second["valence"]) == (0.2, None)
    assert recorded[12]["state"] == "stealth"


def test_tonality_and_critic_reach_the_server(example, control_server):
    """ost_*_ex send tonality and critic, which the server applies and echoes in its replies;
    the old calls send neither, so the session's stay."""
    address, recorded = control_server
    done = subprocess.run([str(example), address], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    check_tonality_and_critic(done.stdout.splitlines(), recorded)


def test_repetition_reaches_the_server(example, control_server):
    """ost_mood_repetition, ost_state_repetition and ost_open_session_repetition send the
    repetition, which the server applies and echoes; validation refuses 1.5 naming it."""
    address, recorded = control_server
    done = subprocess.run([str(example), address], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    check_example_repetition(done.stdout.splitlines(), recorded)


def test_style_reaches_a_server_told_styles(example, styled_control_server):
    """ost_mood_style and ost_state_style send the style, which a server whose model is told
    styles applies and echoes in its replies; validation refuses an unknown one naming it."""
    address, recorded = styled_control_server
    done = subprocess.run([str(example), address], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    check_example_style(done.stdout.splitlines(), recorded, STYLES)


def test_style_refused_by_a_model_told_none(example, control_server, live_server):
    """The shipped model is told no styles: its server refuses a style on field style."""
    if live_server.music.spec.styles:
        pytest.skip("the shipped model is told styles: no model here is told none")
    address, recorded = control_server
    done = subprocess.run([str(example), address], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    check_example_style(done.stdout.splitlines(), recorded, ())


def test_voices_reach_the_server(example, control_server):
    """ost_mood_voices and ost_state_voices send the voices as the protocol has them (the
    shorthand for play alone, an object otherwise, OST_VOICE_KEEP left out); the one-line
    model refuses them by field, validation a program out of range by its part."""
    address, recorded = control_server
    done = subprocess.run([str(example), address], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    check_example_voices(done.stdout.splitlines(), recorded, ensemble=False)


def test_voices_on_an_ensemble_model(example, ensemble_control_server):
    address, recorded = ensemble_control_server
    done = subprocess.run([str(example), address], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    check_example_voices(done.stdout.splitlines(), recorded, ensemble=True)


def test_example_reports_an_unavailable_server(example):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    done = subprocess.run([str(example), address], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "unavailable" in done.stderr


def test_example_themes_on_a_theme_model(example, theme_control_server):
    """ost_theme_notes/name/free reach a theme model's server as the protocol has them
    (pitches as JSON integers, OST_KEEP and NULL left out) and the replies carry the theme."""
    address, recorded = theme_control_server
    done = subprocess.run([str(example), address], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    check_example_themes(done.stdout.splitlines(), recorded)


def test_theme_calls_at_their_edges(theme_test, theme_control_server):
    """A theme longer than the stack buffer is sent; one over the message limit, a NaN, a
    negative count or NULL notes are not (-1); what is sent, the server judges by field."""
    address, recorded = theme_control_server
    done = subprocess.run([str(theme_test), address], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    for expected in ("many ok", "many theme C major 100", "huge unsent", "null unsent",
                     "negative unsent", "nan unsent", "hero ok", "hero theme D minor 10", "free ok"):
        assert expected in lines, (expected, lines)
    errors = {line.split()[0]: line.split(None, 3)[2:] for line in lines if " error " in line}
    assert errors["none"][0] == "out_of_range" and errors["none"][1].startswith("notes:")
    assert errors["fraction"][0] == "out_of_range" and "notes[2]: pitch 69.5" in errors["fraction"][1]
    assert errors["variation"][0] == "out_of_range" and errors["variation"][1].startswith("variation:")
    assert errors["villain"][0] == "bad_choice" and errors["villain"][1].startswith("name:")
    many = recorded[0]
    assert len(many["notes"]) == 100 and all(type(n[0]) is int for n in many["notes"])
    assert many["notes"][99] == [72, 3, 1] and (many["variation"], many["blend_beats"]) == (0.5, 1.5)
    # validation refused none, fraction and variation, so the server saw only these
    assert [(m["action"], m["name"]) for m in recorded] == [
        ("set", None), ("set", "villain"), ("set", "hero"), ("free", None)]
    assert (recorded[2]["variation"], recorded[3]["blend_beats"]) == (0.75, 3.0)


def free_address():
    """A loopback address nothing listens at."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def run_events_test(exe, *args):
    done = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.splitlines()


# ost_json_ns on each input: found, and the value (7: left as it was)
PARSED = {"above-2^53": "1 9007199254740993", "max": "1 9223372036854775807",
          "min": "1 -9223372036854775808", "negative": "1 -42", "zero": "1 0", "over": "0 7",
          "under": "0 7", "fraction": "0 7", "exponent": "0 7", "string": "0 7", "missing": "0 7",
          "null": "0 7"}


def test_event_helpers_without_a_server(events_test):
    """ost_json_ns reads 64-bit integers exactly (2^53 + 1 is no double) and refuses what is
    none; ost_now_ns is this machine's CLOCK_MONOTONIC (Python's monotonic_ns); with nothing
    listening ost_sync_clock fails and ost_event_recv times out with 0."""
    check_offline(events_test)


def test_clock_when_a_system_header_comes_first(tmp_path):
    """Strict C89 with <stdio.h> before ostinato.h (too late for its _POSIX_C_SOURCE): the
    same clock and helpers, through the header's own declaration of clock_gettime."""
    check_offline(compile_example(compiler("c89") + ["-DOST_TEST_SYSTEM_HEADER_FIRST"],
                                  tmp_path / "events_test", EVENTS_TEST))


def check_offline(events_test):
    before = time.monotonic_ns()
    lines = run_events_test(events_test, "offline", free_address())
    after = time.monotonic_ns()
    parsed = {line.split()[1]: line.split(None, 2)[2] for line in lines if line.startswith("ns ")}
    assert parsed == PARSED
    now = int(next(line.split()[1] for line in lines if line.startswith("now ")))
    assert before <= now <= after
    for expected in ("due-without-t_ns 0", "monotonic 1", "offset-after-open 0", "nosync -1",
                     "idle 0", "idle-wait 0", "size-0 -1", "too-many-types -1"):
        assert expected in lines, (expected, lines)


def test_notes_with_their_times_from_a_playing_server(events_test, playing_server):
    """Against the real engine publishing 40 ms ahead: the clock sync finds one clock, only
    the notes subscribed to arrive, in order, each t_ns exactly as a Python listener saw the
    same frame, and due_in is t_ns minus the clock read around it (no timing asserted)."""
    control, events = playing_server
    with EventListener(events, types=["note_on", "note_off"]) as heard:
        assert heard.recv(timeout=10) is not None  # subscribed: it sees what the C client sees
        lines = run_events_test(events_test, "play", control, events, 10)
        sync = lines[0].split()
        assert sync[:3] == ["sync", "0", "offset"]
        offset = int(sync[3])
        assert abs(offset) < 10**9  # one machine, one CLOCK_MONOTONIC
        seen = []
        for line, raw in zip(lines[1:21:2], lines[2:22:2]):
            kind, seq, t_ns, due, pitch, before, after = line.split()[1:]
            assert raw.startswith("raw ")
            frame = json.loads(raw[4:])
            seq, t_ns, due, pitch, before, after = map(int, (seq, t_ns, due, pitch, before, after))
            assert (frame["type"], frame["seq"], frame["t_ns"], frame["pitch"]) == (kind, seq, t_ns, pitch)
            assert kind in ("note_on", "note_off")
            assert t_ns - after - offset <= due <= t_ns - before - offset
            seen.append(frame)
        assert len(seen) == 10
        assert all(a["seq"] < b["seq"] for a, b in zip(seen, seen[1:]))
        python = {}
        deadline = time.monotonic() + 10
        while seen[-1]["seq"] not in python and time.monotonic() < deadline:
            event = heard.recv(timeout=1)
            if event is not None:
                python[event["seq"]] = event
    assert [python.get(frame["seq"]) for frame in seen] == seen
    assert "cut 15 15" in lines  # a longer frame cut to the buffer, NUL-terminated
    assert "state-timeout 0" in lines  # subscribed to a type that never comes: 0 at the timeout


@pytest.mark.skipif(not zmq.has("curve"), reason="this libzmq has no CURVE")
def test_keyed_event_stream(tmp_path):
    """ost_events_set_keys: a keyed stream reaches the listener with the keys (its t_ns,
    past 2^53, exact), not one without."""
    make_keys(tmp_path, ["game"])
    keys = ServerKeys.load(tmp_path / "server.key_secret", tmp_path / "clients")
    exe = compile_example(compiler("c89"), tmp_path / "events_test", EVENTS_TEST)
    t_ns = 2**53 + 1
    pub = ZmqPubPort("tcp://127.0.0.1:*", keys=keys)
    stop = threading.Event()

    def publish():  # until the listener has joined and heard one
        while not stop.wait(0.02):
            pub.publish("tempo", t_ns=t_ns, bpm=120.0)

    thread = threading.Thread(target=publish)
    thread.start()
    try:
        keyed = run_events_test(exe, "listen", pub.bound_address, 10000,
                                tmp_path / "server.key", tmp_path / "game.key_secret")
        unkeyed = run_events_test(exe, "listen", pub.bound_address, 300)
    finally:
        stop.set()
        thread.join()
        pub.close()
    assert keyed[0] == f"heard {t_ns}" and json.loads(keyed[1][4:])["type"] == "tempo", keyed
    assert unkeyed == ["heard nothing"]
