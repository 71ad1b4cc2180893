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

Arrays live on the runtime (``arrays``) and reach the kernel as one tuple; the layout of
that tuple is ``FIELDS``.
"""
import numpy as np
from numba import njit

from engine.errors import InvalidMessage
from engine.form import MAX_PHRASE_BARS, REPETITION_RANGE, Form
from engine.motif import VARIATION_RANGE

from engine.sampler.sampling import (BASS_VOICE, DRUM, MELODY_VOICE, N_VOICES, OFF, ON, VOICE0,
                                     uniform)

MEMORY_BARS = 32   # two phrases of the longest form
BAR_NOTES = 48     # notes remembered per voice and bar (a sixteenth-note groove of 3 drums)
#: Share of a varied recall's notes the model re-composes.
VARIED_SHARE = 0.5
LEAD_NOTES = 512   # a theme's notes (engine.motif: at most 8 bars)
LOG = 64           # theme statements and returns remembered for the player
#: How much of the bar before a recalled bar leads into it (``lead_in``): all of it, since
#: a sparse line's last note before the bar line is often struck on its first beat.
LEAD_IN = 1.0

FIELDS = ("f_bt", "f_org", "f_rep", "f_next_rep", "f_pb", "f_next_pb", "f_src", "f_next_src",
          "f_pending", "f_seed", "m_bar", "m_n", "m_on", "m_dur", "m_pitch", "m_off",
          "p_tick", "p_voice", "p_pitch", "p_kind", "p_free", "p_act", "p_n", "p_i",
          "p_bar", "p_release", "scripted", "was", "p_src", "p_last", "ev_pi", "ev_pbar", "p_varied", "m_from",
          "p_keep", "l_on", "l_dur", "l_pitch", "l_n", "l_tick", "l_len", "l_var", "l_voice",
          "l_log", "l_logn", "l_due", "p_from", "m_reg", "f_regp", "m_key", "q_on", "q_dur",
          "q_pitch", "q_n", "q_tick", "q_len", "q_var", "q_voice", "f_share", "f_next_share",
          "f_aim", "f_aim_tick", "joining")
(Q_ON, Q_DUR, Q_PITCH, Q_N, Q_TICK, Q_LEN, Q_VAR, Q_VOICE, L_ON, L_DUR, L_PITCH, L_VAR) = (
    FIELDS.index(name) for name in ("q_on", "q_dur", "q_pitch", "q_n", "q_tick", "q_len",
                                    "q_var", "q_voice", "l_on", "l_dur", "l_pitch", "l_var"))
#: Positions in the tuple of what the kernel reads by name.
(F_SRC, F_PB, F_SEED, M_BAR, M_FROM, M_N, M_ON, M_PITCH, F_SHARE, F_AIM, F_AIM_TICK,
 JOINING) = (
    FIELDS.index(name) for name in ("f_src", "f_pb", "f_seed", "m_bar", "m_from", "m_n", "m_on",
                                    "m_pitch", "f_share", "f_aim", "f_aim_tick", "joining"))
(F_BT, F_ORG, F_REP, F_PENDING, P_TICK, P_N, P_I, P_BAR, EV_PI, EV_PBAR, L_N, L_TICK, L_LEN,
 L_VOICE, L_DUE, P_FROM, P_KEEP, M_REG, F_REGP, M_KEY, P_VOICE, P_PITCH, P_KIND, P_FREE,
 P_ACT, P_RELEASE, SCRIPTED, WAS, P_LAST) = (
    FIELDS.index(name) for name in ("f_bt", "f_org", "f_rep", "f_pending", "p_tick", "p_n",
                                    "p_i", "p_bar", "ev_pi", "ev_pbar", "l_n", "l_tick",
                                    "l_len", "l_voice", "l_due", "p_from", "p_keep", "m_reg",
                                    "f_regp", "m_key", "p_voice", "p_pitch", "p_kind",
                                    "p_free", "p_act", "p_release", "scripted", "was",
                                    "p_last"))


def arrays(S, NV, ring, register=(0, 0.0, 0.0, 0, 0)):
    """The form's per-session arrays, by name (``FIELDS``), for S sessions of NV voices
    and a ring of ``ring`` events; ``register``: where the control vector holds the
    register (index, scale, centre: ``engine.controls.ControlSpec``; scale 0: nowhere), the
    key (the first of its 12) and the mode (the first of 2)."""
    B, E, P = MEMORY_BARS, BAR_NOTES, NV * BAR_NOTES * 2
    i64 = lambda *shape, v=0: np.full(shape, v, np.int64)  # noqa: E731
    return dict(
        # settings in force and pending (applied at the next plan built): bar ticks (0:
        # the form is off, nothing remembered), origin (a bar line), repetition, phrase
        # bars, and per voice and bar of the phrase the bar it recalls (engine.form)
        f_bt=i64(S), f_org=i64(S), f_rep=np.zeros(S), f_next_rep=np.zeros(S),
        f_pb=i64(S, v=1), f_next_pb=i64(S, v=1), f_src=i64(S, NV, MAX_PHRASE_BARS, v=-1),
        f_next_src=i64(S, NV, MAX_PHRASE_BARS, v=-1), f_pending=np.zeros(S, np.bool_),
        f_seed=np.ones(S, np.uint64),
        # memory: which bar each of the B slots holds; per voice and slot, its notes
        m_bar=i64(S, B, v=-1), m_n=i64(S, NV, B), m_on=np.zeros((S, NV, B, E), np.int32),
        m_dur=np.zeros((S, NV, B, E), np.int32), m_pitch=np.zeros((S, NV, B, E), np.int32),
        m_off=i64(S, NV, B, E),
        # the plan of bar p_bar: events sorted by tick, p_i the next to feed; p_act the
        # pitch a recalled note of (voice, original pitch) sounds at (-1: not sounding;
        # a voice never holds a pitch twice, so the original pitch names the note)
        p_tick=i64(S, P), p_voice=i64(S, P), p_pitch=i64(S, P),
        p_kind=i64(S, P), p_free=np.zeros((S, P), np.bool_), p_act=i64(S, NV, 128, v=-1),
        p_n=i64(S), p_i=i64(S), p_bar=i64(S, v=-1), p_release=np.zeros(S, np.bool_),
        scripted=np.zeros((S, NV), np.bool_), was=np.zeros((S, NV), np.bool_),
        p_src=i64(S, NV, v=-1), p_last=i64(S, NV, 2, v=-1),
        # per ring event: the plan's next event and bar after it (for a rewind)
        ev_pi=i64(S, ring), ev_pbar=i64(S, ring, v=-1),
        p_varied=np.zeros((S, NV), np.bool_),  # per voice: its recall is varied
        m_from=i64(S),  # the first bar remembered whole (recording began before it)
        # per (voice, pitch sounding): a theme's note held over the bar line, which the plan
        # ends itself (not released at the bar line)
        p_keep=np.zeros((S, NV, 128), np.bool_),
        # the theme (lead): its notes (onset from its start, length, pitch), stated from
        # l_tick in voice l_voice, l_len ticks long, a share l_var of its notes
        # re-composed; l_log: the ticks each statement and return began (l_logn of them)
        l_on=i64(S, LEAD_NOTES), l_dur=i64(S, LEAD_NOTES), l_pitch=i64(S, LEAD_NOTES),
        l_n=i64(S), l_tick=i64(S, v=-1), l_len=i64(S), l_var=np.zeros(S), l_voice=i64(S),
        l_log=i64(S, LOG), l_logn=i64(S),
        # the theme's statement is still to start (at l_tick); the tick the plan began
        # at (its bar line, or a theme's start within the bar)
        l_due=np.zeros(S, np.bool_), p_from=i64(S),
        # the register (mean pitch, the model's space) each remembered bar was composed at,
        # and its key and mode (key * 2 + mode, as the controls asked), and where the
        # controls hold them: (register index, scale, centre, key index, mode index)
        m_reg=np.zeros((S, B)), f_regp=np.array(register, np.float64), m_key=i64(S, B),
        # a theme queued behind the one being stated (``lead_at``): it takes over at q_tick
        # (-1: none queued), as the music gets there; q_n 0: back to no theme
        q_on=i64(S, LEAD_NOTES), q_dur=i64(S, LEAD_NOTES), q_pitch=i64(S, LEAD_NOTES),
        q_n=i64(S), q_tick=i64(S, v=-1), q_len=i64(S), q_var=np.zeros(S), q_voice=i64(S),
        # per voice, the share of the repetition its recalls take (engine.form.Form.shares),
        # in force and pending
        f_share=np.ones((S, NV)), f_next_share=np.ones((S, NV)),
        # per voice, the first pitch of the bar it recalls next (-1: none), the lead-in's
        # aim in the bar before it, and the tick that bar starts at
        f_aim=i64(S, NV, v=-1), f_aim_tick=i64(S, v=-1),
        # the join rule's limit (``Runtime.joining``, ``_joins``): the most semitones the
        # melody may leap into a bar it recalls (0: any)
        joining=np.zeros(S))


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


@njit(nogil=True, cache=True, inline="always")
def _u(seed, a, b, c):
    """A uniform draw in [0, 1) from (seed, a, b, c): splitmix64's finaliser."""
    x = seed ^ (np.uint64(a) * np.uint64(0x9E3779B97F4A7C15)) ^ (
        np.uint64(b) * np.uint64(0xC2B2AE3D27D4EB4F)) ^ (np.uint64(c) * np.uint64(0x165667B1))
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return (x >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@njit(nogil=True, cache=True)
def record(s, v, p, began, t, controls, form):
    """A note of voice v, pitch p, that began at tick ``began`` ended at ``t``: remember it
    in its bar (its length cut at the bar's end), and the register the session's
    ``controls`` ask for there."""
    (f_bt, f_org, _, _, _, _, _, _, _, _, m_bar, m_n, m_on, m_dur, m_pitch, m_off) = form[:16]
    bt = f_bt[s]
    if bt <= 0 or began < f_org[s]:
        return
    b = (began - f_org[s]) // bt
    B = m_bar.shape[1]
    slot = b % B
    if m_bar[s, slot] > b:
        return  # a newer bar holds the slot: too old to keep
    if m_bar[s, slot] != b:
        m_bar[s, slot] = b
        for w in range(m_n.shape[1]):
            m_n[s, w, slot] = 0
        form[M_REG][s, slot] = _register(s, controls, form[F_REGP])
        form[M_KEY][s, slot] = _key(s, controls, form[F_REGP])
    n = m_n[s, v, slot]
    if n >= m_on.shape[3]:
        return
    start = f_org[s] + b * bt
    m_on[s, v, slot, n] = began - start
    m_dur[s, v, slot, n] = max(1, min(t, start + bt) - began)
    m_pitch[s, v, slot, n] = p
    m_off[s, v, slot, n] = t
    m_n[s, v, slot] = n + 1


@njit(nogil=True, cache=True)
def truncate(s, t, m_n, m_on, m_dur, m_pitch, m_off):
    """Forget the remembered notes of session s that ended after tick t (a rewind)."""
    for v in range(m_n.shape[1]):
        for slot in range(m_n.shape[2]):
            k = 0
            for i in range(m_n[s, v, slot]):
                if m_off[s, v, slot, i] <= t:
                    m_on[s, v, slot, k] = m_on[s, v, slot, i]
                    m_dur[s, v, slot, k] = m_dur[s, v, slot, i]
                    m_pitch[s, v, slot, k] = m_pitch[s, v, slot, i]
                    m_off[s, v, slot, k] = m_off[s, v, slot, i]
                    k += 1
            m_n[s, v, slot] = k


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


@njit(nogil=True, cache=True, inline="always")
def _key(s, controls, regp):
    """The key and mode session s's controls ask the model for, as key * 2 + mode."""
    k0, m0 = int(regp[3]), int(regp[4])
    key = 0
    for k in range(12):
        if controls[s, k0 + k] > controls[s, k0 + key]:
            key = k
    return key * 2 + (1 if controls[s, m0 + 1] > controls[s, m0] else 0)


@njit(nogil=True, cache=True, inline="always")
def _register(s, controls, regp):
    """The register (mean pitch) session s's controls ask for (0 without one)."""
    if regp[1] == 0.0:
        return 0.0
    return controls[s, int(regp[0])] / regp[1] + regp[2]


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
