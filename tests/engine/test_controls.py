"""Controls measured on hand-made music."""
import numpy as np
import pytest

from engine.controls import (KEY_NAMES, KEY_SPELLINGS, STYLES, ControlSpec, check_parts,
                             check_style, find_key, parallel_mode, parse_key, style_of,
                             to_tonic_c)
from engine.ensemble import BASS, DRUMS, HARMONY, MELODY
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


# -- ensembles: the drums have no key, register or density -------------------------------
def d_major_with_drums():
    """Two bars of D major in melody and bass, and a drum part whose pitches (C#, D#, F#,
    G#, as GM's side stick, snare, hi-hat, pedal hi-hat) would pull a pitch analysis off D."""
    melody = [(i * 12, i * 12 + 12, p, 80, MELODY)
              for i, p in enumerate((74, 76, 78, 79, 81, 83, 85, 86))]
    bass = [(i * 24, i * 24 + 24, p, 80, BASS) for i, p in enumerate((38, 45, 43, 38))]
    drums = [(i * 3, i * 3 + 12, (37, 39, 42, 44)[i % 4], 100, DRUMS) for i in range(32)]
    return make_notes(melody + bass + drums)


def test_controls_of_an_ensemble_ignore_the_drums():
    spec, ens = ControlSpec(), Vocab(n_voices=4)
    notes = d_major_with_drums()
    pitched = notes[notes["channel"] != DRUMS]
    with_drums = [spec.describe(r) for r in spec.compute(ens.encode(notes), ens)]
    without = [spec.describe(r) for r in spec.compute(ens.encode(pitched), ens)]
    assert {(d["key"], d["mode"]) for d in with_drums} == {(2, 0)}  # D major
    # the same music without its drums has the same controls at the same instants
    kinds, values = ens.tables()

    def by_time(tokens, described):
        pos = np.cumsum(np.where(kinds[tokens] == 3, values[tokens], 0))
        return {int(p): (d["key"], d["mode"], round(d["density"], 4), round(d["register"], 4))
                for p, d in zip(pos, described)}
    a, b = by_time(ens.encode(notes), with_drums), by_time(ens.encode(pitched), without)
    assert all(a[t] == b[t] for t in b if t in a) and len(set(a) & set(b)) >= 8
    # density: 1 melody onset a beat and a bass onset every 2 beats -> 1.5 over the first 4
    assert with_drums[1]["density"] == pytest.approx(1.5)
    # a one-line vocabulary hears the drums as pitches: the measure can tell them apart
    one = Vocab()
    heard = [spec.describe(r) for r in spec.compute(one.encode(notes), one)]
    assert heard[1]["density"] > 3 and heard[1]["register"] < with_drums[1]["register"] - 5


def test_to_tonic_c_and_parallel_mode_leave_the_drums():
    notes = d_major_with_drums()
    drums = notes["channel"] == DRUMS
    moved = to_tonic_c(notes, 2, ensemble=True)
    assert (moved["pitch"][~drums] == notes["pitch"][~drums] - 2).all()
    assert (moved["pitch"][drums] == notes["pitch"][drums]).all()
    assert (to_tonic_c(notes, 2)["pitch"] == notes["pitch"] - 2).all()  # one line: all move
    # the octave is chosen from the pitched notes: a drum at 0 does not push them up
    high = make_notes([(0, 12, 125, 80, MELODY), (0, 12, 0, 80, DRUMS)])
    assert to_tonic_c(high, 6, ensemble=True)["pitch"].tolist() == [119, 0]
    only_drums = notes[drums]
    assert np.array_equal(to_tonic_c(only_drums, 7, ensemble=True), only_drums)
    minor = parallel_mode(moved, 0, ensemble=True)
    assert (minor["pitch"][drums] == notes["pitch"][drums]).all()
    assert set((minor["pitch"][~drums] % 12).tolist()) <= {0, 2, 3, 5, 7, 8, 11}
    snare = make_notes([(0, 12, 40, 80, DRUMS)])  # GM's electric snare, an E as a pitch
    assert parallel_mode(snare, 0, ensemble=True)["pitch"].tolist() == [40]
    assert parallel_mode(snare, 0)["pitch"].tolist() == [39]  # one line: a pitch like any


def test_a_style_is_one_hot_in_the_block_after_the_others():
    plain, styled = ControlSpec(), ControlSpec(styles=tuple(STYLES))
    assert styled.size == plain.size + len(STYLES)
    assert [n for n, _ in styled.layout[:-1]] == [n for n, _ in plain.layout]
    v = styled.vector(parse_key("Eb"), 1, 2.5, 70, phase=5, style="classical")
    assert np.array_equal(v[:plain.size], plain.vector(parse_key("Eb"), 1, 2.5, 70, phase=5))
    assert v[plain.size:].tolist() == [0, 0, 1, 0]
    assert styled.describe(v)["style"] == "classical"
    assert styled.describe(styled.vector(0, 0, 1, 60))["style"] is None  # none: all zero
    # a model file's JSON list reads back as the same spec
    assert ControlSpec.from_dict(styled.to_dict()) == styled
    # a model told no styles takes a known one and plays as before
    assert np.array_equal(plain.vector(0, 0, 1, 60, style="game"), plain.vector(0, 0, 1, 60))


@pytest.mark.parametrize("bad", ["jazz", "", None, 3, ["game"]])
def test_an_unknown_style_names_the_field_and_the_styles(bad):
    for spec in (ControlSpec(), ControlSpec(styles=tuple(STYLES))):
        with pytest.raises(InvalidMessage) as e:
            spec.request(0, 0, 1.0, 60, 0.5, True, style=bad) if bad is not None else \
                check_style(bad)
        assert e.value.field == "style" and "game" in e.value.allowed


def test_every_style_names_collections_and_each_source_has_at_most_one():
    from engine.training.multipart import SOURCES
    named = [s for sources in STYLES.values() for s in sources]
    assert len(named) == len(set(named)) and set(named) <= set(SOURCES)
    assert style_of("freedoom") == "game" and style_of("bach-parts") == "baroque"
    assert style_of("midi:mine") is None


# -- the voices' densities -----------------------------------------------------------------
def test_the_voices_densities_come_after_the_style_block_with_a_flag():
    plain = ControlSpec(styles=tuple(STYLES))
    told = ControlSpec(styles=tuple(STYLES), parts=True)
    assert [n for n, _ in told.layout] == [n for n, _ in plain.layout] + ["parts"]
    assert told.size == plain.size + 4
    v = told.vector(parse_key("A"), 1, 3.0, 62, phase=2, style="game", parts=(0.5, 1, 1.5))
    d = told.describe(v)
    assert d["parts"] == pytest.approx((0.5, 1, 1.5)) and d["style"] == "game"
    assert v[told.slices()["parts"]][0] == 1  # the flag: given
    assert np.array_equal(v[:plain.size], plain.vector(parse_key("A"), 1, 3.0, 62, phase=2,
                                                       style="game"))
    assert told.describe(told.vector(0, 0, 1, 60))["parts"] is None  # not given: all zero
    assert not told.vector(0, 0, 1, 60)[told.slices()["parts"]].any()
    assert ControlSpec.from_dict(told.to_dict()) == told
    # a model not told them takes valid ones and plays as before
    assert np.array_equal(plain.vector(0, 0, 1, 60, parts=(1, 1, 1)), plain.vector(0, 0, 1, 60))


@pytest.mark.parametrize("bad", [(1, 2), (1, 2, 3, 4), (1, 2, -0.5), (1, 2, 8.5), "123",
                                 (True, 1, 1), (float("nan"), 1, 1), ("1", 1, 1), 3.0,
                                 {"melody": 1}])
def test_bad_voice_densities_name_the_field_and_what_is_allowed(bad):
    for spec in (ControlSpec(), ControlSpec(parts=True)):
        with pytest.raises(InvalidMessage) as e:
            spec.request(0, 0, 1.0, 60, 0.5, True, parts=bad)
        assert e.value.field == "parts" and "melody, bass, harmony" in e.value.allowed
    assert check_parts([0, 8, 2.5]) == (0.0, 8.0, 2.5)
    with pytest.raises(InvalidMessage):  # a request's None is "not given", not a value
        check_parts(None)


def test_each_voices_density_is_its_onsets_per_beat_ahead_and_they_sum_to_the_density():
    """Melody a note a beat, bass one every 2 beats, harmony two a beat, drums eighths: at
    the start the next 4 beats hold 4, 2 and 8 of them; the drums count in none."""
    spec, ens = ControlSpec(parts=True), Vocab(n_voices=4)
    rows = [(12 * i, 12 * i + 12, 72, 80, MELODY) for i in range(8)]
    rows += [(24 * i, 24 * i + 24, 48, 80, BASS) for i in range(4)]
    rows += [(6 * i, 6 * i + 6, 60 + i % 3, 80, HARMONY) for i in range(16)]
    rows += [(6 * i, 6 * i + 3, 42, 80, DRUMS) for i in range(16)]
    tokens = ens.encode(make_notes(rows))
    described = [spec.describe(r) for r in spec.compute(tokens, ens)]
    assert described[1]["parts"] == pytest.approx((1.0, 0.5, 2.0))
    for d in described:
        assert sum(d["parts"]) == pytest.approx(d["density"], abs=1e-5)
    # the last beats' windows run past the music's end: fewer onsets ahead
    assert described[-1]["parts"] == pytest.approx((0, 0, 0))
    # one line: every note is the melody's
    one = Vocab()
    block = spec.part_densities(one.encode(make_notes(rows[:8])), one)
    assert block[1].tolist() == pytest.approx([1, 0.25, 0, 0])
