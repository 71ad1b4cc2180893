"""The protocol's `repetition` field (mood, state, session open) and a preset's
`repetition` and `form` in states.toml: what validation and the preset loader accept, and
that every refusal names the field (or the file, preset and key) and what is allowed."""
import json

import pytest

from engine import DEFAULT_MODEL
from engine.errors import InvalidMessage
from engine.form import Form
from realtime import protocol

OPEN = {"type": "session", "action": "open", "session": "p2"}
BASES = {"mood": {"type": "mood"}, "state": {"type": "state", "name": "combat"}, "session": OPEN}


def refusal(msg):
    with pytest.raises(InvalidMessage) as info:
        protocol.parse(json.dumps(msg).encode())
    return protocol.error_code(info.value), info.value.field, info.value.allowed, str(info.value)


@pytest.mark.parametrize("kind", list(BASES))
def test_repetition_is_a_number_in_0_1_on_mood_state_and_session_open(kind):
    for value in (0, 0.25, 1):
        assert protocol.parse(json.dumps({**BASES[kind], "repetition": value}))["repetition"] == value
    for value in (-0.01, 1.5, 1e308):
        code, field, allowed, text = refusal({**BASES[kind], "repetition": value})
        assert (code, field, allowed) == ("out_of_range", "repetition", "0.0..1.0")
        assert "'repetition'" in text and "0.0..1.0" in text
    for value in ("loop", True, None, [0.5]):
        code, field, allowed, _ = refusal({**BASES[kind], "repetition": value})
        assert (code, field, allowed) == ("bad_type", "repetition", "0.0..1.0")
    head = json.dumps(BASES[kind])[:-1].encode()
    with pytest.raises(InvalidMessage) as info:
        protocol.parse(head + b', "repetition": NaN}')
    assert (protocol.error_code(info.value), info.value.field) == ("out_of_range", "repetition")


@pytest.mark.parametrize("kind", list(BASES))
def test_repetition_left_out_is_none_so_the_session_s_stays(kind):
    msg = {**BASES[kind], "valence": 0.1} if kind == "mood" else BASES[kind]
    assert protocol.parse(json.dumps(msg))["repetition"] is None


def test_repetition_alone_is_a_mood_and_not_on_key_or_close():
    assert protocol.parse(b'{"type":"mood","repetition":0.5}')["repetition"] == 0.5
    code, field, _, _ = refusal({"type": "key", "key": "D", "repetition": 0.5})
    assert (code, field) == ("unknown_field", "repetition")
    code, field, allowed, _ = refusal({"type": "session", "action": "close", "session": "p2",
                                       "repetition": 0.5})
    assert (code, field, allowed) == ("unknown_field", "repetition", "only with action 'open'")


def test_repetition_comes_last_in_osc_order_and_is_documented():
    """Appended (then style, after it on mood and state): the positions OSC clients
    already use do not move."""
    for name in ("mood", "state", "session"):
        positional = protocol.message_spec(name).positional()
        assert positional[-3:] == (("voices", "repetition", "style") if name != "session" else
                                   (positional[-3], "voices", "repetition"))
        field = next(f for f in protocol.message_spec(name).fields if f.name == "repetition")
        assert (field.kind, field.lo, field.hi) == ("float", 0.0, 1.0)
        assert "0 through-composed" in field.doc and "1 a loop" in field.doc
        assert "`serve --repetition`" in field.doc and "next bar line" in field.doc
    assert "repetition" in protocol.EVENT_TYPES["mood"]


# ---------------------------------------------------------------- states.toml

PRESET = '[presets.a]\nvalence = 0\narousal = 0\nintensity = 0\n'
STINGER = '[stingers.hit]\ndegrees = [1]\ndurations = [1]\n'


def states(tmp_path, body):
    path = tmp_path / "states.toml"
    path.write_text(PRESET + body + "\n" + STINGER)
    return path


def test_presets_may_set_repetition_and_a_form_whose_keys_are_optional(tmp_path):
    presets, _ = protocol.load_states(states(tmp_path, 'repetition = 0.6\n'
                                                       'form = { shape = "ABAC", bars = 16 }'))
    assert presets["a"]["repetition"] == 0.6
    assert presets["a"]["form"] == Form(shape="ABAC", bars=16, bass_loop=Form().bass_loop,
                                        drums_loop=Form().drums_loop)
    presets, _ = protocol.load_states(states(tmp_path, "form = {}"))
    assert presets["a"]["form"] == Form()
    presets, _ = protocol.load_states(states(tmp_path, "repetition = 1"))
    assert presets["a"]["repetition"] == 1.0 and "form" not in presets["a"]


def test_the_shipped_presets_carry_the_measured_repetition_and_valid_forms():
    """Each shipped preset's repetition is the one engine/models/form.json measured nearest
    real music of its kind for the ensemble the server plays, in the preset's own form
    (engine.evaluation.form)."""
    measured = json.loads((DEFAULT_MODEL.parent / "form.json").read_text())["presets"]
    presets, _ = protocol.load_states()
    for name, preset in presets.items():
        assert preset["repetition"] == measured[name]["ensemble"]["repetition"], name
        form = preset.get("form", Form())
        assert isinstance(form, Form)
        # ... measured in the form the preset plays
        label = f"{form.shape}/{form.bars}/{form.bass_loop}/{form.drums_loop}"
        if (form.bass_share, form.drums_share) != (1.0, 1.0):
            label += f"/{form.bass_share:g}/{form.drums_share:g}"
        assert measured[name]["form"] == label, name


@pytest.mark.parametrize("body, where, allowed", [
    ("repetition = 1.5", "presets.a.repetition", "0.0..1.0"),
    ("repetition = -0.5", "presets.a.repetition", "0.0..1.0"),
    ('repetition = "loop"', "presets.a.repetition", "0.0..1.0"),
    ('form = { shape = "AXBA" }', "presets.a.form.shape", "letters A..H"),
    ('form = { shape = "" }', "presets.a.form.shape", "letters A..H"),
    ("form = { shape = 4 }", "presets.a.form.shape", "letters A..H"),
    ("form = { bars = 20 }", "presets.a.form.bars", "1..16"),
    ('form = { shape = "AB", bars = 32 }', "presets.a.form.bars", "1..16"),
    ("form = { bars = 6 }", "presets.a.form.bars", "a multiple of 4"),
    ('form = { bars = "8" }', "presets.a.form.bars", "1..16"),
    ("form = { bass_loop = 9 }", "presets.a.form.bass_loop", "0..8"),
    ("form = { drums_loop = -1 }", "presets.a.form.drums_loop", "0..8"),
    ("form = { tempo = 2 }", "presets.a.form.tempo", "shape, bars, bass_loop, drums_loop"),
    ("form = { drums_share = 1.5 }", "presets.a.form.drums_share", "0..1"),
    ('form = { bass_share = "half" }', "presets.a.form.bass_share", "0..1"),
    ('form = "AABA"', "presets.a.form", "table {shape"),
])
def test_a_bad_repetition_or_form_in_a_preset_names_the_file_line_preset_and_key(
        tmp_path, body, where, allowed):
    path = states(tmp_path, body)
    with pytest.raises(InvalidMessage) as info:
        protocol.load_states(path)
    text = str(info.value)
    assert text.startswith(f"{path}, line 5: {where}: "), text
    assert info.value.field == where
    assert allowed in protocol.show(info.value.allowed), text
