"""The server: sessions of generated music driven by game messages (``ostinato serve``).

``Server`` is built of parts, each with one job:

- ``realtime.engine.Engine``: the engine thread that sends each MIDI message at its
  time, the generator thread that composes ahead, their locks and the send queue;
- ``realtime.sessions.Sessions``: the music (the numba composer, the sequencer, the
  sessions, their themes and critic, the MIDI clock) and what changing a session does;
- ``realtime.commands.Commands``: what each message of the protocol does, one handler
  per message type;
- ``realtime.control.ControlServer``: the control socket, whose thread validates
  requests and hands them to ``handle``.

``handle`` applies each request at once under the engine's locks and returns the reply:
a command never waits for the player to wake.  Every time the server reads and every
deadline it waits for go through one clock (``realtime.timing``): a test passes a
``ManualClock`` and drives the music by hand with ``restart``, ``compose`` and ``step``.
"""
import functools
import logging
from dataclasses import dataclass, replace

from engine import DEFAULT_ENSEMBLE
from engine.errors import InvalidMessage, OstinatoError, ServerError
from engine.generate import check, needs_critic
from engine.sampler.critic import DRAFT_BEATS
from engine.sampler.weights import Weights
from engine.sampler.theme import ThemeEncoder

from realtime import protocol
from realtime.commands import LOST, Commands
from realtime.engine import FAR, Engine
from realtime.keys import ServerKeys, require_keys
from realtime.mood import DEFAULT_REPETITION, DEFAULT_TONALITY
from realtime.outputs import MultiPort
from realtime.sessions import Sessions
from realtime.timing import MONOTONIC

log = logging.getLogger("ostinato.server")


@dataclass(frozen=True)
class ServerConfig:
    model: str = str(DEFAULT_ENSEMBLE)  # what `ostinato serve` plays
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
    # sessions a batched step takes at most while holding the lock (0: all), so that a
    # command waits for at most that many sessions' step (~35 us each; a batch of 16
    # costs per session what one of 64 does).  Not the default: 16 did not shorten the
    # acknowledgements at 64 sessions (p99 3.8 ms against 3.6, bench 2026-12-02)
    sessions_per_lock: int = 0
    clock: bool = False        # send MIDI clock (24 ppqn, start/stop) after the main session
    max_request_bytes: int = protocol.MAX_REQUEST_BYTES  # hard cap; larger drops the connection
    server_key: str | None = None   # CurveZMQ: the server's .key_secret file (realtime.keys)
    client_keys: str | None = None  # and the folder of authorised clients' .key files
    tonality: float | None = None   # sessions that set none: None is mood.DEFAULT_TONALITY
    repetition: float = DEFAULT_REPETITION  # sessions that set none (nor their preset)
    critic: str | None = None       # critic (discriminator) file; None: no critic
    critic_k: int = 0               # drafts judged per beat for sessions that set none
    critic_pick: str = "sample"     # engine.sampler.critic.PICKS
    critic_beats: float = DRAFT_BEATS
    # a command that cannot take the engine's locks within this long is withdrawn, never
    # applied late
    command_timeout_s: float = 5.0


class Server:
    """The music engine; ``with Server(cfg, port) as srv: srv.wait()``.

    ``ports``: a ``BasePort`` (or list of them) that receives every MIDI message.
    ``control``: serve the control socket (``cfg.control``) once started.
    ``clock``: what every time is read from and every wait waits on
    (``realtime.timing.MONOTONIC``; a test's ``ManualClock``).
    """

    def __init__(self, cfg=ServerConfig(), ports=(), control=True, clock=MONOTONIC):
        self.cfg = cfg
        self.clock = clock
        # refused here, before the model loads: a remote control address needs keys
        self.keys = ServerKeys.load(cfg.server_key, cfg.client_keys)
        if control:
            require_keys(cfg.control, self.keys, "control")
        tonality = DEFAULT_TONALITY if cfg.tonality is None else cfg.tonality
        if isinstance(tonality, bool) or not isinstance(tonality, (int, float)) or \
                not protocol.TONALITY_RANGE[0] <= tonality <= protocol.TONALITY_RANGE[1]:
            raise InvalidMessage(f"tonality {cfg.tonality!r} is not accepted; allowed: 0.0..1.0 "
                                 "(0 free, 1 strict)", field="tonality", allowed="0.0..1.0")
        lo, hi = protocol.REPETITION_RANGE
        if isinstance(cfg.repetition, bool) or not isinstance(cfg.repetition, (int, float)) or \
                not lo <= cfg.repetition <= hi:
            raise InvalidMessage(f"repetition {cfg.repetition!r} is not accepted; allowed: "
                                 f"{lo}..{hi} (0 through-composed, 1 a loop)", field="repetition",
                                 allowed=f"{lo}..{hi}")
        check(critic_k=cfg.critic_k, critic_pick=cfg.critic_pick, critic_beats=cfg.critic_beats)
        needs_critic(cfg.critic_k, cfg.critic)
        self.weights = Weights(cfg.model)
        if cfg.critic and self.weights.vocab.n_voices:
            # the drafter copies one line's state and the critic judges one line: an
            # ensemble plays without one (sessions asking for critic K > 0 are refused)
            if cfg.critic_k:
                raise InvalidMessage(f"--critic-k {cfg.critic_k} needs a one-line model; "
                                     f"{cfg.model} is an ensemble (its voices are not "
                                     "drafted)", field="critic_k",
                                     allowed="0 with an ensemble model")
            self.cfg = cfg = replace(cfg, critic=None)
        self.presets, self.stingers = protocol.load_states(cfg.states)
        # themes: a theme model (engine.theme.model) encodes them, in numba; states.toml names some
        self.themes = protocol.load_themes(cfg.states)
        self.voices = protocol.load_voices(cfg.states)  # an ensemble model's defaults
        theme = ThemeEncoder(cfg.model) if "theme" in self.weights.meta else None
        for name, p in self.presets.items():
            if p.get("critic") and not cfg.critic:
                raise InvalidMessage(f"preset {name!r} sets critic = {p['critic']}, which needs "
                                     "a critic: start with --critic PATH, or set it to 0",
                                     field=f"presets.{name}.critic", allowed="0 without a critic")
        self.port = MultiPort(ports) if isinstance(ports, (list, tuple)) else ports
        self.engine = Engine(self.port, clock, int(cfg.spin_us * 1000), cfg.command_timeout_s)
        self.music = Sessions(cfg, self.weights, self.engine, self.presets, theme,
                              float(tonality), self.voices)
        self.engine.drive(self.music)
        self.commands = Commands(self.music, self.port, self.stingers, self.themes)
        self.control = None  # the ControlServer, once started
        self._use_control = control
        self.music.open("main", None, self.presets.get(cfg.initial_state))
        self.music.warm()

    # -- what the parts hold ---------------------------------------------------------
    @property
    def sessions(self):
        """The open sessions by name (``realtime.sessions.Session``)."""
        return self.music.sessions

    @property
    def state(self):
        """"playing", "paused" or "stopped"."""
        return self.music.state

    @property
    def events_sent(self):
        return self.engine.events_sent

    @property
    def stopping(self):
        """Set once the server is asked to stop (``wait`` then returns)."""
        return self.engine.stopping

    @property
    def control_address(self):
        return self.control.bound_address if self.control else None

    rt = property(lambda self: self.music.rt, doc="the numba composer of every session")
    seq = property(lambda self: self.music.seq, doc="the sequencer that times its events")
    drafter = property(lambda self: self.music.drafter, doc="the critic's; None without one")
    theme = property(lambda self: self.music.theme, doc="the theme encoder; None without one")
    tonality = property(lambda self: self.music.tonality, doc="sessions' default tonality")
    tpb = property(lambda self: self.music.tpb, doc="ticks per beat")
    base_register = property(lambda self: self.music.base_register)
    vocab = property(lambda self: self.weights.vocab)
    spec = property(lambda self: self.weights.spec)

    # -- lifecycle -------------------------------------------------------------------
    def start(self):
        now = self.clock.now_ns()
        self.music.restart(now)  # compiling took a while: begin from now
        self.engine.deliver(now)  # the start and the sessions' markers, before start() returns
        self.engine.start()
        if self._use_control:
            from realtime.control import ControlServer  # zmq's sockets: not for control=False

            self.control = ControlServer(self.handle, self.cfg.control,
                                         presets=self.presets, stingers=self.stingers,
                                         on_client_lost=self.client_lost, keys=self.keys,
                                         max_bytes=self.cfg.max_request_bytes)
            self.control.start()
        return self

    def stop(self):
        """Ask the server to stop: ``wait`` returns; ``close`` then ends it."""
        self.engine.stop()

    def close(self):
        """Stop: every sounding note gets its note-off, the outputs close (the recording
        is written), then the control socket closes.

        The outputs come before the control socket, and each step runs whatever the one
        before did, so that nothing the control side does (or fails to do) can keep the
        recording from being written.  Requests from now on are refused.
        """
        self.engine.stop()
        try:
            self.engine.join()
            self.music.close_all(self.clock.now_ns())
            self.engine.deliver(FAR)  # what is queued for its time: a lead at most
        except Exception:  # noqa: BLE001 - the outputs end their own notes as they close
            log.exception("releasing the notes at close failed; the outputs end their own")
        finally:
            try:
                self.port.close()
            finally:
                if self.control:
                    control, self.control = self.control, None
                    control.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()
        return False

    def wait(self):
        """Block until interrupted (Ctrl-C or SIGTERM) or stopped."""
        while not self.stopping.is_set():
            self.stopping.wait(0.5)

    # -- the control side ------------------------------------------------------------
    def handle(self, msg):
        """Control-thread entry: apply the validated ``msg`` now, under the engine's locks
        (``Engine.apply``); return the reply fields."""
        if msg["type"] == "ping":
            return {}
        if self.stopping.is_set():
            raise _shutting_down()
        self.commands.prepare(msg)  # the pure work, before the locks
        return self.engine.apply(functools.partial(self.commands.dispatch, msg),
                                 msg.get("transition") == "now", msg["type"], msg.get("id"))

    def call(self, type, **fields):
        """Run a message from Python (the demo, tests): same validation as the wire."""
        msg = protocol.validate(dict(type=type, **fields), tuple(self.presets), tuple(self.stingers))
        return self.handle(msg)

    def client_lost(self, client):
        """The control socket's ``on_client_lost``: close the sessions ``client`` opened.
        While the server shuts down nothing is lost: its sessions all end with it."""
        if self.stopping.is_set():
            return
        try:
            self.handle({"type": LOST, "client": client})
        except OstinatoError as exc:  # the engine stalled (or began to stop): logged
            if not self.stopping.is_set():
                log.warning("the sessions of a lost client were not closed: %s", exc)

    # -- driving the music by hand (tests, benchmarks: a server not started) ---------
    def restart(self, now):
        """Every session afresh from ``now``, as ``start`` does, without the threads."""
        self.music.restart(now)

    def compose(self, now):
        """One batch of the generator thread's steps at ``now``; True while a look-ahead
        is still short."""
        with self.engine.lock:
            return bool(self.music.generate(now)[0])

    def step(self, now):
        """What the threads do by ``now``, on this thread: compose until every look-ahead
        is full, then send what is due, each message at its time."""
        with self.engine.lock:
            self.music.publish()
            while self.music.generate(now)[0]:
                pass
        with self.engine.play_lock:
            self.music.play(now)
        self.engine.deliver(FAR)


def _shutting_down():
    """The error a request gets once the server has begun to stop."""
    return ServerError("the server is shutting down; the request was not applied")
