"""bindings/godot: run the GDScript client in headless Godot 3 against the OSC endpoint."""
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

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


def test_gdscript_client_against_the_osc_endpoint(osc_server, tmp_path):
    port, recorded = osc_server
    env = dict(os.environ, OSTINATO_OSC_PORT=str(port), OSTINATO_GD=str(ROOT / "bindings/godot/ostinato.gd"),
               HOME=str(tmp_path))  # Godot writes its user data under HOME
    done = subprocess.run([*godot_command(), "-s", str(ROOT / "tests/bindings/godot_client_test.gd")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    replies = dict(re.findall(r"^reply (\d+) (.*)$", done.stdout, re.M))
    assert replies == {
        "1": "ok hello hello", "2": "ok mood ack", "3": "ok state ack", "4": "ok tempo ack",
        "5": "ok key ack", "6": "ok stinger ack", "7": "ok start ack",
        "8": "error out_of_range bpm 30.0..300.0", "9": "ok session ack", "10": "ok mood ack",
        "11": "ok session ack", "12": "ok ping pong"}
    assert [(m["type"], m["session"]) for m in recorded] == [
        ("hello", "main"), ("mood", "main"), ("state", "main"), ("tempo", "main"), ("key", "main"),
        ("stinger", "main"), ("start", "main"), ("session", "player2"), ("mood", "player2"),
        ("session", "player2"), ("ping", "main")]
    mood, key, second = recorded[1], recorded[4], recorded[8]
    assert (mood["valence"], mood["arousal"], mood["intensity"], mood["transition"]) == (0.5, 0.8, None, "now")
    assert (key["key"], key["mode"]) == ("D", "minor")
    assert (second["valence"], second["arousal"]) == (None, 0.2)
    assert recorded[7]["state"] == "stealth" and recorded[10]["id"] == 12
