"""Mood → first note: from a client sending ``mood`` with ``transition: now`` to a
listener receiving the first note played under the new mood.

The client alternates intensity 0 and 1, so the two moods' notes tell themselves
apart by velocity (40 + 70·intensity, plus a beat accent of up to 20 and humanising
of ±6: at most 66 when soft, at least 104 when loud).  Changes are spaced by a random
20-80 ms gap after the previous change's note, as a game would send them (and as
libzmq's idle-gap effect demands).  The send time is ``time.monotonic_ns()`` just
before ``Client.send_nowait``; arrival times are the listener's, on the same clock.

- ZeroMQ: the server publishes a ``mood`` marker when it applies the change; the
  first ``note_on`` after it is the figure (its velocity is checked against the new
  class, and the marker's own arrival is reported too).
- JACK: the server plays through a JACK virtual port, read by a second JACK client;
  the first note-on arriving after the send whose velocity is in the new class.
"""
import time

import numpy as np
import zmq

from bindings.client import Client

from .serve import EventStream, ServeProcess
from .stats import summary, us

SOFT_MAX, LOUD_MIN = 66, 104
GAP_MS = (20, 80)
NOTE_TIMEOUT_S = 2.0


def _loud(velocity):
    return velocity >= LOUD_MIN


def _gaps(n, seed):
    return np.random.default_rng(seed).uniform(*GAP_MS, n) * 1e6


def _prime(client):
    """Start from a known class: soft, for long enough that loud notes are gone."""
    client.mood(intensity=0.0, transition="now")
    time.sleep(0.5)


def _sleep_until(deadline_ns):
    while (left := deadline_ns - time.monotonic_ns()) > 0:
        time.sleep(left / 1e9)


def over_zmq(model, changes, context, seed=0, log=print):
    lat, marker, ack, wrong = [], [], [], 0
    with ServeProcess(model, sessions=1) as srv:
        srv.wait_ready()
        stream = EventStream(srv.events, context)
        try:
            stream.wait_for_music()
            with Client(srv.control, timeout=5.0, context=context) as client:
                _prime(client)
                next_send = time.monotonic_ns()
                for i, gap in enumerate(_gaps(changes, seed)):
                    loud = i % 2 == 0
                    _sleep_until(next_send)
                    t0 = time.monotonic_ns()
                    client.send_nowait("mood", intensity=1.0 if loud else 0.0, transition="now")
                    seen_marker = None
                    deadline = t0 + int(NOTE_TIMEOUT_S * 1e9)
                    while True:
                        got = stream.next(deadline)
                        if got is None:
                            raise TimeoutError(f"change {i}: no new note within {NOTE_TIMEOUT_S} s")
                        rx, ev = got
                        if ev["type"] == "mood" and ev["intensity"] == (1.0 if loud else 0.0):
                            seen_marker = rx
                        elif ev["type"] == "note_on" and seen_marker is not None:
                            break
                    lat.append(rx - t0)
                    marker.append(seen_marker - t0)
                    wrong += _loud(ev["velocity"]) != loud
                    for reply in client.poll_replies():
                        if not reply.get("ok"):
                            raise RuntimeError(f"mood change refused: {reply}")
                    next_send = rx + int(gap)
                # the last replies, and the ack time of a change on its own
                time.sleep(0.05)
                client.poll_replies()
                for gap in _gaps(min(changes, 200), seed + 1):
                    t0 = time.monotonic_ns()
                    client.mood(intensity=0.0, transition="now")
                    ack.append(time.monotonic_ns() - t0)
                    _sleep_until(t0 + int(gap))
        finally:
            stream.close()
    return {"changes": changes, "first_note_us": summary(us(lat)),
            "marker_us": summary(us(marker)), "ack_roundtrip_us": summary(us(ack)),
            "velocity_class_mismatches": int(wrong), "_samples": {"zmq": us(lat)}}


def over_jack(model, changes, context, port_name, seed=0, log=print, backend="native"):
    """Mood call → the first note of the new mood at the frame a JACK client (a DAW)
    records it, by JACK's clock model of that frame (``NativeJackReader.stamped``)."""
    from realtime.jackreader import NativeJackReader

    lat, unclassified = [], 0
    with ServeProcess(model, sessions=1, events=False, jack_port=port_name,
                      jack_backend=backend) as srv:
        srv.wait_ready()
        with NativeJackReader(port_name, client_name=port_name + "-daw") as daw, \
                Client(srv.control, timeout=5.0, context=context) as client:
            daw.wait_for(1, timeout_s=5.0)  # music arrives: the connection is live
            _prime(client)
            next_send = time.monotonic_ns()
            for i, gap in enumerate(_gaps(changes, seed)):
                loud = i % 2 == 0
                _sleep_until(next_send)
                daw.clear()
                t0 = time.monotonic_ns()
                client.send_nowait("mood", intensity=1.0 if loud else 0.0, transition="now")
                seen = 0
                deadline = time.monotonic() + NOTE_TIMEOUT_S
                found = None
                while found is None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError(f"change {i}: no new note within {NOTE_TIMEOUT_S} s")
                    daw.wait_for(seen + 1, timeout_s=left)
                    msgs = [(t, m) for _, t, m in daw.stamped]
                    for t, m in msgs[seen:]:
                        if len(m) == 3 and m[0] & 0xF0 == 0x90 and m[2] > 0:
                            if _loud(m[2]) == loud:
                                found = t
                                break
                            unclassified += SOFT_MAX < m[2] < LOUD_MIN
                    seen = len(msgs)
                lat.append(found - t0)
                for reply in client.poll_replies():
                    if not reply.get("ok"):
                        raise RuntimeError(f"mood change refused: {reply}")
                next_send = found + int(gap)
    return {"changes": changes, "backend": backend, "first_note_us": summary(us(lat)),
            "velocities_between_classes": int(unclassified), "_samples": {"jack": us(lat)}}


def run(model, changes=1000, jack_port=None, log=print):
    ctx = zmq.Context()
    try:
        log(f"mood → note: {changes} changes over ZeroMQ")
        out = {"zmq": over_zmq(model, changes, ctx, log=log)}
        if jack_port:
            for backend in ("native", "rtmidi"):
                log(f"mood → note: {changes} changes over JACK ({backend})")
                key = "jack" if backend == "native" else "jack_rtmidi"
                out[key] = over_jack(model, changes, ctx, f"{jack_port}-{backend}", seed=1,
                                     log=log, backend=backend)
                out[key]["_samples"] = {key: out[key]["_samples"]["jack"]}
        return out
    finally:
        ctx.term()
