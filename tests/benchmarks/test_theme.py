"""benchmarks/theme.py on a conductor model: every condition is measured and paired with
"no theme" in the same rounds; nothing here is timed against a bound."""
from benchmarks.theme import encode_costs, step_costs


def test_step_costs_pair_each_condition_with_no_theme(conductor_model):
    r = step_costs(conductor_model, sessions=(2,), blocks=2, steps=5)
    assert r["positions_per_bar"] == 4 and r["blocks"] == 2
    row = r["sessions"]["2"]
    assert {"none", "theme", "conductor"} <= set(row)
    for k in ("theme", "conductor"):
        extra = row[f"{k}_extra_us"]
        assert extra["min"] <= extra["median"] <= extra["max"]
        assert extra["per_session_median"] == extra["median"] / 2
    assert row["none"]["n"] == 2


def test_encode_costs_cover_each_length(theme_model):
    r = encode_costs(theme_model, bars=(2, 8), repeats=3)
    assert set(r) == {"2", "8"} and r["8"]["tokens"] > r["2"]["tokens"]
    assert all(v["median_ms"] > 0 for v in r.values())
