"""The numba runtime with an ensemble model (a vocabulary with voices): the voice in force,
per-voice sounding notes and guard, the voice mask, rewind, and equality with torch."""
import numpy as np
import pytest
import torch

from engine.controls import ControlSpec
from engine.ensemble import BASS, DRUMS, HARMONY, MELODY
from engine.errors import InvalidMessage
from engine.notes import NOTE_DTYPE
from engine.training.model import ModelConfig, MusicLSTM, save_model
from engine.vocab import NO_VOICE, NOTE_OFF, NOTE_ON, START, VOICE, Vocab
from engine.sampler.generator import Runtime
from engine.sampler.sampling import guard
from engine.sampler.voices import ring_notes
from engine.sampler.weights import Weights

from tests.engine.ensemble_model import random_ensemble_model


@pytest.fixture(scope="module")
def ensemble_file(tmp_path_factory):
    return random_ensemble_model(tmp_path_factory.mktemp("ens"))


@pytest.fixture(scope="module")
def w(ensemble_file):
    return Weights(ensemble_file[0])


def _replay(vocab, tokens):
    """Check a token stream under the runtime's rules, voice by voice: note events only
    with a voice in force, no note-on of a sounding (voice, pitch), no note-off of a
    silent one.  Returns what still sounds, {(voice, pitch)}."""
    kinds, values = vocab.tables()
    voice, sounding = NO_VOICE, set()
    for tok in tokens:
        k, v = kinds[tok], int(values[tok])
        if k == VOICE:
            voice = v
        elif k == START:
            voice = NO_VOICE
        elif k == NOTE_ON:
            assert voice != NO_VOICE and (voice, v) not in sounding
            sounding.add((voice, v))
        elif k == NOTE_OFF:
            assert (voice, v) in sounding
            sounding.discard((voice, v))
    return sounding


def _compose(w, spec, ticks, seed, ring=4096, **open_kw):
    rt = Runtime(w, max_sessions=1, ring=ring, **open_kw)
    rt.open(0, spec.vector(0, 0, 2.0, 64), seed=seed)
    rt.advance(np.array([ticks]))
    return rt


def _tokens(rt, s=0, first=0):
    return rt.ev_tok[s, np.arange(first, rt.tail[s]) % rt.ring]


def test_runtime_logits_equal_torch_on_a_stream_with_voice_tokens(ensemble_file, w):
    """The runtime fed an encoded ensemble (voice tokens among its notes) as forced tokens:
    at every step its logits are the torch model's for the same token and control vector,
    and its voice in force is the stream's (``Vocab.voices_of``)."""
    _, model, vocab, spec = ensemble_file
    rng = np.random.default_rng(4)
    n = 160
    notes = np.zeros(n, NOTE_DTYPE)
    notes["start"] = np.sort(rng.integers(0, 400, n))
    notes["end"] = notes["start"] + rng.integers(1, 30, n)
    notes["pitch"] = rng.integers(30, 90, n)
    notes["channel"] = rng.integers(0, 4, n)
    notes["velocity"] = 80
    stream = vocab.encode(notes)
    assert (vocab.tables()[0][stream] == VOICE).sum() > 50
    rt = Runtime(w, max_sessions=1, ring=4096, force_cap=len(stream))
    rt.open(0, spec.vector(3, 1, 2.0, 60), seed=1)
    rt.queue(0, stream[1:])  # the START is the opening token
    voices = vocab.voices_of(stream)
    state, worst = None, 0.0
    for i in range(len(stream) - 1):
        fed = int(rt.tokens[0])
        assert rt.advance(np.array([1 << 40]), 1) == 1
        assert rt.ev_tok[0, rt.tail[0] - 1] == stream[i + 1]
        assert rt.voice[0] == rt.ev_voice[0, rt.tail[0] - 1] == voices[i + 1]
        with torch.no_grad():
            logits, state = model(torch.tensor([[fed]]),
                                  torch.from_numpy(rt.controls[0].copy())[None, None], state)
        worst = max(worst, float(np.abs(logits[0, 0].numpy() - rt.logits[0]).max()))
    assert worst < 1e-4, worst


def test_a_composed_piece_decodes_to_the_notes_the_runtime_reported(w, ensemble_file):
    """Every voice plays, the stream keeps the rules voice by voice, and when what sounds
    at the end is released (voice by voice) nothing is left sounding in any voice and
    ``Vocab.decode`` of the stream gives exactly the notes the ring reported."""
    _, _, vocab, spec = ensemble_file
    rt = _compose(w, spec, 16 * 12, seed=5)
    offs = rt.release_all(0)
    held = {(v, p) for v in range(4) for p in range(128) if rt.sounding[0, v * 128 + p] >= 0}
    assert len({v for v, _ in held}) >= 2  # the release crosses voices
    rt.queue(0, offs)
    rt.advance(np.array([rt.gen_tick[0] + 1]), len(offs))
    assert (rt.sounding[0] < 0).all()
    tokens = _tokens(rt)
    assert _replay(vocab, tokens) == set()
    reported = ring_notes(rt, 0, 1, rt.tail[0])
    decoded = vocab.decode(tokens)
    assert set(reported["channel"].tolist()) == {MELODY, BASS, HARMONY, DRUMS}
    for f in ("start", "end", "pitch", "channel"):
        np.testing.assert_array_equal(decoded[f], reported[f])


def test_the_note_guard_is_per_voice_and_names_the_voice_it_releases(w, ensemble_file):
    """Two voices hold one pitch at once; each note is released by the guard within the
    longest note, a note-off of a voice not in force after that voice's token."""
    _, _, vocab, spec = ensemble_file
    o = vocab.offsets
    rt = Runtime(w, max_sessions=1, ring=4096, max_note_beats=0.5)  # 6 ticks
    rt.open(0, spec.vector(0, 0, 2.0, 64), seed=2)
    rt.queue(0, [o[VOICE] + HARMONY, o[NOTE_ON] + 60, o[VOICE] + BASS, o[NOTE_ON] + 60])
    rt.advance(np.array([48]), 4)
    assert rt.sounding[0, HARMONY * 128 + 60] == rt.sounding[0, BASS * 128 + 60] == 0
    assert rt.voice[0] == BASS
    rt.advance(np.array([48]))
    _replay(vocab, _tokens(rt))
    notes = ring_notes(rt, 0, 1, rt.tail[0])
    assert (notes["end"] - notes["start"] <= 6).all()
    both = notes[(notes["start"] == 0) & (notes["pitch"] == 60)]
    assert sorted(both["channel"].tolist()) == [BASS, HARMONY]
    # the rule itself: a held note of a voice not in force is released by naming it
    sounding = np.full((1, 512), -1, np.int64)
    sounding[0, DRUMS * 128 + 36] = 0
    voice, args = np.array([MELODY]), (np.array([10]), np.array([6]))
    assert guard(0, sounding, *args, voice, rt.layout) == o[VOICE] + DRUMS
    voice[0] = DRUMS
    assert guard(0, sounding, *args, voice, rt.layout) == o[NOTE_OFF] + 36


def test_voices_switched_off_are_released_and_never_play_again(w, ensemble_file):
    _, _, vocab, spec = ensemble_file
    rt = _compose(w, spec, 96, seed=5)
    before = int(rt.tail[0])
    sounding = rt.sounding[0].reshape(4, 128) >= 0
    assert sounding[[BASS, HARMONY, DRUMS]].any()  # something to release
    offs = rt.set_voices(0, [MELODY])
    kinds, values = vocab.tables()
    named = [int(values[t]) for t in offs if kinds[t] == VOICE]
    assert set(named) == {v for v in (BASS, HARMONY, DRUMS) if sounding[v].any()} - {
        int(rt.voice[0])}
    rt.advance(np.array([96 + 192]))
    after = _tokens(rt, first=before)
    np.testing.assert_array_equal(after[:len(offs)], offs)  # the offs come first
    voices = rt.ev_voice[0, np.arange(before, rt.tail[0]) % rt.ring]
    ons = kinds[after] == NOTE_ON
    assert ons.sum() > 5 and (voices[ons] == MELODY).all()
    assert not (rt.sounding[0, 128:] >= 0).any()  # nothing sounds in the voices switched off
    assert not np.isin(after[len(offs):], [vocab.offsets[VOICE] + v for v in (1, 2, 3)]).any()
    _replay(vocab, _tokens(rt))
    # a voice that is off gets no note-on even when a forced token puts it in force
    for seed in range(4):
        rt.rng[0] = 100 + seed
        mark = int(rt.tail[0])
        rt.queue(0, [vocab.offsets[VOICE] + DRUMS])
        rt.advance(np.array([rt.gen_tick[0] + 24]))
        voices = rt.ev_voice[0, np.arange(mark, rt.tail[0]) % rt.ring]
        assert not (voices[kinds[_tokens(rt, first=mark)] == NOTE_ON] == DRUMS).any()
    # a voice back on plays again; ids are checked
    rt.set_voices(0, [MELODY, DRUMS])
    rt.advance(np.array([96 + 2 * 192]))
    assert (rt.ev_voice[0, np.arange(before, rt.tail[0]) % rt.ring] == DRUMS).any()
    for bad in ([4], [-1]):
        with pytest.raises(InvalidMessage) as e:
            rt.set_voices(0, bad)
        assert e.value.field == "voices"


def test_one_line_runtime_has_no_voices_to_set(tmp_path):
    torch.manual_seed(1)
    vocab, spec = Vocab(), ControlSpec()
    model = MusicLSTM(ModelConfig(vocab_size=vocab.size, n_controls=spec.size, embed=8,
                                  hidden=16, layers=1))
    save_model(tmp_path / "m.npz", model, vocab, spec)
    rt = Runtime(Weights(tmp_path / "m.npz"), max_sessions=1)
    assert rt.sounding.shape == (1, 128) and rt.voice[0] == 0
    with pytest.raises(InvalidMessage) as e:
        rt.set_voices(0, [0])
    assert e.value.field == "voices"


def test_rewind_restores_the_voice_in_force_and_the_sounding_notes(w, ensemble_file):
    _, _, vocab, spec = ensemble_file
    rt = _compose(w, spec, 96, seed=9)
    ticks = rt.ev_tick[0, 1:rt.tail[0]]
    for mid in (int(ticks[len(ticks) // 3]), int(ticks[2 * len(ticks) // 3]), 0):
        full = _tokens(rt).copy()
        end = rt.rewind(0, mid)
        kept = _tokens(rt)
        np.testing.assert_array_equal(kept, full[:len(kept)])
        assert end == rt.gen_tick[0] <= mid
        assert rt.voice[0] == vocab.voices_of(kept)[-1]
        held = _replay(vocab, kept)
        assert held == {(v, p) for v in range(4) for p in range(128)
                        if rt.sounding[0, v * 128 + p] >= 0}
        rt.advance(np.array([96]))  # composing on from there keeps the rules
        _replay(vocab, _tokens(rt))
    assert rt.voice[0] == rt.ev_voice[0, (rt.tail[0] - 1) % rt.ring]


def test_a_theme_phrase_releases_every_voice_and_starts_without_one(w, ensemble_file):
    """A theme with a state starts a phrase: the notes sounding in every voice are
    released first (a voice's offs after its token), then START clears the voice."""
    _, _, vocab, spec = ensemble_file
    rt = _compose(w, spec, 60, seed=5)
    L, H = w.layers, w.hidden
    before = int(rt.tail[0])
    assert len({i // 128 for i in np.flatnonzero(rt.sounding[0] >= 0)}) >= 2
    owed = rt.release_all(0)
    rt.theme_at(0, int(rt.gen_tick[0]), np.zeros((L, 4 * H), np.float32),
                (np.zeros((L, H), np.float32), np.zeros((L, H), np.float32)))
    assert rt.advance(np.array([120]), len(owed)) == len(owed)
    np.testing.assert_array_equal(_tokens(rt, first=before), owed)  # as release_all owes
    rt.advance(np.array([120]), 0)  # the offs fed, the phrase starts: START, no voice
    assert rt.voice[0] == NO_VOICE and rt.entry[0] and rt.tokens[0] == vocab.offsets[START]
    rt.advance(np.array([120]))
    after = _tokens(rt, first=before)
    kinds = vocab.tables()[0][after]
    first_on = int(np.argmax(kinds == NOTE_ON))
    assert set(kinds[:first_on].tolist()) <= {NOTE_OFF, VOICE}
    _replay(vocab, _tokens(rt))
    # the phrase's first note names its voice: a voice token came after the last off
    offs_end = int(np.flatnonzero(kinds[:first_on] == NOTE_OFF).max())
    assert (kinds[offs_end + 1:first_on] == VOICE).any()
