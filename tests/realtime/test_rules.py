"""states.toml's [[transitions]] rules and the stingers' cooldown keys: the shipped file's
rules, the lookup by (from, to), and bad files refused naming file, line, rule and what is
allowed."""
import dataclasses

import pytest

from engine.errors import InvalidMessage
from realtime.protocol.rules import ANY, RULE_WHEN, Rule, Rules
from realtime.protocol.states import DEFAULT_STATES, load_rules, load_states

BASE = ('[presets.a]\nvalence = 0\narousal = 0\nintensity = 0\n\n'
        '[presets.b]\nvalence = 0\narousal = 0.5\nintensity = 0.5\n\n'
        '[presets.c]\nvalence = 0\narousal = 1\nintensity = 1\n\n'
        '[stingers.hit]\ndegrees = [1]\ndurations = [1]\n\n')
GOOD_RULE = '[[transitions]]\nfrom = "a"\nto = "b"\nwhen = "bar"\n\n'


def write(tmp_path, text):
    path = tmp_path / "states.toml"
    path.write_text(text)
    return path


def line_of(text, snippet, nth=0):
    """1-based line of the ``nth`` line of ``text`` that holds ``snippet``."""
    return [i for i, line in enumerate(text.splitlines(), 1) if snippet in line][nth]


# ---------------------------------------------------------------- the shipped rules
def test_the_shipped_rules_are_the_ones_a_game_expects():
    rules, (presets, stingers) = load_rules(), load_states()
    assert load_rules(DEFAULT_STATES) == rules and len(rules) >= 5
    victory = rules.rule("combat", "victory")
    assert (victory.when, victory.stinger) == ("bar", "victory") and "victory" in stingers
    for name in presets:  # anything -> stealth at the phrase, stealth itself included
        assert rules.rule(name, "stealth").when == "phrase"
    assert rules.rule(None, "stealth").when == "phrase"
    default = rules.rule("menu", "calm")
    assert (default.from_state, default.to_state, default.when) == (ANY, ANY, "bar")
    fight = rules.rule("explore", "combat")
    assert fight.point == ("beat", 0) and 0 < fight.pickup_beats <= 4 and 0 < fight.ramp_beats <= 64
    for rule in rules:  # every rule names what the file has and a point a rule may have
        assert rule.from_state in (ANY, *presets) and rule.to_state in (ANY, *presets)
        assert rule.stinger is None or rule.stinger in stingers
        assert rule.point[0] in ("now", "beat", "bar", "phrase", "bars")


def test_the_shipped_stingers_have_cooldowns():
    _, stingers = load_states()
    assert stingers["hit"]["min_interval_beats"] == 2 and stingers["hit"]["queue"] == "drop"
    assert stingers["danger"]["queue"] == "queue" and stingers["danger"]["min_interval_beats"] > 0
    for s in stingers.values():
        assert 0 <= s["min_interval_beats"] <= 64 and s["queue"] in ("drop", "queue")


# ---------------------------------------------------------------- the lookup
def test_the_most_specific_rule_wins(tmp_path):
    text = BASE + ''.join(f'[[transitions]]\nfrom = "{f}"\nto = "{t}"\nwhen = "{w}"\n\n' for f, t, w in (
        ("*", "*", "bar"), ("*", "b", "phrase"), ("a", "*", "beat"), ("a", "b", "bars:2")))
    rules = load_rules(write(tmp_path, text))
    assert rules.rule("a", "b").when == "bars:2"      # the exact pair
    assert rules.rule("c", "b").when == "phrase"      # ("*", to) before (from, "*")
    assert rules.rule("a", "c").when == "beat"        # (from, "*")
    assert rules.rule("c", "a").when == "bar"         # ("*", "*")
    assert rules.rule(None, "b").when == "phrase" and rules.rule(None, "a").when == "bar"
    assert rules.rule("a", "b").point == ("bars", 2) and rules.rule("a", "b").where == "transitions[3]"


def test_without_a_wildcard_an_unmatched_pair_has_no_rule(tmp_path):
    rules = load_rules(write(tmp_path, BASE + GOOD_RULE))
    assert rules.rule("a", "b") == Rule("a", "b", "bar", 0.0, None, 0.0, 0)
    assert rules.rule("b", "a") is None and rules.rule(None, "b") is None
    assert load_rules(write(tmp_path, BASE)) == Rules() and load_rules(write(tmp_path, BASE)).rule("a", "b") is None


def test_a_rule_keeps_every_key_and_rules_are_frozen(tmp_path):
    text = BASE + ('[[transitions]]\nfrom = "a"\nto = "c"\nwhen = "beat"\nramp_beats = 4\n'
                   'stinger = "hit"\npickup_beats = 0.5\n')
    rules = load_rules(write(tmp_path, text))
    assert rules.rule("a", "c") == Rule("a", "c", "beat", 4.0, "hit", 0.5, 0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        rules.rule("a", "c").when = "now"
    with pytest.raises(dataclasses.FrozenInstanceError):
        rules.rules = ()
    assert hash(rules) == hash(load_rules(write(tmp_path, text)))


def test_rules_refuse_two_for_one_pair_when_built_directly():
    with pytest.raises(ValueError, match=r"transitions\[1\] and transitions\[0\]"):
        Rules((Rule("a", "b", "bar", index=0), Rule("a", "b", "beat", index=1)))


def test_an_inline_array_of_rules_is_read_and_its_errors_name_its_line(tmp_path):
    text = ('transitions = [{from = "a", to = "b", when = "bar"}, {from = "a", to = "zz", when = "bar"}]\n'
            + BASE)  # a top-level key comes before the tables
    path = write(tmp_path, text)
    with pytest.raises(InvalidMessage) as info:
        load_rules(path)
    assert f"line {line_of(text, 'transitions = [')}: transitions[1].to:" in str(info.value)
    path.write_text(text.replace('"zz"', '"c"'))
    assert load_rules(path).rule("a", "c").when == "bar"


# ---------------------------------------------------------------- bad rules
# (the second rule's text, the field named, the line holding this snippet (None: the
# rule's header), what the message says is allowed)
BAD_RULES = [
    ('from = "x"\nto = "b"\nwhen = "bar"\n', "from", 'from = "x"', "*, a, b, c"),
    ('from = "a"\nto = "boss"\nwhen = "bar"\n', "to", 'to = "boss"', "*, a, b, c"),
    ('from = 1\nto = "b"\nwhen = "bar"\n', "from", "from = 1", "*, a, b, c"),
    ('from = "a"\nto = "c"\nwhen = "soon"\n', "when", 'when = "soon"', RULE_WHEN),
    ('from = "a"\nto = "c"\nwhen = "bars:0"\n', "when", 'when = "bars:0"', RULE_WHEN),
    ('from = "a"\nto = "c"\nwhen = "bars:65"\n', "when", 'when = "bars:65"', RULE_WHEN),
    ('from = "a"\nto = "c"\nwhen = "cue:boss_door"\n', "when", 'when = "cue:', RULE_WHEN),
    ('from = "a"\nto = "c"\nwhen = 4\n', "when", "when = 4", RULE_WHEN),
    ('from = "a"\nto = "c"\nwhen = "bar"\nramp_beats = 65\n', "ramp_beats", "ramp_beats", "0.0..64.0"),
    ('from = "a"\nto = "c"\nwhen = "bar"\nramp_beats = -1\n', "ramp_beats", "ramp_beats", "0.0..64.0"),
    ('from = "a"\nto = "c"\nwhen = "bar"\nramp_beats = true\n', "ramp_beats", "ramp_beats", "0.0..64.0"),
    ('from = "a"\nto = "c"\nwhen = "bar"\nramp_beats = nan\n', "ramp_beats", "ramp_beats", "0.0..64.0"),
    ('from = "a"\nto = "c"\nwhen = "bar"\npickup_beats = 5\n', "pickup_beats", "pickup_beats", "0.0..4.0"),
    ('from = "a"\nto = "c"\nwhen = "bar"\npickup_beats = "1"\n', "pickup_beats", "pickup_beats", "0.0..4.0"),
    ('from = "a"\nto = "c"\nwhen = "now"\npickup_beats = 1\n', "pickup_beats", "pickup_beats",
     '0 with when = "now", else 0.0..4.0'),
    ('from = "a"\nto = "c"\nwhen = "bar"\nstinger = "boom"\n', "stinger", 'stinger = "boom"', "hit"),
    ('from = "a"\nto = "c"\nwhen = "bar"\nstinger = ["hit"]\n', "stinger", "stinger =", "hit"),
    ('from = "a"\nto = "c"\nwhen = "bar"\nstinger_name = "hit"\n', "stinger_name", "stinger_name",
     "from, to, when, ramp_beats, stinger, pickup_beats"),
    ('from = "a"\nto = "c"\n', "when", None, RULE_WHEN),
    ('to = "c"\nwhen = "bar"\n', "from", None, "*, a, b, c"),
    ('from = "a"\nto = "b"\nwhen = "beat"\n', None, None, "one rule per (from, to) pair"),
]


@pytest.mark.parametrize("rule,key,snippet,allowed", BAD_RULES)
def test_a_bad_rule_names_the_file_line_rule_and_what_is_allowed(tmp_path, rule, key, snippet, allowed):
    text = BASE + GOOD_RULE + "[[transitions]]  # the second rule\n" + rule
    path = write(tmp_path, text)
    where = "transitions[1]" + (f".{key}" if key else "")
    line = line_of(text, snippet) if snippet else line_of(text, "[[transitions]]", 1)
    for load in (load_rules, load_states):  # start-up reads both: either stops it
        with pytest.raises(InvalidMessage) as info:
            load(path)
        message = str(info.value)
        assert message.startswith(f"{path}, line {line}: {where}: "), message
        assert message.endswith(f"; allowed: {allowed}") and info.value.field == where
        assert info.value.allowed == allowed or ", ".join(info.value.allowed) == allowed


def test_a_second_rule_for_a_pair_names_the_first(tmp_path):
    text = BASE + '[[transitions]]\nfrom = "*"\nto = "*"\nwhen = "bar"\n\n' + GOOD_RULE + \
        '[[transitions]]\nfrom = "*"\nto = "*"\nwhen = "phrase"\n'
    line = line_of(text, "[[transitions]]", 2)
    with pytest.raises(InvalidMessage, match=rf"line {line}: transitions\[2\]: a second rule for \* -> \* "
                                             r"\(the first is transitions\[0\]\)"):
        load_rules(write(tmp_path, text))


@pytest.mark.parametrize("text,where,allowed", [
    ('[transitions]\nfrom = "a"\nto = "b"\nwhen = "bar"\n', "transitions", "[[transitions]] tables"),
    ('transitions = "bar"\n', "transitions", "[[transitions]] tables"),
    ('transitions = [1]\n', "transitions[0]", "from, to, when"),
])
def test_transitions_that_are_not_an_array_of_tables_are_refused(tmp_path, text, where, allowed):
    path = write(tmp_path, text + BASE)  # top-level keys before the first table
    with pytest.raises(InvalidMessage) as info:
        load_rules(path)
    assert str(info.value).startswith(f"{path}, line 1: {where}: ") and allowed in str(info.value)
    assert info.value.field == where


def test_an_unknown_section_lists_transitions_among_the_allowed(tmp_path):
    with pytest.raises(InvalidMessage, match="unknown section; allowed: presets, stingers, themes, "
                                             "voices, transitions"):
        load_states(write(tmp_path, BASE + '[[transition]]\nfrom = "a"\n'))


# ---------------------------------------------------------------- stinger cooldown keys
def test_stingers_take_a_cooldown_and_a_queue_policy(tmp_path):
    text = BASE + ('[stingers.boom]\ndegrees = [1, 5]\ndurations = [0.5, 1]\nmin_interval_beats = 2.5\n'
                   'queue = "queue"\n')
    _, stingers = load_states(write(tmp_path, text))
    assert stingers["hit"] == {"degrees": [1], "durations": [1.0], "velocity": 100,
                               "min_interval_beats": 0.0, "queue": "drop"}
    assert stingers["boom"]["min_interval_beats"] == 2.5 and stingers["boom"]["queue"] == "queue"


@pytest.mark.parametrize("line,key,allowed", [
    ("min_interval_beats = 65", "min_interval_beats", "0.0..64.0"),
    ("min_interval_beats = -0.5", "min_interval_beats", "0.0..64.0"),
    ('min_interval_beats = "2"', "min_interval_beats", "0.0..64.0"),
    ("min_interval_beats = false", "min_interval_beats", "0.0..64.0"),
    ('queue = "later"', "queue", "drop, queue"),
    ("queue = true", "queue", "drop, queue"),
    ("cooldown = 2", "cooldown", "degrees, durations, velocity, min_interval_beats, queue"),
])
def test_a_bad_stinger_cooldown_names_the_file_line_and_what_is_allowed(tmp_path, line, key, allowed):
    text = BASE + f'[stingers.boom]\ndegrees = [1]\ndurations = [1]\n{line}\n'
    path = write(tmp_path, text)
    with pytest.raises(InvalidMessage) as info:
        load_states(path)
    assert str(info.value).startswith(f"{path}, line {line_of(text, line)}: stingers.boom.{key}: ")
    assert str(info.value).endswith(f"; allowed: {allowed}") and info.value.field == f"stingers.boom.{key}"
