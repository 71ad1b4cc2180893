"""benchmarks.form: the cost of a step with the form, measured on the shipped model."""
from engine import DEFAULT_MODEL

from benchmarks.form import SETTINGS, run


def test_every_setting_is_measured_beside_the_floor():
    r = run(DEFAULT_MODEL, chunks=2, warmup=1)
    for setting in SETTINGS:
        assert r[setting]["n"] == 2 and r[setting]["p50"] > 0
    assert all("extra_us" in r[s] for s in SETTINGS[1:])
    assert r["floor"]["n"] == 2000 and r["floor"]["p50"] > 0
