"""The discriminator D at play time, streamed in numba without torch.

D (``engine.training.adversarial.Critic``) is a causal LSTM with one logit of P(real) per prefix,
so it runs on G's own kernel (``engine.sampler.lstm.lstm_step`` with a one-row head): one
step per event.  ``CriticRuntime.score`` judges K candidate continuations that share a
state (the music already played): all K stepped together, each weight row read once per
step for every candidate.

``Drafter`` is what a session with ``critic`` K > 0 plays through.  Whenever the
session's forced queue runs dry it drafts K continuations of ``beats`` (one by default)
in scratch slots of a second runtime: each starts from a copy of the session (LSTM
state, its own random stream, the sounding table, tick, controls, the pending switch,
the entry rule, the longest-note guard) and is sampled by the very sampler that plays
(``_advance``), so every rule of normal generation holds in every draft.  D then judges
each draft from its state after the session's last ``prefix`` committed events, as it
was trained (``engine.training.adversarial``: a real prefix, then a continuation whose control
vector is the request at its start with each event's own beat phase), and one draft is
committed to the session through the forced-token queue, which reuses all of the ring,
snapshot and sounding bookkeeping: a rewind or a transition drops what is queued and
the next draft starts from wherever the session then is, exactly as without a critic.

A draft is stepped one batched step at a time beside the sessions (``drive``), so a
command never waits for a whole draft; if the session's state changed while its draft
was composed (a transition, a rewind, new settings) the draft is thrown away unused.
A session under the entry rule (just opened, or after an immediate transition) drafts
only its opening notes, up to the next tick, so that its first note is not K beats of
composing away; the server keeps a critic session's look-ahead one draft longer, so
that the next beat is drafted and judged while the current one plays.
"""
import numpy as np
from numba import njit

from engine import DEFAULT_MODEL
from engine.errors import ModelError

from engine.sampler.generator import Runtime
from engine.sampler.lstm import lstm_step
from engine.sampler.sampling import uniform
from engine.sampler.weights import Weights

#: How a draft is picked from the K judged.  "sample" (the default) draws draft k with
#: weight D_k / (1 - D_k) = exp(logit_k): discriminator rejection sampling (Azadi et al.
#: 2019) in its importance-resampling form.  With an ideal D that weight is
#: p_data / p_G, so the pick moves G's distribution towards the data's while keeping
#: its variety; "best" (the argmax) collapses onto what D likes most, which loses
#: diversity and leans on D's blind spots, so it is the option, not the default.
PICKS = ("sample", "best")
#: The critic ``serve`` and ``generate`` load when none is named, if it exists.
DEFAULT_CRITIC = DEFAULT_MODEL.with_name("critic.npz")
MAX_CANDIDATES = 16       # drafts judged at most: the protocol's ``critic`` is 0..this
DRAFT_BEATS = 1.0         # one beat: short enough to react, long enough to judge
MAX_DRAFT_BEATS = 4.0
DEFAULT_PREFIX = 32       # engine.training.adversarial.AdversarialConfig.prefix, for files without it

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


class CriticRuntime:
    """D's state for ``slots`` sequences at once, in preallocated arrays."""

    def __init__(self, weights, slots=8):
        w = self.w = weights if isinstance(weights, Weights) else Weights(weights, role="critic")
        L, H, C = w.layers, w.hidden, w.n_controls
        self.slots = slots
        self.h = np.zeros((slots, L, H), np.float32)
        self.c = np.zeros((slots, L, H), np.float32)
        self.tok = np.zeros(slots, np.int64)
        self.ctl = np.zeros((slots, C), np.float32)
        self.idx = np.arange(slots, dtype=np.int64)
        self.xbuf = np.zeros((slots, max(C + H, 2 * H)), np.float32)
        self.gates = np.zeros((slots, 4 * H), np.float32)
        self.logit = np.zeros((slots, 1), np.float32)
        self.zbias = np.zeros((slots, L, 4 * H), np.float32)  # D has no theme: always zero
        # the real prefix D was trained to judge a continuation after (engine.training.adversarial)
        adv = w.meta.get("info", {}).get("adversarial") or {}
        self.prefix = int(adv.get("prefix", DEFAULT_PREFIX))

    def score(self, h0, c0, tokens, controls, lengths, out):
        """Logits of P(real) after each candidate's last token.

        h0, c0 [L, H]: D's state after the shared music (zeros: from nothing);
        tokens [K, T] int64 and controls [K, T, C]: the candidates, ``lengths[k]`` of
        them used; out [K] float32 receives the logits.  K <= ``slots``.
        """
        w = self.w
        _score(h0, c0, tokens, controls, lengths, out, self.h, self.c, self.tok, self.ctl,
               self.idx, w.tok_table, w.w0, w.w_rest, w.b_rest, w.w_out, w.b_out, self.xbuf,
               self.gates, self.logit, self.zbias)
        return out


@njit(nogil=True, cache=True)
def _score(h0, c0, tokens, controls, lengths, out, h, c, tok, ctl, idx, tok_table, w0, w_rest,
           b_rest, w_out, b_out, xbuf, gates, logit, zbias):
    K, T = tokens.shape
    for k in range(K):
        h[k] = h0
        c[k] = c0
        out[k] = np.float32(np.nan)
    for t in range(T):
        n = 0
        for k in range(K):  # the candidates still going at step t
            if t < lengths[k]:
                idx[n] = k
                tok[k] = tokens[k, t]
                ctl[k] = controls[k, t]
                n += 1
        if n == 0:
            break
        lstm_step(idx, n, tok, ctl, h, c, tok_table, w0, w_rest, b_rest, w_out, b_out, xbuf,
                  gates, logit, zbias)
        for q in range(n):
            k = idx[q]
            if t == lengths[k] - 1:
                out[k] = logit[k, 0]
    for k in range(K):  # leave idx as arange for the next call's bookkeeping
        idx[k] = k


@njit(nogil=True, cache=True)
def _stream(rows, n, toks, ticks, lengths, base, phase0, tpb, out, D):
    """D over rows[:n], each from the state already in D's h/c[row]: feed
    toks[row, :lengths[row]], whose control vector is base[row] with the phase block
    set to the beat phase after each event (ticks[row, t] % tpb, as G is fed).  h/c end
    as the state after the last event; out[row] gets the logit there."""
    h, c, tok, ctl, idx, tok_table, w0, w_rest, b_rest, w_out, b_out, xbuf, gates, logit, \
        zbias = D
    C = ctl.shape[1]
    T = 0
    for q in range(n):
        if lengths[rows[q]] > T:
            T = lengths[rows[q]]
    for t in range(T):
        m = 0
        for q in range(n):
            k = rows[q]
            if t < lengths[k]:
                idx[m] = k
                m += 1
                tok[k] = toks[k, t]
                for j in range(C):
                    ctl[k, j] = base[k, j]
                for j in range(tpb):
                    ctl[k, phase0 + j] = 0.0
                ctl[k, phase0 + ticks[k, t] % tpb] = 1.0
        lstm_step(idx, m, tok, ctl, h, c, tok_table, w0, w_rest, b_rest, w_out, b_out, xbuf,
                  gates, logit, zbias)
        for q in range(m):
            k = idx[q]
            if t == lengths[k] - 1:
                out[k] = logit[k, 0]


@njit(nogil=True, cache=True, inline="always")
def _mix(x):
    """splitmix64's finaliser: a draft's random stream from the session's and its index."""
    x = (x ^ (x >> np.uint64(30))) * _MIX1
    x = (x ^ (x >> np.uint64(27))) * _MIX2
    return x ^ (x >> np.uint64(31))


class Drafter:
    """K drafted continuations per critic session, judged by D; one is committed.

    ``rt``: the sessions' ``Runtime`` (its ``candidates[s]`` is each session's K);
    ``critic``: a critic file, ``Weights(..., role="critic")`` or ``CriticRuntime``;
    ``beats``: the length of a draft; ``pick``: one of ``PICKS``; ``slots``: how many
    candidates can be drafted at once (default: K = MAX_CANDIDATES for every session,
    at most 1024; a session whose K do not fit waits for free slots).

    Cost per committed event: K sampled draft steps (batched with each other and with
    other sessions' drafts), the committed event's own step when it is fed, and D's
    steps: K per event plus ``prefix`` per draft.
    """

    def __init__(self, rt, critic, beats=DRAFT_BEATS, pick="sample", slots=None):
        if pick not in PICKS:
            raise ValueError(f"critic pick {pick!r} is not one of {', '.join(PICKS)}")
        if not 0 < beats <= MAX_DRAFT_BEATS:
            raise ValueError(f"draft length {beats!r} beats is outside (0, {MAX_DRAFT_BEATS:g}]")
        self.rt = rt
        g = rt.w
        cw = critic.w if isinstance(critic, CriticRuntime) else critic
        cw = cw if isinstance(cw, Weights) else Weights(cw, role="critic")
        if cw.meta.get("role") != "critic":
            raise ModelError("the critic given is a generator model, not a critic file")
        if cw.vocab != g.vocab or cw.spec != g.spec:
            raise ModelError("the critic's vocabulary or controls differ from the generator's: "
                             "it judges another model's tokens")
        S = rt.max_sessions
        self.slots = slots = int(slots or max(MAX_CANDIDATES, min(S * MAX_CANDIDATES, 1024)))
        if slots < MAX_CANDIDATES:
            raise ValueError(f"a drafter needs at least {MAX_CANDIDATES} slots")
        self.pick = pick
        self.beats = float(beats)
        self.ticks = max(1, int(round(beats * rt.tpb)))
        self.ring = 32 + 4 * self.ticks  # events a draft may hold (it ends early if full)
        if self.ring - 1 > rt.force.shape[1]:
            raise ValueError(f"a {beats:g}-beat draft does not fit the runtime's forced queue")
        self.critic = CriticRuntime(cw, slots)
        self.prefix = min(self.critic.prefix, rt.ring - 2)  # events the ring still holds
        self.d = Runtime(g, max_sessions=slots, ring=self.ring, force_cap=1, snapshots=False)
        self.dtarget = np.zeros(slots, np.int64)
        self.owner = np.full(slots, -1, np.int64)          # session drafting in each slot
        self.job_k = np.zeros(S, np.int64)                 # candidates of each session's draft
        self.rows = np.full((S, MAX_CANDIDATES), -1, np.int64)
        L, H, C = g.layers, g.hidden, g.n_controls
        # the session as its draft copied it, to tell whether the draft still applies
        self.base = (np.zeros((S, L, H), np.float32), np.zeros((S, L, H), np.float32),
                     np.zeros(S, np.int64), np.zeros(S, np.int64), np.zeros(S, np.int64),
                     np.zeros(S, np.bool_), np.zeros((S, 128), np.int64),
                     np.zeros((S, C), np.float32), np.zeros((S, C), np.float32),
                     np.zeros(S, np.int64), np.zeros((S, 12), np.float64),
                     np.zeros((S, 12), np.float64), np.zeros(S, np.int64),
                     np.zeros(S, np.float64), np.zeros(S, np.uint64), np.zeros(S, np.int64))
        T = max(self.prefix, self.ring)
        self.toks = np.zeros((slots, T), np.int64)
        self.tick_buf = np.zeros((slots, T), np.int64)
        self.lengths = np.zeros(slots, np.int64)
        self.dbase = np.zeros((slots, C), np.float32)
        self.scores = np.zeros(slots, np.float32)
        cr = self.critic
        self.h_pre = np.zeros((S,) + cr.h.shape[1:], np.float32)
        self.c_pre = np.zeros((S,) + cr.c.shape[1:], np.float32)
        self.fin = np.zeros(S, np.int64)
        self.drows = np.zeros(slots, np.int64)
        #: per session: D's logits of its last judged drafts and the one committed
        self.last_scores = np.full((S, MAX_CANDIDATES), np.nan, np.float32)
        self.last_pick = np.full(S, -1, np.int64)
        #: drafts committed, and drafts thrown away because their session changed
        self.counts = np.zeros(2, np.int64)
        self.inflight = 0  # sessions with a draft being composed
        # the kernels' arguments, gathered once (they are the same arrays every call)
        d, cw = self.d, cr.w
        self._main = _state(rt)
        self._draft = _state(d) + (d.head, d.ready, d.ev_tok, d.ev_tick)
        self._D = (cr.h, cr.c, cr.tok, cr.ctl, cr.idx, cw.tok_table, cw.w0, cw.w_rest, cw.b_rest,
                   cw.w_out, cw.b_out, cr.xbuf, cr.gates, cr.logit, cr.zbias)
        self._pick = PICKS.index(pick)

    def drive(self, targets, max_steps=1):
        """Commit finished drafts, start drafts for the critic sessions short of
        ``targets[s]`` with nothing queued, step the drafts in progress by up to
        ``max_steps`` batched steps and commit those that finish.  Returns how much
        was done (0: nothing, so a caller's loop may stop)."""
        done = self._settle() if self.inflight else 0
        started = self._start(targets)
        steps = 0
        if self.inflight:
            steps = self.d.advance(self.dtarget, max_steps)
            done += self._settle()
        return done + started + steps

    def _start(self, targets):
        rt = self.rt
        if not rt.candidates.any():
            return 0
        need = np.flatnonzero((rt.candidates > 0) & rt.active & (rt.force_n == 0)
                              & (rt.gen_tick < targets) & (self.job_k == 0))
        started = 0
        for s in need:  # Python per draft: per beat per session
            K = int(rt.candidates[s])
            free = np.flatnonzero(self.owner < 0)[:K]
            if len(free) < K:
                break  # the slots are busy; the session waits for them
            self.owner[free] = s
            self.rows[s, :K] = free
            self.job_k[s] = K
            _begin(int(s), free, self.ticks, self._main, self._draft, self.dtarget, self.base)
            started += 1
        self.inflight += started
        return started

    def _settle(self):
        rt = self.rt
        done = _settle(self.job_k, self.rows, self.owner, self.dtarget, self._main, self._draft,
                       self.base, rt.ev_tok, rt.ev_tick, rt.force, rt.drafted, self.prefix,
                       rt.phase0, rt.tpb, self._D, self.toks, self.tick_buf, self.lengths,
                       self.dbase, self.scores, self.h_pre, self.c_pre, self.fin, self.drows,
                       self._pick, self.last_scores, self.last_pick, self.counts)
        self.inflight = int(np.count_nonzero(self.job_k))
        return done


def _state(rt):
    """The per-session arrays a draft copies, in one tuple for the kernels."""
    return (rt.active, rt.h, rt.c, rt.tokens, rt.gen_tick, rt.tail, rt.entry, rt.sounding,
            rt.ctl_base, rt.next_ctl, rt.switch_tick, rt.pc_bias, rt.next_bias,
            rt.max_note_ticks, rt.temperature, rt.rng, rt.candidates, rt.force_n, rt.force_i,
            rt.zbias)


@njit(nogil=True, cache=True)
def _begin(s, rows, ticks, main, draft, dtarget, base):
    """Copy session s into the draft slots ``rows`` (each with its own random stream),
    aim them ``ticks`` past the session's end, and keep what was copied in ``base``.
    A session under the entry rule (it opened, or an immediate transition) drafts only
    its opening notes, up to the next tick: the first note must not wait for K beats."""
    (active, h, c, tokens, gen_tick, tail, entry, sounding, ctl_base, next_ctl, switch_tick,
     pc_bias, next_bias, max_note_ticks, temperature, rng, candidates, force_n, force_i,
     zbias) = main
    (d_active, d_h, d_c, d_tokens, d_gen_tick, d_tail, d_entry, d_sounding, d_ctl, d_next,
     d_switch, d_bias, d_nbias, d_maxnote, d_temp, d_rng, d_cand, d_force_n, d_force_i,
     d_zbias, d_head, d_ready, d_ev_tok, d_ev_tick) = draft
    (b_h, b_c, b_tok, b_tick, b_tail, b_entry, b_sound, b_ctl, b_next, b_switch, b_bias,
     b_nbias, b_maxnote, b_temp, b_rng, b_cand) = base
    for k in range(rows.shape[0]):
        r = rows[k]
        d_h[r] = h[s]
        d_c[r] = c[s]
        d_tokens[r] = tokens[s]
        d_gen_tick[r] = gen_tick[s]
        d_entry[r] = entry[s]
        d_sounding[r] = sounding[s]
        d_ctl[r] = ctl_base[s]
        d_next[r] = next_ctl[s]
        d_switch[r] = switch_tick[s]
        d_bias[r] = pc_bias[s]
        d_nbias[r] = next_bias[s]
        d_maxnote[r] = max_note_ticks[s]
        d_temp[r] = temperature[s]
        # a draft composes from the session's theme: with a conductor, from the bias of
        # the position the draft starts in, for the whole draft (critic_beats long)
        d_zbias[r] = zbias[s]
        x = _mix(rng[s] + np.uint64(k + 1) * _GOLDEN)
        d_rng[r] = x if x != np.uint64(0) else np.uint64(1)  # xorshift never leaves 0
        d_cand[r] = 0  # a draft samples
        d_force_n[r] = 0
        d_force_i[r] = 0
        d_head[r] = 0
        d_tail[r] = 0
        d_ready[r] = 0
        dtarget[r] = gen_tick[s] + (1 if entry[s] else ticks)
        d_active[r] = True
    b_h[s] = h[s]
    b_c[s] = c[s]
    b_tok[s] = tokens[s]
    b_tick[s] = gen_tick[s]
    b_tail[s] = tail[s]
    b_entry[s] = entry[s]
    b_sound[s] = sounding[s]
    b_ctl[s] = ctl_base[s]
    b_next[s] = next_ctl[s]
    b_switch[s] = switch_tick[s]
    b_bias[s] = pc_bias[s]
    b_nbias[s] = next_bias[s]
    b_maxnote[s] = max_note_ticks[s]
    b_temp[s] = temperature[s]
    b_rng[s] = rng[s]
    b_cand[s] = candidates[s]


@njit(nogil=True, cache=True, inline="always")
def _differ(a, b):
    return a != b and not (a != a and b != b)  # NaN equals NaN here


@njit(nogil=True, cache=True)
def _unchanged(s, main, base):
    """Is session s still in the state its draft copied (so the draft still applies)?
    A new theme is not compared: whoever sets one drops the session's draft."""
    (active, h, c, tokens, gen_tick, tail, entry, sounding, ctl_base, next_ctl, switch_tick,
     pc_bias, next_bias, max_note_ticks, temperature, rng, candidates, force_n, force_i,
     zbias) = main
    (b_h, b_c, b_tok, b_tick, b_tail, b_entry, b_sound, b_ctl, b_next, b_switch, b_bias,
     b_nbias, b_maxnote, b_temp, b_rng, b_cand) = base
    if not active[s] or force_n[s] != 0 or candidates[s] != b_cand[s] or tail[s] != b_tail[s] \
            or gen_tick[s] != b_tick[s] or tokens[s] != b_tok[s] or entry[s] != b_entry[s] \
            or switch_tick[s] != b_switch[s] or max_note_ticks[s] != b_maxnote[s] \
            or rng[s] != b_rng[s] or _differ(temperature[s], b_temp[s]):
        return False
    for p in range(128):
        if sounding[s, p] != b_sound[s, p]:
            return False
    for j in range(ctl_base.shape[1]):
        if _differ(ctl_base[s, j], b_ctl[s, j]) or _differ(next_ctl[s, j], b_next[s, j]):
            return False
    for j in range(12):
        if _differ(pc_bias[s, j], b_bias[s, j]) or _differ(next_bias[s, j], b_nbias[s, j]):
            return False
    for l in range(h.shape[1]):
        for j in range(h.shape[2]):
            if _differ(h[s, l, j], b_h[s, l, j]) or _differ(c[s, l, j], b_c[s, l, j]):
                return False
    return True


@njit(nogil=True, cache=True)
def _settle(job_k, rows, owner, dtarget, main, draft, base, ev_tok, ev_tick, force, drafted,
            prefix, phase0, tpb, D, toks, tick_buf, lengths, dbase, scores, h_pre, c_pre, fin,
            drows, pick, last_scores, last_pick, counts):
    """Throw away the drafts whose session changed; judge the finished ones with D (all
    sessions' together), pick one per session and queue it.  Returns drafts committed."""
    tail, rng, force_n, force_i = main[5], main[15], main[17], main[18]
    d_active, d_gen_tick, d_tail = draft[0], draft[4], draft[5]
    d_head, d_ev_tok, d_ev_tick = draft[20], draft[22], draft[23]
    b_ctl = base[7]
    dh, dc = D[0], D[1]
    S = job_k.shape[0]
    R = ev_tok.shape[1]
    RD = d_ev_tok.shape[1]
    nf = 0
    for s in range(S):
        K = job_k[s]
        if K == 0:
            continue
        if not _unchanged(s, main, base):
            for k in range(K):
                owner[rows[s, k]] = -1
                d_active[rows[s, k]] = False
            job_k[s] = 0
            counts[1] += 1
            continue
        finished = True
        for k in range(K):
            r = rows[s, k]
            if d_active[r] and d_gen_tick[r] < dtarget[r] and d_tail[r] - d_head[r] < RD - 1:
                finished = False
        if finished:
            fin[nf] = s
            nf += 1
    if nf == 0:
        return 0
    # D's state after each session's last `prefix` committed events (one row per session)
    n = 0
    for q in range(nf):
        s = fin[q]
        r = rows[s, 0]
        m = min(prefix, tail[s])
        for i in range(m):
            e = (tail[s] - m + i) % R
            toks[r, i] = ev_tok[s, e]
            tick_buf[r, i] = ev_tick[s, e]
        lengths[r] = m
        dbase[r] = b_ctl[s]
        dh[r] = 0.0
        dc[r] = 0.0
        drows[n] = r
        n += 1
    _stream(drows, n, toks, tick_buf, lengths, dbase, phase0, tpb, scores, D)
    for q in range(nf):
        s = fin[q]
        h_pre[s] = dh[rows[s, 0]]
        c_pre[s] = dc[rows[s, 0]]
    # each draft judged from there
    n = 0
    for q in range(nf):
        s = fin[q]
        for k in range(job_k[s]):
            r = rows[s, k]
            m = d_tail[r]
            for i in range(m):
                toks[r, i] = d_ev_tok[r, i]
                tick_buf[r, i] = d_ev_tick[r, i]
            lengths[r] = m
            dbase[r] = b_ctl[s]
            dh[r] = h_pre[s]
            dc[r] = c_pre[s]
            scores[r] = np.float32(np.nan)
            drows[n] = r
            n += 1
    _stream(drows, n, toks, tick_buf, lengths, dbase, phase0, tpb, scores, D)
    # pick and commit
    for q in range(nf):
        s = fin[q]
        K = job_k[s]
        best = 0
        top = -np.inf
        for k in range(K):
            v = scores[rows[s, k]]
            last_scores[s, k] = v
            if v > top:  # NaN never wins
                top = v
                best = k
        for k in range(K, last_scores.shape[1]):
            last_scores[s, k] = np.nan
        u = uniform(rng, s)  # drawn in both modes: the session's stream moves on per draft
        if pick == 0 and top > -np.inf:
            total = 0.0
            for k in range(K):
                v = scores[rows[s, k]]
                if v == v:
                    total += np.exp(np.float64(v) - top)
            acc = 0.0
            u *= total
            for k in range(K):
                v = scores[rows[s, k]]
                if v == v:
                    acc += np.exp(np.float64(v) - top)
                    best = k
                    if acc > u:
                        break
        r = rows[s, best]
        m = d_tail[r]
        for i in range(m):
            force[s, i] = d_ev_tok[r, i]
        force_n[s] = m
        force_i[s] = 0
        drafted[s] = True
        last_pick[s] = best
        for k in range(K):
            owner[rows[s, k]] = -1
            d_active[rows[s, k]] = False
        job_k[s] = 0
        counts[0] += 1
    return nf
