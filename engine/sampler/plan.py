"""The plan of a bar (``engine.sampler.form`` tells the whole story): at each bar line
the music reaches, which earlier bar each voice recalls, exactly or varied, by draws seeded
by the session's seed and the bar (a rewind rebuilds the same plan); the recalled notes
moved to the key and register asked for now; a theme's bars from the transition point;
the join rule (``_joins``) and the pitch the lead-in aims at (``_aim``, ``lead_in``)."""
import numpy as np
from numba import njit

from engine.sampler.memory import (F_AIM, F_AIM_TICK, F_BT, F_ORG, F_PB, F_REGP, F_REP, F_SEED,
                                   F_SHARE, F_SRC, JOINING, LEAD_IN, LOG, L_LEN, L_N, L_TICK,
                                   L_VOICE, M_BAR, M_FROM, M_KEY, M_N, M_ON, M_PITCH, M_REG,
                                   P_KIND, P_PITCH, P_TICK, VARIED_SHARE, _key, _register, _u)
from engine.sampler.sampling import BASS_VOICE, DRUM, MELODY_VOICE


@njit(nogil=True, cache=True)
def build(s, b, fresh, voice_on, sounding, controls, lay, form):
    """The plan of session s's bar b: per voice that plays, new or a recall of an earlier
    bar in memory, exact or varied; the recalled notes' on and off events sorted by tick
    (offs first at a tick).  ``fresh``: built as the music reaches the bar, so the
    settings pending take effect and what the voices scripted before still hold is
    released; a rebuild after a rewind is not fresh (it must come out the same).  A
    pitched voice's recall moves by the octaves that bring its bar's register nearest the
    register the session's ``controls`` ask for now."""
    (f_bt, f_org, f_rep, f_next_rep, f_pb, f_next_pb, f_src, f_next_src, f_pending, f_seed,
     m_bar, m_n, m_on, m_dur, m_pitch, m_off, p_tick, p_voice, p_pitch, p_kind, p_free,
     p_act, p_n, p_i, p_bar, p_release, scripted, was, p_src, p_last, ev_pi, ev_pbar,
     p_varied, m_from, p_keep, l_on, l_dur, l_pitch, l_n, l_tick, l_len, l_var, l_voice,
     l_log, l_logn, l_due, p_from, m_reg, f_regp, m_key, _, _, _, _, _, _, _, _, f_share,
     f_next_share, f_aim, f_aim_tick, joining) = form
    if fresh and f_pending[s]:
        f_rep[s] = f_next_rep[s]
        f_pb[s] = f_next_pb[s]
        for v in range(f_src.shape[1]):
            f_share[s, v] = f_next_share[s, v]
            for j in range(f_src.shape[2]):
                f_src[s, v, j] = f_next_src[s, v, j]
        f_pending[s] = False
    p_bar[s] = b
    p_i[s] = 0
    bt, rep = f_bt[s], f_rep[s]
    start = f_org[s] + b * bt
    B = m_bar.shape[1]
    n = 0
    for v in range(scripted.shape[1]):
        if fresh:
            was[s, v] = scripted[s, v]
        scripted[s, v] = False
        p_varied[s, v] = False
        p_src[s, v] = -1
        if fresh:  # (a rebuild keeps what the notes fed before the rewind sounded at)
            p_last[s, v, 0] = p_last[s, v, 1] = -1
            for p in range(128):
                p_keep[s, v, p] = False
        if not voice_on[s, v]:
            continue
        t0 = _lead_start(s, b, v, form)
        if t0 >= 0:  # the theme: its notes that start in this bar, and those held into it
            scripted[s, v] = True
            p_varied[s, v] = l_var[s] > 0.0
            p_src[s, v] = -2
            if fresh and t0 >= start and (l_logn[s] == 0 or
                                          l_log[s, (l_logn[s] - 1) % LOG] != t0):
                l_log[s, l_logn[s] % LOG] = t0
                l_logn[s] += 1
            k0 = n
            for i in range(l_n[s]):
                on, p = t0 + l_on[s, i], l_pitch[s, i]
                if start <= on < start + bt and n + 2 <= p_tick.shape[1]:
                    n = _add(s, n, v, on, l_dur[s, i], p, p_tick, p_voice, p_pitch, p_kind)
                    p_free[s, n - 2] = _u(f_seed[s], t0, i, 6) < l_var[s]
                    p_free[s, n - 1] = False
                elif on < start < on + l_dur[s, i] and n < p_tick.shape[1]:
                    # held over the bar line: the plan ends it, nothing releases it
                    a = p_act[s, v, p]
                    if a >= 0 and sounding[s, v * 128 + a] >= 0:
                        p_keep[s, v, a] = True
                        p_tick[s, n], p_voice[s, n], p_pitch[s, n] = on + l_dur[s, i], v, p
                        p_kind[s, n], p_free[s, n] = 2, False
                        n += 1
            if fresh:
                for i in range(k0, n):
                    if p_kind[s, i] == 1 and not p_keep[s, v, max(p_act[s, v, p_pitch[s, i]],
                                                                  0)]:
                        p_act[s, v, p_pitch[s, i]] = -1
            continue
        if rep <= 0.0:
            continue
        sb = _source(s, b, v, controls, form)
        if sb < 0:
            continue
        slot = sb % B
        # the source bar's notes: those that ended, and those still sounding (their
        # length cut at its end, as they will be remembered)
        s0 = f_org[s] + sb * bt
        k0 = n
        for k in range(m_n[s, v, slot]):
            n = _add(s, n, v, start + m_on[s, v, slot, k], m_dur[s, v, slot, k],
                     m_pitch[s, v, slot, k], p_tick, p_voice, p_pitch, p_kind)
        for p in range(128):
            began = sounding[s, v * 128 + p]
            if s0 <= began < s0 + bt and n + 2 <= p_tick.shape[1]:
                n = _add(s, n, v, start + began - s0, s0 + bt - began, p, p_tick, p_voice,
                         p_pitch, p_kind)
        if n == k0:
            continue  # silent there: the voice composes new
        if v != lay[DRUM]:
            moved = 12 * int(np.round((_register(s, controls, f_regp) - m_reg[s, slot]) / 12))
            if moved:
                for i in range(k0, n):
                    p = p_pitch[s, i] + moved
                    while p > 127:
                        p -= 12
                    while p < 0:
                        p += 12
                    p_pitch[s, i] = p
        if v == lay[MELODY_VOICE] and not _joins(s, b, v, k0, n, sounding, form):
            n = k0
            continue  # it would leap into the recall: the melody composes new
        share = VARIED_SHARE
        if v == lay[DRUM] or _u(f_seed[s], b, 0, 2) < rep:
            share = 0.0
        scripted[s, v] = True
        p_varied[s, v] = share > 0.0
        p_src[s, v] = sb
        for i in range(k0, n):
            if fresh:
                p_act[s, v, p_pitch[s, i]] = -1
            p_free[s, i] = p_kind[s, i] == 1 and share > 0.0 and _u(
                f_seed[s], b, v, 3 + (p_tick[s, i] - start) * 128 + p_pitch[s, i]) < share
    # sorted by tick, offs (kind 2) first at a tick, then by voice and pitch: the same
    # order however the notes were found (a rebuild after a rewind must match)
    for j in range(1, n):
        i = j
        while i > 0 and _after(s, i - 1, i, p_tick, p_kind, p_voice, p_pitch):
            for a in (p_tick, p_voice, p_pitch, p_kind):
                a[s, i], a[s, i - 1] = a[s, i - 1], a[s, i]
            p_free[s, i], p_free[s, i - 1] = p_free[s, i - 1], p_free[s, i]
            i -= 1
    p_n[s] = n
    if fresh:
        p_release[s] = True
    _aim(s, b, voice_on, controls, lay, form)


@njit(nogil=True, cache=True)
def _source(s, b, v, controls, form):
    """The earlier bar session s's voice v recalls in its bar b (-1: it composes new): the
    form's source for it, if the plan's draw recalls it (with probability repetition x the
    voice's share; the previous phrase's bar: repetition squared x share) and memory holds
    it whole, composed in the key and mode asked for now.  One draw a bar for every voice:
    a voice whose share is smaller recalls a subset of the bars the others recall, so its
    accompaniment comes back with the melody."""
    f_rep, f_pb, f_src, f_seed, f_share = (form[F_REP], form[F_PB], form[F_SRC], form[F_SEED],
                                           form[F_SHARE])
    m_bar, m_from, m_key, f_regp = form[M_BAR], form[M_FROM], form[M_KEY], form[F_REGP]
    rep, pb = f_rep[s], f_pb[s]
    phrase, j = b // pb, b % pb
    src = f_src[s, v, j]
    sb = -1
    if src >= 0:
        if _u(f_seed[s], b, 0, 0) < rep * f_share[s, v]:
            sb = phrase * pb + src
    elif phrase > 0 and _u(f_seed[s], b, 0, 1) < rep * rep * f_share[s, v]:
        sb = b - pb
    if sb < 0 or sb < m_from[s]:
        return -1
    slot = sb % m_bar.shape[1]
    if m_bar[s, slot] != sb or m_key[s, slot] != _key(s, controls, f_regp):
        return -1  # not remembered whole, or composed in another key or mode
    return sb


@njit(nogil=True, cache=True)
def _joins(s, b, v, k0, n, sounding, form):
    """Whether the recall planned for voice v of session s's bar b (its notes k0..n-1 of the
    plan, moved as they will sound) begins within ``joining`` semitones of the last note
    the voice struck in the bar before (the top of its last onset, from memory and what
    still sounds); true without such a note or with the rule off (``joining`` 0).  A
    recalled bar's first note otherwise follows whatever the free bar before it ended on:
    the melody leapt across bar lines three times as often as real music does."""
    limit = form[JOINING][s]
    if limit <= 0.0:
        return True
    p_tick, p_pitch, p_kind = form[P_TICK], form[P_PITCH], form[P_KIND]
    first, pitch = 1 << 60, -1
    for i in range(k0, n):
        if p_kind[s, i] == 1 and (p_tick[s, i] < first or (p_tick[s, i] == first
                                                           and p_pitch[s, i] > pitch)):
            first, pitch = p_tick[s, i], p_pitch[s, i]
    f_bt, f_org, m_bar, m_n, m_on, m_pitch = (form[F_BT], form[F_ORG], form[M_BAR], form[M_N],
                                              form[M_ON], form[M_PITCH])
    s0 = f_org[s] + (b - 1) * f_bt[s]
    last, prev = -1, -1
    slot = (b - 1) % m_bar.shape[1]
    if b > 0 and m_bar[s, slot] == b - 1:
        for k in range(m_n[s, v, slot]):
            on, p = s0 + m_on[s, v, slot, k], m_pitch[s, v, slot, k]
            if on > last or (on == last and p > prev):
                last, prev = on, p
    for p in range(128):
        on = sounding[s, v * 128 + p]
        if s0 <= on < s0 + f_bt[s] and (on > last or (on == last and p > prev)):
            last, prev = on, p
    return pitch < 0 or prev < 0 or abs(pitch - prev) <= limit


@njit(nogil=True, cache=True)
def _aim(s, b, voice_on, controls, lay, form):
    """Session s's lead-in aims for its bar b + 1: for the melody and the bass, the first
    pitch of the bar they will recall there (the top note of its first onset, the bass's
    lowest), moved by octaves as the recall will be; -1 where they will compose new or state
    the theme.  The lead-in (``Runtime.leading``, ``lead_in``) draws their notes before
    that bar line toward it, so a recalled bar follows on from the free one before it."""
    f_bt, f_org, f_aim, f_aim_tick = form[F_BT], form[F_ORG], form[F_AIM], form[F_AIM_TICK]
    m_n, m_on, m_pitch = form[M_N], form[M_ON], form[M_PITCH]
    m_reg, f_regp = form[M_REG], form[F_REGP]
    f_aim_tick[s] = f_org[s] + (b + 1) * f_bt[s]
    for v in range(f_aim.shape[1]):
        f_aim[s, v] = -1
        if not voice_on[s, v] or form[F_REP][s] <= 0.0 or not (
                v == lay[MELODY_VOICE] or v == lay[BASS_VOICE]):
            continue
        if _lead_start(s, b + 1, v, form) >= 0:
            continue
        sb = _source(s, b + 1, v, controls, form)
        if sb < 0:
            continue
        slot = sb % m_n.shape[2]
        first, pitch = 1 << 30, -1
        for k in range(m_n[s, v, slot]):
            on, p = m_on[s, v, slot, k], m_pitch[s, v, slot, k]
            if on < first or (on == first and (p < pitch if v == lay[BASS_VOICE] else p > pitch)):
                first, pitch = on, p
        if pitch < 0:
            continue
        pitch += 12 * int(np.round((_register(s, controls, f_regp) - m_reg[s, slot]) / 12))
        while pitch > 127:
            pitch -= 12
        while pitch < 0:
            pitch += 12
        f_aim[s, v] = pitch


@njit(nogil=True, cache=True, inline="always")
def lead_in(s, gen_tick, v, form):
    """The pitch voice v of session s leads into (its aim, ``_aim``) while its music is
    within ``LEAD_IN`` of a bar before the bar it recalls; -1 otherwise."""
    left = form[F_AIM_TICK][s] - gen_tick[s]
    if v < 0 or left <= 0 or left > LEAD_IN * form[F_BT][s]:
        return -1
    return form[F_AIM][s, v]


@njit(nogil=True, cache=True)
def _lead_start(s, b, v, form):
    """The tick the theme's statement or return playing in session s's bar b began, if
    voice v plays it there, else -1.  The statement runs from ``l_tick`` for ``l_len``
    ticks; it comes back at the start of later phrases (at the same place in the bar): at
    the first one after it whenever the session repeats at all (repetition > 0: a theme
    heard once is not yet a theme), then with probability ``repetition``, a draw per
    phrase: a leitmotif, not a one-off."""
    (f_bt, f_org, f_rep, _, f_pb, _, _, _, _, f_seed) = form[:10]
    l_n, l_tick, l_len, l_voice = (form[L_N], form[L_TICK], form[L_LEN], form[L_VOICE])
    if l_n[s] == 0 or l_tick[s] < 0 or l_voice[s] != v:
        return -1
    bt, pb = f_bt[s], f_pb[s]
    start = f_org[s] + b * bt
    if l_tick[s] < start + bt and start < l_tick[s] + l_len[s]:
        return l_tick[s]
    ps = f_org[s] + (b // pb) * pb * bt
    if f_rep[s] > 0.0 and l_len[s] <= pb * bt and ps >= l_tick[s] + l_len[s]:
        t0 = ps + (l_tick[s] - f_org[s]) % bt
        first = ps - pb * bt < l_tick[s] + l_len[s]  # the first phrase after the statement
        if start < t0 + l_len[s] and (first or _u(f_seed[s], b // pb, v, 5) < f_rep[s]):
            return t0
    return -1


@njit(nogil=True, cache=True, inline="always")
def _add(s, n, v, on, dur, p, p_tick, p_voice, p_pitch, p_kind):
    """A recalled note of voice v at tick ``on``: its on and off events at n, n + 1."""
    for kind in range(1, 3):
        p_tick[s, n] = on if kind == 1 else on + dur
        p_voice[s, n] = v
        p_pitch[s, n] = p
        p_kind[s, n] = kind
        n += 1
    return n


@njit(nogil=True, cache=True, inline="always")
def _after(s, i, j, p_tick, p_kind, p_voice, p_pitch):
    """Does plan event i come after event j?"""
    if p_tick[s, i] != p_tick[s, j]:
        return p_tick[s, i] > p_tick[s, j]
    if p_kind[s, i] != p_kind[s, j]:
        return p_kind[s, i] < p_kind[s, j]
    if p_voice[s, i] != p_voice[s, j]:
        return p_voice[s, i] > p_voice[s, j]
    return p_pitch[s, i] > p_pitch[s, j]
