"""The server end to end over real ZeroMQ sockets on 127.0.0.1.

A game client sends moods and bad messages on the control socket; a listener on the
event stream checks replies, ordering, the immediate transition, and that no note is
left sounding after ``stop`` and after shutdown.
"""
import json
import time

import mido
import numpy as np
import pytest
import zmq

from engine.errors import InvalidMessage
from realtime import protocol
from realtime.mood import density_of, register_of, tonality_of
from realtime.outputs import MidiFilePort, ZmqPubPort
from realtime.server import Server, ServerConfig


class Listener:
    """SUB socket on the event stream collecting decoded events."""

    def __init__(self, address):
        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(address)
        self.events = []

    def pump(self, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if self.sock.poll(20):
                while True:
                    try:
                        ev = json.loads(self.sock.recv(zmq.NOBLOCK))
                    except zmq.Again:
                        break
                    ev["_rx"] = time.monotonic_ns()
                    self.events.append(ev)
        return self.events

    def join(self, pub):
        """Publish probes until one arrives: a SUB socket connects in the background and
        misses what was published before (ZeroMQ's slow joiner), however long that takes."""
        deadline = time.monotonic() + 30.0
        while not self.events:
            assert time.monotonic() < deadline, "the SUB socket never connected"
            pub.publish("transport", state="probe")
            self.pump(0.02)
        self.events.clear()

    def close(self):
        self.sock.close()


def request(sock, obj):
    sock.send(obj if isinstance(obj, bytes) else json.dumps(obj).encode())
    assert sock.poll(5000), "no reply within 5 s"
    return json.loads(sock.recv())


def balance(events):
    """Sounding (channel, pitch) after these events; raises on a note-off of a silent note."""
    on = set()
    for ev in events:
        key = (ev.get("channel"), ev.get("pitch"))
        if ev["type"] == "note_on":
            assert key not in on, f"note-on of a sounding note {key}"
            on.add(key)
        elif ev["type"] == "note_off":
            assert key in on, f"note-off of a silent note {key}"
            on.discard(key)
    return on


@pytest.fixture
def served(model_path, tmp_path):
    pub = ZmqPubPort("tcp://127.0.0.1:*")
    rec = MidiFilePort(tmp_path / "rec.mid")
    srv = Server(ServerConfig(model=str(model_path), control="tcp://127.0.0.1:*"), [pub, rec])
    listener = Listener(pub.bound_address)
    ctx = zmq.Context.instance()
    req = ctx.socket(zmq.REQ)
    req.setsockopt(zmq.LINGER, 0)
    listener.join(pub)  # every note from the first one on is heard
    srv.start()
    req.connect(srv.control_address)
    yield srv, req, listener, tmp_path / "rec.mid"
    req.close()
    listener.close()
    srv.close()


def test_hello_and_music_flows(served):
    srv, req, listener, _ = served
    reply = request(req, {"type": "hello", "id": 1})
    assert reply["ok"] and reply["id"] == 1
    assert reply["protocol"] == protocol.PROTOCOL_VERSION
    assert "combat" in reply["states"] and "now" in reply["capabilities"]["transitions"]
    events = listener.pump(2.0)
    notes = [e for e in events if e["type"] == "note_on"]
    assert len(notes) >= 3, events
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs)
    times = [e["t_ns"] for e in events if e["type"].startswith("note")]
    assert times == sorted(times)
    balance(events)


@pytest.mark.parametrize("raw, code, field", [
    (b"{not json", "invalid_json", None),
    (b'{"type": "dance"}', "unknown_type", "type"),
    (b'{"type": "mood", "valence": 3}', "out_of_range", "valence"),
    (b'{"type": "mood", "arousal": "high"}', "bad_type", "arousal"),
    (b'{"type": "state"}', "missing_field", "name"),
    (b'{"type": "state", "name": "disco"}', "bad_choice", "name"),
    (b'{"type": "tempo", "bpm": 900}', "out_of_range", "bpm"),
    (b'{"type": "mood", "valence": 0.1, "colour": "red"}', "unknown_field", "colour"),
    (b'{"type": "mood", "valence": 0.1, "session": "nobody"}', None, "session"),
    (b'{"type": "x", "pad": "' + b"a" * 70000 + b'"}', "too_large", None),
])
def test_bad_messages_get_errors_and_the_music_goes_on(served, raw, code, field):
    srv, req, listener, _ = served
    listener.pump(0.5)
    reply = request(req, raw)
    assert reply["ok"] is False and reply["type"] == "error"
    if code:
        assert reply["code"] == code
    assert reply["field"] == field
    assert reply["message"]
    if field in ("valence", "bpm"):
        assert reply["allowed"]  # the range is named
    before = len([e for e in listener.events if e["type"] == "note_on"])
    listener.pump(1.5)
    after = len([e for e in listener.events if e["type"] == "note_on"])
    assert after > before, "the music stopped after a bad message"
    assert request(req, {"type": "ping"})["ok"]


def test_immediate_mood_change_takes_effect_within_a_few_events(served):
    srv, req, listener, _ = served
    assert request(req, {"type": "mood", "intensity": 0.0, "transition": "now"})["ok"]
    listener.pump(1.5)
    reply = request(req, {"type": "mood", "intensity": 1.0, "valence": -0.8, "arousal": 0.9,
                          "transition": "now"})
    assert reply["ok"] and reply["mode"] == "minor" and reply["velocity"] >= 100
    events = listener.pump(1.5)
    mark = max(i for i, e in enumerate(events) if e["type"] == "mood")
    assert not balance(events[:mark])  # the old music has stopped when the change is told
    after = events[mark + 1:]
    first_on = next(i for i, e in enumerate(after) if e["type"] == "note_on")
    # only note-offs of the old music may come before the first new note
    assert all(e["type"] == "note_off" for e in after[:first_on])
    assert first_on <= 16
    ons = [e for e in after if e["type"] == "note_on"]
    soft = [e["velocity"] for e in events[:mark] if e["type"] == "note_on"]
    assert min(e["velocity"] for e in ons) > max(soft[-5:])
    # the new note is scheduled at once, not on the next beat (scheduled times, which the
    # server fixes when it runs the command, not arrival times, which load can delay)
    assert ons[0]["t_ns"] - events[mark]["t_ns"] < 0.25 * 60e9 / reply["bpm"]
    balance(events)


def test_state_key_tempo_stinger_and_sessions(served):
    srv, req, listener, _ = served
    r = request(req, {"type": "state", "name": "combat", "transition": "beat"})
    assert r["ok"] and r["mode"] == "minor" and r["bpm"] == 140
    assert request(req, {"type": "key", "key": "F#", "mode": "major", "transition": "bar"})["key"] == "F#"
    assert request(req, {"type": "tempo", "bpm": 90, "ramp_beats": 2})["ok"]
    st = request(req, {"type": "stinger", "name": "discovery", "transition": "now"})
    assert st["ok"] and len(st["pitches"]) == 4
    assert st["pitches"][0] % 12 == 6  # in F#
    r = request(req, {"type": "session", "action": "open", "session": "layer2"})
    assert r["ok"] and r["channel"] != 0
    assert request(req, {"type": "mood", "arousal": 0.2, "session": "layer2"})["ok"]
    events = listener.pump(2.5)
    assert {e["session"] for e in events if e["type"] == "note_on"} >= {"main", "layer2"}
    stinger = [e for e in events if e["type"] == "note_on" and e["channel"] == 15]
    assert [e["pitch"] for e in stinger] == st["pitches"]
    again = request(req, {"type": "session", "action": "open", "session": "layer2"})
    assert not again["ok"] and again["field"] == "session"
    assert request(req, {"type": "session", "action": "close", "session": "layer2"})["ok"]
    # a marker published after the close: the stream keeps its order, so whatever layer2
    # sent (its last note-offs) comes before it, and nothing of layer2 after it
    assert request(req, {"type": "mood", "intensity": 0.6, "transition": "bar"})["ok"]
    n = len(listener.events)
    deadline = time.monotonic() + 30.0
    while not any(e["type"] == "mood" for e in listener.events[n:]):
        assert time.monotonic() < deadline, "the mood marker never came"
        listener.pump(0.1)
    listener.pump(0.5)
    events = listener.events
    mark = next(i for i in range(n, len(events)) if events[i]["type"] == "mood")
    assert not [e for e in events[mark:] if e["session"] == "layer2"]
    layer2 = [e for e in events if e["session"] == "layer2"]
    assert layer2 and balance(layer2) == set()  # every layer2 note ended at the close


def test_stop_and_shutdown_leave_no_note_sounding(served):
    srv, req, listener, rec_path = served
    listener.pump(1.0)
    assert request(req, {"type": "stop"})["state"] == "stopped"
    events = listener.pump(0.8)
    assert balance(events) == set()
    n = len(events)
    listener.pump(0.5)
    assert not [e for e in listener.events[n:] if e["type"] == "note_on"]
    assert request(req, {"type": "start"})["state"] == "playing"
    # the music starts again after a stop (it once stayed frozen until a pause and start)
    n = len(listener.events)
    deadline = time.monotonic() + 30.0
    while not [e for e in listener.events[n:] if e["type"] == "note_on"]:
        assert time.monotonic() < deadline, "no note after stop and start"
        listener.pump(0.1)
    assert request(req, {"type": "pause"})["state"] == "paused"
    assert balance(listener.pump(0.4)) == set()
    assert request(req, {"type": "start"})["ok"]
    listener.pump(1.0)
    srv.close()
    events = listener.pump(0.5)
    assert balance(events) == set()
    # the recording agrees: every note-on has its note-off
    mid = mido.MidiFile(rec_path)
    sounding = set()
    for track in mid.tracks:
        for msg in track:
            if msg.type == "note_on" and msg.velocity > 0:
                sounding.add((msg.channel, msg.note))
            elif msg.type in ("note_off", "note_on"):
                sounding.discard((msg.channel, msg.note))
    assert sounding == set()
    assert sum(1 for t in mid.tracks for m in t if m.type == "note_on") > 3


def test_the_event_stream_can_run_ahead_of_the_music(model_path, tmp_path):
    """``serve --events-ahead``: notes are published up to that long before their
    ``t_ns`` (a client schedules them), in order, while an output without a lead (the
    recording) still gets them at their time and the markers in order with them."""
    pub = ZmqPubPort("tcp://127.0.0.1:*", ahead_ms=40.0)
    rec = MidiFilePort(tmp_path / "rec.mid")
    srv = Server(ServerConfig(model=str(model_path), control="tcp://127.0.0.1:*"), [pub, rec])
    listener = Listener(pub.bound_address)
    req = zmq.Context.instance().socket(zmq.REQ)
    req.setsockopt(zmq.LINGER, 0)
    try:
        listener.join(pub)
        srv.start()
        req.connect(srv.control_address)
        hello = request(req, {"type": "hello", "id": 1})
        assert hello["capabilities"]["events_ahead_ms"] == 40.0
        events = listener.pump(2.0)
        assert request(req, {"type": "mood", "id": 2, "arousal": 0.9, "transition": "bar"})["ok"]
        events = listener.pump(2.0)
    finally:
        req.close()
        listener.close()
        srv.close()
    notes = [e for e in events if e["type"].startswith("note")]
    assert len(notes) >= 6, events
    assert [e["t_ns"] for e in notes] == sorted(e["t_ns"] for e in notes)
    # handed over up to 40 ms early (the composer is 60 ms ahead), so most arrive well
    # before their time; one that does is enough to show the lead (a stalled machine only
    # makes fewer of them early)
    assert any(e["t_ns"] - e["_rx"] > 10_000_000 for e in notes)
    assert any(e["type"] == "mood" for e in events)
    balance(events)
    with pytest.raises(InvalidMessage, match="ahead_ms"):
        ZmqPubPort("tcp://127.0.0.1:*", ahead_ms=5000.0)


def test_a_model_request_made_before_the_locks_is_used_only_for_the_mood_it_was_for(model_path):
    """handle() makes a change's model request before it takes the engine's locks
    (Commands.prepare, memoised): the controls applied are the request for the mood the
    session then has, also when another command changed it in between; the memoised
    arrays are read-only, so nothing can change them for the next session that asks."""
    with Server(ServerConfig(model=str(model_path)), [], control=False) as srv:
        srv.call("start")
        slot = srv.sessions["main"].slot
        msg = protocol.validate({"type": "mood", "arousal": 0.9, "transition": "now"})
        before = set(srv.music.requests)
        srv.commands.prepare(msg)  # from the mood as it is: C major
        made = set(srv.music.requests) - before
        assert len(made) == 1 and all(not a.flags.writeable for a in srv.music.requests[made.pop()]
                                      if isinstance(a, np.ndarray))
        srv.call("key", key="E", mode="minor", transition="now")  # meanwhile, another change
        srv.handle(msg)
        mood = srv.sessions["main"].mood
        assert (mood.key, mood.mode, mood.arousal) == (4, 1, 0.9)
        fresh = srv.spec.request(4, 1, density_of(mood), register_of(mood, srv.base_register),
                                 tonality_of(mood, srv.tonality), srv.weights.key_relative)
        np.testing.assert_array_equal(srv.rt.ctl_base[slot], fresh[0])
        np.testing.assert_array_equal(srv.rt.pc_bias[slot], fresh[2])
        assert srv.seq.transpose[slot] == fresh[1]  # "now": nothing of the old key is left


def test_a_lost_client_s_sessions_close_and_none_is_reported_lost_at_shutdown(model_path, caplog):
    """A client that goes away loses the sessions it opened; one that goes away as the
    server shuts down (the demo's game quitting) is not reported: everything closes."""
    srv = Server(ServerConfig(model=str(model_path)), [], control=False)
    opened = {"type": "session", "action": "open", "session": "layer", "client": "c1"}
    try:
        with caplog.at_level("WARNING", logger="ostinato.server"):
            srv.handle(dict(opened))
            srv.client_lost("c1")
            assert set(srv.sessions) == {"main"}
            srv.handle(dict(opened))
            srv.stop()
            srv.client_lost("c1")
        assert not [r for r in caplog.records if "lost client" in r.getMessage()]
    finally:
        srv.close()
