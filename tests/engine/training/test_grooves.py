"""Grooves: folk melodies harmonised bar by bar and laid over a real ``mma`` band, read
back as an ensemble piece whose melody voice is the tune."""
import shutil

import numpy as np
import pytest

from engine.ensemble import BASS, DRUMS, HARMONY, MELODY
from engine.notes import make_notes
from engine.training import corpus, grooves, multipart

needs_mma = pytest.mark.skipif(
    shutil.which("mma") is None,
    reason="mma is not installed (Debian package mma; `make setup` installs it)")


def test_triads_are_the_keys_consonant_chords():
    names = [name for name, _, _ in grooves.triads(0, 0)]
    assert names == ["C", "Dm", "Em", "F", "G", "Am"]          # no B diminished
    minor = {name: pcs for name, pcs, _ in grooves.triads(9, 1)}
    assert minor["E"] == {4, 8, 11}                             # the major dominant
    assert "Bdim" not in minor and "B" not in minor and len(minor) == 6


def test_harmonise_follows_the_melody_and_ends_on_the_tonic():
    t = grooves.TPB
    # bar 1: C E G C (C major), bar 2: G B D (G), bar 3: F A on beats 1-2, G B on 3-4, bar 4
    rows = [(0, t, 60), (t, 2 * t, 64), (2 * t, 3 * t, 67), (3 * t, 4 * t, 72),
            (4 * t, 6 * t, 67), (6 * t, 7 * t, 71), (7 * t, 8 * t, 74),
            (8 * t, 9 * t, 65), (9 * t, 10 * t, 69), (10 * t, 11 * t, 67), (11 * t, 12 * t, 71),
            (12 * t, 16 * t, 62)]
    chords = grooves.harmonise(make_notes(rows), 4, 0, 0)
    assert chords[:3] == ["C", "G", "F G"]
    assert chords[3] == "C"                                     # the last bar: the tonic
    minor = grooves.harmonise(make_notes(rows), 4, 9, 1)
    assert minor[-1] == "Am"


def test_skyline_keeps_the_top_note_and_barred_drops_the_pickup():
    t = grooves.TPB
    # a one-beat pickup, then two bars; a double stop on the first downbeat
    notes = make_notes([(0, t, 67), (t, 3 * t, 60), (t, 3 * t, 64), (3 * t, 5 * t, 62),
                        (5 * t, 9 * t, 60)])
    line = grooves.skyline(notes)
    assert list(line["pitch"]) == [67, 64, 62, 60]
    assert list(line["end"][:-1]) == list(line["start"][1:])    # one note at a time
    # the tune ends 9 beats in: bar lines at beats 1 and 5, so the pickup is beat 0
    kept, bars = grooves.barred(line)
    assert bars == 2 and kept["start"][0] == 0 and list(kept["pitch"]) == [64, 62, 60]


def test_a_groove_is_chosen_by_the_tune_alone():
    assert grooves.groove_of("oneills1850/x.abc/3") == grooves.groove_of("oneills1850/x.abc/3")
    chosen = {grooves.groove_of(f"t/{i}") for i in range(200)}
    assert chosen == set(grooves.GROOVES)


def test_only_training_tunes_in_four_four_are_used():
    from engine.training.data import split_of
    found = grooves.tunes(grooves.GrooveConfig(collections=("oneills1850",)))
    assert found
    tasks = {t.piece_id: t for t in corpus.source_tasks("oneills1850")}
    for piece_id, text, key in found[:200]:
        assert split_of(tasks[piece_id].group or piece_id) == 0
        assert corpus.abc_key(text) == key


@needs_mma
def test_built_files_read_back_as_a_band_under_the_tune(tmp_path):
    config = grooves.GrooveConfig(collections=("oneills1850",), max_tunes=3)
    written, skipped = grooves.build(tmp_path, config, progress=False)
    files = sorted(tmp_path.glob("*.mid"))
    assert written == len(files) == 3 - sum(skipped.values())
    tunes = {grooves.file_name(pid, grooves.groove_of(pid)): text
             for pid, text, _ in grooves.tunes(config)}
    for path in files:
        tracks = multipart.midi_tracks(path.read_bytes(), channels=True)
        roles = multipart.assign_roles(tracks)
        assert {MELODY, BASS, HARMONY, DRUMS} <= set(roles)
        melody = [t for t, r in zip(tracks, roles) if r == MELODY]
        assert [t.name for t in melody] == ["Melody"]
        # the melody voice is the tune's line, pickup dropped, note for note
        line, _ = grooves.barred(grooves.skyline(corpus.read_abc(tunes[path.name],
                                                                grooves.TPB)))
        got = melody[0].notes
        assert np.array_equal(got["pitch"], line["pitch"])
        assert np.array_equal(got["start"], line["start"])


@needs_mma
def test_a_chart_mma_cannot_read_is_a_clear_error(tmp_path):
    from engine.errors import InvalidMidi
    with pytest.raises(InvalidMidi, match="mma failed on groove NoSuchGroove"):
        grooves.render(["C"] * 4, "NoSuchGroove", 120, make_notes([(0, 12, 60)]), tmp_path)
