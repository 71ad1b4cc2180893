"""The voices of the built-in synthesiser: their state layout, timbres and numba kernels.

The voices live in preallocated numpy arrays whose columns are named below; the
kernels here start, release, steal and render one voice, and apply one queued MIDI
event, all ``nogil`` so the audio callback never waits on the GIL
(``realtime.synth.render_kernel`` drives them block by block).

Timbres follow the General MIDI program families: piano-like decaying additive
tone, plucked string (Karplus-Strong), organ, pad, bass; channel 10 (index 9)
plays simple synthesised drums.
"""
import math

import numpy as np
from numba import njit

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
def apply_event(status, d1, d2, meta, par, vf, vi, ks, chf, chi):
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
def render_voice(v, mix, a, b, meta, vf, vi, ks, chf):
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
