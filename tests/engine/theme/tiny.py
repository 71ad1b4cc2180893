"""The tiny theme model the theme tests share: its configs and helpers."""
from dataclasses import replace

import torch

from engine.training.model import ModelConfig, MusicLSTM
from engine.theme.model import ThemeConfig
from engine.theme.train import ThemeTrainConfig

TINY = ThemeConfig(z_dim=8, enc_embed=8, enc_hidden=16, max_bars=4)
TINY_TRAIN = ThemeTrainConfig(steps=4, batch_size=8, lr_enc=3e-3, lr_dec=1e-3, kl_anneal_steps=4,
                              free_bits=0.1, theme_dropout=0.25, eval_every=2, valid_phrases=8,
                              stream_windows=4, max_tokens=256)
POS = replace(TINY, positions_per_bar=4)  # a code per beat


def tiny_plain(ds, seed=0, layers=2):
    torch.manual_seed(seed)
    return MusicLSTM(ModelConfig(vocab_size=ds.vocab.size, n_controls=ds.spec.size, embed=16,
                                 hidden=32, layers=layers, dropout=0.1)).eval()


def inputs(ds, B=3, T=17, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, ds.vocab.size, (B, T), generator=g),
            torch.rand(B, T, ds.spec.size, generator=g), torch.randn(B, TINY.z_dim, generator=g))


def randomise_z_weights(dec, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for k in range(dec.cfg.layers):
            w = dec.gate_weights(k)
            w.copy_(0.3 * torch.randn(w.shape, generator=g))
            for lin in (dec.init_h[k], dec.init_c[k]):
                lin.weight.copy_(0.3 * torch.randn(lin.weight.shape, generator=g))
