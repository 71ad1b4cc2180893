"""Where the time goes: the server's own lateness and ZeroMQ's, measured apart.

The end-to-end figures (``latency``, ``jitter``) add up the engine thread's timing and
the transport.  Here each is measured alone:

- engine: ``Server`` in this process with a recording output port and no control
  socket; the port stamps ``time.monotonic_ns()`` when the engine thread hands it each
  message, so send time minus scheduled time is the engine's own lateness, and a
  mood change made with ``Server.call`` times the engine's mood → first note.
- transport: a PUB socket in a child process sends its send time to a SUB socket
  here, with the musical 20-80 ms gaps and back to back every 1 ms (libzmq and an idle
  CPU wake slower after a gap);
- timer: how late ``threading.Event.wait`` returns after a 20-80 ms timeout.
"""
import subprocess
import sys
import threading
import time

import numpy as np
import zmq

from engine.ensemble import VOICES
from engine.errors import ServerUnavailable
from realtime.outputs import BasePort
from realtime.outputs.base import voice_map

from .latency import GAP_MS, LOUD_MIN
from .serve import REPO
from .stats import free_port, summary, us


class RecordingPort(BasePort):
    """Stamps every message as the engine thread sends it:
    (sent ns, scheduled ns, status, velocity, session, voice), the voice being the one
    the server says the session's channel carries (None where it names none)."""

    name = "recording"

    def __init__(self):
        super().__init__()
        self.sent = []
        self._voices = {}
        self._new = threading.Condition()
        self._waiting = 0  # threads in wait_note: only they need a notify

    @property
    def voices(self):
        return self._voices

    @voices.setter
    def voices(self, voices):
        self._voices = voice_map(voices)

    def _send(self, status, data1, data2, t_ns, beat, session):
        now = time.monotonic_ns()
        voice = self._voices.get(session, {}).get(status & 0x0F)
        # (list.append is atomic; the lock and the notify are for a waiter only, so that the
        # instrument adds as little as it can to the lateness it measures)
        self.sent.append((now, t_ns, status, data2, session, voice))
        if self._waiting:
            with self._new:
                self._new.notify_all()

    def voices_heard(self, since=0):
        """{session: set of voices} of the note-ons sent from index ``since`` on."""
        out = {}
        for _, _, status, vel, session, voice in self.sent[since:]:
            if status & 0xF0 == 0x90 and vel > 0 and voice is not None:
                out.setdefault(session, set()).add(voice)
        return out

    def wait_note(self, since, loud, timeout_s=2.0):
        """Send time of the first note-on at or after index ``since`` in the class."""
        deadline = time.monotonic() + timeout_s
        i = since
        with self._new:
            self._waiting += 1  # before the scan: a note sent after it is notified
            try:
                while True:
                    for i in range(i, len(self.sent)):
                        t, _, status, vel, *_ = self.sent[i]
                        if status & 0xF0 == 0x90 and vel > 0 and (vel >= LOUD_MIN) == loud:
                            return t
                    i = len(self.sent)
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError("no note in the new mood within 2 s")
                    self._new.wait(left)
            finally:
                self._waiting -= 1


def engine(model, sessions=1, seconds=10.0, changes=200, state=None, **server):
    """The engine thread's send lateness over ``seconds``; with one session, its own
    mood → first-note time over ``changes`` changes.  ``state``: the preset every session
    plays (None: the server's default).  ``server``: more ``ServerConfig`` fields (a
    critic, say: then the drafts made and dropped are counted too).  With an ensemble
    model, ``voices_heard`` counts the sessions each voice was heard in, and
    ``sessions_every_voice`` those that heard all of them."""
    from realtime.server import Server, ServerConfig

    port = RecordingPort()
    if state is not None:
        server["initial_state"] = state
    srv = Server(ServerConfig(model=str(model), max_sessions=max(sessions, 1), **server), [port],
                 control=False)
    out = {"sessions": sessions}
    with srv:
        for i in range(sessions - 1):
            srv.call("session", action="open", session=f"load-{i + 1}",
                     **({} if state is None else {"state": state}))
        time.sleep(0.5)
        start = len(port.sent)
        time.sleep(seconds)
        sent = np.array([(t, s) for t, s, *_ in port.sent[start:]], np.int64).reshape(-1, 2)
        out["send_lateness_us"] = summary(us(sent[:, 0] - sent[:, 1]))
        out["bursts"] = bursts(sent)
        out["sessions_heard"] = len({m[4] for m in port.sent[start:]})
        if srv.weights.vocab.n_voices:
            heard = port.voices_heard(start)
            names = sorted({v for vs in heard.values() for v in vs})
            out["voices_heard"] = {v: sum(v in vs for vs in heard.values()) for v in names}
            out["sessions_every_voice"] = sum(set(VOICES) <= vs for vs in heard.values())
        out["_samples"] = {"engine": us(sent[:, 0] - sent[:, 1])}
        if getattr(srv, "drafter", None) is not None:
            out["drafts"], out["drafts_dropped"] = (int(n) for n in srv.drafter.counts[:2])
        if sessions == 1 and changes:
            srv.call("mood", intensity=0.0, transition="now")
            time.sleep(0.5)
            lat, apply = [], []
            gaps = np.random.default_rng(2).uniform(*GAP_MS, changes) * 1e6
            for i, gap in enumerate(gaps):
                loud = i % 2 == 0
                since = len(port.sent)
                t0 = time.monotonic_ns()
                srv.call("mood", intensity=1.0 if loud else 0.0, transition="now")
                apply.append(time.monotonic_ns() - t0)
                t = port.wait_note(since, loud)
                lat.append(t - t0)
                while (left := t + int(gap) - time.monotonic_ns()) > 0:
                    time.sleep(left / 1e9)
            out["mood_first_note_us"] = summary(us(lat))
            out["mood_call_us"] = summary(us(apply))
    return out


def bursts(sent, least=20):
    """What messages scheduled for one instant cost: sessions share the server's beat, so
    their notes on a beat fall on one scheduled time and the engine thread sends them one
    by one.  ``sent``: [n, 2] (sent ns, scheduled ns).  Returns the burst sizes (messages
    per scheduled instant, per message: the burst each message is in) and, over the
    instants with at least ``least`` messages, how late each burst's first message went
    (the wake-up) and the send time per message within it (last - first over the count)."""
    if not len(sent):
        return {}
    _, inv, counts = np.unique(sent[:, 1], return_inverse=True, return_counts=True)
    first = np.full(len(counts), np.iinfo(np.int64).max)
    last = np.zeros(len(counts), np.int64)
    np.minimum.at(first, inv, sent[:, 0])
    np.maximum.at(last, inv, sent[:, 0])
    big = counts >= least
    t = np.unique(sent[:, 1])
    out = {"size": summary(counts[inv].astype(float)), "instants": int(len(counts)),
           "large": int(big.sum())}
    if big.any():
        out["first_late_us"] = summary(us(first[big] - t[big]))
        out["per_message_us"] = summary(us((last[big] - first[big]) / (counts[big] - 1)))
    return out


def _gaps(mode, count):
    if mode == "gapped":
        return np.random.default_rng(3).uniform(*GAP_MS, count) * 1e6
    return np.full(count, 1e6)


def publish(address, mode, count):
    """The child process: bind PUB, then send its send time ``count`` times."""
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 1000)
    pub.bind(address)
    print("ready", flush=True)
    time.sleep(0.5)  # the subscription reaches the publisher
    nxt = time.monotonic_ns()
    for gap in _gaps(mode, count):
        nxt += int(gap)
        while (left := nxt - time.monotonic_ns()) > 300_000:
            time.sleep((left - 300_000) / 1e9)
        while time.monotonic_ns() < nxt:
            pass
        pub.send(str(time.monotonic_ns()).encode())
    pub.send(b"end")
    pub.close()
    ctx.term()


def transport(mode, count):
    """One-way PUB→SUB latency (µs) between two processes on 127.0.0.1."""
    address = f"tcp://127.0.0.1:{free_port()}"
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.setsockopt(zmq.LINGER, 0)
    lat = []
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.breakdown", address, mode, str(count)],
                            cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        if proc.stdout.readline().strip() != "ready":
            raise ServerUnavailable(f"the publisher process did not start (exit {proc.wait()})")
        sub.connect(address)
        deadline = time.monotonic() + 30 + _gaps(mode, count).sum() / 1e9
        while time.monotonic() < deadline:
            if not sub.poll(1000):
                continue
            data = sub.recv()
            rx = time.monotonic_ns()
            if data == b"end":
                break
            lat.append(rx - int(data))
    finally:
        sub.close()
        ctx.term()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        proc.stdout.close()
    return summary(us(lat))


def timer_wakeup(count):
    """Overshoot (µs) of ``threading.Event.wait`` timeouts 20-80 ms long, as the engine
    thread sleeps between notes: how late an idle thread wakes on this machine."""
    ev = threading.Event()
    late = []
    for gap in np.random.default_rng(4).uniform(*GAP_MS, count) * 1e6:
        deadline = time.monotonic_ns() + int(gap)
        ev.wait((deadline - time.monotonic_ns()) / 1e9)
        late.append(time.monotonic_ns() - deadline)
    return summary(us(late))


def run(model, seconds=10.0, load=63, changes=200, transport_count=500, log=print):
    out = {}
    log(f"breakdown: engine alone, 1 session, {seconds:g} s, {changes} mood changes")
    out["engine_1"] = engine(model, 1, seconds, changes)
    log(f"breakdown: engine alone, {1 + load} sessions, {seconds:g} s")
    out["engine_loaded"] = engine(model, 1 + load, seconds, 0)
    log(f"breakdown: ZeroMQ PUB→SUB, {transport_count} messages 20-80 ms apart and 1 ms apart")
    out["zmq_gapped"] = transport("gapped", transport_count)
    out["zmq_1ms"] = transport("1ms", transport_count * 4)
    log(f"breakdown: timer wake-up after 20-80 ms, {transport_count // 2} waits")
    out["timer_wakeup_us"] = timer_wakeup(max(transport_count // 2, 5))
    return out


if __name__ == "__main__":
    publish(sys.argv[1], sys.argv[2], int(sys.argv[3]))
