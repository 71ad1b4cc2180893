"""The runtime's kernel (``engine.sampler.generator.Runtime`` holds its arrays): ``advance``
steps every active session's music up to its target tick, a batch of LSTM steps at a time,
feeding queued tokens and the form's plan before sampling, and applying voice switches,
themes and control changes as the music reaches their ticks; ``rewind`` takes a session's
ring back to the last event at or before a tick and restores the LSTM state, the voice, the
sounding notes and the mask of that moment.
"""
from numba import njit

from engine.sampler import voices
from engine.sampler.lstm import lstm_step
from engine.sampler.memory import EV_PBAR, EV_PI, P_BAR, P_I, record
from engine.sampler.plan import lead_in
from engine.sampler.recall import due as form_due, next_token as planned, shift_limit, turn
from engine.sampler.sampling import held_limit, is_line, last_pitch, sample
from engine.sampler.voices import entry_lapses, release_offs, voices_due


@njit(nogil=True, cache=True)
def advance(target, max_steps, max_batch, first, active, candidates, idx, tokens, controls,
             ctl_base, next_ctl, switch_tick, gen_tick, sounding, entry, temperature, rng, force,
             force_n, force_i, ev_tick, ev_tok, ev_aux, snap_h, snap_c, head, tail, h, c, tok_table,
             w0, w_rest, b_rest, w_out, b_out, xbuf, gates, logits, kinds, values, phase0, tpb,
             max_note_ticks, pc_bias, next_bias, shift_off, off_off, max_shift, theme, voices,
             fm):
    (zbias, next_zbias, theme_h, theme_c, theme_tick, theme_reset, reset_due, start_tok,
     pos_bias, pos_n, pos_slot, pos0, pos_cur) = theme
    (voice, voice_on, ev_voice, lay, probs, voice_bias, entered, voice_tick, next_on, prev_on,
     voice_from, everyone, consonance, rooting, inversion, ordering, smoothing, leading,
     scripted) = voices
    ev_pi, ev_pbar, p_i, p_bar = fm[EV_PI], fm[EV_PBAR], fm[P_I], fm[P_BAR]
    S = active.shape[0]
    R = ev_tick.shape[1]
    C = controls.shape[1]
    steps = 0
    while True:
        for s in range(S):
            # the bookkeeping at each session's tick, for the sessions this call is asked to
            # advance (a negative target: left alone), so that one session composed at once
            # (a "now" change) does not pay for every other session's at every step
            if active[s] and target[s] >= 0:
                theme_due(s, gen_tick, sounding, entry, force, force_i, force_n, tokens, h, c,
                           zbias, next_zbias, theme_h, theme_c, theme_tick, theme_reset,
                           reset_due, start_tok, off_off, pos_slot, pos0, pos_cur, voice, lay,
                           entered, everyone)
                # after the theme: a reset due at the same tick releases every voice
                voices_due(s, gen_tick, voice_tick, voice_on, next_on, prev_on, voice_from,
                           reset_due, sounding, voice, force, force_i, force_n, lay, off_off,
                           start_tok[0], start_tok[2], entry, entered)
                form_due(s, gen_tick, voice_on, sounding, ctl_base, lay, fm)
                entry_lapses(s, entry, entered, voice_on, scripted)
                theme_position(s, gen_tick, zbias, pos_bias, pos_n, pos_slot, pos0, pos_cur,
                                start_tok[1])
        n = 0
        for k in range(S):
            s = (first + k) % S
            if active[s] and gen_tick[s] < target[s] and tail[s] - head[s] < R - 1 and (
                    candidates[s] == 0 or force_i[s] < force_n[s]):
                idx[n] = s
                n += 1
                if n == max_batch:
                    break
        if n == 0 or steps >= max_steps:
            return steps
        for k in range(n):
            s = idx[k]
            for j in range(C):
                controls[s, j] = ctl_base[s, j]
            controls[s, phase0 + gen_tick[s] % tpb] = 1.0
        lstm_step(idx, n, tokens, controls, h, c, tok_table, w0, w_rest, b_rest, w_out, b_out,
                  xbuf, gates, logits, zbias)
        steps += 1
        for k in range(n):
            s = idx[k]
            prev = -1  # the voice's last pitch, for the line prior ...
            aim = -1  # ... and the pitch it leads into
            if force_i[s] < force_n[s]:
                tok = force[s, force_i[s]]
                force_i[s] += 1
                if force_i[s] == force_n[s]:
                    force_i[s] = 0
                    force_n[s] = 0
            else:
                # the plan's events due at this tick wait while the model plays the voices
                # before theirs (a sampled time shift, velocity aside, or anything of their
                # voice or a later one gives way to them)
                tok = -1
                due = turn(s, gen_tick, sounding, voice, voice_on, lay, pc_bias, fm)
                if smoothing[s] > 0.0 and is_line(lay, voice[s]):
                    prev = last_pitch(s, voice[s], ev_tok, ev_voice, tail, kinds, values)
                if leading[s] > 0.0 and is_line(lay, voice[s]):
                    aim = lead_in(s, gen_tick, voice[s], fm)
                if due >= 0:
                    tok = sample(s, logits, temperature, sounding, entry, gen_tick,
                                 max_note_ticks, pc_bias, rng, voice, voice_on, lay, probs,
                                 voice_bias, entered, consonance, rooting, inversion,
                                 ordering, smoothing, prev, leading, aim, scripted)
                    k = kinds[tok]
                    if not (k == 4 or (k == 5 and values[tok] < due) or (
                            (k == 1 or k == 2) and max(voice[s], 0) < due)):
                        tok = -1
                if tok < 0 and due >= 0:
                    tok = planned(s, gen_tick, sounding, voice, voice_on, lay, logits,
                                  temperature, pc_bias, rng, fm)
            if tok < 0:  # (only after the branch above: prev and aim are the voice's)
                tok = sample(s, logits, temperature, sounding, entry, gen_tick, max_note_ticks,
                             pc_bias, rng, voice, voice_on, lay, probs, voice_bias, entered,
                             consonance, rooting, inversion, ordering, smoothing, prev,
                             leading, aim, scripted)
                if kinds[tok] == 3:
                    # a time shift lands on the switch tick, the voice switch's or the
                    # guard's release of a held note, whichever comes first, rather than
                    # passing it
                    lim = gen_tick[s] + values[tok]
                    if switch_tick[s] >= 0 and switch_tick[s] < lim:
                        lim = switch_tick[s]
                    if voice_tick[s] >= 0 and voice_tick[s] < lim:
                        lim = voice_tick[s]
                    lim = shift_limit(s, gen_tick, lim, fm)
                    for p in range(sounding.shape[1]):
                        held = held_limit(s, p, max_note_ticks, lay)
                        if sounding[s, p] >= 0 and sounding[s, p] + held < lim:
                            lim = sounding[s, p] + held
                    if lim < gen_tick[s] + values[tok]:
                        tok = shift_off + lim - gen_tick[s] - 1
            kind, val = kinds[tok], values[tok]
            aux = 0
            at = max(voice[s], 0) * 128 + val  # a note before any voice token is voice 0's
            if kind == 3:
                gen_tick[s] += val
            elif kind == 1:
                sounding[s, at] = gen_tick[s]
                entered[s, max(voice[s], 0)] = True
                entry_lapses(s, entry, entered, voice_on, scripted)
            elif kind == 2:
                aux = sounding[s, at]
                sounding[s, at] = -1
                record(s, max(voice[s], 0), val, aux, gen_tick[s], ctl_base, fm)
            elif kind == 5:
                voice[s] = val
            elif kind == 0:
                voice[s] = start_tok[2]
            slot = tail[s] % R
            ev_tick[s, slot] = gen_tick[s]
            ev_tok[s, slot] = tok
            ev_aux[s, slot] = aux
            ev_voice[s, slot] = voice[s]
            ev_pi[s, slot] = p_i[s]
            ev_pbar[s, slot] = p_bar[s]
            if snap_h.shape[1] == R:
                snap_h[s, slot] = h[s]
                snap_c[s, slot] = c[s]
            tail[s] += 1
            tokens[s] = tok
            if switch_tick[s] >= 0 and gen_tick[s] >= switch_tick[s]:
                for j in range(C):
                    ctl_base[s, j] = next_ctl[s, j]
                for j in range(12):
                    pc_bias[s, j] = next_bias[s, j]
                switch_tick[s] = -1


@njit(nogil=True, cache=True)
def theme_due(s, gen_tick, sounding, entry, force, force_i, force_n, tokens, h, c, zbias,
               next_zbias, theme_h, theme_c, theme_tick, theme_reset, reset_due, start_tok,
               off_off, pos_slot, pos0, pos_cur, voice, lay, entered, everyone):
    """Before session s steps: a theme whose tick its music has reached takes effect (its
    bias, or its table of them; with a reset, note-offs for what sounds in every voice
    are queued first), and a reset whose note-offs have all been fed starts the theme's
    phrase: state from z, START, entry (every voice that may play enters anew), and its
    positions count from there."""
    if theme_tick[s] >= 0 and gen_tick[s] >= theme_tick[s]:
        theme_tick[s] = -1
        zbias[s] = next_zbias[s]
        pos_slot[s] = 1 - pos_slot[s]
        pos_cur[s] = -1
        if pos0[s] < 0:
            pos0[s] = gen_tick[s]
        if theme_reset[s]:
            # the voice in force first, then the others, each after its VOICE token
            n0 = force_n[s]
            force_n[s] = release_offs(s, everyone, True, sounding, sounding[s], voice, force,
                                      force_i[s], n0, lay, off_off, start_tok[0], start_tok[2],
                                      force[s], n0)
            reset_due[s] = True
    if reset_due[s] and force_n[s] == 0:
        reset_due[s] = False
        h[s] = theme_h[s]
        c[s] = theme_c[s]
        tokens[s] = start_tok[0]
        voice[s] = start_tok[2]  # a START clears the voice in force
        entry[s] = True
        for v in range(entered.shape[1]):
            entered[s, v] = False
        pos0[s] = gen_tick[s]
        pos_cur[s] = -1


@njit(nogil=True, cache=True)
def theme_position(s, gen_tick, zbias, pos_bias, pos_n, pos_slot, pos0, pos_cur, pos_ticks):
    """Before session s steps: with a table of position biases playing, the row of the
    position its music is at goes into zbias (a copy only when the position changes)."""
    n = pos_n[s, pos_slot[s]]
    if n > 0:
        p = ((gen_tick[s] - pos0[s]) // pos_ticks) % n  # Python's modulo: never negative
        if p != pos_cur[s]:
            zbias[s] = pos_bias[s, pos_slot[s], p]
            pos_cur[s] = p


@njit(nogil=True, cache=True)
def rewind(s, tick, gen_tick, sounding, ev_tick, ev_tok, ev_aux, snap_h, snap_c, head, tail,
            h, c, tokens, force_n, force_i, kinds, values, R, voice, ev_voice):
    keep = tail[s] - 1
    while keep >= head[s] and ev_tick[s, keep % R] > tick:
        keep -= 1
    # undo the dropped events in the sounding table, newest first
    for i in range(tail[s] - 1, keep, -1):
        tok = ev_tok[s, i % R]
        at = max(ev_voice[s, i % R], 0) * 128 + values[tok]  # the note's (voice, pitch)
        if kinds[tok] == 1:
            sounding[s, at] = -1
        elif kinds[tok] == 2:
            sounding[s, at] = ev_aux[s, i % R]
    slot = keep % R
    voice[s] = ev_voice[s, slot]
    h[s] = snap_h[s, slot]
    c[s] = snap_c[s, slot]
    tokens[s] = ev_tok[s, slot]
    tail[s] = keep + 1
    # gen_tick is the tick after the last kept event
    gen_tick[s] = ev_tick[s, slot]
    force_n[s] = 0
    force_i[s] = 0
    return gen_tick[s]
