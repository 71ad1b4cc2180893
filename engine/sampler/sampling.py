"""Sampling a token in numba: a reproducible random stream per session, and the rules
under which the runtime (``engine.sampler.generator.Runtime``) samples from the logits."""
import numpy as np
from numba import njit


@njit(nogil=True, cache=True)
def uniform(rng, s):
    """xorshift64* per session: uniform float in [0, 1), reproducible from the seed."""
    x = rng[s]
    x ^= x >> np.uint64(12)
    x ^= x << np.uint64(25)
    x ^= x >> np.uint64(27)
    rng[s] = x
    return ((x * np.uint64(2685821657736338717)) >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@njit(nogil=True, cache=True)
def _allowed(s, v, kinds, values, sounding, entry):
    """May session s sample token v now? (See ``sample``.)"""
    k = kinds[v]
    if k == 1:
        return sounding[s, values[v]] < 0
    if k == 2:
        return sounding[s, values[v]] >= 0 and not entry[s]
    if k == 3:
        return not entry[s]
    return k != 0


@njit(nogil=True, cache=True)
def sample(s, logits, temperature, kinds, values, sounding, entry, gen_tick, max_note_ticks,
           pc_bias, shift_off, off_off, rng):
    """Sample the next token of session s under the runtime's rules: never START, no
    note-off of a silent pitch, no note-on of a sounding one, only note-ons while
    ``entry`` (an immediate transition starts with a note, at once), and a note held
    longer than ``max_note_ticks[s]`` is released instead of sampling (a guard: note
    lengths come from the model).  A note-on's probability is multiplied by the
    tonality prior ``exp(pc_bias[s, pitch class])`` (``engine.controls.tonality_bias``)."""
    V = logits.shape[1]
    for p in range(128):
        if sounding[s, p] >= 0 and gen_tick[s] - sounding[s, p] >= max_note_ticks[s]:
            return off_off + p
    m = -np.inf
    for v in range(V):
        if logits[s, v] > m:
            m = logits[s, v]
    total = 0.0
    for v in range(V):
        if _allowed(s, v, kinds, values, sounding, entry):
            total += _weight(s, v, logits, m, temperature, kinds, values, pc_bias)
    if total == 0.0:
        return shift_off  # nothing allowed: wait one tick
    u = uniform(rng, s) * total
    acc = 0.0
    last = 0
    for v in range(V):
        if _allowed(s, v, kinds, values, sounding, entry):
            w = _weight(s, v, logits, m, temperature, kinds, values, pc_bias)
            if w > 0.0:
                acc += w
                last = v
                if acc > u:
                    return v
    return last


@njit(nogil=True, cache=True, inline="always")
def _weight(s, v, logits, m, temperature, kinds, values, pc_bias):
    """Unnormalised probability of token v: softmax at the session's temperature,
    times the tonality prior for a note-on."""
    z = (logits[s, v] - m) / temperature[s]
    if kinds[v] == 1:
        z += pc_bias[s, values[v] % 12]
    return np.exp(z)
