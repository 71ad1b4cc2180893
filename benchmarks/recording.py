"""What a recording checkpoint costs (``python -m benchmarks.recording --minutes 30``).

Fills a ``MidiFilePort`` with ``--minutes`` of music at ``--notes-per-second`` (note-on
plus note-off each, over four sessions, beats at 120 bpm) as the engine thread would,
then times ``checkpoint()``: the part under the port's lock (what a send can wait for:
the tempo map, the sounding notes and each track's length; the bytes are copied after)
and the whole of it (the file built, written and renamed).
"""
import argparse
import json
import tempfile
import time
from pathlib import Path

from realtime.outputs import MidiFilePort

from .stats import machine, summary


def measure(minutes=30.0, notes_per_second=32.0, repeats=20):
    with tempfile.TemporaryDirectory() as folder:
        port = MidiFilePort(Path(folder) / "take.mid", sessions=["main", "a", "b", "c"],
                            checkpoint_s=None)
        notes = int(minutes * 60 * notes_per_second)
        send_ns = []
        for i in range(notes):
            beat = i / notes_per_second * 2.0  # 120 bpm
            t0 = time.perf_counter_ns()
            port.send(0x90 | (i % 4), 48 + i % 36, 90, 0, beat, i % 4)
            port.send(0x80 | (i % 4), 48 + i % 36, 0, 0, beat + 0.4, i % 4)
            send_ns.append((time.perf_counter_ns() - t0) / 2)
        locked, whole = [], []
        lock = port._lock
        for _ in range(repeats):
            t0 = time.perf_counter_ns()
            with lock:  # the same work checkpoint() does under the lock
                snapshot = port._snapshot(port._endings())
            locked.append(time.perf_counter_ns() - t0)
            data = port._file_bytes(snapshot)
            t0 = time.perf_counter_ns()
            port.checkpoint()
            whole.append(time.perf_counter_ns() - t0)
        port.close()
    return {"minutes": minutes, "notes": notes, "file_bytes": len(data),
            "send_us": summary([t / 1e3 for t in send_ns]),
            "checkpoint_locked_us": summary([t / 1e3 for t in locked]),
            "checkpoint_total_us": summary([t / 1e3 for t in whole])}


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.recording",
                                description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--notes-per-second", type=float, default=32.0)
    p.add_argument("--json", default=None, help="also write the figures to this file")
    args = p.parse_args(argv)
    if not (args.minutes > 0 and args.notes_per_second > 0):
        p.error("--minutes and --notes-per-second must be > 0")
    res = measure(args.minutes, args.notes_per_second)
    print(f"{res['minutes']:g} min, {res['notes']} notes, {res['file_bytes']} bytes: "
          f"send p50 {res['send_us']['p50']:.1f} us; checkpoint under the lock p50 "
          f"{res['checkpoint_locked_us']['p50']:.0f} us (max {res['checkpoint_locked_us']['max']:.0f}), "
          f"whole p50 {res['checkpoint_total_us']['p50']:.0f} us")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine(), **res}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
