"""A tempo map per session in numba: jumps and linear ramps, a change at any tick.

Each session's map is two segments: the current one (from ``seg_tick`` at ``seg_ns``,
tempo going from ``bpm0`` to ``bpm1`` linearly over ``ramp`` ticks, then staying) and a
pending change at ``p_tick`` (to ``p_bpm`` over ``p_ramp``), so a change can be set
ahead without re-timing the ticks before it.  Within a ramp the tempo is linear in
ticks, so time is a logarithm of it and the inverse an exponential: both exact.
The arrays are the sequencer's (``realtime.sequencer.Sequencer``), one entry a session.
"""
import numpy as np
from numba import njit


@njit(nogil=True, cache=True)
def _seg_ns(tick, a_tick, a_ns, b0, b1, ramp, tpb):
    """Time of ``tick`` in one tempo segment."""
    d = tick - a_tick
    k = 60e9 / tpb  # ns per tick at 1 bpm
    if ramp <= 0.0 or b0 == b1 or d <= 0.0:
        return a_ns + d * k / b0
    if d <= ramp:
        bpm = b0 + (b1 - b0) * d / ramp
        return a_ns + k * ramp / (b1 - b0) * np.log(bpm / b0)
    return a_ns + k * ramp * np.log(b1 / b0) / (b1 - b0) + (d - ramp) * k / b1


@njit(nogil=True, cache=True)
def _seg_tick(t, a_tick, a_ns, b0, b1, ramp, tpb):
    """Inverse of ``_seg_ns``: tick (fractional) at time t."""
    k = 60e9 / tpb
    dt = t - a_ns
    if ramp <= 0.0 or b0 == b1 or dt <= 0.0:
        return a_tick + dt * b0 / k
    t_ramp = k * ramp * np.log(b1 / b0) / (b1 - b0)
    if dt <= t_ramp:
        bpm = b0 * np.exp(dt * (b1 - b0) / (k * ramp))
        return a_tick + (bpm - b0) * ramp / (b1 - b0)
    return a_tick + ramp + (dt - t_ramp) * b1 / k


@njit(nogil=True, cache=True)
def tick_to_ns(s, tick, seg_tick, seg_ns, bpm0, bpm1, ramp, p_tick, p_bpm, p_ramp, tpb):
    if p_tick[s] >= 0.0 and tick > p_tick[s]:
        at = _seg_ns(p_tick[s], seg_tick[s], seg_ns[s], bpm0[s], bpm1[s], ramp[s], tpb)
        b = _start_bpm(s, seg_tick, bpm0, bpm1, ramp, p_tick, p_bpm, p_ramp)
        return _seg_ns(tick, p_tick[s], at, b, p_bpm[s], p_ramp[s], tpb)
    return _seg_ns(tick, seg_tick[s], seg_ns[s], bpm0[s], bpm1[s], ramp[s], tpb)


@njit(nogil=True, cache=True)
def ns_to_tick(s, t, seg_tick, seg_ns, bpm0, bpm1, ramp, p_tick, p_bpm, p_ramp, tpb):
    if p_tick[s] >= 0.0:
        at = _seg_ns(p_tick[s], seg_tick[s], seg_ns[s], bpm0[s], bpm1[s], ramp[s], tpb)
        if t > at:
            b = _start_bpm(s, seg_tick, bpm0, bpm1, ramp, p_tick, p_bpm, p_ramp)
            return _seg_tick(t, p_tick[s], at, b, p_bpm[s], p_ramp[s], tpb)
    return _seg_tick(t, seg_tick[s], seg_ns[s], bpm0[s], bpm1[s], ramp[s], tpb)


@njit(nogil=True, cache=True)
def _seg_bpm(d, b0, b1, ramp):
    """Tempo ``d`` ticks into a segment."""
    if ramp <= 0.0 or d >= ramp:
        return b1 if ramp > 0.0 else b0
    if d <= 0.0:
        return b0
    return b0 + (b1 - b0) * d / ramp


@njit(nogil=True, cache=True)
def bpm_at(s, tick, seg_tick, bpm0, bpm1, ramp, p_tick, p_bpm, p_ramp):
    """Tempo at ``tick``, the pending change included."""
    if p_tick[s] >= 0.0 and tick >= p_tick[s]:
        b = _start_bpm(s, seg_tick, bpm0, bpm1, ramp, p_tick, p_bpm, p_ramp)
        return _seg_bpm(tick - p_tick[s], b, p_bpm[s], p_ramp[s])
    return _seg_bpm(tick - seg_tick[s], bpm0[s], bpm1[s], ramp[s])


@njit(nogil=True, cache=True)
def _start_bpm(s, seg_tick, bpm0, bpm1, ramp, p_tick, p_bpm, p_ramp):
    """Tempo the pending change starts from: its target for a jump, else the tempo
    reached at its tick."""
    if p_ramp[s] <= 0.0:
        return p_bpm[s]
    return _seg_bpm(p_tick[s] - seg_tick[s], bpm0[s], bpm1[s], ramp[s])


@njit(nogil=True, cache=True)
def set_tempo(s, tick, bpm, ramp_ticks, now_tick, seg_tick, seg_ns, bpm0, bpm1, ramp, p_tick,
              p_bpm, p_ramp, tpb):
    # the map holds two segments: a pending change already reached becomes the current
    # one; one still ahead is dropped (promoting it would re-time the ticks before it)
    if 0.0 <= p_tick[s] <= now_tick:
        promote(s, seg_tick, seg_ns, bpm0, bpm1, ramp, p_tick, p_bpm, p_ramp, tpb)
    p_tick[s] = tick
    p_bpm[s] = bpm
    p_ramp[s] = ramp_ticks


@njit(nogil=True, cache=True)
def promote(s, seg_tick, seg_ns, bpm0, bpm1, ramp, p_tick, p_bpm, p_ramp, tpb):
    """Make the pending tempo change the current segment."""
    at = _seg_ns(p_tick[s], seg_tick[s], seg_ns[s], bpm0[s], bpm1[s], ramp[s], tpb)
    b = _start_bpm(s, seg_tick, bpm0, bpm1, ramp, p_tick, p_bpm, p_ramp)
    seg_tick[s] = p_tick[s]
    seg_ns[s] = at
    bpm0[s] = b
    bpm1[s] = p_bpm[s]
    ramp[s] = p_ramp[s]
    p_tick[s] = -1.0
