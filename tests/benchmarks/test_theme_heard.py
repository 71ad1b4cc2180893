"""benchmarks.theme_heard: a theme sent over 127.0.0.1 to a real server on the shipped
ensemble model is heard in the melody voice, note for note at variation 0."""
from benchmarks.theme_heard import CONDITIONS, THEME, grams, heard, line, run, table


def test_the_interval_grams_are_transposition_invariant_and_shares_of_the_theme():
    pitches = [p for p, *_ in THEME]
    assert heard(pitches, [p + 7 for p in pitches]) == 1.0  # another key: the same intervals
    assert heard(pitches, [60, 60, 60, 60, 60]) == 0.0
    half = pitches[:6]  # the first three of the theme's six 3-grams
    assert len(grams(pitches)) == 6 and heard(pitches, half) == 0.5
    # the melody's line: one pitch an onset, the highest
    events = [dict(beat=0.0, pitch=60), dict(beat=0.0, pitch=67), dict(beat=1.0, pitch=64)]
    assert line(events) == [67, 64]


def test_a_theme_at_variation_0_is_heard_over_the_wire():
    res = run(seeds=(0,), seconds=8.0, log=lambda *a: None)
    s = res["summary"]
    assert s.keys() == CONDITIONS.keys()
    assert all(s[name]["melody_notes"] > 0 for name in CONDITIONS), s  # the melody plays
    assert s["variation 0"]["mean"] == 1.0, res["per_seed"]
    assert s["free"]["mean"] < 1.0 and s["variation 1"]["mean"] < 1.0, s
    assert "variation 0.5" in table(res)
