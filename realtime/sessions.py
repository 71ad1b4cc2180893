"""The music the server plays: its sessions, and what changing one does to the model.

``Sessions`` owns the numba runtime (``engine.sampler.generator.Runtime``, the composer
of every session), the sequencer that times its events, the critic's drafter, the theme
encoder and the MIDI clock.  The engine's threads drive it (``generate``, ``play``,
``silence``: ``realtime.engine``); the commands change it (``realtime.commands``) through
its session mechanics: open, close, reset, change at a transition point
(``realtime.transition``), tempo, stingers (``realtime.stingers``), themes and their blends
(``realtime.themes``), pause and start.  All of it runs under the engine's
locks; what it sends goes through the engine's queue, in order.
"""
from dataclasses import replace

import numpy as np

from engine.controls import KEY_NAMES, MODES, parse_key
from engine.ensemble import CENTRE, DRUMS
from engine.notes import DRUM_CHANNEL
from engine.errors import InvalidMessage
from engine.sampler.critic import Drafter
from engine.sampler.generator import Runtime
from engine.vocab import NOTE_OFF

from realtime import protocol, themes
from realtime.engine import FAR, IDLE_LOOK_NS
from realtime.layers import STINGER_CHANNEL, Voicing, names
from realtime.midiclock import MidiClock
from realtime.mood import (DEFAULT_MAX_NOTE_BEATS, Mood, bpm_of, density_of, describe, form_of,
                           max_note_beats_of, mode_of, register_of, repetition_of, tonality_of,
                           velocity_of)
from realtime.sequencer import Sequencer
from realtime.sync import Sync
from realtime.transition import change

MODEL_REQUESTS_KEPT = 256  # memoised model requests (a few KB each); then forgotten at once


class Session:
    """A named stream of music (a player, or a layer of one game's score)."""

    def __init__(self, name, slot, mood, owner=None, state=None, critic=None):
        self.name, self.slot, self.mood, self.owner = name, slot, mood, owner
        self.state = state  # the preset it was last put in, if any
        self.critic = critic  # drafts the critic judges; None: the server's default
        self.theme = None     # (Motif, variation) it composes from; None: free composition
        self.z = None         # the latent in effect (or being blended to); None: z = 0
        self.theme_mode = None  # the mode the theme was encoded in
        # the theme as replies describe it, and the last tick its statement or a return
        # of it was announced at (``realtime.themes.announce_returns``)
        self.theme_desc, self.theme_heard = None, -1
        # an ensemble's: its voices' settings (``realtime.layers.Layers``) and the voice
        # ids that play (from the next bar line, when a change is pending); one line: None
        self.layers = None
        self.playing = ()


class Sessions:
    """The sessions and the model state they share (``sessions``: name -> Session).

    ``cfg``: the ``ServerConfig``; ``weights``: the loaded model; ``engine``: the
    ``realtime.engine.Engine`` whose queue and clock it uses; ``presets``: the states
    file's; ``theme``: the theme encoder (None: the model has none); ``tonality``: the
    default of sessions that set none (``cfg.repetition`` is the repetition's); ``cooldown``:
    the stingers' (``realtime.stingers.Cooldown``: the commands consult it, a stop or pause
    cancels the starts it drops); ``voices``: the server's voice settings
    (``engine.ensemble.Voice`` by id, states.toml's ``[voices]``), for an ensemble model.
    """

    def __init__(self, cfg, weights, engine, presets, theme, tonality, cooldown, voices=()):
        self.cfg, self.weights, self.engine = cfg, weights, engine
        self.cooldown = cooldown
        self.clock = engine.clock
        self.presets, self.theme, self.tonality = presets, theme, tonality
        self.repetition = float(cfg.repetition)
        self.vocab, self.spec = weights.vocab, weights.spec
        self.tpb = self.vocab.ticks_per_beat
        self.base_register = weights.mean_register
        n = cfg.max_sessions
        self.rt = Runtime(weights, max_sessions=n, max_note_beats=DEFAULT_MAX_NOTE_BEATS)
        nv = self.rt.n_voices
        self.voices = tuple(voices)[:nv] if nv else ()
        self.centre = CENTRE if nv else 0.0  # the tonal-centre prior an ensemble plays at
        self.seq = Sequencer(n, self.tpb, cfg.beats_per_bar, n_voices=max(nv, 1),
                             drum_voice=DRUMS if nv > DRUMS else -2)
        self.sessions = {}
        self.voicing = Voicing(self.rt, self.seq, engine, self.sessions, self.voices,
                               self.tpb * cfg.beats_per_bar)
        # the critic: K drafts of each beat judged by D for sessions with critic K > 0
        self.drafter = None
        if cfg.critic:
            self.drafter = Drafter(self.rt, cfg.critic, cfg.critic_beats, cfg.critic_pick)
        self.midi_clock = MidiClock(self.seq, self.tpb, engine) if cfg.clock else None
        self.sync = Sync(self.seq, engine, n)  # beat, bar, phrase and cue events
        self.state = "playing"
        self.requests = {}  # model requests by their arguments (``model_request``)
        self.blends = {}  # slot -> (session, z from, z to, first tick, last tick, step done, bars)
        self._first = 0  # the slot the generator's next batch begins at
        # a critic session composes a draft ahead: its look-ahead is one draft longer
        self._lead = np.zeros(n, np.int64)
        self._gen_ahead = np.zeros(n, np.int64)
        self._planned = np.zeros(n, np.int64)
        self._targets = np.zeros(n, np.int64)
        self._only = np.zeros(n, np.int64)  # targets that step one session
        self._kinds, self._values = weights.kinds, weights.values
        self._off0 = self.vocab.offsets[NOTE_OFF]
        self._lookahead = int(cfg.lookahead_ms * 1e6)

    def session(self, name):
        """The open session ``name``; InvalidMessage, saying how to open it, if none is."""
        sess = self.sessions.get(name)
        if sess is None:
            raise InvalidMessage(f"session {name!r} is not open; open it with "
                                 f'{{"type": "session", "action": "open", "session": "{name}"}}',
                                 field="session", allowed=sorted(self.sessions))
        return sess

    # -- what the engine's threads call ----------------------------------------------
    def play(self, now):
        """Collect what is due by ``now`` + the spin (+ the outputs' lead): to the outputs
        with a lead it goes now, for the others it is queued for ``Engine.deliver``.
        Under the sending lock.  Returns when the next message is due to be collected (ns)."""
        engine = self.engine
        engine.lead_now = lead = getattr(engine.port, "lead_ns", 0)
        # collected before it is due: only the send is on the deadline
        now += max(engine.ahead, lead)
        n, nxt = self.seq.collect(now, self.rt, self._kinds, self._values)
        engine.send(self.seq, n)
        nxt = int(nxt) if nxt > 0 else now + IDLE_LOOK_NS
        main = self.sessions.get("main")
        if self.state == "playing":
            nxt = min(nxt, self.sync.due(now, self.sessions, self.seq.frozen))
            if self.midi_clock is not None and main is not None:
                nxt = min(nxt, self.midi_clock.pulses(now, main.slot))  # due by now + the spin
        return int(nxt) - lead  # collected that early

    def generate(self, now):
        """Top up the look-ahead by a few batched steps and publish the new events.
        Returns (more to do, when the look-ahead next runs short (ns))."""
        rt, cfg = self.rt, self.cfg
        if self.state != "playing":
            return False, now + IDLE_LOOK_NS
        # a critic session plans as if it were one draft behind, so its look-ahead is a
        # draft longer: its next draft is composed while the last one plays
        np.subtract(rt.gen_tick, self._lead, out=self._gen_ahead)
        pending, wake = self.seq.plan(now, self._lookahead, rt, self._gen_ahead, self._planned)
        np.add(self._planned, self._lead, out=self._targets)
        if self.blends:
            themes.blend(self)
        if pending and self.drafter is not None:
            self.drafter.drive(self._targets, cfg.steps_per_lock)
        if pending and rt.advance(self._targets, cfg.steps_per_lock, cfg.sessions_per_lock,
                                  self._first):
            if cfg.sessions_per_lock:  # the next batch begins where this one went on
                self._first = (self._first + cfg.sessions_per_lock) % len(rt.active)
            themes.announce_returns(self)
            self.engine.woken_by(self.publish())
        return pending, int(wake)

    def publish(self):
        """Publish the events composed so far; returns the first new one's time (ns)."""
        return self.seq.publish(self.rt)

    def silence(self, now):
        """End every note sounding on every output, after a failure in the middle of
        sending: the sequencer's tables are cleared without sending (they may count notes
        whose note-on was never sent, or miss ones whose note-off was not), and each
        output ends what it has sounding by its own count."""
        self.engine.deliver(FAR)  # what was queued for its time goes first: a lead at most
        for sess in self.sessions.values():
            self.seq.release(sess.slot, now, 0.0)  # written, never sent
        self.engine.port.release(now)

    def warm(self):
        """Compile (or load from cache) every numba kernel before the first note."""
        now = self.clock.now_ns()
        s = self.sessions["main"].slot
        self.generate(now)
        if self.drafter is not None:  # one whole draft, judged and committed
            was = int(self.rt.candidates[s])
            self.rt.candidates[s] = 1
            self._only[:] = -1
            self._only[s] = 1 << 62
            self.drafter.drive(self._only, 1 << 20)
            self.rt.candidates[s] = was
        if self.theme is not None:  # the encoder too: the first theme must not wait for it
            self.theme.encode(np.array([self._off0], np.int64))
        self.sync.next[s] = -1  # nothing plays yet: no beat is announced
        self.play(now)
        self.engine.deliver(FAR)
        self.release(s, now)  # nothing sounds yet: sends nothing
        self.rt.rewind(s, -1)
        self.seq.tick_ns(s, 0)
        self.seq.set_tempo(s, 0, self.seq.bpm_at(s, 0), now=now)
        # restart() opens every session afresh, which undoes the rewind and tempo change

    def restart(self, now):
        """Every session afresh from its first tick, played from ``now`` on (as the server
        starts), and the MIDI clock's Start."""
        for sess in self.sessions.values():
            self.reset(sess, now, 0)
        self.transport(0xFA, now)

    def close_all(self, now):
        """Note-offs for everything sounding, and the MIDI clock's Stop (the server closes)."""
        for sess in list(self.sessions.values()):
            self.release(sess.slot, now)
        self.transport(0xFC, now)

    # -- session mechanics -----------------------------------------------------------
    def open(self, name, owner, preset, voices=None, repetition=None):
        """Open session ``name`` for client ``owner`` in ``preset`` (a states.toml preset),
        with the ``voices`` settings of the message on top of the preset's (an ensemble) and
        its ``repetition`` over the preset's (None: the preset's, else the server's)."""
        used = {s.slot for s in self.sessions.values()}
        free = [i for i in range(self.cfg.max_sessions) if i not in used]
        if not free:
            raise InvalidMessage(f"all {self.cfg.max_sessions} sessions are in use",
                                 field="session", allowed=f"at most {self.cfg.max_sessions} open")
        slot = free[0]
        layers = self.voicing.layers(preset, voices)  # refused here, before anything changes
        mood = Mood()
        state = next((k for k, v in self.presets.items() if v is preset), None)
        if preset is not None:
            mood = self.preset_mood(mood, state)
        mood = mood.update(repetition=repetition)
        sess = Session(name, slot, mood, owner, state, preset.get("critic") if preset else None)
        if layers is None:
            channels = [c for c in range(16) if c not in (DRUM_CHANNEL, STINGER_CHANNEL)]
            self.seq.vchan[slot, 0] = channels[slot % len(channels)]
        else:
            sess.layers = self.voicing.own_channels(layers, voices or {})
            sess.playing = sess.layers.playing(mood.intensity, mood.arousal)
        self.seq.rng[slot] = np.uint64(slot + 1 + self.cfg.seed * 7919)
        self.seq.humanise[slot] = self.cfg.humanise
        main = self.sessions.get("main")
        self.sessions[name] = sess
        self._name_sessions()  # before reset, whose markers carry the name
        now = self.clock.now_ns()
        if main is None:
            self.reset(sess, now, 0)
        else:  # join the main session's beat grid at its next beat
            tick = self.seq.boundary(main.slot, now, "beat")
            self.reset(sess, now, tick, int(self.seq.tick_ns(main.slot, tick)))
        self.voicing.apply(sess, now)  # on its beat grid: the programs before its first note
        return sess

    def close(self, sess):
        self.release(sess.slot, self.clock.now_ns())
        self.rt.close(sess.slot)
        self.sync.stop(sess.slot)
        del self.sessions[sess.name]
        self._name_sessions()  # a recording then knows a reopened name is new
        self.voicing.name_voices()

    def close_owned(self, client):
        """Close the sessions that client ``client`` opened (it went away)."""
        for sess in [s for s in self.sessions.values() if s.owner == client]:
            self.close(sess)

    def preset_mood(self, mood, name):
        """The mood preset ``name`` asks for, from ``mood`` (whose key it keeps if it sets none)."""
        p = self.presets[name]
        return Mood(valence=p["valence"], arousal=p["arousal"], intensity=p["intensity"],
                    key=parse_key(p["key"]) if "key" in p else mood.key,
                    mode=MODES.index(p["mode"]) if "mode" in p else None,
                    bpm=p.get("bpm"), register=p.get("register", 0),
                    tonality=p.get("tonality"), max_note_beats=p.get("max_note_beats"),
                    repetition=p.get("repetition"), form=p.get("form"), style=p.get("style"))

    def reset(self, sess, now, tick, t_ns=None):
        """Start the session's music afresh at ``tick``, played at ``t_ns`` (default: a
        tenth of a beat from ``now``, time to generate the first notes)."""
        s, rt, seq = sess.slot, self.rt, self.seq
        bpm = bpm_of(sess.mood)
        ctl, shift, bias = self.model_request(sess.mood)
        rt.open(s, ctl, seed=self.cfg.seed * 1000 + s, temperature=self.cfg.temperature, tick=tick)
        rt.pc_bias[s] = rt.next_bias[s] = bias
        rt.max_note_ticks[s] = self.max_note_ticks(sess.mood)
        self.apply_form(sess)  # open left the session without one
        self.voicing.start(sess)
        themes.stop_blend(self, s)
        if sess.z is not None:  # the music starts afresh from the theme's phrase
            bias, state = self.theme.bias(sess.z, sess.theme[0].bars)
            rt.set_theme(s, bias, state)
        self.apply_critic(sess)
        seq.set_transpose(s, shift)
        seq.anchor(s, float(tick), now + 6e9 / bpm if t_ns is None else t_ns, bpm)
        self.sync.start(s, tick)
        seq.velocity[s] = velocity_of(sess.mood)
        seq.vel_tick[s] = -1
        info = dict(self.describe(sess.mood), critic=self.critic_of(sess))
        extra = {"name": sess.state} if sess.state else {}
        if sess.layers is not None:
            info["voices"] = names(sess.playing)
        self.marker("mood", sess, beat=tick / self.tpb, transition="now", **info, **extra)
        self.marker("tempo", sess, beat=tick / self.tpb, bpm=bpm)
        seq.asap_tick[s] = -1
        seq.frozen[s] = self.state != "playing"
        seq.st_head[s] = seq.st_n[s] = 0

    def release(self, s, now, stingers=True):
        """Note-offs now for what session s sounds (its stingers too, unless told not)."""
        beat = max(0.0, self.seq.ns_tick(s, now) / self.tpb)
        self.engine.send(self.seq, self.seq.release(s, now, beat, stingers))

    def describe(self, mood):
        """What a session in ``mood`` plays, as replies and mood events report it
        (``realtime.mood.describe``, with this server's defaults)."""
        return describe(mood, self.base_register, self.tonality, self.repetition)

    def apply_form(self, sess):
        """The session's repetition and form into the runtime; the sampler follows them
        from the next bar line its music reaches (bars counted from tick 0)."""
        self.rt.set_form(sess.slot, repetition_of(sess.mood, self.repetition),
                         form_of(sess.mood), bar_ticks=self.tpb * self.cfg.beats_per_bar,
                         origin=0)

    def critic_of(self, sess):
        return self.cfg.critic_k if sess.critic is None else sess.critic

    def apply_critic(self, sess):
        """The session's K into the runtime; a critic session composes one draft ahead."""
        s, k = sess.slot, self.critic_of(sess)
        self.rt.candidates[s] = k
        self._lead[s] = self.drafter.ticks if k else 0

    def model_request(self, mood):
        """What the model is asked for ``mood``: (control vector, semitones the sequencer
        transposes its notes by, tonality prior per pitch class in the model's pitch space).

        A key-relative model composes in C at the register less the shift, and the
        sequencer moves its notes to the key asked for, so the register heard is the one
        asked for (``engine.controls.model_key``); an older model is asked for the key
        itself.  The prior is the mode's scale on the tonic the model composes in (and, for
        an ensemble, the tonal-centre prior at ``engine.ensemble.CENTRE``).
        Memoised (a game asks for a few moods again and again; ``Commands.prepare`` fills
        it before the locks); the arrays are read-only, as they are shared."""
        args = (mood.key, mode_of(mood), density_of(mood), register_of(mood, self.base_register),
                tonality_of(mood, self.tonality), self.weights.key_relative, self.centre,
                mood.style)
        made = self.requests.get(args)
        if made is None:
            made = self.spec.request(*args)
            for part in made:
                if isinstance(part, np.ndarray):
                    part.flags.writeable = False
            if len(self.requests) >= MODEL_REQUESTS_KEPT:
                self.requests.clear()
            self.requests[args] = made
        return made

    def t_ns(self, sess, beat):
        """When ``beat`` of ``sess`` plays, on the server's clock (ns; its tempo map now)."""
        return int(self.seq.tick_ns(sess.slot, beat * self.tpb))

    def when_tick(self, sess, when, now, field="transition"):
        """The tick the transition point ``when`` (``protocol.parse_when``: now, beat, bar,
        phrase, bars:N, cue:NAME) names for ``sess`` at ``now``: the first of its grid at or
        after the playhead (a phrase: the form's bars; grids count from bar 0), or the
        cue's (InvalidMessage naming ``field`` when it has none waiting)."""
        unit, n = protocol.parse_when(when)
        s = sess.slot
        if unit == "cue":
            head = self.seq.boundary(s, now, "now")
            return max(self.sync.cue(s, n, head, field), head)
        return self.seq.boundary(s, now, self.grid_ticks(sess, when))

    def grid_ticks(self, sess, when):
        """The step in ticks of the grid the transition point ``when`` lies on for
        ``sess``: 1 for now, a beat, a bar, the form's phrase, N bars; 0 for a cue (on no
        grid)."""
        unit, n = protocol.parse_when(when)
        bar = self.tpb * self.cfg.beats_per_bar
        return {"now": 1, "beat": self.tpb, "bar": bar, "phrase": form_of(sess.mood).bars * bar,
                "bars": n * bar, "cue": 0}[unit]

    def position(self, sess):
        """Where ``sess`` is now: the ``position`` reply's fields.  Paused or stopped, it
        is where its music stopped, and the next downbeat and phrase have no time yet."""
        s, seq, now = sess.slot, self.seq, self.clock.now_ns()
        playing = self.state == "playing"
        tick = max(0.0, seq.ns_tick(s, now)) if playing else float(self.rt.gen_tick[s])
        form = form_of(sess.mood)
        bar, in_bar, phrase, in_phrase = self.sync.position(int(tick), form)
        bar_ticks = self.tpb * self.cfg.beats_per_bar
        ahead = {"downbeat": bar_ticks, "phrase": bar_ticks * form.bars}
        fields = {}
        for what, step in ahead.items():  # the first at or after the playhead
            at = int(-(-tick // step) * step)
            fields[f"next_{what}"] = at / self.tpb
            fields[f"next_{what}_t_ns"] = int(seq.tick_ns(s, at)) if playing else None
        mood = sess.mood
        return dict(beat=tick / self.tpb, bar=bar, beat_in_bar=in_bar, phrase=phrase,
                    bar_in_phrase=in_phrase, phrase_bars=form.bars,
                    bpm=round(float(seq.bpm_at(s, tick)), 3), key=KEY_NAMES[mood.key],
                    mode=MODES[mode_of(mood)], state=sess.state, transport=self.state,
                    t_ns=now, **fields,
                    cues={name: t / self.tpb for t, name in self.sync.waiting(s, tick)})

    def place_cue(self, sess, name, at=None, beat=None):
        """Cue ``name`` at ``beat`` (a beat of the session, ahead of the playhead) or at
        the transition point ``at``; returns its tick."""
        now = self.clock.now_ns()
        s = sess.slot
        if beat is None:
            tick = self.when_tick(sess, at, now, field="at")
        else:
            tick = int(round(beat * self.tpb))
            head = self.seq.ns_tick(s, now)
            if tick <= head:
                raise protocol.reject("out_of_range", f"beat {beat} has played: the session "
                                      f"is at beat {head / self.tpb:.2f}", "beat",
                                      f"a beat after {head / self.tpb:.2f}")
        self.sync.place(s, name, tick)
        return tick

    def max_note_ticks(self, mood):
        return max(1, int(round(max_note_beats_of(mood) * self.tpb)))

    def change(self, sess, mood, unit, what, theme=None, layers=None, lead=None, **extra):
        """Switch ``sess`` to ``mood`` at the transition point ``unit``, and an ensemble to
        ``layers`` (default: its own) at the bar line from there
        (``realtime.transition.change``); returns the reply's fields."""
        return change(self, sess, mood, unit, what, theme, layers, lead, **extra)

    def compose_now(self, s, max_steps=64):
        """Generate session s up to its first new note on this thread, at once: an
        immediate transition should not wait for the generator thread to wake."""
        if self.state != "playing":
            return
        only = self._only
        only[:] = -1
        only[s] = 1 << 62
        d = self.drafter if self.rt.candidates[s] else None
        if d is not None:  # the first note is a draft's: it is composed, judged, then fed
            max_steps += d.ring
        for _ in range(max_steps):
            if not self.rt.entry[s]:
                break
            drafted = d.drive(only, 1) if d is not None else 0
            if not self.rt.advance(only, 1) and not drafted:
                break

    # -- tempo (stingers: realtime.stingers; themes: realtime.themes) -----------------------------------------------------
    def set_tempo(self, sess, bpm, unit, ramp_beats=0.0):
        """Tempo ``bpm`` from the transition point ``unit`` on; returns its tick."""
        sess.mood = replace(sess.mood, bpm=float(bpm))
        now = self.clock.now_ns()
        tick = self.when_tick(sess, unit, now)
        self.seq.set_tempo(sess.slot, tick, bpm, ramp_beats, now=now)
        self.marker("tempo", sess, bpm=bpm, beat=tick / self.tpb)
        return tick

    # -- the transport ---------------------------------------------------------------
    def start(self):
        """Play again: a stopped session afresh on the beat grid it kept, a paused one from
        where it stopped."""
        if self.state == "playing":
            return
        now = self.clock.now_ns()
        # playing before the sessions restart: reset freezes a session opened while halted
        was, self.state = self.state, "playing"
        for sess in self.sessions.values():
            s = sess.slot
            if was == "stopped":  # afresh, on the beat grid it kept
                self.reset(sess, now, self.seq.boundary(s, now, "beat"))
            else:  # paused: the music goes on from where it stopped, a tenth of a beat on
                tick = float(self.rt.gen_tick[s])
                bpm = self.seq.bpm_at(s, tick)
                self.seq.anchor(s, tick, now + 6e9 / bpm, bpm)
                self.seq.asap_tick[s] = -1  # the old timeline's "play at once" is void
                self.seq.frozen[s] = False
        self.transport(0xFA if was == "stopped" else 0xFB, now)
        self.marker("transport", None, state="start")

    def halt(self, state):
        """Stop or pause (``state``): every note ends, the model hears them end."""
        if self.state == state:
            return
        now = self.clock.now_ns()
        cut = {}  # session name -> the tick its music stops at
        for sess in self.sessions.values():
            s = sess.slot
            cut[sess.name] = self.seq.ns_tick(s, now)
            self.release(s, now)  # its stingers not yet begun are dropped: and forgotten
            self.cooldown.cancel(sess, cut[sess.name])
            self.rt.rewind(s, -1)
            self._settle_transpose(s)
            # the model hears its notes end, so it resumes from silence
            self.rt.queue(s, self.rt.release_all(s))
            self.seq.frozen[s] = True
        self.transport(0xFC, now)
        self.state = state
        main = self.sessions.get("main")  # the event's beat: where main's music stopped
        beat = None if main is None else max(0.0, cut["main"]) / self.tpb
        self.marker("transport", main, beat=beat, state="pause" if state == "paused" else "stop")

    def transport(self, status, now):
        """MIDI Start, Continue or Stop, with ``serve --clock``, after the main session."""
        main = self.sessions.get("main")
        if self.midi_clock is not None and main is not None:
            self.midi_clock.transport(status, now, main.slot)

    def _settle_transpose(self, s):
        """After a rewind to the playhead nothing generated is left unplayed, and the model
        composes on with the controls of the last change it reached: from now on its notes
        take that change's transposition.  A change it has not reached yet (its
        ``switch_tick``) stays queued."""
        pending = int(self.rt.switch_tick[s])
        queued = self.seq.pending_transpose(s)
        reached = [v for t, v in queued if pending < 0 or t < pending]
        if reached:
            self.seq.set_transpose(s, reached[-1])
            for t, v in queued:
                if t == pending:
                    self.seq.queue_transpose(s, t, v)

    # -- markers ---------------------------------------------------------------------
    def marker(self, type, sess, beat=None, **fields):
        """A marker to the outputs (``BasePort.publish``), a tempo change to their tempo
        maps too (``BasePort.tempo``), in order with the messages."""
        kw = dict(fields)
        if sess is not None:
            kw["session"] = sess.slot
        if beat is not None:
            kw["beat"] = beat
        self.engine.in_order("publish", type, **kw)
        if type == "tempo" and sess is not None:
            self.engine.in_order("tempo", fields["bpm"], beat, session=sess.slot)

    def _name_sessions(self):
        """Tell the outputs which session has which slot (their events carry names)."""
        self.engine.in_order("sessions", {s.slot: s.name for s in self.sessions.values()})
