"""The ensemble's voices in the runtime (``engine.sampler.generator.Runtime``): the note-offs
a voice owes when it is cut, the mask of voices that may play and its switches at a bar
line, per-voice entry, and the notes a ring reports, voice by voice.

The runtime's per-session voice state:

- ``voice[s]``, the voice in force (set by each VOICE token, NO_VOICE after an ensemble's
  START, always 0 for one line);
- ``sounding[s, v * 128 + p]``, the tick (voice v, pitch p) began, -1 when silent;
- ``voice_on[s, v]``, whether voice v may play: the sampler never names a voice that is off
  and gives it no note-on.  ``set_voices`` changes it at the generated end;
  ``voices_at`` when the music reaches a tick (``voice_tick[s]``, the mask
  ``next_on[s]``; -1: none pending), applied in the kernel (``voices_due``), a sampled
  time shift landing exactly on that tick as it does on ``switch_tick``.  The last switch
  applied is remembered (``voice_from[s]``, the mask before it ``prev_on[s]``) so that a
  rewind to before it restores that mask and makes the switch pending again;
- ``voice_bias[s, v]`` (float64, finite log-odds, 0 by default and after ``open``): added to
  VOICE token v's log-probability (after the temperature) when session s samples, so
  that a voice the model seldom names (drums, in most of its data) is named, and so
  plays, more often: its odds against every other token are multiplied by
  ``exp(voice_bias)``.  Only VOICE tokens move; a one-line model has none.  The server
  sets it from ``engine.ensemble.Voice.presence`` for the voices that play;
- ``entered[s, v]``, per-voice entry: while ``entry[s]`` holds (``Runtime.enter``: a
  session's start, an immediate change, a theme phrase's start) no time shift and no
  note-off is sampled, a VOICE token may name only a voice that may play and has not
  entered, and each note-on marks its voice entered; entry lapses once every voice that
  may play has entered (one line: after its first note-on), so every voice sounds at
  once, before time moves on.  With every voice off it lapses at once.  A voice switch
  that brings voices in makes them enter there (the others need not).
"""
import numpy as np
from numba import njit

from engine.errors import InvalidMessage
from engine.notes import NOTE_DTYPE
from engine.vocab import NOTE_OFF, START

from engine.sampler.sampling import N_VOICES, VOICE0


@njit(nogil=True, cache=True, inline="always")
def _voice_after(t, cur, lay, start_tok, no_voice):
    """The voice in force after token ``t`` is fed, ``cur`` before it."""
    if lay[N_VOICES] > 0 and lay[VOICE0] <= t < lay[VOICE0] + lay[N_VOICES]:
        return t - lay[VOICE0]
    if t == start_tok:
        return no_voice
    return cur


@njit(nogil=True, cache=True)
def after_queue(s, voice, force, q0, q1, lay, start_tok, no_voice):
    """The voice in force in session s once its queued tokens ``force[s, q0:q1]`` are fed."""
    cur = voice[s]
    for i in range(q0, q1):
        cur = _voice_after(force[s, i], cur, lay, start_tok, no_voice)
    return cur


@njit(nogil=True, cache=True)
def _queued_off(s, v, p, voice, force, q0, q1, lay, off_tok, start_tok, no_voice):
    """Does the queue ``force[s, q0:q1]`` already end (voice v, pitch p)?"""
    cur = voice[s]
    for i in range(q0, q1):
        t = force[s, i]
        if t == off_tok + p and max(cur, 0) == v:
            return True
        cur = _voice_after(t, cur, lay, start_tok, no_voice)
    return False


@njit(nogil=True, cache=True)
def release_offs(s, row, want, sounding, held, voice, force, q0, q1, lay, off_tok, start_tok,
                 no_voice, out, n):
    """Write into ``out[n:]`` the note-offs owed by the voices v of session s with
    ``row[v] == want`` for what they have sounding once the queue ``force[s, q0:q1]`` is
    fed (a note the queue already ends owes nothing), only notes that ``held`` (a row of
    the sounding table: their start ticks) shows too: the voice in force first, without a
    VOICE token (a stream never restates the voice in force), then the others by id, each
    after its VOICE token.  Returns the new end; what does not fit in ``out`` is left out
    (a VOICE token only with room for one of its offs).  One definition for a theme's
    reset, a voice switch and ``voice_offs``; no allocation."""
    first = after_queue(s, voice, force, q0, q1, lay, start_tok, no_voice)
    cur = first
    cap = out.shape[0]
    for j in range(sounding.shape[1] // 128 + 1):
        v = first if j == 0 else j - 1
        if v < 0 or (j > 0 and v == first) or row[v] != want:
            continue
        for p in range(128):
            began = sounding[s, v * 128 + p]
            if began < 0 or began != held[v * 128 + p] or (
                    q1 > q0 and _queued_off(s, v, p, voice, force, q0, q1, lay, off_tok,
                                            start_tok, no_voice)):
                continue
            if v != cur:
                if n + 1 >= cap:
                    return n
                cur = v
                out[n] = lay[VOICE0] + v
                n += 1
            if n >= cap:
                return n
            out[n] = off_tok + p
            n += 1
    return n


@njit(nogil=True, cache=True)
def voices_due(s, gen_tick, voice_tick, voice_on, next_on, prev_on, voice_from, reset_due,
               sounding, voice, force, force_i, force_n, lay, off_tok, start_tok, no_voice,
               entry, entered):
    """A voice switch whose tick session s's music has reached takes effect: the mask
    ``next_on[s]`` (the one before it and the tick kept for a rewind); the voices it
    brings in enter there (the entry rule, for them alone: they sound before time moves
    on); and the note-offs of what the voices now off have sounding are queued, each
    voice's after its VOICE token, to be fed before anything is sampled (none while a
    theme's reset is due: it releases every voice).  Returns how many tokens were
    queued."""
    if voice_tick[s] < 0 or gen_tick[s] < voice_tick[s]:
        return 0
    joins = False
    for v in range(voice_on.shape[1]):
        prev_on[s, v] = voice_on[s, v]
        voice_on[s, v] = next_on[s, v]
        joins = joins or (voice_on[s, v] and not prev_on[s, v])
    if joins:
        for v in range(voice_on.shape[1]):
            if voice_on[s, v] and not prev_on[s, v]:
                entered[s, v] = False
            elif not entry[s]:
                entered[s, v] = True  # the voices playing on need not enter again
        entry[s] = True
    voice_from[s] = voice_tick[s]
    voice_tick[s] = -1
    if reset_due[s]:
        return 0
    n0 = force_n[s]
    force_n[s] = release_offs(s, voice_on[s], False, sounding, sounding[s], voice, force,
                              force_i[s], n0, lay, off_tok, start_tok, no_voice, force[s], n0)
    return force_n[s] - n0


@njit(nogil=True, cache=True, inline="always")
def entry_lapses(s, entry, entered, voice_on, scripted):
    """Entry ends once every voice that may play has entered (at once with none on); a
    voice the form plan plays (``scripted``) need not."""
    if entry[s]:
        for v in range(voice_on.shape[1]):
            if voice_on[s, v] and not entered[s, v] and not scripted[s, v]:
                return
        entry[s] = False


def voice_offs(rt, s, voices, held=None):
    """Note-off tokens for what ``voices`` (ids) of session s have sounding at its
    generated end, for a session fed its queued tokens first (``release_offs``: each
    voice's offs after its VOICE token, the voice in force first and without one).
    One line: the offs of every sounding pitch.  ``held``: a copy of ``sounding[s]``
    taken earlier; only the notes it shows that still sound are released (the old
    music's, after new notes have been composed: ``release_all(s, held)``)."""
    nv = max(rt.n_voices, 1)
    row = np.zeros(nv, np.bool_)
    row[[int(v) for v in voices]] = True
    out = np.zeros(nv * 129, np.int64)
    held = rt.sounding[s] if held is None else np.asarray(held, np.int64)
    n = release_offs(s, row, True, rt.sounding, held, rt.voice, rt.force, rt.force_i[s],
                     rt.force_n[s], rt.layout, rt.w.vocab.offsets[NOTE_OFF],
                     rt.w.vocab.offsets[START], rt.no_voice, out, 0)
    return out[:n].tolist()


def voice_after_queue(rt, s):
    """The voice in force in session s once its queued tokens are fed."""
    return int(after_queue(s, rt.voice, rt.force, rt.force_i[s], rt.force_n[s], rt.layout,
                           rt.w.vocab.offsets[START], rt.no_voice))


def _mask(rt, voices):
    """The voice mask for ``voices`` (ids); InvalidMessage on field ``voices`` for an id
    that is not one of the model's voices (a one-line model has none)."""
    nv = rt.n_voices
    ids = [int(v) for v in voices]
    if not nv or any(not 0 <= v < nv for v in ids):
        raise InvalidMessage(f"voices {ids} are not voices of this model (it has "
                             f"{nv or 'none: one line'})", field="voices",
                             allowed=f"ids 0..{nv - 1}" if nv else "none")
    on = np.zeros(nv, np.bool_)
    on[ids] = True
    return on


def voices_at(rt, s, tick, voices):
    """Which voices session s may play from ``tick`` on (a bar line): ``voices``, voice
    ids (``engine.ensemble``).  The switch takes effect when the music reaches ``tick``
    (a sampled time shift lands exactly on it): the voices off from there get the
    note-offs of what they have sounding forced at once (each voice's after its VOICE
    token) and are never named again; a voice it brings in enters there: it sounds a
    note-on before time moves on (the entry rule, for the voices coming in; the others
    play on as they were).  A newer call
    replaces a switch still pending; a rewind to before an applied switch restores the
    mask before it and makes it pending again (``Runtime.rewind``).  If the generated
    music has reached ``tick`` already, the switch is made now, at its end (the caller
    rewinds to the bar line first).  Returns the tokens queued now (none when pending).
    InvalidMessage on field ``voices`` for an id that is not one of the model's voices."""
    rt.next_on[s] = _mask(rt, voices)
    rt.voice_tick[s] = int(tick)
    n0 = int(rt.force_n[s])
    n = voices_due(s, rt.gen_tick, rt.voice_tick, rt.voice_on, rt.next_on, rt.prev_on,
                   rt.voice_from, rt.reset_due, rt.sounding, rt.voice, rt.force, rt.force_i,
                   rt.force_n, rt.layout, rt.w.vocab.offsets[NOTE_OFF],
                   rt.w.vocab.offsets[START], rt.no_voice, rt.entry, rt.entered)
    if n:
        rt.drafted[s] = False  # the queue is no longer only a drafted continuation
    return rt.force[s, n0:n0 + n].tolist()


def set_voices(rt, s, voices):
    """Which voices session s may play from its generated end on (``voices_at`` that
    tick, so made at once): a voice off gets no note-on and is never named; the
    note-offs of what it has sounding are queued, to be fed before anything is sampled,
    and returned; a voice brought in enters at once.  The server calls this when a
    session's music starts afresh; a switch at a bar line is ``voices_at``'s."""
    return voices_at(rt, s, rt.gen_tick[s], voices)


def ring_notes(rt, s, first, last):
    """The notes session s's ring reports as ended among its events ``first..last-1``
    (absolute event indices, still in the ring): from each note-off, its start (the
    event's aux), its end (the event's tick), its pitch and its voice (``channel``; one
    line: 0), at the vocabulary's default velocity.  Sorted as ``Vocab.decode`` sorts."""
    R = rt.ring
    slots = np.arange(first, last) % R
    tok = rt.ev_tok[s, slots]
    offs = rt.w.kinds[tok] == NOTE_OFF
    notes = np.zeros(int(offs.sum()), NOTE_DTYPE)
    notes["start"] = rt.ev_aux[s, slots[offs]]
    notes["end"] = np.maximum(rt.ev_tick[s, slots[offs]], notes["start"] + 1)
    notes["pitch"] = rt.w.values[tok[offs]]
    notes["velocity"] = rt.w.vocab.default_velocity
    notes["channel"] = np.maximum(rt.ev_voice[s, slots[offs]], 0)
    return notes[np.lexsort((notes["channel"], notes["pitch"], notes["start"]))]
