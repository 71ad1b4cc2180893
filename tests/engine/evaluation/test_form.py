"""Form measured (``engine.evaluation.form``; its figures are test_repeats.py's): the
windows of a piece with a pickup, real tunes of music21's corpus read on their bar lines,
and the command line on a quick run (real tunes and ensemble pieces, the shipped
models)."""
import json

import numpy as np
import pytest

from engine.ensemble import DRUMS
from engine.errors import InvalidMessage
from engine.evaluation import form as fm
from engine.evaluation import repeats as rp
from engine.form import Form
from engine.notes import NOTE_DTYPE

B = 12          # ticks per beat
BAR = 4 * B
CFG = fm.FormEvalConfig()


def notes(rows, channel=0):
    """Notes from (start tick, pitch) rows, each an eighth note long."""
    return np.array([(s, s + 6, p, 80, channel) for s, p in rows], NOTE_DTYPE)


def bar(at, figure):
    """A bar's (start tick, pitch) rows: ``figure`` is (tick in bar, pitch) pairs."""
    return [(at * BAR + t, p) for t, p in figure]


TUNE = [(0, 60), (12, 62), (24, 64), (36, 67)]          # rhythm and intervals +2 +2 +3


def test_windows_start_at_the_first_bar_line_after_a_pickup():
    pickup = [(3 * B + 6, 55)]                  # an eighth before the first bar line
    rows = pickup + [r for i in range(1, 18) for r in bar(i, TUNE)]
    n = notes(rows)
    assert rp.span(n, CFG) == (1, 2)            # bars 1..16; bar 17 is no whole window
    assert rp.span(n, CFG, max_windows=1) == (1, 1)
    got = rp.piece_figures(np.concatenate([n, notes(bar(5, [(0, 90)]), DRUMS)]),
                           rp.ENSEMBLE_LINES, CFG, rp.span(n, CFG))
    assert got["melody"]["bar_repeat"] == 1.0 and got["windows"] == 2
    assert np.isnan(got["bass"]["bar_repeat"])  # no bass: nothing counted
    c = fm.cut(n, CFG, (1, 1))
    assert c["start"].min() == 0 and c["end"].max() <= 8 * BAR and len(c) == 32


def test_abc_meters_and_a_bad_config():
    text = "X:1\nM: C|\nL:1/8\nK:G\nGABc [M:6/8] d2e |\n"
    assert fm.abc_meters(text) == ["C|", "6/8"]
    with pytest.raises(InvalidMessage) as e:
        fm.FormEvalConfig(repetitions=(0.0, 1.5))
    assert e.value.field == "repetitions"


def test_real_tunes_are_read_on_their_bar_lines():
    """Reels and hornpipes of Ryan's Mammoth (held out): every meter four quarters, a pickup
    moved before the first bar line; real tunes repeat bars, far more than chance."""
    pieces, left = fm.read_folk(("ryansMammoth",), ("test", "valid"), CFG, limit=12)
    assert len(pieces) == 12 and sum(left.values()) > 0
    assert all(k.startswith("meter") for k in left)
    rates = []
    for p in pieces:
        where = rp.span(p["notes"], CFG, CFG.max_windows)
        if where[1]:
            rates.append(rp.piece_figures(p["notes"], rp.ONE_LINE, CFG, where)["line"]["bar_repeat"])
    assert len(rates) >= 8 and np.nanmean(rates) > 0.1


def _ensemble_data(path):
    """An ensemble dataset file holding what the held-out reader needs (the pieces are read
    from their sources): four chorales held out, two Freedoom songs (the game kind)."""
    ids = ["bach/bwv276.mxl", "bach/bwv263.mxl", "bach/bwv253.mxl", "bach/bwv269.mxl",
           "freedoom1.wad/D_E1M1", "freedoom1.wad/D_E1M2"]
    meta = dict(format=1, summary=dict(ensemble=True, sources={}))
    np.savez(path, ids=np.array(ids), sources=np.array(["bach-parts"] * 4 + ["freedoom"] * 2),
             split=np.array([2, 2, 2, 2, 0, 0], np.int8), meta=np.array(json.dumps(meta)))
    return path


def test_the_command_line_on_a_quick_run(tmp_path, capsys):
    out = tmp_path / "form.json"
    data = _ensemble_data(tmp_path / "ensemble.npz")
    assert fm.main(["--quick", "--out", str(out), "--data", str(data)]) == 0
    r = json.loads(out.read_text())
    printed = capsys.readouterr().out
    assert "PRESETS" in printed and "combat" in printed
    assert [row["repetition"] for row in r["generated"]["one_line"]] == [0.0, 1.0]
    for model, line in (("one_line", "line"), ("ensemble", "melody")):
        rows = r["generated"][model]
        assert 0 <= rows[0]["critic_auc"]["mean"] <= 1
        # a loop repeats more than through-composed music does
        assert rows[1]["figures"][line]["bar_repeat"]["mean"] > \
            rows[0]["figures"][line]["bar_repeat"]["mean"]
    assert r["real"]["folk"]["all"]["pieces"] > 0 and r["real"]["game"]["pieces"] > 0
    assert set(r["presets"]) >= {"calm", "combat"}
    assert r["presets"]["combat"]["kind"] == "game" and r["presets"]["calm"]["kind"] == "folk"
    assert r["presets"]["combat"]["ensemble"]["repetition"] in (0.0, 1.0)
    # each preset matched in the form it plays: the config's, or one measured besides it
    forms = fm.preset_forms()
    for name, p in r["presets"].items():
        assert p["form"] == fm.form_label(forms[name])
        assert p["form"] == fm.form_label(Form()) or p["form"] in r["generated"]["ensemble_forms"]
    for rows in r["generated"]["ensemble_forms"].values():
        assert [row["repetition"] for row in rows] == [0.0, 1.0]


@pytest.mark.parametrize("argv, field", [(["--form", "AXB"], "shape"),
                                         (["--repetitions", "0,1.5"], "repetitions")])
def test_the_command_line_refuses_bad_input_naming_the_field(tmp_path, capsys, argv, field):
    out = tmp_path / "form.json"
    assert fm.main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and field in err and not out.exists()
