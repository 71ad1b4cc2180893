"""A game scheduling the server's notes and beats by their ``t_ns``: does the stream's
arrival jitter drop out of what it plays, for beats as for notes?

``ostinato serve --events-ahead MS`` publishes each note, and each opt-in ``beat`` event,
up to MS ms before its time with that time in ``t_ns``.  The client here is a game's
scheduler: it subscribes to the notes and (by naming it) to ``beat``, stamps each event
as it arrives, and fires it ``EventListener.due_in`` seconds later the way the server's own
player waits for a deadline (``realtime.timing``: sleep to ``SPIN_NS`` before it, polling
the socket meanwhile, then spin without the GIL to the nanosecond).  For notes and for
beats it reports the arrival (arrival − ``t_ns``: negative, early, with the lead) and the
scheduled play (fire − ``t_ns``).  Baselines in the same run: the server without
``--events-ahead`` (events come at their time, late by one hop; a client that plays them
at once plays that lateness), and the machine's floor (the same scheduler firing deadlines
of its own, no server: what sleeping to a deadline costs here).

``python -m benchmarks.sync [--seconds 20] [--ahead-ms 40]`` prints the table and writes
``benchmarks/results/sync.json``.
"""
import argparse
import heapq
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import zmq

from bindings.client import EventListener
from engine import DEFAULT_ENSEMBLE
from engine.errors import InvalidMessage, ServerUnavailable
from realtime.protocol import type_prefix
from realtime.timing import Waiter, fine_timer_slack

from .serve import EventStream, ServeProcess, drain
from .stats import machine, summary, us

AHEAD_MS = 40.0
SPIN_NS = 1_000_000    # as the server's player: wake 1 ms before a deadline, spin the rest
FLOOR_GAP_MS = (20, 300)  # the floor's deadlines: as far apart as notes and beats come
SECONDS_RANGE = (0.5, 600.0)
KINDS = {"note_on": "note", "note_off": "note", "beat": "beat"}
OUT = Path(__file__).resolve().parent / "results" / "sync.json"


class SyncServe(ServeProcess):
    """``ostinato serve`` with one session and ``--events-ahead ahead_ms`` (0: none)."""

    def __init__(self, model, ahead_ms, **kwargs):
        super().__init__(model, sessions=1, **kwargs)
        self.ahead_ms = ahead_ms

    def command(self):
        cmd = super().command()
        return cmd + ["--events-ahead", f"{self.ahead_ms:g}"] if self.ahead_ms else cmd


class Scheduler:
    """A game's event scheduler on one thread: a heap of (t_ns, kind) deadlines, each
    fired at its time; while the next is more than ``SPIN_NS`` away it waits on
    ``sock`` (None: on nothing) for more events."""

    def __init__(self, sock=None):
        self.sock = sock
        self.waiter = Waiter()
        self.heap = []
        self.arrivals = {k: [] for k in set(KINDS.values())}  # (arrival, t_ns) ns
        self.fires = {k: [] for k in set(KINDS.values())}     # (fire, t_ns) ns

    def add(self, t_ns, kind):
        heapq.heappush(self.heap, (int(t_ns), kind))

    def run(self, seconds):
        """Receive and fire for ``seconds``; deadlines left then are dropped."""
        fine_timer_slack()
        end = time.monotonic_ns() + int(seconds * 1e9)
        while (now := time.monotonic_ns()) < end:
            if self.heap and self.heap[0][0] - now <= SPIN_NS:
                t_ns, kind = heapq.heappop(self.heap)
                fired = self.waiter.wait_until(t_ns)  # returns at once for one past due
                self.fires[kind].append((fired, t_ns))
                continue
            wake = min(end, self.heap[0][0] - SPIN_NS if self.heap else end)
            timeout_ms = max(0.0, (wake - now) / 1e6)
            if self.sock is None:
                time.sleep(timeout_ms / 1e3)
            elif self.sock.poll(timeout_ms):
                self._take()

    def _take(self):
        frames = []
        drain(self.sock, frames)
        for arrived, data in frames:
            event = json.loads(data)
            kind = KINDS.get(event["type"])
            if kind is None:
                continue
            self.arrivals[kind].append((arrived, event["t_ns"]))
            # when it is due, as a binding's client reads it (same machine: no offset)
            due = time.monotonic_ns() + round(EventListener.due_in(event) * 1e9)
            self.add(due, kind)


def floor(seconds, seed=0):
    """The scheduler firing deadlines of its own, 20-300 ms apart, with no server."""
    rng = random.Random(seed)
    sched = Scheduler()
    t = time.monotonic_ns() + 50_000_000
    end = t + int(seconds * 1e9)
    while t < end:
        sched.add(t, "floor")
        t += rng.randint(*FLOOR_GAP_MS) * 1_000_000
    sched.fires["floor"] = []
    sched.run(seconds + 0.1)
    fires = np.array(sched.fires["floor"], np.int64).reshape(-1, 2)
    return {"fire_us": summary(us(fires[:, 0] - fires[:, 1]))}


def measure(model, ahead_ms, seconds, context):
    """One server run: arrival and scheduled play of every note and beat for ``seconds``."""
    with SyncServe(model, ahead_ms) as srv:
        srv.wait_ready()
        stream = EventStream(srv.events, context)
        stream.sock.setsockopt(zmq.SUBSCRIBE, type_prefix("beat"))  # beats are opt-in
        try:
            stream.wait_for_music()
            sched = Scheduler(stream.sock)
            sched.run(seconds)
        finally:
            stream.close()
        if srv.returncode is not None:
            raise ServerUnavailable("ostinato serve stopped during the run: " + srv.output())
    res = {"ahead_ms": ahead_ms, "seconds": seconds}
    for kind in ("note", "beat"):
        arr = np.array(sched.arrivals[kind], np.int64).reshape(-1, 2)
        fire = np.array(sched.fires[kind], np.int64).reshape(-1, 2)
        res[kind] = {"arrival_us": summary(us(arr[:, 0] - arr[:, 1])),
                     "fire_us": summary(us(fire[:, 0] - fire[:, 1]))}
    return res


def run_all(model=str(DEFAULT_ENSEMBLE), seconds=20.0, ahead_ms=AHEAD_MS):
    """The floor, the server with ``--events-ahead ahead_ms`` and without, in one run."""
    lo, hi = SECONDS_RANGE
    if not lo <= seconds <= hi:
        raise InvalidMessage(f"--seconds is {seconds!r}; allowed {lo:g}..{hi:g}",
                             field="--seconds", allowed=f"{lo:g}..{hi:g}")
    if not 1.0 <= ahead_ms <= 1000.0:
        raise InvalidMessage(f"--ahead-ms is {ahead_ms!r}; allowed 1..1000",
                             field="--ahead-ms", allowed="1..1000")
    context = zmq.Context()
    try:
        return {"floor": floor(seconds),
                "ahead": measure(model, ahead_ms, seconds, context),
                "at_time": measure(model, 0.0, seconds, context)}
    finally:
        context.term()


def rows(res):
    """(label, p50, p99, max in µs, n) of each figure."""
    out = [("floor: sleep to a deadline, no server (fire − deadline)", res["floor"]["fire_us"])]
    for key, how in (("ahead", f"--events-ahead {res['ahead']['ahead_ms']:g}"),
                     ("at_time", "at their time (baseline)")):
        for kind in ("note", "beat"):
            r = res[key][kind]
            out.append((f"{kind}s, {how}: arrival − t_ns", r["arrival_us"]))
            out.append((f"{kind}s, {how}: scheduled play − t_ns", r["fire_us"]))
    return [(label, s.get("p50"), s.get("p99"), s.get("max"), s["n"]) for label, s in out]


def table(res):
    lines = ["| figure | p50 (µs) | p99 (µs) | max (µs) | n |", "|---|---|---|---|---|"]
    for label, p50, p99, mx, n in rows(res):
        lines.append(f"| {label} | {p50:,.0f} | {p99:,.0f} | {mx:,.0f} | {n} |" if n else
                     f"| {label} | - | - | - | 0 |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.sync", description=__doc__.split("\n")[0])
    p.add_argument("--model", default=str(DEFAULT_ENSEMBLE), help="model .npz (default: the "
                   "shipped ensemble, as `ostinato serve`)")
    p.add_argument("--seconds", type=float, default=20.0, help="seconds of music per "
                   "configuration (default 20)")
    p.add_argument("--ahead-ms", type=float, default=AHEAD_MS,
                   help=f"serve --events-ahead (default {AHEAD_MS:g})")
    p.add_argument("--out", default=str(OUT), help=f"JSON written (default {OUT})")
    args = p.parse_args(argv)
    try:
        res = run_all(args.model, args.seconds, args.ahead_ms)
    except (InvalidMessage, ServerUnavailable) as exc:
        print(f"benchmarks.sync: {exc}", file=sys.stderr)
        return 1
    res["machine"] = machine(sys.argv if argv is None else argv)
    print(table(res))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
