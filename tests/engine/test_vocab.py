"""The vocabulary table and its codec: exhaustive round trips at every boundary, and
property tests of the ensemble codec (voice tokens) on random multi-voice pieces."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.ensemble import BASS, DRUMS, HARMONY, MELODY, VOICES
from engine.errors import InvalidMessage, InvalidToken
from engine.notes import NOTE_DTYPE, make_notes, normalise
from engine.vocab import (KIND_NAMES, NO_VOICE, NOTE_OFF, NOTE_ON, START, TIME_SHIFT, VELOCITY,
                          VOICE, Vocab)


@pytest.mark.parametrize("vocab", [Vocab(), Vocab(n_velocity=8),
                                   Vocab(ticks_per_beat=4, max_shift_beats=2),
                                   Vocab(n_velocity=8, n_voices=len(VOICES))])
def test_every_token_round_trips_through_its_event(vocab):
    kinds, values = vocab.tables()
    seen = set()
    for tok in range(vocab.size):
        kind, value = vocab.event(tok)
        assert (kind, value) == (kinds[tok], values[tok])
        assert vocab.token(kind, value) == tok
        seen.add((kind, value))
    assert len(seen) == vocab.size
    assert vocab.size == 1 + 128 + 128 + vocab.max_shift + vocab.n_velocity + vocab.n_voices


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


# -- voices ------------------------------------------------------------------------------
def test_one_line_vocabulary_is_unchanged_and_voices_come_last():
    """n_voices = 0 is today's table (every model file keeps its ids); with voices, the
    voice row is appended after it, so no other kind's ids move."""
    one, ens = Vocab(), Vocab(n_velocity=0, n_voices=4)
    assert one.size == 305 and one.counts[VOICE] == 0
    assert one.offsets[:VOICE] == (0, 1, 129, 257, 305)
    assert ens.offsets[:VOICE] == one.offsets[:VOICE] and ens.offsets[VOICE] == one.size
    assert ens.size == one.size + 4
    old = {k: v for k, v in one.to_dict().items() if k != "n_voices"}  # a file before voices
    assert Vocab.from_dict(old) == one and Vocab.from_dict(ens.to_dict()) == ens
    with pytest.raises(InvalidToken, match="voice"):
        one.token(VOICE, 0)
    with pytest.raises(InvalidToken, match="n_voices"):
        Vocab(n_voices=-1)


def test_one_line_stream_is_pinned():
    """The exact stream of a small piece, by hand: a one-line vocabulary writes no voice
    token and ignores the channel, as before voices."""
    v = Vocab(n_velocity=4)
    notes = make_notes([(0, 12, 64, 100, 3), (0, 6, 60, 20, 0), (60, 61, 67, 100, 9)])
    want = [v.token(START), v.token(VELOCITY, 0), v.token(NOTE_ON, 60),
            v.token(VELOCITY, 3), v.token(NOTE_ON, 64), v.token(TIME_SHIFT, 6),
            v.token(NOTE_OFF, 60), v.token(TIME_SHIFT, 6), v.token(NOTE_OFF, 64),
            v.token(TIME_SHIFT, 48), v.token(NOTE_ON, 67), v.token(TIME_SHIFT, 1),
            v.token(NOTE_OFF, 67)]
    assert v.encode(notes).tolist() == want
    assert set(v.decode(want)["channel"].tolist()) == {0}


def test_ensemble_stream_order_and_voice_tokens():
    """At one instant voice by voice, a voice's offs before its ons; a voice token only
    where the voice changes; the first note event names its voice."""
    v = Vocab(n_voices=4)
    notes = make_notes([(0, 12, 60, 80, HARMONY), (0, 12, 64, 80, HARMONY),
                        (0, 12, 60, 80, MELODY), (0, 6, 36, 80, DRUMS), (6, 12, 38, 80, DRUMS),
                        (0, 12, 40, 80, BASS)])
    ev = [v.event(t) for t in v.encode(notes)]
    assert ev == [(START, 0),
                  (VOICE, MELODY), (NOTE_ON, 60), (VOICE, BASS), (NOTE_ON, 40),
                  (VOICE, HARMONY), (NOTE_ON, 60), (NOTE_ON, 64), (VOICE, DRUMS), (NOTE_ON, 36),
                  (TIME_SHIFT, 6), (NOTE_OFF, 36), (NOTE_ON, 38),
                  (TIME_SHIFT, 6), (VOICE, MELODY), (NOTE_OFF, 60), (VOICE, BASS),
                  (NOTE_OFF, 40), (VOICE, HARMONY), (NOTE_OFF, 60), (NOTE_OFF, 64),
                  (VOICE, DRUMS), (NOTE_OFF, 38)]


def test_an_instant_with_offs_and_ons_in_two_voices_names_each_voice_once():
    """Voice-major order: melody's off and on, then the bass's off and on: two voice
    tokens at the instant, not four (offs of every voice, then ons of every voice)."""
    v = Vocab(n_voices=4)
    notes = make_notes([(0, 12, 60, 80, MELODY), (12, 24, 62, 80, MELODY),
                        (0, 12, 40, 80, BASS), (12, 24, 43, 80, BASS)])
    ev = [v.event(t) for t in v.encode(notes)]
    assert ev[ev.index((TIME_SHIFT, 12)):][:7] == [
        (TIME_SHIFT, 12), (VOICE, MELODY), (NOTE_OFF, 60), (NOTE_ON, 62),
        (VOICE, BASS), (NOTE_OFF, 40), (NOTE_ON, 43)]


def test_two_voices_on_one_pitch_both_survive():
    v = Vocab(n_voices=4)
    notes = make_notes([(0, 24, 60, 80, MELODY), (12, 18, 60, 80, HARMONY),
                        (12, 30, 60, 80, BASS)])
    back = v.decode(v.encode(notes))
    assert back[["start", "end", "pitch", "channel"]].tolist() == [
        (0, 24, 60, MELODY), (12, 30, 60, BASS), (12, 18, 60, HARMONY)]
    # one line cannot tell them apart: the earlier note is cut where the next begins
    assert Vocab().decode(Vocab().encode(notes))[["start", "end"]].tolist() == [(0, 12), (12, 30)]


def test_a_channel_outside_the_voices_is_refused_naming_the_field():
    bad = make_notes([(0, 12, 60, 80, 0), (0, 12, 64, 80, 4)])
    with pytest.raises(InvalidMessage) as err:
        Vocab(n_voices=4).encode(bad)
    assert err.value.field == "channel" and err.value.allowed == "0..3"


# random multi-voice pieces: a narrow pitch range makes same-pitch collisions, within a
# voice (cut by normalise) and across voices (both kept), common
_note = st.tuples(st.integers(0, 400), st.integers(1, 130), st.integers(0, 127),
                  st.integers(1, 127), st.integers(0, 3))
_narrow = st.tuples(st.integers(0, 60), st.integers(1, 30), st.integers(58, 62),
                    st.integers(1, 127), st.integers(0, 3))
pieces = st.lists(st.one_of(_note, _narrow), min_size=0, max_size=60).map(
    lambda rows: np.array([(s, s + d, p, vel, ch) for s, d, p, vel, ch in rows], NOTE_DTYPE))
FIELDS = ["start", "end", "pitch", "channel"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(notes=pieces, n_velocity=st.sampled_from([0, 5, 32]))
def test_multi_voice_round_trip(notes, n_velocity):
    """decode(encode(notes)) is the notes normalised per voice (velocity to its bin), and
    a canonical stream is a fixed point of encode(decode(.))."""
    v = Vocab(n_velocity=n_velocity, n_voices=4)
    ref = v.normalise(notes)
    tokens = v.encode(notes)
    back = v.decode(tokens)
    assert back[FIELDS].tolist() == ref[FIELDS].tolist()
    if n_velocity:
        assert [v.velocity_bin(x) for x in back["velocity"]] == \
            [v.velocity_bin(x) for x in ref["velocity"]]
    assert np.array_equal(v.encode(back), tokens)
    # per voice, the voice's notes alone are what one line makes of them
    for voice in range(4):
        alone = notes[notes["channel"] == voice]
        mine = back[back["channel"] == voice]
        assert mine[["start", "end", "pitch"]].tolist() == \
            normalise(alone)[["start", "end", "pitch"]].tolist()
    # a voice token only where the voice changes, and one before the first note event
    kinds, values = v.tables()
    said = values[tokens[kinds[tokens] == VOICE]]
    assert (np.diff(said) != 0).all()
    if len(notes):
        k = kinds[tokens]
        assert k[np.argmax((k != START) & (k != TIME_SHIFT))] == VOICE


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["start", "voice", "note", "shift"]), max_size=80),
       st.randoms(use_true_random=False))
def test_voices_of_follows_the_stream(kinds_drawn, rnd):
    """The vectorised voice in force equals a plain walk along the stream (START clears)."""
    v = Vocab(n_voices=4)
    make = dict(start=lambda: v.token(START), voice=lambda: v.token(VOICE, rnd.randrange(4)),
                note=lambda: v.token(NOTE_ON, rnd.randrange(128)),
                shift=lambda: v.token(TIME_SHIFT, rnd.randrange(1, v.max_shift + 1)))
    tokens = np.array([make[k]() for k in kinds_drawn], np.int64)
    want, now = [], NO_VOICE
    for t in tokens:
        kind, value = v.event(int(t))
        now = value if kind == VOICE else NO_VOICE if kind == START else now
        want.append(now)
    assert v.voices_of(tokens).tolist() == want
