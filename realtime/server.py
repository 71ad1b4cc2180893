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
import contextlib
import functools
import gc
import logging
import threading
from dataclasses import dataclass, replace

from engine import DEFAULT_ENSEMBLE
from engine.ensemble import TEMPERATURE
from engine.errors import InvalidMessage, OstinatoError, ServerError
from engine.generate import check, needs_critic
from engine.sampler.critic import DRAFT_BEATS
from engine.sampler.weights import Weights
from engine.sampler.theme import ThemeEncoder

from realtime import protocol
from realtime.commands import LOST, VERSION, Commands
from realtime.engine import FAR, Engine
from realtime.keys import ServerKeys, require_keys
from realtime.mood import DEFAULT_REPETITION, DEFAULT_TONALITY
from realtime.outputs import MultiPort
from realtime.sessions import Sessions
from realtime.stingers import Cooldown
from realtime.timing import MONOTONIC
from realtime.warmup import CacheCold, compile_apart, compiles_refused, kernel_counts

log = logging.getLogger("ostinato.server")


@dataclass(frozen=True)
class ServerConfig:
    model: str = str(DEFAULT_ENSEMBLE)  # what `ostinato serve` plays
    control: str = protocol.CONTROL_ADDRESS
    max_sessions: int = 16
    lookahead_ms: float = 60.0
    beats_per_bar: int = 4
    temperature: float = TEMPERATURE
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
    ``listen_first``: start in two steps, as ``ostinato serve`` does, so that a game gets
    answers from the first second of a first start: the constructor checks the settings,
    reads the states file and binds and serves the control socket, and returns; ``load``
    then loads the model and compiles the kernels (the 20 s of a cold numba cache), and
    ``start`` starts the music.  Until then ``hello`` says ``"ready": false`` and every
    other valid request is answered at once as accepted (``WarmUp``) and applied, in the
    order it came, by ``start``, before the first note.  Without it (the default, what
    tests that drive the music by hand build) the constructor loads the model too, and the
    control socket opens in ``start``.
    """

    def __init__(self, cfg=ServerConfig(), ports=(), control=True, clock=MONOTONIC,
                 listen_first=False):
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
        self._tonality = float(tonality)
        check(critic_k=cfg.critic_k, critic_pick=cfg.critic_pick, critic_beats=cfg.critic_beats)
        needs_critic(cfg.critic_k, cfg.critic)
        # what the control side validates against, known without the model
        self.presets, self.stingers = protocol.load_states(cfg.states)
        self.port = MultiPort(ports) if isinstance(ports, (list, tuple)) else ports
        self.weights = self.engine = self.music = self.commands = None  # ``load``'s
        self.control = None  # the ControlServer, once started
        self._use_control = control
        self._warming = None  # the WarmUp while the control socket answers before ``start``
        if listen_first:
            self._warming = WarmUp()
            self._serve_control()
        else:
            self.load()

    def load(self):
        """Load the model, build the parts and compile (or load from numba's cache) every
        kernel: the long part of a start, 19-40 s on a machine whose cache is cold.

        The constructor calls it, unless ``listen_first``: then the caller does, after the
        constructor has bound the control socket (``start`` does, if nobody has), and a
        kernel missing from numba's cache is never compiled here: at the first one the
        load stops, a child process compiles them all (``realtime.warmup``), and the
        load starts again, from the cache; so the control thread answers throughout and
        this process never holds the compiler's garbage.  Should that child fail, they
        compile here (``_full_collections_deferred``).  Should loading fail, the control
        socket closes before the error goes on."""
        if self.music is not None:
            return
        try:
            if self._warming is None:
                self._load()
                return
            try:
                with compiles_refused():  # a warm cache: loaded in a moment, no child
                    self._load()
                return
            except CacheCold as cold:  # what was built so far is dropped
                log.info("numba's cache is cold (%s): compiling in a child process", cold)
            apart = compile_apart(self.cfg)
            if apart.ok:
                log.info("kernels compiled in a child process in %.1f s (%d compiled, %d "
                         "already cached)", apart.seconds, apart.compiled, apart.loaded)
                before = kernel_counts()[1]
                self._load()
                compiled = kernel_counts()[1] - before
                if compiled:  # numba's cache did not keep what the child wrote
                    log.warning("%d kernel(s) compiled in the server process after the child "
                                "compiled them: numba's cache (NUMBA_CACHE_DIR or __pycache__) "
                                "did not keep them", compiled)
            else:
                log.warning("compiling the kernels in a child process failed (%s); compiling "
                            "them in the server process", apart.why)
                with _full_collections_deferred():
                    self._load()
        except BaseException:
            self._close_control()
            raise

    def _load(self):
        cfg = self.cfg
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
        # themes: a theme model (engine.theme.model) encodes them, in numba; states.toml names some
        self.themes = protocol.load_themes(cfg.states)
        self.voices = protocol.load_voices(cfg.states)  # an ensemble model's defaults
        theme = ThemeEncoder(cfg.model) if "theme" in self.weights.meta else None
        for name, p in self.presets.items():
            if p.get("critic") and not cfg.critic:
                raise InvalidMessage(f"preset {name!r} sets critic = {p['critic']}, which needs "
                                     "a critic: start with --critic PATH, or set it to 0",
                                     field=f"presets.{name}.critic", allowed="0 without a critic")
        engine = Engine(self.port, self.clock, int(cfg.spin_us * 1000), cfg.command_timeout_s)
        cooldown = Cooldown(self.stingers, self.weights.vocab.ticks_per_beat)
        music = Sessions(cfg, self.weights, engine, self.presets, theme, self._tonality,
                         cooldown, self.voices)
        engine.drive(music)
        self.commands = Commands(music, self.port, self.stingers, self.themes)
        music.open("main", None, self.presets.get(cfg.initial_state))
        music.warm()
        # published last: a control thread that sees ``music`` sees every part
        self.engine, self.music = engine, music

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
    @property
    def ready(self):
        """True once the music is composed by compiled kernels and requests apply at once
        (False while a ``listen_first`` server warms up, until ``start``)."""
        return self.music is not None and self._warming is None

    def start(self):
        """Start the music (loading the model first if ``load`` has not): every session
        afresh from now, then the requests accepted while warming up, in order, then the
        engine's threads; the control socket serves from here on, if it did not yet."""
        self.load()
        now = self.clock.now_ns()
        self.music.restart(now)  # compiling took a while: begin from now
        self.engine.deliver(now)  # the start and the sessions' markers, before start() returns
        if self._warming is not None:
            # nothing is composed yet: a change lands on the first tick, before the first note
            self._warming.drain(self._apply, self._report_failed)
            self._warming = None
        self.engine.start()
        if self.control is None:
            self._serve_control()
        return self

    def _report_failed(self, msg, exc):
        """A ``request_failed`` event for ``msg``, accepted while warming up, which failed
        with ``exc`` when the music started: its client was told it was accepted, and
        learns here that it did not apply (in order with the other markers)."""
        self.engine.apply(functools.partial(
            self.music.marker, "request_failed", None, id=msg.get("id"),
            code=protocol.error_code(exc), message=str(exc), **{"for": msg["type"]}),
            False, "request_failed")

    def _serve_control(self):
        """Bind and serve the control socket (``cfg.control``), if the server has one."""
        if not self._use_control:
            return
        from realtime.control import ControlServer  # zmq's sockets: not for control=False

        self.control = ControlServer(self.handle, self.cfg.control,
                                     presets=self.presets, stingers=self.stingers,
                                     on_client_lost=self.client_lost, keys=self.keys,
                                     max_bytes=self.cfg.max_request_bytes)
        self.control.start()

    def _close_control(self):
        if self.control:
            control, self.control = self.control, None
            control.close()

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
        if self._warming is not None:  # closed before its music started
            self._warming.drop()
        try:
            if self.engine is not None:
                self.engine.stop()
                self.engine.join()
                self.music.close_all(self.clock.now_ns())
                self.engine.deliver(FAR)  # what is queued for its time: a lead at most
        except Exception:  # noqa: BLE001 - the outputs end their own notes as they close
            log.exception("releasing the notes at close failed; the outputs end their own")
        finally:
            try:
                self.port.close()
            finally:
                self._close_control()

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
        (``Engine.apply``); return the reply fields (``"ready": true`` in hello's).  While
        a ``listen_first`` server warms up, ``WarmUp.hold`` answers instead."""
        if msg["type"] == "ping":
            return {}
        warming = self._warming
        if warming is not None:
            held = warming.hold(msg)
            if held is not None:
                return held
        reply = self._apply(msg)
        return dict(reply, ready=True) if msg["type"] == "hello" else reply

    def _apply(self, msg):
        """Apply ``msg`` under the engine's locks; returns the handler's reply fields."""
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
        While the server shuts down nothing is lost: its sessions all end with it; while
        it warms up the loss waits its turn behind that client's requests (``WarmUp``)."""
        warming = self._warming
        try:
            if warming is not None and warming.hold({"type": LOST, "client": client}) is not None:
                return
        except ServerError:  # closed before its music started: nothing is left to close
            return
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


@contextlib.contextmanager
def _full_collections_deferred():
    """While a ``listen_first`` server compiles its kernels itself (its child process
    could not): the garbage collector's young collections only, and one full collection
    at the end, before the music starts.

    Compiling makes millions of objects, and each full collection walks every one that
    survived so far with the GIL held: a cold start measured about 20 of them, of up to
    0.9 s, and the control thread could not answer through them; without them the same
    compile also took 35 s instead of 55-61 s (2 shared cores).  The one collection at
    the end (1.4 s with the GIL on a cold start) frees the compiler's longer-lived garbage
    (1.15 M objects, 104 MB counted shallow), which would otherwise be walked by a full
    collection while the music plays."""
    threshold = gc.get_threshold()
    gc.set_threshold(threshold[0], threshold[1], 2**31 - 1)  # the oldest generation: never
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.collect()


class WarmUp:
    """What the control socket answers while a ``listen_first`` server warms up.

    Validation needs no model (the control thread checks every request against the
    protocol's table and the states file's names before ``hold`` sees it), so a bad
    request gets its error at once.  ``hold`` answers ``hello`` from what is known
    without the model, and every other request (and a lost client's ``_lost``) is
    answered accepted and kept, to be applied in the order it came by ``drain`` when
    the music starts.  Its lock orders the two: a request either joins the queue before
    ``drain`` empties it or, after, is applied as on a ready server.
    """

    ACCEPTED = dict(ready=False, accepted=True,
                    takes_effect="when the music starts: the server is warming up")

    def __init__(self):
        self._lock = threading.Lock()
        self._queue = []
        self._open = True
        self._dropped = False

    def hold(self, msg):
        """The reply fields for ``msg`` while warming up, or None once the server is
        ready (the caller then applies it); the shutting-down error once it closed
        without starting."""
        with self._lock:
            if self._dropped:
                raise _shutting_down()
            if not self._open:
                return None
            if msg["type"] == "hello":
                return dict(server="ostinato", version=VERSION, ready=False)
            self._queue.append(msg)
            return dict(self.ACCEPTED)

    def drain(self, apply, failed):
        """Apply every held request, in order, with ``apply(msg)``; from here on ``hold``
        answers None.  A request that fails now (an unknown session, say: its client
        was told it was accepted) is logged with its id and type and handed to
        ``failed(msg, exc)`` (the server publishes ``request_failed``)."""
        with self._lock:
            self._open = False
            queue, self._queue = self._queue, []
            for msg in queue:
                try:
                    apply(msg)
                except Exception as exc:  # noqa: BLE001 - the others still apply
                    log.error("request id=%r (%s), accepted while warming up, failed when the "
                              "music started: %s", msg.get("id"), msg["type"], exc,
                              exc_info=not isinstance(exc, OstinatoError))
                    if msg["type"] == LOST:  # the server's own, not a client's request
                        continue
                    try:
                        failed(msg, exc)
                    except Exception:  # noqa: BLE001 - the log line above stands
                        log.exception("the request_failed event for id=%r was not published",
                                      msg.get("id"))

    def drop(self):
        """The server closes before its music started: the held requests never apply."""
        with self._lock:
            self._open, self._dropped = False, True
            queue, self._queue = self._queue, []
        if queue:
            log.warning("%d request(s) accepted while warming up were not applied: the "
                        "server closed first", len(queue))


def _shutting_down():
    """The error a request gets once the server has begun to stop."""
    return ServerError("the server is shutting down; the request was not applied")
