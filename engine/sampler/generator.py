"""The generator runtime: the LSTM stepped in numba from an exported model file.

No torch here.  The weights are rearranged once at load time so one step of one
layer is one GEMV over ``[input, h]``; the token embedding and the first layer's
input weights are folded into a table (``tok_table[token]`` is a row copy instead
of a multiply).  Sessions are stepped together: each weight row is read once per
batch and applied to every session that needs an event.

Per session the runtime keeps a ring of generated events, each with a snapshot of
the LSTM state after it, so the server can rewind to the playhead and regenerate
under new controls (``rewind``), and a queue of forced tokens that are fed instead
of sampled (time shifts up to a transition point, note-offs when music is cut, and
the continuation the critic chose: ``engine.sampler.critic.Drafter``).  A session with
``candidates[s] > 0`` never samples for itself: it plays only what is queued, and the
drafter queues the one of K drafted continuations the critic picks whenever its queue
runs dry.
"""
import numpy as np
from numba import njit

from engine.controls import ControlSpec
from engine.errors import ModelError
from engine.modelfile import read_model_file
from engine.vocab import NOTE_OFF, START, TIME_SHIFT, Vocab

FLAGS = {"reassoc", "contract", "arcp", "nsz"}  # fast dot products, but keep inf/nan


class Weights:
    """Model weights in the layout the numba kernels want (float32, C-contiguous)."""

    def __init__(self, path, role="generator"):
        meta, a = read_model_file(path)
        if meta.get("role", "generator") != role:
            raise ModelError(f"{path}: a {meta.get('role', 'generator')} file where a {role} "
                             "is needed")
        cfg = meta["config"]
        self.meta = meta
        self.vocab = Vocab.from_dict(meta["vocab"])
        self.spec = ControlSpec.from_dict(meta["controls"])
        self.hidden = H = cfg["hidden"]
        self.layers = L = cfg["layers"]
        self.n_controls = cfg["n_controls"]
        E = cfg["embed"]
        f32 = lambda x: np.ascontiguousarray(x, dtype=np.float32)
        w_ih0 = a["lstm.weight_ih_l0"].astype(np.float64)
        b0 = a["lstm.bias_ih_l0"].astype(np.float64) + a["lstm.bias_hh_l0"]
        self.tok_table = f32(a["embed.weight"].astype(np.float64) @ w_ih0[:, :E].T + b0)
        self.w0 = f32(np.hstack([w_ih0[:, E:], a["lstm.weight_hh_l0"]]))  # [4H, C+H]
        n = max(L - 1, 1)
        self.w_rest = np.zeros((n, 4 * H, 2 * H), np.float32)
        self.b_rest = np.zeros((n, 4 * H), np.float32)
        for l in range(1, L):
            self.w_rest[l - 1] = np.hstack([a[f"lstm.weight_ih_l{l}"], a[f"lstm.weight_hh_l{l}"]])
            self.b_rest[l - 1] = a[f"lstm.bias_ih_l{l}"] + a[f"lstm.bias_hh_l{l}"]
        self.w_out = f32(a["head.weight"])
        self.b_out = f32(a["head.bias"])
        self.kinds, self.values = self.vocab.tables()
        info = meta.get("info", {})
        self.mean_register = float(info.get("mean_register", 67.0))
        # trained on pieces moved to C (engine.training.data, key-relative datasets): the sequencer
        # transposes to the key asked for (engine.controls.model_key)
        self.key_relative = bool(info.get("key_relative", False))

    @property
    def nbytes(self):
        """Bytes of weights one step reads (the memory-bandwidth bound's numerator)."""
        H = self.hidden
        return (4 * H * 4 + self.w0.nbytes + (self.layers - 1) * (self.w_rest[0].nbytes
                + self.b_rest[0].nbytes) + self.w_out.nbytes + self.b_out.nbytes)


F32 = np.float32
KERNEL = dict(nogil=True, cache=True, fastmath=FLAGS, error_model="numpy")  # no zero checks


@njit(inline="always", **KERNEL)
def tanh32(x):
    """tanh in float32: Eigen's 13/6 rational approximation (error < 3e-7), which LLVM
    can vectorize where a call to tanhf cannot be."""
    lim = F32(7.90531110763549805)
    x = lim if x > lim else x
    x = -lim if x < -lim else x
    x2 = x * x
    p = x2 * F32(-2.76076847742355e-16) + F32(2.00018790482477e-13)
    p = x2 * p + F32(-8.60467152213735e-11)
    p = x2 * p + F32(5.12229709037114e-08)
    p = x2 * p + F32(1.48572235717979e-05)
    p = x2 * p + F32(6.37261928875436e-04)
    p = x2 * p + F32(4.89352455891786e-03)
    q = x2 * F32(1.19825839466702e-06) + F32(1.18534705686654e-04)
    q = x2 * q + F32(2.26843463243900e-03)
    q = x2 * q + F32(4.89352518554385e-03)
    return x * p / q


@njit(inline="always", **KERNEL)
def sigmoid32(x):
    return F32(0.5) * tanh32(F32(0.5) * x) + F32(0.5)


@njit(**KERNEL)
def gemv(W, x, out, idx, n):
    """out[s] += W @ x[s] for the sessions idx[:n].  Four sessions share each weight
    load (two rows at a time: eight accumulators stay in registers).  A session on its
    own is a dot product per row: reading the weights is its limit, not arithmetic."""
    G, K = W.shape
    k = 0
    while k + 4 <= n:
        s0, s1, s2, s3 = idx[k], idx[k + 1], idx[k + 2], idx[k + 3]
        for j in range(0, G - 1, 2):
            a00 = a01 = a02 = a03 = a10 = a11 = a12 = a13 = F32(0.0)
            for q in range(K):
                w0, w1 = W[j, q], W[j + 1, q]
                x0, x1, x2, x3 = x[s0, q], x[s1, q], x[s2, q], x[s3, q]
                a00 += w0 * x0
                a01 += w0 * x1
                a02 += w0 * x2
                a03 += w0 * x3
                a10 += w1 * x0
                a11 += w1 * x1
                a12 += w1 * x2
                a13 += w1 * x3
            out[s0, j] += a00
            out[s1, j] += a01
            out[s2, j] += a02
            out[s3, j] += a03
            out[s0, j + 1] += a10
            out[s1, j + 1] += a11
            out[s2, j + 1] += a12
            out[s3, j + 1] += a13
        for j in range(G - G % 2, G):
            for kk in range(k, k + 4):
                _dot_row(W, x, out, idx[kk], j)
        k += 4
    for k in range(k, n):
        for j in range(G):
            _dot_row(W, x, out, idx[k], j)


@njit(**KERNEL)
def _dot_row(W, x, out, s, j):
    acc = F32(0.0)
    for q in range(W.shape[1]):
        acc += W[j, q] * x[s, q]
    out[s, j] += acc


@njit(**KERNEL)
def lstm_cell(gates, h, c, layer, idx, n):
    """The gate nonlinearities of one layer (gate order i, f, g, o as in torch)."""
    H = h.shape[2]
    for k in range(n):
        s = idx[k]
        for j in range(H):
            cc = (sigmoid32(gates[s, H + j]) * c[s, layer, j]
                  + sigmoid32(gates[s, j]) * tanh32(gates[s, 2 * H + j]))
            c[s, layer, j] = cc
            h[s, layer, j] = sigmoid32(gates[s, 3 * H + j]) * tanh32(cc)


@njit(**KERNEL)
def lstm_step(idx, n, tokens, controls, h, c, tok_table, w0, w_rest, b_rest, w_out, b_out,
              xbuf, gates, logits, zbias):
    """One step for sessions idx[:n]: feed tokens[s] with controls[s], update h/c [S,L,H],
    write logits[s].  xbuf [S, max(C+H, 2H)] and gates [S, 4H] are scratch.  zbias
    [S, L, 4H] is each session's extra gate bias per layer: W_z z of its theme
    (``engine.sampler.theme``), zero without one."""
    L, H = h.shape[1], h.shape[2]
    C = controls.shape[1]
    G = 4 * H
    for layer in range(L):
        # input vector per session: [controls, h0] for layer 0, [h_{l-1}, h_l] above
        for k in range(n):
            s = idx[k]
            if layer == 0:
                for j in range(C):
                    xbuf[s, j] = controls[s, j]
                for j in range(H):
                    xbuf[s, C + j] = h[s, 0, j]
                for j in range(G):
                    gates[s, j] = tok_table[tokens[s], j] + zbias[s, 0, j]
            else:
                for j in range(H):
                    xbuf[s, j] = h[s, layer - 1, j]
                    xbuf[s, H + j] = h[s, layer, j]
                for j in range(G):
                    gates[s, j] = b_rest[layer - 1, j] + zbias[s, layer, j]
        gemv(w0 if layer == 0 else w_rest[layer - 1], xbuf, gates, idx, n)
        lstm_cell(gates, h, c, layer, idx, n)
    for k in range(n):
        s = idx[k]
        for j in range(H):  # the head reads the top layer's h from xbuf's first H columns
            xbuf[s, j] = h[s, L - 1, j]
        for v in range(w_out.shape[0]):
            logits[s, v] = b_out[v]
    gemv(w_out, xbuf, logits, idx, n)


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


class Runtime:
    """Numba LSTM sessions with look-ahead rings, snapshots, rewind and forced tokens.

    All state lives in preallocated arrays indexed by session slot; ``advance`` is
    the one call that generates (numba, releases the GIL).
    """

    def __init__(self, weights, max_sessions=64, ring=256, max_note_beats=8, force_cap=256,
                 snapshots=True):
        """``snapshots=False``: no per-event state snapshots (a runtime that is never
        rewound, such as the drafter's scratch slots), which saves ring x state memory."""
        w = self.w = weights
        S, L, H, C, V = max_sessions, w.layers, w.hidden, w.n_controls, w.vocab.size
        self.max_sessions, self.ring = S, ring
        self.tpb = w.vocab.ticks_per_beat
        self.h = np.zeros((S, L, H), np.float32)
        self.c = np.zeros((S, L, H), np.float32)
        self.tokens = np.zeros(S, np.int64)
        self.controls = np.zeros((S, C), np.float32)
        self.ctl_base = np.zeros((S, C), np.float32)   # controls without the phase
        self.next_ctl = np.zeros((S, C), np.float32)   # controls after switch_tick
        self.switch_tick = np.full(S, -1, np.int64)
        self.gen_tick = np.zeros(S, np.int64)
        self.sounding = np.full((S, 128), -1, np.int64)
        self.entry = np.zeros(S, np.bool_)
        self.temperature = np.ones(S, np.float64)
        self.rng = np.ones(S, np.uint64)
        self.active = np.zeros(S, np.bool_)
        self.force = np.zeros((S, force_cap), np.int64)
        self.force_n = np.zeros(S, np.int64)
        self.force_i = np.zeros(S, np.int64)
        # event ring: events head..tail-1 are generated, head is the next to play
        self.ev_tick = np.zeros((S, ring), np.int64)
        self.ev_tok = np.zeros((S, ring), np.int64)
        self.ev_aux = np.zeros((S, ring), np.int64)    # note-off: start tick it ended
        self.snap_h = np.zeros((S, ring if snapshots else 1, L, H), np.float32)
        self.snap_c = np.zeros((S, ring if snapshots else 1, L, H), np.float32)
        self.head = np.zeros(S, np.int64)
        self.tail = np.zeros(S, np.int64)
        self.ready = np.zeros(S, np.int64)  # events below it are published to the player
        self.idx = np.zeros(S, np.int64)
        self.xbuf = np.zeros((S, max(C + H, 2 * H)), np.float32)
        self.gates = np.zeros((S, 4 * H), np.float32)
        self.logits = np.zeros((S, V), np.float32)
        # per session: its theme's W_z z; a theme due at theme_tick (its bias, and with
        # theme_reset the state its phrase starts from); reset_due: the phrase starts as
        # soon as the notes still sounding are released; theme_from: where the last one
        # began, and the bias before it, so a rewind to before it undoes it
        self.zbias = np.zeros((S, L, 4 * H), np.float32)
        self.next_zbias = np.zeros((S, L, 4 * H), np.float32)
        self.theme_h = np.zeros((S, L, H), np.float32)
        self.theme_c = np.zeros((S, L, H), np.float32)
        self.theme_tick = np.full(S, -1, np.int64)
        self.theme_reset = np.zeros(S, np.bool_)
        self.reset_due = np.zeros(S, np.bool_)
        self.theme_from = np.full(S, -1, np.int64)
        self.prev_zbias = np.zeros((S, L, 4 * H), np.float32)
        # A theme model with a conductor (engine.theme.vae, positions_per_bar > 0) gives a bias
        # per position (bar or beat) of the theme's phrase.  Each session has two tables,
        # the one playing (pos_slot) and the one a theme due at theme_tick brings, each
        # pos_n positions long (0: the theme's bias is one vector, zbias as above); before
        # each step the position (gen_tick - pos0) // pos_ticks mod pos_n picks the row
        # copied into zbias, once per position change.  pos0 is where the phrase started.
        th = w.meta.get("theme") or {}
        per_bar = int(th.get("positions_per_bar", 0))
        self.positions = int(th.get("max_bars", 8)) * per_bar
        self.pos_ticks = int(th.get("beats_per_bar", 4)) * self.tpb // per_bar if per_bar else 1
        self.pos_bias = np.zeros((S, 2, self.positions, L, 4 * H), np.float32)
        self.pos_n = np.zeros((S, 2), np.int64)
        self.pos_slot = np.zeros(S, np.int64)
        self.pos0 = np.full(S, -1, np.int64)
        self.pos_cur = np.full(S, -1, np.int64)
        self.prev_pos0 = np.full(S, -1, np.int64)
        self._theme = (self.zbias, self.next_zbias, self.theme_h, self.theme_c, self.theme_tick,
                       self.theme_reset, self.reset_due,  # then START's token, a position's ticks
                       np.array([w.vocab.offsets[START], self.pos_ticks], np.int64),
                       self.pos_bias, self.pos_n, self.pos_slot, self.pos0, self.pos_cur)
        # per session: the longest a note may sound (ticks), and the tonality prior
        # (log, per pitch class above the model's tonic) now and from switch_tick on
        self.max_note_ticks = np.full(S, int(max_note_beats * self.tpb), np.int64)
        self.pc_bias = np.zeros((S, 12), np.float64)
        self.next_bias = np.zeros((S, 12), np.float64)
        self.phase0 = w.spec.slices()["phase"].start
        # per session: K candidates a critic judges (0: the session samples itself), and
        # whether the forced queue holds a continuation the drafter committed
        self.candidates = np.zeros(S, np.int64)
        self.drafted = np.zeros(S, np.bool_)

    def open(self, s, controls, seed=0, temperature=1.0, tick=0):
        """Start session slot s at ``tick`` with the START token and these controls."""
        self.h[s] = 0
        self.c[s] = 0
        self.tokens[s] = self.w.vocab.offsets[START]
        self.ctl_base[s] = controls
        self.switch_tick[s] = -1
        self.gen_tick[s] = tick
        self.sounding[s] = -1
        self.entry[s] = True
        self.temperature[s] = temperature
        self.pc_bias[s] = self.next_bias[s] = 0.0  # free until told otherwise
        self.zbias[s] = 0.0  # no theme until one is set
        self.pos_n[s] = 0
        self.pos0[s] = self.pos_cur[s] = -1
        self.theme_tick[s] = self.theme_from[s] = -1
        self.reset_due[s] = False
        self.rng[s] = np.uint64((seed * 0x9E3779B97F4A7C15 + 0x2545F4914F6CDD1D) % 2**64) or 1
        self.force_n[s] = self.force_i[s] = 0
        self.drafted[s] = False
        # slot 0 holds the opening state as an already-played event to rewind to
        self.ev_tick[s, 0] = tick
        self.ev_tok[s, 0] = self.tokens[s]
        self.snap_h[s, 0] = 0
        self.snap_c[s, 0] = 0
        self.head[s] = self.tail[s] = self.ready[s] = 1
        self.active[s] = True

    def close(self, s):
        self.active[s] = False

    def advance(self, target, max_steps=1 << 30, max_batch=0, first=0):
        """Generate for every active session until its look-ahead reaches ``target[s]``
        (ticks), its ring is full, or ``max_steps`` batched steps were taken; returns
        the number of steps taken.  A session with ``candidates[s] > 0`` is stepped only
        while it has forced tokens (the drafter's continuation) to feed.
        max_batch: at most this many sessions a step (0: all that need one), taken from
        slot ``first`` on, cyclically, so that a caller holding a lock for a step holds
        it for that many sessions' work; the others wait for the next call."""
        return _advance(target, max_steps, max_batch, first, self.active, self.candidates, self.idx,
                        self.tokens, self.controls, self.ctl_base, self.next_ctl, self.switch_tick,
                        self.gen_tick, self.sounding, self.entry, self.temperature, self.rng,
                        self.force, self.force_n, self.force_i, self.ev_tick, self.ev_tok,
                        self.ev_aux, self.snap_h, self.snap_c, self.head, self.tail, self.h, self.c,
                        self.w.tok_table, self.w.w0, self.w.w_rest, self.w.b_rest, self.w.w_out,
                        self.w.b_out, self.xbuf, self.gates, self.logits, self.w.kinds,
                        self.w.values, self.phase0, self.tpb, self.max_note_ticks, self.pc_bias,
                        self.next_bias, self.w.vocab.offsets[TIME_SHIFT],
                        self.w.vocab.offsets[NOTE_OFF], self.w.vocab.max_shift, self._theme)

    def kernel_args(self):
        """What ``lstm_step(idx, n, *kernel_args())`` steps: this runtime's sessions."""
        w = self.w
        return (self.tokens, self.controls, self.h, self.c, w.tok_table, w.w0, w.w_rest,
                w.b_rest, w.w_out, w.b_out, self.xbuf, self.gates, self.logits, self.zbias)

    def _table(self, s, slot, bias):
        """Put a theme's bias in session s's table ``slot``: [L, 4H] one vector (pos_n 0,
        returned to be used as it is), or [n, L, 4H] one per position (n <= positions)."""
        bias = np.asarray(bias, np.float32)
        if bias.ndim == 2:
            self.pos_n[s, slot] = 0
            return bias
        n = len(bias)
        if not 1 <= n <= self.positions:
            raise ValueError(f"a theme bias of {n} positions; this model has "
                             f"0..{self.positions}")
        self.pos_bias[s, slot, :n] = bias
        self.pos_n[s, slot] = n
        return bias[0]

    def set_theme(self, s, bias, state=None):
        """Session s composes from a theme from its next step on: ``bias`` [L, 4H] is
        W_z z per layer (``engine.sampler.theme.ThemeEncoder.bias``), zeros for none, or
        [n, L, 4H], one per position of a conductor model's theme; ``state`` (h0, c0),
        each [L, H], replaces the LSTM state, as at the start of a phrase (its positions
        count from here).  A bias moved gradually (a blend) is set this way too, and its
        positions go on being counted from where they were."""
        self.zbias[s] = self._table(s, self.pos_slot[s], bias)
        self.theme_tick[s] = -1
        self.pos_cur[s] = -1  # the row for the next step is copied afresh
        if state is not None or self.pos0[s] < 0:
            self.pos0[s] = self.gen_tick[s]
        if state is not None:
            self.h[s], self.c[s] = state

    def theme_at(self, s, tick, bias, state=None):
        """Session s takes the theme ``bias`` (as ``set_theme``'s) when its music reaches
        ``tick``; with ``state``, the theme's phrase starts there: the notes still sounding
        are released, then the LSTM starts from ``state`` with START, and the first event
        is a note, as a training phrase starts (its positions count from that START).  A
        theme not yet reached is replaced by this one."""
        self.next_zbias[s] = self._table(s, 1 - self.pos_slot[s], bias)
        self.theme_reset[s] = state is not None
        if state is not None:
            self.theme_h[s], self.theme_c[s] = state
        self.prev_zbias[s] = self.zbias[s]
        self.prev_pos0[s] = self.pos0[s]
        self.theme_from[s] = tick
        self.theme_tick[s] = tick

    def rewind(self, s, tick):
        """Drop generated events after ``tick`` that have not been played, restore the
        state after the last kept one and queue time shifts up to ``tick``.
        Returns the tick the kept events reach."""
        tick = _rewind(s, tick, self.gen_tick, self.sounding, self.ev_tick, self.ev_tok,
                       self.ev_aux, self.snap_h, self.snap_c, self.head, self.tail, self.h,
                       self.c, self.tokens, self.force_n, self.force_i, self.w.kinds,
                       self.w.values, self.ring)
        self.ready[s] = min(self.ready[s], self.tail[s])
        self.drafted[s] = False
        if self.theme_from[s] >= 0 and self.theme_from[s] >= tick and self.theme_tick[s] < 0:
            # the theme had begun after what is kept: it is due again when the music gets
            # there, from the bias (and the table) before it
            self.zbias[s] = self.prev_zbias[s]
            self.pos_slot[s] = 1 - self.pos_slot[s]
            self.pos0[s] = self.prev_pos0[s]
            self.pos_cur[s] = -1
            self.theme_tick[s] = self.theme_from[s]
            self.reset_due[s] = False
        return tick

    def queue(self, s, tokens):
        """Queue tokens to be fed to session s before it samples again."""
        self.drafted[s] = False  # the queue is no longer only a drafted continuation
        n = self.force_n[s]
        self.force[s, n:n + len(tokens)] = tokens
        self.force_n[s] = n + len(tokens)

    def drop_draft(self, s):
        """Forget the unfed rest of a continuation the drafter queued for session s (its
        settings changed: what it composed no longer applies); other forced tokens stay."""
        if self.drafted[s]:
            self.force_n[s] = self.force_i[s] = 0
            self.drafted[s] = False

    def shifts_to(self, s, tick):
        """Time-shift tokens that take session s from its generated end to ``tick``."""
        gap = int(tick - self.gen_tick[s] - self._queued_ticks(s))
        out = []
        off, mx = self.w.vocab.offsets[TIME_SHIFT], self.w.vocab.max_shift
        while gap > 0:
            step = min(gap, mx)
            out.append(off + step - 1)
            gap -= step
        return out

    def _queued_ticks(self, s):
        q = self.force[s, self.force_i[s]:self.force_n[s]]
        off = self.w.vocab.offsets[TIME_SHIFT]
        sh = q[(q >= off) & (q < off + self.w.vocab.max_shift)]
        return int((sh - off + 1).sum())

    def release_all(self, s):
        """Note-off tokens for every pitch session s has sounding at its generated end."""
        off = self.w.vocab.offsets[NOTE_OFF]
        return [off + p for p in np.nonzero(self.sounding[s] >= 0)[0]]


@njit(nogil=True, cache=True)
def _advance(target, max_steps, max_batch, first, active, candidates, idx, tokens, controls,
             ctl_base, next_ctl, switch_tick, gen_tick, sounding, entry, temperature, rng, force,
             force_n, force_i, ev_tick, ev_tok, ev_aux, snap_h, snap_c, head, tail, h, c, tok_table,
             w0, w_rest, b_rest, w_out, b_out, xbuf, gates, logits, kinds, values, phase0, tpb,
             max_note_ticks, pc_bias, next_bias, shift_off, off_off, max_shift, theme):
    (zbias, next_zbias, theme_h, theme_c, theme_tick, theme_reset, reset_due, start_tok,
     pos_bias, pos_n, pos_slot, pos0, pos_cur) = theme
    S = active.shape[0]
    R = ev_tick.shape[1]
    C = controls.shape[1]
    steps = 0
    while True:
        for s in range(S):
            if active[s]:
                _theme_due(s, gen_tick, sounding, entry, force, force_n, tokens, h, c, zbias,
                           next_zbias, theme_h, theme_c, theme_tick, theme_reset, reset_due,
                           start_tok, off_off, pos_slot, pos0, pos_cur)
                _theme_position(s, gen_tick, zbias, pos_bias, pos_n, pos_slot, pos0, pos_cur,
                                start_tok[1])
        n = 0
        for k in range(S):
            s = (first + k) % S
            if active[s] and gen_tick[s] < target[s] and tail[s] - head[s] < R - 1 and (
                    candidates[s] == 0 or force_i[s] < force_n[s]):
                idx[n] = s
                n += 1
                if n == max_batch:
                    break
        if n == 0 or steps >= max_steps:
            return steps
        for k in range(n):
            s = idx[k]
            for j in range(C):
                controls[s, j] = ctl_base[s, j]
            controls[s, phase0 + gen_tick[s] % tpb] = 1.0
        lstm_step(idx, n, tokens, controls, h, c, tok_table, w0, w_rest, b_rest, w_out, b_out,
                  xbuf, gates, logits, zbias)
        steps += 1
        for k in range(n):
            s = idx[k]
            if force_i[s] < force_n[s]:
                tok = force[s, force_i[s]]
                force_i[s] += 1
                if force_i[s] == force_n[s]:
                    force_i[s] = 0
                    force_n[s] = 0
            else:
                tok = sample(s, logits, temperature, kinds, values, sounding, entry, gen_tick,
                             max_note_ticks, pc_bias, shift_off, off_off, rng)
                if kinds[tok] == 3:
                    # a time shift lands on the switch tick or on the guard's release of a
                    # held note, whichever comes first, rather than passing it
                    lim = gen_tick[s] + values[tok]
                    if switch_tick[s] >= 0 and switch_tick[s] < lim:
                        lim = switch_tick[s]
                    for p in range(128):
                        if sounding[s, p] >= 0 and sounding[s, p] + max_note_ticks[s] < lim:
                            lim = sounding[s, p] + max_note_ticks[s]
                    if lim < gen_tick[s] + values[tok]:
                        tok = shift_off + lim - gen_tick[s] - 1
            kind, val = kinds[tok], values[tok]
            aux = 0
            if kind == 3:
                gen_tick[s] += val
            elif kind == 1:
                sounding[s, val] = gen_tick[s]
                entry[s] = False
            elif kind == 2:
                aux = sounding[s, val]
                sounding[s, val] = -1
            slot = tail[s] % R
            ev_tick[s, slot] = gen_tick[s]
            ev_tok[s, slot] = tok
            ev_aux[s, slot] = aux
            if snap_h.shape[1] == R:
                snap_h[s, slot] = h[s]
                snap_c[s, slot] = c[s]
            tail[s] += 1
            tokens[s] = tok
            if switch_tick[s] >= 0 and gen_tick[s] >= switch_tick[s]:
                for j in range(C):
                    ctl_base[s, j] = next_ctl[s, j]
                for j in range(12):
                    pc_bias[s, j] = next_bias[s, j]
                switch_tick[s] = -1


@njit(nogil=True, cache=True)
def _theme_due(s, gen_tick, sounding, entry, force, force_n, tokens, h, c, zbias, next_zbias,
               theme_h, theme_c, theme_tick, theme_reset, reset_due, start_tok, off_off,
               pos_slot, pos0, pos_cur):
    """Before session s steps: a theme whose tick its music has reached takes effect (its
    bias, or its table of them; with a reset, note-offs for what sounds are queued
    first), and a reset whose note-offs have all been fed starts the theme's phrase:
    state from z, START, entry, and its positions count from there."""
    if theme_tick[s] >= 0 and gen_tick[s] >= theme_tick[s]:
        theme_tick[s] = -1
        zbias[s] = next_zbias[s]
        pos_slot[s] = 1 - pos_slot[s]
        pos_cur[s] = -1
        if pos0[s] < 0:
            pos0[s] = gen_tick[s]
        if theme_reset[s]:
            for p in range(128):
                if sounding[s, p] >= 0 and force_n[s] < force.shape[1]:
                    force[s, force_n[s]] = off_off + p
                    force_n[s] += 1
            reset_due[s] = True
    if reset_due[s] and force_n[s] == 0:
        reset_due[s] = False
        h[s] = theme_h[s]
        c[s] = theme_c[s]
        tokens[s] = start_tok[0]
        entry[s] = True
        pos0[s] = gen_tick[s]
        pos_cur[s] = -1


@njit(nogil=True, cache=True)
def _theme_position(s, gen_tick, zbias, pos_bias, pos_n, pos_slot, pos0, pos_cur, pos_ticks):
    """Before session s steps: with a table of position biases playing, the row of the
    position its music is at goes into zbias (a copy only when the position changes)."""
    n = pos_n[s, pos_slot[s]]
    if n > 0:
        p = ((gen_tick[s] - pos0[s]) // pos_ticks) % n  # Python's modulo: never negative
        if p != pos_cur[s]:
            zbias[s] = pos_bias[s, pos_slot[s], p]
            pos_cur[s] = p


@njit(nogil=True, cache=True)
def _rewind(s, tick, gen_tick, sounding, ev_tick, ev_tok, ev_aux, snap_h, snap_c, head, tail,
            h, c, tokens, force_n, force_i, kinds, values, R):
    keep = tail[s] - 1
    while keep >= head[s] and ev_tick[s, keep % R] > tick:
        keep -= 1
    # undo the dropped events in the sounding table, newest first
    for i in range(tail[s] - 1, keep, -1):
        tok = ev_tok[s, i % R]
        if kinds[tok] == 1:
            sounding[s, values[tok]] = -1
        elif kinds[tok] == 2:
            sounding[s, values[tok]] = ev_aux[s, i % R]
    slot = keep % R
    h[s] = snap_h[s, slot]
    c[s] = snap_c[s, slot]
    tokens[s] = ev_tok[s, slot]
    tail[s] = keep + 1
    # gen_tick is the tick after the last kept event
    gen_tick[s] = ev_tick[s, slot]
    force_n[s] = 0
    force_i[s] = 0
    return gen_tick[s]
