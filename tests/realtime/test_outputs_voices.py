"""Voices on the outputs: the event stream names each note's voice, the .mid recording has
a track per voice with its programs, and the hook reaches every port in order with the
messages.  Real ZeroMQ sockets on 127.0.0.1 and real MIDI files, read back by mido,
symusic and music21."""
import time

import mido
import pytest
import symusic
from music21 import converter, instrument

from engine.errors import InvalidMessage
from realtime.engine import FAR, Engine
from realtime.outputs import MidiFilePort, MultiPort, ZmqPubPort, voice_map
from realtime.protocol import decode_event, encode_event

from tests.realtime.test_outputs import heard

T0 = 1_000_000_000
# an ensemble session in slot 0 (channels as engine.ensemble.DEFAULTS, the stinger on 15)
ENSEMBLE = {0: "melody", 1: "bass", 2: "harmony", 9: "drums", 15: "stinger"}


@pytest.fixture
def stream():
    """A ZmqPubPort with a SUB socket that already hears it."""
    port = ZmqPubPort("tcp://127.0.0.1:*", sessions=["main", "hero"])
    sub = heard(port)
    yield port, sub
    sub.close()
    port.close()


def _receive(sub, count):
    out = []
    while len(out) < count and sub.poll(5000):
        out.append(sub.recv())
    assert len(out) == count, f"{len(out)} of {count} frames came"
    return out


def test_encode_event_puts_the_voice_after_the_velocity():
    frame = encode_event("note_on", "main", 7, 123, 4.5, 9, 36, 100, voice="drums")
    assert frame.endswith(b'"channel":9,"pitch":36,"velocity":100,"voice":"drums"}')
    assert decode_event(frame)["voice"] == "drums"
    assert b"voice" not in encode_event("note_off", "main", 8, 124, 5.0, 9, 36, 0)
    odd = decode_event(encode_event("note_off", "main", 9, 125, 5.0, 1, 40, 0, voice='ba"ss'))
    assert odd["voice"] == 'ba"ss'


def test_stream_names_the_voice_of_each_note_and_taps_get_it(stream):
    port, sub = stream
    tapped = []
    port.add_tap(lambda frame, kind, name, seq, t_ns, beat, fields:
                 tapped.append((kind, name, dict(fields))))
    port.voices = {0: ENSEMBLE, 1: {0: "melody"}}
    assert port.voices == {0: ENSEMBLE, 1: {0: "melody"}}
    port.send(0x91, 40, 80, T0, 0.0, 0)      # main's bass
    port.send(0x99, 36, 100, T0, 0.0, 0)     # main's drums
    port.send(0x95, 60, 70, T0, 0.0, 0)      # channel 5: no voice known, no field
    port.send(0x90, 72, 90, T0, 0.5, 1)      # hero, one line: melody
    port.send(0x9F, 84, 90, T0, 0.5, 0)      # main's stinger
    port.send(0x8F, 84, 0, T0, 1.0, 1)       # hero ends main's stinger note: main's voice
    port.send(0x81, 40, 0, T0, 1.0, 0)
    events = [decode_event(f) for f in _receive(sub, 7)]
    assert [(e["type"], e["session"], e["channel"], e.get("voice")) for e in events] == [
        ("note_on", "main", 1, "bass"), ("note_on", "main", 9, "drums"),
        ("note_on", "main", 5, None), ("note_on", "hero", 0, "melody"),
        ("note_on", "main", 15, "stinger"), ("note_off", "main", 15, "stinger"),
        ("note_off", "main", 1, "bass")]
    assert [(k, n, f.get("voice")) for k, n, f in tapped] == [
        (e["type"], e["session"], e.get("voice")) for e in events]
    assert tapped[0][2] == {"channel": 1, "pitch": 40, "velocity": 80, "voice": "bass"}
    port.close()  # the drums, channel 5 and the hero's melody are still sounding
    ends = [decode_event(f) for f in _receive(sub, 3)]
    assert sorted((e["type"], e["channel"], e.get("voice")) for e in ends) == [
        ("note_off", 0, "melody"), ("note_off", 5, None), ("note_off", 9, "drums")]


@pytest.mark.parametrize("bad", [[1], {-1: {}}, {"main": {}}, {0: ["melody"]},
                                 {0: {16: "melody"}}, {0: {True: "melody"}}, {0: {1: ""}},
                                 {0: {1: 3}}])
def test_a_bad_voice_map_names_the_field(bad, tmp_path):
    with pytest.raises(InvalidMessage) as info:
        voice_map(bad)
    assert info.value.field == "voices"
    with MidiFilePort(tmp_path / "x.mid", checkpoint_s=None) as rec, \
            MultiPort([rec]) as multi:
        with pytest.raises(InvalidMessage):
            multi.voices = bad
        with pytest.raises(InvalidMessage):
            rec.voices = bad
        assert multi.ports == (rec,)  # the caller's error: no port was dropped


def _tracks(path):
    """{track name: [(tick, type, channel, data)]} of a .mid file, by mido."""
    out = {}
    for track in mido.MidiFile(path).tracks[1:]:
        now, rows = 0, []
        for msg in track:
            now += msg.time
            if msg.type == "program_change":
                rows.append((now, "program", msg.channel, msg.program))
            elif msg.type in ("note_on", "note_off"):
                on = msg.type == "note_on" and msg.velocity > 0
                rows.append((now, "on" if on else "off", msg.channel, msg.note))
        out[track.name] = rows
    return out


def _play_ensemble(port, session=0, start=0.0):
    """Programs on every voice's channel, then a bar of melody, bass and drums (harmony
    never plays); the melody changes its program in the middle of the bar."""
    for channel, program in ((0, 73), (1, 32), (1, 33), (2, 48)):  # bass: the last one counts
        port.send(0xC0 | channel, program, 0, T0, start, session)
    port.send(0xB2, 7, 100, T0, start, session)  # harmony's volume: waits for a note that never comes
    for beat in range(4):
        port.send(0x99, 36 if beat % 2 == 0 else 38, 100, T0, start + beat, session)
        port.send(0x89, 36 if beat % 2 == 0 else 38, 0, T0, start + beat + 0.25, session)
    port.send(0x91, 40, 80, T0, start, session)
    port.send(0x81, 40, 0, T0, start + 2.0, session)
    port.send(0x90, 72, 90, T0, start, session)
    port.send(0x80, 72, 0, T0, start + 1.0, session)
    port.send(0xC0, 56, 0, T0, start + 2.0, session)
    port.send(0x90, 74, 90, T0, start + 2.0, session)
    port.send(0x80, 74, 0, T0, start + 4.0, session)


def test_recording_has_a_track_per_voice_that_played_with_its_programs(tmp_path):
    path = tmp_path / "ensemble.mid"
    with MidiFilePort(path, sessions=["main"], ticks_per_beat=4, checkpoint_s=None) as port:
        port.voices = {0: ENSEMBLE}
        _play_ensemble(port)
    tracks = _tracks(path)
    assert list(tracks) == ["drums", "bass", "melody"]  # in the order they first played
    assert tracks["bass"] == [(0, "program", 1, 33), (0, "on", 1, 40), (8, "off", 1, 40)]
    assert tracks["melody"] == [(0, "program", 0, 73), (0, "on", 0, 72), (4, "off", 0, 72),
                                (8, "program", 0, 56), (8, "on", 0, 74), (16, "off", 0, 74)]
    assert [r for r in tracks["drums"] if r[1] == "on"] == [
        (0, "on", 9, 36), (4, "on", 9, 38), (8, "on", 9, 36), (12, "on", 9, 38)]
    # a second, independent reader: symusic sees the programs and the drum track (it
    # splits a track by program: the melody's two instruments)
    score = symusic.Score(str(path))
    assert sorted((t.name, t.program, t.is_drum, len(t.notes)) for t in score.tracks) == [
        ("bass", 33, False, 1), ("drums", 0, True, 4), ("melody", 56, False, 1),
        ("melody", 73, False, 1)]


def test_recording_loads_in_music21_with_its_parts_and_instruments(tmp_path):
    path = tmp_path / "ensemble.mid"
    with MidiFilePort(path, sessions=["main"], ticks_per_beat=96, checkpoint_s=None) as port:
        port.voices = {0: ENSEMBLE}
        _play_ensemble(port)
    score = converter.parse(str(path))
    parts = {p.partName: p for p in score.parts}
    assert set(parts) == {"drums", "bass", "melody"}
    programs = {name: [(float(i.offset), i.midiProgram) for i in
                       part.recurse().getElementsByClass(instrument.Instrument)
                       if i.midiProgram is not None]
                for name, part in parts.items()}
    # music21 also makes an instrument of a track's name ("bass": a singer, program 53)
    assert (0.0, 33) in programs["bass"]
    assert [p for p in programs["melody"] if p[1] in (73, 56)] == [(0.0, 73), (2.0, 56)]
    assert [n.pitch.midi for n in parts["bass"].recurse().notes] == [40]
    assert [n.pitch.midi for n in parts["melody"].recurse().notes] == [72, 74]
    assert len(parts["drums"].recurse().notes) == 4


def test_several_sessions_name_their_voice_tracks_and_a_one_line_session_keeps_its_own(tmp_path):
    path = tmp_path / "two.mid"
    with MidiFilePort(path, sessions=["main", "hero"], ticks_per_beat=4, checkpoint_s=1.0) as port:
        port.voices = {0: ENSEMBLE, 1: {3: "melody", 15: "stinger"}}
        _play_ensemble(port, session=0)
        port.checkpoint()  # while one session has played, its voices stand alone
        assert list(_tracks(path)) == ["drums", "bass", "melody"]
        port.send(0xC3, 40, 0, T0, 1.0, 1)
        port.send(0x93, 64, 70, T0, 1.0, 1)
        port.send(0x9F, 76, 70, T0, 1.5, 1)  # the hero's stinger: in the hero's one track
    tracks = _tracks(path)
    assert list(tracks) == ["main drums", "main bass", "main melody", "hero"]
    assert tracks["hero"] == [(4, "program", 3, 40), (4, "on", 3, 64), (6, "on", 15, 76),
                              (16, "off", 3, 64), (16, "off", 15, 76)]


def test_a_one_line_recording_is_as_before(tmp_path):
    """A one-line session's map (its channel "melody", the stinger) changes nothing."""
    def take(path, voices):
        with MidiFilePort(path, sessions=["main"], ticks_per_beat=8, checkpoint_s=None) as port:
            if voices is not None:
                port.voices = voices
            port.send(0xC0, 73, 0, T0, 0.0, 0)
            port.send(0x90, 60, 90, T0, 0.0, 0)
            port.send(0x9F, 84, 90, T0, 0.5, 0)
            port.send(0x80, 60, 0, T0, 1.0, 0)
        return path.read_bytes()

    before = take(tmp_path / "plain.mid", None)
    assert take(tmp_path / "mapped.mid", {0: {0: "melody", 15: "stinger"}}) == before
    assert [t.name for t in mido.MidiFile(tmp_path / "plain.mid").tracks] == ["tempo", "main"]


def test_engine_sets_voices_in_order_with_the_messages(stream, tmp_path):
    """``Engine.in_order("voices", ...)`` through a MultiPort: a note sent before the map
    has no voice, one after it has; the recording splits from then on."""
    zmq_port, sub = stream
    path = tmp_path / "order.mid"
    rec = MidiFilePort(path, sessions=["main", "hero"], ticks_per_beat=4, checkpoint_s=None)
    multi = MultiPort([zmq_port, rec])
    engine = Engine(multi)
    routes = engine.routes()
    engine.send_at(routes, 0x90, 60, 90, T0, 0.0, 0)
    engine.in_order("voices", {0: ENSEMBLE})
    engine.send_at(routes, 0x91, 40, 80, T0 + 1, 0.0, 0)
    assert zmq_port.voices == {}  # queued behind the first note, not yet sent
    engine.deliver(FAR)
    assert multi.voices == {0: ENSEMBLE} == rec.voices
    first, second = [decode_event(f) for f in _receive(sub, 2)]
    assert "voice" not in first and second["voice"] == "bass"
    multi.close()
    assert list(_tracks(path)) == ["main", "bass"]


def test_a_synth_connected_anew_gets_each_channels_program_again(jack_server, unique_name):
    """The native JACK port resets a synth that connects (or comes back): notes and
    sustain off on every channel, then the last program of each channel it has sent."""
    from realtime.jackreader import NativeJackReader
    from realtime.outputs import JackMidiPort

    synth_name = unique_name + "-synth"
    port = JackMidiPort(unique_name, connect=[synth_name + ":in"], reconnect_s=0.1)
    try:
        t = time.monotonic_ns()
        for status, program in ((0xC0, 73), (0xC1, 32), (0xC1, 33), (0xC9, 0)):
            port.send(status, program, 0, t, 0.0)  # before the synth is there: heard by none
        with NativeJackReader(None, client_name=synth_name) as synth:
            got = [tuple(m) for _, m in synth.wait_for(35, timeout_s=20)]
    finally:
        port.close()
    resets = [(0xB0 | c, cc, 0) for c in range(16) for cc in (123, 64)]
    assert sorted(got[:32]) == sorted(resets)
    assert got[32:] == [(0xC0, 73), (0xC1, 33), (0xC9, 0)]
