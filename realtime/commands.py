"""What each message does: the protocol's semantics on the server's sessions.

``realtime.protocol`` says what a message may hold; this says what it does.  A
``Commands`` holds the sessions (``realtime.sessions.Sessions``) and the outputs, and
one handler for each message type of the protocol's table (``protocol.MESSAGE_TYPES``),
looked up by name.  Every handler runs under the engine's locks (``Engine.apply``) and
returns the reply's fields; what it sends joins the player's queue.
"""
from dataclasses import asdict, replace

from engine.controls import KEY_NAMES, MODES, parse_key
from engine.errors import InvalidMessage
from engine.motif import from_notes
from engine.sampler.critic import MAX_CANDIDATES

from realtime import protocol
from realtime.mood import form_of, repetition_of
from realtime.protocol.states import load_rules
from realtime.stingers import place as place_stinger, place_notes as place_stinger_notes
from realtime.themes import set_theme

VERSION = "0.1.0"
LOST = "_lost"  # the message the server sends itself when a client goes away


class Commands:
    """The handlers of the protocol's messages, on ``music`` (``Sessions``); ``port``: the
    outputs (``hello`` lists them); ``stingers``, ``themes`` and ``rules`` (its
    ``[[transitions]]``; default: read from ``music.cfg.states``): the states file's."""

    def __init__(self, music, port, stingers, themes, rules=None):
        self.music, self.port = music, port
        self.stingers, self.themes = stingers, themes
        self.rules = load_rules(music.cfg.states) if rules is None else rules
        self.cooldown = music.cooldown  # the sessions' (a stop cancels starts in it)
        self.handlers = {"hello": self.hello, "mood": self.mood, "state": self.state,
                         "tempo": self.tempo, "key": self.key, "stinger": self.stinger,
                         "theme": self.theme, "start": self.start, "stop": self.stop,
                         "pause": self.pause, "session": self.session, "ping": self.ping,
                         "cue": self.cue, "position": self.position}
        missing = set(protocol.MESSAGE_TYPES) ^ set(self.handlers)
        if missing:  # the table and the handlers must name the same messages
            raise RuntimeError(f"messages without a handler or handlers without a message: "
                               f"{sorted(missing)}")
        self.handlers[LOST] = self.lost

    def dispatch(self, msg):
        """Apply a validated message; returns the reply's fields.  A reply that says the
        beat a change takes effect at also says when, on the server's monotonic clock
        (``t_ns``, as the event stream's): a game can start its own work there."""
        reply = self.handlers[msg["type"]](msg) or {}
        if "beat" in reply and "t_ns" not in reply and msg["type"] != "session":
            sess = self.music.sessions.get(msg.get("session", "main"))
            if sess is not None:
                reply["t_ns"] = self.music.t_ns(sess, reply["beat"])
        return reply

    def prepare(self, msg):
        """Before the engine's locks: the model request a mood, state or key message will
        make (pure work, memoised by ``Sessions.model_request``), so that under the locks
        it is a lookup.  Computed from the session's mood as it is now; should another
        command change it first, the request is made again under the locks.  Never
        raises: a message the handler refuses is refused there, under the locks."""
        if msg["type"] not in ("mood", "state", "key"):
            return
        sess = self.music.sessions.get(msg.get("session", "main"))
        if sess is None:
            return
        try:
            self.music.model_request(self._next_mood(sess, msg))
        except Exception:  # noqa: BLE001 - refused under the locks, with its error
            pass

    def _session(self, msg):
        return self.music.session(msg.get("session", "main"))

    # -- the messages ----------------------------------------------------------------
    def ping(self, msg):
        return {}

    def hello(self, msg):
        music = self.music
        d, cfg = music.drafter, music.cfg
        critic = dict(loaded=d is not None, max=MAX_CANDIDATES,
                      **(dict(pick=d.pick, draft_beats=d.beats, prefix=d.prefix) if d else {}))
        ports = getattr(self.port, "ports", [self.port])
        return dict(server="ostinato", version=VERSION, sessions=sorted(music.sessions),
                    tonality=music.tonality,  # the default; mood replies give each session's
                    critic=cfg.critic_k,  # likewise
                    repetition=music.repetition,  # likewise
                    capabilities=dict(transitions=list(protocol.TRANSITIONS) + [
                                          f"bars:{protocol.GRID_BARS[0]}..{protocol.GRID_BARS[1]}",
                                          "cue:NAME"], sync=list(protocol.SYNC_TYPES),
                                      critic=critic,
                                      themes=dict(loaded=music.theme is not None,
                                                  names=sorted(self.themes)),
                                      max_sessions=cfg.max_sessions,
                                      styles=list(music.spec.styles),
                                      events_ahead_ms=self._events_ahead_ms(),
                                      voices=self._voices(),
                                      ticks_per_beat=music.tpb,
                                      model=music.weights.meta.get("config"),
                                      outputs=[getattr(p, "name", "?") for p in ports]))

    def _voices(self):
        """The voices the model plays, with the server's channel and program of each (a
        session's own are in its ``session`` open reply); one line: its melody, on the
        main session's channel."""
        music = self.music
        if not music.voices:
            main = music.sessions.get("main")
            return [dict(name="melody", channel=None if main is None else
                         int(music.seq.vchan[main.slot, 0]), program=None)]
        return [dict(name=v.name, channel=v.channel, program=v.program, enter=v.enter)
                for v in music.voices]

    def _events_ahead_ms(self):
        """How early the event stream publishes notes (0: at their time)."""
        ports = getattr(self.port, "ports", [self.port])
        return max((p.lead_ns for p in ports if getattr(p, "name", "") == "zmq"),
                   default=0) / 1e6

    def _check_style(self, msg):
        """A message's ``style`` is refused, before anything changes, by a model told no
        styles (a preset's is not: it asks the model for what it can, as one line's presets'
        voices do)."""
        if msg.get("style") is not None and not self.music.spec.styles:
            raise protocol.reject("out_of_range", f"style {msg['style']} needs a model told "
                                  "styles and this server's has none (`ostinato train --styles`);"
                                  " leave style out", "style",
                                  "none (this server's model has no styles)")

    def mood(self, msg):
        sess = self._session(msg)
        self._check_style(msg)
        layers = self.music.voicing.layers(None, msg.get("voices"), base=sess.layers)
        self._set_critic(sess, msg.get("critic"))
        return self.music.change(sess, self._next_mood(sess, msg), msg["transition"], "mood",
                                 layers=layers)

    def state(self, msg):
        """A preset: its mood, and for an ensemble its voices (afresh from the server's,
        the preset's then the message's: a preset says which voices it wants).  The
        states file's rule for the pair (from the session's preset to this one) says when
        (unless the message does), how the tempo ramps, the pickup and a bridge stinger."""
        sess = self._session(msg)
        self._check_style(msg)
        preset = self.music.presets[msg["name"]]
        rule = self.rules.rule(sess.state, msg["name"])
        when = msg["transition"] or (rule.when if rule else "bar")
        layers = self.music.voicing.layers(preset, msg.get("voices"))
        critic = msg.get("critic")
        if when.startswith("cue:"):  # refused before anything changes
            self.music.when_tick(sess, when, self.music.clock.now_ns())
        self._set_critic(sess, preset.get("critic") if critic is None else critic, keep=False)
        shape = {} if rule is None else dict(
            ramp_beats=rule.ramp_beats, pickup_beats=0.0 if when == "now" else rule.pickup_beats)
        reply = self.music.change(sess, self._next_mood(sess, msg), when, "state",
                                  layers=layers, name=msg["name"], **shape)
        reply["transition"] = when
        if rule is not None:
            reply["rule"] = rule.where
            if rule.stinger:
                reply["stinger"] = self._stinger(sess, rule.stinger, self.stingers[rule.stinger],
                                                 when)
        return reply

    def key(self, msg):
        sess = self._session(msg)
        self._set_critic(sess, msg.get("critic"))
        return self.music.change(sess, self._next_mood(sess, msg), msg["transition"], "key")

    def _next_mood(self, sess, msg):
        """The mood a mood, state or key message asks of ``sess`` (changes nothing)."""
        kind = msg["type"]
        if kind == "state":
            return self.music.preset_mood(sess.mood, msg["name"]).update(
                tonality=msg.get("tonality"), repetition=msg.get("repetition"),
                style=msg.get("style"))
        if kind == "key":
            mood = replace(sess.mood, key=parse_key(msg["key"])).update(tonality=msg.get("tonality"))
            return replace(mood, mode=MODES.index(msg["mode"])) if msg.get("mode") else mood
        fields = {k: msg.get(k) for k in ("valence", "arousal", "intensity", "tonality",
                                          "repetition", "style")}
        mood = sess.mood.update(**fields)
        if msg.get("valence") is not None:
            mood = replace(mood, mode=None)  # valence decides the mode again
        if msg.get("arousal") is not None:
            mood = replace(mood, bpm=None)
        return mood

    def _set_critic(self, sess, k, keep=True):
        """Set the session's ``critic`` K (None: keep it, or with ``keep=False`` go back to
        the server's default); refused, before anything changes, without a critic."""
        if k and self.music.drafter is None:
            raise protocol.reject("out_of_range", f"critic {k} needs a critic model and this "
                                  "server has none: start it with `ostinato serve --critic "
                                  "PATH`, or send critic 0", "critic",
                                  "0 (this server has no critic: serve --critic PATH)")
        if k is not None or not keep:
            sess.critic = k

    def tempo(self, msg):
        tick = self.music.set_tempo(self._session(msg), msg["bpm"], msg["transition"],
                                    msg.get("ramp_beats", 0.0))
        return dict(beat=tick / self.music.tpb)

    def stinger(self, msg):
        """A stinger by name, or one sent as notes (checked as a theme's are; its
        cooldown and queue policy are the message's), through the cooldown."""
        sess = self._session(msg)
        if msg["name"] is not None:
            return self._stinger(sess, msg["name"], self.stingers[msg["name"]], msg["transition"])
        motif = from_notes(msg["notes"], ticks_per_beat=self.music.tpb,
                           max_bars=protocol.MAX_THEME_BARS)
        policy = {k: msg[k] for k in ("min_interval_beats", "queue")}
        return self._stinger(sess, "notes", motif, msg["transition"], policy)

    def _stinger(self, sess, name, what, when, policy=None):
        """Play stinger ``name`` (a states.toml stinger, or a Motif sent as notes with its
        cooldown ``policy``) at the transition point ``when`` if its cooldown allows
        (``realtime.stingers``); the
        reply's fields: played or not, its beat (a queued one's later), its pitches."""
        music, tpb = self.music, self.music.tpb
        tick = music.when_tick(sess, when, music.clock.now_ns())
        if music.state == "stopped":  # start() begins afresh: nothing queued now would sound
            return dict(name=name, played=False, next_beat=tick / tpb,
                        reason="the music is stopped: stingers play once it starts again")
        decision = self.cooldown.decide(sess, name, tick, music.grid_ticks(sess, when), policy)
        if not decision.play:
            return dict(name=name, played=False, reason=decision.reason,
                        next_beat=decision.at / tpb)
        tick = int(decision.at)
        if isinstance(what, dict):
            pitches = place_stinger(music, sess, what, tick)
        else:
            pitches = place_stinger_notes(music, sess, what, tick)
        music.marker("stinger", sess, beat=tick / tpb, name=name, pitches=pitches)
        reply = dict(name=name, played=True, beat=tick / tpb, pitches=pitches)
        if decision.queued:
            reply.update(queued=True, reason=decision.reason)
        return reply

    def theme(self, msg):
        """Compose from a theme (or go back to free composition): by name from the states
        file, or from the notes given; ``Sessions.set_theme`` does the rest."""
        sess = self._session(msg)
        motif = None
        if msg["action"] == "set":
            field = "notes" if msg["notes"] is not None else "name"
            if msg["name"] is not None:
                motif = self.themes.get(msg["name"])
                if motif is None:
                    names = ", ".join(sorted(self.themes)) or "none (states.toml has no [themes])"
                    raise protocol.reject("bad_choice", f"unknown theme {msg['name']!r}; "
                                          f"allowed: {names}", "name", sorted(self.themes))
            else:
                motif = from_notes(msg["notes"], max_bars=protocol.MAX_THEME_BARS)
            self._within_form(sess, motif, field)
        unit, blend = msg["transition"], msg["blend_beats"]
        reply = set_theme(self.music, sess, motif, msg["variation"], unit, blend)
        info = dict(theme=None if motif is None else dict(
            key=f"{KEY_NAMES[motif.tonic]} {MODES[motif.mode]}", bars=motif.bars,
            notes=len(motif.notes), source=msg["name"] or "notes"),
            variation=msg["variation"], blend_beats=blend)
        sess.theme_desc = info["theme"]
        self.music.marker("theme", sess, beat=reply["beat"], transition=unit, **info)
        return dict(reply, **info)

    @staticmethod
    def _within_form(sess, motif, field):
        """A theme returns through the session's form: it may last at most the form's
        phrase (its ``bars``), else it is refused naming ``field`` (notes or name)."""
        form = form_of(sess.mood)
        if motif.bars > form.bars:
            raise protocol.reject(
                "out_of_range", f"{field}: the theme lasts {motif.bars} bars, longer than the "
                f"session's phrase: its form is {form.shape} in {form.bars} bars (the preset's "
                "`form`)", field, f"a theme of at most {form.bars} bars (the session's form)")

    def start(self, msg):
        self.music.start()
        return dict(state=self.music.state)

    def stop(self, msg):
        self.music.halt("stopped")
        return dict(state=self.music.state)

    def pause(self, msg):
        self.music.halt("paused")
        return dict(state=self.music.state)

    def session(self, msg):
        music, name = self.music, msg.get("session", "main")
        if msg["action"] == "open":
            if name in music.sessions:
                raise InvalidMessage(f"session {name!r} is already open", field="session",
                                     allowed="a name not in " + ", ".join(sorted(music.sessions)))
            sess = music.open(name, msg.get("client"),
                              music.presets.get(msg.get("state") or music.cfg.initial_state),
                              msg.get("voices"), msg.get("repetition"))
            shown = dict(repetition=repetition_of(sess.mood, music.repetition),
                         form=asdict(form_of(sess.mood)))
            if sess.layers is None:
                return dict(session=name, channel=int(music.seq.vchan[sess.slot, 0]), **shown)
            return dict(session=name, channel=sess.layers.voices[0].channel,
                        voices=sess.layers.describe(sess.playing), **shown)
        sess = self._session(msg)
        music.close(sess)
        self.cooldown.forget(sess)
        return dict(session=name)

    def cue(self, msg):
        """Place a cue; the reply says its beat (and ``t_ns``)."""
        sess = self._session(msg)
        tick = self.music.place_cue(sess, msg["name"], msg["at"], msg.get("beat"))
        return dict(name=msg["name"], beat=tick / self.music.tpb)

    def position(self, msg):
        return self.music.position(self._session(msg))

    def lost(self, msg):
        """A client went away: the sessions it opened close."""
        for sess in [s for s in self.music.sessions.values() if s.owner == msg["client"]]:
            self.cooldown.forget(sess)
        self.music.close_owned(msg["client"])

