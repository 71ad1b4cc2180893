"""The sequencer: places generated events in wall-clock time and turns them into MIDI.

Events come from the generator in ticks of a beat; this module owns the other side:
a tempo map per session (jumps and linear ramps, changes at any tick; its kernels are
``realtime.tempomap``), the performance controls that belong to playing rather than
composing (velocity from intensity with a beat accent, transposition, humanising),
stingers merged on the grid, and the tables of sounding notes that make every note-on
get its note-off.

An ensemble model's events each belong to a voice (the runtime's ring ``ev_voice``):
each (session, voice) has its own wire channel (``vchan``), octave shift (``vshift``)
and velocity offset (``vvel``); the drum voice is never transposed, since its pitches
are instruments.  A one-line model is voice 0 throughout.

The kernels are numba ``nogil`` functions over preallocated arrays; ``collect``
writes due MIDI messages into an output buffer that the sending thread forwards.
"""
import time

import numpy as np
from numba import njit

from engine.errors import InvalidMessage
from engine.sampler.sampling import uniform

from realtime.tempomap import bpm_at, ns_to_tick, promote, set_tempo, tick_to_ns

NS = 1_000_000_000
OUT_CAP = 4096
STINGER_CAP = 256
TRANSPOSE_CAP = 4  # pending transpositions per session (two at most in practice)


class Sequencer:
    """Timing and performance state for ``max_sessions`` session slots.

    ``n_voices``: the voices of the model's events (1 for a one-line model, whose events
    are all voice 0); ``drum_voice``: the voice never transposed (-2, none: a one-line
    model has no drums, and a voice is never negative)."""

    def __init__(self, max_sessions, ticks_per_beat, beats_per_bar=4, n_voices=1,
                 drum_voice=-2):
        S = max_sessions
        NV = self.n_voices = int(n_voices)
        if NV < 1:
            raise ValueError(f"n_voices must be at least 1, got {n_voices}")
        self.tpb = ticks_per_beat
        self.beats_per_bar = beats_per_bar
        self.drum_voice = int(drum_voice)
        # tempo segment: at seg_tick (ticks) the time is seg_ns; tempo goes from bpm0 to
        # bpm1 linearly over ramp ticks, then stays.  A pending change replaces it at p_tick.
        self.seg_tick = np.zeros(S, np.float64)
        self.seg_ns = np.zeros(S, np.float64)
        self.bpm0 = np.full(S, 110.0)
        self.bpm1 = np.full(S, 110.0)
        self.ramp = np.zeros(S, np.float64)
        self.p_tick = np.full(S, -1.0)
        self.p_bpm = np.zeros(S, np.float64)
        self.p_ramp = np.zeros(S, np.float64)
        self.version = 0  # counts the tempo maps' changes (``anchor``, ``set_tempo``)
        # per session and voice: the wire channel (a one-line session's is vchan[s, 0]),
        # semitones added (an octave shift: the drum voice ignores it) and velocity added
        # to the session's
        self.vchan = np.zeros((S, NV), np.int64)
        self.vshift = np.zeros((S, NV), np.int64)
        self.vvel = np.zeros((S, NV), np.float64)
        # semitones added to every generated note-on (a key-relative model composes in C);
        # a key change at a beat or bar queues (tick, semitones): collect applies each
        # from the first event at or after its tick, so earlier events keep the old one
        self.transpose = np.zeros(S, np.int64)
        self.tr_tick = np.full((S, TRANSPOSE_CAP), -1, np.int64)
        self.tr_val = np.zeros((S, TRANSPOSE_CAP), np.int64)
        self.tr_n = np.zeros(S, np.int64)
        self.velocity = np.full(S, 80.0)        # base velocity from intensity
        self.next_vel = np.full(S, 80.0)        # ... becomes this from vel_tick on
        self.vel_tick = np.full(S, -1, np.int64)
        self.accent = np.full(S, 10.0)          # added on the beat, twice on the bar
        self.humanise = np.zeros(S, np.float64)  # velocity jitter, +- this much
        self.asap_tick = np.full(S, -1, np.int64)  # events up to here play at asap_ns
        self.asap_ns = np.zeros(S, np.int64)
        self.frozen = np.zeros(S, np.bool_)     # paused sessions play nothing
        self.rng = np.ones(S, np.uint64)
        # sounding notes: per session and generated (voice, pitch), at voice * 128 + pitch,
        # the pitch/channel sent and a serial; per wire channel and pitch, the serial that
        # owns it (0: silent; sessions and voices may share a channel)
        self.sent_pitch = np.full((S, NV * 128), -1, np.int64)
        self.sent_chan = np.zeros((S, NV * 128), np.int64)
        self.sent_serial = np.zeros((S, NV * 128), np.int64)
        self.owner = np.zeros((16, 128), np.int64)
        self.serial = np.zeros(1, np.int64)
        # stinger notes per session, sorted by tick: (tick, status, pitch, velocity)
        self.st_tick = np.zeros((S, STINGER_CAP), np.int64)
        self.st_on = np.zeros((S, STINGER_CAP), np.bool_)
        self.st_pitch = np.zeros((S, STINGER_CAP), np.int64)
        self.st_vel = np.zeros((S, STINGER_CAP), np.int64)
        self.st_head = np.zeros(S, np.int64)
        self.st_n = np.zeros(S, np.int64)
        self.st_chan = np.zeros(S, np.int64)
        # collect's scratch: each session's next time, and whether it is a stinger note
        self.due = np.zeros(S, np.float64)
        self.due_st = np.zeros(S, np.bool_)
        # output buffer of due MIDI messages
        self.out = np.zeros((OUT_CAP, 4), np.int64)   # status, data1, data2, session
        self.out_ns = np.zeros(OUT_CAP, np.int64)
        self.out_beat = np.zeros(OUT_CAP, np.float64)

    def anchor(self, s, tick, t_ns, bpm):
        """Session s is at ``tick`` at time ``t_ns``, playing at ``bpm`` from there."""
        self.seg_tick[s], self.seg_ns[s] = tick, t_ns
        self.version += 1
        self.bpm0[s] = self.bpm1[s] = bpm
        self.ramp[s] = 0
        self.p_tick[s] = -1

    def set_tempo(self, s, tick, bpm, ramp_beats=0.0, now=None):
        """From ``tick`` on, move to ``bpm`` (linearly over ``ramp_beats``).  A change
        still pending at ``now`` (ns, default the clock's) is replaced: the latest wins."""
        now_tick = self.ns_tick(s, time.monotonic_ns() if now is None else now)
        self.version += 1
        set_tempo(s, float(tick), float(bpm), float(ramp_beats * self.tpb), now_tick, self.seg_tick,
                  self.seg_ns, self.bpm0, self.bpm1, self.ramp, self.p_tick, self.p_bpm,
                  self.p_ramp, self.tpb)

    def bpm_at(self, s, tick):
        return bpm_at(s, float(tick), self.seg_tick, self.bpm0, self.bpm1, self.ramp,
                      self.p_tick, self.p_bpm, self.p_ramp)

    def tick_ns(self, s, tick):
        return tick_to_ns(s, float(tick), self.seg_tick, self.seg_ns, self.bpm0, self.bpm1,
                          self.ramp, self.p_tick, self.p_bpm, self.p_ramp, self.tpb)

    def ns_tick(self, s, t_ns):
        return ns_to_tick(s, float(t_ns), self.seg_tick, self.seg_ns, self.bpm0, self.bpm1,
                          self.ramp, self.p_tick, self.p_bpm, self.p_ramp, self.tpb)

    def boundary(self, s, t_ns, unit):
        """First tick at or after time ``t_ns`` on the grid: 'now' (next tick),
        'beat' or 'bar', or every ``unit`` ticks (an int)."""
        tick = self.ns_tick(s, t_ns)
        step = unit if isinstance(unit, int) else \
            {"now": 1, "beat": self.tpb, "bar": self.tpb * self.beats_per_bar}[unit]
        return int(-(-tick // step) * step) if tick > 0 else 0

    def set_transpose(self, s, semitones):
        """Transpose session s's generated notes by ``semitones`` from the next event on,
        dropping any change still queued (an immediate change, a session started afresh)."""
        self.transpose[s] = int(semitones)
        self.tr_n[s] = 0

    def queue_transpose(self, s, tick, semitones, drop_from=None):
        """From the first event at or after ``tick``, transpose by ``semitones``.

        Queued changes at or after ``drop_from`` (default ``tick``) are dropped first: the
        events they were for are composed again.  A full queue applies its oldest change
        at once (it never fills in practice: a change is applied when its tick plays)."""
        drop_from = tick if drop_from is None else min(tick, drop_from)
        n = int(self.tr_n[s])
        while n > 0 and self.tr_tick[s, n - 1] >= drop_from:
            n -= 1
        if n == self.tr_tick.shape[1]:
            self.transpose[s] = self.tr_val[s, 0]
            self.tr_tick[s, :n - 1] = self.tr_tick[s, 1:n].copy()
            self.tr_val[s, :n - 1] = self.tr_val[s, 1:n].copy()
            n -= 1
        self.tr_tick[s, n], self.tr_val[s, n] = int(tick), int(semitones)
        self.tr_n[s] = n + 1

    def pending_transpose(self, s):
        """The queued (tick, semitones) changes of session s, oldest first."""
        n = int(self.tr_n[s])
        return [(int(a), int(b)) for a, b in zip(self.tr_tick[s, :n], self.tr_val[s, :n])]

    def add_stinger(self, s, tick, pitches, durations_ticks, velocity, channel, starts=None):
        """Queue a motif for session s starting at ``tick``: its notes in sequence, or
        each at its tick of ``starts`` (from ``tick``; notes may overlap)."""
        t = tick
        rows = []
        for i, (p, d) in enumerate(zip(pitches, durations_ticks)):
            if starts is not None:
                t = tick + starts[i]
            rows.append((t, True, p))
            rows.append((t + max(1, d - 1), False, p))  # released just before the next
            t += d
        keep = [(a, b, c) for a, b, c in
                zip(self.st_tick[s, self.st_head[s]:self.st_n[s]],
                    self.st_on[s, self.st_head[s]:self.st_n[s]],
                    self.st_pitch[s, self.st_head[s]:self.st_n[s]])]
        rows = sorted(keep + rows, key=lambda r: (r[0], r[1]))[:STINGER_CAP]
        for i, (a, b, c) in enumerate(rows):
            self.st_tick[s, i], self.st_on[s, i], self.st_pitch[s, i] = a, b, c
            self.st_vel[s, i] = velocity
        self.st_head[s], self.st_n[s] = 0, len(rows)
        self.st_chan[s] = channel

    def programs(self, s, t_ns, beat, channel_programs):
        """Program changes for session s into ``out``, one per (channel, program) of
        ``channel_programs``; returns the messages written (sent like ``release``'s)."""
        rows = list(channel_programs)
        if len(rows) > self.out.shape[0]:
            raise ValueError(f"at most {self.out.shape[0]} program changes at once")
        for i, (ch, prog) in enumerate(rows):
            if not 0 <= ch <= 15:
                raise InvalidMessage(f"channel must be 0..15, got {ch!r}", field="channel",
                                     allowed="0..15")
            if not 0 <= prog <= 127:
                raise InvalidMessage(f"program must be 0..127, got {prog!r}", field="program",
                                     allowed="0..127")
            self.out[i] = (0xC0 | ch, prog, 0, s)
            self.out_ns[i] = t_ns
            self.out_beat[i] = beat
        return len(rows)

    # -- the kernels over these tables, called with them: no call site lists them ----------
    def collect(self, now, rt, kinds, values):
        """``collect`` the events of the generator's rings (``rt``, a Runtime) due by
        ``now`` into ``out``; returns (messages written, when the next one is due or -1)."""
        if rt.n_voices > self.n_voices:  # its voices would index past the voice tables
            raise ValueError(f"the runtime has {rt.n_voices} voices, this sequencer "
                             f"{self.n_voices}")
        return collect(now, rt.active, rt.ev_tick, rt.ev_tok, rt.ev_voice, rt.head, rt.ready,
                       kinds, values, self.seg_tick, self.seg_ns, self.bpm0, self.bpm1,
                       self.ramp, self.p_tick, self.p_bpm, self.p_ramp, self.tpb,
                       self.beats_per_bar, self.vchan, self.vshift, self.vvel, self.drum_voice,
                       self.transpose, self.tr_tick, self.tr_val, self.tr_n, self.velocity,
                       self.next_vel, self.vel_tick, self.accent, self.humanise, self.asap_tick,
                       self.asap_ns, self.frozen, self.rng, self.sent_pitch, self.sent_chan,
                       self.sent_serial, self.owner, self.serial, self.st_tick, self.st_on,
                       self.st_pitch, self.st_vel, self.st_head, self.st_n, self.st_chan,
                       self.due, self.due_st, self.out, self.out_ns, self.out_beat)

    def release(self, s, t_ns, beat, stingers=True):
        """Note-offs into ``out`` for what session s sounds (its stingers too, unless
        told not); returns the messages written."""
        return release(s, t_ns, beat, self.sent_pitch, self.sent_chan, self.sent_serial,
                       self.owner, self.st_chan, self.st_head, self.st_n, self.out, self.out_ns,
                       self.out_beat, 0, stingers)

    def plan(self, now, lookahead, rt, gen_tick, targets):
        """The generator's look-ahead targets (``plan``) for the rings of ``rt`` from
        ``gen_tick``: returns (more to do, when a look-ahead next runs short (ns))."""
        return plan(float(now), float(lookahead), rt.active, self.frozen, gen_tick, rt.head,
                    rt.tail, targets, self.seg_tick, self.seg_ns, self.bpm0, self.bpm1,
                    self.ramp, self.p_tick, self.p_bpm, self.p_ramp, self.tpb, rt.ring)

    def publish(self, rt):
        """Make what ``rt`` generated visible to ``collect``; returns when the earliest
        newly visible event plays (ns), or -1."""
        return publish(rt.ready, rt.tail, rt.ev_tick, self.asap_tick, self.asap_ns,
                       self.seg_tick, self.seg_ns, self.bpm0, self.bpm1, self.ramp, self.p_tick,
                       self.p_bpm, self.p_ramp, self.tpb)


@njit(nogil=True, cache=True)
def _emit(out, out_ns, out_beat, n, status, d1, d2, s, t, beat):
    if n < out.shape[0]:
        out[n, 0] = status
        out[n, 1] = d1
        out[n, 2] = d2
        out[n, 3] = s
        out_ns[n] = t
        out_beat[n] = beat
        return n + 1
    return n


@njit(nogil=True, cache=True)
def note_on(s, p, ch, vel, t, beat, sent_pitch, sent_chan, sent_serial, owner, serial, out,
            out_ns, out_beat, n):
    """Send pitch p (already transposed) on channel ch for session s's source pitch
    ``sent_pitch`` slot; a wire note that is still sounding is ended first."""
    if owner[ch, p] != 0:  # retrigger: the earlier note ends here, its own off is skipped
        n = _emit(out, out_ns, out_beat, n, 0x80 | ch, p, 0, s, t, beat)
    serial[0] += 1
    owner[ch, p] = serial[0]
    n = _emit(out, out_ns, out_beat, n, 0x90 | ch, p, vel, s, t, beat)
    return n, serial[0]


@njit(nogil=True, cache=True)
def note_off(s, p, ch, ser, t, beat, owner, out, out_ns, out_beat, n):
    if owner[ch, p] == ser and ser != 0:
        owner[ch, p] = 0
        n = _emit(out, out_ns, out_beat, n, 0x80 | ch, p, 0, s, t, beat)
    return n


@njit(nogil=True, cache=True)
def _due(s, head, ready, ev_tick, st_tick, st_head, st_n, asap_tick, asap_ns, seg_tick,
         seg_ns, bpm0, bpm1, ramp, p_tick, p_bpm, p_ramp, tpb):
    """When session s's next message plays (ns; 1e30 if it has none), and whether it
    is a stinger note (a stinger wins a tie with a generated event)."""
    ev_t = 1e30
    st_t = 1e30
    if head[s] < ready[s]:
        ev_t = event_ns(s, ev_tick[s, head[s] % ev_tick.shape[1]], asap_tick, asap_ns,
                        seg_tick, seg_ns, bpm0, bpm1, ramp, p_tick, p_bpm, p_ramp, tpb)
    if st_head[s] < st_n[s]:
        st_t = tick_to_ns(s, float(st_tick[s, st_head[s]]), seg_tick, seg_ns, bpm0, bpm1,
                          ramp, p_tick, p_bpm, p_ramp, tpb)
    if st_t <= ev_t:
        return st_t, True
    return ev_t, False


@njit(nogil=True, cache=True)
def collect(now, active, ev_tick, ev_tok, ev_voice, head, ready, kinds, values, seg_tick,
            seg_ns, bpm0, bpm1, ramp, p_tick, p_bpm, p_ramp, tpb, beats_per_bar, vchan, vshift,
            vvel, drum_voice, transpose, tr_tick, tr_val, tr_n, velocity, next_vel, vel_tick,
            accent, humanise, asap_tick, asap_ns, frozen, rng, sent_pitch, sent_chan,
            sent_serial, owner, serial, st_tick, st_on, st_pitch, st_vel, st_head, st_n,
            st_chan, due, due_st, out, out_ns, out_beat):
    """Move every event due by ``now`` (ns) from the rings (the published part, below
    ``ready``) to the output buffer, as MIDI in time order.  Returns (messages written,
    time of the earliest event still pending or -1).

    The sessions are merged: each message written is the earliest one due of any
    session, so the wire-note bookkeeping (``owner``: which note sounds on each
    channel, shared by the sessions on one channel) changes in the order the messages
    are sent.  ``due`` and ``due_st`` are scratch, one entry per session.

    A generated note-on of voice v (``ev_voice``; below 0, before a piece's first voice
    token, counts as 0) goes out on channel ``vchan[s, v]``, ``transpose[s] + vshift[s, v]``
    semitones up unless v is ``drum_voice``, at the session's velocity plus ``vvel[s, v]``;
    the ``tr_n[s]`` queued changes (``tr_tick``, ``tr_val``, by tick) take over from the
    first event at or after their tick, like ``next_vel`` at ``vel_tick``.  A note-off ends
    the pitch that was sent for its (voice, pitch).
    """
    S = active.shape[0]
    R = ev_tick.shape[1]
    n = 0
    for s in range(S):
        due[s] = 1e30
        if not active[s] or frozen[s]:
            continue
        # tempo: a pending change becomes current once its tick is reached
        if p_tick[s] >= 0.0:
            if ns_to_tick(s, now, seg_tick, seg_ns, bpm0, bpm1, ramp, p_tick, p_bpm, p_ramp,
                          tpb) >= p_tick[s]:
                promote(s, seg_tick, seg_ns, bpm0, bpm1, ramp, p_tick, p_bpm, p_ramp, tpb)
        due[s], due_st[s] = _due(s, head, ready, ev_tick, st_tick, st_head, st_n, asap_tick,
                                 asap_ns, seg_tick, seg_ns, bpm0, bpm1, ramp, p_tick, p_bpm,
                                 p_ramp, tpb)
    while True:
        s = 0
        for q in range(1, S):
            if due[q] < due[s]:
                s = q
        t = due[s]
        if t > now or t >= 1e30:  # 1e30: nothing left (even for a ``now`` that far off)
            return n, (t if t < 1e30 else -1.0)
        if n >= out.shape[0] - 4:
            return n, now  # buffer full: come back at once
        if due_st[s]:
            i = st_head[s]
            p = st_pitch[s, i]
            ch = st_chan[s]
            beat = st_tick[s, i] / tpb
            if st_on[s, i]:
                # stinger notes own the wire note; their serial is the negative slot
                if owner[ch, p] != 0:
                    n = _emit(out, out_ns, out_beat, n, 0x80 | ch, p, 0, s, int(t), beat)
                owner[ch, p] = -1 - s
                n = _emit(out, out_ns, out_beat, n, 0x90 | ch, p, st_vel[s, i], s, int(t), beat)
            else:
                n = note_off(s, p, ch, -1 - s, int(t), beat, owner, out, out_ns, out_beat, n)
            st_head[s] += 1
        else:
            slot = head[s] % R
            tok = ev_tok[s, slot]
            k = kinds[tok]
            tick = ev_tick[s, slot]
            beat = tick / tpb
            if vel_tick[s] >= 0 and tick >= vel_tick[s]:
                velocity[s] = next_vel[s]
                vel_tick[s] = -1
            while tr_n[s] > 0 and tick >= tr_tick[s, 0]:
                transpose[s] = tr_val[s, 0]
                for j in range(1, tr_n[s]):
                    tr_tick[s, j - 1] = tr_tick[s, j]
                    tr_val[s, j - 1] = tr_val[s, j]
                tr_n[s] -= 1
            vo = ev_voice[s, slot]
            if vo < 0:
                vo = 0
            key = vo * 128 + values[tok]  # the note's (voice, generated pitch)
            if k == 1:
                p = values[tok]
                if vo != drum_voice:
                    p += transpose[s] + vshift[s, vo]
                if 0 <= p < 128:
                    ch = vchan[s, vo]
                    v = velocity[s] + vvel[s, vo]
                    if tick % tpb == 0:
                        v += accent[s]
                        if tick % (tpb * beats_per_bar) == 0:
                            v += accent[s]
                    if humanise[s] > 0.0:
                        v += humanise[s] * (2.0 * uniform(rng, s) - 1.0)
                    vel = int(min(127.0, max(1.0, v)))
                    n, ser = note_on(s, p, ch, vel, int(t), beat, sent_pitch, sent_chan,
                                     sent_serial, owner, serial, out, out_ns, out_beat, n)
                    sent_pitch[s, key] = p
                    sent_chan[s, key] = ch
                    sent_serial[s, key] = ser
            elif k == 2:
                if sent_pitch[s, key] >= 0:
                    n = note_off(s, sent_pitch[s, key], sent_chan[s, key], sent_serial[s, key],
                                 int(t), beat, owner, out, out_ns, out_beat, n)
                    sent_pitch[s, key] = -1
            head[s] += 1
        due[s], due_st[s] = _due(s, head, ready, ev_tick, st_tick, st_head, st_n, asap_tick,
                                 asap_ns, seg_tick, seg_ns, bpm0, bpm1, ramp, p_tick, p_bpm,
                                 p_ramp, tpb)


@njit(nogil=True, cache=True)
def release(s, t, beat, sent_pitch, sent_chan, sent_serial, owner, st_chan, st_head, st_n,
            out, out_ns, out_beat, n, stingers=True):
    """Note-offs for everything session s has sounding on the wire, in every voice; with
    ``stingers`` (a stop) its stinger notes end too and pending ones are dropped."""
    for q in range(sent_pitch.shape[1]):
        if sent_pitch[s, q] >= 0:
            n = note_off(s, sent_pitch[s, q], sent_chan[s, q], sent_serial[s, q], t, beat, owner,
                         out, out_ns, out_beat, n)
            sent_pitch[s, q] = -1
    if not stingers:
        return n
    ch = st_chan[s]
    for p in range(128):
        if owner[ch, p] == -1 - s:
            n = note_off(s, p, ch, -1 - s, t, beat, owner, out, out_ns, out_beat, n)
    st_head[s] = 0
    st_n[s] = 0
    return n


@njit(nogil=True, cache=True)
def event_ns(s, tick, asap_tick, asap_ns, seg_tick, seg_ns, bpm0, bpm1, ramp, p_tick, p_bpm,
             p_ramp, tpb):
    """When an event of session s at ``tick`` plays: its place in the tempo map, or at
    once (``asap_ns``) for the events an immediate transition has made urgent."""
    t = tick_to_ns(s, float(tick), seg_tick, seg_ns, bpm0, bpm1, ramp, p_tick, p_bpm, p_ramp, tpb)
    if tick <= asap_tick[s] and asap_ns[s] < t:
        t = float(asap_ns[s])
    return t


@njit(nogil=True, cache=True)
def plan(now, lookahead, active, frozen, gen_tick, head, tail, targets, seg_tick, seg_ns, bpm0,
         bpm1, ramp, p_tick, p_bpm, p_ramp, tpb, ring):
    """Look-ahead targets for the generator: ``targets[s]`` is the tick after the one
    that plays at ``now + lookahead``.  Returns (some session is short of its target and
    has room in its ring, the time (ns) the earliest look-ahead runs short otherwise)."""
    pending = False
    wake = now + 1e9
    for s in range(active.shape[0]):
        if not active[s] or frozen[s]:
            continue
        targets[s] = int(ns_to_tick(s, now + lookahead, seg_tick, seg_ns, bpm0, bpm1, ramp,
                                    p_tick, p_bpm, p_ramp, tpb)) + 1
        if gen_tick[s] < targets[s]:
            if tail[s] - head[s] < ring - 1:
                pending = True
            else:  # ring full: the sender frees it as it plays
                wake = min(wake, now + 1e6)
        else:  # short once the tick that plays at now + lookahead reaches gen_tick
            t = tick_to_ns(s, float(gen_tick[s]), seg_tick, seg_ns, bpm0, bpm1, ramp,
                           p_tick, p_bpm, p_ramp, tpb) - lookahead
            wake = min(wake, t)
    return pending, wake


@njit(nogil=True, cache=True)
def publish(ready, tail, ev_tick, asap_tick, asap_ns, seg_tick, seg_ns, bpm0, bpm1, ramp,
            p_tick, p_bpm, p_ramp, tpb):
    """Make the generated events visible to ``collect`` (``ready = tail``).  Returns when
    the earliest newly visible event plays (ns), or -1 if none is new.

    The generator writes an event's slot before this call moves ``ready`` past it, so
    the sending thread, which reads only below ``ready``, never sees a half-written one.
    """
    R = ev_tick.shape[1]
    first = -1.0
    for s in range(ready.shape[0]):
        if tail[s] > ready[s]:
            t = event_ns(s, ev_tick[s, ready[s] % R], asap_tick, asap_ns, seg_tick, seg_ns,
                         bpm0, bpm1, ramp, p_tick, p_bpm, p_ramp, tpb)
            if first < 0.0 or t < first:
                first = t
        ready[s] = tail[s]
    return first
