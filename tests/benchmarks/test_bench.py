"""``ostinato bench`` end to end at tiny counts, so the benchmark code cannot rot.

The figures are never asserted (they depend on the machine); what is checked is that
every section runs against real parts (``ostinato serve`` processes, ZeroMQ on
127.0.0.1, a JACK server), every output is written, the mood-change definition holds,
and bad arguments get clear errors.
"""
import json

import numpy as np
import pytest

from benchmarks import jitter, report
from realtime.cli import main
from engine.errors import ServerUnavailable
from benchmarks.bench import README


def test_quick_bench_runs_every_section_and_writes_its_outputs(jack_server, model_path, tmp_path,
                                                                capsys):
    readme_before = README.read_bytes() if README.exists() else None
    rc = main(["bench", "--quick", "--model", str(model_path), "--out", str(tmp_path)])
    out, err = capsys.readouterr()
    assert rc == 0, out + err  # (the error is one line on stderr)
    for label in ("numba lstm_step", "torch nn.LSTM", "bound", "ZeroMQ first note",
                  "JACK (native) first note", "JACK (rtmidi, baseline) first note", "jitter", "engine alone", "PUB→SUB", "start → first note",
                  "acknowledgement round trip", "ensemble lstm_step", "ensemble (combat), engine alone",
                  "ZeroMQ first drums note", "ensemble: real-time sessions in the engine"):
        assert label in out
    res = json.loads((tmp_path / "latest.json").read_text())
    assert res["machine"]["cores"] >= 1 and res["machine"]["cpu"]
    assert isinstance(res["machine"]["command"], str) and res["machine"]["command"]
    assert res["step"]["numba_us"]["n"] == 300
    assert res["step"]["torch"]["threads_1"]["max_logit_diff_lstm"] < 1e-3  # the same model
    assert res["step"]["torch"]["threads_1"]["max_logit_diff_cell"] < 1e-3
    assert set(res["sessions"]["step"]) == {"1", "8"}
    assert res["sessions"]["rate"]["tokens_per_beat"] > 0
    assert res["sessions"]["server"]["1"]["zmq_us"]["n"] > 0
    for path in ("zmq", "jack", "jack_rtmidi"):
        assert res["mood"][path]["first_note_us"]["n"] == 6
        assert res["mood"][path]["first_note_us"]["min"] > 0
    # the first note after the mood marker is in the new mood's velocity class
    assert res["mood"]["zmq"]["velocity_class_mismatches"] == 0
    assert res["mood"]["jack"]["velocities_between_classes"] == 0
    for load in ("unloaded", "loaded", "unloaded_rtmidi", "loaded_rtmidi"):
        r = res["jitter"][load]
        assert r["zmq_us"]["n"] > 0 and r["jack_us"]["n"] > 0
        assert r["jack_frames"]["n"] == r["jack_us"]["n"] and r["jack_rate"] > 0
        assert r["jack_backend"] == ("rtmidi" if load.endswith("_rtmidi") else "native")
        assert r["ack_us"]["n"] > 0 and r["ack_us"]["min"] > 0  # replies timed under load
        assert r["zmq_us_with_requests"]["n"] > 0  # the music went on while they came
    assert res["jitter"]["loaded"]["sessions"] == 3
    assert res["jitter"]["loaded"]["sessions_heard"] >= 2
    bd = res["breakdown"]
    assert bd["engine_1"]["send_lateness_us"]["n"] > 0
    assert bd["engine_1"]["mood_first_note_us"]["n"] == 4
    assert bd["engine_loaded"]["sessions"] == 3
    assert bd["zmq_gapped"]["n"] == 10 and bd["zmq_1ms"]["n"] == 40
    assert bd["timer_wakeup_us"]["n"] == 5
    assert res["startup"]["warm_first_note_s"]["n"] == 1
    # the shipped ensemble beside the one-line model, in the same run
    assert res["ensemble_model"] == "engine/models/ensemble.npz"
    en = res["sessions"]["ensemble"]
    assert en["voices"] == ["melody", "bass", "harmony", "drums"]
    assert set(en["step"]) == {"1", "8"} and en["step"]["1"]["us_per_beat"] > 0
    assert en["rate"]["preset"] == en["rate_line"]["preset"] == "combat"
    assert set(en["rate"]["note_ons_per_beat_by_voice"]) == set(en["voices"])
    assert en["rate"]["note_ons_per_beat_by_voice"]["drums"] > 0  # combat brings the drums in
    for S, r in en["engine"].items():
        assert r["sessions_heard"] == int(S) and r["send_lateness_us"]["n"] > 0
        assert set(r["voices_heard"]) <= set(en["voices"]) and r["voices_heard"]
    voices = res["mood"]["ensemble"]
    for v in voices["voices"]:
        heard = voices["first_note_us"][v].get("n", 0)
        assert heard + voices["voice_not_heard"][v] == 6
        assert heard == 0 or voices["first_note_us"][v]["min"] > 0
    # the one-line model in the ensemble's preset, beside it
    assert voices["line_same_state"]["first_note_us"]["n"] == 6
    assert "one line (combat), ZeroMQ first note" in out
    samples = np.load(tmp_path / "samples.npz")
    assert samples["mood.zmq.zmq"].shape == (6,)
    assert samples["mood.ensemble.zmq_drums"].shape[0] == voices["first_note_us"]["drums"]["n"]
    for png in ("mood_latency.png", "jitter.png", "sessions.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| section |" in (tmp_path / "latest.md").read_text()
    assert (README.read_bytes() if README.exists() else None) == readme_before


@pytest.mark.parametrize("argv, field, allowed", [
    (["--changes", "0"], "--changes", "1..100000"),
    (["--seconds", "0.1"], "--seconds", "0.5..600"),
    (["--load", "5000"], "--load", "0..1023"),
    (["--session-counts", "8,1"], "--session-counts", "1..1024, ascending"),
    (["--session-counts", "a,b"], "--session-counts", "not a list of integers"),
    (["--only", "warp"], "--only", "warp"),
])
def test_bad_arguments_name_the_field_and_range(model_path, tmp_path, capsys, argv, field, allowed):
    rc = main(["bench", "--model", str(model_path), "--out", str(tmp_path), *argv])
    err = capsys.readouterr().err
    assert rc == 1
    assert field in err and allowed in err, err
    assert not (tmp_path / "latest.json").exists()


def test_missing_model_is_a_clear_error(tmp_path, capsys):
    rc = main(["bench", "--model", str(tmp_path / "nope.npz"), "--out", str(tmp_path)])
    assert rc == 1
    assert "nope.npz" in capsys.readouterr().err


def test_ensemble_must_be_an_ensemble_model(model_path, tmp_path, capsys):
    rc = main(["bench", "--model", str(model_path), "--ensemble", str(model_path),
               "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 1 and "--ensemble" in err and "an ensemble model" in err, err
    rc = main(["bench", "--ensemble", str(tmp_path / "none.npz"), "--out", str(tmp_path)])
    assert rc == 1 and "none.npz" in capsys.readouterr().err
    assert not (tmp_path / "latest.json").exists()


def test_pair_jack_aligns_by_content_and_order():
    # stream: 6 notes; JACK heard a note from before the recording, then notes 2..5
    stream = [(10 * i, 100 * i, (0x90, 60 + i, 70 + i), "main") for i in range(6)]
    jack_msgs = [(5, (0x90, 40, 1)), (150, (0x90, 62, 72)), (170, (0xF8,)), (250, (0x90, 63, 73)),
                 (350, (0x90, 64, 74)), (460, (0x90, 65, 75))]
    rx, sched, unpaired = jitter.pair_jack(jack_msgs, stream, probe=3)
    assert list(rx) == [150, 250, 350, 460]
    assert list(sched) == [200, 300, 400, 500]
    assert unpaired == 1


def test_pair_jack_skips_notes_jack_lost():
    stream = [(10 * i, 100 * i, (0x90, 60 + i, 70 + i), "main") for i in range(8)]
    heard = [0, 1, 2, 4, 5, 7]  # JACK lost notes 3 and 6
    jack_msgs = [(100 * i + 7, stream[i][2]) for i in heard]
    rx, sched, unpaired = jitter.pair_jack(jack_msgs, stream, probe=3)
    assert list(sched) == [100 * i for i in heard]
    assert list(rx - sched) == [7] * len(heard)
    assert unpaired == 0


def test_readme_block_is_replaced_between_markers(tmp_path):
    res = {"machine": {"date_utc": "2026-01-01T00:00:00+00:00", "cpu": "cpu", "cores": 2,
                       "loadavg_at_start": [0.0, 0.0, 0.0], "python": "3.11", "numba": "0",
                       "torch": "0", "command": "ostinato bench"},
           "model": "m.npz", "startup": {"cold_first_note_s": {"n": 0}, "cold_ready_s": {"n": 0},
                                         "warm_first_note_s": {"n": 1, "p50": 0.5, "max": 0.6},
                                         "warm_ready_s": {"n": 1, "p50": 0.4}}}
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{report.README_BEGIN}\nold\n{report.README_END}\noutro\n")
    report.update_readme(res, readme)
    text = readme.read_text()
    assert "old" not in text and text.startswith("intro\n") and text.endswith("outro\n")
    assert "ostinato bench" in text and "warm numba cache" in text
    readme.write_text("no markers")
    with pytest.raises(ValueError):
        report.update_readme(res, readme)


def test_bursts_count_the_messages_due_at_one_instant_and_their_send_cost():
    """Two instants of 20 messages sent 2 µs apart, the first 5 and 50 µs late, and one
    lone message: sizes per message, the first message's lateness, the cost a message."""
    from benchmarks.breakdown import bursts
    rows = [(t0 + late + 2_000 * i, t0) for t0, late in ((1_000_000, 5_000), (9_000_000, 50_000))
            for i in range(20)] + [(20_000_100, 20_000_000)]
    b = bursts(np.array(rows, np.int64))
    assert b["instants"] == 3 and b["large"] == 2
    assert b["size"]["max"] == 20 and b["size"]["min"] == 1
    assert b["first_late_us"]["min"] == 5 and b["first_late_us"]["max"] == 50
    assert b["per_message_us"]["p50"] == 2
    assert bursts(np.zeros((0, 2), np.int64)) == {}


def test_a_server_whose_port_was_taken_meanwhile_starts_again_on_another(model_path):
    """``free_port`` hands out a port nothing holds now; another socket may take it before
    ``ostinato serve`` binds it (a quick bench failed so once, as it seems).  The server
    that exits with "Address already in use" is started again on new ports."""
    import socket

    import zmq

    from benchmarks.serve import ServeProcess
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        srv = ServeProcess(model_path, sessions=1, events=False)
        srv.control = f"tcp://127.0.0.1:{taken.getsockname()[1]}"
        with srv:
            srv.wait_ready()
            assert srv.returncode is None, srv.output()
            assert srv.control != f"tcp://127.0.0.1:{taken.getsockname()[1]}", srv.output()
            with zmq.Context() as ctx, ctx.socket(zmq.REQ) as req:  # it answers there
                req.setsockopt(zmq.LINGER, 0)
                req.connect(srv.control)
                req.send_json({"type": "ping"})
                assert req.poll(30_000), srv.output()
                assert req.recv_json()["ok"]
        once = ServeProcess(model_path, sessions=1, events=False, bind_tries=1)
        once.control = f"tcp://127.0.0.1:{taken.getsockname()[1]}"
        with once, pytest.raises(ServerUnavailable, match="Address already in use"):
            once.wait_ready()
