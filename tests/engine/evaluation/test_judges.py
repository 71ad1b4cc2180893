"""The key judges on hand-made music whose key is known, the confusion summary, and both
judges on real tunes of music21's corpus against their own key signatures."""
import numpy as np
import pytest

from engine.errors import InvalidMessage
from engine.evaluation.judges import (confusion, detect_key, key_adherence, key_name, key_table,
                           music21_key, real_music)
from engine.notes import NOTE_DTYPE, make_notes


def melody(pitches, long=()):
    """One note a beat (12 ticks), the pitches in ``long`` held three beats."""
    rows, t = [], 0
    for p in pitches:
        d = 36 if p in long else 12
        rows.append((t, t + d, p))
        t += d
    return make_notes(rows)


C_MAJOR = melody([60, 62, 64, 65, 67, 69, 71, 72, 67, 64, 60], long=(60, 64, 67, 72))
A_MINOR = melody([57, 59, 60, 62, 64, 65, 68, 69, 64, 60, 57], long=(57, 60, 64, 69))
D_MAJOR = melody([62, 64, 66, 67, 69, 71, 73, 74, 69, 66, 62], long=(62, 66, 69, 74))


def test_key_adherence_on_hand_made_notes():
    assert detect_key(C_MAJOR) == (0, 0)
    assert detect_key(A_MINOR) == (9, 1)
    assert detect_key(D_MAJOR) == (2, 0)
    assert detect_key(np.zeros(0, NOTE_DTYPE)) is None
    requests = [(0, 0), (9, 1), (0, 1), (2, 0), (2, 0), (0, 0)]
    pieces = [C_MAJOR, A_MINOR, C_MAJOR, C_MAJOR, D_MAJOR, np.zeros(0, NOTE_DTYPE)]
    got = key_adherence(requests, pieces)
    # right key: 1, 2, 5; right mode: 1, 2, 4, 5; right tonic: 1, 2, 3, 5; silence: nothing
    assert got == dict(key_and_mode=3 / 6, mode=4 / 6, tonic=4 / 6)
    with pytest.raises(InvalidMessage) as e:
        key_adherence(requests[:2], pieces)
    assert e.value.field == "requests"

def test_music21_judge_is_analyze_key():
    assert music21_key(C_MAJOR) == (0, 0)
    assert music21_key(A_MINOR) == (9, 1)
    assert music21_key(D_MAJOR) == (2, 0)
    assert music21_key(np.zeros(0, NOTE_DTYPE)) is None
    rng = np.random.default_rng(0)
    for _ in range(12):  # random music: the fast path and stream.analyze("key") agree
        starts = np.sort(rng.integers(0, 192, 30))
        n = make_notes([(int(a), int(a + rng.integers(1, 30)), int(rng.integers(48, 84)))
                        for a in starts])
        assert music21_key(n) == music21_key(n, exact=True)

def test_key_table_per_key_and_worst():
    requests = [(0, 0), (0, 0), (9, 1), (9, 1), (2, 0), (2, 0)]
    found = [(0, 0), (7, 0), (9, 1), (9, 1), (2, 1), None]
    t = key_table(requests, found, densities=[1, 2, 1, 2, 1, 2], worst=2)
    assert list(t["per_key"]) == ["C major", "A minor", "D major"]
    assert t["per_key"]["C major"] == dict(key_and_mode=0.5, mode=1.0, tonic=0.5)
    assert t["per_key"]["D major"] == dict(key_and_mode=0.0, mode=0.0, tonic=0.5)
    assert t["key_and_mode"] == pytest.approx(3 / 6)
    assert t["per_density"] == {"1": pytest.approx(2 / 3), "2": pytest.approx(1 / 3)}
    assert [w["key"] for w in t["worst"]] == ["D major", "C major"]


def test_confusion_names_what_was_heard_instead():
    requests = [(0, 0)] * 4 + [(9, 1)] * 3 + [(2, 1)] * 2
    found = [(0, 0), (7, 0), (5, 0), (9, 1),     # C major: right, a fifth up, a fifth down,
             (0, 0), (9, 1), (9, 0),             # relative; A minor: relative, right, parallel
             (2, 1), None]                       # D minor: right, silence
    c = confusion(requests, found, most=3)
    assert c["pieces"] == 9 and c["misses"] == 6
    assert c["kinds"] == dict(fifth=2, relative=2, parallel=1, silent=1)
    assert sum(t["count"] for t in c["top"]) <= c["misses"] and len(c["top"]) == 3
    first = c["top"][0]
    assert set(first) == {"asked", "heard", "count", "share_of_asked"}
    assert first["share_of_asked"] == pytest.approx(first["count"] / 4 if
                                                    first["asked"] == "C major" else
                                                    first["count"] / 3 if
                                                    first["asked"] == "A minor" else 0.5)
    assert key_name((2, 1)) == "D minor" and key_name(None) == "nothing"
    assert confusion([(0, 0)], [(0, 0)]) == dict(pieces=1, misses=0, kinds={}, top=[])


def test_real_music_scores_both_judges_against_the_annotation():
    pieces = [C_MAJOR, A_MINOR, D_MAJOR]
    out = real_music(pieces, [(0, 0), (9, 1), (7, 0)])  # the last annotation is wrong
    for judge in ("kk", "music21"):
        assert out[judge]["key_and_mode"] == pytest.approx(2 / 3)
        assert out["confusion"][judge]["top"][0]["heard"] == "D major"
    assert out["pieces"] == 3 and out["modes"] == dict(major=2, minor=1)
