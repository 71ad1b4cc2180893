"""``engine.generate`` with a form: ``repetition`` and ``form`` reach the runtime
(``Runtime.set_form``), the music repeats as much as asked (measured by
``engine.evaluation.form``), and bad values are refused naming the field, on the command
line too.  The shipped default model composes."""
import numpy as np
import pytest

from engine.errors import InvalidMessage
from engine.evaluation import form as fm
from engine.evaluation import repeats as rp
from engine.form import Form
from engine.generate import Request, generate, generate_many, load_weights
from realtime import cli


@pytest.fixture(scope="module")
def weights(model_path):
    return load_weights(model_path)


def bar_repeat(pieces, bars):
    cfg = fm.FormEvalConfig()
    per = [rp.piece_figures(n, rp.ONE_LINE, cfg, (0, bars // cfg.window_bars)) for n in pieces]
    return rp.set_figures(per, rp.ONE_LINE, cfg)["line"]["bar_repeat"]["mean"]


def test_repetition_zero_is_the_music_without_a_form(weights):
    a = generate(weights, 0, 0, 2.0, 8, seed=3)
    b = generate(weights, 0, 0, 2.0, 8, seed=3, repetition=0.0, form=Form("ABAB"))
    np.testing.assert_array_equal(a, b)


def test_a_loop_repeats_bars_and_through_composed_music_does_not(weights):
    reqs = [Request(k, k % 2, 2.0, seed=k) for k in range(8)]
    free = generate_many(weights, reqs, 16)
    loop = generate_many(weights, reqs, 16, repetition=1.0)
    half = generate_many(weights, reqs, 16, repetition=0.5, form=Form("AABA"))
    assert bar_repeat(free, 16) < 0.1
    assert bar_repeat(loop, 16) > bar_repeat(half, 16) > bar_repeat(free, 16)


def test_a_form_reaches_the_runtime_from_the_pieces_first_tick(weights, monkeypatch):
    from engine.sampler.generator import Runtime
    calls = []
    real = Runtime.set_form
    monkeypatch.setattr(Runtime, "set_form", lambda self, s, *a, **k: (
        calls.append((s, a, k)), real(self, s, *a, **k))[1])
    generate_many(weights, [Request(0, 0, 2.0, seed=s) for s in range(3)], 2, beats_per_bar=3,
                  repetition=0.25, form=Form("AB", bars=4), sessions=2)
    assert len(calls) == 3  # every piece, in a reused slot too
    for s, args, kw in calls:
        assert args == (0.25, Form("AB", bars=4))
        assert kw == dict(bar_ticks=3 * weights.vocab.ticks_per_beat, origin=0)


@pytest.mark.parametrize("value", [-0.1, 1.01, float("nan"), "1"])
def test_a_bad_repetition_names_the_field(weights, value):
    with pytest.raises(InvalidMessage) as e:
        generate(weights, 0, 0, 2.0, 2, repetition=value)
    assert e.value.field == "repetition"
    with pytest.raises(InvalidMessage) as e:
        generate(weights, 0, 0, 2.0, 2, repetition=0.5, form="AABA")
    assert e.value.field == "form"


@pytest.mark.parametrize("argv, field, allowed", [
    (["--repetition", "1.5"], "--repetition", "0..1"),
    (["--repetition", "-1"], "--repetition", "0..1"),
    (["--repetition", "0.5", "--form", "AXBA"], "--form", "ABCDEFGH"),
    (["--repetition", "0.5", "--form", "ABC"], "--form", "3 equal sections"),
])
def test_cli_bad_form_input_is_one_line(model_path, tmp_path, capsys, argv, field, allowed):
    out = tmp_path / "x.mid"
    rc = cli.main(["generate", "--model", str(model_path), "-o", str(out), *argv])
    err = capsys.readouterr().err
    assert rc != 0 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert field in err and allowed in err, err
    assert not out.exists()


def test_cli_writes_a_piece_with_a_form(model_path, tmp_path, capsys):
    out = tmp_path / "x.mid"
    assert cli.main(["generate", "--model", str(model_path), "--bars", "8", "--repetition", "1",
                     "--form", "ABAB", "-o", str(out)]) == 0
    assert out.exists() and "repetition 1 (ABAB)" in capsys.readouterr().out
