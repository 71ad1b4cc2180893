"""The generator runtime: sessions of the LSTM stepped in numba from an exported model file.

No torch here.  The weights (``engine.sampler.weights``) are stepped by the batched
kernels of ``engine.sampler.lstm``; tokens are drawn by ``engine.sampler.sampling``; the
loop that steps every session and the ring's rewind are ``engine.sampler.kernel``'s, over
the arrays this class holds.

Per session the runtime keeps a ring of generated events, each with a snapshot of
the LSTM state after it, so the server can rewind to the playhead and regenerate
under new controls (``rewind``), and a queue of forced tokens that are fed instead
of sampled (time shifts up to a transition point, note-offs when music is cut, and
the continuation the critic chose: ``engine.sampler.critic.Drafter``).  A session with
``candidates[s] > 0`` never samples for itself: it plays only what is queued, and the
drafter queues the one of K drafted continuations the critic picks whenever its queue
runs dry.

With an ensemble model (``Vocab.n_voices`` > 0) a session also has a current voice, set
by each VOICE token (sampled or forced) and restored by a rewind; note events apply to
(current voice, pitch), and the sounding table, the note guard and the note-offs of a
cut are per (voice, pitch), a note-off of another voice preceded by its VOICE token.
A mask per session says which voices may play, set at once (``set_voices``) or from a
bar line the music reaches (``voices_at``); ``voice_bias`` makes a voice more (or less)
likely to be named; the entry rule is per voice (``enter``): every voice that may play
sounds before time moves on.  ``engine.sampler.voices`` says how.  Each event in the
ring carries the voice in force after it (``ev_voice``), so the player can give each
voice its own channel.  Transposing to a key is the player's (drums never move).
"""
import numpy as np

from engine.ensemble import BASS, DRUMS, HARMONY, MELODY, PRIORS
from engine.vocab import NO_VOICE, NOTE_OFF, START, TIME_SHIFT

from engine.sampler import form, kernel, memory, voices
from engine.sampler.sampling import layout

#: The note guard: a note sounds at most this many beats (a session's own guard may be
#: shorter); the default when nothing sets one.
MAX_NOTE_BEATS, DEFAULT_MAX_NOTE_BEATS = 64.0, 8.0
PRIOR_NAMES = tuple(PRIORS)


class Runtime:
    """Numba LSTM sessions with look-ahead rings, snapshots, rewind and forced tokens.

    All state lives in preallocated arrays indexed by session slot; ``advance`` is
    the one call that generates (numba, releases the GIL).
    """

    def __init__(self, weights, max_sessions=64, ring=256, max_note_beats=DEFAULT_MAX_NOTE_BEATS,
                 force_cap=256,
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
        # voices: NV of them (1 for one line, whose voice is always 0); sounding[s, v*128+p]
        # is the tick (voice v, pitch p) began, -1 when silent; voice[s] the current voice
        # (NO_VOICE after an ensemble's START); voice_on[s, v] whether v may play, and a
        # switch of it pending at voice_tick (next_on), the last one applied (voice_from,
        # the mask before it prev_on); voice_bias the log-odds added to each voice's
        # token; entered[s, v]: v sounded a note-on since the entry rule began
        # (engine.sampler.voices)
        nv = w.vocab.n_voices
        NV = max(nv, 1)
        self.n_voices, self.no_voice = nv, NO_VOICE if nv else 0
        self.sounding = np.full((S, NV * 128), -1, np.int64)
        self.voice = np.full(S, self.no_voice, np.int64)
        self.voice_on = np.ones((S, NV), np.bool_)
        self.next_on = np.ones((S, NV), np.bool_)
        self.prev_on = np.ones((S, NV), np.bool_)
        self.voice_tick = np.full(S, -1, np.int64)
        self.voice_from = np.full(S, -1, np.int64)
        self.voice_bias = np.zeros((S, NV), np.float64)
        # the consonance prior's weight (engine.sampler.sampling.sample; 0: off)
        self.consonance = np.zeros(S, np.float64)
        self.rooting = np.zeros(S, np.float64)  # the root prior's (0: off)
        self.inversion = np.zeros(S, np.float64)  # the inversion prior's (0: off)
        self.ordering = np.zeros(S, np.float64)  # the voice-order prior's (0: off)
        self.smoothing = np.zeros(S, np.float64)  # the line prior's (0: off)
        self.leading = np.zeros(S, np.float64)  # the lead-in's (0: off)
        self.entered = np.zeros((S, NV), np.bool_)
        self.everyone = np.ones(NV, np.bool_)  # a theme's reset releases every voice
        self.layout = layout(w.vocab, DRUMS, BASS, MELODY, HARMONY)  # token ranges, voices' roles
        self.probs = np.zeros((S, V), np.float64)  # the sampler's scratch
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
        self.ev_voice = np.zeros((S, ring), np.int64)  # the voice in force after the event
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
        # A theme model with a conductor (engine.theme.model, positions_per_bar > 0) gives a bias
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
        # the form: a memory of the bars played and the plan of the bar (engine.sampler.form)
        at = w.spec.slices()
        for name, a in memory.arrays(S, NV, ring, (at["register"].start, w.spec.register_scale,
                                                 w.spec.register_centre, at["key"].start,
                                                 at["mode"].start)).items():
            setattr(self, name, a)
        self._form = tuple(getattr(self, name) for name in memory.FIELDS)
        self._voices = (self.voice, self.voice_on, self.ev_voice, self.layout, self.probs,
                        self.voice_bias, self.entered, self.voice_tick, self.next_on,
                        self.prev_on, self.voice_from, self.everyone, self.consonance,
                        self.rooting, self.inversion, self.ordering, self.smoothing,
                        self.leading, self.scripted)
        self._theme = (self.zbias, self.next_zbias, self.theme_h, self.theme_c, self.theme_tick,
                       self.theme_reset, self.reset_due,  # then START's token, a position's ticks
                       np.array([w.vocab.offsets[START], self.pos_ticks, self.no_voice],
                                np.int64),
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

    def set_priors(self, s, **weights):
        """Session s's sampling priors by name (``engine.ensemble.PRIORS``: consonance,
        rooting, inversion, ordering, smoothing, leading, joining; see
        ``engine.sampler.sampling.sample``)."""
        for name, weight in weights.items():
            if name not in PRIOR_NAMES:
                raise ValueError(f"no prior {name!r}: one of {', '.join(PRIOR_NAMES)}")
            getattr(self, name)[s] = weight

    def open(self, s, controls, seed=0, temperature=1.0, tick=0):
        """Start session slot s at ``tick`` with the START token and these controls."""
        self.h[s] = 0
        self.c[s] = 0
        self.tokens[s] = self.w.vocab.offsets[START]
        self.ctl_base[s] = controls
        self.switch_tick[s] = -1
        self.gen_tick[s] = tick
        self.sounding[s] = -1
        self.voice[s] = self.no_voice
        self.voice_on[s] = True
        self.voice_tick[s] = self.voice_from[s] = -1
        self.voice_bias[s] = 0.0
        self.set_priors(s, **dict.fromkeys(PRIOR_NAMES, 0.0))
        self.enter(s)
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
        form.reset(self, s, seed)
        # slot 0 holds the opening state as an already-played event to rewind to
        self.ev_tick[s, 0] = tick
        self.ev_tok[s, 0] = self.tokens[s]
        self.ev_voice[s, 0] = self.no_voice
        self.snap_h[s, 0] = 0
        self.snap_c[s, 0] = 0
        self.head[s] = self.tail[s] = self.ready[s] = 1
        self.active[s] = True

    def close(self, s):
        self.active[s] = False

    def enter(self, s):
        """Session s's music starts with notes, at once: from its next step no time
        shift and no note-off is sampled until every voice that may play has sounded a
        note-on (one line: its first note; ``engine.sampler.voices``).  The server calls
        this on an immediate change; ``open`` and a theme's phrase start do too."""
        self.entry[s] = True
        self.entered[s] = False
        form.drop_plan(self, s)  # every voice is the model's until the next bar line

    def advance(self, target, max_steps=1 << 30, max_batch=0, first=0):
        """Generate for every active session until its look-ahead reaches ``target[s]``
        (ticks), its ring is full, or ``max_steps`` batched steps were taken; returns
        the number of steps taken.  A session with ``candidates[s] > 0`` is stepped only
        while it has forced tokens (the drafter's continuation) to feed.
        max_batch: at most this many sessions a step (0: all that need one), taken from
        slot ``first`` on, cyclically, so that a caller holding a lock for a step holds
        it for that many sessions' work; the others wait for the next call.  A negative
        ``target[s]`` leaves session s alone, its bookkeeping too (a bar's plan, a voice or
        theme due at its tick), until a call asks for it."""
        return kernel.advance(
            target, max_steps, max_batch, first, self.active, self.candidates, self.idx,
            self.tokens, self.controls, self.ctl_base, self.next_ctl, self.switch_tick,
            self.gen_tick, self.sounding, self.entry, self.temperature, self.rng, self.force,
            self.force_n, self.force_i, self.ev_tick, self.ev_tok, self.ev_aux, self.snap_h,
            self.snap_c, self.head, self.tail, self.h, self.c, self.w.tok_table, self.w.w0,
            self.w.w_rest, self.w.b_rest, self.w.w_out, self.w.b_out, self.xbuf, self.gates,
            self.logits, self.w.kinds, self.w.values, self.phase0, self.tpb, self.max_note_ticks,
            self.pc_bias, self.next_bias, self.w.vocab.offsets[TIME_SHIFT],
            self.w.vocab.offsets[NOTE_OFF], self.w.vocab.max_shift, self._theme, self._voices,
            self._form)

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
        tick = kernel.rewind(s, tick, self.gen_tick, self.sounding, self.ev_tick, self.ev_tok,
                             self.ev_aux, self.snap_h, self.snap_c, self.head, self.tail, self.h,
                             self.c, self.tokens, self.force_n, self.force_i, self.w.kinds,
                             self.w.values, self.ring, self.voice, self.ev_voice)
        self.ready[s] = min(self.ready[s], self.tail[s])
        self.drafted[s] = False
        form.after_rewind(self, s)
        if self.theme_from[s] >= 0 and self.theme_from[s] >= tick and self.theme_tick[s] < 0:
            # the theme had begun after what is kept: it is due again when the music gets
            # there, from the bias (and the table) before it
            self.zbias[s] = self.prev_zbias[s]
            self.pos_slot[s] = 1 - self.pos_slot[s]
            self.pos0[s] = self.prev_pos0[s]
            self.pos_cur[s] = -1
            self.theme_tick[s] = self.theme_from[s]
            self.reset_due[s] = False
        if self.voice_from[s] >= 0 and self.voice_from[s] >= tick:
            # a voice switch had been made after what is kept: the mask before it is back,
            # and the switch is due again when the music gets there (unless a newer one
            # is pending: it replaced this one)
            self.voice_on[s] = self.prev_on[s]
            if self.voice_tick[s] < 0:
                self.voice_tick[s] = self.voice_from[s]  # next_on still holds its mask
            self.voice_from[s] = -1
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

    def release_all(self, s, held=None):
        """Note-off tokens for every pitch session s has sounding at its generated end, in
        every voice (see ``voice_offs``; ``held``: only the notes a copy of
        ``sounding[s]`` taken earlier shows)."""
        return self.voice_offs(s, range(len(self.voice_on[s])), held)

    # the ensemble's voices: what a voice owes when cut, and the mask (engine.sampler.voices)
    voice_offs = voices.voice_offs
    set_voices = voices.set_voices
    voices_at = voices.voices_at
    # form: repetition and recall of bars (engine.sampler.form)
    set_form = form.set_form
    plan = form.plan
    lead_at = form.lead_at
    lead_log = form.lead_log
