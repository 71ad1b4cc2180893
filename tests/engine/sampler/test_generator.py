"""The numba runtime against the torch model it was exported from."""
import numpy as np
import pytest
import torch
from numba import njit

from engine.controls import ControlSpec
from engine.training.model import ModelConfig, MusicLSTM, save_model
from engine.vocab import NOTE_OFF, NOTE_ON, START, TIME_SHIFT, Vocab
from engine.sampler.generator import Runtime
from engine.sampler.lstm import lstm_step, sigmoid32, tanh32
from engine.sampler.weights import Weights


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    torch.manual_seed(0)
    vocab, spec = Vocab(), ControlSpec()
    model = MusicLSTM(ModelConfig(vocab_size=vocab.size, n_controls=spec.size, embed=32,
                                  hidden=64, layers=2, dropout=0.0))
    with torch.no_grad():  # larger weights than the default init, so errors would show
        for p in model.parameters():
            p.mul_(3.0)
    path = tmp_path_factory.mktemp("m") / "model.npz"
    save_model(path, model, vocab, spec)
    return path, model.eval(), vocab, spec


def test_numba_step_equals_torch_over_1000_steps(model_file):
    path, model, vocab, spec = model_file
    w = Weights(path)
    rt = Runtime(w, max_sessions=1)
    rng = np.random.default_rng(1)
    idx = np.zeros(1, np.int64)
    state = None
    worst = 0.0
    tokens = rng.integers(0, vocab.size, 1000)
    for t in range(1000):
        ctl = spec.vector(rng.integers(12), rng.integers(2), rng.uniform(0, 5),
                          rng.uniform(40, 90), phase=t)
        rt.tokens[0] = tokens[t]
        rt.controls[0] = ctl
        lstm_step(idx, 1, *rt.kernel_args())
        with torch.no_grad():
            logits, state = model(torch.tensor([[tokens[t]]]), torch.from_numpy(ctl)[None, None],
                                  state)
        worst = max(worst, float(np.abs(logits[0, 0].numpy() - rt.logits[0]).max()))
    assert worst < 1e-4, worst


def test_batched_sessions_step_independently(model_file):
    """Sessions share weight loads in blocks of four; each still gets its own result."""
    path, model, vocab, spec = model_file
    w = Weights(path)
    rt = Runtime(w, max_sessions=6)
    rng = np.random.default_rng(2)
    toks = rng.integers(0, vocab.size, (6, 50))
    ctls = [spec.vector(k, k % 2, 1.0 + k, 60 + k) for k in range(6)]
    idx = np.array([5, 0, 3, 1, 4, 2], np.int64)  # a block of four, then two alone
    for t in range(50):
        rt.tokens[:] = toks[:, t]
        rt.controls[:] = ctls
        lstm_step(idx, 6, *rt.kernel_args())
    batched = rt.logits.copy()
    for k in range(6):
        solo = Runtime(w, max_sessions=1)
        for t in range(50):
            solo.tokens[0] = toks[k, t]
            solo.controls[0] = ctls[k]
            lstm_step(np.zeros(1, np.int64), 1, *solo.kernel_args())
        np.testing.assert_allclose(solo.logits[0], batched[k], atol=1e-5)


def test_gate_functions_match_numpy():
    x = np.linspace(-30, 30, 600_001).astype(np.float32)
    out_t, out_s = np.empty_like(x), np.empty_like(x)
    _apply(x, out_t, out_s)
    exact = x.astype(np.float64)
    assert np.abs(out_t - np.tanh(exact)).max() < 5e-7
    assert np.abs(out_s - 1 / (1 + np.exp(-exact))).max() < 5e-7


@njit
def _apply(x, out_t, out_s):
    for i in range(x.shape[0]):
        out_t[i] = tanh32(x[i])
        out_s[i] = sigmoid32(x[i])


def _events(rt, s):
    out = []
    for i in range(rt.head[s], rt.tail[s]):
        out.append((int(rt.ev_tick[s, i % rt.ring]), int(rt.ev_tok[s, i % rt.ring])))
    return out


def test_generation_is_balanced_reproducible_and_reaches_target(model_file):
    path, _, vocab, spec = model_file
    w = Weights(path)
    runs = []
    for _ in range(2):
        rt = Runtime(w, max_sessions=2, max_note_beats=2)
        for s in range(2):
            rt.open(s, spec.vector(2, 1, 2.0, 64), seed=7)
        rt.advance(np.array([48, 48]))
        runs.append(_events(rt, 0))
        assert _events(rt, 0) == _events(rt, 1)  # same seed, same music
        assert rt.gen_tick[0] >= 48
        kinds, values = vocab.tables()
        on = set()
        for tick, tok in _events(rt, 0):
            if kinds[tok] == NOTE_ON:
                assert values[tok] not in on
                on.add(values[tok])
            elif kinds[tok] == NOTE_OFF:
                assert values[tok] in on  # never a note-off of a silent pitch
                on.discard(values[tok])
            assert kinds[tok] != START
    assert runs[0] == runs[1]


def test_a_limited_batch_steps_that_many_sessions_from_the_first_named_and_composes_the_same(
        model_file):
    """advance(max_batch=k, first=f) steps at most k sessions a step, from slot f on
    cyclically; each session's music is its own (its own rng and state), so batching them
    differently composes exactly the same events."""
    path, _, _, spec = model_file
    w = Weights(path)
    whole = Runtime(w, max_sessions=3)
    parts = Runtime(w, max_sessions=3)
    for rt in (whole, parts):
        for s in range(3):
            rt.open(s, spec.vector(s, 0, 2.0, 64), seed=11 + s)
    target = np.array([36, 36, 36])
    assert parts.advance(target, 1, max_batch=1, first=2) == 1
    assert parts.tail[2] - parts.head[2] >= 1 and all(parts.tail[s] == parts.head[s] for s in (0, 1))
    first = 0
    while parts.advance(target, 1, max_batch=2, first=first):
        first = (first + 2) % 3
    whole.advance(target)
    for s in range(3):
        assert _events(parts, s) == _events(whole, s)


def test_rewind_restores_state_and_regenerates_identically(model_file):
    path, _, vocab, spec = model_file
    w = Weights(path)
    rt = Runtime(w, max_sessions=1)
    rt.open(0, spec.vector(0, 0, 2.0, 64), seed=3)
    rt.advance(np.array([24]))
    first = _events(rt, 0)
    mid = first[len(first) // 2][0]
    # play (consume) nothing, rewind to mid, and regenerate with the same rng state:
    # kept events are the prefix up to mid
    rt.rewind(0, mid)
    kept = _events(rt, 0)
    assert kept == [e for e in first if e[0] <= mid][:len(kept)]
    assert all(t <= mid for t, _ in kept)
    assert rt.gen_tick[0] == (kept[-1][0] if kept else 0)
    # the sounding table matches a replay of the kept events
    kinds, values = vocab.tables()
    sounding = set()
    for _, tok in kept:
        if kinds[tok] == NOTE_ON:
            sounding.add(values[tok])
        elif kinds[tok] == NOTE_OFF:
            sounding.discard(values[tok])
    assert sounding == set(np.nonzero(rt.sounding[0] >= 0)[0])


def test_forced_tokens_are_fed_before_sampling(model_file):
    path, _, vocab, spec = model_file
    w = Weights(path)
    rt = Runtime(w, max_sessions=1)
    rt.open(0, spec.vector(0, 0, 2.0, 64), seed=3)
    rt.queue(0, rt.shifts_to(0, 30))
    rt.advance(np.array([30]))
    ev = _events(rt, 0)
    kinds, values = vocab.tables()
    assert all(kinds[t] == TIME_SHIFT for _, t in ev)
    assert sum(values[t] for _, t in ev) == 30


def test_switch_tick_clamps_time_shifts_and_swaps_controls(model_file):
    path, _, vocab, spec = model_file
    w = Weights(path)
    rt = Runtime(w, max_sessions=1)
    rt.open(0, spec.vector(0, 0, 0.5, 64), seed=5)
    new = spec.vector(7, 1, 3.0, 70)
    rt.next_ctl[0] = new
    rt.switch_tick[0] = 13
    rt.advance(np.array([40]))
    ticks = [t for t, _ in _events(rt, 0)]
    assert 13 in ticks  # some event lands exactly on the switch point
    assert rt.switch_tick[0] == -1
    np.testing.assert_array_equal(rt.ctl_base[0], new)
