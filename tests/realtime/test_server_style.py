"""The ``style`` field: a game asks a model told styles for a collection's texture (on
``mood``, ``state`` and presets), the model is asked for it from the transition on, and a
model told none refuses a message's style while the music plays on.

Driven by hand on a virtual clock (``Band``), with the shipped ensemble told styles
(``styled_ensemble``: the style weights random where a trained model's are learned, so the
test reads what the model is asked, not what a trained one would play).
"""
import numpy as np
import pytest

from engine import DEFAULT_ENSEMBLE
from engine.controls import STYLES
from engine.errors import InvalidMessage
from engine.training.model import load_model

from tests.realtime.test_server_ensemble import Band as EnsembleBand
from tests.realtime.test_sync import closing

band = closing(EnsembleBand)


def asked(b):
    """The style in the control vector the model now composes under (None: none)."""
    rt, spec = b.srv.rt, b.srv.spec
    return spec.describe(rt.ctl_base[b.slot]).get("style")


def test_a_style_is_asked_of_the_model_from_its_transition_and_reported(band, styled_ensemble):
    b = band(model=styled_ensemble, initial_state="explore")
    assert b.call("hello")["capabilities"]["styles"] == list(STYLES)
    b.play(4)
    reply = b.call("mood", style="game", transition="now")
    assert reply["style"] == "game" and asked(b) == "game"
    b.play(4)
    reply = b.call("mood", arousal=0.9, transition="now")  # the session's style stays
    assert reply["style"] == "game" and asked(b) == "game"
    reply = b.call("state", name="calm", transition="now")  # a preset of none: none
    assert reply["style"] is None and asked(b) is None
    reply = b.call("state", name="combat", style="classical", transition="bar")
    assert reply["style"] == "classical" and asked(b) is None  # not before the bar line
    b.play(8)
    assert asked(b) == "classical"
    b.call("stop")
    assert b.wire.sounding() == set()


def test_a_presets_style_is_played_and_a_message_wins_over_it(band, styled_ensemble, tmp_path):
    from realtime.protocol.states import DEFAULT_STATES
    text = DEFAULT_STATES.read_text().replace("[presets.calm]\n",
                                              "[presets.calm]\nstyle = \"renaissance\"\n")
    states = tmp_path / "states.toml"
    states.write_text(text)
    b = band(model=styled_ensemble, initial_state="calm", states=str(states))
    assert asked(b) == "renaissance"
    b.call("state", name="calm", style="baroque", transition="now")
    assert asked(b) == "baroque"
    b.play(2)


@pytest.mark.parametrize("bad, code", [("jazz", "bad_choice"), (3, "bad_type"),
                                       (["game"], "bad_type")])
def test_a_bad_style_names_the_field_and_the_styles_and_the_music_plays_on(
        band, styled_ensemble, bad, code):
    b = band(model=styled_ensemble, initial_state="explore")
    b.play(2)
    before = len(b.wire.ons())
    for kind, fields in (("mood", {}), ("state", {"name": "combat"})):
        with pytest.raises(InvalidMessage) as err:
            b.call(kind, style=bad, **fields)
        assert err.value.field == "style" and "game" in str(err.value.allowed)
        assert err.value.code == code
    b.play(8)
    assert len(b.wire.ons()) > before and asked(b) is None
    b.call("stop")
    assert b.wire.sounding() == set()


def test_a_model_told_no_styles_refuses_a_style_and_plays_its_presets(band):
    _, _, spec, _ = load_model(DEFAULT_ENSEMBLE)
    if spec.styles:
        pytest.skip("the shipped ensemble is told styles: no model here is told none")
    b = band(initial_state="explore")
    assert b.call("hello")["capabilities"]["styles"] == []
    b.play(2)
    with pytest.raises(InvalidMessage) as err:
        b.call("mood", style="game")
    assert err.value.field == "style" and err.value.code == "out_of_range"
    assert "none" in err.value.allowed
    b.call("state", name="combat")  # a preset's style asks for what the model can do
    b.play(8)
    vec = b.srv.rt.ctl_base[b.slot]
    assert vec.shape == (spec.size,) and np.isfinite(vec).all()
    b.call("stop")
    assert b.wire.sounding() == set()
