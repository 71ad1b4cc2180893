"""MIDI clock from the server: 24 pulses a beat at the main session's tempo, with
Start, Stop and Continue at the transport changes."""
import time

import numpy as np
import pytest

from realtime.outputs import BasePort
from realtime.server import Server, ServerConfig


class Recorder(BasePort):
    """A port that keeps every message (a real BasePort backend, in memory)."""

    def __init__(self):
        super().__init__()
        self.msgs = []

    def _send(self, status, data1, data2, t_ns, beat, session):
        self.msgs.append((status, t_ns, beat))


def test_clock_pulses_follow_the_tempo_and_the_transport(model_path):
    rec = Recorder()
    with Server(ServerConfig(model=str(model_path), clock=True), [rec], control=False) as srv:
        srv.call("tempo", bpm=120.0, transition="now")
        time.sleep(2.0)
        srv.call("pause")
        time.sleep(0.3)
        srv.call("start")
        time.sleep(0.5)
    status = [m[0] for m in rec.msgs if m[0] >= 0xF8]
    assert status[0] == 0xFA and status[-1] == 0xFC
    transport = [s for s in status if s != 0xF8]
    assert transport == [0xFA, 0xFC, 0xFB, 0xFC]
    # pulses between the tempo change and the pause: 1/48 s apart at 120 BPM
    pulses = [m for m in rec.msgs if m[0] == 0xF8]
    beats = np.array([b for _, _, b in pulses])
    steps = np.diff(beats)
    assert np.allclose(steps[steps > 0], 1 / 24) or (np.isclose(steps, 1 / 24).mean() > 0.95)
    pause = next(m[1] for m in rec.msgs if m[0] == 0xFC)
    t = np.array([m[1] for m in pulses if m[2] >= 2.0 and m[1] < pause], dtype=float)
    assert len(t) > 24
    assert np.diff(t) == pytest.approx(np.full(len(t) - 1, 1e9 / 48), rel=1e-6)
    # no pulse while paused
    cont = next(m[1] for m in rec.msgs if m[0] == 0xFB)
    assert not [m for m in pulses if pause < m[1] < cont]
