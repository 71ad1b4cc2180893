"""The live display, on real events from a short server run over real ZeroMQ sockets."""
import io
import json
import re
import subprocess
import sys
import time

import pytest
import zmq

from engine.errors import InvalidMessage, PortError
from realtime.outputs import ZmqPubPort
from realtime.protocol import SYNC_TYPES, encode_event, type_prefix
from realtime.server import Server, ServerConfig
from realtime.show import Show, ShowConfig, note_name, start_show

LINE = re.compile(r"^\[\s*\d+\.\d s\]   main(?: \[(?P<state>\w+)\])?: "
                  r"(?P<key>key \?|[A-G][#b]? (?:major|minor)), (?P<bpm>BPM \?|[\d.]+ BPM) \| "
                  r"\s*(?P<rate>\d+\.\d) notes/s, vel (?P<vel>\d+-\d+|-) \| "
                  r"(?P<notes>-|(?:[A-G]#?-?\d+ ?)+)$")
BEAT_LINE = re.compile(r"^\[\s*\d+\.\d s\]   main beat: (?P<ticks>[|.](?: [|.])*)  "
                       r"\(bar (?P<bar>\d+) beat (?P<beat>\d+)\)$")
CUE_LINE = re.compile(r"^\[\s*\d+\.\d s\] stream: cue (?P<name>\w+) plays at beat "
                      r"(?P<beat>[\d.]+) \(main\)$")


class Collector:
    """A plain SUB socket that keeps every event frame, the opt-in sync ones too, to check
    the display against."""

    def __init__(self, address):
        self.sock = zmq.Context.instance().socket(zmq.SUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        for kind in SYNC_TYPES:
            self.sock.setsockopt(zmq.SUBSCRIBE, type_prefix(kind))
        self.sock.connect(address)
        self.events = []

    def pump(self, seconds):
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            if self.sock.poll(max(1, int(left * 1000))):
                self.events.append(json.loads(self.sock.recv()))


@pytest.fixture(scope="module")
def run(model_path):
    """A 4 s performance: explore, a cue at the next beat, then combat at the next bar;
    the display and a collector both listen.  Returns (display text, events, combat ack,
    display); the cue's ack is ``display.cue_ack``."""
    pub = ZmqPubPort("tcp://127.0.0.1:*")
    srv = Server(ServerConfig(model=str(model_path), seed=3), [pub], control=False)
    out = io.StringIO()
    coll = Collector(pub.bound_address)
    with start_show(pub.bound_address, out, ShowConfig(interval_s=0.5)) as show:
        # both subscriptions are live before the first note: probe until each has heard one
        # (a SUB socket misses what was published before it connected, however long that is)
        deadline = time.monotonic() + 30.0
        while not (coll.events and show.events):
            assert time.monotonic() < deadline, "the SUB sockets never connected"
            pub.publish("transport", state="probe")
            coll.pump(0.02)
        coll.events.clear()
        with srv:
            coll.pump(1.5)
            show.cue_ack = srv.call("cue", name="door", at="beat")
            ack = srv.call("state", name="combat", transition="bar")
            coll.pump(2.5)
        coll.pump(0.2)
    coll.sock.close()
    return out.getvalue(), coll.events, ack, show


def test_note_names():
    assert [note_name(p) for p in (60, 61, 78, 0, 127, 69)] == \
        ["C4", "C#4", "F#5", "C-1", "G9", "A4"]
    for bad in (-1, 128, 60.0, "60", True, None):
        with pytest.raises(InvalidMessage) as err:
            note_name(bad)
        assert err.value.field == "pitch" and err.value.allowed == "0..127"


def test_config_rejects_bad_values_naming_the_field():
    for field, value in (("interval_s", 0), ("window_s", -1.0), ("last_notes", 99),
                         ("poll_ms", 0), ("interval_s", float("nan")),
                         ("keep_beats", -1)):
        with pytest.raises(InvalidMessage) as err:
            ShowConfig(**{field: value})
        assert err.value.field == field and ".." in err.value.allowed


def test_live_lines_follow_the_music(run):
    text, events, ack, show = run
    status = [m for m in map(LINE.match, text.splitlines()) if m]
    assert len(status) >= 6, text  # about 2 lines a second for 4 s
    assert all(LINE.match(line) or BEAT_LINE.match(line) or CUE_LINE.match(line)
               for line in text.splitlines()), text
    assert any(float(m["rate"]) > 0 for m in status)
    # the combat preset is announced at once but heard from the bar line on
    assert status[-1]["state"] == "combat" and status[-1]["key"].endswith("minor")
    assert status[-1]["bpm"] == "140 BPM"
    heard = [n["pitch"] for n in events if n["type"] == "note_on"]
    assert show.sessions["main"].notes == len(heard)  # the display missed nothing
    names = [note_name(p) for p in heard]
    printed = status[-1]["notes"].split()  # the last notes before that line was printed
    assert len(printed) == 4 and any(names[k - 4:k] == printed for k in range(4, len(names) + 1))
    final = LINE.match("[   0.0 s]   " + show.status()[0])
    assert final["notes"].split() == names[-4:]


def test_status_measures_the_last_second_of_real_events(run):
    _, events, ack, _ = run
    show = Show(stream=io.StringIO())
    ons = [e for e in events if e["type"] == "note_on"]
    assert len(ons) >= 8
    probe = ons[len(ons) // 2]
    for e in events[:events.index(probe) + 1]:
        show.feed(e)
    inside = [e for e in ons if probe["t_ns"] - 1e9 < e["t_ns"] <= probe["t_ns"]]
    m = LINE.match("[   0.0 s]   " + show.status(probe["t_ns"])[0])
    assert m, show.status(probe["t_ns"])
    assert float(m["rate"]) == pytest.approx(len(inside), abs=0.05)
    vels = [e["velocity"] for e in inside]
    assert m["vel"] == f"{min(vels)}-{max(vels)}"
    assert m["notes"].split() == [note_name(e["pitch"]) for e in inside[-4:]] or len(inside) < 4


def test_a_quantised_change_shows_only_from_its_beat(run):
    _, events, ack, _ = run
    show = Show(stream=io.StringIO())
    at = next(i for i, e in enumerate(events) if e["type"] == "mood" and e.get("name") == "combat")
    assert events[at]["beat"] == ack["beat"]
    for e in events[:at + 1]:
        show.feed(e)
    assert show.sessions["main"].name != "combat"  # announced, not yet heard
    notes_after = [e for e in events[at + 1:] if e["type"] in ("note_on", "note_off")]
    assert any(e["beat"] >= ack["beat"] for e in notes_after)
    for e in notes_after:
        show.feed(e)
        assert (show.sessions["main"].name == "combat") == (e["beat"] >= ack["beat"]), e


def test_bad_frames_are_counted_and_the_display_goes_on():
    ctx = zmq.Context.instance()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    out = io.StringIO()
    good = encode_event("note_on", "main", 0, time.monotonic_ns(), 0.0, 0, 64, 90)
    bad = [b"not json", b'{"v":2,"type":"note_on"}', b'{"v":1,"type":"note_on","session":"main",'
           b'"t_ns":1,"beat":0.0,"pitch":300,"velocity":90}']
    with Show(f"tcp://127.0.0.1:{port}", out, ShowConfig(interval_s=0.2)) as show:
        deadline = time.monotonic() + 5.0
        while show.events == 0 and time.monotonic() < deadline:  # until the SUB has joined
            for frame in bad + [good]:
                pub.send(frame)
            time.sleep(0.05)
        time.sleep(0.3)
    pub.close()
    assert show.events >= 1 and show.bad_frames >= 3
    assert "E4" in out.getvalue()


def test_a_closed_stream_stops_the_lines_not_the_program():
    out = io.StringIO()
    show = Show(stream=out)
    out.close()
    show.say("nobody reads this")  # no exception
    show.say("nor this")


def test_start_needs_an_address_and_a_bad_address_is_a_port_error():
    with pytest.raises(PortError):
        Show(stream=io.StringIO()).start()
    with pytest.raises(PortError) as err:
        Show("tcp://nowhere:not-a-port", io.StringIO())
    assert "event stream" in str(err.value)


def test_serve_show_knows_the_opening_key_and_tempo(model_path):
    """``ostinato serve --show`` subscribes before the server starts, so its first line
    already names the key and tempo instead of "key ?, BPM ?"."""
    out = subprocess.run([sys.executable, "-m", "realtime.cli", "serve", "--model", str(model_path),
                          "--midi", "none", "--osc", "0", "--control", "tcp://127.0.0.1:0",
                          "--events", "tcp://127.0.0.1:0", "--show", "--seconds", "2.5"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = [m for m in map(LINE.match, out.stdout.splitlines()) if m]
    assert lines, out.stdout
    assert lines[0]["key"] != "key ?" and lines[0]["bpm"] != "BPM ?"


def test_the_beat_line_draws_the_sync_events_that_came(run):
    """The display subscribes to the opt-in beat, bar and phrase events: it keeps every one
    the collector got, draws a beat line under each status line once beats play (``|`` a
    downbeat), and prints the cue when the stream announces it, at the beat its ack said."""
    text, events, _, show = run
    sync = [(e["session"], e["beat"], e["type"]) for e in events if e["type"] in SYNC_TYPES]
    assert {k for _, _, k in sync} >= {"beat", "bar"}
    assert list(show.beats) == sync  # none missed, none made up
    beats = [e for e in events if e["type"] == "beat"]
    assert [e["beat"] for e in beats] == [float(b) for b in range(int(beats[0]["beat"]),
                                                                   int(beats[-1]["beat"]) + 1)]
    lines = [m for m in map(BEAT_LINE.match, text.splitlines()) if m]
    assert len(lines) >= 4, text
    for m in lines:  # its position is a beat the stream announced
        assert any(e["bar"] == int(m["bar"]) and e["beat_in_bar"] == int(m["beat"]) - 1
                   for e in beats), m.group(0)
    assert any("|" in m["ticks"] for m in lines), text
    cue = next(e for e in events if e["type"] == "cue")
    assert cue["name"] == "door" and cue["beat"] == show.cue_ack["beat"]
    assert [(c[1], c[2]) for c in show.cues] == [(cue["beat"], "door")]
    said = [m for m in map(CUE_LINE.match, text.splitlines()) if m]
    assert [(m["name"], float(m["beat"])) for m in said] == [("door", cue["beat"])]


def test_the_beat_line_marks_downbeats_and_the_position():
    show = Show(stream=io.StringIO())
    t = 1_000_000_000
    for i, beat in enumerate((3.0, 4.0, 5.0)):
        show.feed(dict(type="beat", session="main", beat=beat, t_ns=t + i * 300_000_000,
                       bar=int(beat) // 4, beat_in_bar=int(beat) % 4, phrase=0,
                       bar_in_phrase=int(beat) // 4, bpm=120.0))
    lines = show.status(t + 700_000_000)
    assert lines[1] == "main beat: . | .  (bar 1 beat 2)", lines
    # a beat announced early (serve --events-ahead) shows once its time has come
    assert show.status(t + 350_000_000)[1] == "main beat: . |  (bar 1 beat 1)"
    assert list(show.beats) == [("main", 3.0, "beat"), ("main", 4.0, "beat"),
                                ("main", 5.0, "beat")]
    with pytest.raises(InvalidMessage) as err:
        show.feed(dict(type="beat", session="main", beat=6.0, t_ns=t, bar=1, beat_in_bar="x"))
    assert err.value.field == "beat_in_bar"
