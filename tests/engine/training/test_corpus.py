"""Reading real scores: ABC tunes and chorales from music21's corpus, MIDI files written here."""
import time

import mido
import numpy as np
import pytest

from engine.training import corpus
from engine.training.corpus import ReadConfig, Task
from engine.errors import InvalidMidi


def abc_notes(body, header="M:4/4\nL:1/4\nK:C\n"):
    return corpus.read_abc(f"X:1\nT:test\n{header}{body}\n")


# -- ABC ---------------------------------------------------------------------------------
def test_oneills_first_tune_pitches_and_rhythm():
    """O'Neill's no. 1, 'The Enchanted Valley' (K:Gm, L:1/16): G3-A (Bcd=e) | f4 (g2dB)."""
    tasks = corpus.source_tasks("oneills1850", [corpus.corpus_dir() / "oneills1850/0001-0050.abc"])
    assert len(tasks) == 50 and tasks[0].piece_id == "oneills1850/0001-0050.abc/0"
    notes, why = corpus.read_task(tasks[0])
    assert why is None
    # B and E flat from the key signature, =e natural, f natural
    assert notes["pitch"][:8].tolist() == [67, 69, 70, 72, 74, 76, 77, 79]
    # a sixteenth is 3 ticks of a 12-tick beat; G3 is a dotted eighth
    assert notes["start"][:8].tolist() == [0, 9, 12, 15, 18, 21, 24, 36]
    assert 100 < len(notes) < 400
    assert 55 <= notes["pitch"].min() and notes["pitch"].max() <= 90


def test_several_corpus_tunes_are_plausible():
    for source in ("ryansMammoth", "airdsAirs"):
        tasks = corpus.source_tasks(source)[:5]
        pieces, skipped = corpus.read_all(tasks, workers=1, progress=False)
        assert skipped == [] and len(pieces) == 5
        for p in pieces:
            n = p.notes
            assert len(n) >= 30, p.piece_id
            assert 48 <= n["pitch"].min() and n["pitch"].max() <= 100, p.piece_id
            assert (n["end"] > n["start"]).all() and (np.diff(n["start"]) >= 0).all()
            assert p.group.startswith("title:")


def test_abc_accidental_carries_through_the_bar_only():
    notes = abc_notes("^F F G A | F4 |]")
    assert notes["pitch"].tolist() == [66, 66, 67, 69, 65]


def test_abc_chords_ties_and_no_generated_accompaniment():
    notes = abc_notes('"G" G2 [CEG]2 | "D7" A-A B2 |]')
    # the guitar chords "G" and "D7" must not add bass or chord notes
    assert notes[["start", "end", "pitch"]].tolist() == [
        (0, 24, 67), (24, 48, 60), (24, 48, 64), (24, 48, 67), (48, 72, 69), (72, 96, 71)]


def test_abc_file_header_is_carried_into_each_tune():
    text = "% a book\nL:1/4\n\nX:1\nT:One\nM:6/8\nK:C\nC D |]\n\nX:2\nT:Two\nM:6/8\nK:D\nF G |]\n"
    tunes = corpus.split_abc(text)
    assert tunes[0].startswith("X:1\nL:1/4\nT:One") and tunes[1].startswith("X:2\nL:1/4\nT:Two")
    # without the header's L:1/4, M:6/8 would make C an eighth (6 ticks)
    assert corpus.read_abc(tunes[0])[["start", "end"]].tolist() == [(0, 12), (12, 24)]
    assert corpus.read_abc(tunes[1])["pitch"].tolist() == [66, 67]  # F# from K:D


def test_abc2midi_warnings_do_not_reach_stdout(capfd):
    notes = abc_notes("C D E F | G A B c d e f |]")  # bar 2 too long: abc2midi warns
    print("after")
    out, _ = capfd.readouterr()
    assert len(notes) == 11
    assert out == "after\n"  # nothing from abc2midi, and fd 1 restored


def test_tune_groups_match_transcriptions():
    assert corpus.tune_group("X:1\nT: Kerry Cobbler, The\nK:G\n") == \
        corpus.tune_group("X:2\nT:The Kerry Cobbler\nK:G\n") == "title:kerry cobbler"
    assert corpus.tune_group("X:3\nT:Acacia -- Reel\nK:G\n") == "title:acacia"
    assert corpus.tune_group("X:4\nK:G\n") == ""


def test_runaway_tune_is_skipped_with_reason():
    tune = "X:1\nT:long\nM:4/4\nL:1/4\nK:C\n|: C D E F | G A B c :|\n"
    notes, why = corpus.read_task(Task("t/0", "abc", tune), ReadConfig(max_beats=12))
    assert notes is None and why == "too long: 16 beats > 12"  # repeats expanded: 16 beats
    notes, why = corpus.read_task(Task("t/0", "abc", tune), ReadConfig(max_beats=16))
    assert why is None and len(notes) == 16


def test_unreadable_abc_is_skipped_with_reason():
    notes, why = corpus.read_task(Task("t/0", "abc", "T:no index line\nK:C\nCDEF|\n"))
    assert notes is None and why.startswith("unreadable: ")


# -- music21 -----------------------------------------------------------------------------
def test_bach_chorale_has_four_voices():
    path = corpus.corpus_dir() / "bach/bwv10.7.mxl"
    assert path in corpus.source_files("bach")
    from music21 import converter
    score = converter.parse(path, forceSource=True)  # no pickle left in music21's scratch
    assert [p.partName for p in score.parts] == ["Soprano", "Alto", "Tenor", "Bass"]
    notes, why = corpus.read_task(Task("bach/bwv10.7.mxl", "music21", str(path)))
    assert why is None
    assert notes["pitch"][notes["start"] == 0].tolist() == [55, 58, 67, 74]  # G minor chord
    # every onset of every voice is there, and never more than four notes sound at once
    expanded = score.expandRepeats()
    onsets = set()
    for part in expanded.parts:
        for n in part.stripTies().flatten().notes:
            onsets |= {(round(float(n.offset) * 12), p.midi) for p in n.pitches}
    assert set(zip(notes["start"].tolist(), notes["pitch"].tolist())) == onsets
    beats = np.arange(0, notes["end"].max(), 12)
    sounding = ((notes["start"][None] <= beats[:, None]) &
                (notes["end"][None] > beats[:, None])).sum(1)
    assert sounding.max() == 4
    assert notes["end"].max() == round(float(expanded.highestTime) * 12)


def test_bach_source_lists_only_chorales():
    files = corpus.source_files("bach")
    assert len(files) > 400
    assert all(f.name.startswith("bwv") and f.suffix in (".mxl", ".xml", ".krn") for f in files)


def test_slow_piece_hits_the_time_cap(monkeypatch):
    # A reader that takes 30 s stands in for a runaway parse: how fast music21 reads a real
    # piece depends on its parse cache and the machine's load, which a test must not.
    def runaway(path, ticks_per_beat=12):
        time.sleep(30)
    monkeypatch.setattr(corpus, "read_music21", runaway)
    t0 = time.monotonic()
    notes, why = corpus.read_task(Task("p", "music21", "any.krn"), ReadConfig(max_seconds=0.05))
    assert notes is None and why == "timeout: read took over 0.05 s"
    assert time.monotonic() - t0 < 30  # the cap cut it short (no bound tighter than that)


# -- MIDI folders ------------------------------------------------------------------------
def _track(events):
    """(abs_tick, message) pairs -> a MidiTrack with delta times."""
    track, last = mido.MidiTrack(), 0
    for t, msg in sorted(events, key=lambda e: e[0]):
        track.append(msg.copy(time=t - last))
        last = t
    return track


def _note(t0, t1, pitch, ch=0):
    return [(t0, mido.Message("note_on", channel=ch, note=pitch, velocity=90)),
            (t1, mido.Message("note_off", channel=ch, note=pitch, velocity=0))]


# the opening of "The Enchanted Valley" (quarter = 480 ticks): G3-A B c d e f
MELODY = [(0, 360, 67), (360, 480, 69), (480, 600, 70), (600, 720, 72), (720, 840, 74),
          (840, 960, 76), (960, 1440, 77), (1440, 1920, 79)]


def write_folder(root):
    """type 0 with a tempo change, type 1 with three tracks and drums, running status, junk."""
    root.mkdir(parents=True, exist_ok=True)
    mid = mido.MidiFile(type=0, ticks_per_beat=480)
    ev = [(0, mido.MetaMessage("set_tempo", tempo=500000)),
          (960, mido.MetaMessage("set_tempo", tempo=300000))]  # 120 -> 200 bpm mid-tune
    for t0, t1, p in MELODY:
        ev += _note(t0, t1, p)
    mid.tracks.append(_track(ev))
    mid.save(root / "type0.mid")

    mid = mido.MidiFile(type=1, ticks_per_beat=96)
    mid.tracks.append(_track([(0, mido.MetaMessage("set_tempo", tempo=600000)),
                              (192, mido.MetaMessage("set_tempo", tempo=400000))]))
    mid.tracks.append(_track(sum((_note(a // 5, b // 5, p) for a, b, p in MELODY), [])))
    mid.tracks.append(_track(sum((_note(i * 96, i * 96 + 96, 43 + i % 2, 1)
                                  for i in range(4)), [])))
    mid.tracks.append(_track(sum((_note(i * 48, i * 48 + 24, 42, 9) for i in range(8)), [])))
    (root / "sub").mkdir(exist_ok=True)
    mid.save(root / "sub" / "type1.MID")

    # running status written byte by byte: one 0x90 status, then data pairs only;
    # note-on velocity 0 ends each note, as most sequencers write it
    body = bytes([0x00, 0x90, 60, 80])
    for prev, nxt in ((60, 64), (64, 67)):
        body += bytes([0x60, prev, 0, 0x00, nxt, 80])
    body += bytes([0x60, 67, 0, 0x00, 0xFF, 0x2F, 0x00])
    header = b"MThd" + (6).to_bytes(4, "big") + bytes([0, 0, 0, 1, 0, 96])
    (root / "running.mid").write_bytes(header + b"MTrk" + len(body).to_bytes(4, "big") + body)

    (root / "corrupt.mid").write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x01\xe0MTrk\xff")
    (root / "notes.txt").write_text("not a MIDI file: ignored by suffix")


def test_midi_folder_reads_every_kind_and_skips_corrupt(tmp_path):
    write_folder(tmp_path)
    source = f"midi:{tmp_path}"
    tasks = corpus.source_tasks(source)
    assert [t.piece_id for t in tasks] == ["corrupt.mid", "running.mid", "sub/type1.MID",
                                           "type0.mid"]
    pieces, skipped = corpus.read_all(tasks, workers=2, progress=False)
    assert [s[0] for s in skipped] == ["corrupt.mid"]
    assert skipped[0][1].startswith("unreadable: ")
    got = {p.piece_id: p.notes for p in pieces}
    melody = [(a // 40, b // 40, p) for a, b, p in MELODY]  # 480 ppq -> 12 ticks a beat
    # the tempo change does not move notes off the beat grid
    assert got["type0.mid"][["start", "end", "pitch"]].tolist() == melody
    assert got["running.mid"][["start", "end", "pitch"]].tolist() == \
        [(0, 12, 60), (12, 24, 64), (24, 36, 67)]
    t1 = got["sub/type1.MID"]
    assert 42 not in t1["pitch"]  # drums skipped by default
    assert sorted(t1[["start", "end", "pitch"]].tolist()) == sorted(
        melody + [(i * 12, i * 12 + 12, 43 + i % 2) for i in range(4)])


def test_midi_drums_kept_by_flag(tmp_path):
    write_folder(tmp_path)
    notes, why = corpus.read_task(Task("sub/type1.MID", "midi", str(tmp_path / "sub/type1.MID")),
                                  ReadConfig(keep_drums=True))
    drums = notes[notes["pitch"] == 42]
    assert why is None and len(drums) == 8 and (drums["channel"] == 9).all()
    assert drums["start"].tolist() == [i * 6 for i in range(8)]


def test_missing_midi_folder_is_a_clear_error(tmp_path):
    with pytest.raises(InvalidMidi, match="does not exist"):
        corpus.source_files(f"midi:{tmp_path / 'nope'}")


def test_two_workers_read_the_same_as_one():
    tasks = corpus.source_tasks("airdsAirs")[:12] + corpus.source_tasks("bach")[:2]
    one, s1 = corpus.read_all(tasks, workers=1, progress=False)
    two, s2 = corpus.read_all(tasks, workers=2, progress=False)
    assert s1 == s2
    assert [p.piece_id for p in one] == [p.piece_id for p in two]
    assert all(np.array_equal(a.notes, b.notes) for a, b in zip(one, two))
