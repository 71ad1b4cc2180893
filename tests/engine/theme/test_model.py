"""The theme model (engine/theme/model.py): the z-conditioned decoder is the plain generator
at z = 0, the gate-bias identity the server relies on, the conductor's codes, and the
model file every loader reads."""
import json
from dataclasses import asdict, replace

import numpy as np
import pytest
import torch

from engine.errors import InvalidMessage, ModelError
from engine.modelfile import read_model_file
from engine.sampler.weights import Weights
from engine.theme.data import Phrases
from engine.theme.model import ThemeDecoder, ThemeVAE, load_theme, save_theme
from engine.training.model import MusicLSTM, load_model

from .tiny import POS, TINY, TINY_TRAIN, inputs, randomise_z_weights, tiny_plain


# ------------------------------------------------------------------ the decoder
def test_a_decoder_made_from_a_plain_model_is_that_model_at_any_z(data):
    plain = tiny_plain(data)
    dec = ThemeDecoder.from_plain(plain, TINY.z_dim).eval()
    x, c, z = inputs(data)
    with torch.no_grad():
        want, (h, cc) = plain(x, c)
        for zz in (None, torch.zeros_like(z), z):  # every z weight is 0 at the start
            got, (gh, gc) = dec(x, c, zz)
            torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
            torch.testing.assert_close(gh, h, atol=1e-5, rtol=0)
            torch.testing.assert_close(gc, cc, atol=1e-5, rtol=0)
        # the state carries across chunks as MusicLSTM's does
        a, st = dec(x[:, :9], c[:, :9], z)
        b, _ = dec(x[:, 9:], c[:, 9:], z, st)
        torch.testing.assert_close(torch.cat([a, b], 1), want, atol=1e-5, rtol=0)


def _sig(v):
    return 1 / (1 + np.exp(-v))


def hand_logits(arrays, layers, tokens, controls, z):
    """The generator of a theme file in numpy (float64), one sequence, with each layer's
    gates = W_ih x + W_hh h + b + (theme.gates W_z) z and the state from z."""
    x = np.concatenate([arrays["embed.weight"][tokens], controls], -1).astype(np.float64)
    for k in range(layers):
        w_ih, w_hh = arrays[f"lstm.weight_ih_l{k}"], arrays[f"lstm.weight_hh_l{k}"]
        b = arrays[f"lstm.bias_ih_l{k}"] + arrays[f"lstm.bias_hh_l{k}"]
        gate_bias = arrays[f"theme.gates_l{k}"] @ z  # once per theme, not per step
        h, c = np.tanh(arrays[f"theme.h0_l{k}"] @ z), arrays[f"theme.c0_l{k}"] @ z
        ys = []
        for t in range(len(x)):
            i, f, g, o = np.split(w_ih @ x[t] + w_hh @ h + b + gate_bias, 4)
            c = _sig(f) * c + _sig(i) * np.tanh(g)
            h = _sig(o) * np.tanh(c)
            ys.append(h)
        x = np.array(ys)
    return x @ arrays["head.weight"].T + arrays["head.bias"]


def test_each_layer_is_the_plain_layer_plus_a_gate_bias_from_z(data, tmp_path):
    """[x ; z] into one nn.LSTM = the plain layer's gates + W_z z, computed by hand from the
    arrays of the exported file (what the server will read)."""
    vae = ThemeVAE.from_plain(tiny_plain(data), TINY)
    randomise_z_weights(vae.decoder)
    save_theme(tmp_path / "t.npz", vae, data.vocab, data.spec)
    _, arrays = read_model_file(tmp_path / "t.npz", theme=True)
    x, c, z = inputs(data)
    with torch.no_grad():
        got = vae.decoder.eval()(x, c, z)[0]
    for r in range(len(x)):
        want = hand_logits(arrays, 2, x[r].numpy(), c[r].numpy(), z[r].numpy().astype(np.float64))
        np.testing.assert_allclose(got[r].numpy(), want, atol=1e-5)
    assert not np.allclose(got[0].numpy(), hand_logits(arrays, 2, x[0].numpy(), c[0].numpy(),
                                                       np.zeros(TINY.z_dim)), atol=1e-3)


# ------------------------------------------------------------------ the conductor
def test_a_decoder_with_positions_is_the_plain_model_at_z0_and_needs_pos_with_z(data):
    plain = tiny_plain(data)
    dec = ThemeDecoder.from_plain(plain, POS.z_dim, POS.positions).eval()
    assert dec.conductor.shape == (16, 8, 8) and dec.code_weights(0).shape == (128, 8)
    x, c, z = inputs(data)
    pos = torch.randint(0, 16, x.shape, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = plain(x, c)[0]
        torch.testing.assert_close(dec(x, c)[0], want, atol=1e-5, rtol=0)
        torch.testing.assert_close(dec(x, c, torch.zeros_like(z), pos=pos)[0], want, atol=1e-5,
                                   rtol=0)
        with pytest.raises(ValueError, match="pos"):
            dec(x, c, z)


def test_each_position_has_its_own_code_and_it_acts_from_that_position_on(data):
    """Changing A_p changes the logits from the first token at position p on, and none
    before it: each bar (beat) of a theme gets a bias of its own."""
    dec = ThemeDecoder.from_plain(tiny_plain(data), POS.z_dim, POS.positions).eval()
    with torch.no_grad():
        dec.code_weights(0).normal_(0, 1.0)
    x, c, z = inputs(data, B=1, T=12)
    pos = torch.tensor([[0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 0, 0]])
    with torch.no_grad():
        a = dec(x, c, z, pos=pos)[0]
        dec.conductor[2].add_(1.0)
        b = dec(x, c, z, pos=pos)[0]
    diff = (a - b).abs().amax(-1)[0]
    assert diff[:5].max() < 1e-6 and diff[5] > 1e-4


# ------------------------------------------------------------------ the file
def test_the_theme_file_loads_as_a_plain_generator_and_as_a_theme(run, data, base_file):
    model, vocab, spec, meta = load_model(run / "theme.npz")
    assert isinstance(model, MusicLSTM) and vocab == data.vocab and spec == data.spec
    assert meta["theme"] == asdict(TINY)
    assert not any(k.startswith("theme.") for k in read_model_file(run / "theme.npz")[1])
    enc, dec, vocab, spec, meta = load_theme(run / "theme.npz")
    assert meta["info"]["step"] == 4 and meta["info"]["base"] == str(base_file)
    vae = ThemeVAE(enc, dec, TINY)
    b = Phrases(data, "valid", TINY).sample(np.random.default_rng(0), 4)
    with torch.no_grad():
        mu, logvar = enc(b.tokens, b.lengths)
    assert mu.shape == logvar.shape == (4, TINY.z_dim)
    # the torch model round-trips exactly through the file
    save_theme(run / "again.npz", vae, vocab, spec, meta["info"])
    a1 = read_model_file(run / "theme.npz", theme=True)[1]
    a2 = read_model_file(run / "again.npz", theme=True)[1]
    assert a1.keys() == a2.keys() and all(np.array_equal(a1[k], a2[k]) for k in a1)
    with pytest.raises(ModelError, match="not a theme model"):
        load_theme(base_file)


def _resave(src, dst, meta_change=None, arrays_change=None):
    meta, arrays = read_model_file(src, theme=True)
    meta = dict(meta, **(meta_change or {}))
    (arrays_change or (lambda a: None))(arrays)
    with open(dst, "wb") as f:
        np.savez(f, meta=np.array(json.dumps(meta)), **arrays)
    return dst


def test_the_model_file_check_rejects_a_theme_file_that_does_not_fit(run, base_file, tmp_path):
    src = run / "theme.npz"
    bad = {
        "wrong-shape": (dict(arrays_change=lambda a: a.update(
            {"theme.gates_l1": np.zeros((128, 9), np.float32)})),
            r"weight 'theme.gates_l1' is float32 \(128, 9\); the config needs float \(128, 8\)"),
        "missing": (dict(arrays_change=lambda a: a.pop("theme.h0_l1")), "missing 'theme.h0_l1'"),
        "no-z-dim": (dict(meta_change={"theme": {"enc_embed": 8, "enc_hidden": 16}}),
                     "theme config lacks a positive integer z_dim"),
        "encoder-size": (dict(meta_change={"theme": {**asdict(TINY), "enc_hidden": 17}}),
                         r"weight 'theme.encoder.out.weight' is float32 \(16, 32\); the config "
                         r"needs float \(16, 34\)"),
    }
    for name, (change, pattern) in bad.items():
        path = _resave(src, tmp_path / f"{name}.npz", **change)
        for read in (load_model, load_theme, Weights):
            with pytest.raises(ModelError, match=pattern) as err:
                read(path)
            assert str(err.value).startswith(f"{path}: ")
    # theme arrays in a file whose meta has no theme are unexpected, as any extra weight
    plain_meta = {k: v for k, v in read_model_file(src)[0].items() if k != "theme"}
    path = tmp_path / "stray.npz"
    _, arrays = read_model_file(src, theme=True)
    with open(path, "wb") as f:
        np.savez(f, meta=np.array(json.dumps(plain_meta)), **arrays)
    with pytest.raises(ModelError, match="unexpected 'theme.c0_l0'"):
        load_model(path)
    load_model(base_file)  # and a plain file is read as before


def test_bad_configs_name_the_option_and_its_range():
    for cfg, option, allowed in ((replace(TINY, z_dim=0), "--z-dim", "1..1024"),
                                 (replace(TINY, min_bars=5), "--min-bars", "1..4"),
                                 (replace(TINY_TRAIN, theme_dropout=1.0), "--theme-dropout",
                                  "0.0 <= theme_dropout < 1.0"),
                                 (replace(TINY_TRAIN, free_bits=-0.1), "--free-bits", "0.0..10.0")):
        with pytest.raises(InvalidMessage) as err:
            cfg.check()
        assert err.value.field == option and str(err.value).startswith(f"{option}: ")
        assert err.value.allowed == allowed
