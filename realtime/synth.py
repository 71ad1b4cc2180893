"""A small polyphonic synthesiser, offline MIDI rendering and the ``ostinato render`` command.

So that a user without a DAW or a SoundFont hears Ostinato.  The voices live in
preallocated numpy arrays; one numba kernel (``nogil``) applies the queued MIDI
events at their exact frame and renders a block, so the audio callback allocates
nothing and never waits on the GIL while it computes.

Timbres follow the General MIDI program families: piano-like decaying additive
tone, plucked string (Karplus-Strong), organ, pad, bass; channel 10 (index 9)
plays simple synthesised drums.  Output is float32 stereo through a soft-knee
limiter, so it never exceeds +-1.0.
"""
import math
import os
import shutil
import subprocess
import wave
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import mido
import numpy as np
from numba import njit

from engine.errors import InvalidMessage, OstinatoError
from engine.notes import open_midi

# ---- layout of the state arrays (numba reads module globals as constants) ----
# per-voice floats
PH, PH2, INC, INC2, ENV, RATE, SUS, DECK, AMP, BRI, BRIK, PANL, PANR = range(13)
APC, APX, APY, KSL, DAMP, SWEEP, SWEEPK, NOISEW, TONEW = range(13, 22)
NVF = 22
# per-voice ints
STAGE, CHAN, PITCH, TIMBRE, ORDER, KLEN, KPTR, PEDALHELD, NHARM, HPNOISE = range(10)
NVI = 10
# voice stages
FREE, ATTACK, DECAY, RELEASE, FADE = 0, 1, 2, 3, 4
# timbres
PIANO, PLUCK, ORGAN, PAD, BASS, DRUM = range(6)
TIMBRE_NAMES = ("piano", "pluck", "organ", "pad", "bass", "drums")
# timbre table columns: attack s, decay time constant s, sustain level, release s, gain,
# brightness time constant s (0: constant), detune cents of a second oscillator
T_ATT, T_DEC, T_SUS, T_REL, T_GAIN, T_BRI, T_DETUNE = range(7)
TIMBRES = np.array([
    # att    dec   sus   rel   gain  bri   detune
    [0.002, 1.6, 0.0, 0.060, 1.00, 0.35, 0.0],   # piano: decays even when held
    [0.001, 4.0, 0.0, 0.050, 1.30, 0.0, 0.0],    # pluck: the string loop decays itself
    [0.008, 0.10, 0.85, 0.050, 0.55, 0.0, 0.0],  # organ
    [0.150, 0.60, 0.75, 0.350, 0.60, 0.0, 7.0],  # pad: slow, two detuned oscillators
    [0.004, 0.50, 0.55, 0.040, 1.10, 0.25, 0.0],  # bass
    [0.0005, 0.2, 0.0, 0.030, 1.00, 0.0, 0.0],   # drums: decay set per instrument
])
# harmonic weights per timbre (up to 8 harmonics, via the sine recurrence)
NHARMONICS = 8
HARMONICS = np.array([
    [1.0, 0.45, 0.25, 0.12, 0.06, 0.03, 0.0, 0.0],
    [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    [1.0, 0.55, 0.30, 0.25, 0.0, 0.12, 0.0, 0.08],
    [1.0, 0.30, 0.10, 0.0, 0.0, 0.0, 0.0, 0.0],
    [1.0, 0.40, 0.15, 0.05, 0.0, 0.0, 0.0, 0.0],
    [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
])
RELEASE_S = float(TIMBRES[:, T_REL].max())  # longest release of any timbre
# channel state
C_VOL, C_PAN = 0, 1
C_PROG, C_PEDAL = 0, 1
# meta ints
M_NEV, M_ORDER, M_RNG, M_ACTIVE, M_FRAMES, M_STEALS, M_DROPPED = range(7)
# parameters
P_SR, P_GAIN, P_KNEE, P_FADE, P_POLY = range(5)
# stats
S_PEAK, S_MAXPEAK, S_SUMSQ = range(3)
# internal event statuses beyond MIDI's byte range
EV_ALL_NOTES_OFF, EV_ALL_SOUND_OFF = 0x100, 0x101
SILENT = 1e-4  # a decaying voice below this envelope level (-80 dB) is freed


def program_timbre(program):
    """The timbre a General MIDI program (0-127) plays with."""
    family = program // 8
    if family in (3, 13, 14):          # guitar, ethnic (sitar, banjo, koto...), percussive
        return PLUCK
    if family == 4:                    # bass
        return BASS
    if family in (5, 6, 11, 12, 15):   # strings, ensemble, synth pad, fx, sound fx
        return PAD
    if family in (2, 7, 8, 9, 10):     # organ, brass, reed, pipe, synth lead
        return ORGAN
    return PIANO                       # piano, chromatic percussion


PROGRAM_TIMBRE = np.array([program_timbre(p) for p in range(128)], dtype=np.int64)


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


def _check_int(field, value, lo, hi):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
        raise InvalidMessage(f"{field} must be an integer in {lo}..{hi}, got {value!r}",
                             field=field, allowed=f"{lo}..{hi}")
    return int(value)


def _check_float(field, value, lo, hi):
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
    _check_int("sample_rate", cfg.sample_rate, 8000, 192000)
    _check_int("polyphony", cfg.polyphony, 1, 256)
    _check_int("max_events", cfg.max_events, 16, 1 << 20)
    _check_int("chunk", cfg.chunk, 16, 1 << 16)
    _check_float("gain", cfg.gain, 0.0, 1.0)
    _check_float("knee", cfg.knee, 0.1, 0.95)
    _check_float("steal_fade_s", cfg.steal_fade_s, 0.0005, 0.05)
    _check_int("seed", cfg.seed, 1, (1 << 62))
    return cfg


# ------------------------------------------------------------------ kernel
@njit(nogil=True, cache=True)
def _noise(meta):
    """White noise in [-1, 1) from a 64-bit LCG kept in meta (deterministic)."""
    x = meta[M_RNG] * 6364136223846793005 + 1442695040888963407
    meta[M_RNG] = x
    return ((x >> 33) & 0x7FFFFFFF) * (2.0 / 2147483648.0) - 1.0


@njit(nogil=True, cache=True)
def _release(v, vf, vi, par, fade):
    """Start the linear release (or the short steal fade) of voice v from its level."""
    if vi[v, STAGE] == FREE:
        return
    n = par[P_FADE] if fade else TIMBRES[vi[v, TIMBRE], T_REL] * par[P_SR]
    if vf[v, ENV] <= 0.0:
        vi[v, STAGE] = FREE
        return
    vf[v, RATE] = vf[v, ENV] / max(n, 1.0)
    vi[v, STAGE] = FADE if fade else RELEASE
    vi[v, PEDALHELD] = 0


@njit(nogil=True, cache=True)
def _allocate(meta, par, vf, vi):
    """A free voice slot; steals (fades) one when `polyphony` voices sound."""
    nv = vi.shape[0]
    free = -1
    sounding = 0
    for v in range(nv):
        st = vi[v, STAGE]
        if st == FREE:
            if free < 0:
                free = v
        elif st != FADE:
            sounding += 1
    if sounding >= int(par[P_POLY]):
        # quietest released voice, else the oldest
        victim = -1
        for v in range(nv):
            if vi[v, STAGE] == RELEASE and (victim < 0 or vf[v, ENV] < vf[victim, ENV]):
                victim = v
        if victim < 0:
            for v in range(nv):
                st = vi[v, STAGE]
                if (st == ATTACK or st == DECAY) and (victim < 0 or vi[v, ORDER] < vi[victim, ORDER]):
                    victim = v
        _release(victim, vf, vi, par, True)
        meta[M_STEALS] += 1
    if free < 0:
        # every slot is fading: cut the quietest fade (already near silence)
        for v in range(nv):
            if free < 0 or vf[v, ENV] < vf[free, ENV]:
                free = v
        vi[free, STAGE] = FREE
    return free


@njit(nogil=True, cache=True)
def _note_on(ch, pitch, vel, meta, par, vf, vi, ks, chf, chi):
    sr = par[P_SR]
    # a repeated note on a channel fades the held one first
    for v in range(vi.shape[0]):
        st = vi[v, STAGE]
        if vi[v, CHAN] == ch and vi[v, PITCH] == pitch and (st == ATTACK or st == DECAY):
            _release(v, vf, vi, par, True)
    v = _allocate(meta, par, vf, vi)
    timbre = DRUM if ch == 9 else PROGRAM_TIMBRE[chi[ch, C_PROG]]
    freq = 440.0 * 2.0 ** ((pitch - 69) / 12.0)
    for k in range(NVF):
        vf[v, k] = 0.0
    vi[v, STAGE] = ATTACK
    vi[v, CHAN] = ch
    vi[v, PITCH] = pitch
    vi[v, TIMBRE] = timbre
    meta[M_ORDER] += 1
    vi[v, ORDER] = meta[M_ORDER]
    vi[v, PEDALHELD] = 0
    vi[v, HPNOISE] = 0
    v01 = vel / 127.0
    vf[v, AMP] = par[P_GAIN] * TIMBRES[timbre, T_GAIN] * v01 ** 1.5
    vf[v, RATE] = 1.0 / max(TIMBRES[timbre, T_ATT] * sr, 1.0)
    vf[v, SUS] = TIMBRES[timbre, T_SUS]
    dec = TIMBRES[timbre, T_DEC]
    if timbre == PIANO:
        dec *= 2.0 ** (-(pitch - 60) / 18.0)  # high strings die sooner
    vf[v, INC] = 2.0 * math.pi * freq / sr
    if TIMBRES[timbre, T_DETUNE] > 0.0:  # two oscillators detuned either side of the pitch
        cents = 0.5 * TIMBRES[timbre, T_DETUNE] / 1200.0
        vf[v, INC2] = vf[v, INC] * 2.0 ** cents
        vf[v, INC] *= 2.0 ** -cents
    vf[v, BRI] = 1.0
    vf[v, BRIK] = 1.0
    if TIMBRES[timbre, T_BRI] > 0.0:
        vf[v, BRI] = 0.35 + 0.65 * v01
        vf[v, BRIK] = math.exp(-1.0 / (TIMBRES[timbre, T_BRI] * sr))
    nh = 0
    for h in range(NHARMONICS):  # harmonics below 0.45 sr only: no aliasing
        if HARMONICS[timbre, h] != 0.0 and (h + 1) * freq < 0.45 * sr:
            nh = h + 1
    vi[v, NHARM] = max(nh, 1)
    pan = chf[ch, C_PAN]
    vf[v, PANL] = math.cos((pan + 1.0) * math.pi / 4.0)
    vf[v, PANR] = math.sin((pan + 1.0) * math.pi / 4.0)

    if timbre == PLUCK:
        # Karplus-Strong: a loop of period sr/f = L + 0.5 (averager) + d (allpass)
        kmax = ks.shape[1]
        period = sr / freq
        while period - 0.6 > kmax - 1:
            period *= 0.5
        L = max(int(period - 0.6), 2)
        d = min(max(period - 0.5 - L, 0.1), 1.1)  # only clamped above ~0.2 sr
        vf[v, APC] = (1.0 - d) / (1.0 + d)
        vi[v, KLEN] = L
        vi[v, KPTR] = 0
        vf[v, DAMP] = math.exp(math.log(0.001) / (2.5 * sr))
        a = 0.15 + 0.85 * v01  # softer pluck, darker noise burst
        y = 0.0
        mean = 0.0
        for i in range(L):
            y += a * (_noise(meta) - y)
            ks[v, i] = y
            mean += y
        mean /= L
        for i in range(L):
            ks[v, i] -= mean
    elif timbre == DRUM:
        tone, noisew, decay, f0, sweep, hp = 0.0, 1.0, 0.1, 200.0, 0.0, 0
        if pitch == 35 or pitch == 36:           # kick
            tone, noisew, decay, f0, sweep = 1.0, 0.05, 0.30, 48.0, 2.5
        elif pitch >= 37 and pitch <= 40:        # rim, snare, clap
            tone, noisew, decay, f0, sweep = 0.5, 0.7, 0.12, 185.0, 0.3
        elif pitch == 42 or pitch == 44:         # closed and pedal hat
            tone, noisew, decay, hp = 0.0, 0.6, 0.04, 1
        elif pitch == 46:                        # open hat
            tone, noisew, decay, hp = 0.0, 0.5, 0.30, 1
        elif pitch == 49 or pitch == 52 or pitch == 55 or pitch == 57:  # crash
            tone, noisew, decay, hp = 0.0, 0.5, 0.9, 1
        elif pitch == 51 or pitch == 53 or pitch == 59:                 # ride
            tone, noisew, decay, f0, hp = 0.15, 0.35, 0.6, 520.0, 1
        elif (pitch == 41 or pitch == 43 or pitch == 45 or pitch == 47
              or pitch == 48 or pitch == 50):  # toms
            tone, noisew, decay, f0, sweep = 1.0, 0.1, 0.25, 80.0 * 2.0 ** ((pitch - 41) / 12.0), 0.6
        vf[v, TONEW] = tone
        vf[v, NOISEW] = noisew
        vf[v, INC] = 2.0 * math.pi * f0 / sr
        vf[v, SWEEP] = sweep
        vf[v, SWEEPK] = math.exp(-1.0 / (0.035 * sr))
        vi[v, HPNOISE] = hp
        dec = decay
    vf[v, DECK] = math.exp(-1.0 / (dec * sr))


@njit(nogil=True, cache=True)
def _apply(status, d1, d2, meta, par, vf, vi, ks, chf, chi):
    """Apply one queued event (a MIDI channel message or an internal all-off)."""
    nv = vi.shape[0]
    if status == EV_ALL_NOTES_OFF or status == EV_ALL_SOUND_OFF:
        for v in range(nv):
            _release(v, vf, vi, par, status == EV_ALL_SOUND_OFF)
        for c in range(16):
            chi[c, C_PEDAL] = 0
        return
    kind = status & 0xF0
    ch = status & 0x0F
    if kind == 0x90 and d2 > 0:
        _note_on(ch, d1, d2, meta, par, vf, vi, ks, chf, chi)
    elif kind == 0x80 or kind == 0x90:
        if ch == 9:
            return  # General MIDI drums are one-shots: note-off is ignored
        for v in range(nv):
            st = vi[v, STAGE]
            if vi[v, CHAN] == ch and vi[v, PITCH] == d1 and (st == ATTACK or st == DECAY):
                if chi[ch, C_PEDAL]:
                    vi[v, PEDALHELD] = 1
                else:
                    _release(v, vf, vi, par, False)
    elif kind == 0xC0:
        chi[ch, C_PROG] = d1
    elif kind == 0xB0:
        if d1 == 7:
            chf[ch, C_VOL] = (d2 / 127.0) ** 2
        elif d1 == 10:
            chf[ch, C_PAN] = (d2 - 64) / 63.0 if d2 > 64 else (d2 - 64) / 64.0
        elif d1 == 64:
            down = d2 >= 64
            chi[ch, C_PEDAL] = 1 if down else 0
            if not down:
                for v in range(nv):
                    if vi[v, CHAN] == ch and vi[v, PEDALHELD] == 1:
                        _release(v, vf, vi, par, False)
        elif d1 == 120 or d1 == 123:  # all sound off, all notes off (this channel)
            chi[ch, C_PEDAL] = 0
            for v in range(nv):
                if vi[v, CHAN] == ch:
                    _release(v, vf, vi, par, d1 == 120)


@njit(nogil=True, cache=True)
def _voice(v, mix, a, b, meta, vf, vi, ks, chf):
    """Add frames [a, b) of voice v into mix; frees the voice when it has ended."""
    timbre = vi[v, TIMBRE]
    st = vi[v, STAGE]
    env = vf[v, ENV]
    rate = vf[v, RATE]
    sus = vf[v, SUS]
    deck = vf[v, DECK]
    ph = vf[v, PH]
    ph2 = vf[v, PH2]
    inc = vf[v, INC]
    inc2 = vf[v, INC2]
    bri = vf[v, BRI]
    brik = vf[v, BRIK]
    g = vf[v, AMP] * chf[vi[v, CHAN], C_VOL]
    gl = g * vf[v, PANL]
    gr = g * vf[v, PANR]
    nh = vi[v, NHARM]
    twopi = 2.0 * math.pi
    L = vi[v, KLEN]
    p = vi[v, KPTR]
    last = vf[v, KSL]
    apc = vf[v, APC]
    x1 = vf[v, APX]
    y1 = vf[v, APY]
    damp = vf[v, DAMP]
    sweep = vf[v, SWEEP]
    sweepk = vf[v, SWEEPK]
    tonew = vf[v, TONEW]
    noisew = vf[v, NOISEW]
    hp = vi[v, HPNOISE]
    for i in range(a, b):
        # envelope: linear attack, exponential decay to sustain, linear release
        if st == ATTACK:
            env += rate
            if env >= 1.0:
                env = 1.0
                st = DECAY
        elif st == DECAY:
            env = sus + (env - sus) * deck
            if sus == 0.0 and env < SILENT:
                st = FREE
        else:
            env -= rate
            if env <= 0.0:
                env = 0.0
                st = FREE
        if st == FREE:
            break
        if timbre == PLUCK:
            cur = ks[v, p]
            avg = 0.5 * (cur + last) * damp
            last = cur
            y = apc * avg + x1 - apc * y1
            x1 = avg
            y1 = y
            ks[v, p] = y
            p += 1
            if p == L:
                p = 0
            x = cur
        elif timbre == DRUM:
            n = _noise(meta)
            if hp:
                nn = n - x1
                x1 = n
                n = 0.5 * nn
            ph += inc * (1.0 + sweep)
            if ph >= twopi:
                ph -= twopi
            sweep *= sweepk
            x = tonew * math.sin(ph) + noisew * n
        else:
            s1 = math.sin(ph)
            x = HARMONICS[timbre, 0] * s1
            if nh > 1:
                c2 = 2.0 * math.cos(ph)
                sp = 0.0
                sc = s1
                bb = 1.0
                for h in range(1, nh):
                    sn = c2 * sc - sp  # sin((h+1)ph) by recurrence: one sin, one cos per sample
                    sp = sc
                    sc = sn
                    bb *= bri
                    x += HARMONICS[timbre, h] * bb * sn
            if inc2 > 0.0:
                x += math.sin(ph2)
                ph2 += inc2
                if ph2 >= twopi:
                    ph2 -= twopi
                x *= 0.6
            ph += inc
            if ph >= twopi:
                ph -= twopi
            bri *= brik
        x *= env
        mix[i, 0] += x * gl
        mix[i, 1] += x * gr
    vi[v, STAGE] = st
    vf[v, ENV] = env
    vf[v, PH] = ph
    vf[v, PH2] = ph2
    vf[v, BRI] = bri
    vi[v, KPTR] = p
    vf[v, KSL] = last
    vf[v, APX] = x1
    vf[v, APY] = y1
    vf[v, SWEEP] = sweep


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
                _apply(ev[e, 1], ev[e, 2], ev[e, 3], meta, par, vf, vi, ks, chf, chi)
                e += 1
            end = c1
            if e < n and ev[e, 0] < c1:
                end = ev[e, 0]
            for v in range(vi.shape[0]):
                if vi[v, STAGE] != FREE:
                    _voice(v, mix, pos - c0, end - c0, meta, vf, vi, ks, chf)
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


# ------------------------------------------------------------------ Python API
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
        status = _check_int("status", status, 0x80, 0xEF)
        data1 = _check_int("data1", data1, 0, 127)
        data2 = _check_int("data2", data2, 0, 127)
        self._push(frame_offset, status, data1, data2)

    def note_on(self, channel, pitch, velocity, frame_offset=0):
        """Start a note; velocity 0 is a note-off, as in MIDI."""
        self._push(frame_offset, 0x90 | _check_int("channel", channel, 0, 15),
                   _check_int("pitch", pitch, 0, 127), _check_int("velocity", velocity, 0, 127))

    def note_off(self, channel, pitch, velocity=0, frame_offset=0):
        """Release a note (held on while the sustain pedal, CC 64, is down)."""
        self._push(frame_offset, 0x80 | _check_int("channel", channel, 0, 15),
                   _check_int("pitch", pitch, 0, 127), _check_int("velocity", velocity, 0, 127))

    def program(self, channel, program, frame_offset=0):
        """Choose the timbre of a channel by General MIDI program (0-127)."""
        self._push(frame_offset, 0xC0 | _check_int("channel", channel, 0, 15),
                   _check_int("program", program, 0, 127), 0)

    def control_change(self, channel, control, value, frame_offset=0):
        """Controllers understood: 7 volume, 10 pan, 64 sustain, 120/123 sound/notes off."""
        self._push(frame_offset, 0xB0 | _check_int("channel", channel, 0, 15),
                   _check_int("control", control, 0, 127), _check_int("value", value, 0, 127))

    def all_notes_off(self, frame_offset=0):
        """Release every voice on every channel (with its normal release: no click)."""
        self._push(frame_offset, EV_ALL_NOTES_OFF, 0, 0)

    def all_sound_off(self, frame_offset=0):
        """Fade every voice within `steal_fade_s` (a few ms: still no click)."""
        self._push(frame_offset, EV_ALL_SOUND_OFF, 0, 0)

    def _push(self, frame_offset, status, d1, d2):
        offset = _check_int("frame_offset", frame_offset, 0, (1 << 31) - 1)
        if not push_event(self.ev, self.meta, offset, status, d1, d2):
            raise OstinatoError(f"synth event queue full ({self.config.max_events} events): "
                                "render before queueing more")

    # audio ----------------------------------------------------------------
    def render(self, frames, out=None):
        """Render `frames` frames; returns float32 (frames, 2), written into `out` if given."""
        frames = _check_int("frames", frames, 0, 1 << 30)
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


# ------------------------------------------------------------------ offline
def midi_events(source, sample_rate=48000):
    """The channel messages of a MIDI file as (frame, status, data1, data2), and its end frame.

    Frames are exact: each tempo segment is summed as a fraction, then rounded once,
    so long files do not drift.
    """
    mid = open_midi(source)
    sr = _check_int("sample_rate", sample_rate, 8000, 192000)
    tpb = mid.ticks_per_beat
    tempo = 500000
    seg_tick, seg_start = 0, Fraction(0)
    tick = 0
    events = []

    def frame_at(t):
        return seg_start + Fraction((t - seg_tick) * tempo * sr, tpb * 1_000_000)

    for msg in mido.merge_tracks(mid.tracks):
        tick += msg.time
        if msg.type == "set_tempo":
            seg_start, seg_tick, tempo = frame_at(tick), tick, msg.tempo
        elif not msg.is_meta and msg.type in ("note_on", "note_off", "control_change",
                                              "program_change"):
            b = msg.bytes()
            events.append((round(frame_at(tick)), b[0], b[1], b[2] if len(b) > 2 else 0))
    return events, round(frame_at(tick))


def render_midi(source, sample_rate=48000, tail_s=1.0, config=None, block=4096):
    """Render a MIDI file (path or mido.MidiFile) with the built-in synth, sample-exact.

    Returns float32 (frames, 2): the file's length plus `tail_s` for releases.  Notes
    still held when the file ends are released there; the last frames are silent.
    """
    sr = _check_int("sample_rate", sample_rate, 8000, 192000)
    tail = round(_check_float("tail_s", tail_s, 0.0, 60.0) * sr)
    events, end = midi_events(source, sr)
    cfg = SynthConfig(sample_rate=sr) if config is None else config
    if cfg.sample_rate != sr:
        raise InvalidMessage(f"config.sample_rate {cfg.sample_rate} differs from sample_rate {sr}",
                             field="sample_rate", allowed=str(cfg.sample_rate))
    synth = Synth(cfg)
    total = end + tail
    fade = int(math.ceil(cfg.steal_fade_s * sr)) + 1
    # held notes end with the file; anything left fades out just before the last frame
    events.append((end, EV_ALL_NOTES_OFF, 0, 0))
    events.append((max(end, total - fade), EV_ALL_SOUND_OFF, 0, 0))
    out = np.zeros((total, 2), np.float32)
    i, pos = 0, 0
    while pos < total:
        n = min(block, total - pos)
        while i < len(events) and events[i][0] < pos + n:
            f, st, d1, d2 = events[i]
            if not push_event(synth.ev, synth.meta, f - pos, st, d1, d2):
                if f == pos:
                    raise OstinatoError(f"more than {cfg.max_events} events at frame {f}")
                n = f - pos  # queue full: render up to this event, then go on
                break
            i += 1
        synth.render(n, out[pos:pos + n])
        pos += n
    return out


def write_wav(path, audio, sample_rate):
    """Write float audio (frames,) or (frames, channels) in [-1, 1] as 16-bit PCM WAV."""
    sr = _check_int("sample_rate", sample_rate, 8000, 192000)
    a = np.asarray(audio)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or not 1 <= a.shape[1] <= 8 or not np.issubdtype(a.dtype, np.floating):
        raise InvalidMessage(f"audio must be float (frames,) or (frames, 1..8), got {a.dtype} {a.shape}",
                             field="audio", allowed="float (frames, channels)")
    pcm = np.round(np.clip(a, -1.0, 1.0) * 32767.0).astype("<i2")
    # the file is opened here, not by wave.open: when wave opens it and fails (no such
    # folder), its half-made writer prints a traceback from __del__ (CPython 3.11)
    with open(path, "wb") as f, wave.open(f, "wb") as w:
        w.setnchannels(a.shape[1])
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(pcm.tobytes())


# ------------------------------------------------------------------ FluidSynth
SOUNDFONTS = ("/usr/share/sounds/sf2/default-GM.sf2", "/usr/share/sounds/sf2/TimGM6mb.sf2",
              "/usr/share/sounds/sf2/FluidR3_GM.sf2")


def default_soundfont():
    """The first General MIDI SoundFont installed in Debian's usual place, or None."""
    return next((p for p in SOUNDFONTS if os.path.isfile(p)), None)


def render_fluidsynth(midi_path, wav_path, sample_rate=48000, soundfont=None, timeout_s=600):
    """Render with the `fluidsynth` program and a SoundFont (realistic General MIDI sound)."""
    sr = _check_int("sample_rate", sample_rate, 8000, 192000)
    exe = shutil.which("fluidsynth")
    if exe is None:
        raise OstinatoError("fluidsynth is not installed (Debian: apt-get install fluidsynth)")
    sf2 = soundfont or default_soundfont()
    if sf2 is None or not os.path.isfile(sf2):
        raise OstinatoError(f"SoundFont not found: {sf2 or 'none of ' + ', '.join(SOUNDFONTS)}")
    open_midi(midi_path)  # a clear error before fluidsynth's own
    cmd = [exe, "-ni", "-q", "-F", os.fspath(wav_path), "-r", str(sr), sf2, os.fspath(midi_path)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise OstinatoError(f"fluidsynth took longer than {timeout_s} s") from exc
    if res.returncode != 0 or not os.path.isfile(wav_path):
        raise OstinatoError(f"fluidsynth failed ({res.returncode}): {(res.stderr or res.stdout).strip()[:300]}")


# ------------------------------------------------------------------ CLI
def add_arguments(parser):
    parser.add_argument("midi", help="MIDI file to render (type 0 or 1)")
    parser.add_argument("-o", "--output", help="WAV file to write (default: the MIDI name with .wav)")
    parser.add_argument("--rate", type=int, default=48000, help="sample rate in Hz (8000-192000)")
    parser.add_argument("--tail", type=float, default=1.0,
                        help="seconds rendered after the file ends, for releases (built-in synth)")
    parser.add_argument("--synth", choices=("builtin", "fluidsynth"), default="builtin",
                        help="builtin (default, numba, no files needed) or fluidsynth "
                             "(needs the fluidsynth program and a General MIDI SoundFont, "
                             "e.g. Debian's timgm6mb-soundfont)")
    parser.add_argument("--soundfont", metavar="PATH",
                        help="SoundFont (.sf2) for FluidSynth; implies --synth fluidsynth "
                             f"(default: the first of {', '.join(SOUNDFONTS)})")


def run(args):
    out = Path(args.output) if args.output else Path(args.midi).with_suffix(".wav")
    rate = _check_int("rate", args.rate, 8000, 192000)
    if args.soundfont or args.synth == "fluidsynth":
        render_fluidsynth(args.midi, out, rate, args.soundfont)
        how = f"fluidsynth, {args.soundfont or default_soundfont()}"
    else:
        audio = render_midi(args.midi, rate, tail_s=_check_float("tail", args.tail, 0.0, 60.0))
        write_wav(out, audio, rate)
        how = "built-in synth"
    with wave.open(os.fspath(out), "rb") as w:
        seconds = w.getnframes() / w.getframerate()
    print(f"wrote {out}: {seconds:.2f} s at {rate} Hz ({how})")
    return 0
