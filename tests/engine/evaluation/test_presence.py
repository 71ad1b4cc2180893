"""The presence figure: how often a voice sounds as its bias rises (with the small random
ensemble model: the figures' plumbing and the rules they rest on, not the shipped numbers)."""
import json

import pytest

from engine.ensemble import DRUMS, VOICES
from engine.errors import InvalidMessage
from engine.evaluation import presence
from engine.sampler.weights import Weights

from tests.engine.ensemble_model import random_ensemble_model


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return random_ensemble_model(tmp_path_factory.mktemp("ens"))[0]


@pytest.fixture(scope="module")
def w(model):
    return Weights(model)


def test_onsets_count_every_note_on_by_bar_and_voice(w):
    c = presence.onsets(w, seeds=3, bars=4)
    assert c.shape == (3, 4, 4) and c.sum() > 0
    assert (c[:, 0] > 0).all()  # per-voice entry: every voice sounds in the first bar


def test_a_voice_brought_in_sounds_in_its_first_bar_and_never_before(w):
    c = presence.onsets(w, seeds=4, bars=4, join=2)
    assert not c[:, :2, DRUMS].any()
    assert (c[:, 2, DRUMS] > 0).all()
    rows = presence.presence_figures(w, biases=(0.0,), seeds=4, bars=4, join=2)
    assert rows[0]["first_bar"] == 1.0 and rows[0]["join"] == 2
    with pytest.raises(InvalidMessage) as e:
        presence.presence_figures(w, seeds=2, bars=4, join=4)
    assert e.value.field == "join"


def test_the_bias_moves_the_voice_and_the_recommendation_is_the_smallest_that_reaches(w):
    rows = presence.presence_figures(w, biases=(-4.0, 4.0), seeds=8, bars=4)
    assert [r["bias"] for r in rows] == [-4.0, 4.0]
    assert set(rows[0]["per_bar"]) == set(VOICES)
    assert rows[1]["per_bar"]["drums"] > rows[0]["per_bar"]["drums"] + 1.0
    made = [dict(bias=b, bars_sounding=s) for b, s in ((0, 0.5), (1, 0.92), (2, 0.97))]
    assert presence.recommend(made) == 1
    assert presence.recommend(made[:1]) is None
    with pytest.raises(InvalidMessage) as e:
        presence.onsets(w, seeds=1, bars=1, entry="late")
    assert e.value.field == "entry"


def test_the_command_prints_the_table_and_writes_the_rows(model, tmp_path, capsys):
    out = tmp_path / "p.json"
    assert presence.main(["--model", str(model), "--seeds", "2", "--bars", "2", "--biases",
                          "0,2", "--entry", "both", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert [line.split(" | ")[:2] for line in text.splitlines()[2:6]] == [
        ["| 0", "voice"], ["| 2", "voice"], ["| 0", "first"], ["| 2", "first"]]
    assert "smallest bias with drums" in text
    rows = json.loads(out.read_text())["rows"]
    assert [(r["bias"], r["entry"]) for r in rows] == [
        (0.0, "voice"), (2.0, "voice"), (0.0, "first"), (2.0, "first")]
    assert all(0.0 <= r["bars_sounding"] <= 1.0 for r in rows)
    with pytest.raises(SystemExit):
        presence.main(["--model", str(model), "--voice", "tuba"])
