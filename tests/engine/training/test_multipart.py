"""Multi-part music read track by track: WADs (the installed Freedoom and ones built
here around MIDI files written with mido), music21's multi-part works, MIDI folders,
and the voice role each track is given."""
import io
import struct

import mido
import numpy as np
import pytest

from engine.ensemble import BASS, DRUMS, HARMONY, MELODY
from engine.errors import InvalidMidi
from engine.notes import DRUM_CHANNEL, NOTE_DTYPE
from engine.training import corpus, multipart, survey, wad
from engine.training.multipart import Track, assign_roles

FREEDOOM = wad.freedoom_wads()
needs_freedoom = pytest.mark.skipif(
    not FREEDOOM, reason="Freedoom is not installed (Debian package freedoom; `make setup` "
                         "installs it)")


# -- helpers -----------------------------------------------------------------------------
def midi_bytes(parts, ppq=480):
    """A type 1 MIDI file: one MTrk per (channel, program, [(start beat, beats, pitch)])."""
    mid = mido.MidiFile(type=1, ticks_per_beat=ppq)
    for channel, program, notes in parts:
        track = mido.MidiTrack()
        if channel != DRUM_CHANNEL:
            track.append(mido.Message("program_change", channel=channel, program=program))
        events = []
        for start, beats, pitch in notes:
            events.append((round(start * ppq), 1, "note_on", pitch, 90))
            events.append((round((start + beats) * ppq), 0, "note_off", pitch, 0))
        now = 0
        for t, _, kind, pitch, vel in sorted(events):
            track.append(mido.Message(kind, channel=channel, note=pitch, velocity=vel,
                                      time=t - now))
            now = t
        mid.tracks.append(track)
    buf = io.BytesIO()
    mid.save(file=buf)
    return buf.getvalue()


def band(bars=8):
    """Drums, a bass, a chordal pad and a tune: four MTrks, channels 9, 1, 2, 0."""
    beats = range(bars * 4)
    drums = [(b, 0.5, 36 if b % 2 == 0 else 38) for b in beats] + [(b + 0.5, 0.25, 42)
                                                                  for b in beats]
    bass = [(b, 1, 36 + (b // 4) % 2 * 7) for b in beats]
    pad = [(4 * k, 4, p) for k in range(bars) for p in (60, 64, 67, 72)]
    tune = [(b, 0.5, 76 + b % 5) for b in beats] + [(b + 0.5, 0.5, 74) for b in beats]
    return [(DRUM_CHANNEL, 0, drums), (1, 33, bass), (2, 89, pad), (0, 73, tune)]


def build_wad(path, lumps, magic=b"PWAD"):
    """Write a WAD: the header, the lumps' bytes, then the directory (as Doom's tools do)."""
    body, entries, offset = b"", [], 12
    for name, data in lumps:
        entries.append(struct.pack("<ii8s", offset, len(data), name.encode()))
        body += data
        offset += len(data)
    path.write_bytes(struct.pack("<4sii", magic, len(lumps), offset) + body
                     + b"".join(entries))
    return path


def track(pitches, starts=None, dur=12, program=0, drum=False, name="t"):
    """A constructed track: one note per start (ticks of a 12-tick beat)."""
    starts = list(range(0, 12 * len(pitches), 12)) if starts is None else starts
    notes = np.array([(s, s + dur, p, 80, 0) for s, p in zip(starts, pitches)], NOTE_DTYPE)
    return Track(name, program, DRUM_CHANNEL if drum else -1, drum, notes)


def line(low, high, n=64, **kw):
    """A line that plays a note every beat for n beats, between low and high."""
    return track([low + k % (high - low + 1) for k in range(n)], **kw)


# -- WAD files ---------------------------------------------------------------------------
def test_wad_built_here_round_trips_its_midi_lump(tmp_path):
    data = midi_bytes(band())
    path = build_wad(tmp_path / "band.wad", [("MAP01", b"\0" * 40), ("D_BAND", data),
                                             ("DEMO1", b"xy")])
    lumps = wad.read_directory(path)
    assert [(l.name, l.size) for l in lumps] == [("MAP01", 40), ("D_BAND", len(data)),
                                                  ("DEMO1", 2)]
    assert [l.name for l in wad.music_lumps(path)] == ["D_BAND"]
    assert wad.read_song(path, "D_BAND") == data


def test_wad_song_reads_into_voices_through_corpus_read_all(tmp_path):
    path = build_wad(tmp_path / "band.wad", [("D_BAND", midi_bytes(band()))])
    task = corpus.Task("band.wad/D_BAND", "wad", f"{path}\0D_BAND")
    pieces, skipped = corpus.read_all([task, task], workers=2, progress=False)
    assert skipped == [] and len(pieces) == 2
    notes = pieces[0].notes
    per_voice = np.bincount(notes["channel"], minlength=4)
    # 32 beats: 64 tune notes, 32 bass notes, 4 x 8 pad notes, 32 kicks/snares + 32 hats
    assert per_voice.tolist() == [64, 32, 32, 64]
    assert notes[notes["channel"] == BASS]["pitch"].max() == 43
    assert set(notes[notes["channel"] == DRUMS]["pitch"].tolist()) == {36, 38, 42}
    # ticks of a 12-tick beat from 480 ppq: the hats fall on the off-beat eighths
    hats = notes[(notes["channel"] == DRUMS) & (notes["pitch"] == 42)]
    assert (hats["start"] % 12 == 6).all() and (hats["end"] - hats["start"] == 3).all()


@pytest.mark.parametrize("make, problem", [
    (lambda p: p.write_bytes(b"PWAD\1\0"), "shorter than the 12-byte header"),
    (lambda p: build_wad(p, [("D_X", b"MThd")], magic=b"WAD2"), "magic b'WAD2'"),
    (lambda p: p.write_bytes(struct.pack("<4sii", b"IWAD", 3, 9999)), "lies outside the file"),
    (lambda p: p.write_bytes(struct.pack("<4sii", b"IWAD", -1, 12)), "is negative"),
    (lambda p: p.write_bytes(struct.pack("<4sii", b"PWAD", 1, 12)
                             + struct.pack("<ii8s", 0, 500, b"D_X")), "lump 0 ('D_X'"),
])
def test_bad_wads_name_the_file_and_the_fault(tmp_path, make, problem):
    path = tmp_path / "bad.wad"
    make(path)
    with pytest.raises(InvalidMidi) as err:
        wad.read_directory(path)
    assert str(path) in str(err.value) and problem in str(err.value)


def test_wad_truncated_after_its_header_and_missing_files(tmp_path):
    good = build_wad(tmp_path / "good.wad", [("D_BAND", midi_bytes(band(2)))]).read_bytes()
    cut = tmp_path / "cut.wad"
    cut.write_bytes(good[:-10])  # the directory is at the end: cut short
    with pytest.raises(InvalidMidi, match="directory .* lies outside the file"):
        wad.read_directory(cut)
    with pytest.raises(InvalidMidi, match="cannot read the WAD file"):
        wad.read_directory(tmp_path / "missing.wad")
    with pytest.raises(InvalidMidi, match="no lump named 'D_NONE'"):
        wad.read_lump(tmp_path / "good.wad", "D_NONE")


def test_non_midi_music_lumps_are_refused_and_skipped(tmp_path):
    path = build_wad(tmp_path / "mus.wad", [("D_E1M1", b"MUS\x1a" + bytes(40)),
                                            ("D_E1M2", b"RIFF" + bytes(8))])
    with pytest.raises(InvalidMidi, match="MUS song"):
        wad.read_song(path, "D_E1M1")
    tasks = [corpus.Task(n, "wad", f"{path}\0{n}") for n in ("D_E1M1", "D_E1M2")]
    pieces, skipped = corpus.read_all(tasks, workers=1, progress=False)
    assert pieces == [] and [w.split(":")[0] for _, w in skipped] == ["unreadable"] * 2
    assert "starts with b'RIFF'" in skipped[1][1]


@needs_freedoom
def test_freedoom_wads_hold_midi_songs():
    songs = [(p, l) for p in FREEDOOM for l in wad.music_lumps(p)]
    assert len(songs) > 40
    for path, lump in songs[::8]:  # a handful, spread over both WADs
        data = wad.read_song(path, lump.name)
        assert data[:4] == b"MThd" and len(data) == lump.size
    tasks = multipart.ensemble_tasks("freedoom")
    assert len(tasks) == len(songs)
    # D_E1M5 and D_E2M6 are one song: one group, so one split
    groups = {t.piece_id.split("/")[1]: t.group for t in tasks}
    if "D_E1M5" in groups and "D_E2M6" in groups:
        assert groups["D_E1M5"] == groups["D_E2M6"]


@needs_freedoom
def test_freedoom_tracks_channels_and_roles():
    tasks = multipart.ensemble_tasks("freedoom")[::12]
    for task in tasks:
        path, lump = task.payload.split("\0")
        data = wad.read_song(path, lump)
        tracks = multipart.task_tracks(task, channels=True)
        # the byte scan gives the channel of every symusic track, as mido reads them:
        # per MTrk, the (channel, program) pairs that play, sorted
        expected = []
        for tr in mido.MidiFile(file=io.BytesIO(data)).tracks:
            program, seen = [0] * 16, set()
            for m in tr:
                if m.type == "program_change":
                    program[m.channel] = m.program
                elif m.type == "note_on" and m.velocity > 0:
                    seen.add((m.channel, program[m.channel]))
            expected += sorted(seen)
        assert [(t.channel, t.program) for t in tracks] == expected, task.piece_id
        roles = assign_roles(tracks)
        for t, r in zip(tracks, roles):
            assert (r == DRUMS) == (t.is_drum and len(t.notes) > 0), task.piece_id
        assert roles.count(MELODY) == 1 and roles.count(BASS) <= 1
        notes = multipart.read_notes(task)
        assert set(np.unique(notes["channel"]).tolist()) <= {MELODY, BASS, HARMONY, DRUMS}


# -- MIDI files and folders --------------------------------------------------------------
def test_midi_tracks_keep_program_channel_and_drum_flag():
    tracks = multipart.midi_tracks(midi_bytes(band(2)), channels=True)
    assert [(t.program, t.channel, t.is_drum) for t in tracks] == \
        [(0, 9, True), (33, 1, False), (89, 2, False), (73, 0, False)]
    assert [len(t.notes) for t in tracks] == [16, 8, 8, 16]
    plain = multipart.midi_tracks(midi_bytes(band(2)))
    assert [t.channel for t in plain] == [9, -1, -1, -1]  # no scan: only drums known


def test_midi_channels_split_a_track_by_channel_and_program():
    # one MTrk: channel 3 plays, changes program, plays again; channel 5 plays.
    # symusic makes a track of each (channel, program), sorted
    mid = mido.MidiFile(type=0, ticks_per_beat=96)
    tr = mido.MidiTrack([mido.Message("note_on", channel=3, note=60, velocity=80),
                         mido.Message("note_on", channel=5, note=40, velocity=80),
                         mido.Message("note_off", channel=3, note=60, time=96),
                         mido.Message("program_change", channel=3, program=40),
                         mido.Message("note_on", channel=3, note=62, velocity=80),
                         mido.Message("note_off", channel=3, note=62, time=96),
                         mido.Message("note_off", channel=5, note=40)])
    mid.tracks.append(tr)
    buf = io.BytesIO()
    mid.save(file=buf)
    tracks = multipart.midi_tracks(buf.getvalue(), channels=True)
    assert [(t.channel, t.program) for t in tracks] == [(3, 0), (3, 40), (5, 0)]
    assert multipart.midi_channels(b"RIFF....") is None


def test_midi_folder_source_reads_and_skips(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "band.mid").write_bytes(midi_bytes(band(4)))
    (tmp_path / "solo.mid").write_bytes(midi_bytes([(0, 0, [(b, 1, 60 + b % 12)
                                                            for b in range(32)])]))
    (tmp_path / "broken.mid").write_bytes(b"MThd\0\0\0\6\0\1\0\2\0\x60MTrk\0\0\0\x10\0")
    tasks = multipart.ensemble_tasks(f"midi:{tmp_path}")
    assert [(t.piece_id, t.kind) for t in tasks] == [("a/band.mid", "midi-parts"),
                                                     ("broken.mid", "midi-parts"),
                                                     ("solo.mid", "midi-parts")]
    pieces, skipped = corpus.read_all(tasks, workers=1, progress=False)
    assert [p.piece_id for p in pieces] == ["a/band.mid", "solo.mid"]
    assert skipped[0][0] == "broken.mid" and skipped[0][1].startswith("unreadable: ")
    assert str(tmp_path / "broken.mid") in skipped[0][1]
    assert set(pieces[1].notes["channel"].tolist()) == {MELODY}  # one track: the melody


def test_unknown_sources_and_kinds_are_refused():
    with pytest.raises(InvalidMidi, match="freedoom, bach-parts, quartets, monteverdi"):
        multipart.ensemble_tasks("palestrina")
    notes, why = corpus.read_task(corpus.Task("x", "tab", "x"))
    assert notes is None and why == "error: ValueError: unknown task kind 'tab'"


# -- music21's multi-part works ----------------------------------------------------------
def test_music21_sources_list_multipart_works_without_palestrina_or_twins():
    quartets = [t.piece_id for t in multipart.ensemble_tasks("quartets")]
    assert {q.split("/")[0] for q in quartets} == {"haydn", "mozart", "beethoven"}
    assert not any("k545" in q or q.endswith(".krn") for q in quartets)  # a sonata; twins
    assert "beethoven/opus18no1/movement1.mxl" in quartets
    madrigals = [t.piece_id for t in multipart.ensemble_tasks("monteverdi")]
    assert "monteverdi/madrigal.3.1.mxl" in madrigals
    assert not any(m.endswith((".rntxt", "_old.mxl")) for m in madrigals)
    bach = multipart.ensemble_tasks("bach-parts")
    assert all(t.piece_id.startswith("bach/bwv") for t in bach)
    ids = {t.piece_id for t in bach}
    assert "bach/bwv277.mxl" in ids and "bach/bwv277.krn" not in ids  # one encoding each
    assert len(bach) > 300
    group = {t.piece_id: t.group for t in bach}
    assert group["bach/bwv10.7.mxl"] == "bach:bwv10.7"
    every = [t.payload for s in multipart.SOURCES if s != "freedoom"
             for t in multipart.ensemble_tasks(s)]
    assert not any("palestrina" in p for p in every)


def test_bach_chorale_soprano_melody_bass_bass_inner_voices_harmony():
    path = corpus.corpus_dir() / "bach" / "bwv10.7.mxl"
    tracks = multipart.music21_tracks(str(path))
    assert [t.name for t in tracks] == ["Soprano", "Alto", "Tenor", "Bass"]
    assert assign_roles(tracks) == [MELODY, HARMONY, HARMONY, BASS]
    notes = multipart.read_notes(corpus.Task("bach/bwv10.7.mxl", "music21-parts", str(path)))
    # the alto and tenor share a voice; the soprano's notes are all there
    assert (notes["channel"] == MELODY).sum() == len(tracks[0].notes)
    assert (notes["channel"] == HARMONY).sum() <= len(tracks[1].notes) + len(tracks[2].notes)
    assert notes[notes["channel"] == BASS]["pitch"].max() < 67


def test_quartet_and_madrigal_roles_through_read_all():
    tasks = [t for t in multipart.ensemble_tasks("quartets")
             if t.piece_id == "mozart/k80/movement4.mxl"] + \
            multipart.ensemble_tasks("monteverdi")[:1]
    pieces, skipped = corpus.read_all(tasks, workers=2, progress=False)
    assert skipped == [] and len(pieces) == 2
    tracks = multipart.music21_tracks(tasks[0].payload)
    assert [t.name for t in tracks] == ["Violin I", "Violin II", "Viola", "Cello"]
    assert assign_roles(tracks) == [MELODY, HARMONY, HARMONY, BASS]
    for p in pieces:
        assert set(np.unique(p.notes["channel"]).tolist()) == {MELODY, BASS, HARMONY}


def _two_part_score(tmp_path, repeats, name):
    from music21 import bar, meter, note, stream
    score = stream.Score()
    for pitch in ("C5", "C3"):
        part = stream.Part()
        for k in range(3):
            m = stream.Measure(number=k + 1)
            if k == 0:
                m.append(meter.TimeSignature("4/4"))
            m.repeatAppend(note.Note(pitch, quarterLength=1), 4)
            for at, side, direction in repeats:
                if at == k:
                    setattr(m, side, bar.Repeat(direction=direction))
            part.append(m)
        score.insert(0, part)
    path = tmp_path / f"{name}.musicxml"
    score.write("musicxml", fp=str(path))
    return str(path)


def test_music21_repeats_expanded_bad_ones_and_runaway_ones_read_as_written(tmp_path):
    good = _two_part_score(tmp_path, [(1, "rightBarline", "end")], "good")
    assert [len(t.notes) for t in multipart.music21_tracks(good)] == [20, 20]  # bars 1 2 1 2 3
    # expanded to 20 beats > 16: a runaway expansion, read as written (12 beats)
    assert [len(t.notes) for t in multipart.music21_tracks(good, max_beats=16)] == [12, 12]
    # two start repeats and no end: music21 refuses to expand; the music as written
    bad = _two_part_score(tmp_path, [(0, "leftBarline", "start"),
                                     (1, "leftBarline", "start")], "bad")
    tracks = multipart.music21_tracks(bad)
    assert [len(t.notes) for t in tracks] == [12, 12] and tracks[0].name == "part 1"


def test_music21_single_part_and_unparsable_files_are_refused(tmp_path):
    solo = corpus.corpus_dir() / "bach" / "bwv1.6.mxl"
    from music21 import converter
    one = converter.parse(str(solo)).parts[0]
    path = tmp_path / "one.musicxml"
    one.write("musicxml", fp=str(path))
    with pytest.raises(InvalidMidi, match="1 part"):
        multipart.music21_tracks(str(path))
    junk = tmp_path / "junk.musicxml"
    junk.write_text("<score-partwise><part")
    with pytest.raises(InvalidMidi, match="music21 cannot parse"):
        multipart.music21_tracks(str(junk))


# -- roles on constructed tracks ---------------------------------------------------------
def test_drum_tracks_always_go_to_drums():
    kit = line(35, 40, drum=True)  # low "pitches": instruments, never the bass
    assert assign_roles([kit]) == [DRUMS]
    assert assign_roles([line(70, 80), kit, line(40, 45)]) == [MELODY, DRUMS, BASS]
    sparse = track([36, 38], drum=True)  # a drum track that is mostly rests
    assert assign_roles([sparse, line(60, 70, n=200)]) == [DRUMS, MELODY]


def test_one_pitched_track_is_the_melody_two_are_melody_and_bass():
    piano = track([36, 60, 64, 67] * 16, starts=[12 * (k // 4) for k in range(64)])
    assert assign_roles([piano]) == [MELODY]  # both hands in one track: not split
    assert assign_roles([line(40, 50), line(70, 80)]) == [BASS, MELODY]
    # two high lines: no bass above middle C
    assert assign_roles([line(62, 70), line(72, 80)]) == [HARMONY, MELODY]


def test_empty_and_mostly_resting_tracks():
    empty = Track("empty", 0, 0, False, np.zeros(0, NOTE_DTYPE))
    assert assign_roles([empty, line(60, 70)]) == [None, MELODY]
    # 3 low notes in 64 beats: too few to be the bass; the steady line below C4 is
    rare_low = track([28, 28, 28], starts=[0, 12 * 30, 12 * 60])
    roles = assign_roles([rare_low, line(45, 55), line(70, 80)])
    assert roles == [HARMONY, BASS, MELODY]
    # a high flourish that is mostly rests is not the melody
    rare_high = track([96, 98], starts=[0, 12 * 40])
    assert assign_roles([rare_high, line(45, 55), line(65, 72)]) == [HARMONY, BASS, MELODY]


def test_pads_effects_and_bass_instruments():
    tune = line(64, 72, program=73)
    pad = track([76, 79, 84] * 16, starts=[48 * (k // 3) for k in range(48)], dur=48,
                program=89)
    assert assign_roles([pad, tune, line(36, 43, program=33)]) == [HARMONY, MELODY, BASS]
    gunshot = line(100, 110, program=127)  # unpitched effects: no voice, left out
    cymbal = line(20, 25, program=119)
    bells = line(84, 96, program=112)  # Tinkle Bell: pitched, a line like any other
    assert assign_roles([gunshot, cymbal, tune, line(40, 48, program=0), bells]) == \
        [None, None, HARMONY, BASS, MELODY]
    assert len(multipart.ensemble_notes([gunshot, tune], assign_roles([gunshot, tune]))) == 64
    # a GM bass instrument is the bass though a synth lead doubles it an octave lower
    assert assign_roles([line(24, 31, program=81), line(36, 43, program=33), tune]) == \
        [HARMONY, BASS, MELODY]


def test_ensemble_notes_voices_on_one_pitch_both_survive():
    a = track([60, 62, 64], name="a")
    b = track([60, 62, 64], name="b")
    c = track([60, 60], starts=[0, 6], dur=12, name="c")  # overlaps itself on one pitch
    notes = multipart.ensemble_notes([a, b, c], [MELODY, HARMONY, DRUMS])
    assert len(notes) == 8
    assert np.bincount(notes["channel"], minlength=4).tolist() == [3, 0, 3, 2]
    drums = notes[notes["channel"] == DRUMS]
    assert drums["end"].tolist() == [6, 18]  # normalised within its voice: cut, kept
    assert (np.diff(notes["start"]) >= 0).all()
    assert len(multipart.ensemble_notes([a], [None])) == 0


# -- the survey --------------------------------------------------------------------------
def test_survey_describes_tracks_and_draws_a_fixed_sample(tmp_path):
    (tmp_path / "band.mid").write_bytes(midi_bytes(band(4)))
    (tmp_path / "duo.mid").write_bytes(midi_bytes(band(4)[1:4:2]))
    task = multipart.ensemble_tasks(f"midi:{tmp_path}")[0]
    rows, per_voice, why = survey.describe_task(task)
    assert why is None
    assert [(r.instrument, r.channel, r.role) for r in rows] == [
        ("drum kit", 9, "drums"), ("Electric Bass (finger)", 1, "bass"),
        ("Pad 2 (warm)", 2, "harmony"), ("Flute", 0, "melody")]
    assert per_voice.tolist() == [32, 16, 16, 32]
    source = f"midi:{tmp_path}"
    first = survey.sample([source], per_source=2, seed=5)
    assert first == survey.sample([source], per_source=2, seed=5)
    assert sorted(r.piece_id for _, r in first) == ["band.mid", "duo.mid"]
    table = survey.format_sample(first)
    assert table.count("\n") == 3 and "| 1 | midi:" in table
    counted = survey.counts(source, workers=1)
    assert counted["pieces"] == 2 and counted["tracks"] == 6
    assert counted["voices"].tolist() == [64, 32, 16, 32]
