"""The sequencer playing an ensemble: a real Runtime (the small random ensemble model of
``tests.engine.ensemble_model``, and a one-line model) composes, the real Sequencer
collects its rings; each voice on its own channel, drums never transposed, an octave
shift and a velocity offset per voice, and every note ended by a release."""
import numpy as np
import pytest
import torch

from engine.controls import ControlSpec
from engine.ensemble import BASS, DRUMS, HARMONY, MELODY
from engine.errors import InvalidMessage
from engine.sampler.generator import Runtime
from engine.sampler.weights import Weights
from engine.training.model import ModelConfig, MusicLSTM, save_model
from engine.vocab import NOTE_OFF, NOTE_ON, Vocab

from realtime.outputs.base import midi_bytes
from realtime.sequencer import NS, Sequencer

from tests.engine.ensemble_model import random_ensemble_model

TPB = 12  # the vocabulary's ticks a beat; at 60 BPM tick t plays at t / 12 s


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory):
    return Weights(random_ensemble_model(tmp_path_factory.mktemp("ens"))[0])


@pytest.fixture(scope="module")
def one_line(tmp_path_factory):
    torch.manual_seed(1)
    vocab, spec = Vocab(), ControlSpec()
    model = MusicLSTM(ModelConfig(vocab_size=vocab.size, n_controls=spec.size, embed=16,
                                  hidden=32, layers=1))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    path = tmp_path_factory.mktemp("one") / "m.npz"
    save_model(path, model, vocab, spec)
    return Weights(path)


def _compose(w, ticks, seed):
    rt = Runtime(w, max_sessions=1, ring=4096)
    rt.open(0, w.spec.vector(0, 0, 2.0, 64), seed=seed)
    rt.advance(np.array([ticks]))
    return rt


def _sequencer(rt, channels):
    seq = Sequencer(1, TPB, n_voices=max(rt.n_voices, 1),
                    drum_voice=DRUMS if rt.n_voices else -2)
    seq.vchan[0] = channels
    seq.anchor(0, 0.0, 0, 60.0)
    return seq


def _play(seq, rt, w, tick):
    """Publish what ``rt`` composed and collect all that plays by ``tick``: the wire
    messages [(status, data1, data2)] in order."""
    seq.publish(rt)
    until, msgs = tick / TPB * NS, []
    while True:
        n, nxt = seq.collect(until, rt, w.kinds, w.values)
        msgs += [tuple(int(x) for x in seq.out[i, :3]) for i in range(n)]
        if nxt != until:  # equal only when the buffer filled: collect again
            return msgs


def _voice_notes(rt, w, kind, first=1):
    """The (voice, generated pitch) of the ring's events of ``kind``, in order."""
    at = np.arange(first, rt.tail[0]) % rt.ring
    toks = rt.ev_tok[0, at]
    keep = w.kinds[toks] == kind
    return list(zip(np.maximum(rt.ev_voice[0, at], 0)[keep].tolist(),
                    w.values[toks][keep].tolist()))


def _reference(rt, w, seq):
    """The wire (status, pitch) the ring's notes should give, worked out note by note: a
    note-on of voice v on vchan[v], moved by transpose + vshift[v] unless v is the drum
    voice, none outside 0..127; a note-off ends what its (voice, pitch) sent."""
    at = np.arange(1, rt.tail[0]) % rt.ring
    sent, msgs = {}, []
    for tok, v in zip(rt.ev_tok[0, at], np.maximum(rt.ev_voice[0, at], 0)):
        k, val, v = w.kinds[tok], int(w.values[tok]), int(v)
        ch = int(seq.vchan[0, v])
        if k == NOTE_ON:
            p = val + (0 if v == seq.drum_voice else int(seq.transpose[0] + seq.vshift[0, v]))
            if 0 <= p < 128:
                msgs.append((0x90 | ch, p))
                sent[v, val] = (ch, p)
        elif k == NOTE_OFF and (v, val) in sent:
            ch, p = sent.pop((v, val))
            msgs.append((0x80 | ch, p))
    return msgs


def test_each_voice_plays_on_its_channel_and_drums_are_never_transposed(ensemble):
    rt = _compose(ensemble, 96, seed=5)
    seq = _sequencer(rt, [0, 1, 2, 9])
    seq.set_transpose(0, 5)
    msgs = _play(seq, rt, ensemble, rt.gen_tick[0] + 1)
    assert [m[:2] for m in msgs] == _reference(rt, ensemble, seq)
    ons = [(m[0] & 0x0F, m[1]) for m in msgs if m[0] & 0xF0 == 0x90]
    generated = _voice_notes(rt, ensemble, NOTE_ON)
    assert {v for v, _ in generated} == {MELODY, BASS, HARMONY, DRUMS}
    for v, ch in ((MELODY, 0), (BASS, 1), (HARMONY, 2)):  # pitched: up 5, on their channels
        assert [p for c, p in ons if c == ch] == [p + 5 for u, p in generated
                                                   if u == v and p + 5 < 128]
    assert [p for c, p in ons if c == 9] == [p for u, p in generated if u == DRUMS]


def test_a_one_line_model_plays_on_its_session_channel_transposed(one_line):
    rt = _compose(one_line, 480, seed=3)
    seq = _sequencer(rt, [3])  # a one-line session's channel is voice 0's
    seq.set_transpose(0, -2)
    msgs = _play(seq, rt, one_line, rt.gen_tick[0] + 1)
    assert len(msgs) > 20 and {m[0] & 0x0F for m in msgs} == {3}
    assert [m[:2] for m in msgs] == _reference(rt, one_line, seq)


def test_an_octave_shift_and_a_velocity_offset_move_one_voice_only(ensemble):
    """The same piece played twice, the second time with harmony an octave up and 30
    softer: harmony's channel differs by exactly that, the other voices not at all."""
    plain = _play(_sequencer(rt := _compose(ensemble, 384, seed=7), [0, 1, 2, 9]), rt,
                  ensemble, 400)
    seq = _sequencer(rt2 := _compose(ensemble, 384, seed=7), [0, 1, 2, 9])
    seq.vshift[0, HARMONY] = 12
    seq.vvel[0, HARMONY] = -30.0
    seq.vshift[0, DRUMS] = 12  # drums ignore it
    moved = _play(seq, rt2, ensemble, 400)

    def on(msgs, ch):
        return [m for m in msgs if m[0] & 0x0F == ch]
    for ch in (0, 1, 9):
        assert on(moved, ch) == on(plain, ch)
    harmony = on(plain, 2)
    assert len(harmony) > 10
    assert on(moved, 2) == [(st, p + 12, max(1, v - 30) if st & 0xF0 == 0x90 else 0)
                            for st, p, v in harmony if p + 12 < 128]


def _balanced(msgs):
    """Checks the wire never starts a sounding note nor ends a silent one; returns the
    (channel, pitch) still sounding."""
    sounding = set()
    for status, pitch, _ in msgs:
        key = (status & 0x0F, pitch)
        if status & 0xF0 == 0x90:
            assert key not in sounding
            sounding.add(key)
        else:
            assert status & 0xF0 == 0x80 and key in sounding
            sounding.discard(key)
    return sounding


def test_release_after_a_rewind_ends_every_voice_and_leaves_nothing_sounding(ensemble):
    """Melody and harmony share channel 0 (the wire-note owner table sorts them out); part
    of the piece plays, the unplayed rest is composed again from a rewind, more plays, and
    a release ends every note of every voice."""
    rt = _compose(ensemble, 192, seed=11)
    seq = _sequencer(rt, [0, 1, 0, 9])
    seq.set_transpose(0, 3)
    msgs = _play(seq, rt, ensemble, 80)
    assert rt.rewind(0, 120) > 80  # unplayed events are dropped, played ones kept
    rt.rng[0] = 99  # a different continuation from there
    rt.advance(np.array([384]))
    msgs += _play(seq, rt, ensemble, 300)
    held = _balanced(msgs)
    assert len({ch for ch, _ in held}) >= 2  # the release crosses voices and channels
    n = seq.release(0, int(300 / TPB * NS), 300 / TPB)
    offs = [tuple(int(x) for x in seq.out[i, :3]) for i in range(n)]
    assert _balanced(msgs + offs) == set()
    assert (seq.sent_pitch < 0).all() and not seq.owner.any()


def test_program_changes_are_written_as_two_byte_messages():
    seq = Sequencer(2, TPB, n_voices=4, drum_voice=DRUMS)
    n = seq.programs(1, 5000, 2.0, [(0, 73), (1, 33), (2, 48)])
    assert n == 3
    assert [tuple(int(x) for x in r) for r in seq.out[:n]] == [
        (0xC0, 73, 0, 1), (0xC1, 33, 0, 1), (0xC2, 48, 0, 1)]
    assert list(seq.out_ns[:n]) == [5000] * 3 and list(seq.out_beat[:n]) == [2.0] * 3
    assert [midi_bytes(*map(int, r[:3])) for r in seq.out[:n]] == [(0xC0, 73), (0xC1, 33),
                                                                   (0xC2, 48)]
    for bad, field in (((1, 128), "program"), ((16, 0), "channel"), ((0, -1), "program")):
        with pytest.raises(InvalidMessage) as e:
            seq.programs(0, 0, 0.0, [bad])
        assert e.value.field == field


def test_a_sequencer_with_fewer_voices_than_the_runtime_refuses_its_rings(ensemble):
    rt = _compose(ensemble, 12, seed=1)
    seq = Sequencer(1, TPB)
    with pytest.raises(ValueError, match="4 voices"):
        seq.collect(0.0, rt, ensemble.kinds, ensemble.values)
