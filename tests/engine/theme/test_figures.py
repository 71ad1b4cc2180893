"""Held-out figures of a theme model (engine/theme/figures.py)."""
import numpy as np
import pytest
import torch

from engine.theme.data import Phrases
from engine.theme.figures import theme_figures
from engine.theme.model import ThemeVAE

from .tiny import TINY, tiny_plain


def test_figures_of_a_fresh_model_match_the_base_it_came_from(data):
    plain = tiny_plain(data)
    with torch.no_grad():  # an untrained model that always guesses the commonest token
        common = np.bincount(data.stream("train")[0]).argmax()
        plain.head.bias[common] += 10
    vae = ThemeVAE.from_plain(plain, TINY)
    figs = theme_figures(vae, data, "valid", (2, 4), 12, seed=0, base=plain, stream_windows=4)
    assert figs == theme_figures(vae, data, "valid", (2, 4), 12, seed=0, base=plain,
                                 stream_windows=4)  # the same phrases for the same seed
    for k in ("2_bars", "4_bars"):
        f = figs[k]
        assert f["phrases"] == 12 and f["tokens"] > 12
        # the z weights are 0: z = mu, z = 0 and the base model all give the same NLL
        assert f["nll_mu"] == pytest.approx(f["nll_base"], rel=1e-5)
        assert f["nll_z0"] == pytest.approx(f["nll_base"], rel=1e-5)
        assert f["nll_elbo"] == pytest.approx(f["nll_base"] + f["kl"] * 12 / f["tokens"], rel=1e-4)
        assert f["accuracy_mu"] == f["accuracy_z0"]
        assert 0 <= f["active_units"] <= TINY.z_dim and f["mi"] <= np.log(12) + 1e-6
    # the accuracy is the base model's on those phrases (the ones seed 0 picks), by hand
    pool = Phrases(data, "valid", TINY)
    rows, ks = pool.pick(np.random.default_rng([0, 2]), 12, 2, replace=False)
    b = pool.batch(rows, ks)
    with torch.no_grad():
        hits = (plain(b.inputs, b.controls)[0].argmax(-1) == b.tokens) & b.mask
    assert figs["2_bars"]["accuracy_z0"] == pytest.approx(hits.sum().item() / b.mask.sum().item())
    assert 0 < figs["2_bars"]["accuracy_z0"] < 1
    assert figs["stream"]["z0_vs_base"] == pytest.approx(0.0, abs=1e-6)
    assert vae.training  # left as it was
