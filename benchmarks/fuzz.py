"""Fuzz a running server with generated requests and report what came back.

``python -m benchmarks.fuzz --count 100000`` starts a Server (control on a random local
port, an OSC endpoint, an in-memory note counter as its output), sends ``--count`` cases
from ``realtime.fuzz`` (80 % over ZeroMQ on 4 pipelined DEALER sockets, 20 % over OSC in
lock-step), then checks that nothing was answered twice, that the music still plays and
that ``ping`` answers.  It prints the counts as JSON and writes them to
``benchmarks/results/fuzz.json``.  Log records are counted per logger and level, not printed.
"""
import argparse
import json
import logging
import time
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from engine import DEFAULT_MODEL
from realtime import fuzz
from realtime.osc import OscServer
from realtime.server import Server, ServerConfig

BATCH = 10
SESSIONS = ("main", "fz1", "fz2")
RESULTS = Path(__file__).with_name("results") / "fuzz.json"


class LogCounter(logging.Handler):
    """Counts records by (logger, level) instead of printing thousands of them."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.counts = {}

    def emit(self, record):
        key = f"{record.name}:{record.levelname}"
        self.counts[key] = self.counts.get(key, 0) + 1


def _run(strategy, sender, count):
    """Draw ``count`` cases in batches with Hypothesis and hand each batch to ``sender``."""
    @settings(max_examples=max(1, count // BATCH), deadline=None, database=None,
              phases=(Phase.generate,), suppress_health_check=list(HealthCheck))
    @given(st.lists(strategy, min_size=BATCH, max_size=BATCH))
    def storm(batch):
        sender.send(batch)
    storm()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=100_000, help="cases to send (default 100000)")
    p.add_argument("--osc-share", type=float, default=0.2, help="share sent over OSC (default 0.2)")
    p.add_argument("--model", default=str(DEFAULT_MODEL))
    p.add_argument("--out", default=str(RESULTS), help=f"JSON results file (default {RESULTS})")
    args = p.parse_args(argv)

    logs = LogCounter()
    logging.getLogger("ostinato").addHandler(logs)
    logging.getLogger("ostinato").setLevel(logging.INFO)
    logging.getLogger("ostinato").propagate = False

    notes = fuzz.NoteCounter()
    cfg = ServerConfig(model=args.model, control="tcp://127.0.0.1:0", max_sessions=4)
    t0 = time.monotonic()
    with Server(cfg, [notes]) as srv, \
            OscServer(srv.handle, port=0, presets=srv.presets, stingers=srv.stingers) as osc, \
            fuzz.ZmqFuzzer(srv.control_address, n=4) as zmq_fuzzer, fuzz.OscFuzzer(osc.port) as osc_fuzzer:
        n_osc = int(args.count * args.osc_share)
        _run(fuzz.requests(srv.presets, srv.stingers, SESSIONS), zmq_fuzzer, args.count - n_osc)
        _run(fuzz.datagrams(srv.presets, srv.stingers, SESSIONS), osc_fuzzer, n_osc)
        settled = zmq_fuzzer.settle() and osc_fuzzer.settle()
        played, _ = fuzz.music_plays(notes, zmq_fuzzer)
        pong = zmq_fuzzer.request({"type": "ping", "id": "after"})
        result = {
            "zmq": zmq_fuzzer.tally.as_dict(), "osc": osc_fuzzer.tally.as_dict(),
            "answered_exactly_once": settled, "notes_after_storm": played,
            "music_still_playing": played >= 5, "ping_after": bool(pong and pong.get("type") == "pong"),
            "notes_total": notes.notes, "log_records": logs.counts,
            "control_restarts": srv.control.restarts, "seconds": round(time.monotonic() - t0, 1),
            "engine": fuzz.diagnose(srv),
        }
    sent = result["zmq"]["sent"] + result["osc"]["sent"]
    result["sent"] = sent
    Path(args.out).write_text(json.dumps(result, indent=1, ensure_ascii=True) + "\n")
    print(json.dumps(result, indent=1, ensure_ascii=True))
    ok = result["music_still_playing"] and settled and not result["zmq"]["problems"] \
        and not result["osc"]["problems"] and result["zmq"]["unanswered"] == 0 \
        and result["osc"]["unanswered"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
