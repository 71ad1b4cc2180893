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
from engine.vocab import NO_VOICE, NOTE_OFF, NOTE_ON, START, TIME_SHIFT, VOICE, Vocab
from engine.sampler.generator import Runtime
from engine.sampler.sampling import guard, rootness
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
    released first (a voice's offs after its token), then START clears the voice, and
    every voice enters anew."""
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
    # and every voice enters before time moves on, as at a session's start
    _entered(rt, before + len(owed), [MELODY, BASS, HARMONY, DRUMS])


BAR = 48  # a bar of four beats at the test model's 12 ticks a beat


def _events(rt, s=0, first=1):
    """(tick, token, voice after it) of session s's events from ``first`` on."""
    i = np.arange(first, rt.tail[s]) % rt.ring
    return rt.ev_tick[s, i], rt.ev_tok[s, i], rt.ev_voice[s, i]


def _check_switch(rt, tick, off, on, before_off=()):
    """The ring of session 0 switched voices at ``tick``: the shift that reached it landed
    on it, what followed there first was the forced release of the voices ``off``
    (VOICE tokens and note-offs), they sound no note-on from there and every note of
    theirs had ended by it (nothing of them sounds now); the voices ``on`` play after
    it, and those of them in ``before_off`` (brought in at the tick) none before it and
    one at the tick itself.  Returns how many notes of the voices ``off`` were cut
    exactly at ``tick``."""
    vocab = rt.w.vocab
    kinds = rt.w.kinds
    ticks, toks, voices = _events(rt)
    _replay(vocab, _tokens(rt))
    reach = int(np.argmax(ticks >= tick))
    assert ticks[reach] == tick and kinds[toks[reach]] == TIME_SHIFT
    ons = kinds[toks] == NOTE_ON
    assert not (ons & (ticks >= tick) & np.isin(voices, off)).any()
    assert not (ons & (ticks < tick) & np.isin(voices, before_off)).any()
    for v in on:
        assert (ons & (ticks >= tick) & (voices == v)).any()
    for v in before_off:
        assert (ons & (ticks == tick) & (voices == v)).any()
    notes = ring_notes(rt, 0, 1, rt.tail[0])
    cut = notes[np.isin(notes["channel"], off)]
    assert (cut["end"] <= tick).all()
    assert not (rt.sounding[0].reshape(4, 128)[list(off)] >= 0).any()
    # the release comes first: only VOICE tokens and offs of the voices off, at the tick
    release = toks[reach + 1:reach + 1 + int((cut["end"] == tick).sum()) * 2]
    last = 0
    for i, t in enumerate(release):
        if kinds[t] == NOTE_OFF and voices[reach + 1 + i] in off:
            last = i + 1
    assert set(kinds[release[:last]].tolist()) <= {VOICE, NOTE_OFF}
    assert (ticks[reach + 1:reach + 1 + last] == tick).all()
    return int((cut["end"] == tick).sum())


def test_voices_at_a_bar_line_switches_there_and_survives_rewinds(w, ensemble_file):
    """Drums come in and bass and harmony leave at a bar line: the switch is made when
    the music reaches it, what the leaving voices hold is released exactly there, and
    a rewind after the switch keeps it while one before it undoes it and makes it
    pending again, to be made at the same bar line."""
    _, _, vocab, spec = ensemble_file
    AT = 2 * BAR
    rt = Runtime(w, max_sessions=1, ring=4096)
    rt.open(0, spec.vector(0, 0, 2.0, 64), seed=0)
    rt.set_voices(0, [MELODY, BASS, HARMONY])
    # a bar ahead: a time shift may pass its target by up to 47 ticks
    rt.advance(np.array([AT - BAR]))
    assert rt.gen_tick[0] < AT
    assert rt.voices_at(0, AT, [MELODY, DRUMS]) == []  # pending: nothing queued yet
    assert rt.voice_tick[0] == AT and rt.voice_on[0].tolist() == [True, True, True, False]
    rt.advance(np.array([AT + 2 * BAR]))
    assert rt.voice_tick[0] == -1 and rt.voice_on[0].tolist() == [True, False, False, True]
    off, on = (BASS, HARMONY), (MELODY, DRUMS)
    assert _check_switch(rt, AT, off, on, before_off=(DRUMS,)) > 0  # notes were cut
    # a rewind after the switch keeps it
    assert AT < rt.rewind(0, AT + 30) <= AT + 30
    assert rt.voice_tick[0] == -1 and rt.voice_on[0].tolist() == [True, False, False, True]
    rt.advance(np.array([AT + 3 * BAR]))
    _check_switch(rt, AT, off, on, before_off=(DRUMS,))
    # a rewind before it restores the mask before it; the switch is made again at AT
    assert rt.rewind(0, AT - 10) < AT
    assert rt.voice_tick[0] == AT and rt.voice_on[0].tolist() == [True, True, True, False]
    rt.advance(np.array([AT + 3 * BAR]))
    assert rt.voice_on[0].tolist() == [True, False, False, True]
    assert _check_switch(rt, AT, off, on, before_off=(DRUMS,)) > 0


def test_a_switch_the_music_has_reached_is_made_at_once_and_a_newer_one_replaces_a_pending_one(
        w, ensemble_file):
    """The server's way at a bar line the look-ahead has passed: rewind to it, then
    ``voices_at``; the offs are queued at once and the switch holds from there.  A
    second call before the first is reached replaces it."""
    _, _, vocab, spec = ensemble_file
    for seed in range(3):
        rt = Runtime(w, max_sessions=1, ring=4096)
        rt.open(0, spec.vector(0, 0, 2.0, 64), seed=seed)
        rt.advance(np.array([BAR + 6]))
        rt.rewind(0, BAR)
        rt.queue(0, rt.shifts_to(0, BAR))
        held = rt.sounding[0].reshape(4, 128)[[MELODY, BASS]] >= 0
        queued = rt.voices_at(0, BAR, [HARMONY, DRUMS])
        if rt.gen_tick[0] == BAR:  # reached: made now, its offs queued
            assert rt.voice_tick[0] == -1 and len(queued) >= held.sum()
            np.testing.assert_array_equal(rt.force[0, rt.force_i[0]:rt.force_n[0]][-len(queued):]
                                          if queued else [], queued)
        rt.advance(np.array([2 * BAR]))
        _check_switch(rt, BAR, (MELODY, BASS), ())
        # a newer call replaces one pending
        rt.voices_at(0, 3 * BAR, [BASS])
        rt.voices_at(0, 4 * BAR, [MELODY])
        assert rt.voice_tick[0] == 4 * BAR
        rt.advance(np.array([5 * BAR]))
        ticks, toks, voices = _events(rt)
        ons = rt.w.kinds[toks] == NOTE_ON
        assert not (ons & (voices == BASS) & (ticks >= BAR)).any()  # [BASS] never applied
        assert (ons & (ticks >= 3 * BAR) & (ticks < 4 * BAR) & (voices != MELODY)).any()
        _check_switch(rt, 4 * BAR, (BASS, HARMONY, DRUMS), ())


def test_voice_bias_raises_the_share_of_the_biased_voice(w, ensemble_file):
    """``voice_bias`` log-odds on the drums' VOICE token: +2 raises the drums' share of
    note-ons over 16 seeds, -3 lowers it;
    0 is the model as it is."""
    _, _, vocab, spec = ensemble_file
    kinds = vocab.tables()[0]

    def share(bias):
        rt = Runtime(w, max_sessions=16, ring=4096)
        for s in range(16):
            rt.open(s, spec.vector(0, 0, 2.0, 64), seed=s)
            rt.voice_bias[s, DRUMS] = bias
        rt.advance(np.full(16, 4 * BAR))
        drums = ons = 0
        for s in range(16):
            _, toks, voices = _events(rt, s)
            on = kinds[toks] == NOTE_ON
            drums += int((voices[on] == DRUMS).sum())
            ons += int(on.sum())
        return drums / ons

    plain = share(0.0)
    assert 0.1 < plain < 0.5
    assert share(2.0) > plain + 0.1
    assert share(-3.0) < plain - 0.1


def _entered(rt, first, voices):
    """Session 0's events from ``first`` up to its first time shift: each voice of
    ``voices`` sounds a note-on there, and time then moves on."""
    ticks, toks, ev_voices = _events(rt, first=first)
    kinds = rt.w.kinds[toks]
    shift = int(np.argmax(kinds == TIME_SHIFT))
    assert kinds[shift] == TIME_SHIFT and not rt.entry[0]
    sounded = set(ev_voices[:shift][kinds[:shift] == NOTE_ON].tolist())
    assert sounded >= set(voices), (sounded, voices)
    return kinds[:shift], toks[:shift]


def _lapse(kinds, values, voices):
    """The index of the event after which every voice of ``voices`` has sounded a
    note-on (the entry lapses there)."""
    entered, voice = set(), NO_VOICE
    for i, (k, v) in enumerate(zip(kinds, values)):
        if k == VOICE:
            voice = v
        elif k == NOTE_ON:
            entered.add(voice)
            if entered >= set(voices):
                return i + 1
    return len(kinds)


def test_every_voice_that_may_play_sounds_before_time_moves_on(w, ensemble_file):
    """Per-voice entry, at a session's start and after ``enter``: no time shift until
    every voice that may play has sounded a note-on; at the start (nothing sounding)
    no note-off either, and while it holds no voice is named once it has entered."""
    _, _, vocab, spec = ensemble_file
    values = vocab.tables()[1]
    for seed, mask in ((0, None), (1, None), (2, [BASS, DRUMS]), (3, [MELODY, HARMONY, DRUMS])):
        rt = Runtime(w, max_sessions=1, ring=4096)
        rt.open(0, spec.vector(0, 0, 2.0, 64), seed=seed)
        if mask is not None:
            rt.set_voices(0, mask)
        voices = mask or [MELODY, BASS, HARMONY, DRUMS]
        rt.advance(np.array([BAR]))
        kinds, toks = _entered(rt, 1, voices)
        assert NOTE_OFF not in kinds[:_lapse(kinds, values[toks], voices)].tolist()
        entered, voice = set(), NO_VOICE  # no voice is named again once it has entered
        for k, v in zip(kinds, values[toks]):
            if entered >= set(voices):
                break  # entry lapsed: the music goes on as the model has it
            if k == VOICE:
                assert v in voices and v not in entered
                voice = v
            elif k == NOTE_ON:
                entered.add(voice)
        mark = int(rt.tail[0])
        rt.enter(0)
        assert rt.entry[0] and not rt.entered[0].any()
        rt.advance(np.array([2 * BAR]))
        _entered(rt, mark, voices)
        _replay(vocab, _tokens(rt))


def test_with_every_voice_off_entry_lapses_and_time_moves_on(w, ensemble_file):
    _, _, vocab, spec = ensemble_file
    rt = Runtime(w, max_sessions=1, ring=4096)
    rt.open(0, spec.vector(0, 0, 2.0, 64), seed=4)
    rt.set_voices(0, [])
    rt.advance(np.array([BAR]), 10_000)
    assert rt.gen_tick[0] >= BAR and not rt.entry[0]
    assert not (vocab.tables()[0][_tokens(rt)] == NOTE_ON).any()
    # switched off while entering: the voices left enter, then time moves on
    rt.set_voices(0, [MELODY, BASS, HARMONY, DRUMS])
    rt.enter(0)
    rt.queue(0, [vocab.offsets[VOICE] + BASS, vocab.offsets[NOTE_ON] + 40])
    end = int(rt.gen_tick[0])
    assert rt.advance(np.array([end + 1]), 2) == 2
    assert rt.entry[0] and rt.entered[0, BASS]
    rt.voices_at(0, end, [BASS])  # bass alone, and it has entered
    rt.advance(np.array([end + BAR]), 10_000)
    assert not rt.entry[0] and rt.gen_tick[0] >= end + BAR


def test_release_all_of_what_was_held_spares_the_notes_composed_since(w, ensemble_file):
    """A "now" change composes the new music's first notes before the model hears the
    old ones end: ``release_all(s, held)`` with a copy of the sounding table taken
    before releases the old notes still sounding and none of the new."""
    _, _, vocab, spec = ensemble_file
    rt = _compose(w, spec, 60, seed=5)
    held = rt.sounding[0].copy()
    assert (held >= 0).sum() >= 2
    rt.enter(0)
    end = int(rt.gen_tick[0])
    rt.advance(np.array([end + 1]))
    new = (rt.sounding[0] >= 0) & (rt.sounding[0] != held)
    assert new.sum() >= 4  # every voice entered
    old = (rt.sounding[0] >= 0) & (rt.sounding[0] == held)
    offs = rt.release_all(0, held)
    assert (vocab.tables()[0][offs] == NOTE_OFF).sum() == old.sum() > 0
    rt.queue(0, offs)
    rt.advance(np.array([rt.gen_tick[0] + 1]), len(offs))
    np.testing.assert_array_equal(rt.sounding[0] >= 0, new)
    _replay(vocab, _tokens(rt))


def test_a_drum_is_held_a_sixteenth_at_most_and_the_pitched_voices_as_long_as_the_guard(
        w, ensemble_file):
    """A drum is a one-shot: the guard ends it a sixteenth after it was struck (so it can
    be struck again), while the pitched voices keep the session's guard (8 beats)."""
    _, _, vocab, spec = ensemble_file
    rt = Runtime(w, max_sessions=4, ring=4096)
    for s in range(4):
        rt.open(s, spec.vector(0, 0, 2.0, 64), seed=s)
        rt.voice_bias[s, DRUMS] = 2.0
    rt.advance(np.full(4, 8 * BAR))
    sixteenth = vocab.ticks_per_beat // 4
    lengths = {True: [], False: []}
    for s in range(4):
        notes = ring_notes(rt, s, 1, rt.tail[s])
        for n in notes:
            lengths[bool(n["channel"] == DRUMS)].append(int(n["end"] - n["start"]))
    assert lengths[True] and max(lengths[True]) <= sixteenth
    assert max(lengths[False]) > sixteenth  # the pitched voices are not cut short


def _note_ons_with_held(w, spec, prior, weight):
    """Eight sessions of the random ensemble composed for 8 bars with the runtime's array
    ``prior`` at ``weight``: each note-on as (voice, pitch, {(voice, pitch) sounding})."""
    kinds, values = w.kinds, w.values
    rt = Runtime(w, max_sessions=8, ring=4096)
    for s in range(8):
        rt.open(s, spec.vector(0, 0, 2.0, 64), seed=s)
        getattr(rt, prior)[s] = weight
    rt.advance(np.full(8, 8 * BAR))
    out = []
    for s in range(8):
        _, toks, voices = _events(rt, s)
        held = set()
        for k, v, voice in zip(kinds[toks], values[toks], voices):
            if k == NOTE_ON:
                out.append((voice, v, frozenset(held)))
                held.add((voice, v))
            elif k == NOTE_OFF:
                held.discard((voice, v))
    return out


def test_the_consonance_prior_keeps_new_notes_off_the_held_ones_clashes(w, ensemble_file):
    """With the prior's weight at 6, a pitched note-on seldom clashes (a second, tritone
    or seventh) with a pitch class the pitched voices hold; at 0 the model's own choice
    clashes often (the random test model has no harmony)."""
    spec = ensemble_file[3]

    def clash_share(weight):
        clashes = ons = 0
        for voice, v, held in _note_ons_with_held(w, spec, "consonance", weight):
            pcs = {p % 12 for (u, p) in held if u != DRUMS}
            if voice != DRUMS and pcs:
                ons += 1
                clashes += any((v - q) % 12 in (1, 2, 6, 10, 11) for q in pcs)
        return clashes / ons

    plain, prior = clash_share(0.0), clash_share(6.0)
    assert plain > 0.3 and prior < plain / 3, (plain, prior)


def test_the_root_prior_puts_the_bass_on_the_root_of_what_the_voices_above_hold(
        w, ensemble_file):
    """With the root prior's weight at 4, a bass note-on is more often the best root of what
    the voices above hold (``rootness``: its third, fifth and itself among them) than the
    random model's bass is at 0."""
    spec = ensemble_file[3]

    def rooted_share(weight):
        rooted = ons = 0
        for voice, v, held in _note_ons_with_held(w, spec, "rooting", weight):
            upper = {p % 12 for (u, p) in held if u not in (BASS, DRUMS)}
            if voice == BASS and upper:
                ons += 1
                score = [rootness(sum(1 << q for q in upper), r) for r in range(12)]
                rooted += score[v % 12] == max(score)
        return rooted / ons

    plain, prior = rooted_share(0.0), rooted_share(4.0)
    assert prior > plain + 0.3, (plain, prior)


def test_the_inversion_prior_builds_the_upper_voices_chord_on_the_bass(w, ensemble_file):
    """With the inversion prior at 4, a melody or harmony note-on over a sounding bass more
    often leaves the bass the best root of what then sounds (``rootness`` over the upper
    voices' pitch classes, the new note's and the bass's) than the random model's does at 0;
    the bass itself is left to the model."""
    spec = ensemble_file[3]

    def rooted_share(weight):
        rooted = ons = 0
        for voice, v, held in _note_ons_with_held(w, spec, "inversion", weight):
            bass = [p for (u, p) in held if u == BASS]
            if voice in (MELODY, HARMONY) and bass:
                ons += 1
                pcs = {p % 12 for (u, p) in held if u != DRUMS} | {v % 12}
                chord = sum(1 << q for q in pcs)
                score = [rootness(chord, r) for r in range(12)]
                rooted += score[min(bass) % 12] == max(score)
        return rooted / ons

    plain, prior = rooted_share(0.0), rooted_share(4.0)
    assert prior > plain + 0.2, (plain, prior)


def test_the_voice_order_prior_keeps_the_bass_under_the_harmony_under_the_melody(
        w, ensemble_file):
    """With the voice-order prior at 6, a pitched note-on seldom crosses a note another
    pitched voice holds (the bass above the harmony's or the melody's lowest, the melody
    below the harmony's or the bass's highest, the harmony out of its place between them; a
    unison allowed); at 0 the random model's voices cross often."""
    spec = ensemble_file[3]
    order = {BASS: 0, HARMONY: 1, MELODY: 2}

    def crossed_share(weight):
        crossed = ons = 0
        for voice, v, held in _note_ons_with_held(w, spec, "ordering", weight):
            others = [(order[u], p) for (u, p) in held if u in order and u != voice]
            if voice in order and others:
                ons += 1
                r = order[voice]
                crossed += any((ru < r and v < p) or (ru > r and v > p) for ru, p in others)
        return crossed / ons

    plain, prior = crossed_share(0.0), crossed_share(6.0)
    assert plain > 0.2 and prior < plain / 3, (plain, prior)


def test_the_tonal_centre_prior_weighs_the_scale_by_its_probe_tone_ratings():
    """``tonality_bias``'s centre term: 0 leaves the plain prior; at 1 the tonic gains the
    most, the fifth and the third gain, in major and in minor, and notes outside the
    scale stay below every note in it.  (K-K's minor rates its third above its fifth.)"""
    from engine.controls import SCALES, tonality_bias
    for mode, third in ((0, 4), (1, 3)):
        plain = tonality_bias(mode, 0.5)
        assert np.array_equal(tonality_bias(mode, 0.5, 0.0), plain)
        gain = tonality_bias(mode, 0.5, 1.0) - plain
        assert gain[0] > max(gain[7], gain[third]) and min(gain[7], gain[third]) > 0
        biased = tonality_bias(mode, 0.5, 1.0)
        inside = [biased[pc] for pc in SCALES[mode]]
        outside = [biased[pc] for pc in range(12) if pc not in SCALES[mode]]
        assert max(outside) < min(inside)


def test_the_line_prior_moves_the_melody_and_the_bass_by_step(w, ensemble_file):
    """With the line prior at 2, a melody or bass note-on seldom leaps more than a whole
    step from its voice's last note within ``LINE_LOOKBACK`` events (the random model leaps
    nearly always at 0); the harmony, whose notes make chords, is left alone."""
    from engine.sampler.sampling import LINE_LOOKBACK
    spec = ensemble_file[3]
    kinds, values = w.kinds, w.values

    def leap_shares(weight):
        rt = Runtime(w, max_sessions=8, ring=4096)
        for s in range(8):
            rt.open(s, spec.vector(0, 0, 2.0, 64), seed=s)
            rt.smoothing[s] = weight
        rt.advance(np.full(8, 8 * BAR))
        leaps, ons = {}, {}
        for s in range(8):
            _, toks, voices = _events(rt, s)
            last = {}
            for i, (k, v, voice) in enumerate(zip(kinds[toks], values[toks], voices)):
                if k != NOTE_ON:
                    continue
                if voice in last and i - last[voice][0] < LINE_LOOKBACK:
                    ons[voice] = ons.get(voice, 0) + 1
                    leaps[voice] = leaps.get(voice, 0) + (abs(v - last[voice][1]) > 2)
                last[voice] = (i, v)
        return {u: leaps.get(u, 0) / ons[u] for u in ons}

    plain, prior = leap_shares(0.0), leap_shares(2.0)
    for u in (MELODY, BASS):
        assert plain[u] > 0.8 and prior[u] < plain[u] / 2, (u, plain, prior)
    assert prior[HARMONY] > 0.8, prior
