"""bindings/c: compile example.c as C89 and as C++ with the system compilers, run it live
(and c_theme_test.c, the edges of the theme calls, against a server with a theme model)."""
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from .conftest import check_example_themes, check_tonality_and_critic

C_DIR = Path(__file__).resolve().parents[2] / "bindings" / "c"
THEME_TEST = Path(__file__).with_name("c_theme_test.c")
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
                     # the shipped model is no theme model: themes refused by field, free is fine
                     "theme-notes error out_of_range notes", "theme-name error out_of_range name",
                     "theme-bad error out_of_range notes", "theme-free ok", "stop ok"):
        assert expected in lines, (expected, lines)
    assert any(line.startswith("server clock ") for line in lines)
    by_type = [(m["type"], m["session"]) for m in recorded]
    # bad-tonality fails validation, so the handler never sees it; critic-3 is valid and is
    # refused by the server (no critic), so it is recorded.
    assert by_type == [("hello", "main"), ("mood", "main"), ("state", "main"), ("tempo", "main"),
                       ("key", "main"), ("mood", "main"), ("state", "main"), ("key", "main"),
                       ("mood", "main"), ("mood", "main"), ("stinger", "main"), ("start", "main"),
                       ("session", "player2"), ("mood", "player2"), ("session", "player2"),
                       ("ping", "main"), ("mood", "main"), ("stinger", "main"), ("pause", "main"),
                       ("theme", "main"), ("theme", "main"), ("theme", "main"), ("stop", "main")]
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
