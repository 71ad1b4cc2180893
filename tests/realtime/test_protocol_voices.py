"""The ``voices`` field (mood, state, session open) and states.toml's voices: every bad
input refused naming the part and what is allowed; the shipped presets' voices."""
import json

import pytest

from engine.ensemble import DEFAULTS, VOICES, Voice
from engine.errors import InvalidMessage
from realtime import protocol
from realtime.protocol import parse

ALL_OFF = dict.fromkeys(VOICES, False)


def refused(value, kind="mood"):
    """The InvalidMessage a ``kind`` message with ``voices`` = ``value`` gets (over JSON)."""
    msg = {"type": kind, "voices": value}
    if kind == "state":
        msg["name"] = "combat"
    if kind == "session":
        msg.update(action="open", session="p2")
    with pytest.raises(InvalidMessage) as info:
        parse(json.dumps(msg))
    reply = json.loads(protocol.error_reply(info.value))
    assert (reply["code"], reply["field"]) == (info.value.code, info.value.field)
    assert info.value.field in str(info.value)
    return info.value


@pytest.mark.parametrize("kind", ["mood", "state", "session"])
def test_voices_are_normalised_on_mood_state_and_session_open(kind):
    extra = {"mood": {}, "state": {"name": "stealth"}, "session": {"action": "open", "session": "p2"}}[kind]
    value = {"melody": True, "bass": "auto", "drums": False,
             "harmony": {"program": 89, "channel": 4, "octave": -1, "play": "auto"}}
    msg = parse(json.dumps({"type": kind, "voices": value, **extra}))
    assert msg["voices"] == {"melody": {"play": True}, "bass": {"play": "auto"},
                             "drums": {"play": False},
                             "harmony": {"program": 89, "channel": 4, "octave": -1, "play": "auto"}}
    del extra  # left out: None, the session's (or preset's) stay
    assert parse(json.dumps({"type": kind, **({"mood": {"arousal": 1}, "state": {"name": "calm"},
                                                "session": {"action": "open", "session": "p2"}}[kind])}))[
        "voices"] is None


def test_voices_alone_make_a_mood_message():
    assert parse(b'{"type":"mood","voices":{"drums":true}}')["voices"] == {"drums": {"play": True}}


def test_the_edges_of_each_setting_are_accepted():
    for key, (lo, hi) in protocol.VOICE_RANGES.items():
        for value in (lo, hi):
            voice = "bass"
            assert parse(json.dumps({"type": "mood", "voices": {voice: {key: value}}}))["voices"] == \
                {voice: {key: value}}
    three_off = {"melody": False, "bass": False, "harmony": False}
    assert parse(json.dumps({"type": "mood", "voices": three_off}))["voices"]["harmony"] == {"play": False}


@pytest.mark.parametrize("value,code,field,text", [
    ({"kazoo": True}, "bad_choice", "voices", "'kazoo', which is not a voice"),
    ({"bass": {"program": 128}}, "out_of_range", "voices.bass.program", "is 128; allowed: 0..127"),
    ({"bass": {"program": -1}}, "out_of_range", "voices.bass.program", "0..127"),
    ({"bass": {"program": 12.0}}, "bad_type", "voices.bass.program", "integer, not number"),
    ({"bass": {"program": True}}, "bad_type", "voices.bass.program", "not boolean"),
    ({"bass": {"channel": 16}}, "out_of_range", "voices.bass.channel", "0..15"),
    ({"bass": {"octave": 4}}, "out_of_range", "voices.bass.octave", "-3..3"),
    ({"drums": {"octave": 1}}, "out_of_range", "voices.drums.octave", "drums are never transposed"),
    ({"bass": {"play": "maybe"}}, "bad_choice", "voices.bass.play", 'true, false, "auto"'),
    ({"bass": {"play": 1}}, "bad_type", "voices.bass.play", "is 1"),
    ({"bass": {"volume": 3}}, "bad_choice", "voices.bass", "play, program, channel, octave"),
    ({"bass": {}}, "out_of_range", "voices.bass", "sets nothing"),
    ({"bass": "loud"}, "bad_choice", "voices.bass", "'loud'"),
    ({"bass": None}, "bad_type", "voices.bass", "not null"),
    ({"bass": 3}, "bad_type", "voices.bass", "not integer"),
    ({"bass": {"channel": 5}, "harmony": {"channel": 5}}, "out_of_range", "voices",
     "channel 5 to two voices (bass and harmony)"),
    (ALL_OFF, "out_of_range", "voices", "every voice off"),
    ({}, "out_of_range", "voices", "empty object"),
    ([["bass", True]], "bad_type", "voices", "not array"),
    (7, "bad_type", "voices", "not integer"),
    ("drums: off", "bad_type", "voices", "not JSON"),
    ("[" * 100 + "]" * 100, "bad_type", "voices", "nested deeper"),
    ("7", "bad_type", "voices", "not integer"),
])
def test_each_bad_voices_value_is_refused_naming_the_part(value, code, field, text):
    for kind in ("mood", "state", "session"):
        exc = refused(value, kind)
        assert (exc.code, exc.field) == (code, field), str(exc)
        assert text in str(exc) and exc.allowed is not None
        assert f"'{kind}' field '{field}'" in str(exc)


def test_what_each_refusal_allows():
    assert refused({"kazoo": True}).allowed == list(VOICES)
    assert refused({"bass": {"program": 128}}).allowed == "0..127"
    assert refused({"bass": {"play": "x"}}).allowed == [True, False, "auto"]
    assert refused({"bass": {"volume": 1}}).allowed == ["play", "program", "channel", "octave"]
    whole = next(f for f in protocol.message_spec("mood").fields if f.name == "voices").allowed()
    for value in ({}, ALL_OFF, {"bass": {"channel": 1}, "drums": {"channel": 1}}, 7):
        assert refused(value).allowed == whole  # the value as a whole: what the table allows
    assert all(v in whole for v in VOICES) and "0..127" in whole


def test_voices_over_osc_are_json_text():
    """validate reads a string (OSC has no objects) and checks what it holds."""
    msg = protocol.validate({"type": "mood", "voices": '{"drums": true, "bass": {"octave": -2}}'})
    assert msg["voices"] == {"drums": {"play": True}, "bass": {"octave": -2}}
    with pytest.raises(InvalidMessage) as info:
        protocol.validate({"type": "mood", "voices": '{"bass": {"program": 300}}'})
    assert (info.value.code, info.value.field) == ("out_of_range", "voices.bass.program")


def test_voices_only_with_session_open():
    with pytest.raises(InvalidMessage) as info:
        parse(json.dumps({"type": "session", "action": "close", "session": "p2", "voices": {"bass": True}}))
    assert (info.value.code, info.value.field) == ("unknown_field", "voices")


def test_voices_come_after_the_older_fields_in_osc_order():
    """Appended (then repetition and style, appended after them): the positions OSC
    clients already use do not move."""
    for name, before, after in (
            ("mood", ["valence", "arousal", "intensity", "transition", "tonality", "critic"],
             ["style"]),
            ("state", ["name", "transition", "tonality", "critic"], ["style"]),
            ("session", ["action", "session", "state"], [])):
        assert list(protocol.message_spec(name).positional()) == \
            before + ["voices", "repetition"] + after


# ---------------------------------------------------------------- states.toml

PRESET = '[presets.a]\nvalence = 0\narousal = 0\nintensity = 0\n'
STINGER = '[stingers.hit]\ndegrees = [1]\ndurations = [1]\n'


def states(tmp_path, text):
    path = tmp_path / "states.toml"
    path.write_text(text)
    return path


def test_shipped_voices_are_the_engine_defaults():
    """states.toml shows every key of every voice; its values are engine.ensemble's."""
    assert protocol.load_voices() == DEFAULTS
    assert all(isinstance(v, Voice) for v in protocol.load_voices())


def test_shipped_presets_voices():
    presets, _ = protocol.load_states()
    assert presets["stealth"]["voices"] == {"melody": {"play": False}, "drums": {"play": False},
                                            "harmony": {"program": 89}}
    assert presets["calm"]["voices"] == {"drums": {"play": False}, "bass": {"play": False},
                                         "harmony": {"program": 89}}
    assert presets["victory"]["voices"] == {"melody": {"program": 56}}
    for name in ("combat", "boss", "explore", "menu", "defeat"):
        assert "voices" not in presets[name]  # all auto: layering decides


def test_load_voices_updates_the_defaults_by_table(tmp_path):
    path = states(tmp_path, PRESET + STINGER + '[voices.bass]\nprogram = 38\nchannel = 5\n'
                  'octave = -1\nenter = 0.5\npresence = 1.5\n[voices.drums]\nenter = 1\n')
    melody, bass, harmony, drums = protocol.load_voices(path)
    assert (melody, harmony) == (DEFAULTS[0], DEFAULTS[2])
    assert bass == Voice("bass", 38, 5, DEFAULTS[1].register, octave=-1, enter=0.5, presence=1.5)
    assert drums.enter == 1.0 and type(drums.enter) is float and drums.channel == 9
    assert protocol.load_states(path)[0]["a"] == {"valence": 0.0, "arousal": 0.0, "intensity": 0.0}


def test_without_a_voices_section_the_defaults(tmp_path, monkeypatch):
    path = states(tmp_path, PRESET + STINGER)
    assert protocol.load_voices(path) == DEFAULTS
    monkeypatch.setenv("OSTINATO_STATES", str(path))
    assert protocol.load_voices() == DEFAULTS


@pytest.mark.parametrize("text,where,line,allowed", [
    ('[voices.kazoo]\nprogram = 1\n', "voices.kazoo", 8, ["melody", "bass", "harmony", "drums"]),
    ('[voices.bass]\nvolume = 1\n', "voices.bass.volume", 9,
     ["program", "channel", "octave", "enter", "presence"]),
    ('[voices.bass]\nprogram = 128\n', "voices.bass.program", 9, "0..127"),
    ('[voices.bass]\nprogram = 1.0\n', "voices.bass.program", 9, "0..127"),
    ('[voices.bass]\nchannel = -1\n', "voices.bass.channel", 9, "0..15"),
    ('[voices.bass]\noctave = 4\n', "voices.bass.octave", 9, "-3..3"),
    ('[voices.drums]\noctave = -1\n', "voices.drums.octave", 9, "0 (drums are never transposed)"),
    ('[voices.bass]\nenter = 1.5\n', "voices.bass.enter", 9, "0.0..1.0"),
    ('[voices.bass]\nenter = nan\n', "voices.bass.enter", 9, "0.0..1.0"),
    ('[voices.bass]\npresence = 9\n', "voices.bass.presence", 9, "0.0..8.0"),
    ('[voices.bass]\npresence = true\n', "voices.bass.presence", 9, "0.0..8.0"),
    ('[voices]\nbass = 3\n', "voices.bass", 9, ["program", "channel", "octave", "enter", "presence"]),
    ('[voices.bass]\nprogram = 1\nchannel = 9\n', "voices.bass.channel", 10,
     "a channel 0..15 no other voice has"),
])
def test_bad_voices_tables_name_file_line_key_and_allowed(tmp_path, text, where, line, allowed):
    path = states(tmp_path, PRESET + STINGER + text)
    for load in (protocol.load_voices, protocol.load_states):  # start-up reads both
        with pytest.raises(InvalidMessage) as info:
            load(path)
        assert (info.value.field, info.value.allowed) == (where, allowed)
        assert str(info.value).startswith(f"{path}, line {line}: {where}: ")


def test_two_voices_on_one_channel_name_both(tmp_path):
    path = states(tmp_path, PRESET + STINGER + '[voices.harmony]\nchannel = 1\n')
    with pytest.raises(InvalidMessage, match=r"voices.harmony.channel: channel 1 is taken twice "
                                             r"\(bass and harmony\)"):
        protocol.load_voices(path)


@pytest.mark.parametrize("voices,where,text", [
    ('{ melody = false, bass = false, harmony = false, drums = false }', "presets.b.voices",
     "turns every voice off"),
    ('{ harmony = { program = 200 } }', "presets.b.voices.harmony.program", "is 200; allowed: 0..127"),
    ('{ trumpet = true }', "presets.b.voices", "'trumpet', which is not a voice; allowed: melody, bass"),
    ('{ bass = { channel = 0 } }', "presets.b.voices.bass.channel",
     "channel 0 is taken twice (melody and bass)"),
    ('{ bass = { channel = 4 }, drums = { channel = 4 } }', "presets.b.voices",
     "gives channel 4 to two voices (bass and drums)"),
    ('"drums"', "presets.b.voices", "'drums' is not accepted"),
])
def test_bad_preset_voices_name_file_preset_and_key(tmp_path, voices, where, text):
    path = states(tmp_path, PRESET + '\n[presets.b]\nvalence = 0\narousal = 0\nintensity = 0\n'
                  f'voices = {voices}\n' + STINGER)
    with pytest.raises(InvalidMessage) as info:
        protocol.load_states(path)
    assert info.value.field == where
    assert str(info.value).startswith(f"{path}, line 10: {where}: ") and text in str(info.value)


def test_a_preset_channel_is_checked_against_the_files_voices(tmp_path):
    """The [voices] defaults count: bass moved to channel 6 frees 1 for the preset's melody,
    and takes 6 from it; a sub-table names its line."""
    voices = '[voices.bass]\nchannel = 6\n'
    ok = PRESET + 'voices = { melody = { channel = 1 } }\n' + STINGER + voices
    assert protocol.load_states(states(tmp_path, ok))[0]["a"]["voices"] == {"melody": {"channel": 1}}
    clash = PRESET + '[presets.a.voices.melody]\nchannel = 6\n' + STINGER + voices
    with pytest.raises(InvalidMessage) as info:
        protocol.load_states(states(tmp_path, clash))
    assert info.value.field == "presets.a.voices.melody.channel"
    assert "line 6:" in str(info.value) and "(melody and bass)" in str(info.value)


def test_an_unknown_section_lists_the_voices_among_the_allowed(tmp_path):
    with pytest.raises(InvalidMessage) as info:
        protocol.load_states(states(tmp_path, PRESET + STINGER + '[layers.bass]\nprogram = 1\n'))
    assert info.value.allowed == ["presets", "stingers", "themes", "voices", "transitions"]
