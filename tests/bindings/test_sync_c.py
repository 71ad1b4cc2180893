"""bindings/c/sync_example.c, compiled as C89 and as C++, against a real playing server (events
40 ms ahead): it subscribes to beat, bar and cue, asks ``position``, places a cue, sends a
stinger as notes at ``cue:door``, and does each thing at its t_ns.  What it prints is checked
against the grid and the replies; no timing is asserted (the ``late`` figures are a sleep's)."""
import subprocess

import pytest

from bindings import EventListener

from .test_c import COMPILERS, C_DIR, compile_example, compiler


@pytest.fixture(params=list(COMPILERS))
def sync_example(request, tmp_path):
    return compile_example(compiler(request.param), tmp_path / "sync_example",
                           C_DIR / "sync_example.c")


def parse(lines, kind):
    return [line.split()[1:] for line in lines if line.split()[:1] == [kind]]


def check_sync_run(lines, python_cues):
    """What sync_example.c (and the C# SyncExample) print: beats on the grid, each bar line
    a beat's time, the door cue at the cue's placed beat and t_ns (as a Python subscriber saw
    it), the fanfare on the cue, the cutscene at position's next downbeat."""
    (position,) = parse(lines, "position")
    beat, bar, bpm, downbeat, downbeat_t_ns = position
    assert float(downbeat) % 4 == 0 and float(downbeat) >= float(beat)
    beats = sorted((float(b), float(br), float(ib), float(tempo), int(t))
                   for b, br, ib, tempo, t, _ in parse(lines, "beat"))
    assert len(beats) >= 6, lines
    for a, b in zip(beats, beats[1:]):
        assert b[0] - a[0] == 1 and a[3] == b[3], (a, b)
        assert abs((b[4] - a[4]) - 60e9 / a[3]) <= 1, (a, b)  # the grid, to the ns
        assert b[2] == (a[2] + 1) % 4 and b[1] == a[1] + (b[2] == 0), (a, b)
    on_beat = {b[0]: b[4] for b in beats}
    bars = parse(lines, "bar")
    assert bars, lines
    for b, _, t, _ in bars:
        if float(b) in on_beat:
            assert on_beat[float(b)] == int(t) and float(b) % 4 == 0
    ((_, cue_beat, cue_t_ns),) = parse(lines, "cue-placed")
    ((door_beat, door_t_ns, _),) = parse(lines, "door")
    assert (float(door_beat), int(door_t_ns)) == (float(cue_beat), int(cue_t_ns))
    assert python_cues == [(float(cue_beat), int(cue_t_ns))]
    if float(cue_beat) in on_beat:
        assert on_beat[float(cue_beat)] == int(cue_t_ns)
    assert parse(lines, "stinger") == [["played", "1", cue_beat]]
    ((cutscene_t_ns, _),) = parse(lines, "cutscene")
    assert cutscene_t_ns == downbeat_t_ns
    if float(downbeat) in on_beat:
        assert on_beat[float(downbeat)] == int(downbeat_t_ns)


def python_cues(listener, n=1):
    """The cue events a Python subscriber saw (beat, t_ns), once ``n`` have come."""
    cues = []
    for event in listener:
        cues.append((event["beat"], event["t_ns"]))
        if len(cues) == n:
            break
    return cues


def test_sync_example_against_a_playing_server(sync_example, playing_server):
    control, events = playing_server
    with EventListener(events, types=["cue"], timeout=30) as listener:
        done = subprocess.run([str(sync_example), control, events, "6"], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        check_sync_run(done.stdout.splitlines(), python_cues(listener))


def test_sync_example_reports_an_unavailable_server(sync_example):
    from .test_c import free_address
    done = subprocess.run([str(sync_example), free_address(), free_address()],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "unavailable" in done.stderr
