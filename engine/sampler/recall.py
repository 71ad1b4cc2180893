"""Playing the plan (``engine.sampler.form`` tells the whole story): a scripted voice's
notes fed as forced tokens at their exact ticks, each in its turn at an instant (``turn``),
after the release of what the voice still holds from before the bar line; a sampled time
shift stops at the next of them (``shift_limit``); a varied recall's re-composed notes are
sampled near the original, the contour kept (``_near``)."""
import numpy as np
from numba import njit

from engine.sampler.memory import (F_BT, F_ORG, F_PENDING, F_REP, L_DUE, L_DUR, L_LEN, L_N, L_ON,
                                   L_PITCH, L_TICK, L_VAR, L_VOICE, P_ACT, P_BAR, P_FREE, P_FROM,
                                   P_I, P_KEEP, P_KIND, P_LAST, P_N, P_PITCH, P_RELEASE, P_TICK,
                                   P_VOICE, Q_DUR, Q_LEN, Q_N, Q_ON, Q_PITCH, Q_TICK, Q_VAR,
                                   Q_VOICE, SCRIPTED, WAS)
from engine.sampler.plan import build
from engine.sampler.sampling import DRUM, N_VOICES, OFF, ON, VOICE0, uniform


@njit(nogil=True, cache=True)
def due(s, gen_tick, voice_on, sounding, controls, lay, form):
    """Before session s steps: the plan of the bar its music is in, built once it gets
    there (the settings pending take effect)."""
    f_bt, f_org, p_bar, l_due, l_tick = form[F_BT], form[F_ORG], form[P_BAR], form[L_DUE], \
        form[L_TICK]
    if form[Q_TICK][s] >= 0 and gen_tick[s] >= form[Q_TICK][s]:
        _take_queued(s, form)
    if f_bt[s] > 0 and gen_tick[s] >= f_org[s]:
        b = (gen_tick[s] - f_org[s]) // f_bt[s]
        lead = l_due[s] and gen_tick[s] >= l_tick[s]
        if p_bar[s] != b or lead:
            form[P_FROM][s] = gen_tick[s] if lead else f_org[s] + b * f_bt[s]
            l_due[s] = l_due[s] and not lead
            build(s, b, True, voice_on, sounding, controls, lay, form)


@njit(nogil=True, cache=True)
def _take_queued(s, form):
    """Session s's music reached its queued theme: it takes the place of the one stated."""
    q_on, q_dur, q_pitch, q_n = form[Q_ON], form[Q_DUR], form[Q_PITCH], form[Q_N]
    q_tick, q_len, q_var, q_voice = form[Q_TICK], form[Q_LEN], form[Q_VAR], form[Q_VOICE]
    l_on, l_dur, l_pitch, l_n = form[L_ON], form[L_DUR], form[L_PITCH], form[L_N]
    n = q_n[s]
    for i in range(n):
        l_on[s, i] = q_on[s, i]
        l_dur[s, i] = q_dur[s, i]
        l_pitch[s, i] = q_pitch[s, i]
    l_n[s] = n
    form[L_LEN][s] = q_len[s]
    form[L_TICK][s] = q_tick[s] if n else -1
    form[L_VAR][s] = q_var[s]
    form[L_VOICE][s] = q_voice[s]
    form[L_DUE][s] = n > 0
    q_tick[s] = -1


@njit(nogil=True, cache=True, inline="always")
def shift_limit(s, gen_tick, lim, form):
    """The tick a sampled time shift of session s may reach at most, ``lim`` or earlier:
    its plan's next event, a theme's start, and the next bar line while it repeats or has
    a theme (so that the plan of the next bar starts exactly there)."""
    f_bt, f_org, f_rep, f_pending = form[F_BT], form[F_ORG], form[F_REP], form[F_PENDING]
    p_tick, p_n, p_i = form[P_TICK], form[P_N], form[P_I]
    l_n, l_due, l_tick = form[L_N], form[L_DUE], form[L_TICK]
    if f_bt[s] > 0:
        t = gen_tick[s]
        if p_i[s] < p_n[s] and p_tick[s, p_i[s]] < lim:
            lim = p_tick[s, p_i[s]]
        if l_due[s] and t < l_tick[s] < lim:
            lim = l_tick[s]
        q = form[Q_TICK][s]
        if q >= 0 and t < q < lim:  # a queued theme takes over there
            lim = q
        if f_rep[s] > 0.0 or f_pending[s] or l_n[s] > 0:
            nb = f_org[s] if t < f_org[s] else f_org[s] + ((t - f_org[s]) // f_bt[s] + 1) * \
                f_bt[s]
            if nb < lim:
                lim = nb
    return lim


@njit(nogil=True, cache=True)
def _releasing(s, sounding, form):
    """Where in ``sounding`` (voice x 128 + pitch) the note session s's plan releases next
    is (what its scripted voices, and voices whose recall ended, hold from before the plan
    began), or -1 when nothing is left to release."""
    p_release, scripted, was = form[P_RELEASE], form[SCRIPTED], form[WAS]
    if p_release[s]:
        start, keep = form[P_FROM][s], form[P_KEEP]
        for v in range(scripted.shape[1]):
            if scripted[s, v] or was[s, v]:
                for p in range(128):
                    if 0 <= sounding[s, v * 128 + p] < start and not keep[s, v, p]:
                        return v * 128 + p
        p_release[s] = False
    return -1


@njit(nogil=True, cache=True)
def _release(s, sounding, voice, lay, form):
    """The token that goes on releasing what ``_releasing`` names, or -1."""
    at = _releasing(s, sounding, form)
    if at < 0:
        return -1
    if lay[N_VOICES] > 0 and voice[s] != at // 128:
        return lay[VOICE0] + at // 128
    return lay[OFF] + at % 128


@njit(nogil=True, cache=True)
def _due(s, gen_tick, sounding, voice_on, lay, pc_bias, form):
    """The index of session s's next plan event due at its tick, or -1; the events that
    can no longer sound are passed over: a note-on whose tick was passed (forced time
    shifts skipped it), of a voice switched off or of a pitch already sounding, and the
    note-off of a note not sounding."""
    p_tick, p_voice, p_pitch, p_kind, p_act, p_n, p_i, scripted = (
        form[P_TICK], form[P_VOICE], form[P_PITCH], form[P_KIND], form[P_ACT], form[P_N],
        form[P_I], form[SCRIPTED])
    while p_i[s] < p_n[s]:
        e = p_i[s]
        if p_tick[s, e] > gen_tick[s]:
            return -1
        v, p = p_voice[s, e], p_pitch[s, e]
        if p_kind[s, e] == 1:
            if v != lay[DRUM]:
                p = _in_scale(s, p, pc_bias)
            if not (p_tick[s, e] < gen_tick[s] or not voice_on[s, v] or not scripted[s, v]
                    or sounding[s, v * 128 + p] >= 0):
                return e
        else:
            a = p_act[s, v, p]
            if a >= 0 and sounding[s, v * 128 + a] >= 0:
                return e
        p_i[s] += 1
    return -1


@njit(nogil=True, cache=True)
def turn(s, gen_tick, sounding, voice, voice_on, lay, pc_bias, form):
    """Whose turn it is at session s's tick: the voice of the plan's next event due here (a
    release of what a voice holds from before the bar line first), which waits while the
    model plays the voices before it (at an instant, training music goes voice by voice in
    id order: a release fed at once, before the model's turn, told it the earlier voices
    had passed, and a free melody after a recalled bar missed its downbeat); -1, the
    model's alone."""
    at = _releasing(s, sounding, form)
    if at >= 0:
        return at // 128
    e = _due(s, gen_tick, sounding, voice_on, lay, pc_bias, form)
    return form[P_VOICE][s, e] if e >= 0 else -1


@njit(nogil=True, cache=True)
def next_token(s, gen_tick, sounding, voice, voice_on, lay, logits, temperature, pc_bias, rng,
               form):
    """The token session s's plan feeds now, or -1 (nothing is due): first the release of
    what scripted voices (and voices whose recall ended) still hold from before the bar
    line, then the plan's events due at this tick (``_due``), each voice's after its VOICE
    token; a varied recall's note is re-composed here (``_near``), a note the tonality
    forbids moved into the scale (``_in_scale``)."""
    r = _release(s, sounding, voice, lay, form)
    if r >= 0:
        return r
    e = _due(s, gen_tick, sounding, voice_on, lay, pc_bias, form)
    if e < 0:
        return -1
    p_voice, p_pitch, p_kind, p_free, p_act, p_n, p_i, p_last = (
        form[P_VOICE], form[P_PITCH], form[P_KIND], form[P_FREE], form[P_ACT], form[P_N],
        form[P_I], form[P_LAST])
    v, o = p_voice[s, e], p_pitch[s, e]
    if lay[N_VOICES] > 0 and voice[s] != v:
        return lay[VOICE0] + v
    if p_kind[s, e] == 2:
        p_i[s] += 1
        return lay[OFF] + p_act[s, v, o]
    p = _in_scale(s, o, pc_bias) if v != lay[DRUM] else o
    if p_free[s, e]:
        nxt = -1  # the voice's next recalled note, if it keeps its pitch
        for f in range(e + 1, p_n[s]):
            if p_kind[s, f] == 1 and p_voice[s, f] == v:
                if not p_free[s, f]:
                    nxt = p_pitch[s, f]
                break
        p = _near(s, v, p, p_last[s, v, 0], p_last[s, v, 1], nxt, logits, temperature,
                  pc_bias, sounding, rng, lay)
    p_last[s, v, 0] = o
    p_last[s, v, 1] = p
    p_act[s, v, o] = p
    p_i[s] += 1
    return lay[ON] + p


@njit(nogil=True, cache=True, inline="always")
def _in_scale(s, p, pc_bias):
    """Pitch p, or the nearest pitch (the lower at a tie) the session's tonality prior
    allows where it forbids p's pitch class (a strict tonality: a bar remembered from a
    freer one, or a chromatic theme, is moved into the scale)."""
    if pc_bias[s, p % 12] > -np.inf:
        return p
    for d in range(1, 12):
        if p - d >= 0 and pc_bias[s, (p - d) % 12] > -np.inf:
            return p - d
        if p + d <= 127 and pc_bias[s, (p + d) % 12] > -np.inf:
            return p + d
    return p


@njit(nogil=True, cache=True)
def _near(s, v, orig, last_orig, last_act, nxt, logits, temperature, pc_bias, sounding, rng,
          lay):
    """A re-composed pitch for a recalled note of voice v: drawn from the model's note-on
    probabilities (with the tonality prior) within two semitones of ``orig``, on the
    side of the voice's previous note (``last_act``, recalled from ``last_orig``) that
    the original was, or the same pitch where it was (the window moves to that side when
    the previous note's re-composition left it empty), and on the side of the next note
    ``nxt`` that the original was, where that one keeps its pitch (-1: it does not): the
    contour kept.  Never the original itself while another pitch is allowed (a
    re-composed note is a changed note, so a variation's share of changed notes is the
    share asked for, whatever the model's liking for the theme); the original where
    nothing else is allowed."""
    lo, hi = orig - 2, orig + 2
    if last_orig >= 0:
        if orig > last_orig:  # above the previous note: stay above it
            lo = max(lo, last_act + 1)
            hi = max(hi, lo + 2)
        elif orig < last_orig:
            hi = min(hi, last_act - 1)
            lo = min(lo, hi - 2)
        else:
            lo = hi = last_act
    if nxt >= 0:
        if nxt > orig:
            hi = min(hi, nxt - 1)
        elif nxt < orig:
            lo = max(lo, nxt + 1)
        else:
            lo, hi = max(lo, nxt), min(hi, nxt)
    lo, hi = max(0, lo), min(127, hi)
    tonal = v != lay[DRUM]
    m = -np.inf
    for p in range(lo, hi + 1):
        if p != orig and sounding[s, v * 128 + p] < 0 and logits[s, lay[ON] + p] > m:
            m = logits[s, lay[ON] + p]
    if m == -np.inf:
        return orig
    t = temperature[s]
    total = 0.0
    for p in range(lo, hi + 1):
        if p != orig and sounding[s, v * 128 + p] < 0:
            total += np.exp((logits[s, lay[ON] + p] - m) / t + (pc_bias[s, p % 12] if tonal
                                                                  else 0.0))
    if total == 0.0:  # the tonality prior forbids every pitch there
        return orig
    u = uniform(rng, s) * total
    acc = 0.0
    last = orig
    for p in range(lo, hi + 1):
        if p != orig and sounding[s, v * 128 + p] < 0:
            acc += np.exp((logits[s, lay[ON] + p] - m) / t + (pc_bias[s, p % 12] if tonal
                                                               else 0.0))
            last = p
            if acc > u:
                return p
    return last
