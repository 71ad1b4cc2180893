"""Adversarial training: D's loss, the policy-gradient step, a run end to end, and the
critic file read by the torch-free runtime."""
import json

import numpy as np
import pytest
import torch
from torch import nn

from engine.training.adversarial import (AdversarialConfig, Batches, Critic, CriticConfig, Windows,
                                adversarial_step, d_loss, d_step, discounted, load_critic,
                                rewards, save_critic, train_adversarial)
from realtime.cli import main
from engine.errors import ModelError
from engine.training.model import ModelConfig, MusicLSTM, load_model, save_model
from engine.vocab import NOTE_ON, TIME_SHIFT
from engine.sampler.critic import CriticRuntime
from engine.sampler.weights import Weights

TINY = AdversarialConfig(steps=4, batch_size=8, prefix=8, window=16, d_pretrain=2, log_every=2,
                         valid_windows=8)


def tiny_g(ds, seed=0):
    torch.manual_seed(seed)
    return MusicLSTM(ModelConfig(vocab_size=ds.vocab.size, n_controls=ds.spec.size, embed=16,
                                 hidden=32, layers=1, dropout=0.0)).eval()


def tiny_d(ds, seed=0):
    torch.manual_seed(seed)
    return Critic(CriticConfig(vocab_size=ds.vocab.size, n_controls=ds.spec.size, embed=8,
                               hidden=16, layers=1, dropout=0.0))


def test_d_loss_is_the_seed_formula_and_rewards_are_minus_l_g():
    r, f = torch.randn(4, 7), torch.randn(4, 7)
    sig = torch.sigmoid
    want = -(torch.log(sig(r)).mean() + torch.log(1 - sig(f)).mean())
    assert d_loss(r, f).item() == pytest.approx(want.item(), rel=1e-5)
    assert torch.allclose(rewards(f, "log"), torch.log(sig(f)), atol=1e-6)  # -L_G per step
    assert torch.allclose(rewards(f, "linear"), 2 * sig(f) - 1, atol=1e-6)
    R = discounted(torch.tensor([[1.0, 2.0, 3.0]]), 0.5)
    assert R.tolist() == [[1 + 0.5 * 2 + 0.25 * 3, 2 + 0.5 * 3, 3.0]]


def test_windows_give_each_sequence_its_own_beat_phase(data):
    w = Windows(data.vocab, data.spec)
    ph = data.spec.slices()["phase"]
    base = torch.zeros(1, data.spec.size)
    base[0, 3] = 1  # a key bit: kept
    shift = lambda n: data.vocab.token(TIME_SHIFT, n)
    on = data.vocab.token(NOTE_ON, 60)
    toks = torch.tensor([[on, shift(5), on, shift(9)]])
    c = w.controls(base, torch.tensor([4]), toks)
    assert c[0, :, 3].tolist() == [1, 1, 1, 1]
    assert c[0, :, ph].argmax(-1).tolist() == [4, 9, 9, (9 + 9) % 12]


def test_d_learns_real_music_from_an_untrained_generator(data):
    """L_D starts at 2 ln 2 and falls once D sees real against G's samples."""
    G, D = tiny_g(data), tiny_d(data)
    cfg = AdversarialConfig(batch_size=16, prefix=8, window=32)
    opt = torch.optim.Adam(D.parameters(), lr=3e-3)
    b = Batches(data, cfg, "train", np.random.default_rng(0), torch.Generator().manual_seed(0))
    losses = [d_step(D, opt, *b(G), cfg.prefix)[0] for _ in range(60)]
    assert losses[0] == pytest.approx(2 * np.log(2), abs=0.1)
    assert np.mean(losses[-10:]) < 0.8 * losses[0], losses


class NoteOnJudge(nn.Module):
    """A judge that finds every note-on real and everything else generated: its reward
    says "more note-ons", so G's share of note-ons must rise under it."""

    def __init__(self, vocab):
        super().__init__()
        self.on = vocab.offsets[NOTE_ON]

    def forward(self, tokens, controls, state=None):
        is_on = (tokens >= self.on) & (tokens < self.on + 128)
        return torch.where(is_on, 3.0, -3.0), None


def test_policy_gradient_moves_g_the_way_the_reward_says(data):
    G = tiny_g(data, seed=3)
    G0 = tiny_g(data, seed=3)
    judge = NoteOnJudge(data.vocab)
    cfg = AdversarialConfig(batch_size=32, prefix=8, window=24, kl=0.0, lr_g=3e-3)
    opt = torch.optim.Adam(G.parameters(), lr=cfg.lr_g)
    b = Batches(data, cfg, "train", np.random.default_rng(1), torch.Generator().manual_seed(1))
    on = data.vocab.offsets[NOTE_ON]

    def note_on_share(n=4):
        gen = torch.cat([b(G)[1][:, cfg.prefix:] for _ in range(n)])
        return ((gen >= on) & (gen < on + 128)).float().mean().item()

    # one step: the surrogate objective mean(A * log pi) rises on the batch it used
    real, fake, cr, cf = b(G)
    with torch.no_grad():
        R = discounted(rewards(judge(fake, cf)[0][:, cfg.prefix:]), cfg.gamma)
        adv = R - R.mean(0)

    def objective():
        with torch.no_grad():
            lp = torch.log_softmax(G(fake[:, :-1], cf[:, :-1])[0][:, cfg.prefix - 1:], -1)
            return (adv * lp.gather(-1, fake[:, cfg.prefix:, None])[..., 0]).mean().item()

    before = objective()
    adversarial_step(G, G0, judge, opt, real, fake, cr, cf, cfg.prefix, cfg, None)
    assert objective() > before
    # and a few more: what G plays follows the reward
    share0 = note_on_share()
    baseline = None
    for _ in range(25):
        real, fake, cr, cf = b(G)
        _, baseline = adversarial_step(G, G0, judge, opt, real, fake, cr, cf, cfg.prefix, cfg,
                                       baseline)
    assert note_on_share() > share0 + 0.05, (share0, note_on_share())


def test_the_kl_term_holds_g_near_the_pretrained_model(data):
    """With the same samples and rewards, a KL weight keeps G closer to G0."""
    kls = []
    for kl in (0.0, 5.0):
        G, G0 = tiny_g(data, seed=4), tiny_g(data, seed=4)
        cfg = AdversarialConfig(batch_size=16, prefix=8, window=16, kl=kl, lr_g=3e-3)
        opt = torch.optim.Adam(G.parameters(), lr=cfg.lr_g)
        b = Batches(data, cfg, "train", np.random.default_rng(2), torch.Generator().manual_seed(2))
        for _ in range(15):
            st, _ = adversarial_step(G, G0, NoteOnJudge(data.vocab), opt, *b(G), cfg.prefix, cfg,
                                     None)
        kls.append(st["kl"])
    assert kls[1] < kls[0], kls


def test_a_run_logs_resumes_and_exports_files_the_runtime_reads(data, tmp_path):
    src = tmp_path / "mle.npz"
    save_model(src, tiny_g(data), data.vocab, data.spec, info=dict(mean_register=70.0))
    ccfg = CriticConfig(vocab_size=data.vocab.size, n_controls=data.spec.size, embed=8, hidden=16)
    out = tmp_path / "run"
    train_adversarial(data, src, out, TINY, ccfg, progress=False)
    rows = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4, 6]
    assert rows[0]["phase"] == "critic" and rows[-1]["phase"] == "adversarial"
    assert {"d_loss", "d_acc", "g_loss", "reward", "kl", "valid_nll"} <= set(rows[-1])
    longer = AdversarialConfig(**{**TINY.__dict__, "steps": 6})
    with pytest.raises(ValueError, match="configs differ"):
        train_adversarial(data, src, out, longer, ccfg, resume=True, progress=False)
    (out / "log.jsonl").unlink()
    train_adversarial(data, src, out, TINY, ccfg, resume=True, progress=False)  # done: no steps
    assert not (out / "log.jsonl").read_text().strip()
    assert (out / "curves.png").stat().st_size > 1000

    # the fine-tuned G is a generator file like any other, with its provenance
    G, vocab, spec, meta = load_model(out / "generator.npz")
    assert meta["info"]["adversarial"]["steps"] == 4 and meta["info"]["mean_register"] == 70.0
    assert not torch.equal(G.head.weight, tiny_g(data).head.weight)
    Weights(out / "generator.npz")
    # D: torch and the numba runtime agree within 1e-4
    D, *_ = load_critic(out / "critic.npz")
    x = torch.randint(0, data.vocab.size, (3, 20))
    c = torch.rand(3, 20, data.spec.size)
    with torch.no_grad():
        want = D(x, c)[0]
    rt = CriticRuntime(out / "critic.npz", slots=3)
    lengths = np.array([20, 7, 1])
    got = rt.score(np.zeros((1, 16), np.float32), np.zeros((1, 16), np.float32), x.numpy(),
                   c.numpy(), lengths, np.zeros(3, np.float32))
    np.testing.assert_allclose(got, want[np.arange(3), lengths - 1].numpy(), atol=1e-4)


def test_a_critic_file_is_not_a_generator_and_back(data, tmp_path):
    save_critic(tmp_path / "d.npz", tiny_d(data), data.vocab, data.spec)
    save_model(tmp_path / "g.npz", tiny_g(data), data.vocab, data.spec)
    with pytest.raises(ModelError, match="critic file, not a generator"):
        load_model(tmp_path / "d.npz")
    with pytest.raises(ModelError, match="a critic file where a generator"):
        Weights(tmp_path / "d.npz")
    with pytest.raises(ModelError, match="not a critic"):
        load_critic(tmp_path / "g.npz")
    with pytest.raises(ModelError, match="generator file where a critic"):
        CriticRuntime(tmp_path / "g.npz")


def test_the_command_line_runs_and_exports(data, data_file, tmp_path, capsys):
    src = tmp_path / "mle.npz"
    save_model(src, tiny_g(data), data.vocab, data.spec)
    ds = data_file
    gen, crit = tmp_path / "models" / "g.npz", tmp_path / "models" / "d.npz"
    assert main(["adversarial", "--model", str(src), "--data", str(ds), "--out",
                 str(tmp_path / "run"), "--steps", "2", "--d-pretrain", "1", "--batch-size", "4",
                 "--prefix", "8", "--window", "8", "--log-every", "3", "--valid-windows", "4",
                 "--critic-hidden", "8", "--export", str(gen), "--export-critic",
                 str(crit)]) == 0
    assert "D held-out accuracy" in capsys.readouterr().out
    Weights(gen)
    CriticRuntime(crit)



def test_the_conv_critic_ignores_padding():
    from engine.training.critics import ConvCritic
    torch.manual_seed(0)
    D = ConvCritic(CriticConfig(vocab_size=50, n_controls=4, embed=4, hidden=8)).eval()
    x, c = torch.randint(0, 50, (1, 12)), torch.rand(1, 12, 4)
    padded_x = torch.cat([x, torch.zeros(1, 9, dtype=torch.long)], 1)
    padded_c = torch.cat([c, torch.zeros(1, 9, 4)], 1)
    with torch.no_grad():
        assert torch.allclose(D(x, c), D(padded_x, padded_c, [12]), atol=1e-6)


def test_the_architecture_comparison_runs_and_reports_each(data, data_file, tmp_path):
    from engine.training import critics
    src = tmp_path / "mle.npz"
    save_model(src, tiny_g(data), data.vocab, data.spec)
    out = tmp_path / "arch.json"
    assert critics.main(["--model", str(src), "--data", str(data_file), "--json", str(out),
                         "--quick"]) == 0
    r = json.loads(out.read_text())["results"]
    assert set(r) == set(critics.ARCHITECTURES)
    for v in r.values():
        assert len(v["auc"]) == 2 and all(0 <= a <= 1 for a in v["auc"]) and v["params"] > 0
