"""The melody's moves across bar lines (engine.evaluation.joins), on a hand-made line and on
a small run of the real measurement (held-out pieces, the shipped ensemble, the critic)."""
import json

import numpy as np

from engine.ensemble import BASS, MELODY
from engine.evaluation import joins
from engine.notes import NOTE_DTYPE

BAR = 48


def _notes(rows):
    n = np.zeros(len(rows), NOTE_DTYPE)
    for i, (start, pitch, channel) in enumerate(rows):
        n[i]["start"], n[i]["end"], n[i]["pitch"] = start, start + 12, pitch
        n[i]["velocity"], n[i]["channel"] = 80, channel
    return n


def test_moves_follow_the_melody_s_top_line_and_split_at_bar_lines():
    # 60 -> 62 inside bar 0, 62 -> 69 across the bar line (a chord's top note), then 69 -> 67;
    # the bass's notes are not the melody's
    n = _notes([(0, 60, MELODY), (24, 62, MELODY), (48, 64, MELODY), (48, 69, MELODY),
                (60, 67, MELODY), (30, 40, BASS)])
    assert joins.moves(n, BAR) == ([7], [2, 2])
    f = joins.figures([n], BAR)
    assert (f["across_leaps"], f["across_steps"], f["inside_leaps"], f["inside_steps"]) == \
        (1.0, 0.0, 0.0, 1.0)
    assert (f["across_moves"], f["inside_moves"]) == (1, 2)
    # one bar line (48): the melody struck on it, the bass silent (its note ends at 42)
    assert joins.downbeats(n, BAR, MELODY) == [True] and joins.downbeats(n, BAR, BASS) == [False]
    assert (f["melody_on_downbeats"], f["bass_on_downbeats"]) == (1.0, 0.0)
    held = _notes([(40, 60, MELODY)])
    held["end"] = 50  # held over the bar line
    assert joins.downbeats(held, BAR, MELODY) == [True]
    # spans of 4 bars: the second's melody a fifth higher with twice the pitched onsets
    spans = _notes([(0, 60, MELODY), (4 * BAR, 67, MELODY), (4 * BAR + 12, 67, MELODY),
                    (4 * BAR, 40, BASS)])
    assert joins.contrasts(spans, BAR, 8) == [(7.0, float(np.log(3)))]


def test_a_small_measurement_reports_real_music_and_each_weight(tmp_path):
    # a dataset file holding what the held-out reader needs: four chorales held out (read
    # from music21's corpus), as the form evaluation's tests build it
    data = tmp_path / "ensemble.npz"
    meta = dict(format=1, summary=dict(ensemble=True, sources={}))
    np.savez(data, ids=np.array(["bach/bwv276.mxl", "bach/bwv263.mxl", "bach/bwv253.mxl",
                                 "bach/bwv269.mxl"]),
             sources=np.array(["bach-parts"] * 4), split=np.full(4, 2, np.int8),
             meta=np.array(json.dumps(meta)))
    # the pieces are all in the test split; the presets are the shipped ones, named
    from engine.evaluation.form import STATES
    res = joins.measure((0.0, 2.0), seeds=2, progress=lambda m: None, data=data,
                        joinings=(2.0,), splits=("test",), states=STATES)
    assert res["preset"] == "combat" and res["pieces"] >= 3
    assert 0 <= res["real"]["across_leaps"] <= 1
    off, on, joined, joined_1, free = res["generated"]
    assert (off["leading"], on["leading"], free["leading"]) == (0.0, 2.0, 0.0)
    assert off["repetition"] == on["repetition"] > 0 and free["repetition"] == 0
    assert (joined["joining"], joined_1["joining"], off["joining"]) == (2.0, 2.0, 0.0)
    assert joined["repetition"] == off["repetition"] and joined_1["repetition"] == 1.0
    # the join rule drops the recalls the melody would leap into: fewer leaps into bars,
    # and fewer of its bars repeat than with every recall the form offers
    assert joined["across_leaps"]["mean"] < off["across_leaps"]["mean"]
    assert joined["bar_repeats"]["melody"]["mean"] < off["bar_repeats"]["melody"]["mean"]
    assert free["bar_repeats"]["melody"]["mean"] <= off["bar_repeats"]["melody"]["mean"]
    assert res["real"]["span_register"] >= 0 and free["span_register"]["mean"] >= 0
    for row in (off, on, free):
        assert 0.0 <= row["critic"]["mean"] <= 1.0 and row["across_moves"]["mean"] > 0
    # the lead-in draws the bar before a recalled one toward it: fewer leaps into bars
    assert on["across_leaps"]["mean"] < off["across_leaps"]["mean"]
