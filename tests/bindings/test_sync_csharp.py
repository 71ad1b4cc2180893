"""bindings/csharp/SyncExample.cs, built with mcs against Ostinato.dll and run with mono against
a real playing server (events 40 ms ahead): it subscribes to beat, bar and cue, asks
``Position``, places a cue, sends ``StingerNotes`` at ``cue:door``, and does each thing at its
t_ns.  Its output is checked as the C example's; no timing is asserted."""
import shutil
import subprocess

import pytest

from bindings import EventListener

from .test_csharp import CS_DIR, build_example, free_address, mcs
from .test_sync_c import check_sync_run, python_cues


@pytest.fixture(scope="module")
def sync_example(tmp_path_factory):
    """SyncExample.exe, built next to Example.exe against the same Ostinato.dll."""
    for tool in ("mcs", "mono"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (Debian mono-mcs, mono-runtime): C# binding not tested")
    example = build_example(tmp_path_factory.mktemp("csharp_sync"))
    mcs("-r:Ostinato.dll", "-out:SyncExample.exe", str(CS_DIR / "SyncExample.cs"), cwd=example.parent)
    return example.parent / "SyncExample.exe"


def test_sync_example_against_a_playing_server(sync_example, playing_server):
    control, events = playing_server
    with EventListener(events, types=["cue"], timeout=30) as listener:
        done = subprocess.run(["mono", str(sync_example), control, events, "6"],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        check_sync_run(done.stdout.splitlines(), python_cues(listener))


def test_sync_example_reports_an_unavailable_server(sync_example):
    done = subprocess.run(["mono", str(sync_example), free_address(), free_address()],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "unavailable" in done.stderr
