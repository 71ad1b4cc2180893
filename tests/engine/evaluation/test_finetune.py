"""The fine-tuning measurement (``python -m engine.evaluation.finetune``), in its quick form:
real Monteverdi madrigals from music21's corpus written to MIDI, the shipped generator
fine-tuned a few steps with and without the guard, every figure present and sane."""
import json
import math

from engine.evaluation.finetune import composer_files, main
from engine.training.finetune import FinetuneConfig


def test_quick_measurement_writes_every_figure(tmp_path, capsys):
    out = tmp_path / "finetune.json"
    assert main(["--quick", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    rows = res["results"]
    guarded = f"l2sp {FinetuneConfig.l2sp:g}"
    assert set(rows) == {"shipped", guarded, "none"}
    for name, row in rows.items():
        assert math.isfinite(row["composer_nll"]) and math.isfinite(row["own_nll"]), name
        assert 0 <= row["critic_auc"] <= 1, name
    for guard in (guarded, "none"):
        assert rows[guard]["step"] == 4
        assert math.isclose(rows[guard]["composer_gain"],
                            1 - rows[guard]["composer_nll"] / rows["shipped"]["composer_nll"])
    c = res["composer"]
    assert len(c["files"]) == 6 and len(c["heldout"]) == 2
    assert not set(c["files"]) & set(c["heldout"])
    assert res["own_test"]["pieces"] == {"oneills1850": 2, "ryansMammoth": 2, "airdsAirs": 2,
                                         "bach": 2}
    assert "composer NLL" in capsys.readouterr().out


def test_the_composer_split_does_not_depend_on_the_listing():
    files = composer_files("monteverdi")
    assert len(files) == len({f.stem for f in files}) >= 36
    assert files == composer_files("monteverdi")
