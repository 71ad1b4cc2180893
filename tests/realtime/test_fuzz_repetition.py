"""The fuzzer's strategies for ``repetition`` agree with validation: every value
``valid_value`` draws for it is accepted on mood, state and session open (over JSON and as
OSC's float32), every one ``invalid_value`` draws refused with the code it says, naming
``repetition``; whole requests drawn for those types get what their case expects; and the
oracle lets only the server refuse a valid theme for its session's form."""
import pytest
from hypothesis import HealthCheck, given, settings

from engine.errors import InvalidMessage
from realtime import fuzz, protocol
from realtime.fuzz.messages import choice_names, requests, valid_message
from realtime.osc import to_message

CHECK = settings(max_examples=300, deadline=None, database=None,
                 suppress_health_check=list(HealthCheck))
BASES = {"mood": {"type": "mood"}, "state": {"type": "state", "name": "combat"},
         "session": {"type": "session", "action": "open", "session": "p2"}}


def field(kind):
    return next(f for f in protocol.message_spec(kind).fields if f.name == "repetition")


@pytest.mark.parametrize("kind", list(BASES))
@pytest.mark.parametrize("osc", [False, True])
def test_drawn_repetitions_are_accepted(kind, osc):
    @CHECK
    @given(fuzz.valid_value(field(kind), {}, osc=osc))
    def check(value):
        got = protocol.validate({**BASES[kind], "repetition": value})["repetition"]
        assert 0.0 <= got <= 1.0 and type(got) is float
    check()


@pytest.mark.parametrize("kind", list(BASES))
@pytest.mark.parametrize("osc", [False, True])
def test_drawn_bad_repetitions_are_refused_as_drawn(kind, osc):
    seen = set()

    @CHECK
    @given(fuzz.invalid_value(field(kind), {}, osc=osc))
    def check(drawn):
        value, code, named = drawn
        with pytest.raises(InvalidMessage) as info:
            protocol.validate({**BASES[kind], "repetition": value})
        assert (protocol.error_code(info.value), info.value.field) == (code, named), value
        assert info.value.allowed == "0.0..1.0"
        seen.add(code)
    check()
    assert seen == {"out_of_range", "bad_type"}


def test_valid_messages_carry_repetition_and_close_never_does():
    names = choice_names(None, None)
    kinds = {"mood": 0, "state": 0, "session": 0}

    @CHECK
    @given(valid_message(protocol.message_spec("session"), names))
    def session(msg):
        if "repetition" in msg:
            assert msg["action"] == "open"
            kinds["session"] += 1
        protocol.validate(msg)
    session()
    for kind in ("mood", "state"):
        @CHECK
        @given(valid_message(protocol.message_spec(kind), names))
        def check(msg):
            kinds[kind] += "repetition" in msg
            protocol.validate(msg)
        check()
    assert all(kinds.values()), kinds  # each type drew some


def test_whole_requests_get_what_their_case_expects():
    """Only validation answers here (one-frame cases): a valid case passes it, a refused
    one gets the code and field its case names, repetition among them."""
    fields = set()

    @CHECK
    @given(requests(types=tuple(BASES)))
    def check(case):
        if len(case.payload) != 1:
            return
        expect = case.expects[0]
        try:
            protocol.parse(case.payload[0])
        except InvalidMessage as exc:
            codes = expect.code if isinstance(expect.code, tuple) else (expect.code,)
            assert (protocol.error_code(exc) in codes, exc.field) == (True, expect.field), (case, exc)
            fields.add(exc.field)
            return
        assert expect.code is None, case
    check()
    assert "repetition" in fields


def test_osc_positional_repetition_comes_after_voices():
    msg = to_message("/ostinato/mood", [None, 0.5, None, "now", None, None, None, 0.75])
    got = protocol.validate(msg)
    assert (got["arousal"], got["voices"], got["repetition"]) == (0.5, None, 0.75)
    msg = to_message("/ostinato/session", ["open", "p2", "calm", None, 0.25])
    got = protocol.validate(msg)
    assert (got["session"], got["state"], got["repetition"]) == ("p2", "calm", 0.25)


def test_the_oracle_lets_the_server_refuse_a_theme_longer_than_the_form_only():
    """A valid theme may be refused by the server for its session's form (its allowed is
    not the table's), never by validation."""
    notes = next(f for f in protocol.message_spec("theme").fields if f.name == "notes")
    server = {"ok": False, "id": 1, "code": "out_of_range", "field": "notes",
              "allowed": "a theme of at most 2 bars (the session's form)"}
    valid = fuzz.Expect(None, None, 1, "theme")
    assert fuzz.problem(valid, server) is None
    assert fuzz.problem(valid, {**server, "allowed": notes.allowed()}) is not None
    assert fuzz.problem(valid, {**server, "field": "repetition"}) is not None
