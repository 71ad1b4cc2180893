"""Fuzz cases for the ZeroMQ control socket: whole JSON requests drawn from the table
(``requests``), each with the answer it must get.  ``valid_message`` also feeds the OSC
cases (``realtime.fuzz.osc``).
"""
import json

from hypothesis import strategies as st

from realtime import protocol
from realtime.fuzz.oracle import THEME_GIVEN, Case, Expect
from realtime.fuzz.values import SCALARS, invalid_value, nested, unicode_text, valid_value

def choice_names(presets, stingers):
    presets, stingers = protocol.state_names(presets, stingers)
    return {protocol.PRESETS: presets, protocol.STINGERS: stingers}


def envelope_field(name):
    return {f.name: f for f in protocol.ENVELOPE}[name]


def valid_message(spec, names, sessions=None, osc=False):
    """A dict of message type ``spec`` that the table accepts."""
    fields = {f.name: valid_value(f, names, sessions, osc) for f in spec.fields}
    required = {n: v for n, v in fields.items() if _field(spec, n).required}
    optional = {n: v for n, v in fields.items() if n not in required}
    session = valid_value(envelope_field("session"), names, sessions, osc)
    optional["id"] = valid_value(envelope_field("id"), names, sessions, osc)
    if spec.session_required:
        required["session"] = session
    else:
        optional["session"] = session
    if not osc:
        optional["v"] = st.just(protocol.PROTOCOL_VERSION)
    body = st.fixed_dictionaries({"type": st.just(spec.name), **required}, optional=optional)
    if spec.one_of:
        body = body.filter(lambda d: any(n in d for n in spec.one_of))
    if spec.name == "session":  # the table's cross-field rules: state, voices, repetition only with open
        body = body.map(lambda d: {k: v for k, v in d.items()
                                   if k not in protocol.OPEN_ONLY or d["action"] == "open"})
    if spec.name in ("theme", "stinger"):  # given once, as notes or by name (theme free: neither)
        given = st.one_of(*[st.fixed_dictionaries({n: fields[n]}) for n in THEME_GIVEN])
        body = st.tuples(body, given).map(_set_or_free)
    return body


def _set_or_free(pair):
    msg, given = pair
    msg = {k: v for k, v in msg.items() if k not in THEME_GIVEN}
    return msg if msg.get("action") == "free" else {**msg, **given}


def _field(spec, name):
    return next(f for f in protocol.ENVELOPE + spec.fields if f.name == name)


def ok_expect(msg):
    return Expect(None, None, msg.get("id"), msg["type"])


def first_missing(spec, msg):
    """The missing_field error the table gives ``msg``, or None."""
    for f in protocol.ENVELOPE + spec.fields:
        if f.name not in msg and (f.required or (f.name == "session" and spec.session_required)):
            return f.name
    if spec.one_of and not any(n in msg for n in spec.one_of):
        return ",".join(spec.one_of)
    if spec.name == "theme" and msg.get("action", _field(spec, "action").default) == "set" and \
            not any(n in msg for n in THEME_GIVEN):
        return ",".join(THEME_GIVEN)
    return None


def encode(obj):
    return json.dumps(obj).encode()  # NaN and Infinity as JSON's extension literals


def _mutated(spec, names, sessions):
    """A valid message with one field (envelope ones included) given a refused value."""
    def case(t):
        msg, name, (value, code, named) = t
        msg = {**msg, name: value}
        return Case(code, (encode(msg),),
                    (Expect(code, named, None if name == "id" else msg.get("id"), spec.name),))
    base = valid_message(spec, names, sessions)
    return st.one_of(*[st.tuples(base, st.just(f.name), invalid_value(f, names)).map(case)
                       for f in protocol.ENVELOPE + spec.fields])


def _missing(spec, names, sessions):
    theme = ",".join(THEME_GIVEN) if spec.name == "theme" else None
    droppable = [f.name for f in protocol.ENVELOPE + spec.fields if f.required] + \
        (["session"] if spec.session_required else []) + ([",".join(spec.one_of)] if spec.one_of else []) + \
        ([theme] if theme else [])
    if not droppable:
        return None

    def drop(pair):
        msg, names_ = pair
        # a theme without notes or name is missing them only when it is to be set
        gone = names_.split(",") + (["action"] if names_ == theme and msg.get("action") == "free" else [])
        msg = {k: v for k, v in msg.items() if k not in gone}
        return Case("missing_field", (encode(msg),),
                    (Expect("missing_field", first_missing(spec, msg), msg.get("id")),))
    return st.tuples(valid_message(spec, names, sessions), st.sampled_from(droppable)).map(drop)


def _unknown_fields(spec, names, sessions):
    known = {"type"} | {f.name for f in protocol.ENVELOPE + spec.fields}
    extra = st.dictionaries(unicode_text(max_size=20).filter(lambda k: k not in known), SCALARS,
                            min_size=1, max_size=3)

    def add(pair):
        msg, more = pair
        msg = {**msg, **more}
        return Case("unknown_field", (encode(msg),),
                    (Expect("unknown_field", ",".join(sorted(more)), msg.get("id")),))
    return st.tuples(valid_message(spec, names, sessions), extra).map(add)


def message_specs(types):
    """The message types to draw from: ``types`` (names) or, None, every one of the table."""
    specs = [s for s in protocol.MESSAGES if types is None or s.name in types]
    if not specs:
        raise ValueError(f"no message types among {types!r}; allowed: {', '.join(protocol.MESSAGE_TYPES)}")
    return specs


def _any_valid(specs, names, sessions):
    return st.sampled_from(specs).flatmap(lambda s: valid_message(s, names, sessions))


def _unknown_type(names, sessions, specs=protocol.MESSAGES):
    bad_type = unicode_text(max_size=20).filter(lambda t: t not in protocol.MESSAGE_TYPES) | \
        SCALARS.filter(lambda v: not isinstance(v, str))
    base = _any_valid(specs, names, sessions)

    def retype(pair):
        msg, kind = pair
        msg = {**msg, "type": kind} if kind is not None else {k: v for k, v in msg.items() if k != "type"}
        return Case("unknown_type", (encode(msg),), (Expect("unknown_type", "type", msg.get("id")),))
    return st.tuples(base, st.none() | bad_type).map(retype)


def _invalid_json(names, sessions, specs=protocol.MESSAGES):
    whole = Expect("invalid_json", None)
    base = _any_valid(specs, names, sessions).map(encode)
    truncated = st.tuples(base, st.integers(0, 10**6)).map(lambda t: t[0][:t[1] % len(t[0])])
    not_utf8 = st.tuples(base, st.integers(0, 10**6), st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80"])) \
        .map(lambda t: t[0][:t[1] % len(t[0])] + t[2] + t[0][t[1] % len(t[0]):])
    not_object = st.one_of(SCALARS, nested(2).filter(lambda v: isinstance(v, list))).map(encode)
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


def _too_large(names, sessions, specs=protocol.MESSAGES):
    big = Expect("too_large", None)
    base = _any_valid(specs, names, sessions)
    deep = st.integers(protocol.MAX_DEPTH + 1, 20000).map(lambda d: b"[" * d + b"]" * d)
    deep_field = st.tuples(base, st.integers(protocol.MAX_DEPTH, 3000)).map(
        lambda t: encode(t[0])[:-1] + b', "deep": ' + b"[" * t[1] + b"]" * t[1] + b"}")
    padded = st.tuples(base, st.integers(1, 40000)).map(
        lambda t: b" " * (protocol.MAX_MESSAGE_BYTES + t[1] - len(encode(t[0]))) + encode(t[0]))
    return st.one_of(deep.map(lambda b: Case("too_deep", (b,), (big,))),
                     deep_field.map(lambda b: Case("too_deep", (b,), (big,))),
                     padded.map(lambda b: Case("too_large", (b,), (big,))))


def requests(presets=None, stingers=None, sessions=None, types=None):
    """Cases for the ZeroMQ control socket, of every kind, over every message type (or the
    ``types`` named, e.g. ``("theme",)`` to storm one type)."""
    names, specs = choice_names(presets, stingers), message_specs(types)
    valid = [valid_message(s, names, sessions).map(lambda m: Case("valid", (encode(m),), (ok_expect(m),)))
             for s in specs]
    delimited = _any_valid(specs, names, sessions) \
        .map(lambda m: Case("valid_delimited", (b"", encode(m)), (ok_expect(m),)))
    mutated = [_mutated(s, names, sessions) for s in specs]
    missing = [m for m in (_missing(s, names, sessions) for s in specs) if m is not None]
    unknown = [_unknown_fields(s, names, sessions) for s in specs]
    return st.one_of(*valid, delimited, *mutated, *missing, *unknown,
                     _unknown_type(names, sessions, specs), _invalid_json(names, sessions, specs),
                     _too_large(names, sessions, specs))
