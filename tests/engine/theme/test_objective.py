"""The theme model's objective (engine/theme/objective.py): KL, free bits, the beta
schedule, theme dropout, and what shows posterior collapse."""
import numpy as np
import pytest
import torch

from engine.theme.data import Phrases
from engine.theme.model import ThemeVAE
from engine.theme.objective import (active_units, beta_at, free_bits_kl, kl_per_dim,
                                    mutual_information, phrase_ce, theme_loss)

from .tiny import TINY, randomise_z_weights, tiny_plain


def test_kl_free_bits_and_the_beta_schedule():
    mu, logvar = torch.randn(5, 3), torch.randn(5, 3)
    want = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu, (0.5 * logvar).exp()), torch.distributions.Normal(0, 1))
    torch.testing.assert_close(kl_per_dim(mu, logvar), want)
    kl = torch.tensor([0.01, 0.3, 0.0], requires_grad=True)
    fb = free_bits_kl(kl, 0.1)
    assert fb.item() == pytest.approx(0.1 + 0.3 + 0.1)  # below lambda counts as lambda
    fb.backward()
    assert kl.grad.tolist() == [0.0, 1.0, 0.0]  # and is not pushed further down
    assert free_bits_kl(kl.detach(), 0.0).item() == pytest.approx(0.31)
    assert [beta_at(s, 100) for s in (0, 25, 50, 100, 500)] == [0.0, 0.25, 0.5, 1.0, 1.0]
    assert beta_at(0, 0) == 1.0


def test_active_units_and_mutual_information_show_collapse():
    g = torch.Generator().manual_seed(0)
    B, Z = 256, 6
    mu = torch.zeros(B, Z)
    mu[:, :2] = 3 * torch.randn(B, 2, generator=g)
    mu[:, 2] = 0.05 * torch.randn(B, generator=g)  # varies, but below 0.01 in variance
    assert active_units(mu) == 2
    # collapsed: every posterior the same -> MI about 0; far apart and sharp -> about log B
    same = mutual_information(torch.zeros(B, Z), torch.zeros(B, Z), g)
    apart = mutual_information(20 * torch.randn(B, Z, generator=g), torch.full((B, Z), -6.0), g)
    # (both within Monte-Carlo noise of one z per phrase: sd sqrt(Z / 2B) = 0.11)
    assert abs(same) < 0.35 and apart == pytest.approx(np.log(B), abs=0.35)
    half = mutual_information(mu, torch.zeros(B, Z), g)
    assert 0.5 < half < np.log(B) - 0.5


def test_dropped_rows_cost_cross_entropy_only_and_decode_at_z0(data):
    vae = ThemeVAE.from_plain(tiny_plain(data), TINY).eval()
    randomise_z_weights(vae.decoder)
    b = Phrases(data, "train", TINY).sample(np.random.default_rng(0), 6)
    all_dropped = torch.ones(6, dtype=torch.bool)
    loss, parts = theme_loss(vae, b, all_dropped, beta=1.0, free_bits=0.5)
    with torch.no_grad():
        plain_ce = phrase_ce(vae.decoder(b.inputs, b.controls)[0], b).mean()
    assert parts["kl_fb"] == 0 and loss.item() == pytest.approx(plain_ce.item(), rel=1e-6)
    # with every row a theme: free bits floor the KL term at z_dim * lambda
    loss, parts = theme_loss(vae, b, ~all_dropped, beta=1.0, free_bits=5.0)
    assert parts["kl_fb"] == pytest.approx(TINY.z_dim * 5.0)
    assert loss.item() == pytest.approx(parts["ce"] + parts["kl_fb"], rel=1e-5)
