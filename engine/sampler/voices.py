"""The ensemble's voices in the runtime (``engine.sampler.generator.Runtime``): the note-offs
a voice owes when it is cut, the mask of voices that may play, and the notes a ring
reports, voice by voice.

The runtime's per-session voice state is three arrays: ``voice[s]``, the voice in force
(set by each VOICE token, NO_VOICE after an ensemble's START, always 0 for one line);
``voice_on[s, v]``, whether voice v may play (the sampler never names a voice that is off
and gives it no note-on); and ``sounding[s, v * 128 + p]``, the tick (voice v, pitch p)
began.  ``voice_offs`` and ``set_voices`` are the runtime's methods of those names.
"""
import numpy as np

from engine.errors import InvalidMessage
from engine.notes import NOTE_DTYPE
from engine.vocab import NOTE_OFF, START

from engine.sampler.sampling import VOICE0


def voice_offs(rt, s, voices):
    """Note-off tokens for what ``voices`` (ids) of session s have sounding at its
    generated end, for a session fed its queued tokens first: with voices, each voice's
    offs after its VOICE token, the voice in force first and without one (a stream never
    restates the voice in force).  One line: the offs of every sounding pitch."""
    off = rt.w.vocab.offsets[NOTE_OFF]
    if not rt.n_voices:
        return [off + p for p in np.nonzero(rt.sounding[s, :128] >= 0)[0]]
    cur = voice_after_queue(rt, s)
    out = []
    for v in sorted(voices, key=lambda v: v != cur):  # the voice in force first
        held = np.nonzero(rt.sounding[s, v * 128:(v + 1) * 128] >= 0)[0]
        if len(held) and v != cur:
            out.append(rt.layout[VOICE0] + v)
            cur = v
        out.extend(off + p for p in held)
    return out


def voice_after_queue(rt, s):
    """The voice in force in session s once its queued tokens are fed."""
    q = rt.force[s, rt.force_i[s]:rt.force_n[s]]
    first = rt.layout[VOICE0]
    marks = q[((q >= first) & (q < first + rt.n_voices)) | (q == rt.w.vocab.offsets[START])]
    if not len(marks):
        return int(rt.voice[s])
    return rt.no_voice if marks[-1] == rt.w.vocab.offsets[START] else int(marks[-1] - first)


def set_voices(rt, s, voices):
    """Which voices session s may play from its generated end on: ``voices``, voice ids
    (``engine.ensemble``).  A voice that is off is never named by a sampled VOICE token and
    gets no note-on; if it has notes sounding there, their note-offs are queued (after its
    VOICE token), to be fed before anything is sampled, and returned.  The server calls
    this at a bar line: rewind to it first (a rewind drops what is queued), then set the
    voices.  InvalidMessage on field ``voices`` for an id that is not one of the model's
    voices (a one-line model has none)."""
    nv = rt.n_voices
    ids = [int(v) for v in voices]
    if not nv or any(not 0 <= v < nv for v in ids):
        raise InvalidMessage(f"voices {ids} are not voices of this model (it has "
                             f"{nv or 'none: one line'})", field="voices",
                             allowed=f"ids 0..{nv - 1}" if nv else "none")
    on = np.zeros(nv, np.bool_)
    on[ids] = True
    rt.voice_on[s] = on
    offs = voice_offs(rt, s, np.flatnonzero(~on))
    if offs:
        rt.queue(s, offs)
    return offs


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
