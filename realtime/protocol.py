"""The control protocol: one table of messages and fields, and everything derived from it.

Games send JSON objects (over ZeroMQ, or OSC converted to the same dict); ``parse`` checks
them completely against ``MESSAGES`` so that the music loop only ever sees validated,
normalised dicts.  Replies, error texts, the event stream helpers and PROTOCOL.md's field
tables come from the same table.  Run ``python -m realtime.protocol --markdown`` to print
the tables.
"""
import json
import os
import re
import sys
import tomllib
from itertools import accumulate
from dataclasses import dataclass
from pathlib import Path

from engine.sampler.critic import MAX_CANDIDATES
from engine.errors import InvalidMessage

PROTOCOL_VERSION = 1
MAX_MESSAGE_BYTES = 65536
# Requests up to this size are read and answered too_large; beyond it libzmq drops the
# connection (the socket's MAXMSGSIZE), so nobody can make the server buffer gigabytes.
MAX_REQUEST_BYTES = 16 * 2**20
# Arrays/objects nested deeper than this are refused before json.loads (whose recursion
# would otherwise end in RecursionError); no valid message nests at all.
MAX_DEPTH = 32
CONTROL_ADDRESS = "tcp://127.0.0.1:5555"
EVENT_ADDRESS = "tcp://127.0.0.1:5556"
OSC_PORT = 9000

TRANSITIONS = ("now", "beat", "bar")
MIN_NOTES, MAX_THEME_BARS = 3, 8  # engine.motif's limits, for the docs and errors
KEYS = ("C", "C#", "Db", "D", "D#", "Eb", "E", "F", "F#", "Gb", "G", "G#", "Ab", "A", "A#", "Bb", "B")
MODES = ("major", "minor")
NAME_PATTERN = r"[A-Za-z0-9_.-]{1,64}"
_NAME_RE = re.compile(NAME_PATTERN)
# Dynamic choice lists: filled from states.toml at parse time.
PRESETS, STINGERS = "<presets>", "<stingers>"
ERROR_CODES = ("invalid_json", "unknown_type", "missing_field", "bad_type", "out_of_range",
               "bad_choice", "unknown_field", "too_large", "server_error")


@dataclass(frozen=True)
class Field:
    """One field of a message: kind is "float", "int", "choice", "key", "name", "id" or
    "notes" (a theme: ``[[pitch, start_beat, duration_beats], ...]``, ``engine.motif``)."""

    name: str
    kind: str
    doc: str
    required: bool = False
    default: object = None
    lo: float = None
    hi: float = None
    choices: object = None  # a tuple, or PRESETS / STINGERS
    example: object = None

    def allowed(self, presets=(), stingers=()):
        """What this field accepts, as shown in errors and docs."""
        if self.kind in ("float", "int"):
            return f"{self.lo!r}..{self.hi!r}" if self.kind == "float" else f"{self.lo}..{self.hi}"
        if self.kind in ("choice", "key"):
            return list({PRESETS: presets, STINGERS: stingers}.get(self.choices, self.choices))
        if self.kind == "name":
            return f"string matching {NAME_PATTERN}"
        if self.kind == "notes":
            return (f"{MIN_NOTES}..{MAX_THEME_NOTES} [pitch 0..127, start_beat >= 0, "
                    f"duration_beats > 0], at most {MAX_THEME_BARS} bars of 4 beats")
        return "string (1..128 chars) or integer"


@dataclass(frozen=True)
class Message:
    """One message type: its fields (in OSC positional order) and what it does."""

    name: str
    doc: str
    fields: tuple = ()
    reply: str = "ack"
    one_of: tuple = ()          # at least one of these fields must be present
    session_required: bool = False
    osc_order: tuple = None     # positional OSC args, when not simply ``fields``

    def positional(self):
        return self.osc_order or tuple(f.name for f in self.fields)


def _transition(default):
    return Field("transition", "choice", "when the change takes effect: at once, next beat, next bar",
                 default=default, choices=TRANSITIONS, example=default)


TONALITY_RANGE = (0.0, 1.0)


def _tonality(example=None, preset=False):
    lo, hi = TONALITY_RANGE
    left_out = ("the preset's, else the server's default (`serve --tonality`)" if preset else
                "the session's stays (until one is set: the server's default, `serve --tonality`)")
    return Field("tonality", "float", "prior over the mode's scale at sampling: 0 free (the model's "
                 f"own pitches) .. 1 strict (scale notes only); left out: {left_out}",
                 lo=lo, hi=hi, example=example)


CRITIC_RANGE = (0, MAX_CANDIDATES)


def _critic(preset=False):
    lo, hi = CRITIC_RANGE
    left_out = ("the preset's, else the server's default (`serve --critic-k`)" if preset else
                "the session's stays (until one is set: the server's default, `serve --critic-k`)")
    return Field("critic", "int", "drafts of each beat the discriminator judges, one of which "
                 "plays (0: off, the generator alone); above 0 needs a server started with a "
                 f"critic (`serve --critic PATH`); takes effect at once; left out: {left_out}",
                 lo=lo, hi=hi)


VARIATION_RANGE, BLEND_RANGE = (0.0, 1.0), (0.0, 64.0)
MAX_THEME_NOTES = 512  # an 8-bar theme of sixteenth-note chords fits; the message limit holds

ENVELOPE = (
    Field("id", "id", "any string or integer; echoed in the reply", example=7),
    Field("session", "name", "which session (music stream) the message is for", default="main",
          example="main"),
    Field("v", "int", "protocol version the client speaks (optional)", lo=PROTOCOL_VERSION,
          hi=PROTOCOL_VERSION),
)

MESSAGES = (
    Message("hello", "Handshake: the reply lists protocol version, server, message types, "
                     "states, stingers and capabilities.", reply="hello"),
    Message("mood", "Move the music along the mood axes; missing axes keep their current value.", (
        Field("valence", "float", "negative/sad/minor .. positive/happy/major", lo=-1.0, hi=1.0,
              example=0.5),
        Field("arousal", "float", "calm/slow/sparse .. excited/fast/dense", lo=0.0, hi=1.0, example=0.8),
        Field("intensity", "float", "soft/thin .. loud/full", lo=0.0, hi=1.0, example=0.3),
        _transition("bar"),
        _tonality(0.6),
        _critic(),
    ), one_of=("valence", "arousal", "intensity", "tonality", "critic")),
    Message("state", "Switch to a named preset from states.toml (a `tonality` given here wins "
            "over the preset's).", (
        Field("name", "choice", "preset name", required=True, choices=PRESETS, example="combat"),
        _transition("bar"),
        _tonality(0.8, preset=True),
        _critic(preset=True),
    )),
    Message("tempo", "Change the tempo, at once or ramped over some beats; a change not yet "
            "reached is replaced by a newer one.", (
        Field("bpm", "float", "beats per minute", required=True, lo=30.0, hi=300.0, example=140.0),
        Field("ramp_beats", "float", "beats to ramp over; 0 jumps at the transition point",
              default=0.0, lo=0.0, hi=64.0, example=4.0),
        _transition("beat"),
    )),
    Message("key", "Change key and optionally mode (missing mode keeps the current one).", (
        Field("key", "key", "tonic; lower case accepted", required=True, choices=KEYS, example="D"),
        Field("mode", "choice", "scale mode", choices=MODES, example="minor"),
        _transition("bar"),
        _tonality(0.8),
        _critic(),
    )),
    Message("stinger", "Play a one-shot motif from states.toml in the current key, on the grid.", (
        Field("name", "choice", "stinger name", required=True, choices=STINGERS, example="hit"),
        _transition("beat"),
    )),
    Message("theme", "Compose from a theme (a leitmotif): its variations follow the mood, in "
            "the session's key and mode.  Needs a server whose model is a theme model "
            "(`serve --model theme.npz`); `action` \"free\" goes back to free composition "
            "(on any server).", (
        Field("notes", "notes", "the theme: [pitch (MIDI), start_beat, duration_beats] per note, "
              "in any key (its key is measured); over OSC a JSON string"),
        Field("name", "name", "a theme named in states.toml's [themes] instead of notes"),
        Field("variation", "float", "0 stays close to the theme .. 1 composes freely from it",
              default=0.3, lo=VARIATION_RANGE[0], hi=VARIATION_RANGE[1], example=0.3),
        _transition("bar"),
        Field("blend_beats", "float", "beats over which the latent moves from the current theme "
              "to this one (spherical interpolation); 0: the theme's phrase starts at the "
              "transition", default=0.0, lo=BLEND_RANGE[0], hi=BLEND_RANGE[1], example=0.0),
        Field("action", "choice", "set: compose from this theme; free: back to free "
              "composition (no notes or name)", default="set", choices=("set", "free"),
              example="free"),
    ), osc_order=("name", "variation", "transition", "blend_beats", "action", "notes")),
    Message("start", "Start playing, or resume after pause."),
    Message("stop", "Stop playing; every sounding note is released."),
    Message("pause", "Pause; sounding notes are released, position is kept."),
    Message("session", "Open or close a session (an independent music stream).", (
        Field("action", "choice", "open or close the envelope's session", required=True,
              choices=("open", "close"), example="open"),
        Field("state", "choice", "preset to start in (open only)", choices=PRESETS, example="explore"),
    ), session_required=True, osc_order=("action", "session", "state")),
    Message("ping", "Latency probe; the reply carries the server's monotonic clock.", reply="pong"),
)
MESSAGE_TYPES = tuple(m.name for m in MESSAGES)
_BY_NAME = {m.name: m for m in MESSAGES}


def message_spec(name):
    """The ``Message`` for a type name (KeyError if unknown)."""
    return _BY_NAME[name]


def reject(code, message, field=None, allowed=None):
    """An InvalidMessage carrying its error code (handlers use this for semantic errors)."""
    exc = InvalidMessage(message, field=field, allowed=allowed)
    exc.code = code
    return exc


# ---------------------------------------------------------------- validation

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


def validate(obj, presets=None, stingers=None):
    """Validate an already decoded message (the OSC endpoint's entry point)."""
    if not isinstance(obj, dict):
        raise reject("invalid_json", f"message must be a JSON object, not {_json_type(obj)}",
                     None, "a JSON object")
    presets, stingers = state_names(presets, stingers)
    names = {PRESETS: presets, STINGERS: stingers}
    out = {}
    msg_id = obj.get("id")
    if _check_id(msg_id):
        out["id"] = msg_id
    try:
        kind = obj.get("type")
        if "type" not in obj:
            raise reject("unknown_type", f"missing field 'type'; allowed: {', '.join(MESSAGE_TYPES)}",
                         "type", list(MESSAGE_TYPES))
        if not isinstance(kind, str) or kind not in _BY_NAME:
            raise reject("unknown_type", f"unknown message type {_brief(kind)}; allowed: "
                         f"{', '.join(MESSAGE_TYPES)}", "type", list(MESSAGE_TYPES))
        spec = _BY_NAME[kind]
        out["type"] = kind
        known = {"type"} | {f.name for f in ENVELOPE} | {f.name for f in spec.fields}
        extra = sorted(k for k in obj if k not in known)
        if extra:
            allowed = sorted(known)
            raise reject("unknown_field", f"unknown field{'s' if len(extra) > 1 else ''} "
                         f"{', '.join(map(_brief, extra))} in '{kind}'; allowed: {', '.join(allowed)}",
                         ",".join(extra), allowed)
        for field in ENVELOPE + spec.fields:
            if field.name in obj:
                value = _check(kind, field, obj[field.name], names)
                if field.name != "v":  # checked, not passed on
                    out[field.name] = value
            elif field.required or (field.name == "session" and spec.session_required):
                raise reject("missing_field", f"'{kind}' needs field '{field.name}' "
                             f"({field.doc}); allowed: {_show(field.allowed(*names.values()))}",
                             field.name, field.allowed(*names.values()))
            elif field.name != "v":
                out[field.name] = field.default
        if spec.one_of and all(out[n] is None for n in spec.one_of):
            allowed = f"at least one of {', '.join(spec.one_of)}"
            raise reject("missing_field", f"'{kind}' needs {allowed}", ",".join(spec.one_of), allowed)
        if kind == "session" and out["action"] == "close" and out["state"] is not None:
            raise reject("unknown_field", "field 'state' is only allowed with action 'open'",
                         "state", "only with action 'open'")
        if kind == "theme":
            _theme_rule(out)
        out.setdefault("id", None)
        return out
    except InvalidMessage as exc:
        exc.msg_id = out.get("id")
        raise


def _theme_rule(msg):
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


def _check_notes(where, field, value):
    """A theme's notes, checked by ``engine.motif.from_notes`` (its message names the
    note); the value is passed on as lists of numbers.  A JSON string (OSC) is read."""
    from engine.motif import from_notes

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
        what = _json_type(value) if not isinstance(value, list) else "a list of " + \
            _json_type(next(r for r in value if not isinstance(r, list))) + "s"
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


def _check(kind, field, value, names):
    where = f"'{kind}' field '{field.name}'"
    if field.kind == "notes":
        return _check_notes(where, field, value)
    if field.kind in ("float", "int"):
        ok_type = (isinstance(value, (int, float)) if field.kind == "float" else isinstance(value, int))
        if not ok_type or isinstance(value, bool):
            raise reject("bad_type", f"{where} must be a {'number' if field.kind == 'float' else 'integer'} "
                         f"in {field.allowed()}, not {_json_type(value)}", field.name, field.allowed())
        if not (field.lo <= value <= field.hi):  # also false for NaN
            raise reject("out_of_range", f"{where} is {_brief(value)}; allowed {field.allowed()}",
                         field.name, field.allowed())
        return float(value) if field.kind == "float" else value
    if field.kind == "id":
        if not _check_id(value):
            raise reject("bad_type", f"{where} must be a string (1..128 chars) or integer, "
                         f"not {_json_type(value)}", field.name, field.allowed())
        return value
    if not isinstance(value, str):
        allowed = field.allowed(*names.values())
        raise reject("bad_type", f"{where} must be a string, not {_json_type(value)}; allowed: "
                     f"{_show(allowed)}", field.name, allowed)
    if field.kind == "name":
        if not _NAME_RE.fullmatch(value):
            raise reject("out_of_range", f"{where} is {_brief(value)}; allowed: {field.allowed()}",
                         field.name, field.allowed())
        return value
    choices = names.get(field.choices, field.choices)
    if field.kind == "key":
        value = value[:1].upper() + value[1:].lower()   # "c#" -> "C#", "bb" -> "Bb"
    if value not in choices:
        raise reject("bad_choice", f"{where} is {_brief(value)}; allowed: {_show(list(choices))}",
                     field.name, list(choices))
    return value


def _check_id(value):
    if isinstance(value, bool):
        return False
    return (isinstance(value, int) and -2**63 <= value < 2**63) or \
        (isinstance(value, str) and 1 <= len(value) <= 128)


def _brief(value, limit=80):
    """``repr(value)``, cut to ``limit`` characters: error texts quote what was sent, but a
    64 KiB name (or a 4,000-digit number) must not make every reply that long."""
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**limit else "<huge integer>"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _json_type(value):
    if value is None:
        return "null"
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array",
            dict: "object"}.get(type(value), type(value).__name__)


def _show(allowed):
    return ", ".join(map(str, allowed)) if isinstance(allowed, list) else str(allowed)


# ---------------------------------------------------------------- replies

def ok_reply(msg, **extra):
    """The JSON reply to a handled request: ack, or hello/pong for those requests."""
    kind = msg.get("type")
    reply = {"ok": True, "type": _BY_NAME[kind].reply if kind in _BY_NAME else "ack",
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


# ---------------------------------------------------------------- event stream

EVENT_TYPES = {
    "note_on": "a note starts: channel, pitch, velocity (1..127)",
    "note_off": "a note ends: channel, pitch, velocity 0",
    "mood": "the mood in effect from this beat: valence, arousal, intensity",
    "transport": "state start|stop|pause",
    "tempo": "the tempo from this beat: bpm",
    "state": "a preset took effect: name",
    "key": "the key from this beat: key, mode",
    "theme": "a theme takes effect from this beat (or, with blend_beats, starts blending in): "
             "theme {key, bars, notes, source} or null (free composition), variation, blend_beats",
}
_QUOTED = {}


def encode_event(kind, session, seq, t_ns, beat, channel=0, pitch=0, velocity=0, **fields):
    """One event as single-frame JSON bytes; fields in a fixed order (v, type, session, ...).

    Notes are formatted by an f-string (this runs once per note on the sending thread);
    other types go through json.dumps with ``fields``.
    """
    s = _QUOTED.get(session)
    if s is None:
        s = _QUOTED[session] = json.dumps(str(session))
    if kind == "note_on" or kind == "note_off":
        return (f'{{"v":1,"type":"{kind}","session":{s},"seq":{seq:d},"t_ns":{t_ns:d},'
                f'"beat":{float(beat)!r},"channel":{channel:d},"pitch":{pitch:d},"velocity":{velocity:d}}}'
                ).encode()
    if kind not in EVENT_TYPES:
        raise ValueError(f"unknown event type {kind!r}; allowed: {', '.join(EVENT_TYPES)}")
    event = {"v": PROTOCOL_VERSION, "type": kind, "session": str(session), "seq": seq,
             "t_ns": t_ns, "beat": beat}
    event.update(fields)
    return json.dumps(event, separators=(",", ":"), allow_nan=False).encode()


def decode_event(data):
    """Parse one event frame; raises InvalidMessage if it is not a version-1 event."""
    try:
        event = json.loads(data)
    except ValueError as exc:
        raise reject("invalid_json", f"event is not valid JSON: {exc}", None, "a JSON object") from None
    if not isinstance(event, dict):
        raise reject("invalid_json", "event must be a JSON object", None, "a JSON object")
    if event.get("v") != PROTOCOL_VERSION:
        raise reject("out_of_range", f"event version is {event.get('v')!r}; allowed {PROTOCOL_VERSION}",
                     "v", f"{PROTOCOL_VERSION}")
    if event.get("type") not in EVENT_TYPES:
        raise reject("unknown_type", f"unknown event type {event.get('type')!r}", "type", list(EVENT_TYPES))
    return event


# ---------------------------------------------------------------- states.toml

DEFAULT_STATES = Path(__file__).with_name("states.toml")
RESERVED_NAMES = ("session", "id")  # OSC keyword arguments
_FIELD = {f.name: f for m in MESSAGES for f in m.fields}
PRESET_FIELDS = {
    "valence": _FIELD["valence"], "arousal": _FIELD["arousal"], "intensity": _FIELD["intensity"],
    "bpm": _FIELD["bpm"], "key": _FIELD["key"], "mode": _FIELD["mode"],
    "register": Field("register", "int", "register offset in semitones", lo=-24, hi=24),
    "tonality": _FIELD["tonality"],
    "critic": _FIELD["critic"],
    "max_note_beats": Field("max_note_beats", "float", "longest a note may sound, in beats "
                            "(a guard against runaway notes, not how lengths are made)",
                            lo=0.25, hi=64.0),
}
PRESET_REQUIRED = ("valence", "arousal", "intensity")
DEGREE_RANGE, DURATION_RANGE, VELOCITY_RANGE, MAX_MOTIF = (-13, 21), (0.0, 8.0), (1, 127), 64
_LOADED = {}


def load_states(path=None):
    """Read presets and stingers from ``path``, $OSTINATO_STATES or the shipped states.toml.

    Returns ``(presets, stingers)``: presets map name -> {valence, arousal, intensity and
    optionally bpm, key, mode, register, tonality, critic, max_note_beats}; stingers map name ->
    {degrees, durations, velocity}.
    Raises InvalidMessage naming the file, the entry and the field.
    """
    path = Path(path or os.environ.get("OSTINATO_STATES") or DEFAULT_STATES)
    try:
        text = path.read_bytes().decode("utf-8")
        doc = tomllib.loads(text)
    except OSError as exc:
        raise InvalidMessage(f"{path}: cannot read states file: {exc.strerror}", None, "a readable file")
    except UnicodeDecodeError as exc:
        raise InvalidMessage(f"{path}: not UTF-8 text (byte {exc.start}): a states file is TOML",
                             None, "UTF-8 TOML") from None
    except tomllib.TOMLDecodeError as exc:
        # tomllib ends its message "(at line N, column M)": put the place first, as for the rest
        msg, at = re.fullmatch(r"(.*?)(?: \(at (line \d+, column \d+)\))?", str(exc), re.S).groups()
        raise InvalidMessage(f"{path}{', ' + at if at else ''}: not valid TOML: {msg}",
                             None, "TOML") from None

    def bad(where, what, allowed):
        line = _toml_line(text, where)
        return InvalidMessage(f"{path}{f', line {line}' if line else ''}: {where}: {what}; "
                              f"allowed: {_show(allowed)}", where, allowed)

    extra = set(doc) - {"presets", "stingers", "themes"}
    if extra:
        raise bad(sorted(extra)[0], "unknown section", ["presets", "stingers", "themes"])
    presets, stingers = {}, {}
    for section, out in (("presets", presets), ("stingers", stingers)):
        table = doc.get(section)
        if not isinstance(table, dict) or not table:
            raise bad(section, "missing or empty section", f"a [{section}.NAME] table")
        for name, entry in table.items():
            where = f"{section}.{name}"
            if not _NAME_RE.fullmatch(name) or name in RESERVED_NAMES:
                raise bad(where, "bad name", f"{NAME_PATTERN}, not {' or '.join(RESERVED_NAMES)}")
            if not isinstance(entry, dict):
                raise bad(where, "must be a table", "a table of fields")
            out[name] = (_preset if section == "presets" else _stinger)(entry, where, bad)
    return presets, stingers


def load_themes(path=None):
    """The ``[themes.NAME]`` of a states file (the one ``load_states`` reads): name ->
    ``engine.motif.Motif``, each given as ``notes = [[pitch, start_beat, duration_beats],
    ...]`` or ``midi = "file.mid"`` (relative to the states file).  A theme that is not one,
    or a .mid that is missing or unreadable, is an InvalidMessage naming the file, the
    theme and why: the server reports it at start-up."""
    from engine.errors import InvalidMidi
    from engine.motif import from_midi, from_notes

    path = Path(path or os.environ.get("OSTINATO_STATES") or DEFAULT_STATES)
    try:
        doc = tomllib.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        load_states(path)  # says what is wrong with the file, as for presets
        raise
    out = {}
    for name, entry in (doc.get("themes") or {}).items():
        where = f"{path}: themes.{name}"
        if not _NAME_RE.fullmatch(name) or not isinstance(entry, dict) or \
                len(set(entry) & {"notes", "midi"}) != 1 or set(entry) - {"notes", "midi"}:
            raise InvalidMessage(f"{where}: a theme is a table with notes = [[pitch, start_beat, "
                                 "duration_beats], ...] or midi = \"file.mid\"", f"themes.{name}",
                                 "notes or midi")
        try:
            if "notes" in entry:
                out[name] = from_notes(entry["notes"], field=f"themes.{name}.notes",
                                       max_bars=MAX_THEME_BARS, source=f"themes.{name}")
            else:
                midi = path.parent / str(entry["midi"])
                out[name] = from_midi(midi, max_bars=MAX_THEME_BARS)
        except (InvalidMessage, InvalidMidi) as exc:
            raise InvalidMessage(f"{where}: {exc}", f"themes.{name}", "a theme") from None
    return out


def _toml_line(text, where):
    """Line number (1-based) in TOML ``text`` that defines the dotted path ``where``
    (``presets.menu.bmp``), else of the nearest enclosing table or inline table that does;
    None if no line does.  tomllib keeps no positions, so the text is scanned: each
    ``[table]`` header and ``key =`` line gives a path, and the line whose path is the
    longest prefix of ``where`` wins (the first, where several are as long).  Good for
    hand-written files; a key inside a multi-line value may fall back to its table."""
    target = where.split(".")
    unquote = lambda parts: [p.strip().strip("\"'") for p in parts]  # noqa: E731
    table, best, best_len = [], None, 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line.startswith("["):
            table = unquote(line.strip("[]").split("#")[0].strip().rstrip("]").split("."))
            path = table
        elif "=" in line and not line.startswith("#"):
            path = table + unquote(line.split("=", 1)[0].split("."))
        else:
            continue
        if len(path) > best_len and path == target[:len(path)]:
            best, best_len = number, len(path)
    return best


def _preset(entry, where, bad):
    out = {}
    for key, value in entry.items():
        field = PRESET_FIELDS.get(key)
        if field is None:
            raise bad(f"{where}.{key}", "unknown field", list(PRESET_FIELDS))
        try:
            out[key] = _check("preset", field, value, {})
        except InvalidMessage as exc:
            raise bad(f"{where}.{key}", f"{value!r} is not accepted", exc.allowed) from None
    for key in PRESET_REQUIRED:
        if key not in out:
            raise bad(f"{where}.{key}", "missing field", PRESET_FIELDS[key].allowed())
    return out


def _stinger(entry, where, bad):
    extra = set(entry) - {"degrees", "durations", "velocity"}
    if extra:
        raise bad(f"{where}.{sorted(extra)[0]}", "unknown field", ["degrees", "durations", "velocity"])
    degrees, durations = entry.get("degrees"), entry.get("durations")
    lo, hi = DEGREE_RANGE
    if not isinstance(degrees, list) or not 1 <= len(degrees) <= MAX_MOTIF or not all(
            isinstance(d, int) and not isinstance(d, bool) and lo <= d <= hi for d in degrees):
        raise bad(f"{where}.degrees", "must be a list of scale degrees (1 = tonic, 8 = octave up)",
                  f"1..{MAX_MOTIF} integers in {lo}..{hi}")
    dlo, dhi = DURATION_RANGE
    if not isinstance(durations, list) or len(durations) != len(degrees) or not all(
            isinstance(d, (int, float)) and not isinstance(d, bool) and dlo < d <= dhi for d in durations):
        raise bad(f"{where}.durations", "must give one duration in beats per degree",
                  f"{len(degrees)} numbers in ({dlo}, {dhi}]")
    velocity = entry.get("velocity", 100)
    if not isinstance(velocity, int) or isinstance(velocity, bool) or \
            not VELOCITY_RANGE[0] <= velocity <= VELOCITY_RANGE[1]:
        raise bad(f"{where}.velocity", f"{velocity!r} is not accepted", "1..127")
    return {"degrees": list(degrees), "durations": [float(d) for d in durations], "velocity": velocity}


def state_names(presets=None, stingers=None):
    """(preset names, stinger names) as tuples; None takes the default states file's."""
    if presets is None or stingers is None:
        loaded = _default_names()
        presets = loaded[0] if presets is None else presets
        stingers = loaded[1] if stingers is None else stingers
    return tuple(presets), tuple(stingers)


def _default_names():
    """Preset and stinger names of the default states file, loaded once per path."""
    path = os.environ.get("OSTINATO_STATES") or str(DEFAULT_STATES)
    if path not in _LOADED:
        presets, stingers = load_states(path)
        _LOADED[path] = (tuple(presets), tuple(stingers))
    return _LOADED[path]


def degree_to_semitones(degree, mode):
    """Semitones above the tonic for a 1-based scale degree (8 = octave, 0 = 7th below)."""
    steps = (0, 2, 4, 5, 7, 9, 11) if mode == "major" else (0, 2, 3, 5, 7, 8, 10)
    octave, step = divmod(degree - 1, 7)
    return 12 * octave + steps[step]


# ---------------------------------------------------------------- documentation

def markdown():
    """PROTOCOL.md's field tables, generated from ``MESSAGES``."""
    presets, stingers = _default_names()
    lines = ["| field | type | required | default | allowed | meaning |", "|---|---|---|---|---|---|"]

    def row(f):
        allowed = f.allowed(presets, stingers)
        if f.choices in (PRESETS, STINGERS):
            allowed = f"names from states.toml (shipped: {', '.join(allowed)})"
        kind = {"float": "number", "int": "integer", "id": "string or integer",
                "notes": "array (OSC: JSON text)"}.get(f.kind, "string")
        default = "" if f.default is None else json.dumps(f.default)
        return f"| `{f.name}` | {kind} | {'yes' if f.required else 'no'} | {default} | " \
               f"{_show(allowed)} | {f.doc} |"

    out = ["### Envelope (every message)", "", *lines, "| `type` | string | yes |  | "
           f"{', '.join(MESSAGE_TYPES)} | message type |", *map(row, ENVELOPE), ""]
    for m in MESSAGES:
        out += [f"### `{m.name}`", "", m.doc, ""]
        if m.fields:
            out += [*lines, *map(row, m.fields), ""]
        else:
            out += ["No fields besides the envelope.", ""]
        if m.one_of:
            out += [f"At least one of {', '.join(f'`{n}`' for n in m.one_of)} must be present.", ""]
        if m.session_required:
            out += ["The envelope field `session` is required here.", ""]
        out += [f"OSC: `/ostinato/{m.name}" + "".join(f" <{n}>" for n in m.positional()) + "`", ""]
    return "\n".join(out)


def example(name):
    """An example request of a message type, built from the table's examples."""
    spec = _BY_NAME[name]
    msg = {"type": name, "id": 1}
    msg.update({f.name: f.example for f in spec.fields if f.example is not None})
    if spec.session_required:
        msg["session"] = "player2"
    return msg


if __name__ == "__main__":
    if sys.argv[1:] == ["--markdown"]:
        print(markdown())
    else:
        print("usage: python -m realtime.protocol --markdown", file=sys.stderr)
        sys.exit(2)
