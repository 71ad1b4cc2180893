"""Phrases (engine/theme/data.py): at bar lines, ending on the next, drawn 2 and 4 bars
most, with each token's conductor position."""
from dataclasses import replace

import numpy as np
import pytest

from engine.controls import ControlSpec
from engine.notes import make_notes
from engine.theme.data import Phrases
from engine.theme.model import ThemeConfig
from engine.training.data import Dataset
from engine.vocab import NOTE_OFF, NOTE_ON, START, TIME_SHIFT, Vocab

from .tiny import TINY


def hand_dataset():
    """One piece in C, 4/4 at 12 ticks a beat (48 a bar): bar 1 from 0, bar 2 from 48,
    bar 3 opening with a rest, bar 4 a chord, bar 5 a last short note."""
    vocab, spec = Vocab(), ControlSpec()
    notes = make_notes([(0, 12, 60), (12, 24, 62), (24, 48, 64), (48, 60, 65), (60, 96, 67),
                        (100, 120, 69), (144, 192, 60), (144, 192, 64), (192, 200, 72)])
    tokens = vocab.encode(notes)
    controls = spec.compute(tokens, vocab)
    ds = Dataset(tokens.astype(np.int16), controls.astype(np.float16),
                 np.array([0, len(tokens)]), np.array(["hand"]), np.array(["test"]),
                 np.array([0], np.int8), vocab, spec, summary={"key_relative": True})
    return ds, tokens, controls


def test_phrases_start_at_bar_lines_and_end_at_the_next():
    ds, tokens, controls = hand_dataset()
    p = Phrases(ds, "train", ThemeConfig(max_bars=3))
    # bar lines 0, 48, 144 and 192 open with a note; 96 opens with a rest
    on = ds.vocab.offsets[NOTE_ON]
    assert [int(tokens[i]) - on for i in p.start] == [60, 65, 60, 72]
    # the piece ends at 200: no bar from 192, and from 144 one bar but not two
    assert p.end[3, 0] == -1 and p.end[2, 0] > 0 and p.end[2, 1] == -1 and p.end[1, 2] > 0
    rel = lambda t: ds.vocab.decode(t)[["start", "end", "pitch"]].tolist()
    t1, c1, i1 = p.phrase(1, 1)  # bar 2: the note-off on the next bar line is in it
    assert rel(t1) == [(0, 12, 65), (12, 48, 67)]
    assert ds.vocab.event(int(t1[-1]))[0] == NOTE_OFF  # the note-off at 96
    t4, _, _ = p.phrase(2, 1)  # bar 4: the chord, both offs at 192, not the note-on there
    assert rel(t4) == [(0, 48, 60), (0, 48, 64)]
    t2, _, _ = p.phrase(0, 2)
    assert rel(t2) == [(0, 12, 60), (12, 24, 62), (24, 48, 64), (48, 60, 65), (60, 96, 67)]
    # the decoder reads START, then the phrase; its controls are the piece's before each token
    b = p.batch([1, 0], [1, 2])
    n = len(t1)
    assert b.inputs[0, 0] == ds.vocab.token(START) and b.inputs[0, 1:n].tolist() == t1[:-1].tolist()
    np.testing.assert_array_equal(b.controls[0, :n].numpy(),
                                  controls[i1 - 1:i1 - 1 + n].astype(np.float16).astype(np.float32))
    assert b.mask.sum(1).tolist() == b.lengths.tolist() == [n, len(t2)]
    assert b.tokens[0, n:].eq(0).all() and not b.mask[0, n:].any()


def test_dataset_phrases_span_whole_bars_and_draw_2_and_4_most(data):
    p = Phrases(data, "train", TINY, max_tokens=256)
    kinds, values = data.vocab.tables()
    bar = 4 * data.vocab.ticks_per_beat
    rng = np.random.default_rng(3)
    rows, ks = p.pick(rng, 400)
    counts = np.bincount(ks, minlength=5)
    assert counts[2] > counts[1] and counts[4] > counts[3]
    for r, k in zip(rows[:50], ks[:50]):
        tok, ctl = data.pieces("train")[p.piece[r]]
        t, c, i = p.phrase(r, k)
        shift = np.where(kinds[tok] == TIME_SHIFT, values[tok], 0)
        before = np.cumsum(shift) - shift
        assert kinds[t[0]] == NOTE_ON and before[i] % bar == 0
        j, e = i + len(t), before[i] + k * bar  # the phrase is tok[i:j], its end line e
        assert before[-1] + shift[-1] >= e  # the piece lasts that long
        inside = before[i:j]
        assert ((inside < e) | ((inside == e) & (kinds[t] == NOTE_OFF))).all()
        assert j == len(tok) or before[j] > e or (before[j] == e and kinds[tok[j]] != NOTE_OFF)
        np.testing.assert_array_equal(c, ctl[i - 1:j - 1].astype(np.float32))
    b = p.sample(rng, 8, bars=2)
    assert b.bars.tolist() == [2] * 8 and b.lengths.max() == b.tokens.shape[1]


def test_positions_count_bars_or_beats_from_the_phrase_start_round_its_length():
    ds, tokens, _ = hand_dataset()
    kinds, values = ds.vocab.tables()
    for per_bar, want in ((1, [0, 0, 1, 0]), (4, [0, 1, 4, 0])):
        p = Phrases(ds, "train", replace(ThemeConfig(max_bars=3), positions_per_bar=per_bar))
        t, _, _ = p.phrase(0, 2)  # bars 1-2: notes at 0, 12, 24, 48, 60; the off at 96
        pos = p.positions(t, 2)
        times = np.cumsum(np.where(kinds[t] == TIME_SHIFT, values[t], 0))
        times = times - np.where(kinds[t] == TIME_SHIFT, values[t], 0)
        on = kinds[t] == NOTE_ON
        # the notes at ticks 0 and 48, and the note-off on the closing line (96: round)
        picked = [pos[on][times[on] == 0][0], pos[on][times[on] == 12][0],
                  pos[on][times[on] == 48][0], pos[-1]]
        assert [int(v) for v in picked] == want
        assert pos.max() < 2 * per_bar
        b = p.batch([0], [2])
        assert b.pos[0, :len(t)].tolist() == pos.tolist()
    with pytest.raises(Exception, match="divide"):
        Phrases(ds, "train", replace(ThemeConfig(), positions_per_bar=5))
