"""engine.evaluation.features: the feature histograms and their overlap on known cases."""
import math

import numpy as np
import pytest

from engine.evaluation.features import (histogram_intersection, ioi_histogram, js_divergence,
                                        length_edges, length_histogram, pitch_class_histogram,
                                        range_histogram, texture, voice_counts, voices_histogram)
from engine.evaluation.plots import sweep_path
from engine.notes import make_notes

from .test_judges import A_MINOR, C_MAJOR, D_MAJOR


def test_histogram_intersection_and_js_known_cases():
    assert histogram_intersection([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)  # scale-free
    assert histogram_intersection([1, 0], [0, 1]) == 0.0
    assert histogram_intersection([1, 1], [1, 0]) == pytest.approx(0.5)
    assert histogram_intersection([3, 1, 0], [1, 1, 2]) == pytest.approx(0.25 + 0.25)
    assert js_divergence([1, 2], [1, 2]) == pytest.approx(0.0)
    assert js_divergence([1, 0], [0, 1]) == pytest.approx(1.0)
    assert 0 < js_divergence([1, 1], [1, 0]) < 1
    assert math.isnan(histogram_intersection([0, 0], [1, 1]))


def test_feature_histograms():
    # relative to the detected tonic, C major and D major are the same music
    np.testing.assert_allclose(pitch_class_histogram([C_MAJOR]), pitch_class_histogram([D_MAJOR]))
    assert pitch_class_histogram([C_MAJOR], mode=1).sum() == 0
    assert pitch_class_histogram([C_MAJOR, A_MINOR], mode=1)[0] == 3 * 36  # A held 3 times
    r = range_histogram([C_MAJOR, A_MINOR, make_notes([(0, 1, 20), (0, 1, 100)])])
    assert r[12] == 2 and r[48] == 1 and r.sum() == 3
    gaps = ioi_histogram([make_notes([(0, 6, 60), (0, 6, 64), (6, 9, 62), (12, 13, 60),
                                      (72, 80, 60)])])
    assert len(gaps) == 48
    assert gaps[5] == 2 and gaps[47] == 1 and gaps.sum() == 3  # 6, 6 ticks and 60 -> 48+


def test_note_lengths_and_voices():
    notes = make_notes([(0, 12, 60), (0, 24, 64), (12, 18, 62), (30, 36, 60)])
    np.testing.assert_array_equal(voice_counts(notes), [2] * 12 + [2] * 6 + [1] * 6 + [0] * 6
                                  + [1] * 6)
    v = voices_histogram([notes])
    assert v[0] == 6 and v[1] == 12 and v[2] == 18 and v.sum() == 36
    edges = length_edges(12)
    assert edges[0] == pytest.approx(1 / 12) and edges[-1] == 16 and len(edges) == 47 + 13
    h = length_histogram([notes, make_notes([(0, 400, 60)])], 12)
    assert h[11] == 1 and h[23] == 1 and h[5] == 2 and h[-1] == 1 and h.sum() == 5
    t = texture([notes], [notes], 12)
    assert t["note_length"]["intersection"] == pytest.approx(1.0)
    assert t["note_length"]["generated"]["max"] == 2.0
    assert t["voices"]["held_out"]["max"] == 2 and t["voices"]["generated"]["p50"] == 1.5
    assert sweep_path("x/roll.png").as_posix() == "x/roll-tonality.png"
