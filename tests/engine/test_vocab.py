"""The vocabulary table and its codec: exhaustive round trips at every boundary."""
import numpy as np
import pytest

from engine.errors import InvalidToken
from engine.notes import make_notes, normalise
from engine.vocab import KIND_NAMES, NOTE_OFF, NOTE_ON, START, TIME_SHIFT, VELOCITY, Vocab


@pytest.mark.parametrize("vocab", [Vocab(), Vocab(n_velocity=8), Vocab(ticks_per_beat=4, max_shift_beats=2)])
def test_every_token_round_trips_through_its_event(vocab):
    kinds, values = vocab.tables()
    seen = set()
    for tok in range(vocab.size):
        kind, value = vocab.event(tok)
        assert (kind, value) == (kinds[tok], values[tok])
        assert vocab.token(kind, value) == tok
        seen.add((kind, value))
    assert len(seen) == vocab.size
    assert vocab.size == 1 + 128 + 128 + vocab.max_shift + vocab.n_velocity


@pytest.mark.parametrize("kind, bad", [(NOTE_ON, -1), (NOTE_ON, 128), (NOTE_OFF, 128),
                                        (TIME_SHIFT, 0), (TIME_SHIFT, 49), (START, 1)])
def test_values_outside_the_table_are_refused(kind, bad):
    with pytest.raises(InvalidToken, match=KIND_NAMES[kind]):
        Vocab().token(kind, bad)
    with pytest.raises(InvalidToken):
        Vocab().event(Vocab().size)


def test_velocity_bins_cover_1_to_127_and_invert():
    v = Vocab(n_velocity=8)
    bins = [v.velocity_bin(x) for x in range(1, 128)]
    assert bins == sorted(bins) and set(bins) == set(range(8))
    for b in range(8):
        assert v.velocity_bin(v.bin_velocity(b)) == b
    with pytest.raises(InvalidToken):
        v.token(VELOCITY, 8)


def test_extreme_notes_round_trip():
    v = Vocab()
    notes = make_notes([(0, 1, 0), (0, 1, 127), (1, 1 + v.max_shift, 64),
                        (500, 500 + 3 * v.max_shift + 5, 60), (2000, 2001, 61)])
    tokens = v.encode(notes)
    assert tokens[0] == v.offsets[START]
    back = v.decode(tokens)
    np.testing.assert_array_equal(back[["start", "end", "pitch"]], normalise(notes)[["start", "end", "pitch"]])
    assert (v.encode(back) == tokens).all()  # canonical streams are fixed points


def test_random_pieces_round_trip_with_velocity():
    rng = np.random.default_rng(0)
    v = Vocab(n_velocity=16)
    for _ in range(50):
        n = rng.integers(1, 60)
        start = rng.integers(0, 400, n)
        notes = make_notes(zip(start, start + rng.integers(1, 120, n), rng.integers(0, 128, n),
                               rng.integers(1, 128, n)))
        ref = normalise(notes)
        back = v.decode(v.encode(notes))
        np.testing.assert_array_equal(back[["start", "end", "pitch"]], ref[["start", "end", "pitch"]])
        assert [v.velocity_bin(x) for x in back["velocity"]] == [v.velocity_bin(x) for x in ref["velocity"]]


def test_decode_closes_what_is_left_sounding_and_ignores_stray_offs():
    v = Vocab()
    toks = [v.token(NOTE_OFF, 50), v.token(NOTE_ON, 60), v.token(TIME_SHIFT, 6),
            v.token(NOTE_ON, 60), v.token(TIME_SHIFT, 3)]
    notes = v.decode(toks)
    assert notes[["start", "end", "pitch"]].tolist() == [(0, 6, 60), (6, 9, 60)]
    with pytest.raises(InvalidToken):
        v.decode([v.size])
