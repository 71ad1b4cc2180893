"""benchmarks.sync on a short run: a real ``ostinato serve`` with and without
``--events-ahead``, a real ZeroMQ subscriber scheduling its notes and beats.  The figures'
structure and signs are checked, never their size (timing is the machine's)."""
import pytest

from benchmarks import sync
from engine.errors import InvalidMessage


@pytest.fixture(scope="module")
def result():
    return sync.run_all(seconds=2.0, ahead_ms=40.0)


def test_every_configuration_reports_notes_and_beats(result):
    assert set(result) == {"floor", "ahead", "at_time"}
    assert result["floor"]["fire_us"]["n"] >= 5
    assert result["ahead"]["ahead_ms"] == 40.0 and result["at_time"]["ahead_ms"] == 0.0
    for key in ("ahead", "at_time"):
        for kind in ("note", "beat"):
            r = result[key][kind]
            # 2 s of music: a beat at least every 0.8 s (75 BPM), a note most beats
            assert r["arrival_us"]["n"] >= 2 and r["fire_us"]["n"] >= 1, (key, kind, r)
            assert set(r["fire_us"]) >= {"p50", "p99", "max"}


def test_with_a_lead_events_arrive_early_and_without_late(result):
    """The sign of arrival − t_ns is the configuration's, not a timing: 40 ms early is far
    beyond any hop, and an event published at its time cannot arrive before it."""
    for kind in ("note", "beat"):
        assert result["ahead"][kind]["arrival_us"]["max"] < 0
        assert result["at_time"][kind]["arrival_us"]["min"] >= 0
        # a scheduler never fires before the deadline it was given
        assert result["ahead"][kind]["fire_us"]["min"] >= 0


def test_the_table_has_a_row_per_figure(result):
    text = sync.table(result)
    assert len(sync.rows(result)) == 9 and text.count("\n") == 2 + 8
    assert "beats, --events-ahead 40: scheduled play − t_ns" in text


@pytest.mark.parametrize("kwargs, field", [(dict(seconds=0.1), "--seconds"),
                                           (dict(ahead_ms=0.0), "--ahead-ms")])
def test_bad_arguments_name_the_option(kwargs, field):
    with pytest.raises(InvalidMessage) as err:
        sync.run_all(**kwargs)
    assert err.value.field == field
