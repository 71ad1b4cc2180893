"""Fuzz cases for the OSC endpoint: the table's messages in OSC's positional and
one-field forms, refused values, unknown addresses, bundles (``datagrams``), and datagrams
that are no OSC at all (``osc_garbage``); ``osc_reply`` reads an answer back as the JSON
reply it stands for.
"""
import json
import math
import time

from hypothesis import strategies as st
from pythonosc.osc_bundle_builder import OscBundleBuilder
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder

from realtime import protocol
from realtime.fuzz.messages import (choice_names, envelope_field, first_missing, message_specs,
                                    ok_expect, valid_message)
from realtime.fuzz.oracle import Case, Expect
from realtime.fuzz.values import invalid_value, valid_value

def _osc_arg(builder, value):
    if isinstance(value, float) and math.isfinite(value) and abs(value) > 3.4e38:
        builder.add_arg(value, "d")  # beyond float32 (1e308): a double
    elif isinstance(value, int) and not isinstance(value, bool) and not -2**31 <= value < 2**31:
        builder.add_arg(value, "h")  # int64
    else:
        builder.add_arg(value)


def osc_datagram(address, args):
    builder = OscMessageBuilder(address)
    for value in args:
        _osc_arg(builder, value)
    return builder.build().dgram


def _osc_form(spec, msg):
    """(address, args) for ``msg`` in the positional form (nil for a field left out before
    one given), then ``session``/``id`` keyword pairs."""
    order = spec.positional()
    given = [i for i, name in enumerate(order) if name in msg]
    args = [msg.get(name) for name in order[:given[-1] + 1]] if given else []
    rest = [k for k in msg if k != "type" and k not in order]
    return f"/ostinato/{spec.name}", args + [x for k in rest for x in (k, msg[k])]


def _osc_valid(spec, names, sessions):
    return valid_message(spec, names, sessions, osc=True).map(
        lambda msg: Case("osc_valid", osc_datagram(*_osc_form(spec, msg)), (ok_expect(msg),)))


def _osc_one_field(spec, names, sessions):
    fields = [f for f in spec.fields] + [envelope_field("session"), envelope_field("id")]

    def case(pair):
        name, value = pair
        msg = {"type": spec.name, name: value}
        missing = first_missing(spec, msg)
        expect = ok_expect(msg) if missing is None else Expect("missing_field", missing, msg.get("id"))
        return Case("osc_one_field", osc_datagram(f"/ostinato/{spec.name}/{name}", [value]), (expect,))
    return st.one_of(*[st.tuples(st.just(f.name), valid_value(f, names, sessions, osc=True)).map(case)
                       for f in fields])


def _osc_mutated(spec, names, sessions):
    """A valid OSC message with one field (or session/id) given a refused value."""
    fields = [f for f in spec.fields] + [envelope_field("session"), envelope_field("id")]

    def case(t):
        msg, name, (value, code, named) = t
        msg = {**msg, name: value}
        return Case("osc_" + code, osc_datagram(*_osc_form(spec, msg)),
                    (Expect(code, named, None if name == "id" else msg.get("id"), spec.name),))
    base = valid_message(spec, names, sessions, osc=True)
    # a refused string that reads as a keyword would shift the positional fields
    return st.one_of(*[st.tuples(base, st.just(f.name), invalid_value(f, names, osc=True).filter(
        lambda vc: vc[0] not in protocol.RESERVED_NAMES)).map(case) for f in fields])


def _osc_addresses():
    """Addresses outside the mapping, and extra arguments: refused before validation."""
    word = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="/#"),
                   min_size=1, max_size=20)
    unknown_type = word.filter(lambda w: w not in protocol.MESSAGE_TYPES).map(
        lambda w: Case("osc_unknown_type", osc_datagram(f"/ostinato/{w}", [1]), (Expect("unknown_type", "type"),)))
    other = word.map(lambda w: Case("osc_unknown_type", osc_datagram(f"/{w}", []), (Expect("unknown_type", "type"),)))

    def unknown_field(pair):
        spec, w = pair
        return Case("osc_unknown_field", osc_datagram(f"/ostinato/{spec.name}/{w}", [1]),
                    (Expect("unknown_field", w),))
    known = {f.name for s in protocol.MESSAGES for f in s.fields} | set(protocol.RESERVED_NAMES)
    fields = st.tuples(st.sampled_from(protocol.MESSAGES), word.filter(lambda w: w not in known)) \
        .map(unknown_field)
    # (not hello: an integer after /ostinato/hello names the port replies go to)
    too_many = st.tuples(st.sampled_from([s for s in protocol.MESSAGES if s.name != "hello"]),
                         st.lists(st.integers(0, 9), min_size=1, max_size=3)).map(
        lambda t: Case("osc_too_many", osc_datagram(f"/ostinato/{t[0].name}", [0] * len(t[0].positional()) + t[1]),
                       (Expect("unknown_field", None),)))
    return st.one_of(unknown_type, other, fields, too_many)


def osc_garbage():
    """Datagrams that are not OSC (dropped unanswered), and OSC that does not parse."""
    junk = st.binary(min_size=1, max_size=300).filter(lambda b: not b.startswith((b"/", b"#bundle")))
    # "/..." that does not parse as an OSC message: answered invalid_json
    broken = st.binary(max_size=100).map(lambda b: b"/" + b).filter(lambda b: not _parses(b))
    truncated = st.tuples(st.sampled_from(protocol.MESSAGES), st.integers(0, 10**6)).map(
        lambda t: osc_datagram(f"/ostinato/{t[0].name}", ["x", 1.0])[:1 + t[1] % 24]).filter(lambda b: not _parses(b))
    refused = Expect("invalid_json", None)
    return st.one_of(junk.map(lambda b: Case("osc_not_osc", b, ())),
                     st.one_of(broken, truncated).map(lambda b: Case("osc_malformed", b, (refused,))))


def _parses(dgram):
    try:
        OscMessage(dgram)
        return True
    except Exception:  # noqa: BLE001 - ParseError, or whatever a malformed datagram raises
        return False


def _osc_bundles(single):
    """Bundles of 1-3 cases, timetag a day ahead: their messages are answered at once."""
    def bundle(cases):
        builder = OscBundleBuilder(time.time() + 86400)
        for case in cases:
            builder.add_content(OscMessage(case.payload))
        return Case("osc_bundle", builder.build().dgram, tuple(e for c in cases for e in c.expects))
    return st.lists(single, min_size=1, max_size=3).map(bundle)


def osc_bundles(presets=None, stingers=None, sessions=None, types=None):
    """Bundles only (a kind Hypothesis may draw rarely from ``datagrams``)."""
    names = choice_names(presets, stingers)
    single = st.one_of(*[_osc_valid(s, names, sessions) for s in message_specs(types)])
    return _osc_bundles(single)


def datagrams(presets=None, stingers=None, sessions=None, types=None):
    """Cases for the OSC endpoint, of every kind, over every message type (or ``types``)."""
    names, specs = choice_names(presets, stingers), message_specs(types)
    single = st.one_of(*[_osc_valid(s, names, sessions) for s in specs],
                       *[_osc_one_field(s, names, sessions) for s in specs],
                       *[_osc_mutated(s, names, sessions) for s in specs],
                       _osc_addresses())
    return st.one_of(single, osc_garbage(), _osc_bundles(single))


def osc_reply(dgram):
    """An OSC reply datagram as the JSON reply dict it stands for."""
    reply = OscMessage(dgram)
    args = list(reply.params)
    if reply.address == "/ostinato/ack":
        return json.loads(args[2])
    code, field, allowed, message, msg_id = args
    return {"ok": False, "type": "error", "code": code, "field": field or None, "allowed": allowed,
            "message": message, "id": None if msg_id == "" else msg_id}
