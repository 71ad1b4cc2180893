"""Checking one value against the protocol's table: the field checks that requests
(``realtime.protocol.requests``) and presets (``realtime.protocol.states``) share, the
nesting measure taken before JSON is read, and the helpers that quote a refused value.

Every refusal is an ``InvalidMessage`` carrying its protocol error code (``reject``).
"""
import json
import re
from itertools import accumulate

from engine.ensemble import DRUMS, VOICES
from engine.errors import InvalidMessage
from engine.motif import from_notes

from realtime.protocol.spec import (MAX_DEPTH, MAX_THEME_BARS, MAX_THEME_NOTES, NAME_RE, PLAY,
                                    VOICE_KEYS, VOICE_RANGES, parse_when)


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
        value = _json_text(where, field, value, "notes")
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


def _json_text(where, field, value, what):
    """``value`` read as JSON (OSC carries no nested values: they come as JSON text), its
    nesting measured first; a refusal is ``bad_type`` on ``field``."""
    if nesting_depth(value.encode("utf-8", "surrogatepass")) > MAX_DEPTH:
        raise reject("bad_type", f"{where} is JSON text nested deeper than {what} are",
                     field.name, field.allowed())
    try:
        return json.loads(value)
    except ValueError:
        raise reject("bad_type", f"{where} is a string that is not JSON {what}",
                     field.name, field.allowed()) from None


def _voice_refused(code, kind, path, reason, allowed):
    """A refusal of one part of a ``voices`` value: its field is the part's ``path``
    (``voices``, ``voices.bass``, ``voices.bass.program``); ``reason`` (what is wrong, read
    after the path) is kept on the exception for the preset loader's message."""
    if isinstance(allowed, list) and any(isinstance(a, bool) for a in allowed):
        shown = ", ".join(map(json.dumps, allowed))  # true, false, "auto": as JSON has them
    else:
        shown = show(allowed)
    exc = reject(code, f"'{kind}' field '{path}' {reason}; allowed: {shown}", path, allowed)
    exc.reason = reason
    return exc


def check_voices(kind, field, value):
    """A ``voices`` value, normalised to ``{name: {"play"?, "program"?, "channel"?,
    "octave"?}}`` (``true``/``false``/``"auto"`` become ``{"play": ...}``).  Each refusal
    names the part (``voices.bass.program``) and what it allows; the value as a whole
    (``voices``) must name a voice, leave one that may play and give no channel twice.  A
    JSON string (OSC) is read."""
    name, allowed = field.name, field.allowed()
    if isinstance(value, str):
        value = _json_text(f"'{kind}' field '{name}'", field, value, "voices")
    if not isinstance(value, dict):
        raise _voice_refused("bad_type", kind, name, "must be an object {voice name: setting}, "
                             f"not {json_type(value)}", allowed)
    if not value:
        raise _voice_refused("out_of_range", kind, name, "is an empty object: it names no voice",
                             allowed)
    out = {}
    for voice, setting in value.items():
        if voice not in VOICES:
            raise _voice_refused("bad_choice", kind, name, f"names {brief(voice)}, which is not "
                                 "a voice", list(VOICES))
        out[voice] = _voice_setting(kind, f"{name}.{voice}", voice, setting)
    if len(out) == len(VOICES) and all(s.get("play") is False for s in out.values()):
        raise _voice_refused("out_of_range", kind, name, "turns every voice off: none would play",
                             allowed)
    taken = {}
    for voice, setting in out.items():
        if "channel" in setting:
            other = taken.setdefault(setting["channel"], voice)
            if other != voice:
                raise _voice_refused("out_of_range", kind, name, f"gives channel "
                                     f"{setting['channel']} to two voices ({other} and {voice})",
                                     allowed)
    return out


_SETTING = 'true, false, "auto" or an object of ' + ", ".join(VOICE_KEYS)


def _voice_setting(kind, path, voice, setting):
    """One voice's setting (``true``, ``false``, ``"auto"`` or an object), normalised."""
    if setting is True or setting is False or setting == "auto":
        return {"play": setting}
    if isinstance(setting, str):
        raise _voice_refused("bad_choice", kind, path, f"is {brief(setting)}", _SETTING)
    if not isinstance(setting, dict):
        raise _voice_refused("bad_type", kind, path, f"must be true, false, \"auto\" or an "
                             f"object, not {json_type(setting)}", _SETTING)
    if not setting:
        raise _voice_refused("out_of_range", kind, path, "is an empty object: it sets nothing",
                             _SETTING)
    out = {}
    for key, value in setting.items():
        if key not in VOICE_KEYS:
            raise _voice_refused("bad_choice", kind, path, f"has {brief(key)}, which is not a "
                                 "setting of a voice", list(VOICE_KEYS))
        at = f"{path}.{key}"
        if key == "play":
            if not (value is True or value is False or value == "auto"):
                code = "bad_choice" if isinstance(value, str) else "bad_type"
                raise _voice_refused(code, kind, at, f"is {brief(value)}", list(PLAY))
        else:
            lo, hi = VOICE_RANGES[key]
            if voice == VOICES[DRUMS] and key == "octave":
                lo = hi = 0  # drums are never transposed: their pitches are instruments
            allowed = f"{lo}..{hi}" if lo != hi else f"{lo} (drums are never transposed)"
            if not isinstance(value, int) or isinstance(value, bool):
                raise _voice_refused("bad_type", kind, at, f"must be an integer, not "
                                     f"{json_type(value)}", allowed)
            if not lo <= value <= hi:
                raise _voice_refused("out_of_range", kind, at, f"is {brief(value)}", allowed)
        out[key] = value
    return out


def check_value(kind, field, value, names):
    """``value`` of ``field`` in a ``kind`` message, checked and normalised (an int for a
    float field becomes a float; a key gets its canonical case).  ``names``: the choice
    lists for ``PRESETS``/``STINGERS`` (``{}`` where the field has none)."""
    where = f"'{kind}' field '{field.name}'"
    if field.kind == "notes":
        return check_notes(where, field, value)
    if field.kind == "voices":
        return check_voices(kind, field, value)
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
    if field.kind == "when":
        try:
            parse_when(value)
        except ValueError as exc:
            code = "out_of_range" if value.startswith(("bars:", "cue:")) else "bad_choice"
            raise reject(code, f"{where} is {brief(value)}: {exc}; allowed: {field.allowed()}",
                         field.name, field.allowed()) from None
        return value
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
