"""Checking one value against the protocol's table: the field checks that requests
(``realtime.protocol.requests``) and presets (``realtime.protocol.states``) share, the
nesting measure taken before JSON is read, and the helpers that quote a refused value.

Every refusal is an ``InvalidMessage`` carrying its protocol error code (``reject``).
"""
import json
import re
from itertools import accumulate

from engine.errors import InvalidMessage
from engine.motif import from_notes

from realtime.protocol.spec import MAX_DEPTH, MAX_THEME_BARS, MAX_THEME_NOTES, NAME_RE


def reject(code, message, field=None, allowed=None):
    """An InvalidMessage carrying its error code (handlers use this for semantic errors)."""
    exc = InvalidMessage(message, field=field, allowed=allowed)
    exc.code = code
    return exc


# A JSON string (an unterminated one runs to the end, so the scan stays linear), and every
# byte that is not a bracket: what nesting_depth deletes before it counts.
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKETS = bytes(range(256)).translate(None, b"[]{}")
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def nesting_depth(data):
    """How deep arrays/objects nest in JSON text ``data`` (bytes), brackets in strings aside.

    A linear byte scan, so hostile input is measured before ``json.loads`` recurses into it.
    On malformed text the figure is approximate; json.loads rejects such text anyway.
    """
    brackets = _JSON_STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_STEP.get, brackets)), default=0)


def check_notes(where, field, value):
    """A theme's notes, checked by ``engine.motif.from_notes`` (its message names the
    note); the value is passed on as lists of numbers.  A JSON string (OSC) is read."""
    if isinstance(value, str):  # OSC carries no nested arrays: the notes come as JSON text
        if nesting_depth(value.encode("utf-8", "surrogatepass")) > MAX_DEPTH:
            raise reject("bad_type", f"{where} is JSON text nested deeper than notes are",
                         field.name, field.allowed())
        try:
            value = json.loads(value)
        except ValueError:
            raise reject("bad_type", f"{where} is a string that is not JSON notes",
                         field.name, field.allowed()) from None
    if not isinstance(value, list) or not all(isinstance(r, list) for r in value):
        what = json_type(value) if not isinstance(value, list) else "a list of " + \
            json_type(next(r for r in value if not isinstance(r, list))) + "s"
        raise reject("bad_type", f"{where} must be a list of [pitch, start_beat, "
                     f"duration_beats], not {what}", field.name, field.allowed())
    if len(value) > MAX_THEME_NOTES:
        raise reject("out_of_range", f"{where} has {len(value)} notes; allowed "
                     f"{field.allowed()}", field.name, field.allowed())
    try:
        from_notes(value, field=field.name, max_bars=MAX_THEME_BARS)
    except InvalidMessage as exc:
        raise reject("out_of_range", f"{where}: {exc}", field.name, field.allowed()) from None
    return [list(r) for r in value]


def check_value(kind, field, value, names):
    """``value`` of ``field`` in a ``kind`` message, checked and normalised (an int for a
    float field becomes a float; a key gets its canonical case).  ``names``: the choice
    lists for ``PRESETS``/``STINGERS`` (``{}`` where the field has none)."""
    where = f"'{kind}' field '{field.name}'"
    if field.kind == "notes":
        return check_notes(where, field, value)
    if field.kind in ("float", "int"):
        ok_type = (isinstance(value, (int, float)) if field.kind == "float" else isinstance(value, int))
        if not ok_type or isinstance(value, bool):
            raise reject("bad_type", f"{where} must be a {'number' if field.kind == 'float' else 'integer'} "
                         f"in {field.allowed()}, not {json_type(value)}", field.name, field.allowed())
        if not (field.lo <= value <= field.hi):  # also false for NaN
            raise reject("out_of_range", f"{where} is {brief(value)}; allowed {field.allowed()}",
                         field.name, field.allowed())
        return float(value) if field.kind == "float" else value
    if field.kind == "id":
        if not check_id(value):
            raise reject("bad_type", f"{where} must be a string (1..128 chars) or integer, "
                         f"not {json_type(value)}", field.name, field.allowed())
        return value
    if not isinstance(value, str):
        allowed = field.allowed(*names.values())
        raise reject("bad_type", f"{where} must be a string, not {json_type(value)}; allowed: "
                     f"{show(allowed)}", field.name, allowed)
    if field.kind == "name":
        if not NAME_RE.fullmatch(value):
            raise reject("out_of_range", f"{where} is {brief(value)}; allowed: {field.allowed()}",
                         field.name, field.allowed())
        return value
    choices = names.get(field.choices, field.choices)
    if field.kind == "key":
        value = value[:1].upper() + value[1:].lower()   # "c#" -> "C#", "bb" -> "Bb"
    if value not in choices:
        raise reject("bad_choice", f"{where} is {brief(value)}; allowed: {show(list(choices))}",
                     field.name, list(choices))
    return value


def check_id(value):
    """Whether ``value`` is an id the envelope takes: an int64 or a string of 1..128 chars."""
    if isinstance(value, bool):
        return False
    return (isinstance(value, int) and -2**63 <= value < 2**63) or \
        (isinstance(value, str) and 1 <= len(value) <= 128)


def brief(value, limit=80):
    """``repr(value)``, cut to ``limit`` characters: error texts quote what was sent, but a
    64 KiB name (or a 4,000-digit number) must not make every reply that long."""
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**limit else "<huge integer>"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def json_type(value):
    """The JSON name of ``value``'s type, for error texts."""
    if value is None:
        return "null"
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array",
            dict: "object"}.get(type(value), type(value).__name__)


def show(allowed):
    """``allowed`` as text: a list joined by commas."""
    return ", ".join(map(str, allowed)) if isinstance(allowed, list) else str(allowed)
