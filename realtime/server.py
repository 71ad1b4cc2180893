"""The server: sessions of generated music driven by game messages (``ostinato serve``).

Threads: the control thread (``realtime.control``) validates requests and hands them
to ``handle``, which applies each at once under the engine's locks and returns the
reply: a command never waits for the player to wake.

The engine thread plays: under the sending lock it asks the numba sequencer which MIDI
messages are due (``_play``) and queues them; then, without it, it sends each at
its time (``_deliver``) and sleeps to absolute monotonic deadlines (an event wait that
commands and new urgent events cut short, then a spin for the last fraction of a
millisecond inside a ``nogil`` kernel, ``realtime.timing``: a virtual machine can wake
a sleeping thread late, and a spin in Python would hold the GIL).  Only this thread
sends to the outputs that take messages at their time, so a command's note-offs and
markers join the same queue, in order.  An output that schedules by time itself
(native JACK, ``BasePort.lead_ns``) gets each message that lead early, from whichever
thread holds the sending lock.
The generator thread composes: it keeps each session's look-ahead filled with the
numba LSTM, which releases the GIL, so on two cores a step never delays a send.
They share the event rings without a lock on the playing side: the generator writes
an event, then publishes it (``ready``); the player reads only published events.
Everything else the generator touches is changed only by commands, which hold its
lock too.
"""
import argparse
import collections
import contextlib
import functools
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, replace

import numpy as np

from engine import DEFAULT_MODEL
from engine.controls import KEY_NAMES, MODES, parse_key
from engine.errors import InvalidMessage, OstinatoError, ServerError
from engine.generate import add_critic_arguments, check, critic_path, needs_critic
from engine.motif import from_notes
from engine.vocab import NOTE_OFF

from . import protocol
from .critic import DRAFT_BEATS, MAX_CANDIDATES, Drafter
from .generator import Runtime, Weights
from .keys import ServerKeys, check_serve, is_loopback_host, require_keys
from .mood import (DEFAULT_MAX_NOTE_BEATS, DEFAULT_TONALITY, Mood, bpm_of, density_of, describe,
                   max_note_beats_of, mode_of, register_of, tonality_of, velocity_of)
from .ports import MultiPort
from .sequencer import Sequencer, collect, plan, publish, release
from .theme import ThemeEncoder, latent, slerp
from .timing import Waiter, fine_timer_slack

log = logging.getLogger("ostinato.server")

CLOSE_JOIN_S = 5.0        # close() waits this long for each thread before closing the outputs
COMMAND_TIMEOUT_S = 5.0   # a command that cannot take the engine's locks by then is withdrawn
FAULT_LIMIT = 3           # a thread failing this often ...
FAULT_WINDOW_S = 10.0     # ... within this long shuts the server down instead of going on

VERSION = "0.1.0"
STINGER_CHANNEL = 15


@dataclass(frozen=True)
class ServerConfig:
    model: str = str(DEFAULT_MODEL)
    control: str = protocol.CONTROL_ADDRESS
    max_sessions: int = 16
    lookahead_ms: float = 60.0
    beats_per_bar: int = 4
    temperature: float = 0.95
    seed: int = 0
    humanise: float = 6.0      # velocity jitter, +- this much
    states: str | None = None  # presets file; default: $OSTINATO_STATES or the shipped one
    initial_state: str = "explore"
    spin_us: float = 1000.0    # wake this long before a deadline and spin the rest
    steps_per_lock: int = 1    # batched generator steps between looks at the commands
    clock: bool = False        # send MIDI clock (24 ppqn, start/stop) after the main session
    max_request_bytes: int = protocol.MAX_REQUEST_BYTES  # hard cap; larger drops the connection
    server_key: str | None = None   # CurveZMQ: the server's .key_secret file (realtime.keys)
    client_keys: str | None = None  # and the folder of authorised clients' .key files
    tonality: float | None = None   # sessions that set none: None is mood.DEFAULT_TONALITY
    critic: str | None = None       # critic (discriminator) file; None: no critic
    critic_k: int = 0               # drafts judged per beat for sessions that set none
    critic_pick: str = "sample"     # realtime.critic.PICKS
    critic_beats: float = DRAFT_BEATS


class Session:
    """A named stream of music (a player, or a layer of one game's score)."""

    def __init__(self, name, slot, mood, owner=None, state=None, critic=None):
        self.name, self.slot, self.mood, self.owner = name, slot, mood, owner
        self.state = state  # the preset it was last put in, if any
        self.critic = critic  # drafts the critic judges; None: the server's default
        self.theme = None     # (Motif, variation) it composes from; None: free composition
        self.z = None         # the latent in effect (or being blended to); None: z = 0
        self.theme_mode = None  # the mode the theme was encoded in


class Server:
    """The music engine; ``with Server(cfg, port) as srv: srv.wait()``.

    ``port``: a ``BasePort`` (or list of them) that receives every MIDI message.
    """

    def __init__(self, cfg=ServerConfig(), ports=(), control=True):
        self.cfg = cfg
        # refused here, before the model loads: a remote control address needs keys
        self.keys = ServerKeys.load(cfg.server_key, cfg.client_keys)
        if control:
            require_keys(cfg.control, self.keys, "control")
        self.tonality = DEFAULT_TONALITY if cfg.tonality is None else cfg.tonality
        if isinstance(self.tonality, bool) or not isinstance(self.tonality, (int, float)) or \
                not protocol.TONALITY_RANGE[0] <= self.tonality <= protocol.TONALITY_RANGE[1]:
            raise InvalidMessage(f"tonality {cfg.tonality!r} is not accepted; allowed: 0.0..1.0 "
                                 "(0 free, 1 strict)", field="tonality", allowed="0.0..1.0")
        self.tonality = float(self.tonality)
        check(critic_k=cfg.critic_k, critic_pick=cfg.critic_pick, critic_beats=cfg.critic_beats)
        needs_critic(cfg.critic_k, cfg.critic)
        self.weights = Weights(cfg.model)
        self.vocab, self.spec = self.weights.vocab, self.weights.spec
        self.tpb = self.vocab.ticks_per_beat
        self.rt = Runtime(self.weights, max_sessions=cfg.max_sessions,
                          max_note_beats=DEFAULT_MAX_NOTE_BEATS)
        self.seq = Sequencer(cfg.max_sessions, self.tpb, cfg.beats_per_bar)
        self.presets, self.stingers = protocol.load_states(cfg.states)
        # themes: a theme model (engine.theme) encodes them, in numba; states.toml names some
        self.themes = protocol.load_themes(cfg.states)
        self.theme = ThemeEncoder(cfg.model) if "theme" in self.weights.meta else None
        self._blends = {}  # slot -> (session, z from, z to, first tick, last tick, step done)
        # the critic: K drafts of each beat judged by D for sessions with critic K > 0
        self.drafter = None
        if cfg.critic:
            self.drafter = Drafter(self.rt, cfg.critic, cfg.critic_beats, cfg.critic_pick)
        for name, p in self.presets.items():
            if p.get("critic") and self.drafter is None:
                raise InvalidMessage(f"preset {name!r} sets critic = {p['critic']}, which needs "
                                     "a critic: start with --critic PATH, or set it to 0",
                                     field=f"presets.{name}.critic", allowed="0 without a critic")
        # a critic session composes a draft ahead: its look-ahead is one draft longer
        self._lead = np.zeros(cfg.max_sessions, np.int64)
        self._gen_ahead = np.zeros(cfg.max_sessions, np.int64)
        self._planned = np.zeros(cfg.max_sessions, np.int64)
        if isinstance(ports, (list, tuple)):
            ports = MultiPort(ports)
        self.port = ports
        self.sessions = {}
        self.state = "playing"
        self.events_sent = 0
        self._last_t = 0  # the stamp of the last MIDI message sent: see _send
        # (t_ns, send, args) still to go to the outputs without a lead, each at its time,
        # in order: queued under the lock (``_emit``, ``_in_order``), sent by the player
        # without it (``_deliver``)
        self._later = collections.deque()
        self._lead_now = 0  # the lead the outputs asked for at the player's last look
        self._waiter = Waiter()  # the engine thread's (and close()'s, after it stopped)
        self._idle_waiter = Waiter()  # handle()'s while the engine thread is not running
        self._wake = threading.Event()       # the player: commands or an urgent event
        self._gen_wake = threading.Event()   # the generator: commands changed its work
        # Two locks, as the work is shared: the generator's state (one step or one command
        # at a time) and the sequencer's sending tables (one look by the player or one
        # command).  The player never waits for a generator step; a command takes both,
        # this one first.
        self._lock = threading.Lock()
        self._play_lock = threading.Lock()
        self._waiting = 0                    # commands waiting for the lock
        self._waiting_lock = threading.Lock()
        self._faulted = threading.Event()    # the generator failed: the player ends the notes
        self._deadline = 0                   # when the player next wakes (ns)
        self._stop = threading.Event()
        self._thread = self._gen_thread = None
        self._control = None
        self._use_control = control
        self._targets = np.zeros(cfg.max_sessions, np.int64)
        self._only = np.zeros(cfg.max_sessions, np.int64)  # targets that step one session
        self._kinds, self._values = self.weights.kinds, self.weights.values
        self._off0 = self.vocab.offsets[NOTE_OFF]
        self._lookahead = int(cfg.lookahead_ms * 1e6)
        self._spin = int(cfg.spin_us * 1000)
        self._pulse = 0          # next MIDI clock pulse, in 24ths of a beat of "main"
        self.base_register = self.weights.mean_register
        self._open_session("main", None, self.presets.get(cfg.initial_state))
        self._warm()

    # -- lifecycle -------------------------------------------------------------------
    def _warm(self):
        """Compile (or load from cache) every numba kernel before the first note."""
        now = time.monotonic_ns()
        s = self.sessions["main"].slot
        self._generate(now)
        if self.drafter is not None:  # one whole draft, judged and committed
            was = int(self.rt.candidates[s])
            self.rt.candidates[s] = 1
            self._only[:] = -1
            self._only[s] = 1 << 62
            self.drafter.drive(self._only, 1 << 20)
            self.rt.candidates[s] = was
        if self.theme is not None:  # the encoder too: the first theme must not wait for it
            self.theme.encode(np.array([self.vocab.offsets[NOTE_OFF]], np.int64))
        self._play(now)
        self._deliver(1 << 62)
        self._release(s, now)  # nothing sounds yet: sends nothing
        self.rt.rewind(s, -1)
        self.seq.tick_ns(s, 0)
        self.seq.set_tempo(s, 0, self.seq.bpm_at(s, 0))
        # start() opens every session afresh, which undoes the rewind and tempo change

    def start(self):
        # a thread that computes in Python must hand the GIL back within 0.5 ms, not 5 ms
        sys.setswitchinterval(min(sys.getswitchinterval(), 0.0005))
        now = time.monotonic_ns()
        for sess in self.sessions.values():  # compiling took a while: begin from now
            self._reset(sess, now, 0)
        self._transport(0xFA, now)
        self._deliver(now)  # the start and the sessions' markers, before start() returns
        self._gen_thread = threading.Thread(target=self._gen_loop, name="ostinato-generator",
                                            daemon=True)
        self._gen_thread.start()
        self._thread = threading.Thread(target=self._loop, name="ostinato-engine", daemon=True)
        self._thread.start()
        if self._use_control:
            from .control import ControlServer

            self._control = ControlServer(self.handle, self.cfg.control,
                                          presets=self.presets, stingers=self.stingers,
                                          on_client_lost=self._client_lost, keys=self.keys,
                                          max_bytes=self.cfg.max_request_bytes)
            self._control.start()
        return self

    @property
    def control_address(self):
        return self._control.bound_address if self._control else None

    def close(self):
        """Stop: every sounding note gets its note-off, the outputs close (the recording
        is written), then the control socket closes.

        The outputs come before the control socket, and each step runs whatever the one
        before did, so that nothing the control side does (or fails to do) can keep the
        recording from being written.  Requests from now on are refused.
        """
        self._stop.set()
        self._wake.set()
        self._gen_wake.set()
        try:
            for thread in (self._thread, self._gen_thread):
                if thread is not None:
                    thread.join(CLOSE_JOIN_S)
                    if thread.is_alive():
                        log.error("%s did not stop within %.0f s; closing the outputs anyway",
                                  thread.name, CLOSE_JOIN_S)
            self._thread = self._gen_thread = None
            now = time.monotonic_ns()
            for sess in list(self.sessions.values()):
                self._release(sess.slot, now)
            self._transport(0xFC, now)
            self._deliver(1 << 62)  # what is queued for its time: a lead at most
        except Exception:  # noqa: BLE001 - the outputs end their own notes as they close
            log.exception("releasing the notes at close failed; the outputs end their own")
        finally:
            try:
                if hasattr(self.port, "close"):
                    self.port.close()
            finally:
                if self._control:
                    control, self._control = self._control, None
                    control.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()
        return False

    def wait(self):
        """Block until interrupted (Ctrl-C or SIGTERM)."""
        while not self._stop.is_set():
            self._stop.wait(0.5)

    # -- the control side ------------------------------------------------------------
    def handle(self, msg):
        """Control-thread entry: apply ``msg`` now, under the engine's locks; return the
        reply fields.

        The generator's lock is held for one step at a time (and the generator stands
        back while a command waits), the sending lock for one look by the player, so a
        command waits at most a step, not for the player to wake.
        What it sends (note-offs, markers) joins the player's queue, and the player and
        the generator are woken to act on it.  A command that cannot take the lock
        within ``COMMAND_TIMEOUT_S`` is withdrawn, never applied late.
        """
        if msg["type"] == "ping":
            return {}
        if self._stop.is_set():
            raise _shutting_down()
        with self._waiting_lock:  # the demo, tests and the control thread may all call
            self._waiting += 1
        try:
            deadline = time.monotonic() + COMMAND_TIMEOUT_S
            got = self._lock.acquire(timeout=COMMAND_TIMEOUT_S)
            if got and not self._play_lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
                self._lock.release()
                got = False
        finally:
            with self._waiting_lock:
                self._waiting -= 1
        if not got:
            log.error("the engine's locks were held for %.0f s; %s (id %r) was not applied",
                      COMMAND_TIMEOUT_S, msg["type"], msg.get("id"))
            raise ServerError(f"the engine was busy for {COMMAND_TIMEOUT_S:.0f} s and did not "
                              f"apply this {msg['type']!r}; send it again")
        try:
            reply = self._dispatch(msg)
            self._publish()
        finally:
            self._play_lock.release()
            self._lock.release()
            self._gen_wake.set()
            if self._thread is None or not self._thread.is_alive():
                self._deliver(1 << 62, self._idle_waiter)  # no player: sent here, at its time
            else:
                self._wake.set()
        return reply

    def call(self, type, **fields):
        """Run a message from Python (the demo, tests): same validation as the wire."""
        msg = protocol.validate(dict(type=type, **fields), tuple(self.presets), tuple(self.stingers))
        return self.handle(msg)

    def _client_lost(self, client):
        try:
            self.handle({"type": "_lost", "client": client})
        except OstinatoError as exc:  # shutting down, or the engine stalled: logged
            log.warning("the sessions of a lost client were not closed: %s", exc)

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

    def _on_mood(self, msg):
        sess = self._session(msg)
        self._set_critic(sess, msg.get("critic"))
        fields = {k: msg.get(k) for k in ("valence", "arousal", "intensity", "tonality")}
        mood = sess.mood.update(**fields)
        if msg.get("valence") is not None:
            mood = replace(mood, mode=None)  # valence decides the mode again
        if msg.get("arousal") is not None:
            mood = replace(mood, bpm=None)
        return self._change(sess, mood, msg["transition"], "mood")

    def _on_state(self, msg):
        sess = self._session(msg)
        critic = msg.get("critic")
        self._set_critic(sess, self.presets[msg["name"]].get("critic") if critic is None
                         else critic, keep=False)
        mood = self._preset_mood(sess.mood, msg["name"]).update(tonality=msg.get("tonality"))
        return self._change(sess, mood, msg["transition"], "state", name=msg["name"])

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
        mood = replace(sess.mood, key=parse_key(msg["key"])).update(tonality=msg.get("tonality"))
        if msg.get("mode"):
            mood = replace(mood, mode=MODES.index(msg["mode"]))
        return self._change(sess, mood, msg["transition"], "key")

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
                self._blends[sess.slot] = (sess, z0, z, tick, tick + int(round(blend * self.tpb)),
                                           -1)
        else:
            self._blends.pop(sess.slot, None)
            bias, state = self.theme.bias(z)
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
        for s, (sess, z0, z1, t0, t1, done) in list(self._blends.items()):
            step = 0 if rt.gen_tick[s] < t0 else (rt.gen_tick[s] - t0) * 4 // self.tpb + 1
            last = (t1 - t0) * 4 // self.tpb + 1
            step = min(step, last)
            if step <= done:
                continue
            f = min(1.0, step / last)
            rt.set_theme(s, self.theme.bias(slerp(z0, z1, f))[0])
            if f >= 1.0:
                del self._blends[s]
            else:
                self._blends[s] = (sess, z0, z1, t0, t1, step)

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
            bias, state = self.theme.bias(sess.z)
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
        itself.  The prior is the mode's scale on the tonic the model composes in."""
        return self.spec.request(mood.key, mode_of(mood), density_of(mood),
                                 register_of(mood, self.base_register),
                                 tonality_of(mood, self.tonality), self.weights.key_relative)

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
            theme = (self.theme.bias(sess.z)[0], None)  # the same phrase goes on, re-keyed
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
        if hasattr(self.port, "publish"):
            kw = dict(fields)
            if sess is not None:
                kw["session"] = sess.slot
            if beat is not None:
                kw["beat"] = beat
            self._in_order("publish", type, **kw)
        if type == "tempo" and hasattr(self.port, "tempo") and sess is not None:
            self._in_order("tempo", fields["bpm"], beat, session=sess.slot)

    def _name_sessions(self):
        """Tell the outputs which session has which slot (their events carry names)."""
        if hasattr(self.port, "sessions"):
            self._in_order("sessions", {s.slot: s.name for s in self.sessions.values()})

    def _in_order(self, method, *args, **kwargs):
        """Call the outputs' ``method`` (publish, tempo, sessions) in order with the
        messages: at once for the outputs with a lead; for the others, queued after the
        messages before it (``_later``), so that a marker or a session's new name never
        overtakes them."""
        port = self.port
        if isinstance(port, MultiPort):
            if port.lead_ns:
                port.call_some(True, method, *args, **kwargs)
                if not port.has_due:
                    return
            due = functools.partial(port.call_some, False if port.lead_ns else None, method,
                                    *args, **kwargs)
        elif method == "sessions":
            due = functools.partial(setattr, port, "sessions", args[0])
        else:
            due = functools.partial(getattr(port, method), *args, **kwargs)
        if not isinstance(port, MultiPort) and port.lead_ns:
            due()
        else:  # stamped as the last message before it: sent right after that one
            self._later.append((self._last_t, due, ()))

    def _transport(self, status, now):
        """MIDI Start (0xFA), Continue (0xFB) or Stop (0xFC), and where the clock goes on
        from: Start restarts it at the main session's next beat, Continue picks up the
        pulse that follows now."""
        main = self.sessions.get("main")
        if not self.cfg.clock or main is None:
            return
        tick = max(0.0, self.seq.ns_tick(main.slot, now))
        if status == 0xFA:
            self._pulse = int(-(-tick // self.tpb)) * 24
        elif status == 0xFB:
            self._pulse = int(tick * 24 / self.tpb) + 1
        self._last_t = max(now, self._last_t)
        self._emit(self._routes(), status, 0, 0, self._last_t, tick / self.tpb, main.slot)

    def _clock(self, now):
        """Send the clock pulses due by ``now``; returns the time of the next one."""
        s = self.sessions["main"].slot
        routes = self._routes()
        while True:
            tick = self._pulse * self.tpb / 24
            t = int(self.seq.tick_ns(s, tick))
            if t > now:
                return t
            self._last_t = t = max(t, self._last_t)  # stamps never go back: see _send
            self._emit(routes, 0xF8, 0, 0, t, tick / self.tpb, s)
            self._pulse += 1

    def _release(self, s, now, stingers=True):
        """Note-offs now for what session s sounds (its stingers too, unless told not)."""
        sq = self.seq
        beat = max(0.0, self.seq.ns_tick(s, now) / self.tpb)
        n = release(s, now, beat, sq.sent_pitch, sq.sent_chan,
                    sq.sent_serial, sq.owner, sq.st_chan, sq.st_head, sq.st_n, sq.out,
                    sq.out_ns, sq.out_beat, 0, stingers)
        self._send(n)

    # -- the engine threads -----------------------------------------------------------
    def _play(self, now):
        """Collect what is due by ``now`` + the spin (+ the outputs' lead): to the outputs
        with a lead it goes now, for the others it is queued for ``_deliver``.  Under the
        sending lock.  Returns when the next message is due to be collected (ns)."""
        sq, rt = self.seq, self.rt
        self._lead_now = lead = getattr(self.port, "lead_ns", 0)
        # collected before it is due: only the send is on the deadline
        now += max(self._spin, lead)
        n, nxt = collect(now, rt.active, rt.ev_tick, rt.ev_tok, rt.head, rt.ready, self._kinds,
                         self._values, sq.seg_tick, sq.seg_ns, sq.bpm0, sq.bpm1, sq.ramp,
                         sq.p_tick, sq.p_bpm, sq.p_ramp, self.tpb, sq.beats_per_bar, sq.channel,
                         sq.transpose, sq.tr_tick, sq.tr_val, sq.tr_n, sq.velocity,
                         sq.next_vel, sq.vel_tick, sq.accent,
                         sq.humanise, sq.asap_tick,
                         sq.asap_ns, sq.frozen, sq.rng, sq.sent_pitch, sq.sent_chan,
                         sq.sent_serial, sq.owner, sq.serial, sq.st_tick, sq.st_on,
                         sq.st_pitch, sq.st_vel, sq.st_head, sq.st_n, sq.st_chan, sq.due,
                         sq.due_st, sq.out, sq.out_ns, sq.out_beat)
        self._send(n)
        nxt = int(nxt) if nxt > 0 else now + 20_000_000
        if self.cfg.clock and self.state == "playing" and "main" in self.sessions:
            nxt = min(nxt, self._clock(now))  # pulses due by now + the spin, on time
        return nxt - lead  # collected that early

    def _generate(self, now):
        """Top up the look-ahead by a few batched steps and publish the new events.
        Returns (more to do, when the look-ahead next runs short (ns))."""
        sq, rt = self.seq, self.rt
        if self.state != "playing":
            return False, now + 20_000_000
        # a critic session plans as if it were one draft behind, so its look-ahead is a
        # draft longer: its next draft is composed while the last one plays
        np.subtract(rt.gen_tick, self._lead, out=self._gen_ahead)
        pending, wake = plan(float(now), float(self._lookahead), rt.active, sq.frozen,
                             self._gen_ahead, rt.head, rt.tail, self._planned, sq.seg_tick,
                             sq.seg_ns, sq.bpm0, sq.bpm1, sq.ramp, sq.p_tick, sq.p_bpm,
                             sq.p_ramp, self.tpb, rt.ring)
        np.add(self._planned, self._lead, out=self._targets)
        if self._blends:
            self._blend()
        if pending and self.drafter is not None:
            self.drafter.drive(self._targets, self.cfg.steps_per_lock)
        if pending and rt.advance(self._targets, self.cfg.steps_per_lock):
            first = self._publish()
            if 0 <= first - self._lead_now < self._deadline:
                self._wake.set()  # due before the player's next look: wake it
        return pending, int(wake)

    def _compose_now(self, s, max_steps=64):
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

    def _publish(self):
        sq, rt = self.seq, self.rt
        return publish(rt.ready, rt.tail, rt.ev_tick, sq.asap_tick, sq.asap_ns, sq.seg_tick,
                       sq.seg_ns, sq.bpm0, sq.bpm1, sq.ramp, sq.p_tick, sq.p_bpm, sq.p_ramp,
                       self.tpb)

    def _send(self, n):
        """Send the first n messages of the output buffer, none before its time (to an
        output with a lead, that lead before it).

        Stamps never go back: a message that comes after one with a later stamp (an
        event the generator published after its time, or a stinger note due before a
        release just sent) is stamped with that later time, the earliest it can sound.
        A consumer that orders by stamp then plays the messages in the order sent.
        """
        if n == 0:
            return
        out, ns, beats = self.seq.out, self.seq.out_ns, self.seq.out_beat
        routes, emit = self._routes(), self._emit
        last = self._last_t
        for i in range(n):
            t = max(int(ns[i]), last)
            emit(routes, int(out[i, 0]), int(out[i, 1]), int(out[i, 2]), t, float(beats[i]),
                 int(out[i, 3]))
            last = t
        self._last_t = last
        self.events_sent += n

    def _routes(self):
        """(send to the outputs with a lead, send to those without): either may be None."""
        port = self.port
        if not getattr(port, "lead_ns", 0):
            return None, port.send
        if isinstance(port, MultiPort):
            return port.send_ahead, (port.send_due if port.has_due else None)
        return port.send, None

    def _emit(self, routes, status, data1, data2, t, beat, session):
        """One message: to the outputs with a lead at once, queued for the others
        (``_deliver`` sends it at ``t``)."""
        ahead, due = routes
        if ahead is not None:
            ahead(status, data1, data2, t, beat, session)
        if due is not None:
            self._later.append((t, due, (status, data1, data2, t, beat, session)))

    def _deliver(self, until, waiter=None):
        """Send what is queued for the outputs without a lead, due by ``until``, each at
        its time.  On the engine thread (``waiter`` its own), without the sending
        lock: a command may queue more meanwhile."""
        later, wait = self._later, (waiter or self._waiter).wait_until
        while later and later[0][0] <= until:
            t, send, args = later.popleft()
            wait(t)
            send(*args)

    def _loop(self):
        """The player: under the lock, collect what is due; without it, send what is
        queued at its time, then sleep until just before the next deadline (the send
        spins the rest of the way).

        An exception here is logged, every note sounding on any output is ended
        (``_silence``) and the music goes on; a thread failing ``FAULT_LIMIT`` times in
        ``FAULT_WINDOW_S`` stops the server instead, which then shuts down cleanly.
        """
        fine_timer_slack()
        far = 1 << 62
        faults = collections.deque()
        while not self._stop.is_set():
            try:
                self._wake.clear()
                if self._faulted.is_set():  # the generator failed: end what sounds
                    self._faulted.clear()
                    with self._lock, self._play_lock:
                        self._silence(time.monotonic_ns())
                # until the deadline is known, any newly published event wakes us
                self._deadline = far
                now = time.monotonic_ns()
                with self._play_lock:
                    deadline = self._play(now)
                self._deliver(now + self._spin)
                later = self._later
                if later:
                    with contextlib.suppress(IndexError):  # the queue is not locked
                        deadline = min(deadline, later[0][0])
                self._deadline = deadline
                wait = deadline - self._spin - time.monotonic_ns()
                if wait > 0:
                    self._wake.wait(wait / 1e9)
            except Exception:  # noqa: BLE001 - the player must not die silently
                self._fault("engine", faults)
                try:
                    with self._lock, self._play_lock:
                        self._silence(time.monotonic_ns())
                except Exception:  # noqa: BLE001
                    log.exception("ending the sounding notes after the failure failed too")

    def _gen_loop(self):
        """The composer: generate while a look-ahead is short, else sleep until one is.

        An exception here is logged and the engine thread (which owns the outputs) is
        asked to end every sounding note; the composing goes on, within ``_loop``'s limit.
        """
        faults = collections.deque()
        while not self._stop.is_set():
            try:
                self._gen_wake.clear()
                with self._lock:
                    now = time.monotonic_ns()
                    pending, wake = self._generate(now)
                if self._waiting:
                    # a lock is not fair: stand back until the waiting commands have run
                    self._gen_wake.wait(0.005)
                elif not pending:
                    self._gen_wake.wait(max(0.0, (wake - time.monotonic_ns()) / 1e9))
            except Exception:  # noqa: BLE001 - the composer must not die silently
                self._fault("generator", faults)
                self._faulted.set()
                self._wake.set()
                self._gen_wake.wait(0.005)  # the player ends the notes before the next step

    def _fault(self, thread, faults):
        """Log the exception being handled on ``thread``; stop the server when that
        thread has failed FAULT_LIMIT times within FAULT_WINDOW_S."""
        now = time.monotonic()
        faults.append(now)
        while faults and faults[0] < now - FAULT_WINDOW_S:
            faults.popleft()
        if len(faults) >= FAULT_LIMIT:
            log.exception("the %s thread failed %d times in %.0f s: the server stops and ends "
                          "every note", thread, len(faults), FAULT_WINDOW_S)
            self._stop.set()
            self._wake.set()
            self._gen_wake.set()
        else:
            log.exception("the %s thread failed; every sounding note is ended and the music "
                          "goes on", thread)

    def _silence(self, now):
        """End every note sounding on every output, after a failure in the middle of
        sending: the sequencer's tables are cleared without sending (they may count notes
        whose note-on was never sent, or miss ones whose note-off was not), and each
        output ends what it has sounding by its own count."""
        sq = self.seq
        self._deliver(1 << 62)  # what was queued for its time goes first: a lead at most
        for sess in self.sessions.values():
            release(sess.slot, now, 0.0, sq.sent_pitch, sq.sent_chan, sq.sent_serial, sq.owner,
                    sq.st_chan, sq.st_head, sq.st_n, sq.out, sq.out_ns, sq.out_beat, 0, True)
        if hasattr(self.port, "release"):
            self.port.release(now)


def _shutting_down():
    """The error a request gets once the server has begun to stop."""
    return ServerError("the server is shutting down; the request was not applied")


# -- the command line ----------------------------------------------------------------
def add_arguments(p):
    p.add_argument("--model", default=str(DEFAULT_MODEL), help="model .npz (default: shipped)")
    p.add_argument("--control", default=protocol.CONTROL_ADDRESS,
                   help=f"ZeroMQ address for game messages (default {protocol.CONTROL_ADDRESS})")
    p.add_argument("--events", default="tcp://127.0.0.1:5556",
                   help="ZeroMQ PUB address of the event stream; 'none' to turn off")
    p.add_argument("--events-ahead", type=float, default=0.0, metavar="MS",
                   help="publish each note up to MS ms before its time (its t_ns says "
                        "when), for clients that schedule it; default 0: at its time")
    p.add_argument("--osc", type=int, default=protocol.OSC_PORT,
                   help=f"UDP port of the OSC endpoint on 127.0.0.1 (default {protocol.OSC_PORT}; "
                        "0 turns it off)")
    p.add_argument("--osc-host", default="127.0.0.1",
                   help="interface of the OSC endpoint (default 127.0.0.1); another one needs "
                        "--osc-allow-remote")
    p.add_argument("--osc-allow-remote", action="store_true",
                   help="let OSC listen on a non-loopback --osc-host: OSC has no authentication, "
                        "so only on a trusted network")
    p.add_argument("--max-request-bytes", type=_request_cap, default=protocol.MAX_REQUEST_BYTES, metavar="N",
                   help=f"hard cap on a control request (default {protocol.MAX_REQUEST_BYTES}): "
                        f"up to it a request over {protocol.MAX_MESSAGE_BYTES} bytes is answered "
                        "too_large, beyond it the connection is dropped")
    p.add_argument("--server-key", default=None, metavar="FILE.key_secret",
                   help="CurveZMQ: the server's secret key (from `ostinato keys`); needed to bind "
                        "--control/--events off loopback, and enforced wherever given")
    p.add_argument("--client-keys", default=None, metavar="DIR",
                   help="CurveZMQ: folder of the public .key files of the clients let in")
    add_midi_arguments(p)
    p.add_argument("--record", default=None, metavar="FILE.mid", help="record to a MIDI file")
    p.add_argument("--audio", action="store_true",
                   help="hear it: FluidSynth (General MIDI) where JACK runs, else the built-in "
                        "synth (see --synth)")
    add_synth_argument(p)
    p.add_argument("--clock", action="store_true",
                   help="send MIDI clock (24 ppqn, start/continue/stop) so a DAW follows the tempo")
    p.add_argument("--show", action="store_true",
                   help="print a status line a second: key, tempo, notes/s, last notes")
    p.add_argument("--state", default="explore", help="preset to start in (default explore)")
    p.add_argument("--states", default=None, help="presets/stingers TOML file")
    p.add_argument("--tonality", type=_tonality, default=None, metavar="T",
                   help=f"tonality prior of sessions that set none: 0 free (the model's own "
                        f"pitches) .. 1 strict (scale notes only); default {DEFAULT_TONALITY}")
    add_critic_arguments(p, "drafts of each beat the critic judges for sessions that set no "
                            "`critic`; 0 plays G alone")
    p.add_argument("--sessions", type=int, default=16, help="most sessions at once")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seconds", type=float, default=None, help="stop after this long")


def _request_cap(text):
    """``--max-request-bytes``: an integer from MAX_MESSAGE_BYTES up (argparse reports others)."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < protocol.MAX_MESSAGE_BYTES:
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed: an integer number of bytes "
                                         f">= {protocol.MAX_MESSAGE_BYTES}")
    return value


def _tonality(text):
    """``--tonality``: a number in 0..1 (argparse reports others)."""
    try:
        value = float(text)
    except ValueError:
        value = None
    lo, hi = protocol.TONALITY_RANGE
    if value is None or not lo <= value <= hi:
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed: a number in {lo}..{hi} "
                                         "(0 free, 1 strict)")
    return value


def add_midi_arguments(p):
    """The virtual MIDI port's options, shared by ``serve`` and ``demo``."""
    p.add_argument("--midi", choices=["virtual", "none"], default="virtual",
                   help="open a virtual MIDI output port a DAW or synth can listen to "
                        "(default), or none")
    p.add_argument("--port-name", default="Ostinato", help="name of the virtual MIDI port")
    p.add_argument("--api", default=None,
                   help="MIDI API: alsa, jack, coremidi, windows_mm (default: $RTMIDI_API, "
                        "else the platform's)")
    p.add_argument("--jack-backend", choices=JACK_BACKENDS, default=None,
                   help="with --api jack: native (default: a JACK client of our own that "
                        "writes each event at its frame) or rtmidi (every event at the start "
                        "of the next period; the baseline); default $OSTINATO_JACK_BACKEND, "
                        "else native")
    p.add_argument("--jack-connect", action="append", default=[], metavar="PORT",
                   help="with the native JACK backend: connect to this JACK MIDI input "
                        "(a name or part of one; repeatable)")


JACK_BACKENDS = ("native", "rtmidi")
SYNTHS = ("auto", "fluidsynth", "builtin")


def add_synth_argument(p):
    p.add_argument("--synth", choices=SYNTHS, default="auto",
                   help="with --audio: fluidsynth (its own JACK client fed by the native "
                        "JACK output: no Python in the audio path), builtin (the numba synth "
                        "through PortAudio), or auto (default): fluidsynth where a JACK "
                        "server runs and fluidsynth and a SoundFont are installed")


def audio_output(args):
    """The ``--audio`` output: FluidSynth or the built-in synth (``--synth``)."""
    import shutil

    from .audio import AudioPort, FluidSynthPort
    from .jack import server_running
    from .synth import default_soundfont

    choice = getattr(args, "synth", "auto")
    if choice == "fluidsynth" or (choice == "auto" and shutil.which("fluidsynth")
                                  and default_soundfont() and server_running()):
        return FluidSynthPort()
    return AudioPort()


def jack_backend(choice=None):
    """'native' or 'rtmidi': ``choice``, else $OSTINATO_JACK_BACKEND, else native."""
    field = "jack_backend"
    if choice is None:
        choice, field = os.environ.get("OSTINATO_JACK_BACKEND", "native"), "OSTINATO_JACK_BACKEND"
    if choice not in JACK_BACKENDS:
        raise InvalidMessage(f"{field} {choice!r} is not a JACK backend; allowed: "
                             f"{', '.join(JACK_BACKENDS)}", field=field,
                             allowed=", ".join(JACK_BACKENDS))
    return choice


def midi_output(args):
    """The virtual MIDI output ``args`` ask for (``add_midi_arguments``): the native JACK
    client where the API is JACK, else rtmidi's."""
    from .ports import JackMidiPort, RtMidiPort, resolve_api

    import rtmidi

    if resolve_api(args.api) == rtmidi.API_UNIX_JACK and \
            jack_backend(getattr(args, "jack_backend", None)) == "native":
        return JackMidiPort(args.port_name, connect=getattr(args, "jack_connect", ()))
    return RtMidiPort(args.port_name, api=args.api)


def open_outputs(args, keys=None):
    """The outputs asked for; one that cannot open is reported in a line and skipped.
    keys: the event stream's CurveZMQ keys (``realtime.keys.ServerKeys``), or None."""
    from .ports import MidiFilePort, ZmqPubPort

    ports, lines = [], []
    tries = []
    if args.midi == "virtual":
        tries.append(("MIDI port", lambda: midi_output(args)))
    if args.events and args.events != "none":
        tries.append(("event stream", lambda: ZmqPubPort(
            args.events, keys=keys, ahead_ms=getattr(args, "events_ahead", 0.0))))
    if args.record:
        tries.append(("recording", lambda: MidiFilePort(args.record)))
    if args.audio:
        tries.append(("audio", lambda: audio_output(args)))
    for label, make in tries:
        try:
            port = make()
        except (OstinatoError, OSError) as exc:
            lines.append(f"  {label}: not available ({exc})")
            continue
        ports.append(port)
        where = getattr(port, "bound_address", None) or getattr(port, "port_name", None) \
            or getattr(port, "path", None) or getattr(port, "name", "")
        lines.append(f"  {label}: {where}")
    return ports, lines


def run(args):
    with _stop_signals() as stopping:
        return _serve(args, stopping)


@contextlib.contextmanager
def _stop_signals():
    """SIGTERM and SIGINT (Ctrl-C) both set the returned list's events instead of killing
    the process or raising KeyboardInterrupt wherever the main thread is: the server
    then leaves its ``with`` block, so every note ends and the recording is written.
    Append the server's stop event once it exists; one set earlier is set at once."""
    events = [threading.Event()]

    def stop(signum, frame):
        for event in events:
            event.set()

    if threading.current_thread() is not threading.main_thread():
        yield events  # only the main thread may set handlers; the caller stops it
        return
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield events
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _serve(args, stopping):
    keys = check_serve(args)  # a remote bind without keys: refused before anything opens
    ports, lines = open_outputs(args, keys)
    cfg = ServerConfig(model=args.model, control=args.control, max_sessions=args.sessions,
                       seed=args.seed, states=args.states, initial_state=args.state,
                       clock=args.clock, server_key=args.server_key, client_keys=args.client_keys,
                       max_request_bytes=args.max_request_bytes, tonality=args.tonality,
                       critic=critic_path(args.critic), critic_k=args.critic_k,
                       critic_pick=args.critic_pick, critic_beats=args.critic_beats)
    t0 = time.monotonic()
    try:
        srv = Server(cfg, ports)
    except BaseException:
        MultiPort(ports).close()
        raise
    stopping.append(srv._stop)
    if stopping[0].is_set():  # a signal came while the model loaded
        srv._stop.set()
    with contextlib.ExitStack() as extra:
        pubs = [p for p in ports if hasattr(p, "publish") and hasattr(p, "bound_address")]
        if args.show and pubs and keys is None:
            from .show import start_show

            # subscribed before the server starts, so it hears the opening key and tempo
            extra.enter_context(start_show(pubs[0].bound_address))
            time.sleep(0.1)  # a SUB socket's connection completes in the background
        elif args.show:
            lines.append("  show: needs the event stream (--events)" if keys is None else
                         "  show: not with --server-key (its subscriber has no client key)")
        extra.enter_context(srv)
        if args.osc:
            from .osc import OscServer

            try:
                osc = extra.enter_context(OscServer(srv.handle, args.osc_host, args.osc,
                                                    presets=srv.presets, stingers=srv.stingers,
                                                    allow_remote=args.osc_allow_remote))
                lines.append(f"  OSC: udp://{args.osc_host}:{osc.port} (/ostinato/mood v a i now, ...)"
                             + ("; no authentication: anyone who reaches it steers the music"
                                if not is_loopback_host(args.osc_host) else ""))
            except (OstinatoError, OSError) as exc:
                lines.append(f"  OSC: not available ({exc})")
        print(f"ostinato serve: ready in {time.monotonic() - t0:.2f} s, model {args.model}")
        print(f"  control: {srv.control_address} (JSON; see PROTOCOL.md)")
        if srv.drafter is not None:
            lines.append(f"  critic: {cfg.critic} ({srv.drafter.pick} of K drafts of "
                         f"{srv.drafter.beats:g} beat(s); sessions' default critic {cfg.critic_k})")
        print("\n".join(lines))
        if keys is not None:
            print(f"  CurveZMQ: only the clients whose keys are in {keys.clients} get in "
                  "(bindings/README.md shows how)")
        else:
            print('  try: python -c "import zmq; s=zmq.Context().socket(zmq.REQ); '
                  f"s.connect('{srv.control_address}'); "
                  "s.send_json({'type':'mood','valence':-0.5,'arousal':0.9,'transition':'now'}); "
                  'print(s.recv_json())"')
        sys.stdout.flush()
        if args.seconds:
            srv._stop.wait(args.seconds)
        else:
            srv.wait()
    print(f"ostinato serve: stopped after {srv.events_sent} MIDI messages, no notes left sounding")
    return 0
