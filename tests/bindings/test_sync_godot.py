"""bindings/godot/sync_example.gd in headless Godot 3, in a scene tree as in a game, against a
real playing server relaying its events over OSC (40 ms ahead): it subscribes to beat, bar and
cue, asks ``position``, places a cue, sends ``stinger_notes`` at ``cue:door``, and does each
thing at its t_ns with a timer.  Its output is checked as the C example's; no timing is
asserted."""
import os
import subprocess

from bindings import EventListener

from .test_godot import ROOT, godot_command
from .test_sync_c import check_sync_run, python_cues


def test_sync_example_in_a_scene_tree(playing_osc_server, tmp_path):
    port, events = playing_osc_server
    env = dict(os.environ, OSTINATO_OSC_PORT=str(port), HOME=str(tmp_path),
               OSTINATO_GD=str(ROOT / "bindings/godot/ostinato.gd"),
               OSTINATO_SYNC_EXAMPLE=str(ROOT / "bindings/godot/sync_example.gd"))
    with EventListener(events, types=["cue"], timeout=30) as listener:
        done = subprocess.run([*godot_command(), "-s", str(ROOT / "tests/bindings/godot_sync_test.gd")],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=90)
        assert done.returncode == 0, done.stdout + done.stderr
        lines = done.stdout.splitlines()
        # the replies' times are exact 64-bit integers (TYPE_INT 2), not JSON's floats
        assert "types 2 2" in lines, lines
        check_sync_run(lines, python_cues(listener))
