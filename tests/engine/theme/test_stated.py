"""A theme as the server states it, on the shipped models: note for note at variation 0,
free at 1, back at every phrase at repetition 1; the accuracy on known cases; a variation
outside 0..1 refused by name; and ``python -m engine.theme.stated --quick`` end to end on
real held-out folk tunes."""
import json

import numpy as np
import pytest

from engine import DEFAULT_ENSEMBLE, DEFAULT_THEME
from engine.errors import InvalidMessage
from engine.generate import load_weights
from engine.motif import from_notes
from engine.theme.stated import (STATED, StatedConfig, compose_stated, main, melody_voice,
                                 returns, stated_accuracy, stated_lead)

# a bar and a half of C major climbing and falling back
SIMPLE = [[60, 0, 1], [62, 1, 1], [64, 2, 1], [65, 3, 1], [67, 4, 2], [64, 6, 2]]
MODELS = [DEFAULT_ENSEMBLE, DEFAULT_THEME]


def _lines(model, pieces):
    n_voices = load_weights(model).vocab.n_voices
    return [melody_voice(p, n_voices) for p in pieces]


def test_accuracy_is_pitch_class_relative_to_the_key_and_onset():
    m = from_notes(SIMPLE)
    up = m.notes.copy()
    up["pitch"] += 12  # an octave up: every pitch class heard, no exact pitch
    a = stated_accuracy(m, up)
    assert a == dict(notes=1.0, exact=0.0, onsets=1.0)
    late = m.notes.copy()
    late["start"] += 3  # a sixteenth late: nothing at the theme's onsets
    assert stated_accuracy(m, late) == dict(notes=0.0, exact=0.0, onsets=0.0)
    half = m.notes.copy()
    half["pitch"][::2] += 1  # every other note a semitone off
    assert stated_accuracy(m, half)["notes"] == 0.5
    moved = m.notes.copy()
    moved["start"] += 384
    assert stated_accuracy(m, moved, at=384)["exact"] == 1.0
    assert stated_accuracy(m, moved)["notes"] == 0.0


@pytest.mark.parametrize("model", MODELS, ids=["ensemble", "theme"])
def test_variation_0_states_the_theme_note_for_note_and_1_does_not(model):
    motifs = [from_notes(SIMPLE), from_notes([[p + 7, a, d] for p, a, d in SIMPLE])]  # C, G
    var = compose_stated(model, motifs, (0.0, 1.0), seeds=(0, 1), bars=4)
    each = [m for m in motifs for _ in range(2)]  # the pieces are motif-major
    stated = [stated_accuracy(m, p) for m, p in zip(each, _lines(model, var[0.0]))]
    assert all(a["notes"] == 1.0 and a["exact"] == 1.0 for a in stated), stated
    free = [stated_accuracy(m, p)["notes"] for m, p in
            zip(each, _lines(model, var[1.0]))]
    assert np.mean(free) < 0.9, free


def test_the_theme_comes_back_at_every_phrase_at_repetition_1_and_never_at_0():
    cfg = StatedConfig(themes=2, seeds=(0, 1), return_bars=24)
    motifs = [from_notes(SIMPLE), from_notes([[p + 2, a, d] for p, a, d in SIMPLE])]
    for r, want in ((1.0, 1.0), (0.0, 0.0)):
        back = compose_stated(DEFAULT_ENSEMBLE, motifs, (0.0,), cfg.seeds, cfg.return_bars,
                              repetition=r, distinct=True)[0.0]
        got = returns(motifs, _lines(DEFAULT_ENSEMBLE, back), cfg.seeds, cfg)
        assert got["phrases"] == 2 * 2 * 2 and got["returned"] == want, (r, got)


def test_a_variation_outside_0_to_1_names_the_field():
    m, w = from_notes(SIMPLE), load_weights(DEFAULT_ENSEMBLE)
    for bad in (-0.1, 1.5, "0.5", True):
        with pytest.raises(InvalidMessage) as e:
            stated_lead(m, bad, w)
        assert e.value.field == "variation" and "0..1" in str(e.value)
    with pytest.raises(InvalidMessage) as e:
        compose_stated(DEFAULT_ENSEMBLE, [m], (0.0, 2.0))
    assert e.value.field == "variation"
    with pytest.raises(InvalidMessage) as e:
        StatedConfig(variations=(0.0, 0.5, 1.2))
    assert e.value.field == "variations"
    assert stated_lead(m, 1.0, w) is None  # free composition: nothing stated
    notes, v, length = stated_lead(m, 0.25, w)
    assert v == 0.25 and length == 2 * 48 and len(notes) == len(SIMPLE)


def test_cli_quick_writes_every_figure(tmp_path, capsys):
    out = tmp_path / "stated.json"
    assert main(["--quick", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert "notes(pc)" in capsys.readouterr().out
    cfg = r["config"]
    assert r["stated_threshold"] == STATED
    for bars in cfg["theme_bars"]:
        b = r[f"{bars}_bars"]
        assert b["themes"] == cfg["themes"]
        for name in ("ensemble", "theme"):
            m = b[name]
            for k in ("notes", "exact", "onsets", "pieces_all_notes"):
                assert 0.0 <= m["stated"][k] <= 1.0
            for v in cfg["variations"]:
                c = m["variation"][f"{v:g}"]
                assert 0.0 <= c["similarity"] <= 1.0 and 0.0 <= c["novelty"] <= 1.0
            for k in ("spearman", "spearman_within_theme", "spearman_curve"):
                assert -1.0 <= m[k] <= 1.0
            for x in cfg["repetitions"]:
                ret = m["returns"][f"{x:g}"]
                assert ret["phrases"] > 0 and 0.0 <= ret["returned"] <= 1.0
        for t in cfg["temperatures"]:
            assert 0.0 <= b["primed"][f"{t:g}"]["similarity"] <= 1.0

