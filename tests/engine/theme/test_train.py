"""Training a theme model (engine/theme/train.py, engine/theme/cli.py): the two rates,
a run that exports, logs, resumes and runs from the command line."""
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.errors import ModelError
from engine.modelfile import read_model_file
from engine.sampler.weights import Weights
from engine.sampler.theme import ThemeEncoder
from engine.theme.data import Phrases
from engine.theme.model import ThemeVAE, load_theme
from engine.theme.objective import phrase_ce, theme_loss
from engine.theme.train import TwoRateAdam, train_theme
from engine.training.model import load_model

from .tiny import POS, TINY, TINY_TRAIN, inputs, tiny_plain

ROOT = Path(__file__).resolve().parents[3]


def test_a_few_steps_lower_the_reconstruction_loss_on_a_fixed_batch(data):
    torch.manual_seed(0)
    vae = ThemeVAE.from_plain(tiny_plain(data), TINY)
    opt = TwoRateAdam(vae, 3e-3, 1e-3)
    b = Phrases(data, "train", TINY).sample(np.random.default_rng(1), 8, bars=2)
    no_drop = torch.zeros(8, dtype=torch.bool)

    def recon():
        vae.eval()
        with torch.no_grad():
            mu, _ = vae.encoder(b.tokens, b.lengths)
            return phrase_ce(vae.decoder(b.inputs, b.controls, mu)[0], b).mean().item()

    before = recon()
    for _ in range(40):
        vae.train()
        loss, _ = theme_loss(vae, b, no_drop, beta=0.1, free_bits=0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert recon() < 0.9 * before, (before, recon())


def test_the_decoder_rate_moves_the_shipped_weights_and_the_other_rate_the_new(data):
    """lr_dec = 0: the shipped weights (W_x of each layer included) stay as they were,
    while W_z, the initial state and the encoder learn."""
    plain = tiny_plain(data)
    vae = ThemeVAE.from_plain(plain, TINY)
    opt = TwoRateAdam(vae, 3e-3, 0.0)
    b = Phrases(data, "train", TINY).sample(np.random.default_rng(2), 8)
    enc0 = [p.detach().clone() for p in vae.encoder.parameters()]
    for _ in range(3):
        loss, _ = theme_loss(vae, b, torch.zeros(8, dtype=torch.bool), 1.0, 0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()
    for k, v in vae.decoder.plain_state_dict().items():
        assert torch.equal(v, plain.state_dict()[k]), k
    assert all(vae.decoder.gate_weights(k).abs().max() > 0 for k in range(2))
    assert vae.decoder.init_c[1].weight.abs().max() > 0
    assert any(not torch.equal(a, p) for a, p in zip(enc0, vae.encoder.parameters()))


def test_after_training_z0_is_exactly_the_plain_generator_in_the_file(run, data):
    enc, dec, vocab, spec, meta = load_theme(run / "theme.npz")
    assert all(dec.gate_weights(k).abs().max() > 0 for k in range(2))  # training moved W_z
    assert dec.init_h[0].weight.abs().max() > 0
    plain, *_ = load_model(run / "theme.npz")  # the same file, read as a plain generator
    x, c, z = inputs(data)
    with torch.no_grad():
        want = plain(x, c)[0]
        torch.testing.assert_close(dec(x, c)[0], want, atol=1e-5, rtol=0)
        torch.testing.assert_close(dec(x, c, torch.zeros_like(z))[0], want, atol=1e-5, rtol=0)
        assert (dec(x, c, z)[0] - want).abs().max() > 1e-4  # and z does change the music
    w = Weights(run / "theme.npz")  # the server's runtime reads it too
    assert w.hidden == 32 and w.layers == 2 and w.mean_register == 70.0 and w.key_relative


def test_a_conductor_model_trains_exports_and_loads_for_the_server(data_file, base_file, data,
                                                                   tmp_path):
    train_theme(data_file, base_file, tmp_path, POS, TINY_TRAIN, progress=False)
    enc, dec, *_, meta = load_theme(tmp_path / "theme.npz")
    assert meta["theme"]["positions_per_bar"] == 4 and dec.positions == 16
    assert dec.code_weights(1).abs().max() > 0  # training moved W_u
    raw = torch.load(tmp_path / "last.pt", weights_only=True)["model"]
    torch.testing.assert_close(dec.conductor, raw["decoder.conductor"])
    ne = ThemeEncoder(tmp_path / "theme.npz")  # the server's encoder reads it all
    assert ne.bias(np.ones(TINY.z_dim), bars=3)[0].shape == (12, 2, 4 * 32)


def test_a_run_logs_its_figures_and_resume_takes_the_same_steps(data_file, base_file, run,
                                                                tmp_path, monkeypatch):
    rows = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4]
    assert {"ce", "ce_token", "kl", "kl_fb", "beta", "active_units", "mi", "valid"} <= set(rows[-1])
    assert rows[-1]["beta"] == pytest.approx(0.75)  # beta at the step taken (3 of 4)
    v = rows[-1]["valid"]
    assert {"2_bars", "4_bars", "stream"} <= set(v) and "nll_base" in v["2_bars"]

    longer = replace(TINY_TRAIN, steps=6)
    straight = tmp_path / "straight"
    train_theme(data_file, base_file, straight, TINY, longer, progress=False)
    # the same run, killed in step 5 (after the checkpoint of step 4), then resumed
    broken = tmp_path / "broken"
    calls = {"n": 0}
    real_sample = Phrases.sample

    def dies_in_step_5(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real_sample(self, *a, **kw)

    monkeypatch.setattr(Phrases, "sample", dies_in_step_5)
    with pytest.raises(KeyboardInterrupt):
        train_theme(data_file, base_file, broken, TINY, longer, progress=False)
    monkeypatch.setattr(Phrases, "sample", real_sample)
    assert not (broken / "theme.npz").exists()
    assert torch.load(broken / "last.pt", weights_only=True)["step"] == 4
    with pytest.raises(ModelError, match="configs differ"):
        train_theme(data_file, base_file, broken, TINY, replace(longer, free_bits=0.2),
                    resume=True, progress=False)
    train_theme(data_file, base_file, broken, TINY, longer, resume=True, progress=False)
    assert [json.loads(x)["step"] for x in (broken / "log.jsonl").read_text().splitlines()] \
        == [2, 4, 6]
    a = read_model_file(straight / "theme.npz", theme=True)[1]
    b = read_model_file(broken / "theme.npz", theme=True)[1]
    for k in a:
        np.testing.assert_allclose(a[k], b[k], atol=1e-6, err_msg=k)
    assert not np.array_equal(a["theme.gates_l0"],
                              read_model_file(run / "theme.npz", theme=True)[1]["theme.gates_l0"])


def ostinato(*args, cwd):
    res = subprocess.run([sys.executable, "-m", "realtime.cli", *map(str, args)], cwd=cwd,
                         capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    return res.returncode, res.stdout, res.stderr


def test_the_command_line_trains_exports_and_prints_figures(data_file, base_file, tmp_path):
    out = tmp_path / "run"
    rc, stdout, err = ostinato(
        "theme", "train", "--data", data_file, "--base", base_file, "--out", out, "--steps", 3,
        "--eval-every", 3, "--batch-size", 4, "--z-dim", 8, "--enc-embed", 8, "--enc-hidden",
        16, "--max-bars", 4, "--valid-phrases", 4, "--stream-windows", 2, "--threads", 1,
        cwd=tmp_path)
    assert rc == 0, err
    assert "step 3:" in stdout and (out / "theme.npz").exists()
    load_theme(out / "theme.npz")
    rc, stdout, err = ostinato("theme", "figures", out / "theme.npz", "--data", data_file,
                               "--n", 4, "--stream-windows", 2, "--json", "--threads", 1,
                               cwd=tmp_path)
    assert rc == 0, err
    figs = json.loads(stdout)["figures"]
    assert figs["2_bars"]["phrases"] == 4 and "z0_vs_base" in figs["stream"]
    rc, stdout, err = ostinato("theme", "figures", out / "theme.npz", "--data", data_file,
                               "--n", 4, "--stream-windows", 0, "--bars", 2, cwd=tmp_path)
    assert rc == 0 and "2 bars: 4 phrases" in stdout, err


@pytest.mark.parametrize("args, option", [(("--z-dim", "0"), "--z-dim: 0 is out of range"),
                                          (("--theme-dropout", "1"), "--theme-dropout: 1.0")])
def test_bad_options_print_one_line_and_fail(args, option, tmp_path):
    rc, stdout, err = ostinato("theme", "train", *args, "--out", tmp_path / "run", cwd=tmp_path)
    assert rc == 1 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"ostinato theme: {option}"), err
    assert "allowed" in lines[0]
    assert not (tmp_path / "run").exists()
