"""The server's engine: its two threads, their locks and the queue of messages to send.

The engine thread plays: under the sending lock it asks the music which MIDI messages
are due (``Music.play``) and queues them; then, without it, it sends each at its time
(``deliver``) and sleeps to absolute deadlines on the server's clock (an event wait that
commands and new urgent events cut short, then a spin for the last fraction of a
millisecond, ``realtime.timing.Waiter``: a virtual machine can wake a sleeping thread
late, and a spin in Python would hold the GIL).  Only this thread sends to the outputs
that take messages at their time, so a command's note-offs and markers join the same
queue, in order.  An output that schedules by time itself (native JACK,
``BasePort.lead_ns``) gets each message that lead early, from whichever thread holds
the sending lock.

The generator thread composes (``Music.generate``): it keeps each session's look-ahead
filled with the numba LSTM, which releases the GIL, so on two cores a step never delays
a send.  Two locks, as the work is shared: ``lock`` guards the generator's state (one
step or one command at a time), ``play_lock`` the sequencer's sending tables (one look
by the player or one command).  The player never waits for a generator step; a command
takes both, ``lock`` first (``apply``).

The music the threads drive is any object with ``play(now)`` (send what is due; returns
when to look next), ``generate(now)`` (returns (more to do, when to compose next)),
``publish()`` (returns the first newly published event's time) and ``silence(now)``
(end every sounding note after a failure): ``realtime.sessions.Sessions``.
"""
import collections
import contextlib
import functools
import logging
import sys
import threading
import time

from engine.errors import ServerError

from realtime.outputs import MultiPort
from realtime.timing import MONOTONIC, Waiter, fine_timer_slack

log = logging.getLogger("ostinato.server")

FAR = 1 << 62             # a time after every deadline (ns)
IDLE_LOOK_NS = 20_000_000  # with nothing due, the player looks again this soon
STAND_BACK_S = 0.005      # the generator yields this long to waiting commands (real time)
CLOSE_JOIN_S = 5.0        # close() waits this long for each thread before closing the outputs
FAULT_LIMIT = 3           # a thread failing this often ...
FAULT_WINDOW_S = 10.0     # ... within this long shuts the server down instead of going on
PLAY_WINDOW = 64          # the player's looks its margin is taken over ...
MAX_MARGIN_NS = 3_000_000  # ... and the most it wakes early for them


class Engine:
    """Threads, locks and the send queue; ``drive(music)`` names what they play,
    ``start()`` runs them, ``stop()`` ends them.

    ``port``: the outputs (a ``BasePort``, often a ``MultiPort``); ``clock``: the server's
    clock (``realtime.timing``), through which every deadline is read and waited for;
    ``spin_ns``: how long before a deadline the player wakes and spins.

    On the real clock the player also wakes earlier by what collecting and queueing took
    of late (``margin``: the longest of its last ``PLAY_WINDOW`` looks, at most
    ``MAX_MARGIN_NS``), and collects that much further ahead (``ahead``): with 64
    ensemble sessions one beat's 500-odd messages took up to 2 ms to collect and queue,
    so woken 1 ms early it sent them late.
    """

    def __init__(self, port, clock=MONOTONIC, spin_ns=1_000_000, command_timeout_s=5.0):
        self.port = port
        self.clock = clock
        self.spin = spin_ns
        self.margin = 0  # ns: see the class's docstring
        self._looks = collections.deque(maxlen=PLAY_WINDOW)
        self.command_timeout_s = command_timeout_s
        self.music = None
        self.events_sent = 0
        self.lead_now = 0  # the lead the outputs asked for at the player's last look
        self._last_t = 0   # the stamp of the last MIDI message sent: see send
        # (t_ns, send, args) still to go to the outputs without a lead, each at its time,
        # in order: queued under the lock (``emit``, ``in_order``), sent by the player
        # without it (``deliver``)
        self._later = collections.deque()
        self._waiter = Waiter(clock)       # the engine thread's (and close()'s, after it stopped)
        self._idle_waiter = Waiter(clock)  # apply()'s while the engine thread is not running
        self.lock = threading.Lock()
        self.play_lock = threading.Lock()
        self._waiting = 0                  # commands waiting for the locks
        self._waiting_lock = threading.Lock()
        self.wake = threading.Event()      # the player: commands or an urgent event
        self.gen_wake = threading.Event()  # the generator: commands changed its work
        self._faulted = threading.Event()  # the generator failed: the player ends the notes
        self.deadline = 0                  # when the player next wakes (ns)
        self.stopping = threading.Event()
        self._thread = self._gen_thread = None

    # -- lifecycle -------------------------------------------------------------------
    def drive(self, music):
        """The music the threads and the commands act on (see the module's docstring)."""
        self.music = music

    def start(self):
        """Run the player and the composer."""
        # a thread that computes in Python must hand the GIL back within 0.5 ms, not 5 ms
        sys.setswitchinterval(min(sys.getswitchinterval(), 0.0005))
        self._gen_thread = threading.Thread(target=self._gen_loop, name="ostinato-generator",
                                            daemon=True)
        self._gen_thread.start()
        self._thread = threading.Thread(target=self._loop, name="ostinato-engine", daemon=True)
        self._thread.start()

    @property
    def ahead(self):
        """How far ahead of now the player collects and sends (ns): the spin and the
        margin."""
        return self.spin + self.margin

    @property
    def playing(self):
        """Whether the engine thread runs (it sends what is queued)."""
        return self._thread is not None and self._thread.is_alive()

    def threads_alive(self):
        """(engine thread alive, generator thread alive)."""
        return tuple(t is not None and t.is_alive() for t in (self._thread, self._gen_thread))

    def stop(self):
        """Ask both threads to stop; returns at once."""
        self.stopping.set()
        self.wake.set()
        self.gen_wake.set()

    def join(self):
        """Stop both threads and wait for them (``CLOSE_JOIN_S`` each at most)."""
        self.stop()
        for thread in (self._thread, self._gen_thread):
            if thread is not None:
                thread.join(CLOSE_JOIN_S)
                if thread.is_alive():
                    log.error("%s did not stop within %.0f s; closing the outputs anyway",
                              thread.name, CLOSE_JOIN_S)
        self._thread = self._gen_thread = None

    # -- commands --------------------------------------------------------------------
    def apply(self, fn, urgent, kind, msg_id=None):
        """Run ``fn()`` under both locks and return what it returns; ``kind`` and
        ``msg_id`` name the command in the error a stalled engine gives.

        The generator's lock is held for one step at a time (and the generator stands
        back while a command waits), the sending lock for one look by the player, so a
        command waits at most a step, not for the player to wake.  What it sends joins
        the player's queue, and the player and the generator are woken to act on it.  A
        command that cannot take the locks within ``command_timeout_s`` is withdrawn,
        never applied late.  ``urgent``: a change "now" hands its first note to the
        outputs with a lead (native JACK) itself, not at the player's wake-up.
        """
        with self._waiting_lock:  # the demo, tests and the control thread may all call
            self._waiting += 1
        try:
            limit = self.command_timeout_s
            deadline = time.monotonic() + limit  # a watchdog on the machine: real time
            got = self.lock.acquire(timeout=limit)
            if got and not self.play_lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
                self.lock.release()
                got = False
        finally:
            with self._waiting_lock:
                self._waiting -= 1
        if not got:
            log.error("the engine's locks were held for %.0f s; %s (id %r) was not applied",
                      limit, kind, msg_id)
            raise ServerError(f"the engine was busy for {limit:.0f} s and did not apply this "
                              f"{kind!r}; send it again")
        playing = self.playing
        # what goes at its time, and everything else a command makes due, the player
        # sends, so that no reply waits for sending
        try:
            result = fn()
            self.music.publish()
            if urgent and playing:
                self.music.play(self.clock.now_ns())
        finally:
            self.play_lock.release()
            self.lock.release()
            self.gen_wake.set()
            if not playing:
                self.deliver(FAR, self._idle_waiter)  # no player: sent here, at its time
            else:
                self.wake.set()
        return result

    # -- the send queue --------------------------------------------------------------
    def send(self, seq, n):
        """Send the first n messages of the sequencer's output buffer, none before its
        time (to an output with a lead, that lead before it).

        Stamps never go back: a message that comes after one with a later stamp (an
        event the generator published after its time, or a stinger note due before a
        release just sent) is stamped with that later time, the earliest it can sound.
        A consumer that orders by stamp then plays the messages in the order sent.
        """
        if n == 0:
            return
        out, ns, beats = seq.out, seq.out_ns, seq.out_beat
        routes, emit = self.routes(), self.emit
        last = self._last_t
        for i in range(n):
            t = max(int(ns[i]), last)
            emit(routes, int(out[i, 0]), int(out[i, 1]), int(out[i, 2]), t, float(beats[i]),
                 int(out[i, 3]))
            last = t
        self._last_t = last
        self.events_sent += n

    def send_at(self, routes, status, data1, data2, t, beat, session):
        """One message at ``t`` or, should a later one have gone already, at that one's
        time (stamps never go back); returns the stamp."""
        self._last_t = t = max(t, self._last_t)
        self.emit(routes, status, data1, data2, t, beat, session)
        return t

    def routes(self):
        """(send to the outputs with a lead, send to those without): either may be None."""
        port = self.port
        if not getattr(port, "lead_ns", 0):
            return None, port.send
        if isinstance(port, MultiPort):
            return port.send_ahead, (port.send_due if port.has_due else None)
        return port.send, None

    def emit(self, routes, status, data1, data2, t, beat, session):
        """One message: to the outputs with a lead at once, queued for the others
        (``deliver`` sends it at ``t``)."""
        ahead, due = routes
        if ahead is not None:
            ahead(status, data1, data2, t, beat, session)
        if due is not None:
            self._later.append((t, due, (status, data1, data2, t, beat, session)))

    def in_order(self, method, *args, **kwargs):
        """Call the outputs' ``method`` (publish, tempo, sessions, voices) in order with the
        messages: at once for the outputs with a lead; for the others, queued after the
        messages before it, so that a marker or a session's new name never overtakes
        them."""
        self.at_time(self._last_t, method, *args, **kwargs)

    def at_time(self, t, method, *args, **kwargs):
        """Call the outputs' ``method`` at time ``t`` (ns; ``publish``: a sync event), as a
        message due then goes: at once to the outputs with a lead, queued for the others
        behind what is queued already (stamps never go back)."""
        port = self.port
        if isinstance(port, MultiPort):
            if port.lead_ns:
                port.call_some(True, method, *args, **kwargs)
                if not port.has_due:
                    return
            due = functools.partial(port.call_some, False if port.lead_ns else None, method,
                                    *args, **kwargs)
        elif method in ("sessions", "voices"):
            due = functools.partial(setattr, port, method, args[0])
        else:
            due = functools.partial(getattr(port, method), *args, **kwargs)
        if not isinstance(port, MultiPort) and port.lead_ns:
            due()
        else:
            self._later.append((max(t, self._last_t), due, ()))

    def deliver(self, until, waiter=None):
        """Send what is queued for the outputs without a lead, due by ``until``, each at
        its time.  On the engine thread (``waiter`` its own), without the sending
        lock: a command may queue more meanwhile."""
        later, wait = self._later, (waiter or self._waiter).wait_until
        reached = -1  # the clock has passed this: the messages of one instant wait once
        while later and later[0][0] <= until:
            t, send, args = later.popleft()
            if t > reached:
                reached = wait(t)
            send(*args)

    # -- the threads -----------------------------------------------------------------
    def _loop(self):
        """The player: under the lock, collect what is due; without it, send what is
        queued at its time, then sleep until just before the next deadline (the send
        spins the rest of the way).

        An exception here is logged, every note sounding on any output is ended
        (``Music.silence``) and the music goes on; a thread failing ``FAULT_LIMIT`` times
        in ``FAULT_WINDOW_S`` stops the server instead, which then shuts down cleanly.
        """
        fine_timer_slack()
        clock, music, faults = self.clock, self.music, collections.deque()
        while not self.stopping.is_set():
            try:
                self.wake.clear()
                if self._faulted.is_set():  # the generator failed: end what sounds
                    self._faulted.clear()
                    with self.lock, self.play_lock:
                        music.silence(clock.now_ns())
                # until the deadline is known, any newly published event wakes us
                self.deadline = FAR
                now = clock.now_ns()
                with self.play_lock:
                    deadline = music.play(now)
                if clock is MONOTONIC:  # (a test's clock is not raced: no margin there)
                    self._looks.append(clock.now_ns() - now)
                    self.margin = min(MAX_MARGIN_NS, max(self._looks))
                self.deliver(now + self.ahead)
                later = self._later
                if later:
                    with contextlib.suppress(IndexError):  # the queue is not locked
                        deadline = min(deadline, later[0][0])
                self.deadline = deadline
                clock.sleep(self.wake, deadline - self.ahead)
            except Exception:  # noqa: BLE001 - the player must not die silently
                self._fault("engine", faults)
                try:
                    with self.lock, self.play_lock:
                        music.silence(clock.now_ns())
                except Exception:  # noqa: BLE001
                    log.exception("ending the sounding notes after the failure failed too")

    def _gen_loop(self):
        """The composer: generate while a look-ahead is short, else sleep until one is.

        An exception here is logged and the engine thread (which owns the outputs) is
        asked to end every sounding note; the composing goes on, within ``_loop``'s limit.
        """
        clock, music, faults = self.clock, self.music, collections.deque()
        while not self.stopping.is_set():
            try:
                self.gen_wake.clear()
                with self.lock:
                    pending, wake = music.generate(clock.now_ns())
                if self._waiting:
                    # a lock is not fair: stand back until the waiting commands have run
                    self.gen_wake.wait(STAND_BACK_S)
                elif not pending:
                    clock.sleep(self.gen_wake, wake)
            except Exception:  # noqa: BLE001 - the composer must not die silently
                self._fault("generator", faults)
                self._faulted.set()
                self.wake.set()
                self.gen_wake.wait(STAND_BACK_S)  # the player ends the notes before the next step

    def woken_by(self, first):
        """A newly published event due at ``first`` (ns): wake the player if it is due
        before the player's next look."""
        if 0 <= first - self.lead_now < self.deadline:
            self.wake.set()

    def _fault(self, thread, faults):
        """Log the exception being handled on ``thread``; stop the server when that
        thread has failed FAULT_LIMIT times within FAULT_WINDOW_S."""
        now = time.monotonic()  # how often the machine fails: real time
        faults.append(now)
        while faults and faults[0] < now - FAULT_WINDOW_S:
            faults.popleft()
        if len(faults) >= FAULT_LIMIT:
            log.exception("the %s thread failed %d times in %.0f s: the server stops and ends "
                          "every note", thread, len(faults), FAULT_WINDOW_S)
            self.stop()
        else:
            log.exception("the %s thread failed; every sounding note is ended and the music "
                          "goes on", thread)
