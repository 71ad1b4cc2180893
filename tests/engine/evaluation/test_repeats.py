"""Form's figures (``engine.evaluation.repeats``): bar patterns, bar and phrase repeats and
the self-similarity profile on hand-built lines whose answers are known (a bar repeated
exactly, transposed, varied, not at all), and their averages over pieces and seeds."""
import numpy as np
import pytest

from engine.ensemble import DRUMS
from engine.evaluation import repeats as rp
from engine.evaluation.form import FormEvalConfig
from engine.notes import NOTE_DTYPE

B = 12          # ticks per beat
BAR = 4 * B
CFG = FormEvalConfig()


def notes(rows, channel=0):
    """Notes from (start tick, pitch) rows, each an eighth note long."""
    return np.array([(s, s + 6, p, 80, channel) for s, p in rows], NOTE_DTYPE)


def bar(at, figure):
    """A bar's (start tick, pitch) rows: ``figure`` is (tick in bar, pitch) pairs."""
    return [(at * BAR + t, p) for t, p in figure]


TUNE = [(0, 60), (12, 62), (24, 64), (36, 67)]          # rhythm and intervals +2 +2 +3
OTHER_RHYTHM = [(0, 60), (6, 62), (24, 64), (36, 67)]
OTHER_INTERVALS = [(0, 60), (12, 62), (24, 65), (36, 67)]


def patterns(rows, n, how="top"):
    return rp.bar_patterns(notes(rows), BAR, 0, n, how)


def test_a_bar_repeated_exactly_or_transposed_is_a_repeat_and_a_changed_one_is_not():
    exact = patterns(bar(0, TUNE) + bar(1, TUNE), 2)
    up = patterns(bar(0, TUNE) + bar(1, [(t, p + 5) for t, p in TUNE]), 2)
    rhythm = patterns(bar(0, TUNE) + bar(1, OTHER_RHYTHM), 2)
    steps = patterns(bar(0, TUNE) + bar(1, OTHER_INTERVALS), 2)
    assert rp.bar_repeats(exact) == (1, 1)
    assert rp.bar_repeats(up) == (1, 1)        # same rhythm and intervals, a fourth higher
    assert rp.bar_repeats(rhythm) == (0, 1)
    assert rp.bar_repeats(steps) == (0, 1)
    assert rp.jaccard(*exact) == 1.0
    # (0, None), (24, +2), (36, +3) shared with the other rhythm: 3 of 5 distinct elements
    assert rp.jaccard(*rhythm) == pytest.approx(3 / 5)


def test_any_earlier_bar_counts_and_a_silent_bar_is_not_counted():
    rows = bar(0, TUNE) + bar(1, OTHER_RHYTHM) + bar(3, [(t, p - 3) for t, p in TUNE])
    pats = patterns(rows, 4)
    assert not pats[2]                          # bar 2 is silent
    assert rp.bar_repeats(pats) == (1, 2)       # bar 3 recalls bar 0 (two bars back)


def test_an_eight_bar_window_of_two_equal_phrases():
    a, b, c, d = TUNE, OTHER_RHYTHM, OTHER_INTERVALS, [(0, 70), (24, 65)]
    figs = [a, b, c, d, a, b, c, d]
    rows = [r for i, f in enumerate(figs) for r in bar(i, f)]
    out = rp.line_figures(notes(rows), "top", 0, 1, CFG)
    assert out["bar_repeat"] == pytest.approx(4 / 7) and out["bars"] == 7
    assert out["phrase_repeat"] == 1.0
    assert out["similarity"][3] == 1.0          # lag 4: every pair the same bar
    assert out["similarity"][0] < 0.5
    # the second phrase with one bar changed still repeats (3 of 4 >= 75 %), two do not
    near = [a, b, c, d, a, b, c, [(0, 50)]]
    far = [a, b, c, d, a, b, [(0, 50)], [(0, 50)]]
    for figs, want in ((near, True), (far, False)):
        pats = patterns([r for i, f in enumerate(figs) for r in bar(i, f)], 8)
        assert rp.phrase_repeat(pats, 4, 0.75) is want


def test_through_composed_music_repeats_nothing():
    rng = np.random.default_rng(0)
    rows = [(t, int(rng.integers(50, 80))) for t in range(0, 8 * BAR, 6)]
    out = rp.line_figures(notes(rows), "top", 0, 1, CFG)
    assert out["bar_repeat"] == 0 and out["phrase_repeat"] == 0


def test_the_top_note_makes_the_line_and_the_bass_its_lowest():
    chords = [(t, p) for t, _ in TUNE for p in (48, 72)] + [(BAR + t, p) for t, _ in TUNE
                                                            for p in (48, 73 + t // 12)]
    top, low = patterns(chords, 2, "top"), patterns(chords, 2, "bottom")
    assert rp.bar_repeats(low) == (1, 1) and rp.bar_repeats(top) == (0, 1)


def test_drums_keep_the_instrument():
    kick, snare = 36, 38
    same = notes(bar(0, [(0, kick), (24, snare)]) + bar(1, [(0, kick), (24, snare)]), DRUMS)
    swapped = notes(bar(0, [(0, kick), (24, snare)]) + bar(1, [(0, snare), (24, kick)]), DRUMS)
    assert rp.bar_repeats(rp.bar_patterns(same, BAR, 0, 2, "hits")) == (1, 1)
    assert rp.bar_repeats(rp.bar_patterns(swapped, BAR, 0, 2, "hits")) == (0, 1)


def test_set_figures_average_pieces_and_over_seeds_average_sets():
    rep = notes([r for i in range(8) for r in bar(i, TUNE)])
    new = notes([r for i in range(8) for r in bar(i, [(0, 60 + 7 * i), (12, 60 + i)])])
    per = [rp.piece_figures(x, rp.ONE_LINE, CFG, (0, 1)) for x in (rep, new)]
    s = rp.set_figures(per, rp.ONE_LINE, CFG)
    assert s["pieces"] == 2 and s["line"]["bar_repeat"]["mean"] == pytest.approx(0.5)
    assert s["line"]["bar_repeat"]["n"] == 2
    seeds = rp.over_seeds([s, s], rp.ONE_LINE)
    assert seeds["line"]["bar_repeat"]["mean"] == pytest.approx(0.5)
