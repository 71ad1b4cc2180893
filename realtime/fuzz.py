"""Fuzzing the control protocol: Hypothesis strategies derived from ``protocol``'s table,
and the senders that fire them at a running server over ZeroMQ and OSC.

Every strategy walks ``protocol.MESSAGES`` and ``protocol.ENVELOPE`` (nothing here lists
message types or fields by hand) and draws a ``Case``: what to send, and what the server
must answer, worked out from the table alone.  Kinds of case:

- ``valid``: a well-formed message of each type (numbers from their ranges, choices from
  their lists, keys in any letter case, ids of either kind, unicode ids with surrogates).
- ``out_of_range``/``bad_type``/``bad_choice``: one field of a valid message replaced by a
  value outside its range (NaN, +-infinity, 1e308, 10**400 among them), of the wrong JSON
  type (nested up to the depth limit), or not among its choices (unicode, NUL).
- ``missing_field``, ``unknown_field``, ``unknown_type``: a required field dropped, unknown
  fields added, the type replaced.
- ``invalid_json``: not UTF-8, truncated JSON, not an object, random bytes, an empty frame,
  a multipart request; ``too_large``: nested deeper than ``MAX_DEPTH`` or longer than
  ``MAX_MESSAGE_BYTES``.
- OSC: the same messages in OSC's positional and one-field forms, bundles (timetags far in
  the future), malformed packets and datagrams that are not OSC at all.

A valid message may still be refused for the state of the server, never for its form: its
session is not open (or already open, or all are in use).  ``problem`` allows exactly that:
``bad_choice``/``out_of_range`` on field ``session``.

``NaN``/``Infinity`` literals: Python's json reads them, and they reach the range check as
floats that no range holds: a number field holding one is ``out_of_range``; an integer field
(``v``), like ``id``, is ``bad_type``.  Integers of more than 4,300 digits are not read by
Python's json at all (``invalid_json``); the cases here stay at 401 digits.
"""
import json
import math
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass

import zmq
from hypothesis import strategies as st
from pythonosc.osc_bundle_builder import OscBundleBuilder
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder

from realtime import protocol
from realtime.ports import BasePort

SEMANTIC = ("bad_choice", "out_of_range")  # how a well-formed message meets a session it cannot use
ID_LIMIT = 2**63


@dataclass(frozen=True)
class Expect:
    """The answer a request must get: ``code`` None is ok (for message ``type``); else the
    error code (or a tuple of codes allowed), its ``field`` (None: the message as a whole)."""

    code: object = None
    field: object = None
    id: object = None
    type: str = None


@dataclass(frozen=True)
class Case:
    """One request: ``kind`` names its generator, ``payload`` is a tuple of ZeroMQ frames or
    one OSC datagram (bytes), ``expects`` the answers in order (none for garbage UDP)."""

    kind: str
    payload: object
    expects: tuple


def problem(expect, reply):
    """What is wrong with ``reply`` (a decoded JSON reply dict) for ``expect``; None if right."""
    if not isinstance(reply, dict) or "ok" not in reply:
        return f"not a reply: {reply!r}"
    if reply.get("id") != expect.id:
        return f"id {reply.get('id')!r}, expected {expect.id!r}"
    if expect.code is None:
        if reply["ok"]:
            return None if reply.get("for") == expect.type else f"ack for {reply.get('for')!r}"
        # or critic > 0 on a server started without a critic
        if reply.get("code") in SEMANTIC and reply.get("field") in ("session", "critic"):
            return None  # well-formed, but the session is not open (or already is, or none is free)
        return f"valid {expect.type!r} refused: {reply.get('code')} {reply.get('message')!r}"
    if reply["ok"]:
        return f"accepted, expected {expect.code} on {expect.field!r}"
    codes = expect.code if isinstance(expect.code, tuple) else (expect.code,)
    if reply.get("code") not in codes:
        return f"code {reply.get('code')!r}, expected {expect.code!r}: {reply.get('message')!r}"
    if reply.get("field") != expect.field:
        return f"field {reply.get('field')!r}, expected {expect.field!r}: {reply.get('message')!r}"
    return None


# ---------------------------------------------------------------- values, from the table

_NAME_RE = re.compile(protocol.NAME_PATTERN)
_LOWER_KEYS = {k.lower() for k in protocol.KEYS}
_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)


def _nested(depth):
    """A JSON array or object nested exactly ``depth`` deep."""
    def build(seed):  # the seed's base-3 digits pick each level's shape
        value = []
        for _ in range(depth - 1):
            seed, shape = divmod(seed, 3)
            value = ([value], {"k": value}, [1, value])[shape]
        return value
    return st.integers(0, 3**depth).map(build)


def _float32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def _choices(field, names):
    return tuple(names.get(field.choices, field.choices))


def _unicode(ascii_only=False, **kw):
    """Text of any code point, lone surrogates and NUL included (OSC strings can carry
    neither, so ``ascii_only`` keeps to printable ASCII for those)."""
    if ascii_only:
        return st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), **kw)
    return st.text(st.characters(codec=None, exclude_categories=()), **kw)


def valid_value(field, names, sessions=None, osc=False):
    """Values ``field`` accepts.  ``sessions``: the session names to use for the envelope's
    ``session`` (a small pool keeps the server's state in bounds)."""
    if field.kind == "float":
        floats = st.floats(field.lo, field.hi, width=32 if osc else 64)
        return floats | st.integers(math.ceil(field.lo), math.floor(field.hi))
    if field.kind == "int":
        return st.integers(field.lo, field.hi)
    if field.kind == "choice":
        return st.sampled_from(_choices(field, names))
    if field.kind == "key":
        return st.sampled_from(protocol.KEYS).flatmap(lambda k: st.sampled_from([k, k.lower(), k.upper()]))
    if field.kind == "name":
        names_ok = st.sampled_from(sessions) if sessions else st.from_regex(_NAME_RE, fullmatch=True)
        # OSC reads "session"/"id" as keywords, so no session can be called that there
        return names_ok.filter(lambda n: n not in protocol.RESERVED_NAMES) if osc else names_ok
    if osc:
        return st.integers(-2**31, 2**31 - 1) | _unicode(True, min_size=1, max_size=128)
    return st.integers(-ID_LIMIT, ID_LIMIT - 1) | _unicode(min_size=1, max_size=128)


def invalid_value(field, names, osc=False):
    """(value, error code) pairs ``field`` refuses, with the code the table gives each."""
    wrong_json = st.one_of(_SCALARS, *[_nested(d) for d in (1, 3, protocol.MAX_DEPTH - 1)])
    if field.kind in ("float", "int"):
        lo, hi = field.lo, field.hi
        if osc:  # OSC carries float32, float64, int32, int64, strings, blobs, booleans, nil
            # float32, rounded to 7 digits by the server: keep clear of the bounds
            margin = 1e-3 * max(1.0, abs(lo), abs(hi))
            outside = st.floats(max_value=_float32(lo - margin), width=32) | \
                st.floats(min_value=_float32(hi + margin), width=32) | \
                st.integers(-2**31, math.ceil(lo) - 1) | st.integers(math.floor(hi) + 1, 2**31 - 1)
            out = outside | st.sampled_from([math.nan, math.inf, -math.inf, 1e308, 2**40])
            wrong = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E)) | st.binary(min_size=1) | \
                st.booleans()
            if field.kind == "int":
                out, wrong = st.integers(-2**31, lo - 1) | st.integers(hi + 1, 2**31 - 1), wrong | st.floats()
        else:
            out = st.floats(max_value=lo, exclude_max=True) | st.floats(min_value=hi, exclude_min=True) | \
                st.integers(max_value=math.ceil(lo) - 1) | st.integers(min_value=math.floor(hi) + 1) | \
                st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308, 10**400, -10**400])
            wrong = wrong_json.filter(lambda v: not isinstance(v, (int, float)) or isinstance(v, bool))
            if field.kind == "int":
                out = st.integers(max_value=lo - 1) | st.integers(min_value=hi + 1)
                wrong = wrong | st.floats()  # 1.0 is a number, not an integer
        return st.tuples(out, st.just("out_of_range")) | st.tuples(wrong, st.just("bad_type"))
    if field.kind == "id":
        if osc:
            bad = st.binary(min_size=1) | st.booleans() | st.floats() | st.just("") | \
                _unicode(True, min_size=129, max_size=300)
        else:
            bad = _SCALARS.filter(lambda v: not isinstance(v, (int, str)) or isinstance(v, bool)) | \
                st.just("") | _unicode(min_size=129, max_size=300) | \
                st.integers(min_value=ID_LIMIT) | st.integers(max_value=-ID_LIMIT - 1) | _nested(2)
        return st.tuples(bad, st.just("bad_type"))
    text = _unicode(osc)
    if osc:
        wrong = st.integers(-2**31, 2**31 - 1) | st.floats(width=32) | st.binary(min_size=1) | st.booleans()
    else:
        wrong = wrong_json.filter(lambda v: not isinstance(v, str))
    if field.kind == "name":
        return st.tuples(text.filter(lambda s: not _NAME_RE.fullmatch(s)), st.just("out_of_range")) | \
            st.tuples(wrong, st.just("bad_type"))
    if field.kind == "key":
        off = text.filter(lambda s: s.lower() not in _LOWER_KEYS)
    else:
        choices = _choices(field, names)
        off = text.filter(lambda s: s not in choices)
    return st.tuples(off, st.just("bad_choice")) | st.tuples(wrong, st.just("bad_type"))


# ---------------------------------------------------------------- JSON requests

def _names(presets, stingers):
    presets, stingers = protocol.state_names(presets, stingers)
    return {protocol.PRESETS: presets, protocol.STINGERS: stingers}


def _envelope(name):
    return {f.name: f for f in protocol.ENVELOPE}[name]


def valid_message(spec, names, sessions=None, osc=False):
    """A dict of message type ``spec`` that the table accepts."""
    fields = {f.name: valid_value(f, names, sessions, osc) for f in spec.fields}
    required = {n: v for n, v in fields.items() if _field(spec, n).required}
    optional = {n: v for n, v in fields.items() if n not in required}
    session = valid_value(_envelope("session"), names, sessions, osc)
    optional["id"] = valid_value(_envelope("id"), names, sessions, osc)
    if spec.session_required:
        required["session"] = session
    else:
        optional["session"] = session
    if not osc:
        optional["v"] = st.just(protocol.PROTOCOL_VERSION)
    body = st.fixed_dictionaries({"type": st.just(spec.name), **required}, optional=optional)
    if spec.one_of:
        body = body.filter(lambda d: any(n in d for n in spec.one_of))
    if spec.name == "session":  # the table's one cross-field rule: state only with action open
        body = body.map(lambda d: {k: v for k, v in d.items() if k != "state" or d["action"] == "open"})
    return body


def _field(spec, name):
    return next(f for f in protocol.ENVELOPE + spec.fields if f.name == name)


def _ok(msg):
    return Expect(None, None, msg.get("id"), msg["type"])


def _first_missing(spec, msg):
    """The missing_field error the table gives ``msg``, or None."""
    for f in protocol.ENVELOPE + spec.fields:
        if f.name not in msg and (f.required or (f.name == "session" and spec.session_required)):
            return f.name
    if spec.one_of and not any(n in msg for n in spec.one_of):
        return ",".join(spec.one_of)
    return None


def _encode(obj):
    return json.dumps(obj).encode()  # NaN and Infinity as JSON's extension literals


def _mutated(spec, names, sessions):
    """A valid message with one field (envelope ones included) given a refused value."""
    def case(t):
        msg, name, (value, code) = t
        msg = {**msg, name: value}
        return Case(code, (_encode(msg),), (Expect(code, name, None if name == "id" else msg.get("id")),))
    base = valid_message(spec, names, sessions)
    return st.one_of(*[st.tuples(base, st.just(f.name), invalid_value(f, names)).map(case)
                       for f in protocol.ENVELOPE + spec.fields])


def _missing(spec, names, sessions):
    droppable = [f.name for f in protocol.ENVELOPE + spec.fields if f.required] + \
        (["session"] if spec.session_required else []) + ([",".join(spec.one_of)] if spec.one_of else [])
    if not droppable:
        return None

    def drop(pair):
        msg, names_ = pair
        msg = {k: v for k, v in msg.items() if k not in names_.split(",")}
        return Case("missing_field", (_encode(msg),),
                    (Expect("missing_field", _first_missing(spec, msg), msg.get("id")),))
    return st.tuples(valid_message(spec, names, sessions), st.sampled_from(droppable)).map(drop)


def _unknown_fields(spec, names, sessions):
    known = {"type"} | {f.name for f in protocol.ENVELOPE + spec.fields}
    extra = st.dictionaries(_unicode(max_size=20).filter(lambda k: k not in known), _SCALARS,
                            min_size=1, max_size=3)

    def add(pair):
        msg, more = pair
        msg = {**msg, **more}
        return Case("unknown_field", (_encode(msg),),
                    (Expect("unknown_field", ",".join(sorted(more)), msg.get("id")),))
    return st.tuples(valid_message(spec, names, sessions), extra).map(add)


def _unknown_type(names, sessions):
    bad_type = _unicode(max_size=20).filter(lambda t: t not in protocol.MESSAGE_TYPES) | \
        _SCALARS.filter(lambda v: not isinstance(v, str))
    base = st.sampled_from(protocol.MESSAGES).flatmap(lambda s: valid_message(s, names, sessions))

    def retype(pair):
        msg, kind = pair
        msg = {**msg, "type": kind} if kind is not None else {k: v for k, v in msg.items() if k != "type"}
        return Case("unknown_type", (_encode(msg),), (Expect("unknown_type", "type", msg.get("id")),))
    return st.tuples(base, st.none() | bad_type).map(retype)


def _invalid_json(names, sessions):
    whole = Expect("invalid_json", None)
    base = st.sampled_from(protocol.MESSAGES).flatmap(lambda s: valid_message(s, names, sessions)) \
        .map(_encode)
    truncated = st.tuples(base, st.integers(0, 10**6)).map(lambda t: t[0][:t[1] % len(t[0])])
    not_utf8 = st.tuples(base, st.integers(0, 10**6), st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80"])) \
        .map(lambda t: t[0][:t[1] % len(t[0])] + t[2] + t[0][t[1] % len(t[0]):])
    not_object = st.one_of(_SCALARS, _nested(2).filter(lambda v: isinstance(v, list))).map(_encode)
    random = st.binary(max_size=300).filter(lambda b: not _json_object(b))
    multipart = st.lists(base, min_size=2, max_size=4)
    return st.one_of(
        st.one_of(truncated, not_utf8, not_object).map(lambda b: Case("invalid_json", (b,), (whole,))),
        # a byte string may open more brackets than the depth limit allows
        random.map(lambda b: Case("random_bytes", (b,), (Expect(("invalid_json", "too_large"), None),))),
        st.just(Case("empty_frame", (b"",), (whole,))),
        multipart.map(lambda fs: Case("multipart", tuple(fs), (whole,))),
    )


def _json_object(data):
    try:
        return isinstance(json.loads(data), dict)
    except (ValueError, RecursionError):
        return False


def _too_large(names, sessions):
    big = Expect("too_large", None)
    base = st.sampled_from(protocol.MESSAGES).flatmap(lambda s: valid_message(s, names, sessions))
    deep = st.integers(protocol.MAX_DEPTH + 1, 20000).map(lambda d: b"[" * d + b"]" * d)
    deep_field = st.tuples(base, st.integers(protocol.MAX_DEPTH, 3000)).map(
        lambda t: _encode(t[0])[:-1] + b', "deep": ' + b"[" * t[1] + b"]" * t[1] + b"}")
    padded = st.tuples(base, st.integers(1, 40000)).map(
        lambda t: b" " * (protocol.MAX_MESSAGE_BYTES + t[1] - len(_encode(t[0]))) + _encode(t[0]))
    return st.one_of(deep.map(lambda b: Case("too_deep", (b,), (big,))),
                     deep_field.map(lambda b: Case("too_deep", (b,), (big,))),
                     padded.map(lambda b: Case("too_large", (b,), (big,))))


def requests(presets=None, stingers=None, sessions=None):
    """Cases for the ZeroMQ control socket, of every kind, over every message type."""
    names = _names(presets, stingers)
    valid = [valid_message(s, names, sessions).map(lambda m: Case("valid", (_encode(m),), (_ok(m),)))
             for s in protocol.MESSAGES]
    delimited = st.sampled_from(protocol.MESSAGES).flatmap(lambda s: valid_message(s, names, sessions)) \
        .map(lambda m: Case("valid_delimited", (b"", _encode(m)), (_ok(m),)))
    mutated = [_mutated(s, names, sessions) for s in protocol.MESSAGES]
    missing = [m for m in (_missing(s, names, sessions) for s in protocol.MESSAGES) if m is not None]
    unknown = [_unknown_fields(s, names, sessions) for s in protocol.MESSAGES]
    return st.one_of(*valid, delimited, *mutated, *missing, *unknown, _unknown_type(names, sessions),
                     _invalid_json(names, sessions), _too_large(names, sessions))


# ---------------------------------------------------------------- OSC datagrams

def _osc_arg(builder, value):
    if isinstance(value, float) and math.isfinite(value) and abs(value) > 3.4e38:
        builder.add_arg(value, "d")  # beyond float32 (1e308): a double
    elif isinstance(value, int) and not isinstance(value, bool) and not -2**31 <= value < 2**31:
        builder.add_arg(value, "h")  # int64
    else:
        builder.add_arg(value)


def _datagram(address, args):
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
        lambda msg: Case("osc_valid", _datagram(*_osc_form(spec, msg)), (_ok(msg),)))


def _osc_one_field(spec, names, sessions):
    fields = [f for f in spec.fields] + [_envelope("session"), _envelope("id")]

    def case(pair):
        name, value = pair
        msg = {"type": spec.name, name: value}
        missing = _first_missing(spec, msg)
        expect = _ok(msg) if missing is None else Expect("missing_field", missing, msg.get("id"))
        return Case("osc_one_field", _datagram(f"/ostinato/{spec.name}/{name}", [value]), (expect,))
    return st.one_of(*[st.tuples(st.just(f.name), valid_value(f, names, sessions, osc=True)).map(case)
                       for f in fields])


def _osc_mutated(spec, names, sessions):
    """A valid OSC message with one field (or session/id) given a refused value."""
    fields = [f for f in spec.fields] + [_envelope("session"), _envelope("id")]

    def case(t):
        msg, name, (value, code) = t
        msg = {**msg, name: value}
        return Case("osc_" + code, _datagram(*_osc_form(spec, msg)),
                    (Expect(code, name, None if name == "id" else msg.get("id")),))
    base = valid_message(spec, names, sessions, osc=True)
    # a refused string that reads as a keyword would shift the positional fields
    return st.one_of(*[st.tuples(base, st.just(f.name), invalid_value(f, names, osc=True).filter(
        lambda vc: vc[0] not in protocol.RESERVED_NAMES)).map(case) for f in fields])


def _osc_addresses():
    """Addresses outside the mapping, and extra arguments: refused before validation."""
    word = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="/#"),
                   min_size=1, max_size=20)
    unknown_type = word.filter(lambda w: w not in protocol.MESSAGE_TYPES).map(
        lambda w: Case("osc_unknown_type", _datagram(f"/ostinato/{w}", [1]), (Expect("unknown_type", "type"),)))
    other = word.map(lambda w: Case("osc_unknown_type", _datagram(f"/{w}", []), (Expect("unknown_type", "type"),)))

    def unknown_field(pair):
        spec, w = pair
        return Case("osc_unknown_field", _datagram(f"/ostinato/{spec.name}/{w}", [1]),
                    (Expect("unknown_field", w),))
    known = {f.name for s in protocol.MESSAGES for f in s.fields} | set(protocol.RESERVED_NAMES)
    fields = st.tuples(st.sampled_from(protocol.MESSAGES), word.filter(lambda w: w not in known)) \
        .map(unknown_field)
    # (not hello: an integer after /ostinato/hello names the port replies go to)
    too_many = st.tuples(st.sampled_from([s for s in protocol.MESSAGES if s.name != "hello"]),
                         st.lists(st.integers(0, 9), min_size=1, max_size=3)).map(
        lambda t: Case("osc_too_many", _datagram(f"/ostinato/{t[0].name}", [0] * len(t[0].positional()) + t[1]),
                       (Expect("unknown_field", None),)))
    return st.one_of(unknown_type, other, fields, too_many)


def osc_garbage():
    """Datagrams that are not OSC (dropped unanswered), and OSC that does not parse."""
    junk = st.binary(min_size=1, max_size=300).filter(lambda b: not b.startswith((b"/", b"#bundle")))
    # "/..." that does not parse as an OSC message: answered invalid_json
    broken = st.binary(max_size=100).map(lambda b: b"/" + b).filter(lambda b: not _parses(b))
    truncated = st.tuples(st.sampled_from(protocol.MESSAGES), st.integers(0, 10**6)).map(
        lambda t: _datagram(f"/ostinato/{t[0].name}", ["x", 1.0])[:1 + t[1] % 24]).filter(lambda b: not _parses(b))
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


def osc_bundles(presets=None, stingers=None, sessions=None):
    """Bundles only (a kind Hypothesis may draw rarely from ``datagrams``)."""
    names = _names(presets, stingers)
    single = st.one_of(*[_osc_valid(s, names, sessions) for s in protocol.MESSAGES])
    return _osc_bundles(single)


def datagrams(presets=None, stingers=None, sessions=None):
    """Cases for the OSC endpoint, of every kind, over every message type."""
    names = _names(presets, stingers)
    single = st.one_of(*[_osc_valid(s, names, sessions) for s in protocol.MESSAGES],
                       *[_osc_one_field(s, names, sessions) for s in protocol.MESSAGES],
                       *[_osc_mutated(s, names, sessions) for s in protocol.MESSAGES],
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


# ---------------------------------------------------------------- senders

class Tally:
    """Counts of what a fuzz run sent and got back, and the first problems seen."""

    def __init__(self):
        self.sent = self.answered = self.unanswered = self.extra = 0
        self.kinds, self.codes, self.problems = {}, {}, []

    def record(self, case, replies):
        self.sent += 1
        self.kinds[case.kind] = self.kinds.get(case.kind, 0) + 1
        self.answered += min(len(replies), len(case.expects))
        self.unanswered += max(0, len(case.expects) - len(replies))
        for expect, reply in zip(case.expects, replies):
            code = "ok" if reply.get("ok") else reply.get("code")
            self.codes[code] = self.codes.get(code, 0) + 1
            wrong = problem(expect, reply)
            if wrong is not None and len(self.problems) < 20:
                self.problems.append(f"{case.kind} {repr(case.payload)[:300]}: {wrong}")
        if len(replies) < len(case.expects) and len(self.problems) < 20:
            self.problems.append(f"{case.kind} {repr(case.payload)[:300]}: unanswered")

    def as_dict(self):
        return {"sent": self.sent, "answered": self.answered, "unanswered": self.unanswered,
                "extra_replies": self.extra, "server_errors": self.codes.get("server_error", 0),
                "replies_by_code": dict(sorted(self.codes.items())),
                "cases_by_kind": dict(sorted(self.kinds.items())), "problems": list(self.problems)}


class ZmqFuzzer:
    """Fires batches of cases at a control address over ``n`` DEALER sockets, pipelined
    (each socket's replies come back in its order), and tallies the answers."""

    def __init__(self, address, n=4, timeout_s=20.0):
        self.ctx = zmq.Context()
        self.socks = []
        for _ in range(n):
            sock = self.ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(address)
            self.socks.append(sock)
        self.timeout_s = timeout_s
        self.tally = Tally()
        self._sentinel = 0

    def send(self, cases):
        """Send ``cases`` (each has one expected answer) and record the replies."""
        queues = [cases[i::len(self.socks)] for i in range(len(self.socks))]
        for sock, queue in zip(self.socks, queues):
            for case in queue:
                sock.send_multipart(list(case.payload))
        for sock, queue in zip(self.socks, queues):
            for case in queue:
                self.tally.record(case, self._recv(sock, 1))

    def _recv(self, sock, n):
        replies, deadline = [], time.monotonic() + self.timeout_s
        while len(replies) < n:
            left = deadline - time.monotonic()
            if left <= 0 or not sock.poll(int(left * 1000) + 1):
                break
            replies.append(json.loads(sock.recv_multipart()[-1]))
        return replies

    def settle(self):
        """A ping with a fresh id on every socket: the very next reply must be its pong, or
        some request got more than one answer.  True if all were."""
        clean = True
        for sock in self.socks:
            self._sentinel += 1
            sock.send(_encode({"type": "ping", "id": f"sentinel-{self._sentinel}"}))
            while True:
                reply = self._recv(sock, 1)
                if reply and reply[0].get("id") == f"sentinel-{self._sentinel}":
                    break
                if not reply:
                    return False
                self.tally.extra += 1
                clean = False
        return clean

    def request(self, obj):
        """One request on the first socket after a settle: its reply (or None)."""
        self.socks[0].send(_encode(obj))
        reply = self._recv(self.socks[0], 1)
        return reply[0] if reply else None

    def close(self):
        self.ctx.destroy(linger=0)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class OscFuzzer:
    """Sends OSC cases one at a time over UDP (lock-step, so loopback loses nothing) and
    tallies the answers; a case with no expected answer is checked by the next one's."""

    def __init__(self, port, host="127.0.0.1", timeout_s=10.0):
        self.target = (host, port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.timeout_s = timeout_s
        self.tally = Tally()

    def send(self, cases):
        for case in cases:
            self.sock.sendto(case.payload, self.target)
            replies = [self._recv() for _ in case.expects]
            self.tally.record(case, [r for r in replies if r is not None])

    def _recv(self):
        self.sock.settimeout(self.timeout_s)
        try:
            return osc_reply(self.sock.recv(65536))
        except socket.timeout:
            return None

    def settle(self):
        """A ping with a fresh id: the next reply must be its own (nothing was answered twice
        and garbage went unanswered)."""
        self.sock.sendto(_datagram("/ostinato/ping", ["id", "osc-sentinel"]), self.target)
        while True:
            reply = self._recv()
            if reply is None:
                return False
            if reply.get("id") == "osc-sentinel":
                return self.tally.extra == 0
            self.tally.extra += 1

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


# ---------------------------------------------------------------- is the music still playing?

class NoteCounter(BasePort):
    """An output that counts the note-ons it is sent (the BasePort contract, in memory)."""

    name = "note-counter"

    def __init__(self):
        super().__init__()
        self.notes = 0
        self._lock = threading.Lock()

    def _send(self, status, data1, data2, t_ns, beat, session):
        if status & 0xF0 == 0x90 and data2 > 0:
            with self._lock:
                self.notes += 1


def music_plays(notes, zmq_fuzzer, more=5, timeout_s=60.0):
    """Set the music going again (whatever the storm left) and wait for ``more`` notes;
    the replies to the set-up requests, for a failure's message."""
    replies = []
    for request in ({"type": "session", "action": "open", "session": "main", "state": "explore"},
                    {"type": "start"}, {"type": "tempo", "bpm": 140.0, "transition": "now"},
                    {"type": "mood", "arousal": 0.9, "intensity": 0.9, "transition": "now"}):
        replies.append(zmq_fuzzer.request(request))
        if replies[-1] is None:
            raise TimeoutError(f"no reply to {request}")
    before, deadline = notes.notes, time.monotonic() + timeout_s
    while notes.notes < before + more and time.monotonic() < deadline:
        time.sleep(0.05)
    return notes.notes - before, replies


def diagnose(srv):
    """The engine's state, for a failure message."""
    return (f"state {srv.state}, engine thread alive {srv._thread.is_alive()}, generator alive "
            f"{srv._gen_thread.is_alive()}, sessions {[(n, s.slot, s.mood) for n, s in srv.sessions.items()]}, "
            f"frozen {list(srv.seq.frozen)}; " + "; ".join(
                f"{n}: now_tick {srv.seq.ns_tick(s.slot, time.monotonic_ns()):.1f} gen_tick "
                f"{srv.rt.gen_tick[s.slot]} head {srv.rt.head[s.slot]} ready {srv.rt.ready[s.slot]} "
                f"tail {srv.rt.tail[s.slot]} active {srv.rt.active[s.slot]} bpm "
                f"{srv.seq.bpm_at(s.slot, srv.seq.ns_tick(s.slot, time.monotonic_ns())):.1f} asap "
                f"{srv.seq.asap_tick[s.slot]} entry {srv.rt.entry[s.slot]} switch {srv.rt.switch_tick[s.slot]}"
                for n, s in srv.sessions.items()))
