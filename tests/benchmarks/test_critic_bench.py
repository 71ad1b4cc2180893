"""``benchmarks.critic`` at tiny counts, so the code cannot rot (figures not asserted)."""
import json

from benchmarks import critic


def test_the_critic_benchmark_runs_and_reports_both_figures(model_path, tmp_path, capsys):
    out = tmp_path / "critic.json"
    assert critic.main(["--model", str(model_path), "--ks", "2", "--cost-counts", "2",
                        "--server-counts", "1", "--beats", "2", "--seconds", "0.5",
                        "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["ks"] == [0, 2] and res["machine"]["command"].startswith("python -m benchmarks.critic")
    for k in (0, 2):
        c = res["cost"][f"2/{k}"]
        assert c["events"] > 0 and c["per_event_us"] > 0 and c["core_share"] > 0
        e = res["engine"][f"1/{k}"]
        assert e["send_lateness_us"]["n"] > 0 and e["sessions_heard"] == 1
        assert str(k) in res["realtime_sessions"]
    assert res["cost"]["2/2"]["drafts"] > 0 and res["engine"]["1/2"]["drafts"] > 0
    assert res["engine"]["1/0"]["drafts"] == 1  # K = 0: only the start-up's warm draft
    text = capsys.readouterr().out
    assert "| sessions | K | µs per event |" in text and "real-time sessions in the engine" in text
