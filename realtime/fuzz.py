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
session is not open (or already open, or all are in use), ``critic`` above 0 on a server
without a critic, a ``theme`` on a server whose model is no theme model (``out_of_range`` on
``notes`` or ``name``) or by a name states.toml does not have (``bad_choice`` on ``name``).
``problem`` allows exactly those (``SEMANTIC``), and only from the server: a refusal whose
``allowed`` is what the table gives the field came from the validator, which must not refuse
a message the table accepts.

Themes: ``notes`` values are drawn as the table allows them (3 to a few dozen notes on a
twelfth-of-a-beat grid, no two notes of one pitch overlapping, within ``MAX_THEME_BARS`` bars;
pitches within ``THEME_SPAN`` of each other, for an engine bug; over OSC as JSON text), refused ones as the error each gets (a wrong JSON type or a list of
non-lists ``bad_type``; too few or too many notes, a bad pitch, a negative start, a duration
of 0 or one that rounds to 0, too long, an overlap ``out_of_range``).  The table's
cross-field rule for themes (action ``set`` takes exactly one of ``notes``/``name``,
``free`` neither) is special-cased, as ``session``'s state-only-with-open rule is.

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
from realtime.outputs import BasePort

# How a well-formed message meets a server that cannot use it, by message type (None: any
# type): the (code, field) pairs it may be refused with.  Any: the session is not open (or
# already is, or none is free), critic above 0 without a critic.  theme: no theme model
# (notes or name), a theme name states.toml does not have.
SEMANTIC = {None: (("bad_choice", "session"), ("out_of_range", "session"),
                   ("bad_choice", "critic"), ("out_of_range", "critic")),
            "theme": (("out_of_range", "notes"), ("out_of_range", "name"), ("bad_choice", "name"))}
# The theme's cross-field rule (protocol._theme_rule): action "set" takes exactly one of
# these, "free" neither.
THEME_GIVEN = ("notes", "name")
ID_LIMIT = 2**63


@dataclass(frozen=True)
class Expect:
    """The answer a request must get: ``code`` None is ok (for message ``type``); else the
    error code (or a tuple of codes allowed), its ``field`` (None: the message as a whole),
    and, where a field's value is refused, the ``type`` whose table gives the error."""

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
        if _refused_by_server(expect.type, reply):
            return None  # well-formed, but this server cannot use it (see SEMANTIC)
        return f"valid {expect.type!r} refused: {reply.get('code')} {reply.get('message')!r}"
    if reply["ok"]:
        return f"accepted, expected {expect.code} on {expect.field!r}"
    if expect.type is not None and _refused_by_server(expect.type, reply):
        # the code and field validation gives, but from the server: validation let the value
        # through (a plain model refuses every theme so)
        return f"{expect.code} expected from validation, the server refused it: {reply.get('message')!r}"
    codes = expect.code if isinstance(expect.code, tuple) else (expect.code,)
    if reply.get("code") not in codes:
        return f"code {reply.get('code')!r}, expected {expect.code!r}: {reply.get('message')!r}"
    if reply.get("field") != expect.field:
        return f"field {reply.get('field')!r}, expected {expect.field!r}: {reply.get('message')!r}"
    return None


def _refused_by_server(kind, reply):
    """Whether error ``reply`` to a ``kind`` message is one of SEMANTIC's, given by the
    server: validation says what the table allows the field, the server something else."""
    field = reply.get("field")
    return (reply.get("code"), field) in SEMANTIC[None] + SEMANTIC.get(kind, ()) and \
        _text(reply.get("allowed")) != _table_allowed(kind, field)


def _text(allowed):
    """``allowed`` as OSC carries it (choices joined by ``, ``), so both transports compare."""
    return ", ".join(map(str, allowed)) if isinstance(allowed, list) else str(allowed)


def _table_allowed(kind, name):
    """What the validator says a refused field of message ``kind`` allows (as text), or None
    if the table has no such field."""
    fields = protocol.ENVELOPE + (protocol.message_spec(kind).fields
                                  if kind in protocol.MESSAGE_TYPES else ())
    field = next((f for f in fields if f.name == name), None)
    return None if field is None else _text(field.allowed())


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


# ---- theme notes: [[pitch, start_beat, duration_beats], ...]

GRID, BEATS_PER_BAR = 12, 4  # engine.motif's ticks per beat (the grid a note rounds to), bar
MAX_TICKS = protocol.MAX_THEME_BARS * BEATS_PER_BAR * GRID  # how long a theme may last
FUZZ_NOTES = 36  # the longest valid theme drawn ("a few dozen" notes; the table allows more)
# engine.controls.to_tonic_c cannot move a theme whose pitches span more than 116 semitones into
# 0..127 for every key: on a theme model such a theme is a server_error (pinned in test_fuzz).
# Valid themes keep to a window that wide, which itself moves over all of 0..127.
THEME_SPAN = 127 - 11


def _beats(ticks, whole_as_int):
    return ticks // GRID if whole_as_int and ticks % GRID == 0 else ticks / GRID


def _theme(drawn):
    """Notes the table accepts, from drawn (pitch above ``low``, start tick, duration ticks)
    with no two of one (pitch, start): each note ends by the next of its pitch and by
    MAX_TICKS, and all start ``offset`` ticks later."""
    raw, low, offset, whole_as_int = drawn
    raw = [(low + pitch, start, dur) for pitch, start, dur in raw]
    starts = {}
    for pitch, start, _ in raw:
        starts.setdefault(pitch, []).append(start)
    rows = []
    for pitch, start, dur in raw:
        end = min([start + dur, MAX_TICKS] + [s for s in starts[pitch] if s > start])
        rows.append([pitch, _beats(start + offset, whole_as_int), _beats(end - start, whole_as_int)])
    return rows


def valid_notes(max_notes=FUZZ_NOTES):
    """Themes the table accepts: 3..``max_notes`` notes, pitches 0..127 (within
    THEME_SPAN of each other), starts and durations on the grid (so no duration rounds to
    0; whole beats sometimes as integers), no two notes of one pitch overlapping, within
    MAX_THEME_BARS bars of the first note (which may start anywhere: a theme is measured
    from it)."""
    raw = st.lists(st.tuples(st.integers(0, THEME_SPAN), st.integers(0, MAX_TICKS - 1),
                             st.integers(1, 2 * BEATS_PER_BAR * GRID)),
                   min_size=protocol.MIN_NOTES, max_size=max_notes,
                   unique_by=lambda note: note[:2])
    return st.tuples(raw, st.integers(0, 127 - THEME_SPAN), st.integers(0, 64 * GRID),
                     st.booleans()).map(_theme)


def _ticks(beats):
    return round(beats * GRID)


def _replace(rows, i, column, value):
    """``rows`` with note ``i`` (modulo their number) given ``value`` in ``column``."""
    rows = [list(r) for r in rows]
    rows[i % len(rows)][column] = value
    return rows


def _swap(t):
    """``rows`` with note ``i`` (modulo their number) replaced by ``note``."""
    rows, i, note = t
    i %= len(rows)
    return rows[:i] + [note] + rows[i + 1:]


def _rows(value):
    """Whether ``value`` has the shape the validator reads further (a list of lists)."""
    return isinstance(value, list) and all(isinstance(r, list) for r in value)


def _text_of_no_rows(text):
    """Whether ``text`` is not JSON, or JSON of something other than a list of lists."""
    try:
        return not _rows(json.loads(text))
    except ValueError:
        return True
    except RecursionError:  # deep brackets: see test_fuzz's pinned protocol bug
        return False


def invalid_notes(osc=False):
    """(value, code) pairs the ``notes`` field refuses, every one on field ``notes``:
    ``bad_type`` for a value that is no list of lists (JSON text that is not one, over
    OSC: any other OSC type), ``out_of_range`` for a list of lists that is no theme.  Over
    OSC the lists go as JSON text.  Numbers that reach engine.motif's tick arithmetic stay
    small (see test_fuzz's pinned engine bugs): only the value refused is extreme."""
    theme = valid_notes()
    pick = st.integers(0, FUZZ_NOTES)
    not_a_pitch = st.integers(-2**63, -1) | st.integers(128, 2**63) | \
        st.floats().filter(lambda x: not (math.isfinite(x) and x == int(x) and 0 <= x <= 127)) | \
        st.none() | st.booleans() | st.text(max_size=4)
    negative = st.floats(max_value=-5e-324) | st.integers(-2**63, -1) | st.just(math.nan)
    # not above 0, or so short that start_beat + duration_beats rounds to the start's tick
    no_length = st.floats(max_value=1 / (2.5 * GRID)) | st.integers(-2**63, 0) | \
        st.sampled_from([math.inf, math.nan])

    def too_long(t):  # a note from a bar past the last: the theme lasts too many bars
        rows, pitch, gap, dur = t
        first = min(_ticks(r[1]) for r in rows)
        return rows + [[pitch, (first + MAX_TICKS + gap) / GRID, dur / GRID]]

    def overlap(t):  # a note of the same pitch starting before another one ends
        rows, i, into, dur = t
        pitch, start, length = rows[i % len(rows)]
        start, length = _ticks(start), _ticks(length)
        return rows + [[pitch, (start + into % length) / GRID, dur / GRID]]

    not_three = st.lists(st.integers(0, 127), max_size=2) | \
        st.lists(st.integers(0, 127), min_size=4, max_size=6)
    too_many = st.tuples(theme, st.integers(1, 64)).map(  # the theme again and again
        lambda t: (t[0] * (protocol.MAX_THEME_NOTES // len(t[0]) + 1))[:protocol.MAX_THEME_NOTES + t[1]])
    out = st.one_of(
        st.tuples(theme, st.integers(0, protocol.MIN_NOTES - 1)).map(lambda t: t[0][:t[1]]),
        st.tuples(theme, pick, st.just(0), not_a_pitch).map(lambda t: _replace(*t)),
        st.tuples(theme, pick, st.just(1), negative).map(lambda t: _replace(*t)),
        st.tuples(theme, pick, st.just(2), no_length).map(lambda t: _replace(*t)),
        st.tuples(theme, st.integers(0, 127), st.integers(0, 10**6), st.integers(1, 4 * GRID)).map(too_long),
        st.tuples(theme, pick, st.integers(0, 10**6), st.integers(1, 4 * GRID)).map(overlap),
        too_many,
        st.tuples(theme, pick, not_three).map(_swap))
    not_a_list = _SCALARS | st.dictionaries(st.text(max_size=4), _SCALARS, max_size=2)
    # a theme with one note that is not a list: [60, 0, 1], "[60, 0, 1]", {"pitch": 60}, ...
    stray = st.tuples(theme, pick, not_a_list).map(_swap)
    text = _unicode(osc).filter(_text_of_no_rows) | not_a_list.map(json.dumps)
    if osc:  # OSC carries no arrays: notes are JSON text, anything else is the wrong type
        native = st.integers(-2**31, 2**31 - 1) | st.floats(width=32) | st.binary(min_size=1) | \
            st.booleans()
        wrong = native | text | stray.map(json.dumps)
        return st.tuples(out.map(json.dumps), st.just("out_of_range")) | \
            st.tuples(wrong, st.just("bad_type"))
    wrong_json = st.one_of(_SCALARS, *[_nested(d) for d in (1, 3, protocol.MAX_DEPTH - 1)])
    wrong = wrong_json.filter(lambda v: not isinstance(v, str) and not _rows(v)) | stray | text
    return st.tuples(out, st.just("out_of_range")) | st.tuples(wrong, st.just("bad_type"))


def valid_value(field, names, sessions=None, osc=False):
    """Values ``field`` accepts.  ``sessions``: the session names to use for the envelope's
    ``session`` (a small pool keeps the server's state in bounds)."""
    if field.kind == "notes":
        return valid_notes().map(json.dumps) if osc else valid_notes()
    if field.kind == "float":
        floats = st.floats(field.lo, field.hi, width=32 if osc else 64)
        return floats | st.integers(math.ceil(field.lo), math.floor(field.hi))
    if field.kind == "int":
        return st.integers(field.lo, field.hi)
    if field.kind == "choice":
        return st.sampled_from(_choices(field, names))
    if field.kind == "key":
        return st.sampled_from(protocol.KEYS).flatmap(lambda k: st.sampled_from([k, k.lower(), k.upper()]))
    if field.kind == "name":  # the pool is for the envelope's session; other names (a theme's) any
        pooled = sessions and field in protocol.ENVELOPE
        names_ok = st.sampled_from(sessions) if pooled else st.from_regex(_NAME_RE, fullmatch=True)
        # OSC reads "session"/"id" as keywords, so no session can be called that there
        return names_ok.filter(lambda n: n not in protocol.RESERVED_NAMES) if osc else names_ok
    if osc:
        return st.integers(-2**31, 2**31 - 1) | _unicode(True, min_size=1, max_size=128)
    return st.integers(-ID_LIMIT, ID_LIMIT - 1) | _unicode(min_size=1, max_size=128)


def invalid_value(field, names, osc=False):
    """(value, error code) pairs ``field`` refuses, with the code the table gives each."""
    if field.kind == "notes":
        return invalid_notes(osc)
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
    if spec.name == "session":  # the table's cross-field rules: state only with action open
        body = body.map(lambda d: {k: v for k, v in d.items() if k != "state" or d["action"] == "open"})
    if spec.name == "theme":  # and a theme to set given once, as notes or by name; free: neither
        given = st.one_of(*[st.fixed_dictionaries({n: fields[n]}) for n in THEME_GIVEN])
        body = st.tuples(body, given).map(_set_or_free)
    return body


def _set_or_free(pair):
    msg, given = pair
    msg = {k: v for k, v in msg.items() if k not in THEME_GIVEN}
    return msg if msg.get("action") == "free" else {**msg, **given}


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
    if spec.name == "theme" and msg.get("action", _field(spec, "action").default) == "set" and \
            not any(n in msg for n in THEME_GIVEN):
        return ",".join(THEME_GIVEN)
    return None


def _encode(obj):
    return json.dumps(obj).encode()  # NaN and Infinity as JSON's extension literals


def _mutated(spec, names, sessions):
    """A valid message with one field (envelope ones included) given a refused value."""
    def case(t):
        msg, name, (value, code) = t
        msg = {**msg, name: value}
        return Case(code, (_encode(msg),),
                    (Expect(code, name, None if name == "id" else msg.get("id"), spec.name),))
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


def _specs(types):
    """The message types to draw from: ``types`` (names) or, None, every one of the table."""
    specs = [s for s in protocol.MESSAGES if types is None or s.name in types]
    if not specs:
        raise ValueError(f"no message types among {types!r}; allowed: {', '.join(protocol.MESSAGE_TYPES)}")
    return specs


def _any_valid(specs, names, sessions):
    return st.sampled_from(specs).flatmap(lambda s: valid_message(s, names, sessions))


def _unknown_type(names, sessions, specs=protocol.MESSAGES):
    bad_type = _unicode(max_size=20).filter(lambda t: t not in protocol.MESSAGE_TYPES) | \
        _SCALARS.filter(lambda v: not isinstance(v, str))
    base = _any_valid(specs, names, sessions)

    def retype(pair):
        msg, kind = pair
        msg = {**msg, "type": kind} if kind is not None else {k: v for k, v in msg.items() if k != "type"}
        return Case("unknown_type", (_encode(msg),), (Expect("unknown_type", "type", msg.get("id")),))
    return st.tuples(base, st.none() | bad_type).map(retype)


def _invalid_json(names, sessions, specs=protocol.MESSAGES):
    whole = Expect("invalid_json", None)
    base = _any_valid(specs, names, sessions).map(_encode)
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


def _too_large(names, sessions, specs=protocol.MESSAGES):
    big = Expect("too_large", None)
    base = _any_valid(specs, names, sessions)
    deep = st.integers(protocol.MAX_DEPTH + 1, 20000).map(lambda d: b"[" * d + b"]" * d)
    deep_field = st.tuples(base, st.integers(protocol.MAX_DEPTH, 3000)).map(
        lambda t: _encode(t[0])[:-1] + b', "deep": ' + b"[" * t[1] + b"]" * t[1] + b"}")
    padded = st.tuples(base, st.integers(1, 40000)).map(
        lambda t: b" " * (protocol.MAX_MESSAGE_BYTES + t[1] - len(_encode(t[0]))) + _encode(t[0]))
    return st.one_of(deep.map(lambda b: Case("too_deep", (b,), (big,))),
                     deep_field.map(lambda b: Case("too_deep", (b,), (big,))),
                     padded.map(lambda b: Case("too_large", (b,), (big,))))


def requests(presets=None, stingers=None, sessions=None, types=None):
    """Cases for the ZeroMQ control socket, of every kind, over every message type (or the
    ``types`` named, e.g. ``("theme",)`` to storm one type)."""
    names, specs = _names(presets, stingers), _specs(types)
    valid = [valid_message(s, names, sessions).map(lambda m: Case("valid", (_encode(m),), (_ok(m),)))
             for s in specs]
    delimited = _any_valid(specs, names, sessions) \
        .map(lambda m: Case("valid_delimited", (b"", _encode(m)), (_ok(m),)))
    mutated = [_mutated(s, names, sessions) for s in specs]
    missing = [m for m in (_missing(s, names, sessions) for s in specs) if m is not None]
    unknown = [_unknown_fields(s, names, sessions) for s in specs]
    return st.one_of(*valid, delimited, *mutated, *missing, *unknown,
                     _unknown_type(names, sessions, specs), _invalid_json(names, sessions, specs),
                     _too_large(names, sessions, specs))


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
                    (Expect(code, name, None if name == "id" else msg.get("id"), spec.name),))
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


def osc_bundles(presets=None, stingers=None, sessions=None, types=None):
    """Bundles only (a kind Hypothesis may draw rarely from ``datagrams``)."""
    names = _names(presets, stingers)
    single = st.one_of(*[_osc_valid(s, names, sessions) for s in _specs(types)])
    return _osc_bundles(single)


def datagrams(presets=None, stingers=None, sessions=None, types=None):
    """Cases for the OSC endpoint, of every kind, over every message type (or ``types``)."""
    names, specs = _names(presets, stingers), _specs(types)
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


# ---------------------------------------------------------------- senders

class Tally:
    """Counts of what a fuzz run sent and got back, and the first problems seen."""

    def __init__(self):
        self.sent = self.answered = self.unanswered = self.extra = 0
        self.kinds, self.codes, self.problems = {}, {}, []
        self.accepted = {}  # ok replies by message type: valid cases that were not refused

    def record(self, case, replies):
        self.sent += 1
        self.kinds[case.kind] = self.kinds.get(case.kind, 0) + 1
        self.answered += min(len(replies), len(case.expects))
        self.unanswered += max(0, len(case.expects) - len(replies))
        for expect, reply in zip(case.expects, replies):
            code = "ok" if reply.get("ok") else reply.get("code")
            self.codes[code] = self.codes.get(code, 0) + 1
            if reply.get("ok"):
                self.accepted[reply.get("for")] = self.accepted.get(reply.get("for"), 0) + 1
            wrong = problem(expect, reply)
            if wrong is not None and len(self.problems) < 20:
                self.problems.append(f"{case.kind} {repr(case.payload)[:300]}: {wrong}")
        if len(replies) < len(case.expects) and len(self.problems) < 20:
            self.problems.append(f"{case.kind} {repr(case.payload)[:300]}: unanswered")

    def as_dict(self):
        return {"sent": self.sent, "answered": self.answered, "unanswered": self.unanswered,
                "extra_replies": self.extra, "server_errors": self.codes.get("server_error", 0),
                "replies_by_code": dict(sorted(self.codes.items())),
                "cases_by_kind": dict(sorted(self.kinds.items())),
                "accepted_by_type": dict(sorted(self.accepted.items(), key=lambda kv: str(kv[0]))),
                "problems": list(self.problems)}


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
