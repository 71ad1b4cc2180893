"""Live audio preview: the built-in synth played through sounddevice (PortAudio).

The sequencer's sending thread must never wait for the audio thread, so ``send``
only writes into a preallocated single-producer single-consumer ring (numpy int64
arrays; the producer alone moves the head, the consumer alone the tail).  The audio
callback drains the ring inside a numba kernel, turns each event's ``t_ns`` into a
frame offset in the buffer being rendered, and renders the synth straight into
PortAudio's buffer: no locks, no allocation of audio data, no per-sample Python.

Timing: an event scheduled at ``t_ns`` (``time.monotonic_ns``) is heard at
``t_ns + delay``, the same delay for every event, so the rhythm is kept to the
sample rather than to the callback period.  The buffer's start in monotonic time is
``outputBufferDacTime`` mapped through a running estimate of (monotonic - stream
clock).  Under JACK, PortAudio's ``currentTime`` follows monotonic time to about
0.1 ms (measured: spread 117 us over 1 s with the dummy driver) and
``outputBufferDacTime - currentTime`` is a constant two periods (10.7 ms at
256 frames / 48 kHz), so the mapping is reliable there.  Host APIs that report zero
times fall back to "now + stream latency".
"""
import functools
import itertools
import logging
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, replace

import numpy as np
from numba import njit

from engine.errors import InvalidMessage, PortError

from realtime.outputs import BasePort, JackMidiPort
from realtime.soundfont import default_soundfont
from realtime.synth import Synth, SynthConfig, check_float, check_int, push_event, render_kernel
from realtime.voices import EV_ALL_NOTES_OFF, M_NEV

# ring columns and index slots
R_STATUS, R_D1, R_D2, R_T = range(4)
I_HEAD, I_TAIL, I_OVERFLOW, I_PLACED = range(4)
_instances = itertools.count()
log = logging.getLogger("ostinato.audio")

START_TRIES = 2     # FluidSynth starts (a second try when JACK refused it a port)
CLOCK_BLOCK = 256  # callbacks a block of the stream-clock estimate (1.4 s at 256 frames)
PLACED_LOG = 1024  # events whose placement the port remembers (AudioPort.placed)


class StreamClock:
    """A running estimate of (monotonic time - stream time), in ns.

    Each callback reads both clocks.  Its wake-up jitter only makes a reading larger,
    so the estimate is the least reading; over a sliding window (the last one to two
    blocks of ``block`` callbacks), not all time: JACK's clock settles after start-up
    and can step, and an early reading must not bias the rest.  Measured under load
    (``benchmarks/audio.py``, load average 3-5): blocks of 32 callbacks (0.17 s) put
    notes 1.3 ms off at p99, blocks of 256 (1.4 s) 0.11 ms; the max, 5.3 ms, is one
    period, where JACK missed a cycle.
    """

    def __init__(self, block=CLOCK_BLOCK):
        self.block = block
        self._cur = self._last = None  # this block's least, the last full block's
        self._n = 0

    def update(self, now_ns, stream_ns):
        """Take one reading; returns the estimate after it."""
        raw = now_ns - stream_ns
        cur = raw if self._cur is None else min(self._cur, raw)
        last = self._last
        self._n += 1
        if self._n == self.block:  # the block is full: it becomes the last one
            self._cur, self._last, self._n = None, cur, 0
        else:
            self._cur = cur
        return cur if last is None else min(cur, last)


def _sounddevice():
    """Import sounddevice, turning a missing PortAudio into PortError."""
    try:
        import sounddevice
    except OSError as exc:  # sounddevice raises OSError when libportaudio is missing
        raise PortError(f"PortAudio not found ({exc}); install libportaudio2") from exc
    return sounddevice


def refresh_devices():
    """Re-scan audio devices (e.g. after jackd started).  Closes this process's open streams."""
    sd = _sounddevice()
    if sd._initialized:   # sounddevice's documented way to re-initialise PortAudio
        sd._terminate()
    sd._initialize()


def _output_device(sd, device):
    """The index of an output device, or PortError saying why there is none."""
    try:
        info = sd.query_devices(device, "output")
    except (ValueError, sd.PortAudioError) as exc:
        names = ", ".join(h["name"] for h in sd.query_hostapis()) or "none"
        which = "default" if device is None else repr(device)
        raise PortError(f"no audio output device ({which}): {exc}; host APIs: {names} "
                        "(is a JACK server or sound card there?)") from exc
    return info


@dataclass(frozen=True)
class AudioConfig:
    """Audio preview settings.  device: sounddevice index or name (None: default)."""

    device: object = None
    sample_rate: int = 48000
    blocksize: int = 256          # frames per callback; 0 lets the host choose
    latency: object = "low"       # sounddevice latency: 'low', 'high' or seconds
    delay_s: float | None = None  # t_ns -> heard delay; None: two periods past the DAC time
    ring_size: int = 8192         # events in flight between the sender and the callback
    polyphony: int = 32
    close_fade_s: float = 0.5     # at close, wait this long at most for releases to end


@njit(nogil=True, cache=True)
def drain_ring(ring, idx, dac_ns, delay_ns, sample_rate, ev, meta, frame0, placed):
    """Move events from the ring into the synth queue at frame offsets; returns late count.

    Stops early (leaving events in the ring) when the synth queue is full.  Each event's
    placement is logged in ``placed`` (a ring of rows t_ns, stream frame, status, where
    ``frame0`` is the stream frame of this buffer's first sample; ``idx[I_PLACED]``
    counts them): what was asked for beside what was done.
    """
    head = idx[I_HEAD]
    tail = idx[I_TAIL]
    mask = ring.shape[0] - 1
    late = 0
    ns_to_frames = sample_rate / 1e9
    while tail < head and meta[M_NEV] < ev.shape[0]:
        slot = tail & mask
        off = int(round((ring[slot, R_T] + delay_ns - dac_ns) * ns_to_frames))
        if off < 0:
            off = 0
            late += 1
        push_event(ev, meta, off, ring[slot, R_STATUS], ring[slot, R_D1], ring[slot, R_D2])
        row = idx[I_PLACED] % placed.shape[0]
        placed[row, 0] = ring[slot, R_T]
        placed[row, 1] = frame0 + off
        placed[row, 2] = ring[slot, R_STATUS]
        idx[I_PLACED] += 1
        tail += 1
    idx[I_TAIL] = tail
    if idx[I_OVERFLOW] != 0 and tail == head:
        # the ring overflowed, so a note-off may be lost: release everything
        if push_event(ev, meta, 0, EV_ALL_NOTES_OFF, 0, 0):
            idx[I_OVERFLOW] = 0
    return late


class AudioPort(BasePort):
    """Plays performed events through the built-in synth on an audio output.

    Raises PortError with a one-line reason when no output can be opened, so the
    server can print it and go on with its other outputs.
    """

    name = "audio"

    def __init__(self, config=None, **overrides):
        super().__init__()
        cfg = replace(config or AudioConfig(), **overrides)
        self.config = cfg
        sr = check_int("sample_rate", cfg.sample_rate, 8000, 192000)
        check_int("blocksize", cfg.blocksize, 0, 8192)
        ring = check_int("ring_size", cfg.ring_size, 16, 1 << 20)
        if ring & (ring - 1):
            raise InvalidMessage(f"ring_size must be a power of two, got {ring}",
                                 field="ring_size", allowed="16..1048576, a power of two")
        if cfg.delay_s is not None:
            check_float("delay_s", cfg.delay_s, 0.0, 2.0)
        check_float("close_fade_s", cfg.close_fade_s, 0.0, 10.0)
        self.synth = Synth(SynthConfig(sample_rate=sr, polyphony=cfg.polyphony))
        self._ring = np.zeros((ring, 4), np.int64)
        self._idx = np.zeros(4, np.int64)
        self._placed = np.zeros((PLACED_LOG, 3), np.int64)
        self.frames = 0     # frames rendered since the stream started
        self.callbacks = 0
        self.underruns = 0
        self.late = 0       # events that arrived after their frame had been played
        self.dropped = 0    # events refused because the ring was full
        # how long each of the last 1024 callbacks took (ns), written in place: it tells a
        # callback too slow for its period from a machine that did not run it in time
        self._busy = np.zeros(1024, np.int64)
        self._clock = StreamClock()
        self._delay_ns = None if cfg.delay_s is None else int(cfg.delay_s * 1e9)
        sd = _sounddevice()
        info = _output_device(sd, cfg.device)
        if info["max_output_channels"] < 2:
            raise PortError(f"audio device {info['name']!r} has {info['max_output_channels']} "
                            "output channel(s); 2 are needed")
        self._warm_up()
        try:
            self._stream = sd.OutputStream(
                samplerate=sr, blocksize=cfg.blocksize, device=cfg.device, channels=2,
                dtype="float32", latency=cfg.latency, callback=self._callback)
        except (sd.PortAudioError, ValueError) as exc:
            raise PortError(f"cannot open audio output {info['name']!r}: {exc}") from exc
        try:
            self._stream.start()
        except sd.PortAudioError as exc:
            self._stream.close()
            raise PortError(f"cannot start audio output {info['name']!r}: {exc}") from exc
        self.device_name = info["name"]

    @staticmethod
    def available(device=None):
        """(True, device name) when an output can be opened, else (False, reason)."""
        try:
            sd = _sounddevice()
            info = _output_device(sd, device)
            sd.check_output_settings(device=device, channels=2, dtype="float32")
        except PortError as exc:
            return False, str(exc)
        except Exception as exc:  # check_output_settings raises PortAudioError or ValueError
            return False, f"audio output unusable: {exc}"
        return True, info["name"]

    def _warm_up(self):
        """Compile the numba kernels now, not in the first audio callback."""
        buf = np.zeros((max(self.config.blocksize, 16), 2), np.float32)
        drain_ring(self._ring, self._idx, 0, 0, float(self.config.sample_rate),
                   self.synth.ev, self.synth.meta, 0, self._placed)
        self.synth.render(len(buf), buf)

    # producer side: the sequencer's sending thread ------------------------------
    def _send(self, status, data1, data2, t_ns, beat, session):
        if 0x80 <= status <= 0xEF:  # clock, start/stop and system messages do not sound
            self._push(status, data1 & 0x7F, data2 & 0x7F, t_ns)

    def _push(self, status, d1, d2, t_ns):
        head = self._idx[I_HEAD]
        if head - self._idx[I_TAIL] >= len(self._ring):
            self.dropped += 1
            self._idx[I_OVERFLOW] = 1
            return
        row = self._ring[head & (len(self._ring) - 1)]
        row[R_STATUS] = status
        row[R_D1] = d1
        row[R_D2] = d2
        row[R_T] = t_ns
        self._idx[I_HEAD] = head + 1  # publish after the row is written

    # consumer side: PortAudio's thread ------------------------------------------
    def _callback(self, outdata, frames, time_info, status):
        now = time.monotonic_ns()
        self.callbacks += 1
        if status.output_underflow:
            self.underruns += 1
        dac = time_info.outputBufferDacTime
        if dac > 0.0 and time_info.currentTime > 0.0:
            dac_ns = self._clock.update(now, int(time_info.currentTime * 1e9)) + int(dac * 1e9)
        else:
            dac_ns = now + int(self._stream.latency * 1e9)
        if self._delay_ns is None:
            self._delay_ns = dac_ns - now + 2 * int(frames * 1e9 / self.config.sample_rate)
        self.late += drain_ring(self._ring, self._idx, dac_ns, self._delay_ns,
                                float(self.config.sample_rate), self.synth.ev, self.synth.meta,
                                self.frames, self._placed)
        s = self.synth
        render_kernel(outdata, frames, s.mix, s.ev, s.meta, s.stats, s.par,
                      s.vf, s.vi, s.ks, s.chf, s.chi)
        self.frames += frames
        self._busy[self.callbacks & 1023] = time.monotonic_ns() - now

    @property
    def callback_us(self):
        """The median time a callback took over the last (up to) 1024, in µs (None before
        the first): well under a period means underruns were the machine's, not ours."""
        n = min(self.callbacks, len(self._busy))
        return None if n == 0 else float(np.median(self._busy[:n])) / 1000

    def placed(self):
        """The last (up to) 1024 events the callback has taken, oldest first: rows of
        (t_ns asked for, stream frame it was rendered at, status).  A frame counts from
        the stream's first callback; two events' frames differ by what the port made of
        their t_ns, which the audio shows (tests/realtime/test_audio.py) and
        ``benchmarks/audio.py`` measures against what was asked."""
        n = int(self._idx[I_PLACED])
        rows = np.arange(max(0, n - len(self._placed)), n) % len(self._placed)
        return self._placed[rows].copy()

    @property
    def delay_s(self):
        """Constant delay from an event's t_ns to its sound leaving the host API."""
        return None if self._delay_ns is None else self._delay_ns / 1e9

    def all_notes_off(self):
        """Release every sounding note (through the ring, so it keeps its order)."""
        if not self.closed:
            self._push(EV_ALL_NOTES_OFF, 0, 0, time.monotonic_ns())

    def _close(self):
        # release everything, let the releases play out, then stop: no click, no hung note
        self._push(EV_ALL_NOTES_OFF, 0, 0, time.monotonic_ns())
        deadline = time.monotonic() + self.config.close_fade_s
        while time.monotonic() < deadline and self._stream.active and (
                self._idx[I_TAIL] < self._idx[I_HEAD] or self.synth.active_voices):
            time.sleep(0.005)
        self._stream.stop()
        self._stream.close()


class FluidSynthPort(BasePort):
    """Plays events with FluidSynth and a General MIDI SoundFont, over JACK.

    Starts ``fluidsynth -a jack -m jack -j`` (its shell reads a pipe we hold open, so it
    stays up; ``-j`` connects its audio to system:playback) as a JACK client of its
    own, so no Python runs in the audio path, and feeds its MIDI input from a native
    JACK output (``realtime.outputs.JackMidiPort``), which writes each message at the
    frame of its time: the player hands them over ``lead_ns`` early.
    """

    name = "fluidsynth"

    def __init__(self, soundfont=None, start_timeout_s=10.0):
        super().__init__()
        exe = shutil.which("fluidsynth")
        sf2 = soundfont or default_soundfont()
        if not exe:
            raise PortError("FluidSynth live preview needs fluidsynth (Debian package fluidsynth)")
        if sf2 is None:
            raise PortError("FluidSynth live preview needs a General MIDI SoundFont (.sf2)")
        tag = f"{os.getpid()}-{next(_instances)}"
        self.client_name = f"ostinato-fs-{tag}"
        cmd = [exe, "-a", "jack", "-m", "jack", "-j", "-o", f"midi.jack.id={self.client_name}",
               "-o", f"audio.jack.id={self.client_name}", sf2]
        start = functools.partial(subprocess.Popen, cmd, stdin=subprocess.PIPE,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._proc = start()
        self._midi = None
        try:
            self._midi = JackMidiPort(f"ostinato-{tag}", port="to-fluidsynth",
                                      connect=[self.client_name + ":midi"], reconnect_s=0.05)
            deadline = time.monotonic() + start_timeout_s
            tries = 1
            # fluidsynth's ports appear once the SoundFont is loaded; the port connects
            # to its MIDI input as soon as it is there
            while not self._midi.linked:
                if self._proc.poll() is not None:
                    err = self._proc.stderr.read().decode(errors="replace").strip()[-300:]
                    if tries < START_TRIES:
                        # a busy JACK server can refuse a port now and then ("Failed to
                        # create Jack audio port"): once more, then it is an error
                        log.warning("fluidsynth exited at start (%d): %s; starting it again",
                                    self._proc.returncode, err.splitlines()[-1] if err else "")
                        self._proc.stderr.close()
                        self._proc = start()
                        tries += 1
                        continue
                    raise PortError(f"fluidsynth exited ({self._proc.returncode}): {err}")
                if time.monotonic() > deadline:
                    raise PortError(f"fluidsynth's JACK ports did not appear in {start_timeout_s} s")
                time.sleep(0.05)
            self.midi_port = self._midi.linked[0]
            self.audio_ports = [f"{self.client_name}:left", f"{self.client_name}:right"]
        except BaseException:
            self._close()
            raise

    @property
    def lead_ns(self):
        return self._midi.lead_ns if self._midi is not None else 0

    def _send(self, status, data1, data2, t_ns, beat, session):
        if 0x80 <= status <= 0xEF:  # channel messages only
            self._midi.send(status, data1, data2, t_ns, beat, session)

    def release(self, t_ns):
        if self._midi is not None:
            self._midi.release(t_ns)

    def _close(self):
        if self._midi is not None:
            self._midi.close()  # ends what sounds, once it is written
            self._midi = None
        if self._proc.poll() is None:
            try:
                self._proc.communicate(b"quit\n", timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.communicate()
        else:
            self._proc.communicate()