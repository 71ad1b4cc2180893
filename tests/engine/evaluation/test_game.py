"""The ensemble against game music (engine.evaluation.game): effect sizes on hand-made
windows, and a small run of the real measurement on a small dataset of its own."""
import json

import numpy as np
import pytest

from engine.errors import InvalidMessage
from engine.evaluation import game


def test_effects_rank_features_by_how_far_apart_their_means_lie():
    rng = np.random.default_rng(0)
    real = rng.normal(0, 1, (50, 3))
    made = rng.normal(0, 1, (50, 3))
    made[:, 1] += 3.0          # far apart
    made[:, 2] -= 1.0          # apart the other way, less
    real[:3, 0] = np.nan       # NaN windows are left out of a feature, not of the others
    out = game.effects(real, made, ["a", "b", "c"])
    assert [name for _, name, _, _ in out] == ["b", "c", "a"]
    assert out[0][0] > 2.0 and out[1][0] < -0.5 and abs(out[2][0]) < 0.5
    # a feature with too few windows to measure is left out
    made[:, 0] = np.nan
    assert [name for _, name, _, _ in game.effects(real, made, ["a", "b", "c"])] == ["b", "c"]


def _dataset(tmp_path, n=5):
    # what the reader needs: chorales read from music21's corpus, two of them held out (the
    # test split), standing in for the game songs (the test needs no WAD)
    data = tmp_path / "ensemble.npz"
    ids = ["bach/bwv276.mxl", "bach/bwv263.mxl", "bach/bwv253.mxl", "bach/bwv269.mxl",
           "bach/bwv267.mxl"][:n]
    meta = dict(format=1, summary=dict(ensemble=True, sources={}))
    np.savez(data, ids=np.array(ids), sources=np.array(["bach-parts"] * n),
             split=np.array([2, 2] + [0] * (n - 2), np.int8), meta=np.array(json.dumps(meta)))
    return data


def test_a_small_measurement_judges_both_sets_against_every_song(tmp_path):
    res = game.measure(seeds=2, source="bach-parts", data=_dataset(tmp_path),
                       progress=lambda m: None)
    assert res["songs"] >= 4 and res["held_out"] == 2 and res["preset"] == "combat"
    free, preset = res["generated"]
    assert free["repetition"] == 0 and preset["repetition"] > 0
    for row in (free, preset):
        assert 0.0 <= row["critic"]["mean"] <= 1.0
        assert 1 <= len(row["features"]) <= game.TOP
        sizes = [abs(f["effect"]) for f in row["features"]]
        assert sizes == sorted(sizes, reverse=True)
        assert all(f["held_out"] is not None for f in row["features"])
        # chorales: four pitched voices, no drums, in either set
        made = row["onsets_per_beat"]
        assert made["drums"] == 0 and all(made[v] > 0 for v in ("melody", "bass", "harmony"))
    real = res["onsets_per_beat"]
    assert real["drums"] == 0 and all(real[v] > 0.25 for v in ("melody", "bass", "harmony"))
    assert res["pitched_onsets_asked"] == pytest.approx(
        sum(real[v] for v in ("melody", "bass", "harmony")), rel=0.3)


def test_onsets_per_beat_count_each_voice_over_all_beats():
    from engine.ensemble import BASS, DRUMS
    from engine.notes import make_notes
    one = make_notes([(0, 12, 60), (12, 24, 62)])           # 2 melody notes in 2 beats
    two = make_notes([(0, 48, 40), (0, 3, 36), (24, 27, 36)])  # 1 bass, 2 drums in 4 beats
    two["channel"] = [BASS, DRUMS, DRUMS]
    out = game.onsets_per_beat([one, two], 12)
    assert out == dict(melody=2 / 6, bass=1 / 6, harmony=0.0, drums=2 / 6)


def test_too_few_songs_are_refused_naming_the_field(tmp_path):
    with pytest.raises(InvalidMessage) as e:
        game.measure(seeds=2, source="bach-parts", data=_dataset(tmp_path, n=3),
                     progress=lambda m: None)
    assert e.value.field == "source"


def test_the_command_line_refuses_an_unknown_preset_in_one_line(tmp_path, capsys):
    out = tmp_path / "game.json"
    assert game.main(["--preset", "nope", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--preset 'nope'" in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()
