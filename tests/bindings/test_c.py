"""bindings/c: compile example.c as C89 and as C++ with the system compilers, run it live."""
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

C_DIR = Path(__file__).resolve().parents[2] / "bindings" / "c"
COMPILERS = {
    "c89": ["cc", "-std=c89", "-pedantic", "-Wall", "-Wextra", "-Werror"],
    "c++": ["c++", "-x", "c++", "-std=c++11", "-Wall", "-Wextra", "-Werror"],
}


@pytest.fixture(params=list(COMPILERS))
def example(request, tmp_path):
    argv = COMPILERS[request.param]
    if shutil.which(argv[0]) is None:
        pytest.skip(f"{argv[0]} not installed: cannot compile the {request.param} example")
    if not Path("/usr/include/zmq.h").exists() and not shutil.which("pkg-config"):
        pytest.skip("libzmq headers not installed (Debian libzmq3-dev)")
    return compile_example(argv, tmp_path / "example")


def compile_example(argv, exe):
    """example.c compiled and linked against libzmq with ``argv``'s compiler, at ``exe``."""
    done = subprocess.run([*argv, "-o", str(exe), str(C_DIR / "example.c"), "-lzmq"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return exe


def test_example_against_a_live_server(example, control_server):
    address, recorded = control_server
    done = subprocess.run([str(example), address], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    for expected in ("hello ok", "server ostinato", "mood ok", "state ok", "tempo ok",
                     "key ok", "stinger ok", "start ok", "bad-tempo error out_of_range bpm",
                     "open ok", "mood2 ok", "close ok", "ping ok", "async replies 3 of 3 (ids 13 14 15)",
                     "stop ok"):
        assert expected in lines, (expected, lines)
    assert any(line.startswith("server clock ") for line in lines)
    by_type = [(m["type"], m["session"]) for m in recorded]
    assert by_type == [("hello", "main"), ("mood", "main"), ("state", "main"), ("tempo", "main"),
                       ("key", "main"), ("stinger", "main"), ("start", "main"), ("session", "player2"),
                       ("mood", "player2"), ("session", "player2"), ("ping", "main"), ("mood", "main"),
                       ("stinger", "main"), ("pause", "main"), ("stop", "main")]
    mood, key, second = recorded[1], recorded[4], recorded[8]
    assert (mood["valence"], mood["arousal"], mood["intensity"], mood["transition"]) == (0.5, 0.8, None, "now")
    assert (key["key"], key["mode"], key["transition"]) == ("D", "minor", "bar")
    assert (second["arousal"], second["valence"]) == (0.2, None)
    assert recorded[7]["state"] == "stealth"


def test_example_reports_an_unavailable_server(example):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    done = subprocess.run([str(example), address], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "unavailable" in done.stderr
