"""The protocol table drives these tests: every message, every field, every error code."""
import json
from pathlib import Path

import pytest

from engine.errors import InvalidMessage
from realtime import protocol, protocoldoc
from realtime.protocol import MESSAGES, PRESETS, STINGERS, parse

ROOT = Path(__file__).resolve().parents[2]
PRESET_NAMES, STINGER_NAMES = protocol.load_states()
FIELDS = [(m.name, f) for m in MESSAGES for f in m.fields]


def expect_error(obj, code, field):
    data = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    with pytest.raises(InvalidMessage) as info:
        parse(data)
    exc = info.value
    assert (exc.code, exc.field) == (code, field), str(exc)
    reply = json.loads(protocol.error_reply(exc))
    assert reply["ok"] is False and reply["type"] == "error" and reply["code"] == code
    assert reply["field"] == field and reply["allowed"] == exc.allowed
    if field is not None:
        assert field.split(",")[0] in reply["message"]
    return exc


def base(_kind, **fields):
    """A valid message of this type, with ``fields`` replaced."""
    msg = protocol.example(_kind)
    msg.update(fields)
    return msg


@pytest.mark.parametrize("name", protocol.MESSAGE_TYPES)
def test_every_example_parses_with_defaults_filled(name):
    msg = parse(json.dumps(base(name)).encode())
    spec = protocol.message_spec(name)
    assert msg["type"] == name and msg["id"] == 1
    assert msg["session"] == ("player2" if spec.session_required else "main")
    for field in spec.fields:
        assert field.name in msg
        value = msg[field.name]
        assert value == (field.example if field.example is not None else field.default)
        if field.kind == "float":
            assert isinstance(value, float)


def test_defaults_are_filled_for_omitted_fields():
    assert parse(b'{"type":"tempo","bpm":120}') == {
        "type": "tempo", "id": None, "session": "main", "bpm": 120.0, "ramp_beats": 0.0,
        "transition": "beat"}
    msg = parse(b'{"type":"mood","arousal":1}')
    assert (msg["valence"], msg["arousal"], msg["intensity"], msg["transition"]) == (None, 1.0, None, "bar")
    assert parse(b'{"type":"stinger","name":"hit"}')["transition"] == "beat"
    assert parse(b'{"type":"key","key":"E"}')["mode"] is None


@pytest.mark.parametrize("kind,field", [(k, f) for k, f in FIELDS if f.kind == "float"],
                         ids=lambda x: getattr(x, "name", x))
def test_float_fields_reject_out_of_range_and_wrong_type(kind, field):
    for value in (field.lo - 0.001, field.hi + 0.001, field.hi * 10 + 1):
        exc = expect_error(base(kind, **{field.name: value}), "out_of_range", field.name)
        assert exc.allowed == f"{field.lo!r}..{field.hi!r}"
        assert exc.allowed in str(exc)
    for value in ("fast", True, None, [1]):
        expect_error(base(kind, **{field.name: value}), "bad_type", field.name)
    for value in (field.lo, field.hi, int(field.hi)):
        assert parse(json.dumps(base(kind, **{field.name: value})).encode())[field.name] == float(value)


def test_nan_and_infinity_are_out_of_range():
    expect_error(b'{"type":"mood","valence":NaN}', "out_of_range", "valence")
    expect_error(b'{"type":"tempo","bpm":Infinity}', "out_of_range", "bpm")


@pytest.mark.parametrize("kind,field", [(k, f) for k, f in FIELDS if f.kind in ("choice", "key")],
                         ids=lambda x: getattr(x, "name", x))
def test_choice_fields_reject_unknown_choices_and_wrong_type(kind, field):
    choices = {PRESETS: list(PRESET_NAMES), STINGERS: list(STINGER_NAMES)}.get(field.choices, field.choices)
    exc = expect_error(base(kind, **{field.name: "no-such-choice"}), "bad_choice", field.name)
    assert exc.allowed == list(choices)
    assert all(str(c) in str(exc) for c in choices)
    expect_error(base(kind, **{field.name: 3}), "bad_type", field.name)
    for choice in choices:
        msg = base(kind, **{field.name: choice})
        if msg.get("action") == "close":
            for name in protocol.OPEN_ONLY:  # only "open" takes a state or a repetition
                msg.pop(name, None)
        if kind == "theme" and msg.get("action") == "set":
            msg["name"] = "hero"  # a theme to set is given, by notes or name
        assert parse(json.dumps(msg).encode())[field.name] == choice


@pytest.mark.parametrize("kind,field", [(k, f) for k, f in FIELDS if f.required],
                         ids=lambda x: getattr(x, "name", x))
def test_required_fields_are_required(kind, field):
    msg = base(kind)
    del msg[field.name]
    exc = expect_error(msg, "missing_field", field.name)
    assert exc.allowed == field.allowed(list(PRESET_NAMES), list(STINGER_NAMES))


def test_mood_needs_at_least_one_axis():
    exc = expect_error({"type": "mood", "transition": "now"}, "missing_field",
                       "valence,arousal,intensity,tonality,critic,voices,repetition,style")
    assert "at least one of valence, arousal, intensity, tonality, critic, voices, repetition, " \
        "style" in str(exc)
    assert parse(b'{"type":"mood","tonality":1}')["tonality"] == 1.0  # the prior alone
    assert parse(b'{"type":"mood","critic":4}')["critic"] == 4  # the critic alone
    assert parse(b'{"type":"mood","repetition":1}')["repetition"] == 1.0  # the repetition alone
    assert parse(b'{"type":"mood","style":"game"}')["style"] == "game"  # the style alone


@pytest.mark.parametrize("kind", ["key", "mood", "state"])
def test_tonality_is_a_number_in_0_1_on_key_mood_and_state(kind):
    for value in (-0.1, 1.5):
        exc = expect_error(base(kind, tonality=value), "out_of_range", "tonality")
        assert "0.0..1.0" in str(exc) and exc.allowed == "0.0..1.0"
    for value in ("x", True, None):
        exc = expect_error(base(kind, tonality=value), "bad_type", "tonality")
        assert "0.0..1.0" in str(exc)
    head = json.dumps(base(kind))[:-1].encode()
    expect_error(head + b', "tonality": NaN}', "out_of_range", "tonality")
    assert parse(json.dumps(base(kind, tonality=0)).encode())["tonality"] == 0.0
    msg = base(kind)
    del msg["tonality"]
    assert parse(json.dumps(msg).encode())["tonality"] is None  # keep the current


def test_keys_accept_lower_case_and_keep_canonical_spelling():
    for written, canonical in (("c", "C"), ("c#", "C#"), ("db", "Db"), ("BB", "Bb"), ("F#", "F#")):
        assert parse(json.dumps({"type": "key", "key": written}).encode())["key"] == canonical
    expect_error({"type": "key", "key": "H"}, "bad_choice", "key")
    expect_error({"type": "key", "key": "Cb"}, "bad_choice", "key")


def test_envelope_fields():
    msg = parse(b'{"type":"start","id":"abc","session":"p-2.x_y","v":1}')
    assert (msg["id"], msg["session"]) == ("abc", "p-2.x_y") and "v" not in msg
    expect_error({"type": "start", "session": ""}, "out_of_range", "session")
    expect_error({"type": "start", "session": "a b"}, "out_of_range", "session")
    expect_error({"type": "start", "session": "x" * 65}, "out_of_range", "session")
    expect_error({"type": "start", "session": 5}, "bad_type", "session")
    expect_error({"type": "start", "id": True}, "bad_type", "id")
    expect_error({"type": "start", "id": [1]}, "bad_type", "id")
    expect_error({"type": "start", "id": "x" * 129}, "bad_type", "id")
    expect_error({"type": "start", "v": 2}, "out_of_range", "v")


def test_session_message_rules():
    assert parse(b'{"type":"session","action":"open","session":"p2","state":"calm"}')["state"] == "calm"
    expect_error({"type": "session", "action": "open"}, "missing_field", "session")
    expect_error({"type": "session", "action": "close", "session": "p2", "state": "calm"},
                 "unknown_field", "state")


def test_whole_message_errors():
    expect_error(b"x" * (protocol.MAX_MESSAGE_BYTES + 1), "too_large", None)
    at_limit = b'{"type":"start"' + b" " * (protocol.MAX_MESSAGE_BYTES - 16) + b"}"
    assert len(at_limit) == protocol.MAX_MESSAGE_BYTES and parse(at_limit)["type"] == "start"
    expect_error(at_limit[:-1] + b" }", "too_large", None)
    expect_error(b"\xff\xfe{}", "invalid_json", None)
    expect_error(b'{"type":"start"', "invalid_json", None)
    expect_error(b"", "invalid_json", None)
    expect_error(b"[1, 2]", "invalid_json", None)
    expect_error(b'"mood"', "invalid_json", None)
    exc = expect_error(b'{"id": 4}', "unknown_type", "type")
    assert exc.allowed == list(protocol.MESSAGE_TYPES) and exc.msg_id == 4
    expect_error(b'{"type":"dance"}', "unknown_type", "type")
    expect_error(b'{"type":7}', "unknown_type", "type")
    exc = expect_error(b'{"type":"ping","zz":1,"aa":2}', "unknown_field", "aa,zz")
    assert "'aa'" in str(exc) and "'zz'" in str(exc)
    expect_error(b'{"type":"stop","bpm":120}', "unknown_field", "bpm")


def test_error_reply_echoes_the_id_of_a_bad_message():
    with pytest.raises(InvalidMessage) as info:
        parse(b'{"type":"tempo","bpm":1000,"id":"t-1"}')
    assert json.loads(protocol.error_reply(info.value))["id"] == "t-1"


def test_replies():
    msg = parse(b'{"type":"ping","id":9,"session":"s"}')
    assert json.loads(protocol.ok_reply(msg, t_ns=5)) == {
        "ok": True, "type": "pong", "id": 9, "for": "ping", "session": "s", "t_ns": 5}
    assert json.loads(protocol.ok_reply(parse(b'{"type":"hello"}')))["type"] == "hello"
    assert json.loads(protocol.ok_reply(parse(b'{"type":"stop"}')))["type"] == "ack"
    reply = json.loads(protocol.error_reply(RuntimeError("boom"), msg_id=3))
    assert (reply["code"], reply["id"], reply["field"]) == ("server_error", 3, None)
    assert "boom" in reply["message"]
    semantic = protocol.reject("bad_choice", "session 'x' is not open", "session", ["main"])
    assert json.loads(protocol.error_reply(semantic))["code"] == "bad_choice"
    plain = InvalidMessage("no", field="bpm", allowed="30.0..300.0")
    assert protocol.error_code(plain) == "out_of_range"


def test_events_round_trip_as_json():
    data = protocol.encode_event("note_on", "main", 123, 1_700_000_000_000_000_000, 16.25, 0, 60, 90)
    event = protocol.decode_event(data)
    assert event == {"v": 1, "type": "note_on", "session": "main", "seq": 123,
                     "t_ns": 1_700_000_000_000_000_000, "beat": 16.25, "channel": 0, "pitch": 60,
                     "velocity": 90}
    assert data.startswith(b'{"v":1,"type":"note_on"')  # the SUB prefix filter relies on this
    off = protocol.decode_event(protocol.encode_event("note_off", 'we"ird', 124, 5, 17, 1, 61, 0))
    assert (off["session"], off["beat"], off["velocity"]) == ('we"ird', 17.0, 0)
    mood = protocol.decode_event(protocol.encode_event("mood", "main", 3, 10, 8.0, valence=0.5,
                                                       arousal=0.2, intensity=0.1))
    assert mood["type"] == "mood" and mood["valence"] == 0.5 and mood["beat"] == 8.0
    transport = protocol.decode_event(protocol.encode_event("transport", "main", 4, 11, 0.0, state="pause"))
    assert transport["state"] == "pause"
    with pytest.raises(ValueError, match="unknown event type"):
        protocol.encode_event("explode", "main", 1, 1, 0.0)
    for bad in (b"nope", b"[]", b'{"v":2,"type":"note_on"}', b'{"v":1,"type":"dance"}'):
        with pytest.raises(InvalidMessage):
            protocol.decode_event(bad)


def test_shipped_states_have_the_documented_presets_and_stingers():
    for name in ("explore", "calm", "stealth", "combat", "boss", "victory", "defeat", "menu"):
        preset = PRESET_NAMES[name]
        assert -1 <= preset["valence"] <= 1 and 0 <= preset["arousal"] <= 1
    for name in ("hit", "discovery", "danger", "victory"):
        stinger = STINGER_NAMES[name]
        assert len(stinger["degrees"]) == len(stinger["durations"]) > 0


def write(tmp_path, text):
    path = tmp_path / "states.toml"
    path.write_text(text)
    return path


GOOD_STINGER = '[stingers.hit]\ndegrees = [1]\ndurations = [1]\n'


@pytest.mark.parametrize("text,where", [
    ('[presets.a]\nvalence = 2\narousal = 0\nintensity = 0\n' + GOOD_STINGER, "presets.a.valence"),
    ('[presets.a]\nvalence = 0\narousal = 0\n' + GOOD_STINGER, "presets.a.intensity"),
    ('[presets.a]\nvalence = 0\narousal = 0\nintensity = 0\nkey = "H"\n' + GOOD_STINGER, "presets.a.key"),
    ('[presets.a]\nvalence = 0\narousal = 0\nintensity = 0\nbpm = 500\n' + GOOD_STINGER, "presets.a.bpm"),
    ('[presets.a]\nvalence = 0\narousal = 0\nintensity = 0\ncolour = 1\n' + GOOD_STINGER, "presets.a.colour"),
    ('[presets."a b"]\nvalence = 0\narousal = 0\nintensity = 0\n' + GOOD_STINGER, "presets.a b"),
    ('[presets.session]\nvalence = 0\narousal = 0\nintensity = 0\n' + GOOD_STINGER, "presets.session"),
    ('[presets.a]\nvalence = 0\narousal = 0\nintensity = 0\n'
     '[stingers.hit]\ndegrees = [1, 2]\ndurations = [1]\n', "stingers.hit.durations"),
    ('[presets.a]\nvalence = 0\narousal = 0\nintensity = 0\n'
     '[stingers.hit]\ndegrees = [99]\ndurations = [1]\n', "stingers.hit.degrees"),
    ('[presets.a]\nvalence = 0\narousal = 0\nintensity = 0\n'
     '[stingers.hit]\ndegrees = [1]\ndurations = [1]\nvelocity = 0\n', "stingers.hit.velocity"),
    ('[presets.a]\nvalence = 0\narousal = 0\nintensity = 0\n', "stingers"),
    ('[presets.a\n', None),
    ('[presets.a]\nvalence = 0\narousal = 0\nintensity = 0\ntonality = 1.5\n' + GOOD_STINGER,
     "presets.a.tonality"),
    ('[presets.a]\nvalence = 0\narousal = 0\nintensity = 0\nmax_note_beats = 0\n' + GOOD_STINGER,
     "presets.a.max_note_beats"),
])
def test_bad_states_files_name_file_entry_and_field(tmp_path, text, where):
    path = write(tmp_path, text)
    with pytest.raises(InvalidMessage) as info:
        protocol.load_states(path)
    assert str(path) in str(info.value)
    assert info.value.field == where
    if where:
        assert where in str(info.value)


@pytest.mark.parametrize("field,value,allowed", [
    ("tonality", "1.5", "0.0..1.0"), ("tonality", "-0.1", "0.0..1.0"),
    ("tonality", '"strict"', "0.0..1.0"), ("tonality", "nan", "0.0..1.0"),
    ("max_note_beats", "0", "0.25..64.0"), ("max_note_beats", "100", "0.25..64.0"),
    ("max_note_beats", "true", "0.25..64.0"),
])
def test_bad_tonality_or_max_note_beats_in_a_preset_names_the_line(tmp_path, field, value, allowed):
    text = ('[presets.a]\nvalence = 0\narousal = 0\nintensity = 0\n\n[presets.b]\nvalence = 0\n'
            f'arousal = 0\nintensity = 0\n{field} = {value}\n' + GOOD_STINGER)
    with pytest.raises(InvalidMessage) as info:
        protocol.load_states(write(tmp_path, text))
    assert f"line 10: presets.b.{field}:" in str(info.value)
    assert info.value.field == f"presets.b.{field}" and info.value.allowed == allowed
    assert allowed in str(info.value)


def test_presets_may_set_tonality_and_max_note_beats(tmp_path):
    text = ('[presets.a]\nvalence = 0\narousal = 0\nintensity = 0\ntonality = 1\n'
            'max_note_beats = 2\n' + GOOD_STINGER)
    presets, _ = protocol.load_states(write(tmp_path, text))
    assert presets["a"]["tonality"] == 1.0 and presets["a"]["max_note_beats"] == 2.0


def test_missing_states_file_is_a_clear_error(tmp_path):
    with pytest.raises(InvalidMessage, match="cannot read states file"):
        protocol.load_states(tmp_path / "nope.toml")


def test_user_states_file_by_env_var_changes_accepted_names(tmp_path, monkeypatch):
    path = write(tmp_path, '[presets.lava]\nvalence = -0.2\narousal = 0.9\nintensity = 0.7\n'
                           'key = "f#"\nregister = -12\n'
                           '[stingers.boing]\ndegrees = [1, 8]\ndurations = [0.5, 0.5]\n')
    monkeypatch.setenv("OSTINATO_STATES", str(path))
    presets, stingers = protocol.load_states()
    assert presets == {"lava": {"valence": -0.2, "arousal": 0.9, "intensity": 0.7, "key": "F#",
                                "register": -12}}
    assert stingers == {"boing": {"degrees": [1, 8], "durations": [0.5, 0.5], "velocity": 100,
                                  "min_interval_beats": 0.0, "queue": "drop"}}
    assert parse(b'{"type":"state","name":"lava"}')["name"] == "lava"
    expect_error({"type": "state", "name": "combat"}, "bad_choice", "name")
    assert parse(b'{"type":"state","name":"x"}', presets=["x"], stingers=[])["name"] == "x"


def test_scale_degrees():
    assert [protocol.degree_to_semitones(d, "major") for d in (1, 3, 5, 8, 0, -6)] == [0, 4, 7, 12, -1, -12]
    assert [protocol.degree_to_semitones(d, "minor") for d in (3, 6, 7)] == [3, 8, 10]


def test_protocol_md_has_every_message_and_field_and_current_tables():
    text = (ROOT / "PROTOCOL.md").read_text()
    for m in MESSAGES:
        assert f"### `{m.name}`" in text
        for f in m.fields + protocol.ENVELOPE:
            assert f"`{f.name}`" in text
    for code in protocol.ERROR_CODES:
        assert f"`{code}`" in text
    for kind in protocol.EVENT_TYPES:
        assert f"`{kind}`" in text
    assert protocoldoc.requests_markdown() in text, "regenerate: python -m realtime.protocoldoc --write"


def test_protocol_md_is_what_the_table_and_template_give():
    """Everything but the Examples section, checked without a server: the committed
    examples are put back in, and the rest must be what the generator writes now."""
    text = (ROOT / "PROTOCOL.md").read_text()
    assert text == protocoldoc.document(examples=committed_examples(text)), \
        "regenerate: python -m realtime.protocoldoc --write"


def test_protocol_md_error_replies_are_the_validators():
    """Each error example is the reply ``parse`` gives now: unknown_type lists every type."""
    errors = protocoldoc.errors_markdown()
    assert json.dumps(list(protocol.MESSAGE_TYPES)) in errors
    assert errors in (ROOT / "PROTOCOL.md").read_text()


def committed_examples(text):
    """The Examples section of PROTOCOL.md's ``text`` (its heading to the blank line before
    "## Errors")."""
    start = text.index("## Examples\n")
    return text[start:text.index("## Errors\n", start)][:-1]


def test_protocol_md_examples_are_valid_requests():
    text = (ROOT / "PROTOCOL.md").read_text()
    examples = text.split("## Examples", 1)[1].split("## Errors", 1)[0]
    blocks = [json.loads(b.split("```", 1)[0]) for b in examples.split("```json\n")[1:]]
    requests = [b for b in blocks if "ok" not in b]
    assert sorted({r["type"] for r in requests}) == sorted(protocol.MESSAGE_TYPES)
    for request in requests:
        parse(json.dumps(request).encode())


def test_protocol_md_is_what_the_generator_writes():
    """PROTOCOL.md is, byte for byte, what ``python -m realtime.protocoldoc --write`` writes
    now, its Examples being what a server on the shipped model answers (``protocoldoc``
    starts one on 127.0.0.1 and sends every example; the values that depend on arrival
    time are placeholders, so the text is the same on every run)."""
    assert (ROOT / "PROTOCOL.md").read_text() == protocoldoc.document(), \
        "regenerate: python -m realtime.protocoldoc --write"


def test_example_placeholders_replace_only_timing_values_of_their_type():
    """Only the values that depend on arrival time become placeholders, and only when the
    real value is of the type the placeholder names."""
    reply = {"ok": True, "type": "ack", "beat": 8.0, "bpm": 140.0, "pitches": [81, 74]}
    # a stinger's pitches follow the chord sounding when it arrives
    assert protocoldoc.stable(reply) == {"ok": True, "type": "ack", "beat": "<number>",
                                      "bpm": 140.0, "pitches": "<pitches>"}
    assert reply["beat"] == 8.0  # the reply itself is left as it came
    assert protocoldoc.stable({"type": "pong", "t_ns": 12345})["t_ns"] == "<integer>"
    with pytest.raises(TypeError, match="'beat'"):
        protocoldoc.stable({"beat": "8"})
    with pytest.raises(TypeError, match="'t_ns'"):
        protocoldoc.stable({"t_ns": 1.5})


def test_example_order_sends_hello_first_and_covers_every_type():
    assert protocoldoc.ORDER[0] == "hello"
    assert sorted(protocoldoc.ORDER) == sorted(protocol.MESSAGE_TYPES)
    with pytest.raises(ValueError, match="ping"):
        protocoldoc.collect(order=[t for t in protocol.MESSAGE_TYPES if t != "ping"])


def test_theme_notes_are_checked_and_named():
    ok = parse(json.dumps({"type": "theme", "notes": [[62, 0, 1], [65, 1.5, 0.5], [69, 2, 2]]}))
    assert ok["notes"] == [[62, 0, 1], [65, 1.5, 0.5], [69, 2, 2]] and ok["variation"] == 0.3
    osc = protocol.validate({"type": "theme", "notes": "[[62, 0, 1], [65, 1, 1], [69, 2, 2]]"})
    assert osc["notes"] == [[62, 0, 1], [65, 1, 1], [69, 2, 2]]  # OSC sends it as JSON text
    for notes, code, text in (([[62, 0, 1]], "out_of_range", "at least 3 notes"),
                              ([[62, 0, 1], [65, 1], [69, 2, 2]], "out_of_range", "notes[1]"),
                              ([[1, 0, 1]] * 600, "out_of_range", "600 notes"),
                              ("[[62", "bad_type", "not JSON"), (62, "bad_type", "integer"),
                              ([62, 65, 69], "bad_type", "a list of")):
        exc = expect_error({"type": "theme", "notes": notes}, code, "notes")
        assert text in str(exc)
    expect_error({"type": "theme"}, "missing_field", "notes,name")
    three = [[62, 0, 1], [65, 1, 1], [69, 2, 2]]
    expect_error({"type": "theme", "notes": three, "name": "hero"}, "unknown_field", "name")
    expect_error({"type": "theme", "action": "free", "notes": three}, "unknown_field", "notes")

