"""Form in the runtime (``engine.sampler.generator.Runtime``): a memory of the bars each
voice played, and a plan per bar saying which voices recall an earlier bar.

Real music repeats bars and phrases; a model sampling token by token almost never does.
So each session remembers, voice by voice, the notes of its last ``MEMORY_BARS`` bars
(recorded when a note ends: its onset in its bar, its length up to the bar's end, its
pitch, in the model's key-relative space, so a recall follows the session's key as the
player transposes it; and per bar the key, mode and register the controls asked for: a
bar composed in another key or mode than the session's now is not recalled, and a pitched
voice's recall moves by the octaves that bring it nearest the register asked for now).  At each bar line its music reaches, the plan is
built: for each voice that plays, the session's ``engine.form.Form`` names the earlier bar
of the phrase it may recall (or, with none, the same bar of the previous phrase, a
phrase-level loop), and the session's ``repetition`` r decides, by draws seeded by the
session's seed and the bar (so a rewind rebuilds the same plan), one for every voice, so
that when the melody comes back its accompaniment does too, as in real music:

- recall with probability r (the previous phrase's bar: r squared);
- exactly with probability r, else varied: ``VARIED_SHARE`` of its notes (drawn) are
  re-composed by the model, the onset and length kept and the pitch sampled from the
  model's own probabilities within two semitones of the original on the same side of the
  previous note (the contour kept);
- drums recall exactly.

A recalled voice is *scripted* for that bar: its notes are fed as forced tokens at their
exact ticks (a sampled time shift stops at the next one, and at the bar line), each after
its VOICE token, so the model hears them and accompanies them; the sampler never names a
scripted voice nor gives it a note of its own.  Before its first note the notes it still
holds from before the bar line are released, and so are a voice's whose recall ended; the
release waits its turn at the instant as the plan's events do (``turn``), so the model can
first play the voices before it.
While a bar is composed, the plan knows which bar the melody and the bass recall in the
next one (the draws are the seed's) and the pitch it starts with: the lead-in
(``Runtime.leading``, ``lead_in``; off as shipped, ``engine.ensemble.LEADING``) draws their
notes toward it, so the free bar leads into the recalled one rather than leaping into it.
The join rule (``Runtime.joining``, ``_joins``; off as shipped, ``engine.ensemble.JOINING``)
works from the other side: a melody recall that would begin further than its limit from
the note before the bar line is dropped, and the melody composes that bar new.
A recall is fed like any other forced token: the note guard, "now" changes (``enter``
drops the rest of the bar's plan) and rewinds (the memory forgets what was not kept, the
plan is rebuilt and resumes where the kept events left it) all keep working.  With
repetition 0 no voice is ever scripted and the model composes alone, as before.

This module is the Python side: setting a session's form and theme, and what a reset, a
"now" change or a rewind does to them.  The kernels live beside it: the memory and the
layout of the arrays on the runtime, one tuple the kernels read by position
(``engine.sampler.memory``: ``arrays``, ``FIELDS``, ``record``), the plan of a bar
(``engine.sampler.plan``) and its playing (``engine.sampler.recall``).
"""
import numpy as np

from engine.errors import InvalidMessage
from engine.form import Form, REPETITION_RANGE
from engine.motif import VARIATION_RANGE

from engine.sampler.memory import LEAD_NOTES, LOG, truncate
from engine.sampler.plan import build


def set_form(rt, s, repetition, form=Form(), bar_ticks=None, origin=0):
    """Session s follows ``form`` at ``repetition`` (0 through-composed .. 1 every recall
    the form allows, exactly) from the next bar line its music reaches (at once when the
    form was off).  ``bar_ticks``: ticks in a bar (None: 4 beats); ``origin``: a tick on a
    bar line.  InvalidMessage on field ``repetition`` outside 0..1."""
    lo, hi = REPETITION_RANGE
    if isinstance(repetition, bool) or not isinstance(repetition, (int, float, np.floating)) \
            or not lo <= repetition <= hi:
        raise InvalidMessage(f"repetition {repetition!r} is outside {lo:g}..{hi:g}",
                             field="repetition", allowed=f"{lo:g}..{hi:g}")
    bt = int(bar_ticks or 4 * rt.tpb)
    rt.f_next_src[s] = form.sources(rt.n_voices)
    rt.f_next_share[s] = form.shares(rt.n_voices)
    rt.f_next_rep[s] = float(repetition)
    rt.f_next_pb[s] = form.bars
    rt.f_pending[s] = True
    if rt.f_bt[s] != bt or rt.f_org[s] != int(origin):
        rt.f_bt[s], rt.f_org[s] = bt, int(origin)
        rt.m_bar[s] = -1
        rt.p_bar[s] = -1
        t = int(rt.gen_tick[s]) - rt.f_org[s]
        rt.m_from[s] = max(0, -(-t // bt))  # the next bar line's bar


def lead_at(rt, s, tick, notes=None, variation=0.0, length=None, voice=0):
    """Session s states the theme ``notes`` (NOTE_DTYPE: ticks from the theme's start,
    pitches in the model's space, key-relative for a key-relative model) in ``voice``
    from ``tick``, note for note at ``variation`` 0; at v in 0..1 a share v of its notes
    (drawn) is re-composed by the model near the original, rhythm and contour kept (the
    caller plays free composition at 1).  It lasts ``length`` ticks (None: to its last
    note's end) and returns at the start of later phrases as the session's repetition
    has it (``build``).  ``notes`` None: no theme.  A theme not yet reached is replaced.
    The form is turned on (at repetition 0) if it was off.

    While the session's music has not reached ``tick`` and the theme in place is stated
    before it (or plays now), the new one is queued: the one in place goes on, its
    statement and returns included, until the music gets to ``tick`` (a change at a bar or
    phrase ahead, a mode change that states the theme again in the new mode)."""
    n = 0 if notes is None else len(notes)
    if n:
        lo, hi = VARIATION_RANGE
        if not lo <= variation <= hi:
            raise InvalidMessage(f"variation {variation!r} is outside {lo:g}..{hi:g}",
                                 field="variation", allowed=f"{lo:g}..{hi:g}")
        if rt.f_bt[s] <= 0:
            set_form(rt, s, 0.0)
    rt.q_tick[s] = -1  # a queued theme is replaced too: the latest wins
    queue = tick > rt.gen_tick[s] and rt.l_n[s] > 0 and rt.l_tick[s] < tick
    on, dur, pitch = (rt.q_on, rt.q_dur, rt.q_pitch) if queue else (rt.l_on, rt.l_dur, rt.l_pitch)
    length_of = 0
    if n:
        notes = np.sort(np.asarray(notes)[:LEAD_NOTES], order="start")
        n, t0 = len(notes), int(notes["start"][0])
        on[s, :n] = notes["start"] - t0
        dur[s, :n] = np.maximum(1, notes["end"] - notes["start"])
        pitch[s, :n] = notes["pitch"]
        length_of = int(length) if length else int((notes["end"] - t0).max())
    if queue:
        rt.q_n[s], rt.q_len[s], rt.q_tick[s] = n, length_of, int(tick)
        rt.q_var[s], rt.q_voice[s] = float(variation), int(voice)
        return
    if not n:
        rt.l_n[s], rt.l_tick[s], rt.l_due[s] = 0, -1, False
        return
    rt.l_n[s], rt.l_len[s] = n, length_of
    rt.l_tick[s], rt.l_var[s], rt.l_voice[s] = int(tick), float(variation), int(voice)
    rt.l_due[s] = True


def lead_log(rt, s):
    """The ticks at which session s's theme was stated or came back, oldest first (the
    last ``LOG``)."""
    n = int(rt.l_logn[s])
    return [int(rt.l_log[s, i % LOG]) for i in range(max(0, n - LOG), n)]


def reset(rt, s, seed):
    """Session s opens with the form off, no theme and nothing remembered."""
    rt.f_bt[s] = 0
    rt.f_rep[s] = rt.f_next_rep[s] = 0.0
    rt.f_pending[s] = False
    rt.f_seed[s] = np.uint64((seed * 0xD1B54A32D192ED03 + 0x8CB92BA72F3D8DD7) % 2**64)
    rt.m_bar[s] = -1
    rt.m_n[s] = 0
    drop_plan(rt, s)
    rt.p_bar[s] = -1
    rt.q_tick[s] = -1
    lead_at(rt, s, 0, None)
    rt.l_logn[s] = 0


def drop_plan(rt, s):
    """Session s's plan for the rest of its bar is dropped (an immediate change: the
    model composes every voice until the next bar line)."""
    rt.p_n[s] = rt.p_i[s] = 0
    rt.scripted[s] = rt.p_varied[s] = False
    rt.f_aim[s] = -1
    rt.was[s] = False
    rt.p_release[s] = False
    rt.p_src[s] = -1


def after_rewind(rt, s):
    """Session s was rewound to its generated end: forget the notes that ended after it,
    and rebuild the plan of its bar where the kept events left it."""
    if rt.f_bt[s] <= 0:
        return
    t = int(rt.gen_tick[s])
    truncate(s, t, rt.m_n, rt.m_on, rt.m_dur, rt.m_pitch, rt.m_off)
    while rt.l_logn[s] > 0 and rt.l_log[s, (rt.l_logn[s] - 1) % LOG] > t:
        rt.l_logn[s] -= 1  # a theme's start not kept
    if rt.l_n[s] and rt.l_tick[s] > t:
        rt.l_due[s] = True  # its statement starts again when the music gets there
    kept = (rt.tail[s] - 1) % rt.ring
    b = (t - rt.f_org[s]) // rt.f_bt[s] if t >= rt.f_org[s] else -1
    if b >= 0 and rt.ev_pbar[s, kept] == b:
        build(s, b, False, rt.voice_on, rt.sounding, rt.ctl_base, rt.layout, rt._form)
        rt.p_i[s] = rt.ev_pi[s, kept]
        rt.p_release[s] = True
    else:
        rt.p_bar[s] = -1  # built when the music gets to it, as the first time


def plan(rt, s):
    """The bar session s's plan is for (-1: none), per voice the bar it recalls (-1: new,
    -2: the theme) and whether that recall is varied."""
    return int(rt.p_bar[s]), rt.p_src[s].tolist(), rt.p_varied[s].tolist()
