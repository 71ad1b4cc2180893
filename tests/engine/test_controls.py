"""Controls measured on hand-made music."""
import numpy as np
import pytest

from engine.controls import KEY_NAMES, KEY_SPELLINGS, ControlSpec, find_key, parse_key
from engine.errors import InvalidMessage
from engine.notes import make_notes
from engine.vocab import Vocab


def scale(tonic, steps, beats=1):
    pitches, p = [], tonic
    for s in (0,) + steps:
        p += s
        pitches.append(p)
    return make_notes([(i * 12 * beats, (i + 1) * 12 * beats, q) for i, q in enumerate(pitches)])


MAJOR = (2, 2, 1, 2, 2, 2, 1)
MINOR = (2, 1, 2, 2, 1, 2, 2)


@pytest.mark.parametrize("tonic, steps, mode", [(60, MAJOR, 0), (57, MINOR, 1), (62, MAJOR, 0),
                                                 (65, MINOR, 1)])
def test_key_finding_on_scales_and_triads(tonic, steps, mode):
    notes = scale(tonic, steps)
    triad = make_notes([(100, 130, tonic), (100, 130, tonic + (4 if mode == 0 else 3)),
                        (100, 130, tonic + 7)])
    pc, m, corr = find_key(np.concatenate([notes, triad]))
    assert (pc, m) == (tonic % 12, mode) and corr > 0.7


def test_parse_key_names():
    assert [parse_key(k) for k in ("C", "F#", "Gb", "eb", "B", "Cb", "B#")] == [0, 6, 6, 3, 11, 11, 0]
    for bad in ("H", "C##", "", "Fx", 3):
        with pytest.raises(InvalidMessage) as info:
            parse_key(bad)
        assert info.value.field == "key"


def test_density_register_phase_and_key_per_token():
    spec, vocab = ControlSpec(), Vocab()
    # two onsets a beat for 8 beats, then one a beat for 8 beats, D major arpeggio
    rows = [(i * 6, i * 6 + 6, (62, 66, 69)[i % 3]) for i in range(16)]
    rows += [(96 + i * 12, 108 + i * 12, (62, 66, 69)[i % 3]) for i in range(8)]
    tokens = vocab.encode(make_notes(rows))
    c = spec.compute(tokens, vocab)
    kinds, values = vocab.tables()
    pos = np.cumsum(np.where(kinds[tokens] == 3, values[tokens], 0))
    first = spec.describe(c[np.argmax(pos >= 0)])
    assert first["density"] == pytest.approx(2.0) and first["phase"] == 0
    late = spec.describe(c[np.argmax(pos >= 120)])
    assert late["density"] == pytest.approx(1.0)
    assert all(spec.describe(row)["phase"] == p % 12 for row, p in zip(c, pos))
    assert 62 <= first["register"] <= 69
    assert {(spec.describe(row)["key"], spec.describe(row)["mode"]) for row in c} == {(2, 0)}


def test_vector_describe_and_transpose_invert():
    spec = ControlSpec()
    v = spec.vector(parse_key("Eb"), 1, 2.5, 70, phase=5)
    assert spec.describe(v) == dict(key=3, mode=1, density=2.5, register=70.0, phase=5)
    up = spec.describe(spec.transpose(v, 4))
    assert (up["key"], up["register"]) == (7, pytest.approx(74.0))


def test_every_key_spelling_is_read_and_the_key_names_are_among_them():
    assert {parse_key(k) for k in KEY_SPELLINGS} == set(range(12))
    assert set(KEY_NAMES) <= set(KEY_SPELLINGS)
