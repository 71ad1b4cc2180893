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
- ZeroMQ, each voice of an ensemble (``voices_over_zmq``): the same changes to a server
  playing an ensemble model in ``combat`` with every voice forced on; after the marker,
  the first ``note_on`` of each voice (the event's ``voice`` field) is that voice's
  figure, and the last of them the time until every voice is heard.
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


def over_zmq(model, changes, context, seed=0, log=print, state=None):
    """Mood "now" → the first note of the new mood, over ZeroMQ; ``state``: the preset
    the server starts in (None: serve's default)."""
    lat, marker, ack, wrong = [], [], [], 0
    with ServeProcess(model, sessions=1, state=state) as srv:
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


def voices_over_zmq(model, changes, context, seed=0, state="combat", log=print):
    """Mood "now" → the first note of each voice of an ensemble, over ZeroMQ, with every
    voice forced on (so that the change, not layering, decides what plays)."""
    lat, every, marker, wrong, missing = {}, [], [], {}, {}
    with ServeProcess(model, sessions=1, state=state) as srv:
        srv.wait_ready()
        stream = EventStream(srv.events, context)
        try:
            stream.wait_for_music()
            with Client(srv.control, timeout=5.0, context=context) as client:
                names = [v["name"] for v in client.hello()["capabilities"]["voices"]]
                lat = {v: [] for v in names}
                wrong = dict.fromkeys(names, 0)
                missing = dict.fromkeys(names, 0)
                client.mood(intensity=0.0, transition="now", voices=dict.fromkeys(names, True))
                time.sleep(0.5)
                next_send = time.monotonic_ns()
                for i, gap in enumerate(_gaps(changes, seed)):
                    loud = i % 2 == 0
                    _sleep_until(next_send)
                    t0 = time.monotonic_ns()
                    client.send_nowait("mood", intensity=1.0 if loud else 0.0, transition="now")
                    seen_marker, first = None, {}
                    deadline = t0 + int(NOTE_TIMEOUT_S * 1e9)
                    while len(first) < len(names):
                        got = stream.next(deadline)
                        if got is None:
                            break
                        rx, ev = got
                        if ev["type"] == "mood" and ev["intensity"] == (1.0 if loud else 0.0):
                            seen_marker = rx
                        elif ev["type"] == "note_on" and seen_marker is not None \
                                and ev.get("voice") in lat and ev["voice"] not in first:
                            first[ev["voice"]] = rx
                            wrong[ev["voice"]] += _loud(ev["velocity"]) != loud
                    if not first:
                        raise TimeoutError(f"change {i}: no new note within {NOTE_TIMEOUT_S} s")
                    for v in names:
                        if v in first:
                            lat[v].append(first[v] - t0)
                        else:
                            missing[v] += 1
                    if len(first) == len(names):
                        every.append(max(first.values()) - t0)
                    marker.append(seen_marker - t0)
                    for reply in client.poll_replies():
                        if not reply.get("ok"):
                            raise RuntimeError(f"mood change refused: {reply}")
                    next_send = max(first.values()) + int(gap)
        finally:
            stream.close()
    return {"changes": changes, "state": state, "voices": list(lat),
            "first_note_us": {v: summary(us(x)) for v, x in lat.items()},
            "every_voice_us": summary(us(every)), "marker_us": summary(us(marker)),
            "velocity_class_mismatches": wrong, "voice_not_heard": missing,
            "_samples": {f"zmq_{v}": us(x) for v, x in lat.items()}}


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


def run(model, changes=1000, jack_port=None, log=print, ensemble=None):
    """The figures above; ``ensemble``: an ensemble model whose voices' first notes are
    measured over ZeroMQ too, in the same run (under ``ensemble``), with the one-line
    model's first note in the ensemble's preset beside them (``line_same_state``: the
    same mood and tempo, so the difference is the ensemble's own)."""
    ctx = zmq.Context()
    try:
        log(f"mood → note: {changes} changes over ZeroMQ")
        out = {"zmq": over_zmq(model, changes, ctx, log=log)}
        if ensemble:
            log(f"mood → note: {changes} changes over ZeroMQ, each voice of the ensemble")
            out["ensemble"] = voices_over_zmq(ensemble, changes, ctx, log=log)
            state = out["ensemble"]["state"]
            log(f"mood → note: {changes} changes over ZeroMQ, one line in {state}")
            line = over_zmq(model, changes, ctx, log=log, state=state)
            out["ensemble"]["line_same_state"] = {
                k: line[k] for k in ("first_note_us", "marker_us", "velocity_class_mismatches")}
            out["ensemble"]["_samples"]["zmq_line_" + state] = line["_samples"]["zmq"]
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
