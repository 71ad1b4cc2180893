"""What each message does: the server's commands, sessions and transitions.

``Commands`` is the part of ``realtime.server.Server`` that gives the protocol its
meaning (``realtime/protocol.py`` says what a message may hold; this says what it does):
a mood, state, key or tempo change at its transition point, stingers, themes and their
blends, pause/stop/start, opening and closing sessions.  Every ``_on_<type>`` runs under
the engine's locks (``Server.handle``) and returns the reply's fields; what it sends
joins the player's queue (``Server._send``, ``Server._marker``).
"""
import time
from dataclasses import replace

import numpy as np

from engine.controls import KEY_NAMES, MODES, parse_key
from engine.errors import InvalidMessage
from engine.motif import from_notes

from realtime import protocol
from engine.sampler.critic import MAX_CANDIDATES
from realtime.mood import (Mood, bpm_of, density_of, describe, max_note_beats_of, mode_of, register_of,
                   tonality_of, velocity_of)
from engine.sampler.theme import latent, slerp

VERSION = "0.1.0"
STINGER_CHANNEL = 15
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


class Commands:
    """The protocol's semantics, mixed into ``Server`` (which owns the state they change)."""

    def _dispatch(self, msg):
        fn = getattr(self, "_on_" + msg["type"].lstrip("_"))
        return fn(msg) or {}

    def _session(self, msg):
        name = msg.get("session", "main")
        sess = self.sessions.get(name)
        if sess is None:
            raise InvalidMessage(f"session {name!r} is not open; open it with "
                                 f'{{"type": "session", "action": "open", "session": "{name}"}}',
                                 field="session", allowed=sorted(self.sessions))
        return sess

    def _on_hello(self, msg):
        d = self.drafter
        critic = dict(loaded=d is not None, max=MAX_CANDIDATES,
                      **(dict(pick=d.pick, draft_beats=d.beats, prefix=d.prefix) if d else {}))
        return dict(server="ostinato", version=VERSION, sessions=sorted(self.sessions),
                    tonality=self.tonality,  # the default; mood replies give each session's
                    critic=self.cfg.critic_k,  # likewise
                    capabilities=dict(transitions=["now", "beat", "bar"], critic=critic,
                                      themes=dict(loaded=self.theme is not None,
                                                  names=sorted(self.themes)),
                                      max_sessions=self.cfg.max_sessions,
                                      events_ahead_ms=self._events_ahead_ms(),
                                      ticks_per_beat=self.tpb, model=self.weights.meta.get("config"),
                                      outputs=[getattr(p, "name", "?") for p in
                                               getattr(self.port, "ports", [self.port])]))

    def _events_ahead_ms(self):
        """How early the event stream publishes notes (0: at their time)."""
        ports = getattr(self.port, "ports", [self.port])
        return max((p.lead_ns for p in ports if getattr(p, "name", "") == "zmq"),
                   default=0) / 1e6

    def _prepare(self, msg):
        """Before the engine's locks: the model request a mood, state or key message will
        make (pure work, memoised by ``_model_request``), so that under the locks it is a
        lookup.  Computed from the session's mood as it is now; should another command
        change it first, the request is made again under the locks.  Never raises: a
        message the handler refuses is refused there, under the locks."""
        if msg["type"] not in ("mood", "state", "key"):
            return
        sess = self.sessions.get(msg.get("session", "main"))
        if sess is None:
            return
        try:
            self._model_request(self._next_mood(sess, msg))
        except Exception:  # noqa: BLE001 - refused under the locks, with its error
            pass

    def _next_mood(self, sess, msg):
        """The mood a mood, state or key message asks of ``sess`` (changes nothing)."""
        kind = msg["type"]
        if kind == "state":
            return self._preset_mood(sess.mood, msg["name"]).update(tonality=msg.get("tonality"))
        if kind == "key":
            mood = replace(sess.mood, key=parse_key(msg["key"])).update(tonality=msg.get("tonality"))
            return replace(mood, mode=MODES.index(msg["mode"])) if msg.get("mode") else mood
        fields = {k: msg.get(k) for k in ("valence", "arousal", "intensity", "tonality")}
        mood = sess.mood.update(**fields)
        if msg.get("valence") is not None:
            mood = replace(mood, mode=None)  # valence decides the mode again
        if msg.get("arousal") is not None:
            mood = replace(mood, bpm=None)
        return mood

    def _on_mood(self, msg):
        sess = self._session(msg)
        self._set_critic(sess, msg.get("critic"))
        return self._change(sess, self._next_mood(sess, msg), msg["transition"], "mood")

    def _on_state(self, msg):
        sess = self._session(msg)
        critic = msg.get("critic")
        self._set_critic(sess, self.presets[msg["name"]].get("critic") if critic is None
                         else critic, keep=False)
        return self._change(sess, self._next_mood(sess, msg), msg["transition"], "state",
                            name=msg["name"])

    def _preset_mood(self, mood, name):
        p = self.presets[name]
        mood = Mood(valence=p["valence"], arousal=p["arousal"], intensity=p["intensity"],
                    key=parse_key(p["key"]) if "key" in p else mood.key,
                    mode=MODES.index(p["mode"]) if "mode" in p else None,
                    bpm=p.get("bpm"), register=p.get("register", 0),
                    tonality=p.get("tonality"), max_note_beats=p.get("max_note_beats"))
        return mood

    def _on_key(self, msg):
        sess = self._session(msg)
        self._set_critic(sess, msg.get("critic"))
        return self._change(sess, self._next_mood(sess, msg), msg["transition"], "key")

    def _set_critic(self, sess, k, keep=True):
        """Set the session's ``critic`` K (None: keep it, or with ``keep=False`` go back to
        the server's default); refused, before anything changes, without a critic."""
        if k and self.drafter is None:
            raise protocol.reject("out_of_range", f"critic {k} needs a critic model and this "
                                  "server has none: start it with `ostinato serve --critic "
                                  "PATH`, or send critic 0", "critic",
                                  "0 (this server has no critic: serve --critic PATH)")
        if k is not None or not keep:
            sess.critic = k

    def _critic_of(self, sess):
        return self.cfg.critic_k if sess.critic is None else sess.critic

    def _apply_critic(self, sess):
        """The session's K into the runtime; a critic session composes one draft ahead."""
        s, k = sess.slot, self._critic_of(sess)
        self.rt.candidates[s] = k
        self._lead[s] = self.drafter.ticks if k else 0

    def _on_tempo(self, msg):
        sess = self._session(msg)
        sess.mood = replace(sess.mood, bpm=float(msg["bpm"]))
        now = time.monotonic_ns()
        tick = self.seq.boundary(sess.slot, now, msg["transition"])
        self.seq.set_tempo(sess.slot, tick, msg["bpm"], msg.get("ramp_beats", 0.0))
        self._marker("tempo", sess, bpm=msg["bpm"], beat=tick / self.tpb)
        return dict(beat=tick / self.tpb)

    def _on_stinger(self, msg):
        sess = self._session(msg)
        st = self.stingers[msg["name"]]
        s = sess.slot
        tick = self.seq.boundary(s, time.monotonic_ns(), msg["transition"])
        mood = sess.mood
        mode = MODES[mode_of(mood)]
        # the motif sits in the current key, above the melody's register
        reg = register_of(mood, self.base_register) + 5
        tonic = mood.key + 12 * round((reg - mood.key) / 12)
        pitches = [min(127, max(0, tonic + protocol.degree_to_semitones(d, mode)))
                   for d in st["degrees"]]
        durs = [max(1, round(d * self.tpb)) for d in st["durations"]]
        self.seq.add_stinger(s, tick, pitches, durs, st["velocity"], STINGER_CHANNEL)
        return dict(beat=tick / self.tpb, pitches=pitches)

    def _on_theme(self, msg):
        """Compose from a theme (or go back to free composition): encoded in the session's
        mode, z = (1 - variation) mu; with ``blend_beats`` the latent moves there along a
        great circle, else the theme's phrase starts at the transition."""
        sess = self._session(msg)
        motif = None
        if msg["action"] == "set":
            field = "notes" if msg["notes"] is not None else "name"
            if self.theme is None:
                raise protocol.reject(
                    "out_of_range", "themes need a theme model and this server's model has "
                    "none: start it with `ostinato serve --model theme.npz` (from `ostinato "
                    "theme train`), or send action \"free\"", field,
                    "a server with a theme model (serve --model theme.npz)")
            if msg["name"] is not None:
                motif = self.themes.get(msg["name"])
                if motif is None:
                    raise protocol.reject("bad_choice", f"unknown theme {msg['name']!r}; allowed: "
                                          f"{', '.join(sorted(self.themes)) or 'none (states.toml has no [themes])'}",
                                          "name", sorted(self.themes))
            else:
                motif = from_notes(msg["notes"], max_bars=protocol.MAX_THEME_BARS)
        z = self._theme_latent(sess, motif, msg["variation"])
        blend = msg["blend_beats"]
        unit = msg["transition"]
        if self.theme is None or blend > 0:  # the music goes on as it is: no change to make
            tick = self.seq.boundary(sess.slot, time.monotonic_ns(), unit)
            reply = dict(beat=tick / self.tpb, critic=self._critic_of(sess),
                         **describe(sess.mood, self.base_register, self.tonality))
            if self.theme is not None:  # the latent moves from here, a sixteenth at a time
                z0 = np.zeros(self.theme.z_dim) if sess.z is None else sess.z
                # a conductor model's positions: the new theme's bars (the old one's when
                # the blend goes back to free composition)
                bars = motif.bars if motif is not None else (
                    sess.theme[0].bars if sess.theme is not None else None)
                self._blends[sess.slot] = (sess, z0, z, tick, tick + int(round(blend * self.tpb)),
                                           -1, bars)
        else:
            self._blends.pop(sess.slot, None)
            bias, state = self.theme.bias(z, None if motif is None else motif.bars)
            reply = self._change(sess, sess.mood, unit, "theme",
                                 theme=(bias, state if motif is not None else None))
        sess.theme = None if motif is None else (motif, msg["variation"])
        sess.z = None if motif is None else z
        info = dict(theme=None if motif is None else dict(
            key=f"{KEY_NAMES[motif.tonic]} {MODES[motif.mode]}", bars=motif.bars,
            notes=len(motif.notes), source=msg["name"] or "notes"),
            variation=msg["variation"], blend_beats=blend)
        self._marker("theme", sess, beat=reply["beat"], transition=unit, **info)
        return dict(reply, **info)

    def _theme_latent(self, sess, motif, variation):
        """z for ``motif`` at ``variation`` in the session's mode (None: free, z = 0)."""
        if motif is None or self.theme is None:
            return None if self.theme is None else np.zeros(self.theme.z_dim)
        mode = mode_of(sess.mood)
        sess.theme_mode = mode
        mu, _ = self.theme.encode(motif.tokens(self.vocab, mode))
        return latent(mu, variation)

    def _blend(self):
        """Move each blending session's latent on, a sixteenth of a beat at a time by where
        its music is composed up to (on the generator thread, under its lock)."""
        rt = self.rt
        for s, (sess, z0, z1, t0, t1, done, bars) in list(self._blends.items()):
            step = 0 if rt.gen_tick[s] < t0 else (rt.gen_tick[s] - t0) * 4 // self.tpb + 1
            last = (t1 - t0) * 4 // self.tpb + 1
            step = min(step, last)
            if step <= done:
                continue
            f = min(1.0, step / last)
            rt.set_theme(s, self.theme.bias(slerp(z0, z1, f), bars)[0])
            if f >= 1.0:
                del self._blends[s]
            else:
                self._blends[s] = (sess, z0, z1, t0, t1, step, bars)

    def _on_start(self, msg):
        if self.state == "playing":
            return dict(state=self.state)
        now = time.monotonic_ns()
        # playing before the sessions restart: _reset freezes a session opened while halted
        was, self.state = self.state, "playing"
        for sess in self.sessions.values():
            s = sess.slot
            if was == "stopped":  # afresh, on the beat grid it kept
                self._reset(sess, now, self.seq.boundary(s, now, "beat"))
            else:  # paused: the music goes on from where it stopped, a tenth of a beat on
                tick = float(self.rt.gen_tick[s])
                bpm = self.seq.bpm_at(s, tick)
                self.seq.anchor(s, tick, now + 6e9 / bpm, bpm)
                self.seq.asap_tick[s] = -1  # the old timeline's "play at once" is void
                self.seq.frozen[s] = False
        self._transport(0xFA if was == "stopped" else 0xFB, now)
        self._marker("transport", None, state="start")
        return dict(state=self.state)

    def _on_stop(self, msg):
        return self._halt("stopped")

    def _on_pause(self, msg):
        return self._halt("paused")

    def _halt(self, state):
        if self.state == state:
            return dict(state=state)
        now = time.monotonic_ns()
        for sess in self.sessions.values():
            s = sess.slot
            self._release(s, now)
            self.rt.rewind(s, -1)
            self._settle_transpose(s)
            # the model hears its notes end, so it resumes from silence
            self.rt.queue(s, self.rt.release_all(s))
            self.seq.frozen[s] = True
        self._transport(0xFC, now)
        self.state = state
        self._marker("transport", None, state="pause" if state == "paused" else "stop")
        return dict(state=state)

    def _on_session(self, msg):
        name = msg.get("session", "main")
        if msg["action"] == "open":
            if name in self.sessions:
                raise InvalidMessage(f"session {name!r} is already open", field="session",
                                     allowed="a name not in " + ", ".join(sorted(self.sessions)))
            sess = self._open_session(name, msg.get("client"),
                                      self.presets.get(msg.get("state") or self.cfg.initial_state))
            return dict(session=name, channel=int(self.seq.channel[sess.slot]))
        sess = self._session(msg)
        self._close_session(sess)
        return dict(session=name)

    def _on_lost(self, msg):
        for sess in [s for s in self.sessions.values() if s.owner == msg["client"]]:
            self._close_session(sess)

    # -- session mechanics -----------------------------------------------------------
    def _open_session(self, name, owner, preset):
        used = {s.slot for s in self.sessions.values()}
        free = [i for i in range(self.cfg.max_sessions) if i not in used]
        if not free:
            raise InvalidMessage(f"all {self.cfg.max_sessions} sessions are in use",
                                 field="session", allowed=f"at most {self.cfg.max_sessions} open")
        slot = free[0]
        mood = Mood()
        if preset is not None:
            mood = self._preset_mood(mood, next(k for k, v in self.presets.items() if v is preset))
        state = next((k for k, v in self.presets.items() if v is preset), None)
        sess = Session(name, slot, mood, owner, state, preset.get("critic") if preset else None)
        channels = [c for c in range(16) if c not in (9, STINGER_CHANNEL)]
        self.seq.channel[slot] = channels[slot % len(channels)]
        self.seq.rng[slot] = np.uint64(slot + 1 + self.cfg.seed * 7919)
        self.seq.humanise[slot] = self.cfg.humanise
        main = self.sessions.get("main")
        self.sessions[name] = sess
        self._name_sessions()  # before _reset, whose markers carry the name
        now = time.monotonic_ns()
        if main is None:
            self._reset(sess, now, 0)
        else:  # join the main session's beat grid at its next beat
            tick = self.seq.boundary(main.slot, now, "beat")
            self._reset(sess, now, tick, int(self.seq.tick_ns(main.slot, tick)))
        return sess

    def _reset(self, sess, now, tick, t_ns=None):
        """Start the session's music afresh at ``tick``, played at ``t_ns`` (default: a
        tenth of a beat from ``now``, time to generate the first notes)."""
        s = sess.slot
        bpm = bpm_of(sess.mood)
        ctl, shift, bias = self._model_request(sess.mood)
        self.rt.open(s, ctl, seed=self.cfg.seed * 1000 + s, temperature=self.cfg.temperature,
                     tick=tick)
        self.rt.pc_bias[s] = self.rt.next_bias[s] = bias
        self.rt.max_note_ticks[s] = self._max_note_ticks(sess.mood)
        self._blends.pop(s, None)
        if sess.z is not None:  # the music starts afresh from the theme's phrase
            bias, state = self.theme.bias(sess.z, sess.theme[0].bars)
            self.rt.set_theme(s, bias, state)
        self._apply_critic(sess)
        self.seq.set_transpose(s, shift)
        self.seq.anchor(s, float(tick), now + 6e9 / bpm if t_ns is None else t_ns, bpm)
        self.seq.velocity[s] = velocity_of(sess.mood)
        self.seq.vel_tick[s] = -1
        info = dict(describe(sess.mood, self.base_register, self.tonality),
                    critic=self._critic_of(sess))
        extra = {"name": sess.state} if sess.state else {}
        self._marker("mood", sess, beat=tick / self.tpb, transition="now", **info, **extra)
        self._marker("tempo", sess, beat=tick / self.tpb, bpm=bpm)
        self.seq.asap_tick[s] = -1
        self.seq.frozen[s] = self.state != "playing"
        self.seq.st_head[s] = self.seq.st_n[s] = 0

    def _close_session(self, sess):
        self._release(sess.slot, time.monotonic_ns())
        self.rt.close(sess.slot)
        del self.sessions[sess.name]
        self._name_sessions()  # a recording then knows a reopened name is new

    def _model_request(self, mood):
        """What the model is asked for ``mood``: (control vector, semitones the sequencer
        transposes its notes by, tonality prior per pitch class in the model's pitch space).

        A key-relative model composes in C at the register less the shift, and the
        sequencer moves its notes to the key asked for, so the register heard is the one
        asked for (``engine.controls.model_key``); an older model is asked for the key
        itself.  The prior is the mode's scale on the tonic the model composes in.
        Memoised (a game asks for a few moods again and again; ``_prepare`` fills it
        before the locks); the arrays are read-only, as they are shared."""
        args = (mood.key, mode_of(mood), density_of(mood), register_of(mood, self.base_register),
                tonality_of(mood, self.tonality), self.weights.key_relative)
        made = self._requests.get(args)
        if made is None:
            made = self.spec.request(*args)
            for part in made:
                if isinstance(part, np.ndarray):
                    part.flags.writeable = False
            if len(self._requests) >= MODEL_REQUESTS_KEPT:
                self._requests.clear()
            self._requests[args] = made
        return made

    def _max_note_ticks(self, mood):
        return max(1, int(round(max_note_beats_of(mood) * self.tpb)))

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

    def _change(self, sess, mood, unit, what, theme=None, **extra):
        """Switch a session to ``mood`` at the transition point ``unit``; ``theme``
        (``Runtime.theme_at``'s bias and state) takes effect there too.  A session that
        composes from a theme and changes mode has it encoded again in the new mode."""
        s = sess.slot
        old_bpm = bpm_of(sess.mood)
        sess.mood = mood
        if theme is None and sess.theme is not None and mode_of(mood) != sess.theme_mode:
            sess.z = self._theme_latent(sess, *sess.theme)
            # the same phrase goes on, re-keyed
            theme = (self.theme.bias(sess.z, sess.theme[0].bars)[0], None)
            self._blends.pop(s, None)
        now = time.monotonic_ns()
        ctl, shift, bias = self._model_request(mood)
        self.rt.max_note_ticks[s] = self._max_note_ticks(mood)  # a guard: at once
        # a drafted continuation not yet fed was composed under the old settings: from
        # here the session goes on as without a critic, drafting anew where it is
        self.rt.drop_draft(s)
        self._apply_critic(sess)
        if unit == "now":
            tick = self.seq.boundary(s, now, "now")
            self.rt.rewind(s, -1)  # everything not yet played is regenerated
            ending = self.rt.release_all(s)
            self._release(s, now, stingers=False)  # the old music stops at once
            self.rt.queue(s, self.rt.shifts_to(s, tick))
            self.rt.ctl_base[s] = ctl
            self.rt.pc_bias[s] = bias
            self.rt.switch_tick[s] = -1
            self.seq.set_transpose(s, shift)  # nothing unplayed is left of the old key
            self.rt.entry[s] = True  # the new music starts with a note, at once
            if theme is not None:
                self.rt.theme_at(s, tick, *theme)
            self.seq.asap_tick[s] = tick
            self.seq.asap_ns[s] = now
            self._compose_now(s)
            # the model hears the old notes end just after the new one starts: each fed
            # token is a step, and these need not delay the first note (a critic
            # session's draft goes only as far as that note: it drafts on after them)
            self.rt.drop_draft(s)
            self.rt.queue(s, [t for t in ending if self.rt.sounding[s, t - self._off0] >= 0])
        else:
            tick = self.seq.boundary(s, now, unit)
            # a change the model has not reached yet is replaced by this one (one pending
            # switch per session), and so is its transposition
            unreached = int(self.rt.switch_tick[s])
            if self.rt.gen_tick[s] >= tick:
                # composed again from the transition tick: notes at that tick are the new
                # music's, so that they take its transposition (collect switches by tick)
                self.rt.rewind(s, tick - 1)
            if self.rt.gen_tick[s] >= tick:  # held there by events already played
                self.rt.ctl_base[s] = ctl
                self.rt.pc_bias[s] = bias
                self.rt.switch_tick[s] = -1
            else:
                self.rt.next_ctl[s] = ctl
                self.rt.next_bias[s] = bias
                self.rt.switch_tick[s] = tick
            self.seq.queue_transpose(s, tick, shift, drop_from=unreached if unreached >= 0 else None)
            if theme is not None:
                self.rt.theme_at(s, tick, *theme)
        if unit == "now":
            self.seq.velocity[s] = velocity_of(mood)
            self.seq.vel_tick[s] = -1
        else:  # louder or softer from the transition point, not before
            self.seq.next_vel[s] = velocity_of(mood)
            self.seq.vel_tick[s] = tick
        if what == "state":
            sess.state = extra.get("name")
        if bpm_of(mood) != old_bpm:
            self.seq.set_tempo(s, tick, bpm_of(mood), 0.0)
            self._marker("tempo", sess, beat=tick / self.tpb, bpm=bpm_of(mood))
        info = dict(describe(mood, self.base_register, self.tonality), critic=self._critic_of(sess))
        self._marker("mood", sess, beat=tick / self.tpb, transition=unit, **info, **extra)
        return dict(beat=tick / self.tpb, **info)

    def _marker(self, type, sess, beat=None, **fields):
        """A marker to the outputs (``BasePort.publish``), a tempo change to their tempo
        maps too (``BasePort.tempo``), in order with the messages."""
        kw = dict(fields)
        if sess is not None:
            kw["session"] = sess.slot
        if beat is not None:
            kw["beat"] = beat
        self._in_order("publish", type, **kw)
        if type == "tempo" and sess is not None:
            self._in_order("tempo", fields["bpm"], beat, session=sess.slot)

    def _name_sessions(self):
        """Tell the outputs which session has which slot (their events carry names)."""
        self._in_order("sessions", {s.slot: s.name for s in self.sessions.values()})

