"""The native JACK MIDI writer (``realtime.jackwriter``, ``realtime.outputs.JackMidiPort``) on
a real JACK server: each message at the frame of its time, a late one at the period's
start and counted, every note ended at close, and a JACK server that goes away and
comes back.

The placement checks do not depend on this machine's timing: every message is queued
half a second or more before its time, and the reader converts frames to time with the
same clock model (``jack_get_cycle_times``) as the writer, so a message is either at its
frame or late, and a late one would be counted and fail the test."""
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from realtime.jack import JackConfig, JackServer
from realtime.jackreader import NativeJackReader
from realtime.jackwriter import NativeJackWriter
from realtime.outputs import JackMidiPort

REPO = Path(__file__).resolve().parents[2]


def _frame_ns(rate):
    return 1e9 / rate


def _timed_run(name, messages, wait_for, attempts=5, drop_clock_every=0):
    """Push ``messages`` ([(t_ns, bytes)]) through a native writer to a native reader and
    return (stamped, writer stats, reader stats).  A run in which JACK missed cycles (the
    reader saw an xrun or skipped frames: this 2-core VM has them now and then, even with
    jackd -R) says nothing about where the writer puts messages, so it is run again, up
    to ``attempts`` times; the last run is returned whatever it saw."""
    for attempt in range(attempts):
        writer = NativeJackWriter(f"{name}-{attempt}", "out",
                                  _drop_clock_every=drop_clock_every).open()
        try:
            with NativeJackReader(f"{name}-{attempt}:out",
                                  client_name=f"{name}-{attempt}-daw") as daw:
                for t, m in messages(writer):
                    assert writer.push(int(t), m)
                deadline = time.monotonic() + 30
                while len(daw.stamped) < wait_for and time.monotonic() < deadline:
                    time.sleep(0.05)
                got, daw_stats = daw.stamped, daw.stats()
            stats = writer.stats()
            stats["period"], stats["rate"] = writer.period, writer.rate
        finally:
            writer.close()
        if daw_stats["xruns"] == 0 and daw_stats["skips"] == 0:
            break
    return got, stats, daw_stats


def _notes_soon(rng, n, sent):
    """For _timed_run: ``n`` distinct messages at random times 0.5-0.8 s after the writer
    opens (their times go into ``sent``)."""
    def messages(writer):
        base = time.monotonic_ns() + 500_000_000
        times = np.sort(base + rng.integers(0, 300_000_000, n))
        sent[:] = list(times)
        return [(t, (0x90 | i % 16, 40 + i % 50, 1 + i % 120)) for i, t in enumerate(times)]

    return messages


def test_every_message_lands_at_the_frame_of_its_time(jack_server, unique_name):
    sent = []
    messages = _notes_soon(np.random.default_rng(0), 300, sent)

    got, stats, daw_stats = _timed_run(unique_name, messages, 300)
    assert stats["late"] == 0 and stats["dropped"] == 0 and stats["port_full"] == 0, stats
    assert [m for _, _, m in got] == [(0x90 | i % 16, 40 + i % 50, 1 + i % 120)
                                      for i in range(300)], daw_stats
    if daw_stats["xruns"] or daw_stats["skips"]:  # as test_audio's "CPU overloaded" skip
        pytest.skip(f"JACK missed cycles in every run, so frames say nothing: {daw_stats}")
    err_ns = np.array([t for _, t, _ in got]) - np.array(sent)
    # the nearest frame: half a frame off, plus what the writer's and the reader's
    # readings of the clock offset differ by (JACK's clock counts in us); a frame at most
    assert np.abs(err_ns).max() <= _frame_ns(stats["rate"]), (err_ns, stats, daw_stats)
    offsets = {frame % stats["period"] for frame, _, _ in got}
    assert len(offsets) > 100  # at their offsets inside the period, not all at frame 0


@pytest.mark.parametrize("every", [2, 1])
def test_a_cycle_without_a_clock_model_writes_nothing_early(jack_server, unique_name, every):
    """When jack_get_cycle_times fails for a cycle (it did on this VM now and then), the
    writer takes the cycle as following the last one: the messages of later cycles stay
    queued and none is written before its time.  (It used to write every
    message queued, up to 0.8 s of them here, at that cycle's frame 0.)  The writer's
    fault injection drops every other cycle's model, or every cycle's (then each cycle
    is taken to have begun a period before its callback ran)."""
    sent = []
    messages = _notes_soon(np.random.default_rng(1), 200, sent)

    got, stats, daw_stats = _timed_run(unique_name, messages, 200, drop_clock_every=every)
    assert [m for _, _, m in got] == [(0x90 | i % 16, 40 + i % 50, 1 + i % 120)
                                      for i in range(200)], daw_stats
    assert stats["no_clock"] >= stats["cycles"] // every - 1 and stats["dropped"] == 0, stats
    if daw_stats["xruns"] or daw_stats["skips"]:
        pytest.skip(f"JACK missed cycles in every run, so frames say nothing: {daw_stats}")
    err_ns = np.array([t for _, t, _ in got]) - np.array(sent)
    # never early, to two frames: one for the rounding to a frame and the two clock
    # readings' difference (as above), and one for a cycle without a model, whose start
    # comes from the last model's prediction of the next cycle (JACK's DLL), which the
    # reader's own model of that cycle can differ from by microseconds (once 0.5 us past
    # a single frame here).  The bug this guards against wrote up to 0.8 s early, and a
    # wrong sign 233 us early.  How late is not timed here.
    assert err_ns.min() >= -2 * _frame_ns(stats["rate"]), (err_ns.min(), stats, daw_stats)
    offsets = {frame % stats["period"] for frame, _, _ in got}
    assert len(offsets) > 50  # at their offsets inside the period, not all at frame 0


def test_a_late_message_goes_at_the_start_of_the_period_and_is_counted(jack_server,
                                                                         unique_name):
    def messages(writer):
        now = time.monotonic_ns()
        return [(now - 50_000_000, (0x90, 60, 100)), (now + 300_000_000, (0x80, 60, 0))]

    got, stats, daw_stats = _timed_run(unique_name, messages, 2)
    assert [m for _, _, m in got] == [(0x90, 60, 100), (0x80, 60, 0)], daw_stats
    assert got[0][0] % stats["period"] == 0
    # pushed 50 ms after its time; the cycle that writes it began up to a period before
    # the push, by JACK's clock model, which on this VM lags by up to a period more
    period_us = stats["period"] * 1e6 / stats["rate"]
    assert stats["late"] == 1 and stats["late_max_us"] >= 50_000 - 3 * period_us, \
        (stats, daw_stats)


def test_the_port_ends_its_notes_at_close_and_asks_for_a_lead(jack_server, unique_name):
    port = JackMidiPort(unique_name)
    assert port.port_name == f"{unique_name}:out"
    assert port.lead_ns == port._writer.period_ns + 3_000_000
    with NativeJackReader(port.port_name, client_name=unique_name + "-daw") as daw:
        t = time.monotonic_ns() + 50_000_000
        port.send(0x90, 60, 90, t, 0.0)
        port.send(0x91, 64, 80, t + 1000, 0.0)
        port.send(0x80, 60, 0, t - 5, 0.5)  # a stamp that goes back is sent at the last one
        port.close()
        assert len(daw.wait_for(4, timeout_s=20)) == 4
        got = daw.stamped
    assert [m for _, _, m in got][:3] == [(0x90, 60, 90), (0x91, 64, 80), (0x80, 60, 0)]
    assert [m for _, _, m in got][3:] == [(0x81, 64, 0)]
    assert got[2][1] >= got[1][1]


def _until(what, timeout_s=20.0):
    deadline = time.monotonic() + timeout_s
    while not what():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def jack_goes_away_and_returns():
    """The scenario of the next test, run in a process of its own (it prints what it
    saw as JSON): a JACK server that stops under a client can crash libjack in a process
    that is also a client of another server (the test session's), which a real
    ``ostinato serve`` never is."""
    config = JackConfig(server=os.environ["JACK_DEFAULT_SERVER"], realtime=True)
    out = {}
    server = JackServer(config).__enter__()
    try:
        with NativeJackReader(None, client_name="synth") as synth:
            port = JackMidiPort("Ostinato", connect=["synth:in"], reconnect_s=0.1)
            port.send(0x90, 60, 100, time.monotonic_ns() + 30_000_000, 0.0)
            out["first"] = len(synth.wait_for(1, timeout_s=20))
            server.__exit__(None, None, None)  # JACK goes away
            out["noticed"] = _until(lambda: not port.connected)
        port.send(0x80, 60, 0, time.monotonic_ns(), 1.0)  # dropped, and nothing raises
        out["dropped"] = port.stats()["dropped"]
        server = JackServer(config).__enter__()   # JACK comes back
        with NativeJackReader(None, client_name="synth") as synth:
            out["back"] = _until(lambda: port.reconnects == 1 and port.connected)
            out["reset"] = [list(m) for _, m in synth.wait_for(32, timeout_s=20)]
            port.send(0x92, 67, 70, time.monotonic_ns() + 30_000_000, 2.0)
            port.close()  # ends the note it sounds
            out["after"] = [list(m) for _, m in synth.wait_for(34, timeout_s=20)][32:]
    finally:
        server.__exit__(None, None, None)
    print(json.dumps(out))


def test_the_port_survives_jack_going_away_and_resets_the_synth_when_it_returns():
    env = dict(os.environ, JACK_DEFAULT_SERVER=f"ostinato-reconnect-{uuid.uuid4().hex[:8]}")
    done = subprocess.run(
        [sys.executable, "-c", "from tests.realtime.test_jackwriter import "
         "jack_goes_away_and_returns as run; run()"], cwd=REPO, env=env,
        capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["first"] == 1 and out["noticed"] and out["dropped"] >= 1 and out["back"], out
    assert sorted(map(tuple, out["reset"])) == sorted(
        [(0xB0 | c, 123, 0) for c in range(16)] + [(0xB0 | c, 64, 0) for c in range(16)])
    assert out["after"] == [[0x92, 67, 70], [0x82, 67, 0]]
