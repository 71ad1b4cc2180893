"""The soak (``benchmarks/soak.py``) for 20 seconds against a real ``ostinato serve``.

Only what cannot flake is asserted: every command was answered (and accepted: they are
all valid), the server lived to the end, every session's event stream flowed, the
memory was sampled and the JSON written.  The memory-growth and lateness thresholds are
the benchmark's verdict (its exit code), not this test's: on a shared 2-core machine
they measure the neighbours as much as the server.  64 sessions are used, as in the
full soak: the server takes about 40 % of one core with them.
"""
import json

import pytest

from benchmarks import soak


@pytest.mark.slow
def test_twenty_seconds_of_soak_answers_everything_and_every_session_plays(model_path, tmp_path):
    out = tmp_path / "soak.json"
    lines = []
    res = soak.soak(minutes=1 / 3, sessions=64, rate=1.0, model=model_path, sample_s=2.0,
                    out=out, log=lines.append)

    assert res["server"]["alive_at_end"], res["server"]["output"]
    c = res["commands"]
    assert c["failure"] is None
    assert c["sent"] >= 64  # at least one a session: the run is not a no-op
    assert c["unanswered"] == 0
    assert c["error_replies"] == 0, c["error_examples"]
    assert c["ok"] == c["sent"] == sum(c["by_type"].values())
    assert set(c["by_type"]) == set(soak.COMMAND_WEIGHTS)

    s = res["sessions"]
    assert s["count"] == 64 and len(s["note_ons"]) == 64
    assert s["heard"] == 64
    assert all(n > 0 for n in s["note_ons"].values()), s["note_ons"]
    assert s["heard_in_second_half"] == 64  # the stream flowed on, not only at the start
    assert res["lateness_us"]["first"]["n"] > 0 and res["lateness_us"]["last"]["n"] > 0

    samples = res["rss_samples"]
    assert len(samples) >= 2 and all(kb > 0 for _, kb in samples)
    assert [t for t, _ in samples] == sorted(t for t, _ in samples)
    assert res["rss_growth_pct"] is not None
    assert isinstance(res["passed"], bool) and isinstance(res["why_not"], list)
    assert res["passed"] == (not res["why_not"])

    written = json.loads(out.read_text())
    assert written["commands"] == c and written["rss_samples"] == samples
    assert written["machine"]["cores"] >= 1
    assert any(line.startswith("soak: PASSED") or line.startswith("soak: FAILED")
               for text in lines for line in text.splitlines())


def test_bad_arguments_are_refused(capsys):
    for argv in (["--minutes", "0"], ["--sessions", "0"], ["--rate", "-1"]):
        with pytest.raises(SystemExit) as err:
            soak.main(argv)
        assert err.value.code == 2
        assert "must be at least" in capsys.readouterr().err
