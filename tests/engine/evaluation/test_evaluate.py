"""``ostinato eval``: the statistics on known cases, then the command end to end on a
tiny untrained model and a dataset built from 120 real tunes of music21's corpus."""
import json
import math

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch

from realtime import cli
from engine.training.data import BuildConfig, Dataset, build
from engine.errors import InvalidMessage
from engine.evaluation.evaluate import (EvalConfig, evaluate, histogram_intersection, ioi_histogram,
                             js_divergence, length_edges, length_histogram,
                             pitch_class_histogram, range_histogram, spearman, sweep_path,
                             texture, voice_counts, voices_histogram)
from engine.training.model import ModelConfig, MusicLSTM, load_model, save_model
from engine.evaluation.ngram import NGram
from engine.notes import make_notes

from .test_judges import A_MINOR, C_MAJOR, D_MAJOR




# -- statistics on known cases ------------------------------------------------------------
def test_spearman_known_cases():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [9, 4, 1, 0]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3, 4], [1, 100, 1000, 5000]) == pytest.approx(1.0)  # ranks only
    # ties take their mean rank; scipy.stats.spearmanr gives 0.9486832980505138
    assert spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(0.9486832980505138)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
    with pytest.raises(InvalidMessage) as e:
        spearman([1, 2], [1])
    assert e.value.field == "y"


def test_histogram_intersection_and_js_known_cases():
    assert histogram_intersection([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)  # scale-free
    assert histogram_intersection([1, 0], [0, 1]) == 0.0
    assert histogram_intersection([1, 1], [1, 0]) == pytest.approx(0.5)
    assert histogram_intersection([3, 1, 0], [1, 1, 2]) == pytest.approx(0.25 + 0.25)
    assert js_divergence([1, 2], [1, 2]) == pytest.approx(0.0)
    assert js_divergence([1, 0], [0, 1]) == pytest.approx(1.0)
    assert 0 < js_divergence([1, 1], [1, 0]) < 1
    assert math.isnan(histogram_intersection([0, 0], [1, 1]))


def test_feature_histograms():
    # relative to the detected tonic, C major and D major are the same music
    np.testing.assert_allclose(pitch_class_histogram([C_MAJOR]), pitch_class_histogram([D_MAJOR]))
    assert pitch_class_histogram([C_MAJOR], mode=1).sum() == 0
    assert pitch_class_histogram([C_MAJOR, A_MINOR], mode=1)[0] == 3 * 36  # A held 3 times
    r = range_histogram([C_MAJOR, A_MINOR, make_notes([(0, 1, 20), (0, 1, 100)])])
    assert r[12] == 2 and r[48] == 1 and r.sum() == 3
    gaps = ioi_histogram([make_notes([(0, 6, 60), (0, 6, 64), (6, 9, 62), (12, 13, 60),
                                      (72, 80, 60)])])
    assert len(gaps) == 48
    assert gaps[5] == 2 and gaps[47] == 1 and gaps.sum() == 3  # 6, 6 ticks and 60 -> 48+


def test_note_lengths_and_voices():
    notes = make_notes([(0, 12, 60), (0, 24, 64), (12, 18, 62), (30, 36, 60)])
    np.testing.assert_array_equal(voice_counts(notes), [2] * 12 + [2] * 6 + [1] * 6 + [0] * 6
                                  + [1] * 6)
    v = voices_histogram([notes])
    assert v[0] == 6 and v[1] == 12 and v[2] == 18 and v.sum() == 36
    edges = length_edges(12)
    assert edges[0] == pytest.approx(1 / 12) and edges[-1] == 16 and len(edges) == 47 + 13
    h = length_histogram([notes, make_notes([(0, 400, 60)])], 12)
    assert h[11] == 1 and h[23] == 1 and h[5] == 2 and h[-1] == 1 and h.sum() == 5
    t = texture([notes], [notes], 12)
    assert t["note_length"]["intersection"] == pytest.approx(1.0)
    assert t["note_length"]["generated"]["max"] == 2.0
    assert t["voices"]["held_out"]["max"] == 2 and t["voices"]["generated"]["p50"] == 1.5
    assert sweep_path("x/roll.png").as_posix() == "x/roll-tonality.png"


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


def test_eval_command_reports_bad_input(tiny, tmp_path, capsys):
    root, data, model_path, ds = tiny
    assert cli.main(["eval", "--model", str(model_path), "--data", str(data),
                     "--pieces-per-key", "0"]) == 1
    assert "pieces_per_key" in capsys.readouterr().err
    assert cli.main(["eval", "--model", str(tmp_path / "none.npz"), "--data", str(data)]) == 1
    assert "none.npz" in capsys.readouterr().err
    assert cli.main(["eval", "--model", str(model_path), "--data", str(tmp_path / "no.npz")]) == 1
    assert "no.npz" in capsys.readouterr().err
