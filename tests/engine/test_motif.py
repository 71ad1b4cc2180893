"""A theme given as notes or as a .mid file: checked with the field named, its key
measured, moved to C and to the session's mode as the theme encoder reads it."""
import numpy as np
import pytest

from engine.errors import InvalidMessage, InvalidMidi
from engine.motif import from_midi, from_notes
from engine.notes import make_notes, write_midi
from engine.vocab import START, Vocab

# the opening of a D minor theme: D F A | G F E D (beats)
D_MINOR = [[62, 0, 1], [65, 1, 1], [69, 2, 2], [67, 4, 1], [65, 5, 1], [64, 6, 1], [62, 7, 1],
           [61, 8, 0.5], [62, 8.5, 1.5]]


def test_a_theme_is_measured_and_moved_to_c():
    m = from_notes(D_MINOR)
    assert (m.tonic, m.mode, m.bars) == (2, 1, 3)
    assert "D minor (measured), 3 bars" in m.describe() and "D4 F4 A4" in m.describe()
    c = m.key_relative()
    np.testing.assert_array_equal(c["pitch"], m.notes["pitch"] - 2)  # D down to C
    assert c["start"][0] == 0 and c["end"].max() == 10 * 12
    major = m.key_relative(mode=0)  # minor's third (Eb) becomes major's (E), by degree
    assert 63 in c["pitch"] and 63 not in major["pitch"] and 64 in major["pitch"]


def test_a_pickup_is_moved_to_the_start_and_tokens_have_no_start():
    m = from_notes([[60, 3.5, 0.5], [64, 4, 1], [67, 5, 1], [72, 6, 2]])
    assert m.notes["start"][0] == 0 and m.bars == 2  # 4.5 beats from the pickup on
    vocab = Vocab()
    t = m.tokens(vocab)
    assert t[0] != vocab.offsets[START] and t.dtype == np.int64
    back = vocab.decode(t)
    np.testing.assert_array_equal(back["pitch"], m.key_relative()["pitch"])


@pytest.mark.parametrize("rows, field, allowed", [
    ([[60, 0, 1], [62, 1, 1]], "notes", "at least 3 notes"),
    ("C D E", "notes", "a list of [pitch, start_beat, duration_beats]"),
    ([[60, 0, 1], [62, 1], [64, 2, 1]], "notes[1]", "three numbers"),
    ([[60, 0, 1], [62, 1, 1], [128, 2, 1]], "notes[2]", "an integer MIDI pitch 0..127"),
    ([[60, 0, 1], [62.5, 1, 1], [64, 2, 1]], "notes[1]", "an integer MIDI pitch 0..127"),
    ([[60, -1, 1], [62, 1, 1], [64, 2, 1]], "notes[0]", "0 or more beats"),
    ([[60, 0, 0], [62, 1, 1], [64, 2, 1]], "notes[0]", "more than 0 beats"),
    ([[60, 0, -2], [62, 1, 1], [64, 2, 1]], "notes[0]", "more than 0 beats"),
    ([[60, 0, 0.01], [62, 1, 1], [64, 2, 1]], "notes[0]", "at least 1/12 beat"),
    ([[60, 0, 1], [62, 1, float("nan")], [64, 2, 1]], "notes[1]", "finite numbers"),
    ([[60, 0, 1], [62, 1, True], [64, 2, 1]], "notes[1]", "three numbers"),
    ([[60, 0, 2], [62, 1, 1], [60, 1, 1]], "notes[2]", "notes of one pitch one after another"),
    ([[60, 0, 1], [62, 1, 1], [64, 32, 1]], "notes", "at most 8 bars"),
])
def test_bad_themes_name_the_field_and_what_is_allowed(rows, field, allowed):
    with pytest.raises(InvalidMessage) as e:
        from_notes(rows)
    assert e.value.field == field and e.value.allowed == allowed
    assert field in str(e.value) and allowed in str(e.value)


def test_chords_are_fine_and_eight_bars_is_the_limit():
    chord = [[60, 0, 2], [64, 0, 2], [67, 0, 2], [72, 30, 2]]
    assert from_notes(chord).bars == 8


def test_a_midi_theme_reads_back(tmp_path):
    path = tmp_path / "motif.mid"
    write_midi(make_notes([(0, 12, 69), (12, 24, 72), (24, 48, 76), (48, 60, 74),
                           (60, 72, 72), (72, 96, 69)]), path)
    m = from_midi(path)
    assert (m.tonic, m.mode) == (9, 1) and m.bars == 2 and m.source == str(path)
    assert len(m.notes) == 6
    with pytest.raises(InvalidMidi, match="missing.mid"):
        from_midi(tmp_path / "missing.mid")
    short = tmp_path / "two.mid"
    write_midi(make_notes([(0, 12, 60), (12, 24, 62)]), short)
    with pytest.raises(InvalidMessage, match="two.mid has 2 notes"):
        from_midi(short)


def test_theme_encode_command(tmp_path, capsys):
    """`ostinato theme encode` says what it understood, and the z the server's encoder gives."""
    import json

    import torch

    from realtime import cli
    from engine.controls import ControlSpec
    from engine.training.model import ModelConfig, MusicLSTM
    from engine.theme.model import ThemeConfig, ThemeVAE, save_theme

    vocab, spec = Vocab(), ControlSpec()
    torch.manual_seed(0)
    plain = MusicLSTM(ModelConfig(vocab_size=vocab.size, n_controls=spec.size, embed=8,
                                  hidden=16, layers=1))
    model = tmp_path / "theme.npz"
    save_theme(model, ThemeVAE.from_plain(plain, ThemeConfig(z_dim=6, enc_embed=8,
                                                             enc_hidden=8)), vocab, spec)
    assert cli.main(["theme", "encode", "--notes", json.dumps(D_MINOR), "--mode", "major",
                     "--model", str(model)]) == 0
    out = capsys.readouterr().out
    assert "D minor (measured), 3 bars" in out and "parallel major" in out
    assert "z of 6 dimensions" in out
    mid = tmp_path / "m.mid"
    write_midi(make_notes([(0, 12, 60), (12, 24, 64), (24, 48, 67)]), mid)
    assert cli.main(["theme", "encode", str(mid)]) == 0
    assert "C major (measured), 1 bar " in capsys.readouterr().out
    assert cli.main(["theme", "encode"]) == 1
    assert "theme" in capsys.readouterr().err
    assert cli.main(["theme", "encode", "--notes", "[[60, 0, 1]]"]) == 1
    assert "at least 3 notes" in capsys.readouterr().err
