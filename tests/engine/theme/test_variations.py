"""Similarity to a theme on known cases, then the variation evaluation end to end on a
small theme model and real held-out tunes (40 of Ryan's Mammoth from music21's corpus)."""
import math

import numpy as np
import pytest
import torch

from engine.training.model import ModelConfig, MusicLSTM, save_model
from engine.notes import make_notes
from engine.theme.model import ThemeConfig, ThemeVAE, save_theme
from engine.evaluation.quality import QualityConfig
from engine.evaluation.scorers import independent_lm
from engine.theme.variations import (edit_distance, evaluate_interpolation, evaluate_variations,
                               held_out_themes, melody, melody_distance, note_accuracy,
                               similarity)

THEME = make_notes([(0, 12, 62), (12, 24, 65), (24, 36, 69), (36, 42, 67), (42, 48, 65),
                    (48, 60, 64), (60, 72, 62), (72, 96, 61)])


def test_melody_is_the_top_line():
    chord = make_notes([(0, 12, 60), (0, 12, 67), (0, 12, 64), (12, 24, 62), (12, 24, 55)])
    p, t = melody(chord)
    assert p.tolist() == [67, 62] and t.tolist() == [0, 12]


def test_similarity_and_novelty_on_known_cases():
    same = similarity(THEME, THEME)
    assert same["similarity"] == 1.0 and same["novelty"] == 0.0
    up = THEME.copy()
    up["pitch"] += 5  # transposed: the same intervals and rhythm
    assert similarity(THEME, up)["similarity"] == 1.0
    twice = np.concatenate([THEME, up])
    twice["start"][len(THEME):] += 96
    twice["end"][len(THEME):] += 96
    s = similarity(THEME, twice)  # the theme, then again a fourth up: all of it is heard
    assert s["similarity"] == 1.0 and 0.0 <= s["novelty"] < 0.5
    other = make_notes([(i * 6, i * 6 + 5, 60 + (i * 7) % 13) for i in range(16)])
    d = similarity(THEME, other)
    assert d["similarity"] < 0.2 and d["novelty"] > 0.8
    assert math.isnan(similarity(make_notes([(0, 1, 60)]), THEME)["interval"])


def test_note_accuracy_counts_onset_and_pitch():
    half = THEME[:4]
    assert note_accuracy(THEME, THEME, 96) == dict(notes=1.0, onsets=1.0)
    assert note_accuracy(THEME, half, 96)["notes"] == 0.5
    moved = THEME.copy()
    moved["pitch"] += 1
    assert note_accuracy(THEME, moved, 96) == dict(notes=0.0, onsets=1.0)
    assert note_accuracy(THEME, THEME, 24)["notes"] == 0.25  # only what sounds before the end


def test_edit_distance_on_known_cases():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance([], [1, 2]) == 2 and edit_distance([1, 2], [1, 2]) == 0
    assert edit_distance([(60, 0), (62, 12)], [(60, 0), (64, 12)]) == 1


def test_melody_distance_is_zero_for_the_theme_and_grows_as_it_changes():
    assert melody_distance(THEME, THEME, 96) == 0.0
    one = THEME.copy()
    one["pitch"][0] += 2  # one note of eight changed
    assert melody_distance(THEME, one, 96) == 1 / 8
    up = THEME.copy()
    up["pitch"] += 5  # every pitch moved: a melody with nothing in common at these onsets
    assert melody_distance(THEME, up, 96) == 1.0
    assert melody_distance(THEME, THEME, 24) == 6 / 8  # two notes before tick 24 are kept


@pytest.fixture(scope="module")
def files(data_file, data, tmp_path_factory):
    torch.manual_seed(0)
    tmp = tmp_path_factory.mktemp("var")
    ds = data
    plain = MusicLSTM(ModelConfig(vocab_size=ds.vocab.size, n_controls=ds.spec.size, embed=16,
                                  hidden=32, layers=1))
    base = tmp / "base.npz"
    save_model(base, plain, ds.vocab, ds.spec, info=dict(key_relative=True))
    vae = ThemeVAE.from_plain(plain, ThemeConfig(z_dim=8, enc_embed=8, enc_hidden=16))
    with torch.no_grad():
        vae.decoder.gate_weights(0).normal_(0, 2.0)
        vae.decoder.init_h[0].weight.normal_(0, 2.0)
    theme = tmp / "theme.npz"
    save_theme(theme, vae, ds.vocab, ds.spec, info=dict(key_relative=True))
    return ds, base, theme, data_file


def test_held_out_themes_are_bar_phrases_read_as_a_game_sends_them(files):
    ds = files[0]
    motifs = held_out_themes(ds, "train", 2, 6)
    assert 1 <= len(motifs) <= 6
    for m in motifs:
        assert m.bars <= 2 and len(m.notes) >= 3 and m.notes["start"].min() == 0


def test_the_evaluation_runs_end_to_end(files):
    ds, base, theme, _ = files
    r = evaluate_variations(theme, base, ds, split="train", n=4, seeds=(0,), bars_out=2,
                            theme_bars=(2,), variations=(0.0, 1.0), temperatures=(1.0,))
    two = r["2_bars"]
    assert two["themes"] >= 1
    assert 0.0 <= two["reconstruction"]["note_accuracy"] <= 1.0
    assert set(two["variation"]) == {"0", "1"} and set(two["primed"]) == {"1"}
    for row in list(two["variation"].values()) + list(two["primed"].values()):
        for k in ("similarity", "novelty"):
            assert math.isnan(row[k]) or 0.0 <= row[k] <= 1.0


def test_theme_eval_command_writes_the_figures(files, tmp_path, capsys):
    import json

    from realtime import cli

    ds, base, theme, data = files
    out = tmp_path / "theme-eval.json"
    assert cli.main(["theme", "eval", str(theme), "--data", str(data),
                     "--split", "train", "--n", "2", "--seeds", "1", "--base", str(base),
                     "--json", str(out), "--quick", "--lm-dir", str(tmp_path / "lm")]) == 0
    r = json.loads(out.read_text())
    assert set(r) >= {"figures", "variations", "seconds"}
    assert "2_bars" in r["figures"] and "2_bars" in r["variations"]
    assert "note accuracy" in capsys.readouterr().out


def test_critic_auc_and_interpolation_figures(files, tmp_path):
    ds, base, theme, _ = files
    qc = QualityConfig(window_bars=2).quick()
    lm, info = independent_lm(ds, tmp_path / "lm", qc)
    assert info["split"] == "valid"
    r = evaluate_variations(theme, base, ds, split="train", n=4, seeds=(0, 1), bars_out=2,
                            theme_bars=(2,), variations=(0.0, 1.0), temperatures=(1.0,),
                            quality=qc, lm=lm)["2_bars"]
    aucs = r["critic_auc"]
    assert set(aucs) == {"0", "1"} and aucs["1"]["vs_free"] == 0.0
    for a in aucs.values():
        assert len(a["seeds"]) == 2 and all(0.0 <= x <= 1.0 for x in a["seeds"])
        assert a["vs_free"] == pytest.approx(a["mean"] - aucs["1"]["mean"])
    for k in ("spearman", "spearman_within_theme", "spearman_curve"):
        assert math.isnan(r[k]) or -1.0 <= r[k] <= 1.0
    ip = r["interpolation"]
    assert ip["pairs"] == r["themes"] // 2 and ip["t"] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert len(ip["nll"]) == len(ip["distance"]) == 5 and all(x > 0 for x in ip["nll"])
    assert ip["midpoint_vs_endpoints"] == pytest.approx(
        np.mean(ip["nll"][1:4]) / ((ip["nll"][0] + ip["nll"][4]) / 2) - 1)
    assert 0.0 <= ip["monotone_share"] <= 1.0
    assert all(0.0 <= d <= 1.0 for d in ip["distance"])


def test_interpolation_of_a_theme_with_itself_stays_put(files, tmp_path):
    """A path from a theme to itself composes the same piece at every t (the same z, the
    same request and seed): the distance is flat, so the path counts as monotone."""
    ds, _, theme, _ = files
    lm, _ = independent_lm(ds, tmp_path / "lm", QualityConfig().quick())
    m = held_out_themes(ds, "train", 2, 1)
    ip = evaluate_interpolation(theme, ds, [m[0], m[0]], lm, seeds=(0,))
    assert ip["pairs"] == 1 and len(set(ip["distance"])) == 1 and len(set(ip["nll"])) == 1
    assert ip["monotone_share"] == 1.0 and ip["midpoint_vs_endpoints"] == pytest.approx(0.0)
