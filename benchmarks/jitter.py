"""Scheduling jitter: arrival time minus scheduled time of every note the server plays.

The server runs as ``ostinato serve`` in its own process with ``sessions`` sessions
open (the extra ones are the load).  On the ZeroMQ stream each note event carries its
scheduled time ``t_ns``.  When the server also plays through its JACK port, a second
JACK client with a native process callback (``realtime.jackreader.NativeJackReader``)
stamps each message with its frame, and the frame's time by JACK's clock model, as a DAW
records it; the messages are paired, in order and by their bytes, with the same notes on
the stream.  The JACK figure is that frame time minus the scheduled time, in µs and in
frames, for the native backend and for rtmidi's (the baseline) in the same run.
Then, the sessions playing on, a game's mood requests to one session are timed to their
replies (``benchmarks.ack``): the acknowledgement round trip under that load, and the
stream's jitter while they come.
"""
import json
import time

import numpy as np
import zmq

from bindings.client import Client

from .ack import AckProbe
from .serve import EventStream, ServeProcess
from .stats import summary, us

SETTLE_S = 0.5  # after the sessions are open, before recording


def open_sessions(client, count):
    """Open ``count`` sessions besides "main" (names load-1, load-2, ...).  They belong
    to ``client``: the server closes them when its connection goes."""
    for i in range(count):
        client.open_session(f"load-{i + 1}")


def notes(frames):
    """(arrival ns, scheduled ns, (status, pitch, velocity), session) of each note frame."""
    out = []
    for rx, data in frames:
        ev = json.loads(data)
        if ev["type"] in ("note_on", "note_off"):
            status = (0x90 if ev["type"] == "note_on" else 0x80) | ev["channel"]
            out.append((rx, ev["t_ns"], (status, ev["pitch"], ev["velocity"]), ev["session"]))
    return out


def pair_jack(jack_msgs, stream_notes, probe=50, skip=20, window=512):
    """Scheduled ns of each JACK arrival: align the JACK messages with the stream's notes
    (the same notes in the same order; up to ``skip`` leading JACK messages may predate
    the stream recording) and pair them.  A message JACK lost (a reader that missed a
    process cycle) is skipped on the stream side: each JACK message pairs with the next
    stream note of the same bytes within ``window``.  Returns (arrivals ns, scheduled
    ns, JACK messages left unpaired)."""
    jack = [(t, m) for t, m in jack_msgs if len(m) == 3 and m[0] & 0xE0 == 0x80]
    keys = [n[2] for n in stream_notes]
    empty = np.zeros(0, np.int64)
    for j0 in range(min(skip, len(jack))):
        k = min(probe, len(jack) - j0)
        first = [m for _, m in jack[j0:j0 + k]]
        start = next((i for i in range(len(keys) - k + 1) if keys[i:i + k] == first), None)
        if start is not None:
            break
    else:
        return empty, empty, len(jack)
    rx, sched = [], []
    i = start
    for t, m in jack[j0:]:
        nxt = next((k for k in range(i, min(i + window, len(keys))) if keys[k] == m), None)
        if nxt is None:
            continue
        rx.append(t)
        sched.append(stream_notes[nxt][1])
        i = nxt + 1
    return np.array(rx, np.int64), np.array(sched, np.int64), len(jack) - len(rx)


def measure(model, sessions, seconds, context, jack_port=None, jack_backend="native"):
    """Jitter of every note over ``seconds`` with ``sessions`` sessions playing; with
    ``jack_port`` the JACK path too, through ``jack_backend``.  Returns a dict of
    summaries and raw samples."""
    from realtime.jackreader import NativeJackReader

    res = {"sessions": sessions, "seconds": seconds}
    if jack_port:
        res["jack_backend"] = jack_backend
    with ServeProcess(model, sessions=max(sessions, 1), jack_port=jack_port,
                      jack_backend=jack_backend) as srv:
        srv.wait_ready()
        stream = EventStream(srv.events, context)
        client = Client(srv.control, timeout=10.0, context=context)
        try:
            stream.wait_for_music()
            open_sessions(client, sessions - 1)
            if jack_port:
                with NativeJackReader(jack_port, client_name=jack_port + "-daw") as daw:
                    daw.wait_for(1, timeout_s=5.0)  # music arrives: the connection is live
                    daw.clear()
                    pre = stream.record(SETTLE_S)
                    frames = stream.record(seconds)
                    jack_msgs = [(t, m) for _, t, m in daw.stamped]
                    jack_stats = daw.stats()
            else:
                pre = stream.record(SETTLE_S)
                frames = stream.record(seconds)
            # then, as the sessions play on, a game's mood requests to one of them: their
            # round trips, and the stream's jitter meanwhile
            # (read by a thread throughout: while the probe process starts this one waits)
            with stream.recording() as frames_meanwhile:
                with AckProbe(srv.control, "load-1" if sessions > 1 else "main", seconds) as acks:
                    t_requests = time.monotonic_ns()
                    time.sleep(seconds)  # the probe sends for this long once ready
            busy = [f for f in frames_meanwhile if t_requests <= f[0] < t_requests + seconds * 1e9]
        finally:
            client.close()
            stream.close()
    ev = notes(frames)
    rx = np.array([e[0] for e in ev], np.int64)
    sched = np.array([e[1] for e in ev], np.int64)
    res["zmq_us"] = summary(us(rx - sched))
    res["notes_per_s"] = len(ev) / seconds
    res["sessions_heard"] = len({e[3] for e in notes(pre) + ev})
    res["ack_us"] = summary(us(np.array(acks.samples_ns, np.int64)))
    busy = notes(busy)
    res["zmq_us_with_requests"] = summary(us(np.array([e[0] - e[1] for e in busy], np.int64)))
    res["_samples"] = {"zmq": us(rx - sched)}
    if jack_port:
        heard = notes(pre) + ev
        jrx, jsched, unpaired = pair_jack(jack_msgs, heard)
        frame_ns = 1e9 / jack_stats["rate"]
        res["jack_stream_notes"] = len(heard)
        res["jack_us"] = summary(us(jrx - jsched))
        res["jack_frames"] = summary((jrx - jsched) / frame_ns)
        res["jack_period"], res["jack_rate"] = jack_stats["period"], jack_stats["rate"]
        res["jack_late_frames"] = int(np.sum((jrx - jsched) > frame_ns))
        res["jack_xruns"] = jack_stats["xruns"]
        res["jack_unpaired"] = unpaired
        res["_samples"]["jack"] = us(jrx - jsched)
    return res


def run(model, seconds=20.0, load=63, jack_port=None, log=print):
    """Jitter without and with ``load`` extra sessions, over ZeroMQ (and JACK, through
    the native backend and then through rtmidi's, the baseline)."""
    ctx = zmq.Context()
    try:
        out = {}
        backends = ("native", "rtmidi") if jack_port else ("native",)
        for backend in backends:
            for name, n in (("unloaded", 1), ("loaded", 1 + load)):
                key = name if backend == "native" else f"{name}_rtmidi"
                log(f"jitter: {n} session(s), {seconds:g} s" +
                    (f", ZeroMQ + JACK ({backend})" if jack_port else ""))
                out[key] = measure(model, n, seconds, ctx,
                                   jack_port=f"{jack_port}-{key}" if jack_port else None,
                                   jack_backend=backend)
        return out
    finally:
        ctx.term()
