"""Themes and variations (engine/theme/vae.py): the z-conditioned decoder is the plain generator
at z = 0, the gate-bias identity the server relies on, phrases at bar lines, the ELBO's
parts, a run that exports, resumes and runs from the command line."""
import json
import os
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.training.data import Dataset
from engine.errors import InvalidMessage, ModelError
from engine.training.model import ModelConfig, MusicLSTM, load_model, save_model
from engine.modelfile import read_model_file
from engine.notes import make_notes
from engine.theme.vae import (Phrases, ThemeConfig, ThemeDecoder, ThemeTrainConfig, ThemeVAE,
                          TwoRateAdam, active_units, beta_at, free_bits_kl, kl_per_dim,
                          load_theme, mutual_information, phrase_ce, save_theme, theme_figures,
                          theme_loss, train_theme)
from engine.vocab import NOTE_OFF, NOTE_ON, START, TIME_SHIFT
from engine.sampler.generator import Weights

ROOT = Path(__file__).resolve().parents[3]
TINY = ThemeConfig(z_dim=8, enc_embed=8, enc_hidden=16, max_bars=4)
TINY_TRAIN = ThemeTrainConfig(steps=4, batch_size=8, lr_enc=3e-3, lr_dec=1e-3, kl_anneal_steps=4,
                              free_bits=0.1, theme_dropout=0.25, eval_every=2, valid_phrases=8,
                              stream_windows=4, max_tokens=256)


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def tiny_plain(ds, seed=0, layers=2):
    torch.manual_seed(seed)
    return MusicLSTM(ModelConfig(vocab_size=ds.vocab.size, n_controls=ds.spec.size, embed=16,
                                 hidden=32, layers=layers, dropout=0.1)).eval()


@pytest.fixture(scope="module")
def base_file(data, tmp_path_factory):
    path = tmp_path_factory.mktemp("base") / "plain.npz"
    save_model(path, tiny_plain(data), data.vocab, data.spec,
               info=dict(mean_register=70.0, key_relative=True))
    return path


@pytest.fixture(scope="module")
def run(data_file, base_file, tmp_path_factory):
    """A 4-step run of the tiny config: its folder."""
    out = tmp_path_factory.mktemp("run")
    train_theme(data_file, base_file, out, TINY, TINY_TRAIN, progress=False)
    return out


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


# ------------------------------------------------------------------ the conductor
POS = replace(TINY, positions_per_bar=4)  # a code per beat


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


def test_positions_count_bars_or_beats_from_the_phrase_start_round_its_length():
    ds, tokens, _ = hand_dataset()
    kinds, values = ds.vocab.tables()
    for per_bar, want in ((1, [0, 0, 1, 0]), (4, [0, 1, 4, 0])):
        p = Phrases(ds, "train", replace(ThemeConfig(max_bars=3), positions_per_bar=per_bar))
        t, _, _ = p.phrase(0, 2)  # bars 1-2: notes at 0, 12, 24, 48, 60; the off at 96
        pos = p.positions(t, 2)
        times = np.cumsum(np.where(kinds[t] == TIME_SHIFT, values[t], 0))
        times = times - np.where(kinds[t] == TIME_SHIFT, values[t], 0)
        on = kinds[t] == NOTE_ON
        # the notes at ticks 0 and 48, and the note-off on the closing line (96: round)
        picked = [pos[on][times[on] == 0][0], pos[on][times[on] == 12][0],
                  pos[on][times[on] == 48][0], pos[-1]]
        assert [int(v) for v in picked] == want
        assert pos.max() < 2 * per_bar
        b = p.batch([0], [2])
        assert b.pos[0, :len(t)].tolist() == pos.tolist()
    with pytest.raises(Exception, match="divide"):
        Phrases(ds, "train", replace(ThemeConfig(), positions_per_bar=5))


def test_a_conductor_model_trains_exports_and_loads_for_the_server(data_file, base_file, data,
                                                                   tmp_path):
    from engine.sampler.theme import ThemeEncoder
    train_theme(data_file, base_file, tmp_path, POS, TINY_TRAIN, progress=False)
    enc, dec, *_, meta = load_theme(tmp_path / "theme.npz")
    assert meta["theme"]["positions_per_bar"] == 4 and dec.positions == 16
    assert dec.code_weights(1).abs().max() > 0  # training moved W_u
    raw = torch.load(tmp_path / "last.pt", weights_only=True)["model"]
    torch.testing.assert_close(dec.conductor, raw["decoder.conductor"])
    ne = ThemeEncoder(tmp_path / "theme.npz")  # the server's encoder reads it all
    assert ne.bias(np.ones(TINY.z_dim), bars=3)[0].shape == (12, 2, 4 * 32)


# ------------------------------------------------------------------ phrases
def hand_dataset():
    """One piece in C, 4/4 at 12 ticks a beat (48 a bar): bar 1 from 0, bar 2 from 48,
    bar 3 opening with a rest, bar 4 a chord, bar 5 a last short note."""
    from engine.controls import ControlSpec
    from engine.vocab import Vocab
    vocab, spec = Vocab(), ControlSpec()
    notes = make_notes([(0, 12, 60), (12, 24, 62), (24, 48, 64), (48, 60, 65), (60, 96, 67),
                        (100, 120, 69), (144, 192, 60), (144, 192, 64), (192, 200, 72)])
    tokens = vocab.encode(notes)
    controls = spec.compute(tokens, vocab)
    ds = Dataset(tokens.astype(np.int16), controls.astype(np.float16),
                 np.array([0, len(tokens)]), np.array(["hand"]), np.array(["test"]),
                 np.array([0], np.int8), vocab, spec, summary={"key_relative": True})
    return ds, tokens, controls


def test_phrases_start_at_bar_lines_and_end_at_the_next():
    ds, tokens, controls = hand_dataset()
    p = Phrases(ds, "train", ThemeConfig(max_bars=3))
    # bar lines 0, 48, 144 and 192 open with a note; 96 opens with a rest
    on = ds.vocab.offsets[NOTE_ON]
    assert [int(tokens[i]) - on for i in p.start] == [60, 65, 60, 72]
    # the piece ends at 200: no bar from 192, and from 144 one bar but not two
    assert p.end[3, 0] == -1 and p.end[2, 0] > 0 and p.end[2, 1] == -1 and p.end[1, 2] > 0
    rel = lambda t: ds.vocab.decode(t)[["start", "end", "pitch"]].tolist()
    t1, c1, i1 = p.phrase(1, 1)  # bar 2: the note-off on the next bar line is in it
    assert rel(t1) == [(0, 12, 65), (12, 48, 67)]
    assert ds.vocab.event(int(t1[-1]))[0] == NOTE_OFF  # the note-off at 96
    t4, _, _ = p.phrase(2, 1)  # bar 4: the chord, both offs at 192, not the note-on there
    assert rel(t4) == [(0, 48, 60), (0, 48, 64)]
    t2, _, _ = p.phrase(0, 2)
    assert rel(t2) == [(0, 12, 60), (12, 24, 62), (24, 48, 64), (48, 60, 65), (60, 96, 67)]
    # the decoder reads START, then the phrase; its controls are the piece's before each token
    b = p.batch([1, 0], [1, 2])
    n = len(t1)
    assert b.inputs[0, 0] == ds.vocab.token(START) and b.inputs[0, 1:n].tolist() == t1[:-1].tolist()
    np.testing.assert_array_equal(b.controls[0, :n].numpy(),
                                  controls[i1 - 1:i1 - 1 + n].astype(np.float16).astype(np.float32))
    assert b.mask.sum(1).tolist() == b.lengths.tolist() == [n, len(t2)]
    assert b.tokens[0, n:].eq(0).all() and not b.mask[0, n:].any()


def test_dataset_phrases_span_whole_bars_and_draw_2_and_4_most(data):
    p = Phrases(data, "train", TINY, max_tokens=256)
    kinds, values = data.vocab.tables()
    bar = 4 * data.vocab.ticks_per_beat
    rng = np.random.default_rng(3)
    rows, ks = p.pick(rng, 400)
    counts = np.bincount(ks, minlength=5)
    assert counts[2] > counts[1] and counts[4] > counts[3]
    for r, k in zip(rows[:50], ks[:50]):
        tok, ctl = data.pieces("train")[p.piece[r]]
        t, c, i = p.phrase(r, k)
        shift = np.where(kinds[tok] == TIME_SHIFT, values[tok], 0)
        before = np.cumsum(shift) - shift
        assert kinds[t[0]] == NOTE_ON and before[i] % bar == 0
        j, e = i + len(t), before[i] + k * bar  # the phrase is tok[i:j], its end line e
        assert before[-1] + shift[-1] >= e  # the piece lasts that long
        inside = before[i:j]
        assert ((inside < e) | ((inside == e) & (kinds[t] == NOTE_OFF))).all()
        assert j == len(tok) or before[j] > e or (before[j] == e and kinds[tok[j]] != NOTE_OFF)
        np.testing.assert_array_equal(c, ctl[i - 1:j - 1].astype(np.float32))
    b = p.sample(rng, 8, bars=2)
    assert b.bars.tolist() == [2] * 8 and b.lengths.max() == b.tokens.shape[1]


# ------------------------------------------------------------------ the objective
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


# ------------------------------------------------------------------ figures and runs
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
