"""Live audio preview through a real JACK server (dummy driver) and PortAudio.

What this proves: PortAudio opens JACK's output, the callback drains the ring and
renders, events land at the frame their t_ns asks for (checked in audio captured
back through JACK), the stream runs without underruns at 256 frames, and closing
leaves no note sounding.  What it does not: the dummy driver is a timer, not a sound
card, so nothing about a real device's clock, latency or drift is tested here.
"""
import os
import re
import shutil
import time

import numpy as np
import pytest

from engine.errors import InvalidMessage, PortError
from realtime.jack import JackConfig, JackServer, jack_connect, jack_ports

SR = 48000
PERIOD_US = 256 / SR * 1e6  # the test server's JACK period: 5.3 ms


@pytest.fixture(scope="module")
def portaudio_jack():
    """A JACK server of this module's own (dummy driver, 48 kHz, 256 frames), seen by PortAudio.

    Not the session's shared server: PortAudio blocks for good when the server it uses
    stops under it, which a shared server owned by another test session may do.  The
    name goes in JACK_DEFAULT_SERVER, which libjack reads in this process and in the
    tools (jack_lsp, jack_connect, fluidsynth) started from it.
    """
    import sounddevice as sd
    from realtime.audio import refresh_devices
    if shutil.which("jackd") is None:
        pytest.skip("needs jackd (Debian jackd2)")
    saved = {k: os.environ.get(k) for k in ("JACK_DEFAULT_SERVER", "JACK_NO_START_SERVER")}
    name = f"ostinato-audio-{os.getpid()}"
    os.environ.update(JACK_DEFAULT_SERVER=name, JACK_NO_START_SERVER="1")
    try:
        with JackServer(JackConfig(server=name, rate=SR, period=256, realtime=True)) as server:
            refresh_devices()  # PortAudio lists JACK only if it answered at initialisation
            yield server
            # close PortAudio's JACK client while the server is up: PortAudio's JACK
            # host API fails an assertion (and aborts Python) if it must do so later
            sd._terminate()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        sd._initialize()  # as it was, for later tests


def _ports():
    return {p.name for p in jack_ports(os.environ.get("JACK_DEFAULT_SERVER"))}


def _new_ports(before, kind):
    """PortAudio's ports opened since `before`, in channel order (it numbers them on: in_0, in_1...)."""
    new = [p for p in _ports() - before if re.search(rf":{kind}_\d+$", p)]
    assert new, f"no new JACK {kind} port"
    return sorted(new, key=lambda p: int(p.rsplit("_", 1)[1]))


def _connect(src, dst):
    jack_connect(src, dst, os.environ.get("JACK_DEFAULT_SERVER"))


class Capture:
    """A sounddevice input stream on JACK, fed from a chosen JACK output port."""

    def __init__(self, frames):
        import sounddevice as sd
        self.buf = np.zeros(frames, np.float32)
        self.n = 0
        before = _ports()
        self.stream = sd.InputStream(samplerate=SR, blocksize=256, channels=1, dtype="float32",
                                     callback=self._callback)
        self.port = _new_ports(before, "in")[0]

    def _callback(self, indata, frames, time_info, status):
        k = min(frames, len(self.buf) - self.n)
        self.buf[self.n:self.n + k] = indata[:k, 0]
        self.n += k

    def __enter__(self):
        self.stream.start()
        return self

    def __exit__(self, *exc):
        self.stream.stop()
        self.stream.close()


def test_jack_output_is_available(portaudio_jack):
    import sounddevice as sd
    from realtime.audio import AudioPort
    assert any("JACK" in api["name"] and api["devices"] for api in sd.query_hostapis())
    ok, name = AudioPort.available()
    assert ok, name


def test_missing_device_raises_port_error(portaudio_jack):
    from realtime.audio import AudioPort
    ok, reason = AudioPort.available(device=999)
    assert not ok and "999" in reason and "\n" not in reason
    with pytest.raises(PortError, match="999"):
        AudioPort(device=999)


def test_bad_settings_name_the_field(portaudio_jack):
    from realtime.audio import AudioPort
    with pytest.raises(InvalidMessage) as err:
        AudioPort(ring_size=1000)
    assert err.value.field == "ring_size"
    with pytest.raises(InvalidMessage) as err:
        AudioPort(blocksize=-1)
    assert err.value.field == "blocksize" and err.value.allowed == "0..8192"


def _play_and_capture(gaps_ms):
    """Play one note per gap through AudioPort, captured back through JACK.

    Returns the port, its underruns while playing, and the captured left channel.
    """
    from realtime.audio import AudioPort

    before = _ports()
    with AudioPort(blocksize=256) as port, Capture(4 * SR) as cap:
        _connect(_new_ports(before, "out")[0], cap.port)  # the left channel
        # a connection re-orders JACK's graph, which can cost a period: count from here
        settle = time.monotonic() + 0.1
        while time.monotonic() < settle:
            time.sleep(0.01)
        setup_underruns = port.underruns
        start = time.monotonic_ns() + 300_000_000
        times = [start + int(sum(gaps_ms[:k]) * 1e6) for k in range(len(gaps_ms) + 1)]
        # each event is handed over 50 ms before its time, stamped with it: what is tested
        # is that the port places it at its frame, not how punctually this thread wakes
        # on a loaded machine (a send after its frame is counted late: see port.late)
        for t in times:
            while time.monotonic_ns() < t - 50_000_000:
                time.sleep(0.0005)
            port.send(0x90, 69, 100, t, 0.0)
            port.send(0x80, 69, 0, t + 60_000_000, 0.0)
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            time.sleep(0.01)
        underruns = port.underruns - setup_underruns
    return port, underruns, cap.buf[:cap.n]


def test_events_play_at_their_frames_without_underruns(portaudio_jack):
    # irregular gaps, none a multiple of the 256-frame period
    gaps_ms = [210.0, 187.3, 243.9, 199.1, 228.6, 205.5]
    # JACK flags every client when the server misses a period, whoever was slow.  A slow
    # callback would miss in every run; this shared machine causes the odd sporadic one.
    runs = []
    for _ in range(5):
        port, underruns, audio = _play_and_capture(gaps_ms)
        runs.append((underruns, port.callback_us))
        # our own callback must fit its period many times over, whatever the machine does
        assert port.callback_us < PERIOD_US / 4, f"the callback is too slow: {runs}"
        if underruns == 0:
            break
    else:  # a callback that fits its period, late anyway: this shared machine was busy
        pytest.skip(f"CPU overloaded: underruns in every run, (underruns, median callback µs) "
                    f"{runs} with a {PERIOD_US:.0f} µs period")
    assert port.callbacks > 100 and port.synth.peak > 0.01
    assert port.late == 0 and port.dropped == 0
    assert port.synth.active_voices == 0  # closing released everything

    loud = np.abs(audio) > 0.1 * np.abs(audio).max()
    onsets = [i for i in np.flatnonzero(loud) if not loud[max(0, i - 2400):i].any()]
    assert len(onsets) == len(gaps_ms) + 1, onsets
    # same note each time, so each onset sits at the same point after its event frame:
    # the gaps between onsets are the gaps between the t_ns stamps.  Placing by frame is
    # exact (test_drain_ring_places_each_event_at_its_frame); here the monotonic-to-stream
    # clock estimate adds up to ~1 ms when the machine is loaded (measured 1.07 ms with the
    # suite and four other jobs on 2 cores).  Writing every event at the start of its period,
    # as rtmidi's JACK backend does, errs by up to a period (5.3 ms): 2 ms tells the two apart.
    got_ms = np.diff(onsets) / SR * 1000
    assert np.abs(got_ms - np.array(gaps_ms)).max() < 2.0, (got_ms, gaps_ms)


def test_drain_ring_places_each_event_at_its_frame():
    from realtime.audio import R_D1, R_D2, R_STATUS, R_T, I_HEAD, drain_ring
    from realtime.synth import M_NEV, Synth, SynthConfig

    synth = Synth(SynthConfig(sample_rate=SR))
    ring, idx = np.zeros((16, 4), np.int64), np.zeros(3, np.int64)
    dac_ns, delay_ns = 10_000_000_000, 20_000_000
    # t_ns chosen so that t + delay - dac is 0, 1, 255 and 10,000 frames, and one is late
    frames = [0, 1, 255, 10_000, -3]
    for i, f in enumerate(frames):
        ring[i, R_STATUS], ring[i, R_D1], ring[i, R_D2] = 0x90, 60 + i, 100
        ring[i, R_T] = dac_ns - delay_ns + round(f * 1e9 / SR)
    idx[I_HEAD] = len(frames)
    late = drain_ring(ring, idx, dac_ns, delay_ns, float(SR), synth.ev, synth.meta)
    assert late == 1
    assert synth.meta[M_NEV] == len(frames)
    assert list(synth.ev[:len(frames), 0]) == [0, 1, 255, 10_000, 0]  # the late one at once
    assert list(synth.ev[:len(frames), 2]) == [60, 61, 62, 63, 64]


@pytest.mark.skipif(not shutil.which("fluidsynth"), reason="needs the fluidsynth program")
def test_fluidsynth_port_sounds(portaudio_jack):
    from realtime.audio import FluidSynthPort
    from realtime.synth import default_soundfont
    if default_soundfont() is None:
        pytest.skip("needs a General MIDI SoundFont")
    with FluidSynthPort() as port, Capture(2 * SR) as cap:
        _connect(port.audio_ports[0], cap.port)
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:
            time.sleep(0.01)
        silent = cap.n
        port.send(0x90, 60, 110, time.monotonic_ns(), 0.0)
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            time.sleep(0.01)
        port.send(0x80, 60, 0, time.monotonic_ns(), 0.0)
        proc = port._proc
    assert proc.poll() is not None  # fluidsynth has quit
    assert np.abs(cap.buf[:silent]).max() < 1e-4
    assert np.abs(cap.buf[silent:cap.n]).max() > 0.01
