"""The form's state on the runtime (``engine.sampler.form`` tells the whole story): the
layout of its arrays, one tuple the kernels read by position (``FIELDS``), and the memory
of the bars each voice played, filled as notes end (``record``) and cut back on a rewind
(``truncate``).  A note is remembered in the model's key-relative space with the key, mode
and register its bar was composed for, so a recall can follow the session's key and
register now."""
import numpy as np
from numba import njit

from engine.form import MAX_PHRASE_BARS

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


@njit(nogil=True, cache=True, inline="always")
def _u(seed, a, b, c):
    """A uniform draw in [0, 1) from (seed, a, b, c): splitmix64's finaliser."""
    x = seed ^ (np.uint64(a) * np.uint64(0x9E3779B97F4A7C15)) ^ (
        np.uint64(b) * np.uint64(0xC2B2AE3D27D4EB4F)) ^ (np.uint64(c) * np.uint64(0x165667B1))
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return (x >> np.uint64(11)) * (1.0 / 9007199254740992.0)


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
