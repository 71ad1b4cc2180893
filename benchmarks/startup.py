"""Start-up: from spawning ``ostinato serve`` to its first answer, to ready, to the first note.

Cold: numba compiles every kernel (a fresh, empty NUMBA_CACHE_DIR).  Warm: the same
directory again, now filled, so the kernels load from the cache.  The listener
connects before the process starts and retries every 5 ms until the server binds.

A probe plays a game that starts the server with its level and talks to it at once:
a DEALER socket (``ZMQ_IMMEDIATE``: a request is only sent once a connection is made,
so none waits in the probe's own queue for the server to bind) sends a request every
20-50 ms (at random), cycling ``hello``, ``ping`` and ``state`` (a preset the first
hello named, alternately two of them), from the spawn until the first note, and times
each to its reply, matched by id.  Warm-up is until the first reply that says the
server is ready (a hello with ``"ready": true`` or an ack without ``accepted``);
requests sent before it are the warm-up's.  The first-note figure includes the
music's own lead-in (the first note is placed 0.1 beat after the engine starts,
~60 ms at the default preset), reported separately, and the states the probe sent
meanwhile, which the server applies before its first note.  Once the server is ready,
its process's resident memory (VmRSS, and the peak VmHWM, from /proc) says what the
start left it holding: the kernels compile in a child process (``realtime.warmup``),
whose memory is not the server's.

``.venv/bin/python -m benchmarks.startup`` runs one cold and one warm start of the
shipped ensemble and prints the figures (``--json FILE`` writes them).
"""
import argparse
import itertools
import json
import random
import tempfile
import threading
import time

import zmq

from .serve import EventStream, ServeProcess, drain
from .stats import summary

FIRST_NOTE_TIMEOUT_S = 300.0
PROBE_GAP_MS = (20.0, 50.0)


class Probe:
    """The game's requests during start-up, on a thread of its own (see the module's
    docstring); ``stop`` ends it and returns its figures."""

    def __init__(self, address, context, t_start_ns, seed=0):
        self.address, self.context, self.t_start_ns = address, context, t_start_ns
        self.rng = random.Random(seed)
        self.sent = {}     # id -> (type, send ns)
        self.replies = {}  # id -> (arrival ns, reply dict)
        self.refused_sends = 0  # sends tried before any connection was made
        self.t_ready_ns = None  # arrival of the first reply from a ready server
        self.states = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="startup-probe", daemon=True)

    def start(self):
        self._thread.start()
        return self

    def _run(self):
        sock = self.context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.IMMEDIATE, 1)
        sock.setsockopt(zmq.RECONNECT_IVL, 5)
        sock.connect(self.address)
        kinds = itertools.cycle(("hello", "ping", "state"))
        n_state = 0
        try:
            next_ns = time.monotonic_ns()
            for i in itertools.count():
                kind = next(kinds)
                if kind == "state" and not self.states:
                    kind = "hello"
                msg = {"type": kind, "id": i}
                if kind == "state":
                    msg["name"] = self.states[n_state % len(self.states)]
                    n_state += 1
                while True:  # an unconnected socket refuses the send: try again shortly
                    try:
                        t = time.monotonic_ns()
                        sock.send(json.dumps(msg).encode(), zmq.NOBLOCK)
                        self.sent[i] = (kind, t)
                        break
                    except zmq.Again:
                        self.refused_sends += 1
                        if self._stop.wait(0.005):
                            return
                next_ns = max(next_ns, t) + int(self.rng.uniform(*PROBE_GAP_MS) * 1e6)
                while (left := next_ns - time.monotonic_ns()) > 0:
                    if self._stop.is_set():
                        return
                    if sock.poll(max(1, left // 1_000_000)):
                        self._take(sock)
        finally:
            sock.close(0)

    def _take(self, sock):
        frames = []
        drain(sock, frames)
        for t, data in frames:
            reply = json.loads(data)
            self.replies[reply.get("id")] = (t, reply)
            if reply.get("type") == "hello" and reply.get("ok") and not self.states:
                self.states = list(reply.get("states", []))[:2]
            ready = reply.get("ready") is True or (reply.get("for") == "state" and reply.get("ok")
                                                   and not reply.get("accepted"))
            if ready and self.t_ready_ns is None:
                self.t_ready_ns = t

    def stop(self):
        self._stop.set()
        self._thread.join()

    def figures(self, t_ready_ns=None):
        """Latencies (ms) of the warm-up's requests and of all, the first answer's time,
        counts, and the first errors.  ``t_ready_ns``: when the server printed that it
        is ready; the warm-up ends there or at the first reply from a ready server,
        whichever came first."""
        ends = [t for t in (self.t_ready_ns, t_ready_ns) if t is not None]
        ready = min(ends) if ends else float("inf")
        warm_ms, all_ms, accepted, errors, unanswered = [], [], 0, [], 0
        for i, (kind, t) in self.sent.items():
            got = self.replies.get(i)
            if got is None:
                unanswered += 1
                continue
            ms = (got[0] - t) / 1e6
            all_ms.append(ms)
            if t < ready:
                warm_ms.append(ms)
            accepted += bool(got[1].get("accepted"))
            if not got[1].get("ok"):
                errors.append(f"{kind}: {got[1].get('code')}: {got[1].get('message')}")
        first = min((t for t, _ in self.replies.values()), default=None)
        return {"first_answer_s": None if first is None else (first - self.t_start_ns) / 1e9,
                "probe_ready_s": None if self.t_ready_ns is None
                else (self.t_ready_ns - self.t_start_ns) / 1e9,
                "warmup_reply_ms": summary(warm_ms), "reply_ms": summary(all_ms),
                "requests": len(self.sent), "answered": len(all_ms), "accepted": accepted,
                "errors": len(errors), "first_errors": errors[:3], "unanswered": unanswered,
                "sends_before_connected": self.refused_sends}


def once(model, context, env=None, probe=True):
    """Seconds from spawn to 'ready' and to the first note_on, and the lead-in; with
    ``probe``, the probe's figures (``Probe.figures``) too."""
    with ServeProcess(model, sessions=1, env=env, ready_timeout_s=FIRST_NOTE_TIMEOUT_S,
                      bind_tries=1) as srv:  # it connects before the server is ready
        stream = EventStream(srv.events, context)
        prober = Probe(srv.control, context, srv.t_start_ns).start() if probe else None
        try:
            deadline = srv.t_start_ns + int(FIRST_NOTE_TIMEOUT_S * 1e9)
            while True:
                got = stream.next(deadline)
                if got is None:
                    srv.wait_ready()  # raises with the server's output if it failed
                    raise TimeoutError(f"no note within {FIRST_NOTE_TIMEOUT_S} s of start")
                if got[1]["type"] == "note_on":
                    break
            if prober is not None:
                prober.stop()
            srv.wait_ready()
            memory = process_memory(srv.pid)
        finally:
            if prober is not None:
                prober.stop()
            stream.close()
        figures = prober.figures(srv.t_ready_ns) if prober else {}
        rx, ev = got
        return {"first_note_s": (rx - srv.t_start_ns) / 1e9,
                "ready_s": (srv.t_ready_ns - srv.t_start_ns) / 1e9,
                "lead_in_s": (ev["t_ns"] - srv.t_ready_ns) / 1e9, **memory, **figures}


def process_memory(pid):
    """The server process's resident memory once ready, and its peak so far (MB, from
    /proc/PID/status: VmRSS and VmHWM); None each where /proc has no such file."""
    fields = {"VmRSS": "rss_mb", "VmHWM": "peak_rss_mb"}
    out = dict.fromkeys(fields.values())
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in fields:
                    out[fields[key]] = int(value.split()[0]) / 1024  # kB
    except OSError:
        pass
    return out


def run(model, cold=1, warm=3, log=print, probe=True):
    ctx = zmq.Context()
    out = {"cold": [], "warm": []}
    try:
        with tempfile.TemporaryDirectory(prefix="ostinato-numba-") as cache:
            for i in range(cold):
                log(f"start-up: cold numba cache ({i + 1}/{cold})")
                if i == cold - 1:  # the last cold run fills the cache the warm runs load
                    out["cold"].append(once(model, ctx, {"NUMBA_CACHE_DIR": cache}, probe))
                    continue
                with tempfile.TemporaryDirectory(prefix="ostinato-numba-") as fresh:
                    out["cold"].append(once(model, ctx, {"NUMBA_CACHE_DIR": fresh}, probe))
            for i in range(warm):
                log(f"start-up: warm numba cache ({i + 1}/{warm})")
                out["warm"].append(once(model, ctx, {"NUMBA_CACHE_DIR": cache} if cold else None,
                                        probe))
    finally:
        ctx.term()
    for key in ("cold", "warm"):
        runs = out[key]
        out[key + "_first_note_s"] = summary([r["first_note_s"] for r in runs])
        out[key + "_ready_s"] = summary([r["ready_s"] for r in runs])
        out[key + "_rss_mb"] = summary([r["rss_mb"] for r in runs if r["rss_mb"] is not None])
    return out


def _lines(res):
    """The figures of each run, one block per run."""
    for kind in ("cold", "warm"):
        for r in res[kind]:
            yield (f"{kind} numba cache: ready {r['ready_s']:.2f} s, first note "
                   f"{r['first_note_s']:.2f} s (lead-in {r['lead_in_s'] * 1e3:.0f} ms)")
            if r["rss_mb"] is not None:
                yield (f"  server process once ready: RSS {r['rss_mb']:.0f} MB (peak "
                       f"{r['peak_rss_mb']:.0f} MB)")
            if "requests" not in r:
                continue
            w, a = r["warmup_reply_ms"], r["reply_ms"]
            yield (f"  first answer {r['first_answer_s']:.2f} s after spawn; "
                   f"{r['requests']} requests ({r['sends_before_connected']} sends refused "
                   f"before the connection), {r['answered']} answered, {r['accepted']} "
                   f"accepted while warming up, {r['errors']} errors, "
                   f"{r['unanswered']} unanswered (in flight at the first note)")
            for error in r["first_errors"]:
                yield f"  error: {error}"
            if w.get("n"):
                yield (f"  reply latency during warm-up ({w['n']} requests): p50 "
                       f"{w['p50']:.2f} ms, p99 {w['p99']:.2f} ms, max {w['max']:.2f} ms")
            yield (f"  reply latency, all ({a['n']}): p50 {a['p50']:.2f} ms, p99 "
                   f"{a['p99']:.2f} ms, max {a['max']:.2f} ms")


def main(argv=None):
    from engine import DEFAULT_ENSEMBLE

    p = argparse.ArgumentParser(prog="python -m benchmarks.startup", description=__doc__.split(
        "\n")[0])
    p.add_argument("--model", default=str(DEFAULT_ENSEMBLE))
    p.add_argument("--cold", type=int, default=1, help="cold starts (each compiles: ~30 s CPU)")
    p.add_argument("--warm", type=int, default=1)
    p.add_argument("--json", default=None, metavar="FILE", help="write the figures here")
    args = p.parse_args(argv)
    res = run(args.model, args.cold, args.warm)
    print("\n".join(_lines(res)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
