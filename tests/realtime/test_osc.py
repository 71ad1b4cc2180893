"""The OSC endpoint over real UDP on 127.0.0.1 (ephemeral ports), python-osc on both ends."""
import json
import logging
import socket
import struct
import time

import pytest
from pythonosc.osc_bundle_builder import OscBundleBuilder
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.osc_packet import OscPacket

from bindings import EventListener
from engine.errors import PortError
from realtime.osc import MAX_SUBSCRIBERS, OscServer, to_message
from realtime.outputs import ZmqPubPort
from realtime.protocol import EVENT_TYPES
from realtime.server import Server, ServerConfig



class Recorder:
    def __init__(self):
        self.messages = []
        self.raise_next = None

    def __call__(self, msg):
        self.messages.append(msg)
        if self.raise_next is not None:
            exc, self.raise_next = self.raise_next, None
            raise exc
        if msg["type"] == "boom" or msg.get("session") == "explode":
            raise RuntimeError("handler bug")
        return {"server": "recorder"} if msg["type"] == "hello" else {}


@pytest.fixture
def osc():
    recorder = Recorder()
    with OscServer(recorder, port=0) as server:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        yield server, recorder, sock
        sock.close()


def send(server, sock, address, *args):
    builder = OscMessageBuilder(address)
    for arg in args:
        builder.add_arg(arg)
    sock.sendto(builder.build().dgram, ("127.0.0.1", server.port))
    reply = OscMessage(sock.recv(65536))
    return reply.address, list(reply.params)


def test_positional_mood_is_validated_and_acknowledged(osc):
    server, recorder, sock = osc
    address, args = send(server, sock, "/ostinato/mood", 0.5, 0.8, 0.3, "now")
    assert address == "/ostinato/ack" and args[0] == "mood"
    assert json.loads(args[2])["ok"] is True
    msg = recorder.messages[-1]
    # 32-bit OSC floats come back as the decimal that was sent.
    assert (msg["valence"], msg["arousal"], msg["intensity"], msg["transition"]) == (0.5, 0.8, 0.3, "now")
    assert msg["client"].startswith("osc:127.0.0.1:")


def test_single_field_form_and_envelope_keywords(osc):
    server, recorder, sock = osc
    address, args = send(server, sock, "/ostinato/mood/arousal", 0.75, "session", "p2", "id", 42)
    assert address == "/ostinato/ack" and args[1] == 42
    msg = recorder.messages[-1]
    assert (msg["arousal"], msg["valence"], msg["session"], msg["id"]) == (0.75, None, "p2", 42)
    send(server, sock, "/ostinato/tempo", 140, 4, "session", "p3")
    assert recorder.messages[-1]["bpm"] == 140.0 and recorder.messages[-1]["ramp_beats"] == 4.0
    send(server, sock, "/ostinato/session", "open", "p4", "stealth")
    assert recorder.messages[-1]["session"] == "p4" and recorder.messages[-1]["state"] == "stealth"
    send(server, sock, "/ostinato/key", "f#", "minor")
    assert recorder.messages[-1]["key"] == "F#"
    send(server, sock, "/ostinato/mood", None, 0.2)  # OSC nil keeps valence
    assert recorder.messages[-1]["valence"] is None and recorder.messages[-1]["arousal"] == 0.2


def test_same_errors_as_the_json_path(osc):
    server, recorder, sock = osc
    cases = [
        (("/ostinato/mood", 2.0), ("out_of_range", "valence", "-1.0..1.0")),
        (("/ostinato/tempo", "fast"), ("bad_type", "bpm", "30.0..300.0")),
        (("/ostinato/tempo",), ("missing_field", "bpm", "30.0..300.0")),
        (("/ostinato/state", "nap"), ("bad_choice", "name", None)),
        (("/ostinato/dance", 1), ("unknown_type", "type", None)),
        (("/ostinato/mood/colour", 1), ("unknown_field", "colour", None)),
        (("/ostinato/stop", 1, 2, 3), ("unknown_field", "", None)),
        (("/other", 1), ("unknown_type", "type", None)),
    ]
    for (address, *args), (code, field, allowed) in cases:
        reply_address, reply = send(server, sock, address, *args)
        assert reply_address == "/ostinato/error", (address, reply)
        assert reply[:2] == [code, field], (address, reply)
        if allowed:
            assert reply[2] == allowed and allowed in reply[3]
    assert recorder.messages == []


def test_handler_exception_is_a_server_error_and_serving_goes_on(osc):
    server, _, sock = osc
    address, args = send(server, sock, "/ostinato/start", "session", "explode", "id", 3)
    assert address == "/ostinato/error" and args[0] == "server_error" and args[4] == 3
    assert send(server, sock, "/ostinato/start")[0] == "/ostinato/ack"


def test_hello_reply_port_redirects_replies(osc):
    server, recorder, sock = osc
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(5)
    with listener:
        builder = OscMessageBuilder("/ostinato/hello")
        builder.add_arg(listener.getsockname()[1])
        sock.sendto(builder.build().dgram, ("127.0.0.1", server.port))
        reply = OscMessage(listener.recv(65536))
        hello = json.loads(reply.params[2])
        assert reply.address == "/ostinato/ack" and hello["type"] == "hello"
        assert "combat" in hello["states"] and hello["server"] == "recorder"
        sock.sendto(OscMessageBuilder("/ostinato/ping").build().dgram, ("127.0.0.1", server.port))
        pong = json.loads(OscMessage(listener.recv(65536)).params[2])
        assert pong["type"] == "pong" and pong["t_ns"] > 0
    fresh = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # sock's replies still go to listener
    fresh.settimeout(5)
    with fresh:
        address, args = send(server, fresh, "/ostinato/hello", 70000)
    assert address == "/ostinato/error" and args[:2] == ["out_of_range", "reply_port"]


def test_to_message_mapping():
    assert to_message("/ostinato/stinger", ["hit", "bar"]) == {"type": "stinger", "name": "hit",
                                                               "transition": "bar"}
    assert to_message("/ostinato/session/", ["close", "p2"]) == {"type": "session", "action": "close",
                                                                "session": "p2"}


def test_port_in_use_is_a_port_error(osc):
    server, _, _ = osc
    with pytest.raises(PortError, match=str(server.port)):
        OscServer(Recorder(), port=server.port).start()


# ---------------------------------------------------------------- an endpoint that cannot die

def _reply(sock):
    reply = OscMessage(sock.recv(65536))
    return reply.address, list(reply.params)


def test_garbage_is_logged_and_dropped_malformed_osc_is_answered(osc, caplog):
    server, recorder, sock = osc
    with caplog.at_level(logging.INFO, logger="ostinato.osc"):
        sock.sendto(b"\x00\x01 not osc", ("127.0.0.1", server.port))      # dropped, logged
        sock.sendto(b"/ostinato/state\x00,s\x00\x00com", ("127.0.0.1", server.port))  # cut short
        address, args = _reply(sock)
        assert address == "/ostinato/error" and args[:2] == ["invalid_json", ""]
        assert "OSC" in args[3]
        # the next reply is the ping's: the garbage got none
        assert send(server, sock, "/ostinato/ping", "id", 5)[1][:2] == ["ping", 5]
    messages = [r.getMessage() for r in caplog.records if r.name == "ostinato.osc"]
    assert any("not OSC" in m for m in messages) and any("malformed" in m for m in messages)
    assert recorder.messages[-1]["type"] == "ping" and len(recorder.messages) == 1


def test_bundles_are_answered_at_once_and_deep_ones_refused(osc):
    server, recorder, sock = osc
    bundle = OscBundleBuilder(time.time() + 86400)  # a day ahead: not waited for
    for address, args in (("/ostinato/ping", ["id", 1]), ("/ostinato/tempo", [1000.0, "id", 2])):
        builder = OscMessageBuilder(address)
        for arg in args:
            builder.add_arg(arg)
        bundle.add_content(builder.build())
    sock.sendto(bundle.build().dgram, ("127.0.0.1", server.port))
    assert _reply(sock)[1][:2] == ["ping", 1]
    assert _reply(sock)[1][:2] == ["out_of_range", "bpm"]
    # bundles nested 3,000 deep: python-osc recurses into them; answered, not fatal
    deep = OscMessageBuilder("/ostinato/ping").build().dgram
    for _ in range(3000):
        deep = b"#bundle\x00" + b"\x00" * 7 + b"\x01" + struct.pack(">i", len(deep)) + deep
    sock.sendto(deep, ("127.0.0.1", server.port))
    address, args = _reply(sock)
    assert address == "/ostinato/error" and args[0] == "invalid_json"
    assert send(server, sock, "/ostinato/ping")[0] == "/ostinato/ack"


def test_a_base_exception_in_the_handler_is_answered_and_serving_goes_on(osc, caplog):
    server, recorder, sock = osc
    recorder.raise_next = SystemExit(2)
    with caplog.at_level(logging.ERROR, logger="ostinato.osc"):
        address, args = send(server, sock, "/ostinato/stop", "id", 8)
    assert address == "/ostinato/error" and (args[0], args[4]) == ("server_error", 8)
    assert any("id 8" in r.getMessage() for r in caplog.records if r.name == "ostinato.osc")
    assert send(server, sock, "/ostinato/start")[0] == "/ostinato/ack"


def test_huge_arguments_still_get_a_reply_that_fits_a_datagram(osc):
    server, _, sock = osc
    address, args = send(server, sock, "/ostinato/mood/" + "x" * 20000, 1)
    assert address == "/ostinato/error" and args[0] == "unknown_field"
    assert len(args[1]) <= 2048 and len(args[3]) <= 2048
    address, args = send(server, sock, "/ostinato/hello", True)  # a boolean is no reply port
    assert address == "/ostinato/error" and args[0] == "unknown_field"


# ---------------------------------------------------------------- themes: notes as JSON text

TRIAD = "[[62,0,1],[65,1,1],[69,2,2]]"  # D minor; OSC has no arrays, so the notes are JSON text


def test_theme_by_name_positionally_and_by_notes_as_json_text(osc):
    server, recorder, sock = osc
    address, args = send(server, sock, "/ostinato/theme", "hero", 0.3, "bar", 0, "set")
    assert address == "/ostinato/ack" and args[0] == "theme", args
    msg = recorder.messages[-1]
    assert (msg["name"], msg["variation"], msg["transition"], msg["blend_beats"], msg["action"],
            msg["notes"]) == ("hero", 0.3, "bar", 0.0, "set", None)
    assert send(server, sock, "/ostinato/theme/notes", TRIAD, "id", 4)[1][:2] == ["theme", 4]
    msg = recorder.messages[-1]
    assert (msg["notes"], msg["name"], msg["action"], msg["variation"], msg["id"]) == \
        ([[62, 0, 1], [65, 1, 1], [69, 2, 2]], None, "set", 0.3, 4)
    # notes come last positionally: nil keeps the fields before them at their defaults
    send(server, sock, "/ostinato/theme", None, 0.5, "now", None, None, TRIAD, "session", "p2")
    msg = recorder.messages[-1]
    assert (msg["notes"][2], msg["variation"], msg["transition"], msg["session"]) == \
        ([69, 2, 2], 0.5, "now", "p2")
    send(server, sock, "/ostinato/theme", None, None, "beat", 2.0, "free")
    msg = recorder.messages[-1]
    assert (msg["action"], msg["blend_beats"], msg["notes"], msg["name"]) == ("free", 2.0, None, None)
    assert to_message("/ostinato/theme/notes", [TRIAD]) == {"type": "theme", "notes": TRIAD}


def test_theme_errors_name_the_field_as_over_json(osc):
    server, recorder, sock = osc
    cases = [
        (("/ostinato/theme/notes", "[[62,0,1],[65,1,1]]"), ("out_of_range", "notes", "at least 3 notes")),
        (("/ostinato/theme/notes", "[[62,0,1],[65,1,1],[130,2,1]]"), ("out_of_range", "notes", "notes[2]: pitch 130")),
        (("/ostinato/theme/notes", "[[62,0,1],[62,0.5,1],[69,2,1]]"), ("out_of_range", "notes", "overlaps")),
        (("/ostinato/theme/notes", "D F A"), ("bad_type", "notes", "not JSON")),
        (("/ostinato/theme/notes", "[62, 65, 69]"), ("bad_type", "notes", "not a list of integers")),
        (("/ostinato/theme/notes", 62), ("bad_type", "notes", "not integer")),
        (("/ostinato/theme/variation", 0.5), ("missing_field", "notes,name", "notes or name")),
        (("/ostinato/theme", "hero", None, None, None, "free"), ("unknown_field", "name", "free")),
        (("/ostinato/theme", "hero", None, None, None, None, TRIAD), ("unknown_field", "name", "not both")),
        (("/ostinato/theme", "hero", 1.5), ("out_of_range", "variation", "0.0..1.0")),
    ]
    for (address, *args), (code, field, text) in cases:
        reply_address, reply = send(server, sock, address, *args)
        assert reply_address == "/ostinato/error", (address, args, reply)
        assert reply[:2] == [code, field] and text in reply[3], (address, args, reply)
    assert recorder.messages == []


@pytest.fixture
def engine_osc(request):
    """OSC in front of a real Server on the model named by the test's parameter."""
    model = request.getfixturevalue(request.param)
    with Server(ServerConfig(model=str(model)), [], control=False) as srv:
        with OscServer(srv.handle, port=0, presets=srv.presets, stingers=srv.stingers) as server:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", 0))
            sock.settimeout(5)
            yield server, sock
            sock.close()


@pytest.mark.parametrize("engine_osc", ["theme_model"], indirect=True)
def test_a_theme_model_server_takes_themes_over_osc(engine_osc):
    server, sock = engine_osc
    address, args = send(server, sock, "/ostinato/theme", "hero", 0.3, "bar", 0, "set")
    assert address == "/ostinato/ack", args
    reply = json.loads(args[2])
    assert reply["theme"] == {"key": "D minor", "bars": 2, "notes": 10, "source": "hero"}
    assert (reply["variation"], reply["blend_beats"]) == (0.3, 0.0)
    address, args = send(server, sock, "/ostinato/theme/notes", TRIAD)
    reply = json.loads(args[2])
    assert address == "/ostinato/ack" and reply["theme"] == {"key": "D minor", "bars": 1, "notes": 3,
                                                             "source": "notes"}, args
    address, args = send(server, sock, "/ostinato/theme", "villain")  # not in states.toml
    assert address == "/ostinato/error" and args[:2] == ["bad_choice", "name"] and "hero" in args[2]
    address, args = send(server, sock, "/ostinato/theme/action", "free")
    assert address == "/ostinato/ack" and json.loads(args[2])["theme"] is None


@pytest.mark.parametrize("engine_osc", ["model_path"], indirect=True)
def test_a_plain_model_server_takes_themes_over_osc(engine_osc):
    """No theme model: the melody states the theme, so a theme by name or notes is taken."""
    server, sock = engine_osc
    for args, source in ((("hero", 0.3, "bar", 0, "set"), "hero"), ((None,) * 5 + (TRIAD,), "notes")):
        address, reply = send(server, sock, "/ostinato/theme", *args)
        assert address == "/ostinato/ack", reply
        assert json.loads(reply[2])["theme"]["source"] == source
    address, reply = send(server, sock, "/ostinato/theme/notes", "[[62,0,1],[65,1,1]]")
    assert reply[:2] == ["out_of_range", "notes"] and "at least 3 notes" in reply[3]  # validation first
    assert send(server, sock, "/ostinato/theme/action", "free")[0] == "/ostinato/ack"


# ---------------------------------------------------------------- the event stream, relayed

@pytest.fixture
def relay():
    """An OSC endpoint relaying a real ZeroMQ event stream (no engine: the test sends)."""
    stream = ZmqPubPort("tcp://127.0.0.1:*", sessions=["main", "p2"])
    with stream, OscServer(Recorder(), port=0, events=stream) as server:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        yield server, stream, sock
        sock.close()


def _events(sock, n):
    """The next ``n`` relayed events: (timetag as Unix seconds, address, args)."""
    out = []
    for _ in range(n):
        packet = OscPacket(sock.recv(65536))
        out += [(timed.time, timed.message.address, list(timed.message.params)) for timed in packet.messages]
    return out


def test_subscribers_get_the_stream_as_timetagged_bundles(relay):
    server, stream, sock = relay
    address, args = send(server, sock, "/ostinato/subscribe", "note_on", "tempo", "session", "p2", "id", 7)
    ack = json.loads(args[2])
    assert (address, args[:2]) == ("/ostinato/ack", ["subscribe", 7])
    assert (ack["subscribed"], ack["types"], ack["events_ahead_ms"]) == (True, ["note_on", "tempo"], 0.0)
    t = time.monotonic_ns() + 2 * 10**9  # two seconds from now
    stream.send(0x90, 60, 100, t, 4.5, 1)  # note-on, session p2
    stream.send(0x80, 60, 0, t + 1000, 5.0, 1)  # note-off: not subscribed
    stream.publish("tempo", session=0, t_ns=t + 2000, beat=5.0, bpm=140.0)
    wall = time.time()
    (tag_on, on, on_args), (tag_tempo, tempo, tempo_args) = _events(sock, 2)
    assert (on, on_args) == ("/ostinato/event/note_on", ["p2", 0, t, 4.5, 0, 60, 100])
    assert tempo == "/ostinato/event/tempo" and tempo_args[:4] == ["main", 2, t + 2000, 5.0]
    assert json.loads(tempo_args[4])["bpm"] == 140.0  # markers: the whole event as JSON text
    # the timetag is the event's time on the wall clock: two seconds ahead (to within the
    # time between the send and the read here, far under the 1 s allowed)
    assert abs(tag_on - (wall + 2.0)) < 1.0 and abs(tag_tempo - (wall + 2.0)) < 1.0


def test_unsubscribe_unknown_types_and_no_stream(relay, osc):
    server, stream, sock = relay
    address, args = send(server, sock, "/ostinato/subscribe", "note_on", "nope", "id", 3)
    assert (address, args[:3]) == ("/ostinato/error", ["bad_choice", "types", ", ".join(EVENT_TYPES)])
    assert args[4] == 3
    send(server, sock, "/ostinato/subscribe")  # every type
    address, args = send(server, sock, "/ostinato/unsubscribe", "id", "u")
    assert (address, args[:2], json.loads(args[2])["subscribed"]) == ("/ostinato/ack", ["unsubscribe", "u"], False)
    stream.publish("tempo", bpm=120.0)
    sock.settimeout(0.3)
    with pytest.raises(socket.timeout):  # nothing relayed once unsubscribed
        sock.recv(65536)
    plain, _, plain_sock = osc  # an endpoint without an event stream refuses, naming type
    address, args = send(plain, plain_sock, "/ostinato/subscribe", "note_on")
    assert (address, args[0], args[1]) == ("/ostinato/error", "unknown_type", "type")


def test_a_seventeenth_subscriber_replaces_the_oldest(relay, caplog):
    server, stream, sock = relay
    socks = []
    try:
        for _ in range(MAX_SUBSCRIBERS + 1):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            s.settimeout(5)
            socks.append(s)
            assert send(server, s, "/ostinato/subscribe", "tempo")[0] == "/ostinato/ack"
        stream.publish("tempo", bpm=90.0)
        for s in socks[1:]:
            assert _events(s, 1)[0][1] == "/ostinato/event/tempo"
        socks[0].settimeout(0.3)
        with pytest.raises(socket.timeout):
            socks[0].recv(65536)
        assert "replaced" in caplog.text
    finally:
        for s in socks:
            s.close()


def test_a_failing_relay_costs_the_stream_nothing(relay, caplog, monkeypatch):
    server, stream, sock = relay
    send(server, sock, "/ostinato/subscribe")
    monkeypatch.setattr("realtime.osc._event_packet", lambda *a: 1 / 0)  # a bug in the relay
    with EventListener(stream.bound_address, timeout=0.2) as listener:
        deadline = time.monotonic() + 5
        while listener.recv(timeout=0.02) is None and time.monotonic() < deadline:
            stream.publish("tempo", bpm=100.0)  # PUB drops until the subscription arrives
        assert not stream.closed and "OSC event relay failed" in caplog.text


# ---------------------------------------------------------------- voices: JSON text, last

VOICES = '{"drums": false, "harmony": {"program": 89, "octave": -1}}'
NORMALISED = {"drums": {"play": False}, "harmony": {"program": 89, "octave": -1}}


def test_voices_as_json_text_positionally_last_and_by_field(osc):
    """OSC has no objects: voices come as JSON text, after every field that was there
    before (the positions of the others are unchanged), or as one field."""
    server, recorder, sock = osc
    send(server, sock, "/ostinato/mood", 0.5, 0.8, 0.3, "now", None, None, VOICES)
    msg = recorder.messages[-1]
    assert (msg["valence"], msg["transition"], msg["tonality"], msg["voices"]) == \
        (0.5, "now", None, NORMALISED)
    send(server, sock, "/ostinato/mood", 0.5, 0.8)  # as before: no voices, none kept
    assert recorder.messages[-1]["voices"] is None
    address, args = send(server, sock, "/ostinato/mood/voices", '{"bass": true}', "id", 5)
    assert (address, args[:2]) == ("/ostinato/ack", ["mood", 5])  # voices alone make a mood
    assert recorder.messages[-1]["voices"] == {"bass": {"play": True}}
    send(server, sock, "/ostinato/state", "combat", "now", None, None, '{"drums": "auto"}')
    msg = recorder.messages[-1]
    assert (msg["name"], msg["transition"], msg["voices"]) == ("combat", "now", {"drums": {"play": "auto"}})
    send(server, sock, "/ostinato/session", "open", "p5", "stealth", VOICES)
    msg = recorder.messages[-1]
    assert (msg["action"], msg["session"], msg["state"], msg["voices"]) == ("open", "p5", "stealth", NORMALISED)
    assert to_message("/ostinato/mood/voices", [VOICES]) == {"type": "mood", "voices": VOICES}


def test_voices_errors_name_the_part_as_over_json(osc):
    server, recorder, sock = osc
    cases = [
        (('{"kazoo": true}',), ("bad_choice", "voices", "melody, bass, harmony, drums")),
        (('{"bass": {"program": 128}}',), ("out_of_range", "voices.bass.program", "0..127")),
        (('{"bass": {"channel": 16}}',), ("out_of_range", "voices.bass.channel", "0..15")),
        (('{"bass": {"channel": 3}, "melody": {"channel": 3}}',), ("out_of_range", "voices", "two voices")),
        (('{"melody": false, "bass": false, "harmony": false, "drums": false}',),
         ("out_of_range", "voices", "every voice off")),
        (("{}",), ("out_of_range", "voices", "empty")),
        (("drums off",), ("bad_type", "voices", "not JSON")),
        ((3,), ("bad_type", "voices", "not integer")),
        (("[" * 5000 + "]" * 5000,), ("bad_type", "voices", "nested")),
    ]
    for args, (code, field, text) in cases:
        reply_address, reply = send(server, sock, "/ostinato/mood/voices", *args)
        assert reply_address == "/ostinato/error", (args, reply)
        assert reply[:2] == [code, field] and text in reply[3], (args, reply)
    address, reply = send(server, sock, "/ostinato/session", "close", "p2", None, VOICES)
    assert (address, reply[:2]) == ("/ostinato/error", ["unknown_field", "voices"])
    assert recorder.messages == []


def test_relayed_notes_carry_their_voice(relay):
    """A note of a channel whose voice the stream knows carries it as a fourth argument
    (a string); one of a channel without a voice has three, as before."""
    server, stream, sock = relay
    send(server, sock, "/ostinato/subscribe", "note_on", "note_off")
    stream.voices = {0: {9: "drums", 15: "stinger"}}
    t = time.monotonic_ns()
    stream.send(0x99, 36, 110, t, 1.0, 0)  # drums, main
    stream.send(0x89, 36, 0, t + 1000, 1.5, 0)
    stream.send(0x91, 48, 90, t + 2000, 2.0, 0)  # channel 1: no voice known
    events = [(address, args) for _, address, args in _events(sock, 3)]
    assert events == [("/ostinato/event/note_on", ["main", 0, t, 1.0, 9, 36, 110, "drums"]),
                      ("/ostinato/event/note_off", ["main", 1, t + 1000, 1.5, 9, 36, 0, "drums"]),
                      ("/ostinato/event/note_on", ["main", 2, t + 2000, 2.0, 1, 48, 90])]
