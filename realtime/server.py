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
import collections
import contextlib
import functools
import logging
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np

from engine import DEFAULT_MODEL

from engine.errors import InvalidMessage, OstinatoError, ServerError
from engine.generate import check, needs_critic
from engine.vocab import NOTE_OFF

from realtime import protocol
from realtime.commands import Commands
from engine.sampler.critic import DRAFT_BEATS, Drafter
from engine.sampler.generator import Runtime, Weights
from realtime.keys import ServerKeys, require_keys
from realtime.midiclock import MidiClock
from realtime.mood import DEFAULT_MAX_NOTE_BEATS, DEFAULT_TONALITY
from realtime.outputs import MultiPort
from realtime.sequencer import Sequencer
from engine.sampler.theme import ThemeEncoder
from realtime.timing import Waiter, fine_timer_slack

log = logging.getLogger("ostinato.server")

CLOSE_JOIN_S = 5.0        # close() waits this long for each thread before closing the outputs
COMMAND_TIMEOUT_S = 5.0   # a command that cannot take the engine's locks by then is withdrawn
FAULT_LIMIT = 3           # a thread failing this often ...
FAULT_WINDOW_S = 10.0     # ... within this long shuts the server down instead of going on



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
    critic: str | None = None       # critic (discriminator) file; None: no critic
    critic_k: int = 0               # drafts judged per beat for sessions that set none
    critic_pick: str = "sample"     # engine.sampler.critic.PICKS
    critic_beats: float = DRAFT_BEATS


class Server(Commands, MidiClock):
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
        # themes: a theme model (engine.theme.vae) encodes them, in numba; states.toml names some
        self.themes = protocol.load_themes(cfg.states)
        self.theme = ThemeEncoder(cfg.model) if "theme" in self.weights.meta else None
        self._blends = {}  # slot -> (session, z from, z to, first tick, last tick, step done)
        self._requests = {}  # model requests by their arguments (Commands._model_request)
        self._first = 0  # the slot the generator's next batch begins at
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
            from realtime.control import ControlServer

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
        self._prepare(msg)  # the pure work, before the locks
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
        playing = self._thread is not None and self._thread.is_alive()
        # a change "now" hands its first note to the outputs with a lead (native JACK)
        # itself, not at the player's wake-up; what goes at its time, and everything else
        # a command makes due, the player sends, so that no reply waits for sending
        urgent = playing and msg.get("transition") == "now"
        try:
            reply = self._dispatch(msg)
            self._publish()
            if urgent:
                self._play(time.monotonic_ns())
        finally:
            self._play_lock.release()
            self._lock.release()
            self._gen_wake.set()
            if not playing:
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

    def _release(self, s, now, stingers=True):
        """Note-offs now for what session s sounds (its stingers too, unless told not)."""
        beat = max(0.0, self.seq.ns_tick(s, now) / self.tpb)
        self._send(self.seq.release(s, now, beat, stingers))

    # -- the engine threads -----------------------------------------------------------
    def _play(self, now):
        """Collect what is due by ``now`` + the spin (+ the outputs' lead): to the outputs
        with a lead it goes now, for the others it is queued for ``_deliver``.  Under the
        sending lock.  Returns when the next message is due to be collected (ns)."""
        self._lead_now = lead = getattr(self.port, "lead_ns", 0)
        # collected before it is due: only the send is on the deadline
        now += max(self._spin, lead)
        n, nxt = self.seq.collect(now, self.rt, self._kinds, self._values)
        self._send(n)
        nxt = int(nxt) if nxt > 0 else now + 20_000_000
        if self.cfg.clock and self.state == "playing" and "main" in self.sessions:
            nxt = min(nxt, self._clock(now))  # pulses due by now + the spin, on time
        return nxt - lead  # collected that early

    def _generate(self, now):
        """Top up the look-ahead by a few batched steps and publish the new events.
        Returns (more to do, when the look-ahead next runs short (ns))."""
        rt = self.rt
        if self.state != "playing":
            return False, now + 20_000_000
        # a critic session plans as if it were one draft behind, so its look-ahead is a
        # draft longer: its next draft is composed while the last one plays
        np.subtract(rt.gen_tick, self._lead, out=self._gen_ahead)
        pending, wake = self.seq.plan(now, self._lookahead, rt, self._gen_ahead, self._planned)
        np.add(self._planned, self._lead, out=self._targets)
        if self._blends:
            self._blend()
        if pending and self.drafter is not None:
            self.drafter.drive(self._targets, self.cfg.steps_per_lock)
        if pending and rt.advance(self._targets, self.cfg.steps_per_lock,
                                  self.cfg.sessions_per_lock, self._first):
            if self.cfg.sessions_per_lock:  # the next batch begins where this one went on
                self._first = (self._first + self.cfg.sessions_per_lock) % len(rt.active)
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
        return self.seq.publish(self.rt)

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
        self._deliver(1 << 62)  # what was queued for its time goes first: a lead at most
        for sess in self.sessions.values():
            self.seq.release(sess.slot, now, 0.0)  # written, never sent
        self.port.release(now)


def _shutting_down():
    """The error a request gets once the server has begun to stop."""
    return ServerError("the server is shutting down; the request was not applied")


# -- the command line ----------------------------------------------------------------
