"""``ostinato quality``: Self-BLEU, ROC AUC and the t-interval on known cases and against
brute force, then the comparison end to end (quick config) on tiny untrained models and
a dataset of 300 real tunes of music21's corpus."""
import json
import math
from collections import Counter

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch

from realtime import cli
from engine.training.adversarial import Critic, CriticConfig, save_critic
from engine.training.data import BuildConfig, Dataset, build
from engine.errors import InvalidMessage
from engine.training.model import ModelConfig, MusicLSTM, load_model, save_model
from engine.notes import make_notes
from engine.evaluation import quality
from engine.evaluation.quality import METRICS, QualityConfig, compare, intervals, parse_method, self_bleu
from engine.evaluation.scorers import independent_lm


# -- Self-BLEU ----------------------------------------------------------------------------------
def brute_self_bleu(seqs, eps=0.1):
    """Self-BLEU-4 written the slow, obvious way (Counters of tuples), after nltk's
    sentence_bleu with SmoothingFunction().method1."""
    scores = []
    for i, hyp in enumerate(seqs):
        refs = [list(s) for j, s in enumerate(seqs) if j != i]
        logs, first = [], None
        for n in range(1, 5):
            grams = Counter(tuple(hyp[k:k + n]) for k in range(len(hyp) - n + 1))
            clip = Counter()
            for r in refs:
                rc = Counter(tuple(r[k:k + n]) for k in range(len(r) - n + 1))
                for g in grams:
                    clip[g] = max(clip[g], rc[g])
            num = sum(min(c, clip[g]) for g, c in grams.items())
            den = max(1, sum(grams.values()))
            first = num if first is None else first
            logs.append(math.log((num or eps) / den))
        c = len(hyp)
        r = min((len(x) for x in refs), key=lambda x: (abs(x - c), x))
        bp = 1.0 if c > r else (math.exp(1 - r / c) if c else 0.0)
        scores.append(bp * math.exp(sum(logs) / 4) if first else 0.0)
    return sum(scores) / len(scores)


def test_self_bleu_known_cases():
    a = [2, 2, 1, 2, 2, 2, 1, -5, 3, -2]
    assert self_bleu([a, a, a]) == pytest.approx(1.0)
    # no interval in common: no unigram matches, BLEU 0
    assert self_bleu([[1, 2, 3, 4, 5], [-1, -2, -3, -4, -5], [7, 8, 9, 10, 11]]) == 0.0
    # shared intervals but no shared 4-gram: near 0
    assert self_bleu([[1, 2, 3, 4] * 3, [4, 3, 2, 1] * 3]) < 0.1
    # by hand: p1 3/5, p2 2/4, p3 1/3, p4 smoothed 0.1/2, equal lengths (BP 1), both ways
    assert self_bleu([[1, 2, 3, 4, 5], [1, 2, 3, 9, 9]]) == pytest.approx(
        (0.6 * 0.5 / 3 * 0.05) ** 0.25)
    # the shorter one matches fully but pays the brevity penalty exp(1 - r/c) = exp(1 - 8/4);
    # the longer one has precisions 4/8, 3/7, 2/6, 1/5 and no penalty
    short, long = [1, 2, 3, 4], [1, 2, 3, 4, 5, 6, 7, 8]
    assert self_bleu([short, long]) == pytest.approx(
        (math.exp(-1) + (4 / 8 * 3 / 7 * 2 / 6 * 1 / 5) ** 0.25) / 2)
    assert math.isnan(self_bleu([a]))


def test_self_bleu_matches_brute_force_on_random_pieces():
    rng = np.random.default_rng(3)
    for trial in range(20):
        n = int(rng.integers(2, 7))
        seqs = [rng.integers(-3, 4, size=int(rng.integers(0, 30))) for _ in range(n)]
        assert self_bleu(seqs) == pytest.approx(brute_self_bleu([s.tolist() for s in seqs]),
                                                abs=1e-12), trial


def test_intervals_follow_the_highest_note_of_each_onset():
    notes = make_notes([(0, 12, 60), (0, 12, 64), (12, 24, 67), (24, 36, 62), (24, 36, 55)])
    assert intervals(notes).tolist() == [3, -5]  # 64 -> 67 -> 62
    assert intervals(notes[:1]).tolist() == []


def test_methods_and_config_are_checked():
    assert parse_method("mle=m.npz") == ("mle", "m.npz", None)
    assert parse_method("d=m.npz:c.npz:4") == ("d", "m.npz", ("c.npz", 4))
    assert parse_method("d=m.npz:c.npz:0") == ("d", "m.npz", None)  # K = 0: off
    for bad in ("m.npz", "=m.npz", "x=", "x=m.npz:c.npz"):
        with pytest.raises(InvalidMessage):
            parse_method(bad)
    with pytest.raises(InvalidMessage):
        QualityConfig(window_bars=32)  # longer than the pieces
    full, quick = QualityConfig(), QualityConfig().quick()
    assert full.temperatures == (0.7, 0.85, 1.0, 1.15, 1.3) and full.seeds == (0, 1, 2)
    assert quick.temperatures[0] == 0.7 and quick.temperatures[-1] == 1.3
    assert len(quick.seeds) >= 2


# -- end to end -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """300 Aird's Airs tunes and two untrained 16-unit generators for them."""
    root = tmp_path_factory.mktemp("quality")
    data = root / "dataset.npz"
    build(BuildConfig(collections=("airdsAirs",), max_pieces=300, out=str(data), workers=1,
                      progress=False))
    ds = Dataset.load(data)
    assert len(ds.pieces("valid")) >= 3 and len(ds.pieces("test")) >= 3
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = MusicLSTM(ModelConfig(vocab_size=ds.vocab.size, n_controls=ds.spec.size,
                                      embed=8, hidden=16, layers=1))
        paths.append(root / f"g{seed}.npz")
        save_model(paths[-1], model, ds.vocab, ds.spec, info=dict(mean_register=70.0))
    return root, data, paths, ds


def check_result(r, names, cfg):
    assert list(r["methods"]) == names and r["baseline"] == names[0]
    assert r["splits"] == dict(generators="train", independent_lm="valid", held_out="test")
    for name in names:
        m = r["methods"][name]
        assert [row["temperature"] for row in m["rows"]] == list(cfg.temperatures)
        assert math.isfinite(m["test_nll"])
        for row in m["rows"]:
            assert row["pieces"] == cfg.pieces
            for k in METRICS:
                iv = row[k]
                assert len(iv["seeds"]) == len(cfg.seeds)
                if iv["lo"] is not None:
                    assert iv["lo"] <= iv["mean"] <= iv["hi"]
            for k in ("self_bleu4", "critic_auc", "key_and_mode", "mode", "tonic"):
                assert all(v is None or 0 <= v <= 1 for v in row[k]["seeds"]), k
            assert all(v > 0 for v in row["lm_score"]["seeds"] + row["reverse_lm"]["seeds"])
            assert row["critic_auc"]["mean"] is not None
            assert set(row["vs_baseline"]) == set(METRICS)
            if name == names[0]:
                assert all(v in (0, None) for v in row["vs_baseline"].values())


def test_compare_end_to_end(tiny, tmp_path):
    root, data, (g0, g1), ds = tiny
    cfg = QualityConfig().quick()
    out = tmp_path / "q"
    r = compare([("mle", str(g0), None), ("other", str(g1), None)], data, out, cfg)
    check_result(r, ["mle", "other"], cfg)
    assert json.loads((out / "quality.json").read_text()) == r
    img = mpimg.imread(out / "quality.png")
    assert img.ndim == 3 and img.shape[0] > 200
    # the test NLL guardrail is MusicLSTM.nll over the held-out pieces, token-weighted
    model = load_model(g0)[0]
    test = ds.pieces("test")
    rng = np.random.default_rng(0)
    if len(test) > cfg.max_test_pieces:
        test = [test[i] for i in np.sort(rng.choice(len(test), cfg.max_test_pieces, False))]
    want = sum(model.nll(t, c) * (len(t) - 1) for t, c in test) / sum(len(t) - 1 for t, _ in test)
    assert r["methods"]["mle"]["test_nll"] == pytest.approx(want)
    # an untrained generator's music is far less likely than real music under an LM of real music
    for name in ("mle", "other"):
        for row in r["methods"][name]["rows"]:
            assert row["lm_score"]["mean"] > r["real"]["lm_score"] + 1.0
    assert r["independent_lm"]["cached"] is False
    # the independent LM is trained on "valid" only and cached
    again, info = independent_lm(ds, out / "lm", cfg)
    assert info["cached"] is True and info["valid_nll"] == r["independent_lm"]["valid_nll"]


def test_quality_command(tiny, tmp_path, capsys):
    root, data, (g0, _), ds = tiny
    out = tmp_path / "cli"
    rc = cli.main(["quality", "--method", f"mle={g0}", "--data", str(data), "--out", str(out),
                   "--quick", "--no-progress", "--seeds", "2"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "held-out real: LM score" in printed and "critic_auc" in printed
    assert (out / "quality.json").exists() and (out / "quality.png").exists()
    assert cli.main(["quality", "--method", "bad", "--data", str(data), "--quick"]) == 1
    assert "NAME=MODEL" in capsys.readouterr().err
    assert cli.main(["quality", "--data", str(data), "--quick", "--pieces", "1"]) == 1
    assert "config" in capsys.readouterr().err


def test_critic_settings_reach_generate_many(tiny, tmp_path, monkeypatch):
    """Whatever generate_many does with them, a method's critic and K are passed to it (and
    only for that method).  A stand-in records the call and composes without the critic."""
    real, calls = quality.generate_many, []

    def with_critic(weights, requests, bars, critic=None, critic_k=0, **kw):
        calls.append((critic, critic_k))
        return real(weights, requests, bars, **kw)

    monkeypatch.setattr(quality, "generate_many", with_critic)
    root, data, (g0, _), ds = tiny
    cfg = QualityConfig().quick()
    r = compare([("mle", str(g0), None), ("mle+critic", str(g0), ("c.npz", 3))], data,
                tmp_path / "q", cfg)
    cells = len(cfg.temperatures) * len(cfg.seeds)
    assert calls == [(None, 0)] * cells + [("c.npz", 3)] * cells
    assert r["methods"]["mle+critic"]["critic_k"] == 3


def test_compare_with_a_play_time_critic(tiny, tmp_path):
    root, data, (g0, _), ds = tiny
    torch.manual_seed(0)
    critic = tmp_path / "critic.npz"
    save_critic(critic, Critic(CriticConfig(vocab_size=ds.vocab.size, n_controls=ds.spec.size,
                                            embed=8, hidden=8)), ds.vocab, ds.spec)
    cfg = QualityConfig().quick()
    r = compare([("mle", str(g0), None), ("mle+critic", str(g0), (str(critic), 2))], data,
                tmp_path / "q", cfg)
    check_result(r, ["mle", "mle+critic"], cfg)
    m = r["methods"]["mle+critic"]
    assert m["critic"] == str(critic) and m["critic_k"] == 2
    assert m["test_nll"] == r["methods"]["mle"]["test_nll"]  # the same generator
    # D's picks change what plays: the same requests and seeds give other music
    assert any(a["lm_score"]["seeds"] != b["lm_score"]["seeds"]
               for a, b in zip(m["rows"], r["methods"]["mle"]["rows"]))
