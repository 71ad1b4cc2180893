"""Requests: one JSON frame decoded and checked completely against the protocol's table,
and the replies to it.

``parse`` is the ZeroMQ control socket's entry point, ``validate`` the OSC endpoint's (its
message already decoded); either returns the normalised dict the music loop acts on (every
field of the type present, defaults filled) or raises InvalidMessage with ``.code``,
``.field`` and ``.allowed``.  ``ok_reply``/``error_reply`` write the answer.
"""
import json

from engine.errors import InvalidMessage

from realtime.protocol.spec import (BY_NAME, ENVELOPE, ERROR_CODES, MAX_DEPTH, MAX_MESSAGE_BYTES,
                                    MESSAGE_TYPES, OPEN_ONLY, PRESETS, STINGERS)
from realtime.protocol.states import state_names
from realtime.protocol.values import brief, check_id, check_value, json_type, nesting_depth, reject, show


def parse(data, presets=None, stingers=None):
    """Decode and validate one request; returns the normalised dict.

    ``presets``/``stingers``: the names ``state``/``stinger`` may use (default: those of
    ``load_states()``).  Raises InvalidMessage with ``.code``, ``.field``, ``.allowed``.
    """
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    if len(data) > MAX_MESSAGE_BYTES:
        raise reject("too_large", f"message is {len(data)} bytes; allowed <= {MAX_MESSAGE_BYTES} bytes",
                     None, f"<= {MAX_MESSAGE_BYTES} bytes")
    depth = nesting_depth(data)
    if depth > MAX_DEPTH:
        raise reject("too_large", f"message nests arrays/objects {depth} deep; allowed <= {MAX_DEPTH}",
                     None, f"nesting depth <= {MAX_DEPTH}")
    try:
        obj = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise reject("invalid_json", f"message is not UTF-8: {exc}", None, "a UTF-8 JSON object") from None
    except ValueError as exc:  # also: an integer of more than sys.get_int_max_str_digits() digits
        raise reject("invalid_json", f"message is not valid JSON: {exc}", None, "a JSON object") from None
    return validate(obj, presets, stingers)


def validate(obj, presets=None, stingers=None):
    """Validate an already decoded message (the OSC endpoint's entry point)."""
    if not isinstance(obj, dict):
        raise reject("invalid_json", f"message must be a JSON object, not {json_type(obj)}",
                     None, "a JSON object")
    presets, stingers = state_names(presets, stingers)
    names = {PRESETS: presets, STINGERS: stingers}
    out = {}
    msg_id = obj.get("id")
    if check_id(msg_id):
        out["id"] = msg_id
    try:
        kind = obj.get("type")
        if "type" not in obj:
            raise reject("unknown_type", f"missing field 'type'; allowed: {', '.join(MESSAGE_TYPES)}",
                         "type", list(MESSAGE_TYPES))
        if not isinstance(kind, str) or kind not in BY_NAME:
            raise reject("unknown_type", f"unknown message type {brief(kind)}; allowed: "
                         f"{', '.join(MESSAGE_TYPES)}", "type", list(MESSAGE_TYPES))
        spec = BY_NAME[kind]
        out["type"] = kind
        known = {"type"} | {f.name for f in ENVELOPE} | {f.name for f in spec.fields}
        extra = sorted(k for k in obj if k not in known)
        if extra:
            allowed = sorted(known)
            raise reject("unknown_field", f"unknown field{'s' if len(extra) > 1 else ''} "
                         f"{', '.join(map(brief, extra))} in '{kind}'; allowed: {', '.join(allowed)}",
                         ",".join(extra), allowed)
        for field in ENVELOPE + spec.fields:
            if field.name in obj:
                value = check_value(kind, field, obj[field.name], names)
                if field.name != "v":  # checked, not passed on
                    out[field.name] = value
            elif field.required or (field.name == "session" and spec.session_required):
                raise reject("missing_field", f"'{kind}' needs field '{field.name}' "
                             f"({field.doc}); allowed: {show(field.allowed(*names.values()))}",
                             field.name, field.allowed(*names.values()))
            elif field.name != "v":
                out[field.name] = field.default
        if spec.one_of and all(out[n] is None for n in spec.one_of):
            allowed = f"at least one of {', '.join(spec.one_of)}"
            raise reject("missing_field", f"'{kind}' needs {allowed}", ",".join(spec.one_of), allowed)
        if kind == "session" and out["action"] == "close":
            for name in OPEN_ONLY:
                if out[name] is not None:
                    raise reject("unknown_field", f"field '{name}' is only allowed with action "
                                 "'open'", name, "only with action 'open'")
        if kind == "theme":
            theme_rule(out)
        if kind == "stinger" and out["name"] is not None and out["notes"] is not None:
            raise reject("unknown_field", "'stinger' takes notes or name, not both", "name",
                         "notes or name, not both")
        out.setdefault("id", None)
        return out
    except InvalidMessage as exc:
        exc.msg_id = out.get("id")
        raise


def theme_rule(msg):
    """A theme to set is given once, as notes or by name; going free takes neither."""
    given = [n for n in ("notes", "name") if msg[n] is not None]
    if msg["action"] == "free" and given:
        raise reject("unknown_field", f"field '{given[0]}' is not allowed with action 'free'",
                     given[0], "only with action 'set'")
    if msg["action"] == "set" and not given:
        raise reject("missing_field", "'theme' needs notes or name", "notes,name",
                     "notes or name")
    if len(given) == 2:
        raise reject("unknown_field", "'theme' takes notes or name, not both", "name",
                     "notes or name, not both")


def ok_reply(msg, **extra):
    """The JSON reply to a handled request: ack, or hello/pong for those requests."""
    kind = msg.get("type")
    reply = {"ok": True, "type": BY_NAME[kind].reply if kind in BY_NAME else "ack",
             "id": msg.get("id"), "for": kind, "session": msg.get("session", "main")}
    reply.update(extra)
    return json.dumps(reply, separators=(",", ":"), allow_nan=False).encode()


def error_code(exc):
    """The protocol error code for an exception."""
    if not isinstance(exc, InvalidMessage):
        return "server_error"
    code = getattr(exc, "code", None)
    if code in ERROR_CODES:
        return code
    return "bad_choice" if isinstance(exc.allowed, (list, tuple)) else "out_of_range"


def error_reply(exc, msg_id=None):
    """The JSON error reply for an exception (any exception: others become server_error)."""
    if msg_id is None:
        msg_id = getattr(exc, "msg_id", None)
    code = error_code(exc)
    if code == "server_error":
        field, allowed, text = None, None, f"server error: {type(exc).__name__}: {exc}"
    else:
        field, allowed, text = exc.field, exc.allowed, str(exc)
    if isinstance(allowed, tuple):
        allowed = list(allowed)
    reply = {"ok": False, "type": "error", "id": msg_id, "code": code, "field": field,
             "allowed": allowed, "message": text}
    return json.dumps(reply, separators=(",", ":"), default=str).encode()
