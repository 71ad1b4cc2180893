"""``ostinato eval``: its config, then the command end to end on a tiny untrained model
and a dataset built from 120 real tunes of music21's corpus."""
import json
import math

import matplotlib.image as mpimg
import pytest
import torch

from realtime import cli
from engine.training.data import BuildConfig, Dataset, build
from engine.errors import InvalidMessage
from engine.evaluation.evaluate import EvalConfig, evaluate
from engine.training.model import ModelConfig, MusicLSTM, load_model, save_model
from engine.evaluation.ngram import NGram


def test_config_rejects_bad_values():
    for kwargs, field in [(dict(pieces_per_key=0), "pieces_per_key"), (dict(split="dev"), "split"),
                          (dict(bars=0), "bars"), (dict(densities=(1.0,)), "densities"),
                          (dict(densities=(1.0, -2.0)), "densities"),
                          (dict(temperature=0), "temperature"), (dict(max_pieces=0), "max_pieces"),
                          (dict(key_densities=()), "key_densities"),
                          (dict(tonality=1.5), "tonality"),
                          (dict(sweep_tonalities=(0.0, 2.0)), "sweep_tonalities")]:
        with pytest.raises(InvalidMessage) as e:
            EvalConfig(**kwargs)
        assert e.value.field == field and e.value.allowed
    assert EvalConfig(bars=4).quick().bars == 4 and EvalConfig().quick().bars == 8
    full = EvalConfig()
    assert full.key_densities == (1.0, 2.0, 3.0) and full.bars == 16 and full.pieces_per_key >= 8
    assert full.tonality_sweep and not full.quick().tonality_sweep


# -- end to end ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A dataset of 120 Aird's Airs tunes and an untrained 16-unit model for it."""
    root = tmp_path_factory.mktemp("eval")
    data = root / "dataset.npz"
    build(BuildConfig(collections=("airdsAirs",), max_pieces=120, out=str(data), workers=1,
                      progress=False))
    ds = Dataset.load(data)
    assert len(ds.pieces("test")) >= 3  # the split is a fixed hash of the piece ids
    torch.manual_seed(0)
    model = MusicLSTM(ModelConfig(vocab_size=ds.vocab.size, n_controls=ds.spec.size, embed=8,
                                  hidden=16, layers=1))
    save_model(root / "tiny.npz", model, ds.vocab, ds.spec, info=dict(mean_register=70.0))
    return root, data, root / "tiny.npz", ds


def test_eval_command_writes_every_figure(tiny, capsys):
    root, data, model_path, ds = tiny
    out, png = root / "eval.json", root / "roll.png"
    rc = cli.main(["eval", "--model", str(model_path), "--data", str(data), "--quick",
                   "--bars", "2", "--json", str(out), "--plot", str(png), "--no-progress",
                   "--tonality-sweep"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "improvement over the n-gram" in printed
    assert "worst keys, kk" in printed and "worst keys, music21" in printed
    assert "tonality sweep" in printed and "note_length" in printed
    r = json.loads(out.read_text())
    for name in ("lstm_nats", "lstm_bits", "ngram_nats", "ngram_bits", "improvement"):
        assert math.isfinite(r["nll"][name])
    assert set(r["key"]) >= {"key_and_mode", "mode", "tonic", "per_key", "densities", "judges"}
    # 24 keys x 3 densities x 1 piece
    assert len(r["key"]["per_key"]) == 24 and r["key"]["pieces"] == 72
    assert r["key"]["densities"] == [1.0, 2.0, 3.0]
    for judge in ("kk", "music21"):
        j = r["key"]["judges"][judge]
        assert len(j["per_key"]) == 24 and len(j["worst"]) == 5
        for shares in j["per_key"].values():
            assert set(shares) == {"key_and_mode", "tonic", "mode"}
            assert all(0 <= v <= 1 for v in shares.values())
        assert set(j["per_density"]) == {"1", "2", "3"}
    assert r["key"]["per_key"] == {k: v["key_and_mode"]
                                   for k, v in r["key"]["judges"]["kk"]["per_key"].items()}
    sweep = r["tonality_sweep"]
    assert [row["tonality"] for row in sweep["rows"]] == [0.0, 0.25, 0.5, 0.75, 0.9, 1.0]
    assert sweep["pieces"] == 72
    for row in sweep["rows"]:
        assert {"kk", "music21", "nll_nats", "nll_nats_allowed", "forbidden_share",
                "pitch_class"} <= set(row)
        assert 0 <= row["pitch_class"]["intersection"] <= 1
        assert (row["nll_nats"] is None) == (row["forbidden_share"] > 0)
    assert sweep["rows"][0]["forbidden_share"] == 0
    assert sweep["rows"][0]["nll_nats"] == pytest.approx(r["nll"]["lstm_nats"], rel=1e-4)
    for name in ("note_length", "voices"):
        t = r["texture"][name]
        for side in ("generated", "held_out"):
            assert set(t[side]) == {"p50", "p90", "max", "mean", "histogram"}
            assert sum(t[side]["histogram"]) == pytest.approx(1, abs=1e-3)
        assert 0 <= t["intersection"] <= 1
    assert r["texture"]["note_length"]["generated"]["max"] <= 8  # the runtime's guard
    assert set(r["texture"]["by_density"]) == {"0.5", "1", "2", "4"}
    assert (root / "roll-tonality.png").exists() and r["sweep_plot"].endswith("roll-tonality.png")
    assert r["density"]["requested"] == [0.5, 1.0, 2.0, 4.0]
    assert len(r["density"]["realised_mean"]) == 4 and "spearman" in r["density"]
    for name in ("pitch_class", "pitch_class_major", "pitch_class_minor", "pitch_range", "ioi",
                 "note_length", "voices"):
        assert set(r["overlap"][name]) == {"intersection", "js_bits", "generated", "held_out"}
    assert 0 <= r["overlap"]["ioi"]["intersection"] <= 1
    img = mpimg.imread(png)
    assert img.ndim == 3 and img.shape[0] > 200


def test_nll_figures_score_the_same_tokens(tiny):
    root, data, model_path, ds = tiny
    cfg = EvalConfig(pieces_per_key=1, bars=1, densities=(1.0, 2.0), pieces_per_density=1,
                     tonality_sweep=False)
    r = evaluate(model_path, data, cfg, progress=False)
    held = ds.pieces("test")
    assert r["nll"]["tokens"] == sum(len(t) - 1 for t, _ in held)
    ngram = NGram(5, ds.vocab.size).fit([t for t, _ in ds.pieces("train")])
    assert r["nll"]["ngram_nats"] == pytest.approx(ngram.nll([t for t, _ in held]))
    model = load_model(model_path)[0]
    per_piece = [model.nll(t, c) * (len(t) - 1) for t, c in held]
    assert r["nll"]["lstm_nats"] == pytest.approx(sum(per_piece) / r["nll"]["tokens"])
    assert r["nll"]["improvement"] == pytest.approx(
        1 - r["nll"]["lstm_nats"] / r["nll"]["ngram_nats"])
    # an untrained model knows nothing: the n-gram must beat it by far
    assert r["nll"]["lstm_nats"] > 2 * r["nll"]["ngram_nats"]
    # same seed, same figures
    again = evaluate(model_path, data, cfg, progress=False)
    assert again["key"] == r["key"] and again["density"] == r["density"]


def test_likelihood_only_scores_the_held_out_events_and_composes_nothing(tiny, capsys):
    """--likelihood-only (a model the sampler does not play yet): the same NLL figures as
    the whole evaluation, and no composed piece."""
    root, data, model_path, ds = tiny
    out = root / "nll.json"
    rc = cli.main(["eval", "--model", str(model_path), "--data", str(data), "--likelihood-only",
                   "--json", str(out), "--no-progress"])
    assert rc == 0
    assert "improvement over the n-gram" in capsys.readouterr().out
    r = json.loads(out.read_text())
    assert set(r) == {"model", "data", "config", "nll", "seconds"}
    cfg = EvalConfig(pieces_per_key=1, bars=1, densities=(1.0, 2.0), pieces_per_density=1,
                     tonality_sweep=False)
    assert r["nll"] == evaluate(model_path, data, cfg, progress=False)["nll"]


def test_eval_command_reports_bad_input(tiny, tmp_path, capsys):
    root, data, model_path, ds = tiny
    assert cli.main(["eval", "--model", str(model_path), "--data", str(data),
                     "--pieces-per-key", "0"]) == 1
    assert "pieces_per_key" in capsys.readouterr().err
    assert cli.main(["eval", "--model", str(tmp_path / "none.npz"), "--data", str(data)]) == 1
    assert "none.npz" in capsys.readouterr().err
    assert cli.main(["eval", "--model", str(model_path), "--data", str(tmp_path / "no.npz")]) == 1
    assert "no.npz" in capsys.readouterr().err
