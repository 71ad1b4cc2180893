"""Where the audio preview puts notes in time (``python -m benchmarks.audio --notes 60``).

``AudioPort`` turns each event's ``t_ns`` into a frame through its estimate of the
stream clock.  This plays one note per irregular gap (none a multiple of the period)
through it on a JACK server of its own (dummy driver, 48 kHz, 256 frames, real-time
scheduling where allowed), captures the sound back through a JACK input, and reports
three things side by side:

- **rendering**: onset gaps in the audio minus the gaps between the frames the port
  logged for the notes (``AudioPort.placed``): the synth plays at the frame it is given;
- **placement**: gaps between those frames minus the gaps between the ``t_ns`` asked
  for: the error of the stream-clock estimate, which grows with the machine's load;
- **period-start writing**, for comparison: what rtmidi's JACK backend would do (every
  event at the start of the period it falls in), computed from the same frames.

Timing belongs here, not in the tests: ``tests/realtime/test_audio.py`` checks that
rendering is exact and that notes are placed inside periods, never how well a loaded
machine's clock readings agree.
"""
import argparse
import contextlib
import json
import os
import random
import re
import time
from pathlib import Path

import numpy as np

from realtime.jack import JackConfig, JackServer, jack_connect, jack_ports
from realtime.jackcapture import NativeJackCapture

from .stats import machine, summary

SR = 48000
PERIOD = 256


@contextlib.contextmanager
def portaudio_jack(name=None):
    """A JACK server of its own (dummy driver, 48 kHz, 256 frames), seen by PortAudio.

    Not a shared server: PortAudio blocks for good when the server it uses stops under
    it.  The name goes in JACK_DEFAULT_SERVER, which libjack reads in this process and
    in the tools (jack_lsp, jack_connect, fluidsynth) started from it.
    """
    import sounddevice as sd
    from realtime.audio import refresh_devices
    saved = {k: os.environ.get(k) for k in ("JACK_DEFAULT_SERVER", "JACK_NO_START_SERVER")}
    name = name or f"ostinato-audio-{os.getpid()}"
    os.environ.update(JACK_DEFAULT_SERVER=name, JACK_NO_START_SERVER="1")
    try:
        with JackServer(JackConfig(server=name, rate=SR, period=PERIOD, realtime=True)) as server:
            refresh_devices()  # PortAudio lists JACK only if it answered at initialisation
            try:
                yield server
            finally:
                # close PortAudio's JACK client while the server is up: PortAudio's JACK
                # host API fails an assertion (and aborts Python) if it must do so later
                sd._terminate()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        sd._initialize()  # as it was


def jack_port_names():
    return {p.name for p in jack_ports(os.environ.get("JACK_DEFAULT_SERVER"))}


def new_ports(before, kind):
    """PortAudio's ports opened since `before`, in channel order (it numbers them on: in_0, in_1...)."""
    new = [p for p in jack_port_names() - before if re.search(rf":{kind}_\d+$", p)]
    if not new:
        raise RuntimeError(f"no new JACK {kind} port")
    return sorted(new, key=lambda p: int(p.rsplit("_", 1)[1]))


def connect(src, dst):
    jack_connect(src, dst, os.environ.get("JACK_DEFAULT_SERVER"))


class Capture(NativeJackCapture):
    """A JACK audio input fed from a chosen JACK output port (connect it to ``port``).

    A native JACK client (``realtime.jackcapture.NativeJackCapture``), not a PortAudio
    stream: PortAudio closing a capture stream crashed libjack once in the test suite.
    """

    def __init__(self, frames):
        super().__init__(frames, client_name=f"ostinato-capture-{os.getpid()}")


def play_and_capture(gaps_ms, lead_ms=50.0):
    """Play one note (A4, 60 ms) per gap through an AudioPort, captured back through JACK.

    Each event is handed over ``lead_ms`` before its time, stamped with it, so what is
    seen is where the port places it, not how punctually this thread wakes.  Returns
    (the closed port, its underruns while playing, the captured audio, the t_ns asked
    for each note-on).
    """
    from realtime.audio import AudioPort

    before = jack_port_names()
    seconds = sum(gaps_ms) / 1000 + 1.5
    with AudioPort(blocksize=PERIOD) as port, Capture(int(seconds * SR)) as cap:
        connect(new_ports(before, "out")[0], cap.port)  # the left channel
        # a connection re-orders JACK's graph, which can cost a period: count from here
        settle = time.monotonic() + 0.1
        while time.monotonic() < settle:
            time.sleep(0.01)
        setup_underruns = port.underruns
        start = time.monotonic_ns() + 300_000_000
        times = [start + int(sum(gaps_ms[:k]) * 1e6) for k in range(len(gaps_ms) + 1)]
        for t in times:
            while time.monotonic_ns() < t - lead_ms * 1e6:
                time.sleep(0.0005)
            port.send(0x90, 69, 100, t, 0.0)
            port.send(0x80, 69, 0, t + 60_000_000, 0.0)
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            time.sleep(0.01)
        underruns = port.underruns - setup_underruns
    return port, underruns, cap.buf[:cap.n], times


def onsets(audio, quiet=2400):
    """Sample indices where the sound first passes 10 % of its peak after ``quiet`` silent samples."""
    loud = np.abs(audio) > 0.1 * np.abs(audio).max()
    return np.array([i for i in np.flatnonzero(loud) if not loud[max(0, i - quiet):i].any()])


def note_on_frames(port, times):
    """The stream frame the port rendered each of ``times``' note-ons at."""
    placed = port.placed()
    on = {int(t): int(f) for t, f, st in placed if st & 0xF0 == 0x90}
    return np.array([on[t] for t in times])


def measure(notes=60, runs=3, seed=1):
    rng = random.Random(seed)
    rendering, placement, period_start = [], [], []
    underruns = []
    with portaudio_jack():
        for _ in range(runs):
            gaps = [rng.uniform(200.0, 300.0) for _ in range(notes - 1)]  # past the release tail
            port, under, audio, times = play_and_capture(gaps)
            underruns.append(under)
            frames = note_on_frames(port, times)
            heard = onsets(audio)
            if len(heard) != len(frames):
                raise RuntimeError(f"heard {len(heard)} onsets for {len(frames)} notes")
            asked = np.diff(np.array(times)) * SR / 1e9            # frames
            rendering += list((np.diff(heard) - np.diff(frames)) / SR * 1e3)
            placement += list((np.diff(frames) - asked) / SR * 1e3)
            starts = frames - frames % PERIOD                      # rtmidi-style
            period_start += list((np.diff(starts) - asked) / SR * 1e3)
    absms = lambda xs: summary([abs(x) for x in xs])  # noqa: E731
    return {"notes": notes, "runs": runs, "seed": seed, "period_frames": PERIOD,
            "sample_rate": SR, "underruns": underruns,
            "rendering_error_ms": absms(rendering),
            "placement_error_ms": absms(placement),
            "period_start_error_ms": absms(period_start)}


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.audio",
                                description=__doc__.split("\n")[0])
    p.add_argument("--notes", type=int, default=60, help="notes a run (default 60)")
    p.add_argument("--runs", type=int, default=3, help="runs (default 3)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", default=None, help="also write the figures to this file")
    args = p.parse_args(argv)
    if args.notes < 3 or args.runs < 1:
        p.error("--notes must be >= 3 and --runs >= 1")
    res = measure(args.notes, args.runs, args.seed)
    for key, what in [("rendering_error_ms", "onset gap - placed gap (rendering)"),
                      ("placement_error_ms", "placed gap - asked gap (clock estimate)"),
                      ("period_start_error_ms", "period-start writing - asked gap")]:
        r = res[key]
        print(f"{what}: p50 {r['p50']:.3f} ms, p99 {r['p99']:.3f} ms, max {r['max']:.3f} ms")
    print(f"underruns per run: {res['underruns']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine(), **res}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
