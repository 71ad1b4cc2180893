"""A stuck-note storm: thousands of random transitions from several client processes,
some killed with SIGKILL mid-stream, then the server stopped by a signal; every output
must end every note it started (``python -m benchmarks.storm --transitions 10000``).

The server is the real ``ostinato serve`` in its own process, with the event stream, a
``--record`` file and a virtual MIDI port on JACK (``--clock`` on, so the JACK side has
MIDI Stop to count from).  Client processes (``benchmarks.clients``) send random
transitions and session opens and closes; against an ensemble model (``--model
engine/models/ensemble.npz``) some of them also set ``voices``.  Three observers
(``benchmarks.observers``) count, per (session or port, channel, pitch), the notes, the
stuck ones (a note-on never ended) and the orphan note-offs (a note-off of a silent
note), in all and per channel (an ensemble's voice channels, the drums' 9, the stingers'
15):

- the event stream, read by a SUB socket from the ``transport: stop`` marker of a stop
  sent before the storm (before it, a subscriber may have missed note-ons);
- the ``.mid`` recording, read back with mido, every track (one per session and voice
  of an ensemble) on its own, from its start;
- the JACK port, read by a second JACK client (``JackMidiReader``) from the MIDI Stop
  (0xFC) of that same stop: one port's messages keep their order, so this is exact.

The JACK port has two readers at once: rtmidi's (``QueuedJackReader``, as a DAW using
rtmidi) and ``realtime.jackreader.NativeJackReader`` (a native process callback that
stamps each event with its frame and counts JACK's xruns, the cycles it missed and the
writer's port-buffer overflows).  JACK drops the MIDI of a cycle a client misses (an
xrun): measured here, every message lost fell at an xrun, none in cycles that ran on
time, and none in rtmidi's output ring buffer or the readers' queues; with jackd
``--no-realtime`` a loaded 2-core machine had 300-550 xruns and lost 70-200 of ~1200
messages a 10,000-transition storm, with ``jackd -R`` (the default here) 1-6 xruns and
none lost.  Each reader's notes are therefore paired with the event stream's by content
and order (``realtime.jack.align``): what never arrived is reported as ``lost`` (whether
at an xrun, and whether the other reader got it), apart from stuck and orphan counts
and those of them that no loss explains.
"""
import argparse
import json
import os
import signal
import tempfile
import time
import uuid
from pathlib import Path

import zmq

from realtime import protocol
from realtime.jackreader import NativeJackReader
from realtime.layers import STINGER_CHANNEL

from .clients import NOTES_INTERVAL_BEATS, NOTES_STINGER, REPLY_TIMEOUT_MS, Clients
from .observers import (QueuedJackReader, StreamReader, midi_file_tally, stream_notes,
                        stream_voices, tally, wire_note)
from .serve import REPO, ServeProcess
from .stats import machine

RESULTS = REPO / "benchmarks" / "results" / "storm.json"


class RecordingServe(ServeProcess):
    """``ostinato serve`` recording to ``record``, with ``extra`` arguments."""

    def __init__(self, model, record, extra=(), **kwargs):
        super().__init__(model, **kwargs)
        self.record, self.extra = str(record), list(extra)

    def command(self):
        return super().command() + ["--record", self.record, *self.extra]

    def stop(self, sig, timeout_s=60.0):
        """Send ``sig`` and wait for the process to end; returns its exit status."""
        os.kill(self.pid, sig)
        return self._proc.wait(timeout_s)


def _request(ctx, control, msg):
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(control)
    try:
        sock.send_json(msg)
        if not sock.poll(REPLY_TIMEOUT_MS):
            raise RuntimeError(f"no reply to {msg}")
        return sock.recv_json()
    finally:
        sock.close()


def storm(transitions=1000, clients=5, kill=2, stop_signal=signal.SIGTERM, model=None,
          folder=".", seed=0, timeout_s=600.0):
    """One storm against a fresh server on the JACK server $JACK_DEFAULT_SERVER (which
    must run); returns the counts.  The recording goes to ``folder``."""
    from engine import DEFAULT_MODEL
    model = Path(model or DEFAULT_MODEL)
    folder = Path(folder)
    record = folder / f"storm-{signal.Signals(stop_signal).name}.mid"
    port = f"ostinato-storm-{uuid.uuid4().hex[:8]}"
    ctx = zmq.Context()
    t0 = time.monotonic()
    with RecordingServe(model, record, ["--clock", "--seed", str(seed)],
                        jack_port=port) as srv:
        srv.wait_ready()
        if not any(("recording: " + str(record)) in line for line in srv.lines):
            raise RuntimeError("ostinato serve is not recording: " + srv.output())
        stream = StreamReader(srv.events, ctx)
        try:
            with QueuedJackReader(port, client_name=port + "-reader") as daw, \
                    NativeJackReader(port, client_name=port + "-native") as nat:
                # the JACK connection is live once a clock pulse comes through
                deadline = time.monotonic() + 30
                while not (any(m == (0xF8,) for _, m in daw.messages)
                           and any(m == (0xF8,) for _, m in nat.messages)):
                    if time.monotonic() > deadline:
                        raise RuntimeError("no MIDI clock reached the JACK reader")
                    time.sleep(0.02)
                if stream.wait_for(lambda e: True, timeout_s=30) is None:
                    raise RuntimeError("no event reached the stream reader")
                # a stop ends every note: both observers count from there (again, should
                # JACK lose the MIDI Stop itself)
                for _ in range(3):
                    _request(ctx, srv.control, {"type": "stop"})
                    start = stream.wait_for(lambda e: e["type"] == "transport"
                                            and e.get("state") == "stop")
                    jack_from = _wait_index(daw, (0xFC,), timeout_s=2.0)
                    native_from = _wait_index(nat, (0xFC,), timeout_s=2.0)
                    _request(ctx, srv.control, {"type": "start"})
                    if None not in (start, jack_from, native_from):
                        break
                else:
                    raise RuntimeError("the stop before the storm was not seen")
                hello = _request(ctx, srv.control, {"type": "hello"})
                voices = [v["name"] for v in hello["capabilities"]["voices"]]
                crowd = Clients(srv.control, transitions, clients, kill, seed, voices)
                crowd.run(timeout_s)
                storm_s = time.monotonic() - t0
                # the crowd's stops and pauses may have dropped every stinger it asked for
                # before it sounded: one more on "main", now or once its cooldown allows (or
                # the crowd's last, should one still wait to start: it joins that one), so
                # that every output carries the stingers' channel; the stop below may cut it
                # short, as it may any note
                _request(ctx, srv.control, {"type": "start"})
                coda = _request(ctx, srv.control, {"type": "stinger", "notes": NOTES_STINGER,
                                                   "transition": "now", "queue": "queue",
                                                   "min_interval_beats": NOTES_INTERVAL_BEATS})
                stream.wait_for(lambda e: e["type"] == "note_on"
                                and e["channel"] == STINGER_CHANNEL, timeout_s=30.0)
                rc = srv.stop(stop_signal)
                stream.settle()
                _settle(daw)
                _settle(nat)
                received = [m for _, m in daw.messages[jack_from:]]
                native = nat.messages[native_from:]
                native_stats = nat.stats()
        finally:
            stream.close()
    ctx.term()
    events = stream.events[start:]
    sent = [(0x90 | e["channel"], e["pitch"], e["velocity"]) if e["type"] == "note_on"
            else (0x80 | e["channel"], e["pitch"], 0)
            for e in events if e["type"] in ("note_on", "note_off")]
    rt = _jack_tally(sent, received)
    nat_frames = [f for f, m in native if wire_note(m)]
    nt = _jack_tally(sent, [m for _, m in native])
    # Where each reader's losses and unsent arrivals (JACK re-reads a stale buffer at
    # some xruns: duplicates) fell: at an xrun JACK reported or a cycle the native reader
    # skipped, or in a stretch of cycles that all ran on time.  The frame of a sent
    # message is the one the native reader saw it at; rtmidi's arrivals are placed
    # between their neighbours' frames.
    marks = (sorted(native_stats["skip_frames_at"]), sorted(native_stats["xrun_frames_at"]))
    # an xrun callback comes on a notification thread, up to a second after the xrun
    slack = (2 * (native_stats["period"] or 256), native_stats["rate"] or 48000)
    sent_frame = sorted((k, nat_frames[r]) for r, k in nt["_pairs"].items())
    for res in (rt, nt):
        at = [_near_mark(k, k, sent_frame, marks, slack) for k in res["_lost"]]
        res["lost_at_xrun"] = sum(at)
        res["lost_without_xrun"] = len(at) - sum(at)
        at = [_near_mark(*_bracket(u, res["_pairs"]), sent_frame, marks, slack)
              for u in res["_unmatched"]]
        res["unmatched_at_xrun"] = sum(at)
        res["unmatched_without_xrun"] = len(at) - sum(at)
    lost_rt, lost_nat = set(rt["_lost"]), set(nt["_lost"])
    rt["lost_by_reader"] = len(lost_rt - lost_nat)    # the native reader got them
    rt["lost_upstream"] = len(lost_rt & lost_nat)     # neither reader got them
    nt["lost_not_rtmidi"] = len(lost_nat - lost_rt)
    for res in (rt, nt):
        for k in ("_pairs", "_lost", "_unmatched"):
            del res[k]
    nt.update({k: native_stats[k] for k in ("cycles", "skips", "skipped_frames", "xruns",
                                            "writer_lost", "overflow", "realtime")})
    return {
        "model": model.name, "voices": voices,
        "stingers": dict(stinger_cooldowns(events), coda=coda),
        "transitions": crowd.sent, "clients": crowd.spawned, "killed": crowd.killed,
        "with_voices": crowd.voices_sent[0], "with_voices_refused": crowd.voices_sent[1],
        "signal": signal.Signals(stop_signal).name, "exit_status": rc,
        "seconds": round(storm_s, 1),
        "stream": dict(tally(stream_notes(events)), missed_frames=stream.gaps,
                       by_voice=stream_voices(events), examples=_anomalies(events)),
        "file": midi_file_tally(record),
        "jack": rt,
        "jack_native": nt,
        "record": str(record),
        "port": port,
    }


def stinger_cooldowns(events):
    """The stingers the stream announced on "main" and no stop dropped, and how many pairs
    of starts of one stinger lie closer together than its ``min_interval_beats``
    (states.toml's; the clients' notes stinger's).  A request may ask for a beat before
    one already given (a phrase ahead, then "now"), so the starts are compared in the
    order they play, not the order announced; a stop or pause drops the stingers announced
    for after it (the transport event's beat), which never sound and hold no cooldown, and
    a session closed and opened again (its music from beat 0) starts with none."""
    interval = {n: s["min_interval_beats"] for n, s in protocol.load_states(None)[1].items()}
    interval["notes"] = NOTES_INTERVAL_BEATS
    lives = [{}]  # per opening of "main": stinger name -> beats of its starts
    for e in events:
        if e.get("session") != "main":
            continue
        starts = lives[-1]
        if e["type"] == "stinger":
            starts.setdefault(e["name"], []).append(e["beat"])
        elif e["type"] == "transport" and e["state"] in ("stop", "pause"):
            for name, beats in starts.items():
                starts[name] = [b for b in beats if b <= e["beat"]]
        elif e["type"] == "mood" and e["transition"] == "now" and e["beat"] == 0:
            lives.append({})  # (only a session opening plays from beat 0 "now")
    played = [(name, sorted(beats)) for starts in lives for name, beats in starts.items()]
    violations = sum(int(b - a < interval[name] - 1e-9) for name, beats in played
                     if interval[name] > 0 for a, b in zip(beats, beats[1:]))
    return {"played_on_main": sum(len(beats) for _, beats in played),
            "cooldown_violations": violations}


def _jack_tally(sent, received):
    """Counts of one JACK reader's notes (``received``: every message it read), paired
    with ``sent`` (note bytes in the event stream's order) by ``align``."""
    from realtime.jack import align

    notes = [m for m in received if wire_note(m)]
    wire = [wire_note(m) for m in notes]
    pairs, lost, unmatched = align(sent, notes)
    out = dict(tally(((c, p), on) for c, p, on in wire), lost=len(lost), unmatched=len(unmatched))
    out.update(_unexplained(wire, [wire_note(sent[i]) for i in lost],
                            [wire[i] for i in unmatched]))
    out["_pairs"], out["_lost"], out["_unmatched"] = pairs, list(lost), list(unmatched)
    return out


def _bracket(u, pairs):
    """(a, b): the sent indices of the paired arrivals just before and after unpaired
    arrival ``u`` (None where there is none)."""
    before = [pairs[r] for r in pairs if r < u]
    after = [pairs[r] for r in pairs if r > u]
    return (max(before) if before else None), (min(after) if after else None)


def _near_mark(a, b, sent_frame, marks, slack):
    """Whether a mark lies in the frames spanned by sent indices ``a``..``b`` (None: open
    end), widened to the nearest sent messages whose frame is known.  ``marks``: (frames
    the native reader skipped, frames xrun callbacks came at); ``slack``: (frames either
    side of a span, frames an xrun callback may come after its xrun)."""
    import bisect

    keys = [k for k, _ in sent_frame]
    i = bisect.bisect_right(keys, a) - 1 if a is not None else -1
    j = bisect.bisect_left(keys, b) if b is not None else len(keys)
    lo = sent_frame[i][1] - slack[0] if i >= 0 else float("-inf")
    hi = sent_frame[j][1] + slack[0] if j < len(keys) else float("inf")
    for found, late in zip(marks, (0, slack[1])):
        m = bisect.bisect_left(found, lo)
        if m < len(found) and found[m] <= hi + late:
            return True
    return False


def _anomalies(events, limit=3):
    """Up to ``limit`` stuck notes or orphan note-offs of the stream, each with the
    events of its (session, channel, pitch) around it: what a bug report needs."""
    sounding, out = {}, []
    keyed = [(i, (e["session"], e["channel"], e["pitch"]), e["type"] == "note_on")
             for i, e in enumerate(events) if e["type"] in ("note_on", "note_off")]
    for i, key, on in keyed:
        if on:
            sounding.setdefault(key, []).append(i)
        elif sounding.get(key):
            sounding[key].pop()
        elif len(out) < limit:
            out.append(("orphan_off", i, key))
    out += [("stuck", i, key) for key, ons in sounding.items() for i in ons][:limit]
    return [{"kind": kind, "key": list(key),
             "events": [events[j] for j, k, _ in keyed if k == key and abs(j - i) < 400][:8]}
            for kind, i, key in out[:2 * limit]]


def _role(client, port):
    """Which part of a storm a JACK client name is: "writer" (ostinato serve's port),
    "rtmidi reader", "native reader", or the name itself."""
    if client == port + "-reader":
        return "rtmidi reader"
    if client == port + "-native":
        return "native reader"
    return "writer" if client.startswith(port) else client


def _unexplained(received, lost, unsent):
    """Stuck notes and orphan note-offs on JACK that no lost message and no unsent
    arrival explains: per (channel, pitch), a lost note-off or an unsent note-on leaves
    at most one note stuck, a lost note-on or an unsent note-off at most one note-off
    orphaned."""
    keys = {(c, p) for c, p, _ in received} | {(c, p) for c, p, _ in lost}
    stuck = orphans = 0
    for key in keys:
        got = tally((key, on) for c, p, on in received if (c, p) == key)
        mine = lambda msgs, on_: sum(1 for c, p, on in msgs if (c, p) == key and on == on_)  # noqa: E731
        stuck += max(0, got["stuck"] - mine(lost, False) - mine(unsent, True))
        orphans += max(0, got["orphan_offs"] - mine(lost, True) - mine(unsent, False))
    return {"stuck_unexplained": stuck, "orphan_offs_unexplained": orphans}


def _wait_index(daw, message, timeout_s=30.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for i, (_, m) in enumerate(daw.messages):
            if m == message:
                return i
        time.sleep(0.02)
    return None


def _settle(daw, quiet_s=0.5, timeout_s=30.0):
    deadline = time.monotonic() + timeout_s
    n = -1
    while len(daw.messages) != n and time.monotonic() < deadline:
        n = len(daw.messages)
        time.sleep(quiet_s)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.storm", description=__doc__.split("\n")[0])
    p.add_argument("--transitions", type=int, default=10_000)
    p.add_argument("--clients", type=int, default=6, help="client processes at once")
    p.add_argument("--kill", type=int, default=3, help="of them, SIGKILLed mid-stream")
    p.add_argument("--signals", default="TERM,INT",
                   help="one storm per signal that then stops the server (default TERM,INT)")
    p.add_argument("--model", default=None,
                   help="model .npz (default: the shipped one-line model; "
                        "engine/models/ensemble.npz: the ensemble, with voices)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-realtime", action="store_true",
                   help="start jackd --no-realtime (default: -R, realtime scheduling, as a "
                        "DAW runs it; a non-realtime graph loses MIDI at xruns under load)")
    p.add_argument("--out", default=str(RESULTS), help="JSON results file")
    args = p.parse_args(argv)
    for name, value, lo in (("transitions", args.transitions, 1), ("clients", args.clients, 1),
                            ("kill", args.kill, 0)):
        if value < lo:
            p.error(f"--{name} must be >= {lo}, got {value}")
    if args.kill > args.clients:
        p.error(f"--kill ({args.kill}) cannot exceed --clients ({args.clients})")
    try:
        sigs = [signal.Signals["SIG" + s.strip().upper()] for s in args.signals.split(",")]
    except KeyError as exc:
        p.error(f"--signals: {exc} is not a signal name (use TERM, INT)")
    from realtime.jack import JackConfig, JackServer

    name = os.environ.get("JACK_DEFAULT_SERVER") or f"ostinato-storm-{uuid.uuid4().hex[:8]}"
    os.environ["JACK_DEFAULT_SERVER"] = name
    runs = []
    with JackServer(JackConfig(server=name, realtime=not args.no_realtime)) as server, \
            tempfile.TemporaryDirectory() as folder:
        for i, sig in enumerate(sigs):
            before = server.xruns()
            res = storm(args.transitions, args.clients, args.kill, sig, args.model, folder,
                        args.seed + i)
            del res["record"]  # gone with the folder
            after = server.xruns()
            late = {k: n - before.get(k, 0) for k, n in after.items() if n > before.get(k, 0)}
            res["jackd"] = {"owned": server.owned, "realtime": server.realtime,
                            "driver_xruns": late.pop("driver", 0),
                            "late_clients": sum(late.values()),
                            "late": {_role(k, res["port"]): n for k, n in late.items()}}
            runs.append(res)
            print(f"{res['signal']}: {res['model']} ({', '.join(res['voices'])}), "
                  f"{res['transitions']} transitions ({res['with_voices']} with voices, "
                  f"{res['with_voices_refused']} of them refused) from {res['clients']} "
                  f"client processes, {res['killed']} SIGKILLed, {res['seconds']} s, "
                  f"exit {res['exit_status']}")
            j = res["jackd"]
            print(f"  jackd      : {'realtime' if j['realtime'] else 'not realtime' if j['owned'] else 'reused'}"
                  f", {j['driver_xruns']} driver xruns printed, {j['late_clients']} late clients"
                  + "".join(f", {k} {n}" for k, n in sorted(j["late"].items())))
            for out in ("stream", "file", "jack", "jack_native"):
                r = res[out]
                more = ", ".join(f"{k.replace('_', ' ')} {r[k]}" for k in (
                    "missed_frames", "lost", "lost_by_reader", "lost_upstream", "lost_at_xrun",
                    "lost_without_xrun", "unmatched", "unmatched_without_xrun",
                    "stuck_unexplained", "orphan_offs_unexplained", "xruns", "skips",
                    "writer_lost", "overflow", "realtime")
                    if k in r)
                print(f"  {out:11s}: {r['notes']} notes, {r['stuck']} stuck, "
                      f"{r['orphan_offs']} orphan note-offs" + (f", {more}" if more else ""))
                print("  " + " " * 11 + "  by channel (notes/stuck/orphan offs): " + ", ".join(
                    f"{c}: {n['notes']}/{n['stuck']}/{n['orphan_offs']}"
                    for c, n in r["by_channel"].items()))
            print("  voices heard on the stream: " + ", ".join(
                f"{v} {n}" for v, n in res["stream"]["by_voice"].items()))
            tracks = {}
            for name, n in res["file"]["tracks"].items():  # "<session> <voice>" or "<voice>"
                t = tracks.setdefault(name.split()[-1], [0, 0])
                t[0], t[1] = t[0] + 1, t[1] + n
            print(f"  tracks of the recording ({len(res['file']['tracks'])}), by voice (a "
                  "one-line session's: by session) (tracks/notes): " + ", ".join(f"{v} {k}/{n}" for v, (k, n) in tracks.items()))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"machine": machine(), "runs": runs}, indent=2) + "\n")
    print(f"wrote {args.out}")
    bad = sum(r[o]["stuck"] + r[o]["orphan_offs"] for r in runs for o in ("stream", "file")) + \
        sum(r[j]["stuck_unexplained"] + r[j]["orphan_offs_unexplained"]
            + r[j]["lost_without_xrun"] + r[j]["unmatched_without_xrun"]
            for r in runs for j in ("jack", "jack_native"))
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
