"""The numba sequencer: tempo map, note tables, stingers."""
from types import SimpleNamespace

import numpy as np
import pytest

from realtime.sequencer import NS, Sequencer, note_off, note_on, plan, publish, release


def test_constant_tempo_maps_beats_to_time_and_back():
    sq = Sequencer(2, 12)
    sq.anchor(0, 0.0, 1_000_000_000, 120.0)
    assert sq.tick_ns(0, 12) == pytest.approx(1e9 + 0.5e9)   # one beat at 120 BPM
    assert sq.tick_ns(0, 48) == pytest.approx(1e9 + 2e9)
    assert sq.ns_tick(0, 1e9 + 0.25e9) == pytest.approx(6.0)


def test_tempo_jump_at_a_future_tick_only_moves_later_events():
    sq = Sequencer(1, 12)
    sq.anchor(0, 0.0, 0, 60.0)
    sq.set_tempo(0, 24, 120.0)          # from beat 2 on, twice as fast
    assert sq.tick_ns(0, 24) == pytest.approx(2e9)
    assert sq.tick_ns(0, 36) == pytest.approx(2.5e9)
    assert sq.ns_tick(0, 2.5e9) == pytest.approx(36.0)
    assert sq.tick_ns(0, 12) == pytest.approx(1e9)


def test_a_newer_tempo_change_replaces_one_still_pending():
    sq = Sequencer(1, 12)
    sq.anchor(0, 0.0, 0, 60.0)
    sq.set_tempo(0, 48, 120.0, now=0)   # at beat 4 ...
    sq.set_tempo(0, 24, 30.0, now=0)    # ... but before it comes, slower from beat 2
    assert sq.tick_ns(0, 24) == pytest.approx(2e9)
    assert sq.tick_ns(0, 36) == pytest.approx(4e9)
    assert sq.tick_ns(0, 48) == pytest.approx(6e9)   # the first change is gone
    # every tick maps later than the one before it
    times = [sq.tick_ns(0, t) for t in range(0, 72, 3)]
    assert all(b > a for a, b in zip(times, times[1:]))
    # once reached, a pending change stays when the next one comes
    sq.set_tempo(0, 60, 120.0, now=5e9)  # beat 3.5: the change at beat 2 is current
    assert sq.tick_ns(0, 48) == pytest.approx(6e9)
    assert sq.tick_ns(0, 72) == pytest.approx(8e9 + 0.5e9)  # beat 5 at 8 s, then 0.5 s a beat


def test_linear_ramp_integrates_the_tempo():
    sq = Sequencer(1, 12)
    sq.anchor(0, 0.0, 0, 60.0)
    sq.set_tempo(0, 0, 120.0, ramp_beats=4)
    # time over a linear ramp in beats: 60/(b1-b0)*R*ln(b1/b0) seconds per R beats
    expect = 60.0 / 60.0 * 4 * np.log(2.0)
    assert sq.tick_ns(0, 48) / NS == pytest.approx(expect, rel=1e-9)
    # half-way the tempo is 90 BPM, and the inverse map agrees everywhere
    assert sq.bpm_at(0, 24) == pytest.approx(90.0)
    for tick in (3.0, 17.5, 48.0, 60.0):
        assert sq.ns_tick(0, sq.tick_ns(0, tick)) == pytest.approx(tick, abs=1e-6)
    # after the ramp: 120 BPM
    assert (sq.tick_ns(0, 60) - sq.tick_ns(0, 48)) / NS == pytest.approx(0.5)


def test_boundaries_round_up_to_the_grid():
    sq = Sequencer(1, 12, beats_per_bar=4)
    sq.anchor(0, 0.0, 0, 60.0)
    t = 5.3e9  # beat 5.3
    assert sq.boundary(0, t, "now") == 64
    assert sq.boundary(0, t, "beat") == 72
    assert sq.boundary(0, t, "bar") == 96


def _buffers():
    return np.zeros((64, 4), np.int64), np.zeros(64, np.int64), np.zeros(64, np.float64)


def test_every_wire_note_on_gets_exactly_one_note_off_even_on_retrigger():
    sq = Sequencer(2, 12)
    out, ns, beat = _buffers()
    n, a = note_on(0, 60, 0, 90, 0, 0.0, sq.sent_pitch, sq.sent_chan, sq.sent_serial, sq.owner,
                   sq.serial, out, ns, beat, 0)
    # another session plays the same pitch on the same channel: the first note ends
    n, b = note_on(1, 60, 0, 90, 1, 0.0, sq.sent_pitch, sq.sent_chan, sq.sent_serial, sq.owner,
                   sq.serial, out, ns, beat, n)
    n = note_off(0, 60, 0, a, 2, 0.0, sq.owner, out, ns, beat, n)   # stale: skipped
    n = note_off(1, 60, 0, b, 3, 0.0, sq.owner, out, ns, beat, n)
    msgs = [tuple(out[i, :3]) for i in range(n)]
    assert msgs == [(0x90, 60, 90), (0x80, 60, 0), (0x90, 60, 90), (0x80, 60, 0)]


def test_release_ends_session_notes_and_stinger_notes():
    sq = Sequencer(2, 12)
    out, ns, beat = _buffers()
    n = 0
    for p in (60, 64):
        n, ser = note_on(0, p, 3, 80, 0, 0.0, sq.sent_pitch, sq.sent_chan, sq.sent_serial,
                         sq.owner, sq.serial, out, ns, beat, n)
        sq.sent_pitch[0, p], sq.sent_chan[0, p], sq.sent_serial[0, p] = p, 3, ser
    sq.owner[15, 72] = -1  # a stinger note of session 0 on channel 15
    sq.st_chan[0] = 15
    n = release(0, 10, 1.0, sq.sent_pitch, sq.sent_chan, sq.sent_serial, sq.owner, sq.st_chan,
                sq.st_head, sq.st_n, out, ns, beat, n)
    offs = sorted(tuple(out[i, :2]) for i in range(n) if out[i, 0] & 0xF0 == 0x80)
    assert offs == [(0x83, 60), (0x83, 64), (0x8F, 72)]
    assert not sq.owner.any() and (sq.sent_pitch < 0).all()


def test_stinger_notes_are_ordered_and_released_before_the_next():
    sq = Sequencer(1, 12)
    sq.add_stinger(0, 24, [67, 60], [3, 6], 110, 15)
    rows = [(int(sq.st_tick[0, i]), bool(sq.st_on[0, i]), int(sq.st_pitch[0, i]))
            for i in range(sq.st_n[0])]
    assert rows == [(24, True, 67), (26, False, 67), (27, True, 60), (32, False, 60)]


def _tempo(sq):
    return (sq.seg_tick, sq.seg_ns, sq.bpm0, sq.bpm1, sq.ramp, sq.p_tick, sq.p_bpm, sq.p_ramp,
            sq.tpb)


def test_plan_sets_lookahead_targets_and_when_the_next_one_runs_short():
    sq = Sequencer(3, 12)
    for s in range(3):
        sq.anchor(s, 0.0, 0, 60.0)            # a tick is 1/12 s
    active = np.array([True, True, False])
    gen_tick = np.array([24, 2, 0])
    head, tail, targets = np.ones(3, np.int64), np.ones(3, np.int64), np.zeros(3, np.int64)
    lookahead = 0.5e9                         # six ticks
    pending, wake = plan(0.0, lookahead, active, sq.frozen, gen_tick, head, tail, targets,
                         *_tempo(sq), 256)
    assert list(targets[:2]) == [7, 7]
    assert pending                            # session 1 is short of its target
    gen_tick[1] = 7
    pending, wake = plan(0.0, lookahead, active, sq.frozen, gen_tick, head, tail, targets,
                         *_tempo(sq), 256)
    assert not pending
    # session 1 runs short when tick 7 plays at now + lookahead: 7/12 s - 0.5 s
    assert wake == pytest.approx(7 / 12 * 1e9 - lookahead)
    tail[1] = 256                              # a full ring waits for the player
    gen_tick[1] = 2
    pending, wake = plan(0.0, lookahead, active, sq.frozen, gen_tick, head, tail, targets,
                         *_tempo(sq), 256)
    assert not pending and wake == pytest.approx(1e6)


def test_publish_moves_ready_and_reports_the_earliest_new_event():
    sq = Sequencer(2, 12)
    for s in range(2):
        sq.anchor(s, 0.0, 0, 60.0)
    ev_tick = np.zeros((2, 8), np.int64)
    ev_tick[0, 1:3] = [12, 24]
    ev_tick[1, 1:2] = [6]
    ready, tail = np.ones(2, np.int64), np.array([3, 2])
    first = publish(ready, tail, ev_tick, sq.asap_tick, sq.asap_ns, *_tempo(sq))
    assert list(ready) == [3, 2]
    assert first == pytest.approx(0.5e9)      # session 1's tick 6
    assert publish(ready, tail, ev_tick, sq.asap_tick, sq.asap_ns, *_tempo(sq)) == -1
    # an immediate transition makes its events due at once
    tail[0] = 4
    ev_tick[0, 3] = 36
    sq.asap_tick[0], sq.asap_ns[0] = 36, 123
    assert publish(ready, tail, ev_tick, sq.asap_tick, sq.asap_ns, *_tempo(sq)) == 123


def _collect(sq, now, events, R=8):
    """Run ``collect`` on hand-made rings (a one-line runtime's: every event is voice 0):
    events[s] lists (tick, on?, pitch) of session s.  Tokens are 0..127 note-on of that
    pitch and 128..255 note-off."""
    S = len(events)
    kinds = np.array([1] * 128 + [2] * 128, np.int64)
    values = np.array(list(range(128)) * 2, np.int64)
    rings = SimpleNamespace(active=np.ones(S, np.bool_), ev_tick=np.zeros((S, R), np.int64),
                            ev_tok=np.zeros((S, R), np.int64),
                            ev_voice=np.zeros((S, R), np.int64), head=np.zeros(S, np.int64),
                            ready=np.zeros(S, np.int64), n_voices=0)
    for s, evs in enumerate(events):
        for i, (tick, on, pitch) in enumerate(evs):
            rings.ev_tick[s, i], rings.ev_tok[s, i] = tick, pitch + (0 if on else 128)
        rings.ready[s] = len(evs)
    n, nxt = sq.collect(float(now), rings, kinds, values)
    msgs = [(int(r[0]), int(r[1]), int(r[3]), int(t)) for r, t in zip(sq.out[:n], sq.out_ns[:n])]
    return msgs, nxt


def test_sessions_sharing_a_channel_are_merged_in_time_order_and_stay_balanced():
    # Two sessions on channel 0, both at 60 BPM (12 ticks a beat: tick 6 is 0.5 s).  Session
    # 1's events are earlier than session 0's, as when its generator ran late: the wire
    # must still never end a silent note or start a sounding one.
    sq = Sequencer(2, 12)
    for s in (0, 1):
        sq.anchor(s, 0.0, 0, 60.0)
    msgs, nxt = _collect(sq, 2 * NS, [[(12, True, 60), (30, False, 60)],
                                      [(6, True, 60), (18, False, 60)]])
    assert [m[3] for m in msgs] == sorted(m[3] for m in msgs)  # in time order
    sounding = set()
    for status, pitch, s, t in msgs:
        key = (status & 0x0F, pitch)
        if status & 0xF0 == 0x90:
            assert key not in sounding, msgs
            sounding.add(key)
        else:
            assert key in sounding, msgs
            sounding.discard(key)
    # session 1 starts the note, session 0 retriggers it at 1 s (ending it first), and
    # session 1's own note-off at 1.5 s is skipped: the note is no longer its own
    assert msgs == [(0x90, 60, 1, NS // 2), (0x80, 60, 0, NS), (0x90, 60, 0, NS)]
    assert nxt == pytest.approx(2.5 * NS)  # session 0's note-off at tick 30 is still to come
    assert sounding == {(0, 60)}


def test_queued_transpositions_apply_from_their_tick_and_note_offs_follow_the_note_sent():
    # 60 BPM, 12 ticks a beat.  Transposed by +2, then from tick 24 by -3 and from tick 48
    # by +5: a note-on before a change keeps the old shift and its note-off, after the
    # change, ends the pitch that was sent.
    sq = Sequencer(1, 12)
    sq.anchor(0, 0.0, 0, 60.0)
    sq.set_transpose(0, 2)
    sq.queue_transpose(0, 24, -3)
    sq.queue_transpose(0, 48, 5)
    assert sq.pending_transpose(0) == [(24, -3), (48, 5)]
    msgs, _ = _collect(sq, 10 * NS, [[(0, True, 60), (12, True, 64), (30, False, 60),
                                      (30, True, 62), (36, False, 64), (40, False, 62),
                                      (48, True, 67), (60, False, 67)]], R=16)
    assert [(status & 0xF0, pitch) for status, pitch, _, _ in msgs] == [
        (0x90, 62), (0x90, 66), (0x80, 62), (0x90, 59), (0x80, 66), (0x80, 59),
        (0x90, 72), (0x80, 72)]
    assert sq.pending_transpose(0) == [] and sq.transpose[0] == 5


def test_a_new_transposition_drops_the_queued_ones_it_supersedes():
    sq = Sequencer(1, 12)
    sq.queue_transpose(0, 24, 1)
    sq.queue_transpose(0, 48, 2)
    sq.queue_transpose(0, 36, 3)   # composed again from tick 36: the change at 48 is gone
    assert sq.pending_transpose(0) == [(24, 1), (36, 3)]
    sq.queue_transpose(0, 60, 4, drop_from=36)  # the change at 36 never reached the model
    assert sq.pending_transpose(0) == [(24, 1), (60, 4)]
    for k in range(3):  # a full queue applies its oldest change at once
        sq.queue_transpose(0, 100 + k, k)
    assert sq.transpose[0] == 1 and len(sq.pending_transpose(0)) == 4
    sq.set_transpose(0, -6)
    assert sq.pending_transpose(0) == [] and sq.transpose[0] == -6
