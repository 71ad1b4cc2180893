"""bindings/csharp: compile with mcs, run the console example with mono against a live server."""
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from .conftest import check_example_themes, check_tonality_and_critic

CS_DIR = Path(__file__).resolve().parents[2] / "bindings" / "csharp"


def mcs(*args, cwd):
    done = subprocess.run(["mcs", *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "warning" not in done.stdout, done.stdout


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    for tool in ("mcs", "mono"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (Debian mono-mcs, mono-runtime): C# binding not tested")
    return build_example(tmp_path_factory.mktemp("csharp"))


def build_example(out, unity=True):
    """Ostinato.dll and Example.exe built in ``out``; the path of Example.exe."""
    sources = [str(CS_DIR / "Ostinato.cs")]
    if unity:  # the Unity component compiles to nothing outside Unity; it must still compile
        sources.append(str(CS_DIR / "OstinatoMusic.cs"))
    mcs("-target:library", "-out:Ostinato.dll", *sources, cwd=out)
    mcs("-r:Ostinato.dll", "-out:Example.exe", str(CS_DIR / "Example.cs"), cwd=out)
    shutil.copy(CS_DIR / "Ostinato.dll.config", out)
    return out / "Example.exe"


def run(example, address):
    env = dict(os.environ, MONO_LOG_LEVEL="debug", MONO_LOG_MASK="dll")
    return subprocess.run(["mono", str(example), address], capture_output=True, text=True, timeout=60,
                          env=env)


def test_example_against_a_live_server(example, control_server):
    address, recorded = control_server
    done = run(example, address)
    assert done.returncode == 0, done.stdout + done.stderr
    # The dllmap in Ostinato.dll.config is what found the runtime library name.
    assert "DllImport loaded library 'libzmq.so.5'" in done.stderr + done.stdout
    lines = [line for line in done.stdout.splitlines() if not line.startswith("Mono:")]
    for expected in ("mood ok", "state ok", "tempo ok", "key ok", "mood-ex ok", "state-ex ok",
                     "key-ex ok", "mood-kept ok", "stinger ok", "start ok",
                     "bad-tempo error out_of_range bpm", "open ok", "mood2 ok", "close ok",
                     "async replies 3 of 3",
                     # the shipped model is no theme model: themes refused by field, free is fine
                     "theme-notes error out_of_range notes", "theme-name error out_of_range name",
                     "theme-bad error out_of_range notes", "theme-free ok", "stop ok"):
        assert expected in lines, (expected, lines)
    assert any(line.startswith("server ostinato states [") and '"combat"' in line for line in lines)
    assert any(line.startswith("server clock ") for line in lines)
    # bad-tonality fails validation, so the handler never sees it; critic-3 is valid and is
    # refused by the server (no critic), so it is recorded.
    assert [(m["type"], m["session"]) for m in recorded] == [
        ("hello", "main"), ("mood", "main"), ("state", "main"), ("tempo", "main"), ("key", "main"),
        ("mood", "main"), ("state", "main"), ("key", "main"), ("mood", "main"), ("mood", "main"),
        ("stinger", "main"), ("start", "main"), ("session", "player2"), ("mood", "player2"),
        ("session", "player2"), ("ping", "main"), ("mood", "main"), ("stinger", "main"),
        ("pause", "main"), ("theme", "main"), ("theme", "main"), ("theme", "main"), ("stop", "main")]
    mood, tempo, key = recorded[1], recorded[3], recorded[4]
    assert (mood["valence"], mood["arousal"], mood["intensity"], mood["transition"]) == (0.5, 0.8, None, "now")
    assert (tempo["bpm"], tempo["ramp_beats"], tempo["transition"]) == (150.0, 4.0, "beat")
    assert (key["key"], key["mode"]) == ("D", "minor")
    assert (recorded[16]["arousal"], recorded[16]["intensity"]) == (0.9, 1.0)


def test_tonality_and_critic_reach_the_server(example, control_server):
    """Mood/State/Key's optional tonality and critic are sent (critic as a JSON integer),
    applied by the server and echoed in its replies; calls without them send neither."""
    address, recorded = control_server
    done = run(example, address)
    assert done.returncode == 0, done.stdout + done.stderr
    check_tonality_and_critic(done.stdout.splitlines(), recorded)


def test_example_reports_an_unavailable_server(example):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    done = run(example, address)
    assert done.returncode == 2 and "unavailable" in done.stderr


def test_example_themes_on_a_theme_model(example, theme_control_server):
    """Theme(notes) sends the rows as JSON arrays (pitches as integers), Theme(name:) and
    FreeTheme() their fields, null ones left out; the replies' theme is read with GetObject."""
    address, recorded = theme_control_server
    done = run(example, address)
    assert done.returncode == 0, done.stdout + done.stderr
    check_example_themes(done.stdout.splitlines(), recorded)
