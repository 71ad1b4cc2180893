"""What the server must answer a fuzz case, worked out from the protocol's table alone:
``Case`` (what is sent) and ``Expect`` (the answer it must get), and ``problem``, the
oracle that says what is wrong with a reply.

A valid message may still be refused for the state of the server, never for its form
(``SEMANTIC``); a refusal whose ``allowed`` is what the table gives the field came from the
validator, which must not refuse a message the table accepts.
"""
from dataclasses import dataclass

from realtime import protocol

# How a well-formed message meets a server that cannot use it, by message type (None: any
# type): the (code, field) pairs it may be refused with.  Any: the session is not open (or
# already is, or none is free), critic above 0 without a critic.  theme: a theme longer
# than its session's form (notes or name), a theme name states.toml does not have.  mood,
# state, session: voices the session cannot take (a channel another of its voices has, none
# left to play, a one-line model).  mood, state: a style on a model told none.  cue: see its
# entry.
SEMANTIC = {None: (("bad_choice", "session"), ("out_of_range", "session"),
                   ("bad_choice", "critic"), ("out_of_range", "critic")),
            "theme": (("out_of_range", "notes"), ("out_of_range", "name"), ("bad_choice", "name")),
            # cue: a beat that has played, a 65th cue waiting
            "cue": (("out_of_range", "beat"), ("out_of_range", "name")),
            **dict.fromkeys(("mood", "state"), (("out_of_range", "voices"),
                                                ("out_of_range", "style"))),
            "session": (("out_of_range", "voices"),)}
# The theme's cross-field rule (realtime.protocol.requests.theme_rule): action "set" takes exactly one of
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
        # through (a theme longer than its session's form is refused so)
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
