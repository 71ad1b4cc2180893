"""Themes in numba against the torch VAE they were exported from: the encoder's (mu,
logvar), and the runtime composing from z (gate bias and initial state) step by step."""
import numpy as np
import pytest
import torch

from engine.controls import ControlSpec
from engine.errors import InvalidToken, ModelError
from engine.training.model import ModelConfig, MusicLSTM, save_model
from engine.theme.model import ThemeConfig, ThemeVAE, load_theme, save_theme
from engine.vocab import Vocab
from engine.sampler.generator import Runtime
from engine.sampler.lstm import lstm_step
from engine.sampler.theme import ThemeEncoder
from engine.sampler.weights import Weights


def random_theme_model(folder, seed=0, **theme):
    """A small theme model with every weight random and larger than the default init
    (z weights included, which training would start at zero), so errors would show:
    (path, torch encoder, torch decoder, vocab, spec)."""
    torch.manual_seed(seed)
    vocab, spec = Vocab(), ControlSpec()
    plain = MusicLSTM(ModelConfig(vocab_size=vocab.size, n_controls=spec.size, embed=24,
                                  hidden=48, layers=2, dropout=0.0))
    vae = ThemeVAE.from_plain(plain, ThemeConfig(z_dim=16, enc_embed=20, enc_hidden=40, **theme))
    with torch.no_grad():
        for p in vae.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    path = folder / "theme.npz"
    save_theme(path, vae, vocab, spec)
    enc, dec, vocab, spec, _ = load_theme(path)
    return path, enc, dec, vocab, spec


@pytest.fixture(scope="module")
def theme_file(tmp_path_factory):
    return random_theme_model(tmp_path_factory.mktemp("theme"))


def test_numba_encoder_equals_torch(theme_file):
    path, enc, _, vocab, _ = theme_file
    ne = ThemeEncoder(path)
    rng = np.random.default_rng(0)
    for n in (1, 7, 60, 300):
        tokens = rng.integers(0, vocab.size, n)
        mu, logvar = ne.encode(tokens)
        with torch.no_grad():
            tmu, tlv = enc(torch.as_tensor(tokens)[None], torch.tensor([n]))
        np.testing.assert_allclose(mu, tmu[0].numpy(), atol=1e-4)
        np.testing.assert_allclose(logvar, tlv[0].numpy(), atol=1e-4)


def test_runtime_composes_from_z_as_the_torch_decoder(theme_file):
    """set_theme's gate bias and initial state make lstm_step the z-conditioned decoder."""
    path, _, dec, vocab, spec = theme_file
    w, ne = Weights(path), ThemeEncoder(path)
    rng = np.random.default_rng(1)
    z = rng.normal(size=ne.z_dim)
    rt = Runtime(w, max_sessions=2)
    bias, state = ne.bias(z)
    rt.set_theme(1, bias, state)  # session 1 has the theme, session 0 none
    idx = np.array([0, 1], np.int64)
    T = 200
    tokens = rng.integers(0, vocab.size, T)
    ctls = np.stack([spec.vector(rng.integers(12), rng.integers(2), rng.uniform(0, 4),
                                 rng.uniform(50, 80), phase=t) for t in range(T)])
    with torch.no_grad():
        zt = torch.as_tensor(z, dtype=torch.float32)[None]
        want, _ = dec(torch.as_tensor(tokens)[None], torch.as_tensor(ctls)[None], zt)
        plain, _ = dec(torch.as_tensor(tokens)[None], torch.as_tensor(ctls)[None])
    worst = [0.0, 0.0]
    for t in range(T):
        rt.tokens[:] = tokens[t]
        rt.controls[:] = ctls[t]
        lstm_step(idx, 2, *rt.kernel_args())
        worst[1] = max(worst[1], float(np.abs(rt.logits[1] - want[0, t].numpy()).max()))
        worst[0] = max(worst[0], float(np.abs(rt.logits[0] - plain[0, t].numpy()).max()))
    assert worst[1] < 1e-4 and worst[0] < 1e-4, worst
    assert float((want - plain).abs().max()) > 0.1  # z really changes the music


def test_zero_z_is_no_theme_and_open_clears_it(theme_file):
    path = theme_file[0]
    ne = ThemeEncoder(path)
    bias, (h0, c0) = ne.bias(np.zeros(ne.z_dim))
    assert not bias.any() and not h0.any() and not c0.any()
    rt = Runtime(Weights(path), max_sessions=1)
    rt.set_theme(0, ne.bias(np.ones(ne.z_dim))[0])
    assert rt.zbias[0].any()
    rt.open(0, np.zeros(rt.controls.shape[1], np.float32))
    assert not rt.zbias[0].any()


def test_a_plain_model_is_refused_and_bad_tokens_are_named(theme_file, tmp_path):
    vocab, spec = Vocab(), ControlSpec()
    plain = tmp_path / "plain.npz"
    save_model(plain, MusicLSTM(ModelConfig(vocab_size=vocab.size, n_controls=spec.size,
                                            embed=8, hidden=8, layers=1)), vocab, spec)
    with pytest.raises(ModelError, match="not a theme model"):
        ThemeEncoder(plain)
    ne = ThemeEncoder(theme_file[0], max_tokens=10)
    for bad, why in (([], "1..10 tokens"), (list(range(11)), "1..10 tokens"),
                     ([0, vocab.size], f"0..{vocab.size - 1}"), ([-1], f"0..{vocab.size - 1}")):
        with pytest.raises(InvalidToken, match=why.replace(".", r"\.")):
            ne.encode(np.array(bad, np.int64))


def test_variation_moves_from_the_theme_to_free_composition():
    from engine.sampler.theme import latent
    mu = np.array([2.0, -1.0, 0.5])
    np.testing.assert_allclose(latent(mu, 0.0), mu)
    np.testing.assert_allclose(latent(mu, 1.0), 0.0)
    np.testing.assert_allclose(latent(mu, 0.25), 0.75 * mu)
    with pytest.raises(ValueError, match="0..1"):
        latent(mu, 1.5)


def test_slerp_keeps_to_the_great_circle():
    from engine.sampler.theme import slerp
    a, b = np.array([3.0, 0.0]), np.array([0.0, 1.0])
    np.testing.assert_allclose(slerp(a, b, 0.0), a, atol=1e-12)
    np.testing.assert_allclose(slerp(a, b, 1.0), b, atol=1e-12)
    mid = slerp(a, b, 0.5)
    np.testing.assert_allclose(np.arctan2(mid[1], mid[0]), np.pi / 4)  # halfway in angle
    np.testing.assert_allclose(np.linalg.norm(mid), 2.0)               # and in norm
    np.testing.assert_allclose(slerp(a, np.zeros(2), 0.25), 0.75 * a)  # to free composition
    np.testing.assert_allclose(slerp(a, 2 * a, 0.5), 1.5 * a)          # same direction


def _events(rt, s=0):
    """(tick, token) of the events session s has generated, oldest first."""
    h, t = 1, int(rt.tail[s])
    return [(int(rt.ev_tick[s, i % rt.ring]), int(rt.ev_tok[s, i % rt.ring])) for i in range(h, t)]


def test_a_theme_due_at_a_tick_starts_its_phrase_there(theme_file):
    """theme_at: the music before the tick is untouched, what sounds there is released
    there, the phrase then opens with a note, and a rewind to before it makes it due again."""
    path, _, _, vocab, spec = theme_file
    w, ne = Weights(path), ThemeEncoder(path)
    bias, state = ne.bias(np.random.default_rng(2).normal(size=ne.z_dim))
    ctl = spec.vector(0, 0, 2.0, 64)
    T = 4 * vocab.ticks_per_beat  # a bar in
    kinds, values = vocab.tables()
    runs = []
    for themed in (False, True):
        rt = Runtime(w, max_sessions=1, ring=512)
        rt.open(0, ctl, seed=3)
        rt.next_ctl[0], rt.switch_tick[0] = ctl, T  # as the server's change: shifts land on T
        if themed:
            rt.theme_at(0, T, bias, state)
        rt.advance(np.array([3 * T]))
        runs.append(_events(rt))
        assert not themed or (rt.theme_tick[0] == -1 and np.array_equal(rt.zbias[0], bias))
    plain, themed = runs
    reach = next(i for i, e in enumerate(plain) if e[0] >= T)  # the time shift onto T
    assert plain[reach][0] == T
    before = plain[:reach + 1]
    assert themed[:len(before)] == before
    assert themed != plain
    sounding = set()
    for tick, tok in before[:-1]:
        if kinds[tok] == 1:
            sounding.add(values[tok])
        elif kinds[tok] == 2:
            sounding.discard(values[tok])
    after = themed[len(before):]
    # the events at T: the old notes' offs (in any order), then the phrase's first note-on
    offs = {values[tok] for tick, tok in after[:len(sounding)] if kinds[tok] == 2 and tick == T}
    rest = after[len(sounding):]
    assert offs == sounding
    first = next(e for e in rest if kinds[e[1]] != 3)
    assert kinds[first[1]] == 1
    # a rewind to before T makes the theme due again, from the bias before it
    rt.rewind(0, T // 2)
    assert rt.theme_tick[0] == T and not rt.zbias[0].any()
    rt.advance(np.array([2 * T]))
    assert rt.theme_tick[0] == -1 and np.array_equal(rt.zbias[0], bias)


# ------------------------------------------------------------------ the conductor
@pytest.fixture(scope="module")
def conductor_file(tmp_path_factory):
    """A theme model with a code per beat of up to 2 bars, every weight random."""
    return random_theme_model(tmp_path_factory.mktemp("conductor"), seed=1, max_bars=2,
                              positions_per_bar=4)


def test_a_conductor_bias_has_a_row_per_position_of_the_theme(conductor_file):
    path = conductor_file[0]
    ne = ThemeEncoder(path)
    z = np.random.default_rng(0).normal(size=ne.z_dim)
    one, _ = ne.bias(z, bars=1)
    two, _ = ne.bias(z, bars=2)
    assert one.shape == (4, 2, 4 * 48) and two.shape == (8, 2, 4 * 48)
    np.testing.assert_array_equal(one, two[:4])  # the same codes, fewer of them
    assert ne.bias(z, bars=8)[0].shape == two.shape  # a longer theme goes round the 2 bars
    assert not np.allclose(two[0], two[1])
    zero, _ = ne.bias(np.zeros(ne.z_dim), bars=2)
    assert zero.shape == (2, 4 * 48) and not zero.any()  # free composition: one zero bias
    rt = Runtime(Weights(path), max_sessions=1)
    assert rt.positions == 8 and rt.pos_ticks == 12
    with pytest.raises(ValueError, match="0..8"):
        rt.set_theme(0, np.zeros((9, 2, 4 * 48), np.float32))


def test_runtime_with_a_conductor_composes_as_the_torch_decoder(conductor_file):
    """Fed the same tokens, the runtime's positions are the training phrases' (from the
    time shifts, round the theme's length) and its logits the torch decoder's."""
    from engine.theme.data import theme_positions

    path, _, dec, vocab, spec = conductor_file
    w, ne = Weights(path), ThemeEncoder(path)
    rng = np.random.default_rng(4)
    z = rng.normal(size=ne.z_dim)
    bias, state = ne.bias(z, bars=2)
    rt = Runtime(w, max_sessions=2, ring=512)
    ctl = spec.vector(2, 1, 2.0, 64)
    for s in (0, 1):
        rt.open(s, ctl, seed=s)
    rt.set_theme(1, bias, state)  # session 1 has the theme from its START, session 0 none
    kinds, values = vocab.tables()
    shifts = np.flatnonzero(kinds == 3)
    # mostly notes, a time shift of 1..12 ticks every third token: 150 tokens pass the
    # 96-tick phrase, so the positions go round
    T = 150
    fed = np.where(np.arange(T) % 3 == 2, rng.choice(shifts[:12], T),
                   rng.integers(vocab.offsets[1], vocab.offsets[3], T))
    rt.queue(0, fed)
    rt.queue(1, fed)
    logits, ctls = [], []
    for t in range(T):
        assert rt.advance(np.array([10 ** 6, 10 ** 6]), max_steps=1) == 1
        logits.append(rt.logits.copy())
        ctls.append(rt.controls.copy())
    logits, ctls = np.array(logits), np.array(ctls)
    inputs = torch.as_tensor(np.r_[vocab.offsets[0], fed[:-1]])[None]
    pos = theme_positions(fed, 2, kinds, values, 12, 4)
    assert pos.max() == 7 and (np.diff(pos) < 0).any()  # every beat, and round again
    with torch.no_grad():
        zt = torch.as_tensor(z, dtype=torch.float32)[None]
        want = dec(inputs, torch.as_tensor(ctls[:, 1])[None], zt,
                   pos=torch.as_tensor(pos)[None])[0][0].numpy()
        plain = dec(inputs, torch.as_tensor(ctls[:, 0])[None])[0][0].numpy()
    assert np.abs(logits[:, 1] - want).max() < 1e-4
    assert np.abs(logits[:, 0] - plain).max() < 1e-4
    # and the positions matter: one bias for the whole theme would compose otherwise
    with torch.no_grad():
        flat = dec(inputs, torch.as_tensor(ctls[:, 1])[None], zt,
                   pos=torch.zeros_like(torch.as_tensor(pos))[None])[0][0].numpy()
    assert np.abs(flat - want).max() > 0.05


def test_a_conductor_theme_due_at_a_tick_counts_from_its_phrase_and_rewinds(conductor_file):
    path, _, _, vocab, spec = conductor_file
    w, ne = Weights(path), ThemeEncoder(path)
    bias, state = ne.bias(np.random.default_rng(5).normal(size=ne.z_dim), bars=2)
    rt = Runtime(w, max_sessions=1, ring=512)
    ctl = spec.vector(0, 0, 2.0, 64)
    rt.open(0, ctl, seed=3)
    T = 4 * vocab.ticks_per_beat
    rt.next_ctl[0], rt.switch_tick[0] = ctl, T
    rt.theme_at(0, T, bias, state)
    rt.advance(np.array([T + 30]))
    start = int(rt.pos0[0])
    assert start >= T and rt.pos_n[0, rt.pos_slot[0]] == 8  # from the phrase's START
    p = (int(rt.gen_tick[0]) - start) // 12 % 8
    assert rt.pos_cur[0] == p and np.array_equal(rt.zbias[0], bias[p])
    rt.rewind(0, T // 2)  # before the theme: due again, from the no-theme bias before it
    assert rt.theme_tick[0] == T and not rt.zbias[0].any()
    assert rt.pos_n[0, rt.pos_slot[0]] == 0
    rt.advance(np.array([T + 30]))
    p = (int(rt.gen_tick[0]) - int(rt.pos0[0])) // 12 % 8
    assert rt.theme_tick[0] == -1 and np.array_equal(rt.zbias[0], bias[p])
