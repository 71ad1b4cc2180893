"""Offline composition through the numba runtime the server plays (``engine.generate``)."""
import mido
import numpy as np
import pytest

from engine import cli
from engine.controls import SCALES, key_shift
from engine.errors import InvalidMessage
from engine.generate import (DEFAULT_TONALITY, KEY_SPELLINGS, Request, generate, generate_many,
                             load_weights)
from engine.notes import NOTE_DTYPE


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
