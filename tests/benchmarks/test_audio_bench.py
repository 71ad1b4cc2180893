"""The audio-placement benchmark (``benchmarks/audio.py``) runs and reports, on a real
JACK server.  Correctness only: that rendering is exact is tested in
tests/realtime/test_audio.py; the clock estimate's error is the benchmark's figure."""
import json
import shutil

import pytest

from benchmarks import audio


@pytest.mark.skipif(shutil.which("jackd") is None, reason="needs jackd (Debian jackd2)")
def test_the_audio_benchmark_reports_every_gap(tmp_path):
    out = tmp_path / "audio.json"
    assert audio.main(["--notes", "4", "--runs", "1", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    for key in ("rendering_error_ms", "placement_error_ms", "period_start_error_ms"):
        assert res[key]["n"] == 3  # one per gap
    assert len(res["underruns"]) == 1 and res["machine"]
