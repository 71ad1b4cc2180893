"""Outputs against real parts: a JACK server and a second JACK client, ZeroMQ sockets on
127.0.0.1, .mid files read back with mido."""
import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import mido
import pytest
import rtmidi
import symusic
import zmq

from realtime import cli
from engine.errors import InvalidMessage, PortError
from realtime.jack import jack_ports
from realtime.jackreader import NativeJackReader
from realtime.outputs import (BasePort, MidiFilePort, MultiPort, RtMidiPort, ZmqPubPort,
                            midi_bytes, open_port, resolve_api)
from realtime.protocol import decode_event

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_000_000_000  # a t_ns for events whose wall time does not matter to the test


# ---------------------------------------------------------------- bytes and APIs

def test_midi_bytes_has_the_wire_length_of_each_message():
    assert midi_bytes(0x90, 60, 100) == (0x90, 60, 100)
    assert midi_bytes(0xC3, 5, 0) == (0xC3, 5)          # program change: 2 bytes
    assert midi_bytes(0xF8, 0, 0) == (0xF8,)            # clock: 1 byte
    assert midi_bytes(0xF2, 17, 0) == (0xF2, 17, 0)     # song position: 3 bytes


@pytest.mark.parametrize("args, field", [
    ((0x7F, 0, 0), "status"), ((0xF0, 0, 0), "status"), ((256, 0, 0), "status"),
    ((0x90, 128, 1), "data1"), ((0x90, 60, -1), "data2"), ((0x90, 60.0, 1), "data1"),
])
def test_midi_bytes_names_the_bad_field(args, field):
    with pytest.raises(InvalidMessage) as info:
        midi_bytes(*args)
    assert info.value.field == field and field in str(info.value) and info.value.allowed


def test_api_names_and_the_environment(monkeypatch):
    monkeypatch.delenv("RTMIDI_API", raising=False)
    assert resolve_api() == rtmidi.API_UNSPECIFIED
    assert resolve_api("jack") == resolve_api("UNIX_JACK") == rtmidi.API_UNIX_JACK
    assert resolve_api(rtmidi.API_LINUX_ALSA) == rtmidi.API_LINUX_ALSA
    monkeypatch.setenv("RTMIDI_API", "unix_jack")  # python-rtmidi upper-cases it too
    assert resolve_api() == rtmidi.API_UNIX_JACK
    assert resolve_api("alsa") == rtmidi.API_LINUX_ALSA  # the argument wins
    monkeypatch.setenv("RTMIDI_API", "JAKC")
    with pytest.raises(InvalidMessage) as info:
        resolve_api()
    assert info.value.field == "RTMIDI_API" and "UNIX_JACK" in str(info.value)
    with pytest.raises(InvalidMessage) as info:
        resolve_api("midi")
    assert info.value.field == "api"


def test_an_api_not_compiled_in_is_a_port_error():
    compiled = rtmidi.get_compiled_api()
    missing = [a for a in (rtmidi.API_MACOSX_CORE, rtmidi.API_WINDOWS_MM, rtmidi.API_LINUX_ALSA)
               if a not in compiled]
    if not missing:
        pytest.skip("every platform API is compiled into this python-rtmidi")
    with pytest.raises(PortError, match="not compiled into python-rtmidi"):
        RtMidiPort(api=missing[0])


# ---------------------------------------------------------------- rtmidi over JACK

def test_virtual_port_appears_in_jack_lsp_under_rtmidi_api_env(jack_server, monkeypatch):
    monkeypatch.setenv("RTMIDI_API", "UNIX_JACK")
    # JACK renames a second "Ostinato" client "Ostinato-01": others may run one here
    ours = re.compile(r"^Ostinato(-\d+)?:Ostinato$")
    before = {p.name for p in jack_ports()}
    with RtMidiPort() as port:
        assert port.api == rtmidi.API_UNIX_JACK
        new = [p for p in jack_ports() if p.name not in before and ours.match(p.name)]
        assert len(new) == 1 and new[0].is_midi and new[0].is_output
    assert new[0].name not in {p.name for p in jack_ports()}


def test_second_jack_client_receives_exact_bytes_in_order(jack_server, unique_name):
    sent = [(0x90, 60, 100), (0x91, 64, 90), (0x80, 60, 0), (0x91, 64, 0),  # vel-0 note-off kept
            (0xB0, 7, 99), (0xC2, 12, 0), (0xE0, 0, 64), (0xF8, 0, 0), (0xF2, 17, 0)]
    with RtMidiPort(unique_name, api="jack") as port, \
            NativeJackReader(f"{unique_name}:{unique_name}") as reader:
        reader.sync(lambda: port.send(0xFE, 0, 0, T0, 0.0))
        for i, msg in enumerate(sent):
            port.send(*msg, t_ns=time.monotonic_ns(), beat=i * 0.5)
        got = reader.wait_for(len(sent))
    assert [m for _, m in got] == [midi_bytes(*m) for m in sent]
    times = [t for t, _ in got]
    assert times == sorted(times)


def test_close_ends_sounding_notes(jack_server, unique_name):
    port = RtMidiPort(unique_name, api="jack")
    with NativeJackReader(f"{unique_name}:{unique_name}") as reader:
        with port:
            reader.sync(lambda: port.send(0xFE, 0, 0, T0, 0.0))
            port.send(0x90, 60, 100, T0, 0.0)
            port.send(0x93, 67, 80, T0, 0.0)
            port.send(0x90, 64, 100, T0, 0.5)
            port.send(0x90, 64, 0, T0, 1.0)  # ended by a velocity-0 note-on
        got = [m for _, m in reader.wait_for(5)]
    assert got[:4] == [(0x90, 60, 100), (0x93, 67, 80), (0x90, 64, 100), (0x90, 64, 0)]
    assert sorted(got[4:]) == [(0x80, 60, 0), (0x83, 67, 0)]


def _until_heard(send, received, timeout_s=5.0):
    """Send until something arrives: a new JACK connection takes a few cycles to carry bytes."""
    deadline = time.monotonic() + timeout_s
    while not received and time.monotonic() < deadline:
        send()
        time.sleep(0.02)
    assert received, "the JACK connection never carried a message"


def test_connect_to_an_existing_port_by_name(jack_server, unique_name):
    received = []
    synth = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name=unique_name)  # stands for a hardware synth
    try:
        synth.ignore_types(active_sense=False)
        synth.set_callback(lambda event, data: received.append(tuple(event[0])))
        synth.open_virtual_port("synth-in")
        with RtMidiPort("out", api="jack", connect=f"{unique_name}:synth-in") as port:
            assert port.port_name == f"{unique_name}:synth-in"
            _until_heard(lambda: port.send(0xFE, 0, 0, T0, 0.0), received)
            time.sleep(0.1)  # let any probe still in flight land before forgetting them
            received.clear()
            port.send(0x90, 72, 64, T0, 0.0)
            port.send(0x80, 72, 0, T0, 1.0)
            deadline = time.monotonic() + 5
            while len(received) < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
        with pytest.raises(PortError, match="matches no MIDI output port"):
            RtMidiPort("out", api="jack", connect=f"{unique_name}-nowhere")
    finally:
        synth.delete()
    assert received == [(0x90, 72, 64), (0x80, 72, 0)]


def test_jack_api_without_a_server_is_a_clear_port_error(tmp_path):
    # a subprocess, so that libjack in this process never sees the bogus server name;
    # JACK_NO_START_SERVER keeps libjack from starting one
    env = dict(os.environ, JACK_DEFAULT_SERVER=f"no-such-server-{os.getpid()}",
               JACK_NO_START_SERVER="1", PYTHONPATH=str(ROOT))
    code = ("import json\n"
            "from engine.errors import PortError\n"
            "from realtime.outputs import RtMidiPort\n"
            "try:\n"
            "    RtMidiPort(api='jack').close()\n"
            "    print(json.dumps(None))\n"
            "except PortError as exc:\n"
            "    print(json.dumps(str(exc)))\n")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=30, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    message = json.loads(done.stdout.strip().splitlines()[-1])
    assert message is not None
    assert "Jack" in message and "JACK server not running" in message and "jackd" in message


@pytest.mark.skipif(not sys.platform.startswith("linux") or os.path.exists("/dev/snd/seq"),
                    reason="not Linux, or this machine has an ALSA sequencer")
def test_alsa_without_a_sequencer_says_so(monkeypatch):
    with pytest.raises(PortError, match="/dev/snd/seq"):
        RtMidiPort(api="alsa")
    monkeypatch.delenv("RTMIDI_API", raising=False)
    with pytest.raises(PortError, match="default MIDI API.*RTMIDI_API=UNIX_JACK"):
        RtMidiPort()  # the platform default is ALSA


def test_alsa_virtual_port_opens(alsa_seq, unique_name):
    with RtMidiPort(unique_name, api="alsa") as port:
        port.send(0x90, 60, 1, T0, 0.0)
        assert port.api == rtmidi.API_LINUX_ALSA


# ---------------------------------------------------------------- ZeroMQ stream

def heard(port):
    """A SUB socket connected to ``port`` (a ZmqPubPort) that already hears it."""
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(port.bound_address)
    # a SUB misses what is published before its subscription arrives: publish markers
    # until one gets through, then drain them
    deadline = time.monotonic() + 10
    while not sub.poll(50):
        assert time.monotonic() < deadline, "SUB never connected"
        port.publish("transport", state="start")
    while sub.poll(200):
        sub.recv()
    return sub


@pytest.fixture
def stream():
    """A ZmqPubPort on a free port with a connected SUB socket that already hears it."""
    port = ZmqPubPort("tcp://127.0.0.1:*", sessions=["main", "boss"])
    sub = heard(port)
    yield port, sub
    sub.close()
    port.close()


def _receive(sub, count):
    out = []
    while len(out) < count and sub.poll(5000):
        out.append(decode_event(sub.recv()))
    return out


def test_zmq_notes_reach_a_real_subscriber(stream):
    port, sub = stream
    first_seq = port.seq
    port.send(0x90, 60, 90, 123_456_789, 16.25, 0)
    port.send(0xB0, 64, 127, 123_456_790, 16.25, 0)   # controller: not on the stream
    port.send(0xF8, 0, 0, 123_456_791, 16.25, 0)      # clock: not on the stream
    port.send(0x92, 48, 70, 123_457_000, 16.5, 1)
    port.send(0x80, 60, 33, 123_458_000, 17.0, 0)
    port.send(0x92, 48, 0, 123_459_000, 17.5, 1)      # velocity-0 note-on is a note_off
    events = _receive(sub, 4)
    assert [(e["type"], e["session"], e["channel"], e["pitch"], e["velocity"], e["beat"], e["t_ns"])
            for e in events] == [
        ("note_on", "main", 0, 60, 90, 16.25, 123_456_789),
        ("note_on", "boss", 2, 48, 70, 16.5, 123_457_000),
        ("note_off", "main", 0, 60, 0, 17.0, 123_458_000),
        ("note_off", "boss", 2, 48, 0, 17.5, 123_459_000)]
    assert [e["seq"] for e in events] == list(range(first_seq, first_seq + 4))
    assert all(e["v"] == 1 for e in events)


def test_zmq_markers_sessions_and_close(stream):
    port, sub = stream
    port.sessions = {0: "main", 3: "layer-3"}
    port.send(0x93, 62, 80, T0, 4.0, 3)
    port.publish("tempo", session=3, t_ns=T0 + 1, bpm=140.0)
    port.publish("mood", session="main", valence=0.5, arousal=0.8, intensity=0.3)
    with pytest.raises(InvalidMessage) as info:
        port.publish("explosion")
    assert info.value.field == "type" and "tempo" in info.value.allowed
    port.close()  # the sounding note 62 is ended on the stream
    note, tempo, mood, off = _receive(sub, 4)
    assert (note["type"], note["session"]) == ("note_on", "layer-3")
    assert (tempo["type"], tempo["bpm"], tempo["beat"], tempo["t_ns"]) == ("tempo", 140.0, 4.0, T0 + 1)
    assert (mood["session"], mood["valence"], mood["arousal"]) == ("main", 0.5, 0.8)
    assert (off["type"], off["session"], off["channel"], off["pitch"]) == ("note_off", "layer-3", 3, 62)
    assert [e["seq"] for e in (note, tempo, mood, off)] == list(range(note["seq"], note["seq"] + 4))
    with pytest.raises(PortError):
        port.publish("tempo", bpm=100.0)


def test_zmq_address_in_use_is_a_port_error():
    with ZmqPubPort("tcp://127.0.0.1:0") as first:
        with pytest.raises(PortError, match=re.escape(first.bound_address)):
            ZmqPubPort(first.bound_address)
    with pytest.raises(InvalidMessage) as info:
        ZmqPubPort("tcp://127.0.0.1:0", sessions=["main", ""])
    assert info.value.field == "sessions"


# ---------------------------------------------------------------- .mid recording

def _notes(track):
    """[(start tick, end tick, channel, pitch, velocity)] of a mido track."""
    now, on, out = 0, {}, []
    for msg in track:
        now += msg.time
        if msg.type == "note_on" and msg.velocity:
            on[(msg.channel, msg.note)] = (now, msg.velocity)
        elif msg.type in ("note_on", "note_off"):
            start, vel = on.pop((msg.channel, msg.note))
            out.append((start, now, msg.channel, msg.note, vel))
    assert not on, f"notes left hanging: {on}"
    return out


def test_midi_file_records_beats_tempo_and_closes_notes(tmp_path):
    path = tmp_path / "take.mid"
    with MidiFilePort(path, sessions=["main", "drums"], ticks_per_beat=96, bpm=100) as port:
        port.send(0x90, 60, 90, T0, 0.0, 0)
        port.send(0xF8, 0, 0, T0, 0.0, 0)                 # clock: not recorded
        port.send(0x80, 60, 0, T0 + 7, 1.0, 0)            # wall time is ignored
        port.send(0x90, 60, 80, T0 + 3, 1.0, 0)           # same pitch again at the same beat
        port.tempo(150, 2.0)
        port.tempo(140, 2.0)                              # the last tempo for a beat wins
        port.send(0x99, 36, 127, T0, 2.5, 1)
        port.send(0x99, 36, 0, T0, 2.75, 1)
        port.send(0xB0, 64, 127, T0, 3.0, 0)
        port.send(0x90, 67, 70, T0, 3.5, 0)               # still sounding at close
        port.send(0x80, 60, 0, T0, 4.0, 0)
    mid = mido.MidiFile(path)
    assert (mid.type, mid.ticks_per_beat, len(mid.tracks)) == (1, 96, 3)
    tempo_track, main, drums = mid.tracks
    now, tempi = 0, []
    for msg in tempo_track:
        now += msg.time
        if msg.type == "set_tempo":
            tempi.append((now, round(mido.tempo2bpm(msg.tempo), 3)))
    assert tempi == [(0, 100.0), (192, 140.0)]
    assert main.name == "main" and drums.name == "drums"
    assert _notes(main) == [(0, 96, 0, 60, 90), (96, 384, 0, 60, 80), (336, 384, 0, 67, 70)]
    assert _notes(drums) == [(240, 264, 9, 36, 127)]
    assert [(m.control, m.value) for m in main if m.type == "control_change"] == [(64, 127)]
    assert not [m for m in main if m.type == "clock"]
    # a second, independent reader (symusic's C++ parser) agrees
    score = symusic.Score(str(path))
    assert [(t.time, round(t.qpm, 3)) for t in score.tempos] == [(0, 100.0), (192, 140.0)]
    assert [[(n.time, n.end, n.pitch) for n in t.notes] for t in score.tracks] == [
        [(0, 96, 60), (96, 384, 60), (336, 384, 67)], [(240, 264, 36)]]


def test_midi_file_marks_the_timeline_sessions_presets_cues_and_themes(tmp_path):
    """Markers (FF 06) in the tempo track: a preset change, replaced while not reached, a
    cue as it played, a theme and its return; another session's are not the timeline's."""
    path = tmp_path / "take.mid"
    with MidiFilePort(path, sessions=["main", "p2"], ticks_per_beat=96) as port:
        port.publish("mood", session=0, beat=4.0, name="stealth", transition="bar")
        port.send(0x90, 60, 90, T0, 1.0, 0)
        port.publish("mood", session=0, beat=4.0, name="combat", transition="bar")  # replaces it
        port.publish("mood", session=0, beat=6.0, valence=0.3)  # no preset: no marker
        port.publish("mood", session=1, beat=4.0, name="calm")  # not the timeline
        port.send(0x80, 60, 0, T0, 5.0, 0)
        port.publish("mood", session=0, beat=8.0, name="victory")
        port.publish("cue", session=0, beat=8.0, name="door")
        port.publish("theme", session=0, beat=12.0, theme={"bars": 2})
        port.publish("theme", session=0, beat=14.0, theme=None)  # back to free: no marker
        port.publish("theme_return", session=0, beat=20.0, theme={"bars": 2})
        port.publish("tempo", session=0, beat=3.0, bpm=90)  # not a marker
    now, marks = 0, []
    for msg in mido.MidiFile(path).tracks[0]:
        now += msg.time
        if msg.type == "marker":
            marks.append((now // 96, msg.text))
    assert marks == [(4, "state combat"), (8, "state victory"), (8, "cue door"), (12, "theme"),
                     (20, "theme returns")]


def test_midi_file_split_by_channel(tmp_path):
    path = tmp_path / "channels.mid"
    with MidiFilePort(path, split="channel", ticks_per_beat=4) as port:
        port.send(0x91, 50, 60, T0, 0.25, 0)
        port.send(0x90, 62, 60, T0, 0.5, 3)
    mid = mido.MidiFile(path)
    assert [t.name for t in mid.tracks] == ["tempo", "channel 1", "channel 2"]
    # closed at the last beat seen, and never shorter than one tick
    assert _notes(mid.tracks[1]) == [(2, 3, 0, 62, 60)]
    assert _notes(mid.tracks[2]) == [(1, 2, 1, 50, 60)]


def test_midi_file_bad_input_names_the_field(tmp_path):
    with pytest.raises(PortError, match="does not exist"):
        MidiFilePort(tmp_path / "missing" / "x.mid")
    for kwargs, field in (({"split": "track"}, "split"), ({"ticks_per_beat": 0}, "ticks_per_beat"),
                          ({"bpm": 0}, "bpm")):
        with pytest.raises(InvalidMessage) as info:
            MidiFilePort(tmp_path / "x.mid", **kwargs)
        assert info.value.field == field
    with MidiFilePort(tmp_path / "x.mid") as port:
        for call, field in ((lambda: port.tempo(float("nan"), 1.0), "bpm"),
                            (lambda: port.send(0x90, 60, 1, T0, -1.0), "beat"),
                            (lambda: port.send(0x90, 60, 1, T0, float("inf")), "beat"),
                            (lambda: port.send(0x90, 200, 1, T0, 1.0), "data1")):
            with pytest.raises(InvalidMessage) as info:
                call()
            assert info.value.field == field
    assert _notes(mido.MidiFile(tmp_path / "x.mid").tracks[0]) == []


def test_midi_file_stays_balanced_when_beats_go_back_and_sessions_share_notes(tmp_path):
    path = tmp_path / "storm.mid"
    port = MidiFilePort(path, sessions={0: "main", 1: "hero"}, ticks_per_beat=4, checkpoint_s=None)
    with port:
        # an immediate transition plays a note ahead of its beat; the release stamps the
        # (earlier) current beat: the off must not move before its on
        port.send(0x90, 60, 90, T0, 2.5, 0)
        port.send(0x80, 60, 0, T0, 2.25, 0)
        # the hero's retrigger ends main's stinger note (channel 16) in main's track
        port.send(0x9F, 72, 100, T0, 3.0, 0)
        port.send(0x8F, 72, 0, T0, 3.5, 1)
        port.send(0x9F, 72, 100, T0, 3.5, 1)
        port.send(0x8F, 72, 0, T0, 4.0, 1)
        port.send(0x80, 61, 0, T0, 4.0, 0)                 # off of a silent note: dropped
        port.tempo(90, 1.0, session=1)                     # not the timeline's: not recorded
        port.send(0x91, 50, 80, T0, 5.0, 1)
        port.checkpoint()                                  # mid-take: whole, notes closed
        mid = mido.MidiFile(path)
        assert _notes(mid.tracks[2])[-1][:2] == (20, 21)
        # the hero closes; a new session under the same name starts its beats anew
        port.send(0x81, 50, 0, T0, 6.0, 1)
        port.sessions = {0: "main"}
        port.sessions = {0: "main", 2: "hero"}
        port.send(0x91, 52, 80, T0, 1.0, 2)
        port.send(0x81, 52, 0, T0, 2.0, 2)
    assert port.dropped_offs == 1
    mid = mido.MidiFile(path)
    assert [t.name for t in mid.tracks] == ["tempo", "main", "hero"]
    assert [m.tempo for m in mid.tracks[0] if m.type == "set_tempo"] == [500000]
    assert _notes(mid.tracks[1]) == [(10, 10, 0, 60, 90), (12, 14, 15, 72, 100)]
    assert _notes(mid.tracks[2]) == [(14, 16, 15, 72, 100), (20, 24, 1, 50, 80),
                                     (24, 28, 1, 52, 80)]


# ---------------------------------------------------------------- fan-out and choice

class _FailsOnThird(BasePort):
    """A test double: no real output can be made to fail on a chosen event."""

    name = "flaky"

    def __init__(self):
        super().__init__()
        self.count = 0

    def _send(self, *args):
        self.count += 1
        if self.count == 3:
            raise OSError("device unplugged")


def test_multiport_drops_a_failing_port_and_goes_on(tmp_path, caplog):
    flaky = _FailsOnThird()
    path = tmp_path / "multi.mid"
    with MultiPort([flaky, MidiFilePort(path, ticks_per_beat=4)]) as multi:
        multi.sessions = {0: "hero"}  # reaches the recorder, which names its track so
        assert multi.sessions == {0: "hero"}
        with caplog.at_level(logging.ERROR, logger="ostinato.ports"):
            for i in range(6):
                multi.send(0x90, 60 + i, 100, T0, float(i))
                multi.send(0x80, 60 + i, 0, T0, i + 0.5)
        multi.tempo(90, 2.0)
        with pytest.raises(InvalidMessage):   # the caller's error: no port is dropped for it
            multi.send(0x90, 999, 1, T0, 7.0)
        assert len(multi.ports) == 1
    assert flaky.closed and flaky.count == 3
    failures = [r for r in caplog.records if "flaky" in r.getMessage()]
    assert len(failures) == 1 and "device unplugged" in failures[0].getMessage()
    mid = mido.MidiFile(path)
    assert mid.tracks[1].name == "hero"
    assert [n[3] for n in _notes(mid.tracks[1])] == list(range(60, 66))
    assert [m.tempo for m in mid.tracks[0] if m.type == "set_tempo"] == [500000, mido.bpm2tempo(90)]


def test_open_port_by_argument_and_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("OSTINATO_OUTPUT", "file")
    with open_port(path=tmp_path / "a.mid") as port:
        assert isinstance(port, MidiFilePort)
    with open_port("zmq", address="tcp://127.0.0.1:*") as port:
        assert isinstance(port, ZmqPubPort)
    monkeypatch.setenv("OSTINATO_OUTPUT", "speakers")
    with pytest.raises(InvalidMessage) as info:
        open_port()
    assert info.value.field == "OSTINATO_OUTPUT" and "rtmidi" in info.value.allowed


# ---------------------------------------------------------------- `ostinato ports`

def test_ports_command_lists_jack_ports(jack_server, unique_name, capsys):
    with RtMidiPort(unique_name, api="jack"):
        assert cli.main(["ports"]) == 0
        out = capsys.readouterr().out
    assert "Jack (jack), RTMIDI_API=UNIX_JACK" in out
    assert f"'{unique_name}:{unique_name}'" in out
    if not os.path.exists("/dev/snd/seq"):
        assert "ALSA" in out and "unavailable" in out and "/dev/snd/seq" in out
    assert cli.main(["ports", "--api", "jack", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["jack"] and rows[0]["error"] is None


def test_ports_command_without_a_jack_server_says_why(tmp_path):
    env = dict(os.environ, JACK_DEFAULT_SERVER=f"no-such-server-{os.getpid()}",
               PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-m", "realtime.cli", "ports", "--api", "jack"], env=env,
                          capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "unavailable" in done.stdout and "JACK server not running" in done.stdout
    bad = subprocess.run([sys.executable, "-m", "realtime.cli", "ports", "--api", "midi"], env=env,
                         capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert bad.returncode == 1 and "api 'midi'" in bad.stderr
