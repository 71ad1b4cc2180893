"""A small polyphonic synthesiser: queue MIDI events at frame offsets, render blocks.

So that a user without a DAW or a SoundFont hears Ostinato.  The state lives in
preallocated numpy arrays (their layout and the voice kernels: ``realtime.voices``);
one numba kernel (``nogil``) applies the queued events at their exact frame and
renders a block, so the audio callback allocates nothing and never waits on the GIL
while it computes.  Output is float32 stereo through a soft-knee limiter, so it never
exceeds +-1.0.
"""
import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from engine.errors import InvalidMessage, OstinatoError

from realtime.voices import (C_PAN, C_VOL, EV_ALL_NOTES_OFF, EV_ALL_SOUND_OFF, FREE, M_ACTIVE,
                             M_DROPPED, M_FRAMES, M_NEV, M_RNG, M_STEALS, NVF, NVI, P_KNEE,
                             S_MAXPEAK, S_PEAK, S_SUMSQ, STAGE, apply_event, render_voice)


@dataclass(frozen=True)
class SynthConfig:
    """Settings of one synthesiser; the defaults suit 48 kHz game-music preview."""

    sample_rate: int = 48000
    polyphony: int = 32          # sounding voices; a new note beyond this steals one
    max_events: int = 4096       # queued events not yet rendered
    chunk: int = 1024            # scratch mix buffer; any block size is rendered in chunks
    gain: float = 0.22           # level of one voice at velocity 127 before the limiter
    knee: float = 0.6            # the limiter is linear below this level
    steal_fade_s: float = 0.002  # fade of a stolen voice: short, but no click
    seed: int = 1                # noise for plucks and drums: same seed, same audio


def check_int(field, value, lo, hi):
    """``value`` as an int if it is an integer in lo..hi, else InvalidMessage naming ``field``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
        raise InvalidMessage(f"{field} must be an integer in {lo}..{hi}, got {value!r}",
                             field=field, allowed=f"{lo}..{hi}")
    return int(value)


def check_float(field, value, lo, hi):
    """``value`` as a float if it is a number in lo..hi, else InvalidMessage naming ``field``."""
    try:
        ok = lo <= float(value) <= hi
    except (TypeError, ValueError):
        ok = False
    if not ok or isinstance(value, bool):
        raise InvalidMessage(f"{field} must be a number in {lo}..{hi}, got {value!r}",
                             field=field, allowed=f"{lo}..{hi}")
    return float(value)


def check_config(cfg):
    """Raise InvalidMessage naming the first out-of-range field of a SynthConfig."""
    check_int("sample_rate", cfg.sample_rate, 8000, 192000)
    check_int("polyphony", cfg.polyphony, 1, 256)
    check_int("max_events", cfg.max_events, 16, 1 << 20)
    check_int("chunk", cfg.chunk, 16, 1 << 16)
    check_float("gain", cfg.gain, 0.0, 1.0)
    check_float("knee", cfg.knee, 0.1, 0.95)
    check_float("steal_fade_s", cfg.steal_fade_s, 0.0005, 0.05)
    check_int("seed", cfg.seed, 1, (1 << 62))
    return cfg


@njit(nogil=True, cache=True)
def _sort_events(ev, n):
    """Stable insertion sort of the queue by frame offset (it is nearly sorted)."""
    for i in range(1, n):
        j = i
        while j > 0 and ev[j - 1, 0] > ev[j, 0]:
            for k in range(4):
                tmp = ev[j - 1, k]
                ev[j - 1, k] = ev[j, k]
                ev[j, k] = tmp
            j -= 1


@njit(nogil=True, cache=True)
def render_kernel(out, frames, mix, ev, meta, stats, par, vf, vi, ks, chf, chi):
    """Render `frames` stereo frames into out[:frames], applying queued events.

    Events whose offset lies beyond this block stay queued, moved `frames` earlier.
    """
    n = meta[M_NEV]
    _sort_events(ev, n)
    e = 0
    chunk = mix.shape[0]
    knee = par[P_KNEE]
    peak = 0.0
    sumsq = 0.0
    for c0 in range(0, frames, chunk):
        c1 = min(frames, c0 + chunk)
        for i in range(c1 - c0):
            mix[i, 0] = 0.0
            mix[i, 1] = 0.0
        pos = c0
        while pos < c1:
            while e < n and ev[e, 0] <= pos:
                apply_event(ev[e, 1], ev[e, 2], ev[e, 3], meta, par, vf, vi, ks, chf, chi)
                e += 1
            end = c1
            if e < n and ev[e, 0] < c1:
                end = ev[e, 0]
            for v in range(vi.shape[0]):
                if vi[v, STAGE] != FREE:
                    render_voice(v, mix, pos - c0, end - c0, meta, vf, vi, ks, chf)
            pos = end
        for i in range(c1 - c0):
            for k in range(2):
                x = mix[i, k]
                ax = abs(x)
                if ax > knee:  # soft knee: tends to 1.0, never beyond
                    ax = knee + (1.0 - knee) * math.tanh((ax - knee) / (1.0 - knee))
                    x = ax if x > 0 else -ax
                out[c0 + i, k] = x
                if ax > peak:
                    peak = ax
                sumsq += x * x
    # keep the events that belong to later blocks
    k = 0
    for j in range(e, n):
        ev[k, 0] = ev[j, 0] - frames
        ev[k, 1] = ev[j, 1]
        ev[k, 2] = ev[j, 2]
        ev[k, 3] = ev[j, 3]
        k += 1
    meta[M_NEV] = k
    active = 0
    for v in range(vi.shape[0]):
        if vi[v, STAGE] != FREE:
            active += 1
    meta[M_ACTIVE] = active
    meta[M_FRAMES] += frames
    stats[S_PEAK] = peak
    stats[S_MAXPEAK] = max(stats[S_MAXPEAK], peak)
    stats[S_SUMSQ] += sumsq


@njit(nogil=True, cache=True)
def push_event(ev, meta, offset, status, d1, d2):
    """Queue one event; False (and counted in meta) when the queue is full."""
    n = meta[M_NEV]
    if n >= ev.shape[0]:
        meta[M_DROPPED] += 1
        return False
    ev[n, 0] = offset
    ev[n, 1] = status
    ev[n, 2] = d1
    ev[n, 3] = d2
    meta[M_NEV] = n + 1
    return True


class Synth:
    """A polyphonic synthesiser: queue events with a frame offset, then `render`.

    Offsets count frames from the start of the next `render` call; an offset past
    that block waits for a later one.  Not thread-safe: one thread queues and renders
    (AudioPort feeds it from its audio callback through a lock-free ring).
    """

    def __init__(self, config=None):
        self.config = cfg = check_config(config or SynthConfig())
        sr = cfg.sample_rate
        nv = cfg.polyphony + max(4, cfg.polyphony // 2)  # spare slots for fading voices
        self.vf = np.zeros((nv, NVF), np.float64)
        self.vi = np.zeros((nv, NVI), np.int64)
        self.ks = np.zeros((nv, int(sr / 20.0) + 2), np.float64)  # strings down to 20 Hz
        self.chf = np.zeros((16, 2), np.float64)
        self.chi = np.zeros((16, 2), np.int64)
        self.ev = np.zeros((cfg.max_events, 4), np.int64)
        self.meta = np.zeros(8, np.int64)
        self.stats = np.zeros(3, np.float64)
        self.mix = np.zeros((cfg.chunk, 2), np.float64)
        self.par = np.array([sr, cfg.gain, cfg.knee, cfg.steal_fade_s * sr, cfg.polyphony], np.float64)
        self.reset()

    @property
    def sample_rate(self):
        return self.config.sample_rate

    def reset(self):
        """Silence at once and forget queued events, programs and controllers."""
        self.vf[:] = 0.0
        self.vi[:] = 0
        self.chf[:, C_VOL] = (100 / 127.0) ** 2  # MIDI's default channel volume
        self.chf[:, C_PAN] = 0.0
        self.chi[:] = 0
        self.meta[:] = 0
        self.meta[M_RNG] = self.config.seed
        self.stats[:] = 0.0

    # events ---------------------------------------------------------------
    def send(self, status, data1=0, data2=0, frame_offset=0):
        """Queue a raw MIDI channel message (note on/off, control change, program)."""
        status = check_int("status", status, 0x80, 0xEF)
        data1 = check_int("data1", data1, 0, 127)
        data2 = check_int("data2", data2, 0, 127)
        self._push(frame_offset, status, data1, data2)

    def note_on(self, channel, pitch, velocity, frame_offset=0):
        """Start a note; velocity 0 is a note-off, as in MIDI."""
        self._push(frame_offset, 0x90 | check_int("channel", channel, 0, 15),
                   check_int("pitch", pitch, 0, 127), check_int("velocity", velocity, 0, 127))

    def note_off(self, channel, pitch, velocity=0, frame_offset=0):
        """Release a note (held on while the sustain pedal, CC 64, is down)."""
        self._push(frame_offset, 0x80 | check_int("channel", channel, 0, 15),
                   check_int("pitch", pitch, 0, 127), check_int("velocity", velocity, 0, 127))

    def program(self, channel, program, frame_offset=0):
        """Choose the timbre of a channel by General MIDI program (0-127)."""
        self._push(frame_offset, 0xC0 | check_int("channel", channel, 0, 15),
                   check_int("program", program, 0, 127), 0)

    def control_change(self, channel, control, value, frame_offset=0):
        """Controllers understood: 7 volume, 10 pan, 64 sustain, 120/123 sound/notes off."""
        self._push(frame_offset, 0xB0 | check_int("channel", channel, 0, 15),
                   check_int("control", control, 0, 127), check_int("value", value, 0, 127))

    def all_notes_off(self, frame_offset=0):
        """Release every voice on every channel (with its normal release: no click)."""
        self._push(frame_offset, EV_ALL_NOTES_OFF, 0, 0)

    def all_sound_off(self, frame_offset=0):
        """Fade every voice within `steal_fade_s` (a few ms: still no click)."""
        self._push(frame_offset, EV_ALL_SOUND_OFF, 0, 0)

    def _push(self, frame_offset, status, d1, d2):
        offset = check_int("frame_offset", frame_offset, 0, (1 << 31) - 1)
        if not push_event(self.ev, self.meta, offset, status, d1, d2):
            raise OstinatoError(f"synth event queue full ({self.config.max_events} events): "
                                "render before queueing more")

    # audio ----------------------------------------------------------------
    def render(self, frames, out=None):
        """Render `frames` frames; returns float32 (frames, 2), written into `out` if given."""
        frames = check_int("frames", frames, 0, 1 << 30)
        if out is None:
            out = np.empty((frames, 2), np.float32)
        elif (out.dtype != np.float32 or out.ndim != 2 or out.shape[1] != 2
              or out.shape[0] < frames or not out.flags.c_contiguous):
            raise InvalidMessage("out must be a C-contiguous float32 array of shape (>= frames, 2)",
                                 field="out", allowed="float32 (frames, 2)")
        render_kernel(out, frames, self.mix, self.ev, self.meta, self.stats, self.par,
                      self.vf, self.vi, self.ks, self.chf, self.chi)
        return out[:frames]

    @property
    def active_voices(self):
        """Voices still sounding (attack, decay, release or fading) after the last render."""
        return int(self.meta[M_ACTIVE])

    @property
    def queued_events(self):
        return int(self.meta[M_NEV])

    @property
    def frames_rendered(self):
        return int(self.meta[M_FRAMES])

    @property
    def steals(self):
        """Voices taken from sounding notes because `polyphony` ran out."""
        return int(self.meta[M_STEALS])

    @property
    def peak(self):
        """Largest absolute sample rendered so far (after the limiter)."""
        return float(self.stats[S_MAXPEAK])

    @property
    def energy(self):
        """Sum of squared samples rendered so far (both channels)."""
        return float(self.stats[S_SUMSQ])
