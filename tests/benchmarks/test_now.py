"""benchmarks/now.py runs and reports each way for each count (no timing is asserted)."""
from engine import DEFAULT_ENSEMBLE

from benchmarks import now


def test_a_small_run_times_both_ways_and_the_floor():
    res = now.run(counts=(1, 3), changes=4, models=(DEFAULT_ENSEMBLE,), log=lambda m: None)
    for n in (1, 3):
        row = res[f"ensemble, {n} sessions"]
        assert row["alone"]["n"] == row["all asked"]["n"] == 4
        assert row["alone"]["p50"] > 0 and row["ratio_p50"] > 0
    assert res["ensemble, floor: one lstm_step"]["n"] == 2000
