"""Offline composition through the numba runtime the server plays (``engine.generate``)."""
import mido
import numpy as np
import pytest

from realtime import cli
from engine.controls import KEY_SPELLINGS, SCALES, key_shift
from engine.errors import InvalidMessage
from engine.generate import DEFAULT_TONALITY, Request, generate, generate_many, load_weights
from engine.notes import NOTE_DTYPE

from tests.engine.ensemble_model import random_ensemble_model


@pytest.fixture(scope="module")
def weights(model_path):
    return load_weights(model_path)


@pytest.fixture
def key_relative(weights):
    """The shipped model, taken for a key-relative one for the test's length."""
    was = weights.key_relative
    weights.key_relative = True
    yield weights
    weights.key_relative = was


def test_same_seed_same_piece_and_the_entry_rule(weights):
    a = generate(weights, 2, 1, 2.0, 4, seed=5)
    b = generate(weights, 2, 1, 2.0, 4, seed=5)
    c = generate(weights, 2, 1, 2.0, 4, seed=6)
    assert a.dtype == NOTE_DTYPE and len(a) > 0
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a["start"].min() == 0  # a session opens with entry: it starts with a note
    assert a["end"].max() <= 4 * 4 * weights.vocab.ticks_per_beat
    assert (a["end"] > a["start"]).all()
    # many pieces in the slots of one runtime: the same list gives the same pieces, and
    # slots are reused when there are more pieces than sessions
    reqs = [Request(k, k % 2, 1.0 + k % 3, seed=k) for k in range(7)]
    one = generate_many(weights, reqs, 2, sessions=3)
    two = generate_many(weights, reqs, 2, sessions=3)
    assert len(one) == 7 and all(len(n) for n in one)
    for x, y in zip(one, two):
        np.testing.assert_array_equal(x, y)
    from realtime.mood import DEFAULT_TONALITY as served
    assert DEFAULT_TONALITY is served  # one default for what is generated and what is served
    # a runaway guard: a session that makes more events than max_tokens stops there
    short = generate(weights, 2, 1, 2.0, 4, seed=5, max_tokens=12)
    assert 0 < len(short) <= 12 and len(short) < len(a)
    np.testing.assert_array_equal(short["start"], a["start"][:len(short)])
    np.testing.assert_array_equal(short["pitch"], a["pitch"][:len(short)])


def test_key_relative_model_is_transposed_and_keeps_the_register(weights, key_relative):
    for key in (4, 6, 11):  # shifts +4, -6, -1
        k = key_shift(key)
        for seed in (0, 1):
            heard = generate(weights, key, 1, 2.0, 4, seed=seed, register=70)
            # the same piece as the model composing in C at the register less the shift
            weights.key_relative = False
            in_c = generate(weights, 0, 1, 2.0, 4, seed=seed, register=70 - k)
            weights.key_relative = True
            assert len(heard) == len(in_c) > 0
            np.testing.assert_array_equal(heard["pitch"], in_c["pitch"] + k)
            np.testing.assert_array_equal(heard["start"], in_c["start"])
            # F# is reached by going down a tritone, not up: the melody stays where asked
            assert abs(heard["pitch"].mean() - 70) < 4, (key, seed, heard["pitch"].mean())


@pytest.mark.parametrize("relative", [False, True])
def test_strict_tonality_gives_only_the_scale(weights, relative):
    was, weights.key_relative = weights.key_relative, relative
    try:
        for key in range(12):
            for mode in (0, 1):
                n = generate(weights, key, mode, 2.0, 4, seed=key, tonality=1.0)
                assert len(n)
                degrees = set(((n["pitch"].astype(int) - key) % 12).tolist())
                assert degrees <= SCALES[mode], (key, mode, degrees - SCALES[mode])
    finally:
        weights.key_relative = was


def test_library_rejects_impossible_requests(weights):
    for kwargs, field in [(dict(bars=0), "bars"), (dict(density=-1.0), "density"),
                          (dict(tonality=1.5), "tonality"), (dict(key=12), "key"),
                          (dict(mode=2), "mode"), (dict(temperature=0), "temperature")]:
        args = dict(key=0, mode=0, density=2.0, bars=2) | kwargs
        with pytest.raises(InvalidMessage) as e:
            generate(weights, **args)
        assert e.value.field == field and e.value.allowed


@pytest.mark.parametrize("argv, field, allowed", [
    (["--bars", "0"], "bars", "1..1024"),
    (["--density", "-1"], "density", "(0, 16]"),
    (["--tonality", "1.5"], "tonality", "0..1"),
    (["--tonality", "-0.1"], "tonality", "0..1"),
    (["--key", "H"], "key", ", ".join(KEY_SPELLINGS)),
])
def test_cli_bad_input_is_one_line(model_path, tmp_path, capsys, argv, field, allowed):
    out = tmp_path / "x.mid"
    rc = cli.main(["generate", "--model", str(model_path), "-o", str(out), *argv])
    err = capsys.readouterr().err
    assert rc != 0
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    assert err.startswith("ostinato generate: ") and field in err and allowed in err
    assert not out.exists()


def test_cli_writes_a_piece_with_tonality(model_path, tmp_path, capsys):
    out = tmp_path / "x.mid"
    assert cli.main(["generate", "--model", str(model_path), "--key", "Eb", "--mode", "minor",
                     "--bars", "2", "--tonality", "1", "--seed", "3", "-o", str(out)]) == 0
    assert "tonality 1" in capsys.readouterr().out
    pitches = [m.note for t in mido.MidiFile(out).tracks for m in t if m.type == "note_on"]
    assert pitches and {(p - 3) % 12 for p in pitches} <= SCALES[1]


@pytest.fixture(scope="module")
def theme_model(tmp_path_factory):
    """A small theme model whose z weights are random (a trained one's are not zero)."""
    import torch

    from engine.controls import ControlSpec
    from engine.training.model import ModelConfig, MusicLSTM
    from engine.theme.model import ThemeConfig, ThemeVAE, save_theme
    from engine.vocab import Vocab

    torch.manual_seed(3)
    vocab, spec = Vocab(), ControlSpec()
    plain = MusicLSTM(ModelConfig(vocab_size=vocab.size, n_controls=spec.size, embed=16,
                                  hidden=32, layers=2))
    vae = ThemeVAE.from_plain(plain, ThemeConfig(z_dim=8, enc_embed=8, enc_hidden=16))
    with torch.no_grad():
        for k in range(2):
            vae.decoder.gate_weights(k).normal_(0, 1.0)
            vae.decoder.init_h[k].weight.normal_(0, 1.0)
    path = tmp_path_factory.mktemp("theme") / "theme.npz"
    save_theme(path, vae, vocab, spec, info=dict(key_relative=True))
    return path


def test_a_theme_changes_the_piece_and_variation_one_is_free(theme_model, tmp_path, capsys):
    from engine.sampler.theme import ThemeEncoder, latent

    w, enc = load_weights(theme_model), ThemeEncoder(theme_model)
    mu, _ = enc.encode(np.arange(20, 60))
    free = generate(w, 2, 1, 2.0, 4, seed=1)
    near = generate(w, 2, 1, 2.0, 4, seed=1, theme=enc.bias(latent(mu, 0.0)))
    again = generate(w, 2, 1, 2.0, 4, seed=1, theme=enc.bias(latent(mu, 0.0)))
    gone = generate(w, 2, 1, 2.0, 4, seed=1, theme=enc.bias(latent(mu, 1.0)))
    np.testing.assert_array_equal(near, again)
    np.testing.assert_array_equal(free, gone)  # variation 1 is z = 0: free composition
    assert not np.array_equal(free, near)
    out = tmp_path / "v.mid"
    notes = '[[62, 0, 1], [65, 1, 1], [69, 2, 2], [67, 4, 1]]'
    assert cli.main(["generate", "--model", str(theme_model), "--theme-notes", notes,
                     "--variation", "0.25", "--bars", "2", "-o", str(out)]) == 0
    assert "a variation (0.25) of the theme in D minor, 2 bars" in capsys.readouterr().out
    assert len(mido.MidiFile(out).tracks) >= 1
    for argv, what in ((["--variation", "1.5"], "--variation"),
                       (["--theme", str(out)], "--theme"),
                       ([], "--theme-notes")):
        bad = ["generate", "--model", str(theme_model), "--theme-notes", notes, "-o",
               str(tmp_path / "x.mid")] + argv
        if argv == []:
            bad[bad.index(notes)] = "[[62, 0, 1]]"
        assert cli.main(bad) == 1
        assert what in capsys.readouterr().err


def test_a_prime_is_fed_but_not_part_of_the_piece(weights):
    """Priming the LSTM with a theme's tokens (the baseline to the theme VAE): the piece
    starts where the prime ends, and the prime changes what follows."""
    from engine.notes import make_notes

    vocab = weights.vocab
    theme = make_notes([(0, 12, 60), (12, 24, 64), (24, 36, 67), (36, 48, 72), (48, 96, 67)])
    prime = vocab.encode(theme, start=False)
    plain = generate_many(weights, [Request(0, 0, 2.0, seed=4)], 4)[0]
    primed = generate_many(weights, [Request(0, 0, 2.0, seed=4, prime=prime)], 4)[0]
    assert len(primed) and primed["start"].min() >= 0
    assert primed["end"].max() <= 4 * 4 * vocab.ticks_per_beat
    assert not np.array_equal(plain, primed)
    # the same prime in a batch with others gives the same piece
    more = generate_many(weights, [Request(2, 1, 1.0, seed=1),
                                   Request(0, 0, 2.0, seed=4, prime=prime)], 4)
    np.testing.assert_array_equal(more[1], primed)


@pytest.fixture(scope="module")
def ensemble_model(tmp_path_factory):
    """A small random key-relative model with four voices (``engine.ensemble``)."""
    return random_ensemble_model(tmp_path_factory.mktemp("ens"))[0]


def test_an_ensemble_moves_its_pitched_voices_to_the_key_and_never_its_drums(ensemble_model):
    from engine.ensemble import DRUMS

    w = load_weights(ensemble_model)
    for key in (4, 6, 11):  # shifts +4, -6, -1
        k = key_shift(key)
        heard = generate(w, key, 0, 2.0, 4, seed=key, register=64)
        w.key_relative = False
        in_c = generate(w, 0, 0, 2.0, 4, seed=key, register=64 - k)
        w.key_relative = True
        assert set(heard["channel"].tolist()) == {0, 1, 2, 3}
        drums = in_c["channel"] == DRUMS
        moved = in_c["pitch"].astype(int) + k * ~drums
        expect = in_c[(moved >= 0) & (moved <= 127)]
        expect["pitch"] = moved[(moved >= 0) & (moved <= 127)]
        np.testing.assert_array_equal(heard, expect)
        assert drums.sum() > 3 and k != 0


def test_strict_tonality_binds_the_pitched_voices_and_not_the_drums(ensemble_model):
    from engine.ensemble import DRUMS

    w = load_weights(ensemble_model)
    for key, mode in ((0, 0), (2, 1), (9, 1)):
        # the voice-order and line priors off: a random model's pitches are anywhere, and
        # with them on it plays few notes; tonality is what is tested
        n = generate_many(w, [Request(key, mode, 2.0, seed=key, tonality=1.0, ordering=0.0,
                                      smoothing=0.0)], 8)[0]
        pitched, drums = n[n["channel"] != DRUMS], n[n["channel"] == DRUMS]
        assert len(pitched) > 10
        assert set(((pitched["pitch"].astype(int) - key) % 12).tolist()) <= SCALES[mode]
        # a random model's drums take any pitch: the prior does not bind them
        assert set(((drums["pitch"].astype(int) - key) % 12).tolist()) - SCALES[mode]


def test_the_voices_asked_for_are_the_voices_that_play(ensemble_model, weights):
    from engine.ensemble import BASS, DRUMS

    w = load_weights(ensemble_model)
    n = generate(w, 0, 0, 2.0, 4, seed=3, voices=(BASS, DRUMS))
    assert set(n["channel"].tolist()) == {BASS, DRUMS}
    for kwargs, field in ((dict(voices=(4,)), "voices"), (dict(voices=()), "voices"),
                          (dict(voices=(True,)), "voices"), (dict(critic_k=2, critic="x"),
                                                               "critic_k")):
        with pytest.raises(InvalidMessage) as e:
            generate(w, 0, 0, 2.0, 2, **kwargs)
        assert e.value.field == field and e.value.allowed
    with pytest.raises(InvalidMessage) as e:  # a one-line model has no voices to ask for
        generate(weights, 0, 0, 2.0, 2, voices=(0,))
    assert e.value.field == "voices"


def test_cli_writes_one_track_per_voice_and_leaves_nothing_sounding(ensemble_model, tmp_path,
                                                                   capsys):
    from engine.ensemble import DEFAULTS, VOICES

    out = tmp_path / "e.mid"
    assert cli.main(["generate", "--model", str(ensemble_model), "--key", "D", "--bars", "4",
                     "--seed", "2", "--tempo", "100", "-o", str(out)]) == 0
    said = capsys.readouterr().out
    assert all(f"{v} " in said for v in VOICES)
    mid = mido.MidiFile(out)
    names = [next(m.name for m in t if m.type == "track_name") for t in mid.tracks[1:]]
    assert names == list(VOICES)
    end = 4 * 4 * mid.ticks_per_beat
    for track, d in zip(mid.tracks[1:], DEFAULTS):
        now, on = 0, {}
        programs = [m.program for m in track if m.type == "program_change"]
        assert programs == ([] if d.register is None else [d.program])
        for m in track:
            now += m.time
            if m.type in ("note_on", "note_off"):
                assert m.channel == d.channel
                if m.type == "note_on" and m.velocity:
                    assert not on.get(m.note)
                    on[m.note] = 1
                else:
                    assert on.pop(m.note)
        assert not on and now <= end  # every note of every voice ended, by the last bar
    # only the voices asked for, by name; a bad name is one line naming the field
    assert cli.main(["generate", "--model", str(ensemble_model), "--voices", "bass,drums",
                     "--bars", "4", "--seed", "0", "-o", str(out)]) == 0
    names = [next(m.name for m in t if m.type == "track_name")
             for t in mido.MidiFile(out).tracks[1:]]
    assert names == ["bass", "drums"]
    capsys.readouterr()
    assert cli.main(["generate", "--model", str(ensemble_model), "--voices", "bass,tuba",
                     "-o", str(tmp_path / "x.mid")]) != 0
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "voice" in err and "drums" in err


def test_a_style_changes_a_model_told_styles_and_is_refused_by_one_told_none(
        styled_ensemble, ensemble_model, tmp_path, capsys):
    """--style asks a model told styles for one (here random style weights: the music
    changes); a model told none, or an unknown style, is one line naming the field."""
    def piece(style, model=styled_ensemble):
        return generate(load_weights(model), 0, 0, 2.0, 4, seed=3, style=style)

    plain = piece(None)
    assert np.array_equal(plain, piece(None))
    assert not np.array_equal(plain, piece("game"))
    out = tmp_path / "s.mid"
    assert cli.main(["generate", "--model", str(styled_ensemble), "--style", "classical",
                     "--bars", "2", "-o", str(out)]) == 0 and out.exists()
    capsys.readouterr()
    # ensemble_model: a small random model told no styles
    for model, style, allowed in ((styled_ensemble, "jazz", "game"),
                                  (ensemble_model, "game", "has none")):
        assert cli.main(["generate", "--model", str(model), "--style", style,
                         "-o", str(tmp_path / "x.mid")]) != 0
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "style" in err and allowed in err, err


def test_voice_densities_change_a_model_told_them_and_are_refused_by_one_told_none(
        parted_ensemble, ensemble_model, tmp_path, capsys):
    """--parts asks a model told the voices' densities for them (random weights here: the
    music changes; not given, it plays as the model it grew from); a model not told them,
    or a bad value, is one line naming the field."""
    from engine import DEFAULT_ENSEMBLE

    def piece(parts, model=parted_ensemble):
        return generate(load_weights(model), 0, 0, 2.0, 4, seed=3, parts=parts)

    plain = piece(None)
    assert np.array_equal(plain, piece(None, DEFAULT_ENSEMBLE))
    assert not np.array_equal(plain, piece((0.5, 1.0, 3.0)))
    out = tmp_path / "p.mid"
    assert cli.main(["generate", "--model", str(parted_ensemble), "--parts", "0.5,1,3",
                     "--bars", "2", "-o", str(out)]) == 0 and out.exists()
    capsys.readouterr()
    for model, parts, allowed in ((parted_ensemble, "1,2", "melody, bass, harmony"),
                                  (parted_ensemble, "1,x,2", "melody, bass, harmony"),
                                  (ensemble_model, "1,1,1", "is not")):
        assert cli.main(["generate", "--model", str(model), "--parts", parts,
                         "-o", str(tmp_path / "x.mid")]) != 0
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "parts" in err and allowed in err, err
