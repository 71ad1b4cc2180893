"""The fuzzer's ``voices`` strategies agree with validation: every value ``valid_voices``
draws is accepted, every one ``invalid_voices`` draws refused with the code and the field
it says, over JSON and as OSC's JSON text; and whole messages drawn for mood, state and
session, valid or with a refused value, get what their case expects from validation."""
import pytest
from hypothesis import HealthCheck, given, settings

from engine.errors import InvalidMessage
from realtime import fuzz, protocol
from realtime.fuzz.messages import requests

CHECK = settings(max_examples=300, deadline=None, database=None,
                 suppress_health_check=list(HealthCheck))


def refusal(msg):
    """(code, field) validation gives ``msg``, or None if it accepts it."""
    try:
        protocol.validate(msg)
    except InvalidMessage as exc:
        return protocol.error_code(exc), exc.field
    return None


@pytest.mark.parametrize("osc", [False, True])
def test_valid_voices_are_accepted(osc):
    @CHECK
    @given(fuzz.valid_voices(osc))
    def check(value):
        if osc:
            assert isinstance(value, str)
        voices = protocol.validate({"type": "mood", "voices": value})["voices"]
        assert set(voices) <= set(protocol.VOICE_KEYS) | {"melody", "bass", "harmony", "drums"}
        assert all(set(s) <= set(protocol.VOICE_KEYS) and s for s in voices.values())
    check()


@pytest.mark.parametrize("osc", [False, True])
def test_invalid_voices_are_refused_as_drawn(osc):
    seen = set()

    @CHECK
    @given(fuzz.invalid_voices(osc))
    def check(drawn):
        value, code, field = drawn
        for kind, extra in (("mood", {}), ("session", {"action": "open", "session": "p2"})):
            assert refusal({"type": kind, "voices": value, **extra}) == (code, field), value
        seen.add((code, field.count(".")))
    check()
    # every depth of the value is refused somewhere: the whole, a setting, a key
    assert {depth for _, depth in seen} == {0, 1, 2}, seen
    assert {code for code, _ in seen} >= {"bad_type", "bad_choice", "out_of_range"}, seen


def test_every_drawn_voices_refusal_over_osc_is_text_or_an_osc_type():
    @CHECK
    @given(fuzz.invalid_voices(osc=True))
    def check(drawn):
        value = drawn[0]
        assert isinstance(value, (str, int, float, bytes)), value  # what OSC carries
        if isinstance(value, str):
            assert value.isascii() and "\0" not in value
    check()


VOICED = ("mood", "state", "session")


def test_whole_requests_for_the_voiced_types_get_what_their_case_expects():
    """Only validation answers here (one-frame cases): a valid case must pass it (the
    server may then refuse its voices for the session, which the oracle allows), a refused
    one must get the code and the field its case names."""
    @CHECK
    @given(requests(types=VOICED))
    def check(case):
        if len(case.payload) != 1:
            return  # multipart and delimited frames are the socket's business
        expect = case.expects[0]
        try:
            protocol.parse(case.payload[0])
        except InvalidMessage as exc:
            codes = expect.code if isinstance(expect.code, tuple) else (expect.code,)
            assert (protocol.error_code(exc) in codes, exc.field) == (True, expect.field), (case, exc)
            return
        assert expect.code is None, case
    check()


def test_the_oracle_lets_the_server_refuse_valid_voices_only():
    """A valid message's voices may be refused by the server (its allowed is not the
    table's), never by validation; a refusal validation owes is not one the server gave."""
    field = next(f for f in protocol.message_spec("mood").fields if f.name == "voices")
    server = {"ok": False, "id": 1, "code": "out_of_range", "field": "voices",
              "allowed": "one channel 0..15 per voice, now: melody 0, bass 1, harmony 2, drums 9"}
    validation = dict(server, allowed=field.allowed())
    for kind in VOICED:
        valid = fuzz.Expect(None, None, 1, kind)
        assert fuzz.problem(valid, server) is None
        assert "refused" in fuzz.problem(valid, validation)
        owed = fuzz.Expect("out_of_range", "voices", 1, kind)
        assert fuzz.problem(owed, validation) is None
        assert "server refused" in fuzz.problem(owed, server)
    assert "refused" in fuzz.problem(fuzz.Expect(None, None, 1, "key"), server)  # no voices on key
    nested = {"ok": False, "id": 1, "code": "out_of_range", "field": "voices.bass.program",
              "allowed": "0..127"}
    assert fuzz.problem(fuzz.Expect("out_of_range", "voices.bass.program", 1, "mood"), nested) is None
