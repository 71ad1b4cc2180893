"""MIDI files written and read back through mido."""
import mido
import numpy as np

from engine.notes import make_notes, normalise, read_midi, write_midi


def test_write_then_read_round_trips_notes(tmp_path):
    notes = make_notes([(0, 12, 60, 90), (6, 30, 64, 70), (30, 31, 127, 1), (48, 96, 36, 100, 2)])
    write_midi(notes, tmp_path / "a.mid", bpm=137)
    mid = mido.MidiFile(tmp_path / "a.mid")
    tempos = [m.tempo for t in mid.tracks for m in t if m.type == "set_tempo"]
    assert tempos == [mido.bpm2tempo(137)]
    back = read_midi(tmp_path / "a.mid")
    np.testing.assert_array_equal(back, normalise(notes))


def test_overlapping_same_pitch_is_cut_where_the_next_starts():
    n = normalise(make_notes([(0, 24, 60), (12, 30, 60), (12, 13, 61)]))
    assert n[["start", "end", "pitch"]].tolist() == [(0, 12, 60), (12, 30, 60), (12, 13, 61)]
