"""The fine-tuning measurement (``python -m engine.evaluation.finetune``), in its quick form:
real Monteverdi madrigals from music21's corpus written to MIDI, the shipped generator
fine-tuned a few steps with and without the guard, every figure present and sane."""
import argparse
import json
import math

import pytest

from engine import DEFAULT_ENSEMBLE
from engine.evaluation.finetune import (ENSEMBLE_COMPOSER, composer_files,
                                        main, seed_summary, write_entry)
from engine.training import data
from engine.training.finetune import FinetuneConfig

ENSEMBLE = str(DEFAULT_ENSEMBLE)


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


def own_ensemble_data(folder):
    """A small stand-in for data/ensemble.npz (built by `ostinato data --ensemble`, not
    shipped): twelve real Bach chorales written to MIDI and built the same way."""
    from music21 import corpus
    mids = folder / "chorales"
    mids.mkdir()
    for i, path in enumerate(corpus.getComposer("bach")[:12]):
        corpus.parse(path).write("midi", fp=str(mids / f"chorale{i}.mid"))
    out = folder / "own.npz"
    parser = argparse.ArgumentParser()
    data.add_arguments(parser)
    data.run(parser.parse_args(["--ensemble", "--midi", str(mids), "--collections", "none",
                                "--workers", "1", "--out", str(out)]))
    return out


def test_the_ensemble_is_measured_on_palestrina_per_seed_into_its_own_entry(tmp_path, capsys):
    """The ensemble's quick run with two training seeds: every part of real Palestrina
    scores read with voices, its own held-out music from an ensemble dataset (here a small
    one of real chorales), no critic (it reads one line); written under "ensemble seeds"
    beside what the file already held.  Rehearsal runs beside L2-SP's replay the own
    data's training pieces."""
    own = own_ensemble_data(tmp_path)
    out = tmp_path / "finetune.json"
    out.write_text(json.dumps({"results": {"kept": 1}, "ensemble": {"kept": 2}}))
    assert main(["--model", ENSEMBLE, "--quick", "--no-unguarded", "--seeds", "0", "1",
                 "--own-data", str(own), "--replay", "0.5", "--replay-l2sp", "0.03",
                 "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["results"] == {"kept": 1} and res["ensemble"] == {"kept": 2}
    e = res["ensemble seeds"]
    assert e["composer"]["name"] == ENSEMBLE_COMPOSER and e["own_test"]["source"] == str(own)
    guarded = f"l2sp {FinetuneConfig.l2sp:g}"
    rows = e["results"]
    replay = "replay 0.5 + l2sp 0.03"
    assert set(rows) == {"shipped", *(f"{g} seed {s}" for g in (guarded, replay) for s in (0, 1))}
    assert e["seeds"][replay]["own_loss"]["n"] == 2
    assert all("critic_auc" not in r for r in rows.values()) and "one line" in e["critic"]
    gains = [rows[f"{guarded} seed {s}"]["composer_gain"] for s in (0, 1)]
    summary = e["seeds"][guarded]["composer_gain"]
    assert summary["n"] == 2 and math.isclose(summary["mean"], sum(gains) / 2)
    assert summary["ci95"][0] <= summary["mean"] <= summary["ci95"][1]
    assert "over seeds [0, 1]" in capsys.readouterr().out


def test_seed_summary_is_a_student_t_interval():
    s = seed_summary([1.0, 2.0, 3.0])
    assert s["mean"] == 2.0 and s["sd"] == 1.0
    half = 4.302652729911275 / math.sqrt(3)  # t(0.975, 2 degrees of freedom)
    assert s["ci95"] == pytest.approx([2.0 - half, 2.0 + half])
    assert seed_summary([0.5])["ci95"] is None


def test_each_entry_keeps_the_others(tmp_path):
    path = tmp_path / "f.json"
    write_entry(path, "ensemble", {"a": 1})
    write_entry(path, None, {"results": {"b": 2}})
    write_entry(path, "seeds", {"c": 3})
    write_entry(path, None, {"results": {"b": 4}})
    assert json.loads(path.read_text()) == {"results": {"b": 4}, "ensemble": {"a": 1},
                                            "seeds": {"c": 3}}
