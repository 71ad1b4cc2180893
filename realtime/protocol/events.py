"""The event stream's frames: what the server plays, one JSON object per event.

``encode_event`` writes a frame with its keys in a fixed order (``{"v":1,"type":...``), so
a SUB socket can filter by type with a prefix; ``decode_event`` reads one back and checks
it is an event of this protocol version.  ``EVENT_TYPES`` maps each type to the fields it
carries besides the common ones (PROTOCOL.md's event table).
"""
import json

from realtime.protocol.spec import PROTOCOL_VERSION
from realtime.protocol.values import reject

EVENT_TYPES = {
    "note_on": "`channel` 0..15, `pitch` 0..127, `velocity` 1..127, `voice` (the voice that "
               "plays the channel: `melody`, `bass`, `harmony`, `drums` or `stinger`; left out "
               "when the channel has none)",
    "note_off": "`channel`, `pitch`, `velocity` 0, `voice`",
    "mood": "`valence`, `arousal`, `intensity` (the values now in effect), with `key`, `mode`, "
            "`tonality`, `critic`, `repetition`, `style` (null: none), `bpm`, `density`, "
            "`register`, `velocity` and `transition` (`name` for a preset)",
    "transport": "`state`: `start`, `stop` or `pause`; at a stop or pause `beat` is where the "
                 "main session's music stopped (its stingers announced for later were dropped)",
    "tempo": "`bpm`",
    "state": "`name` (the preset that took effect)",
    "key": "`key`, `mode`",
    "theme": "`theme` (`key`, `bars`, `notes`, `source`; `null`: free composition), `variation`, "
             "`blend_beats`, `transition`",
    "theme_return": "`theme` (as the `theme` event's), `variation`: the theme comes back, "
                    "through the session's form, from `beat` (a leitmotif; its statement is "
                    "the `theme` event)",
    "beat": "`bar`, `beat_in_bar` (0-based), `phrase`, `bar_in_phrase` (0-based), `bpm`: a "
            "beat of the session starts at `t_ns` (sync: sent only to who subscribes to it)",
    "bar": "as `beat`'s: a bar line (sync)",
    "phrase": "as `beat`'s, with `bars` (the phrase's length): the first bar of a phrase of "
              "the session's form (sync)",
    "cue": "`name`: the position of a cue placed with `cue` plays",
    "stinger": "`name` (`notes` for one sent as notes), `pitches`: a stinger starts at `beat`",
    "request_failed": "`id`, `for` (the request's type), `code`, `message`: a request the "
                      "server accepted while it warmed up failed when the music started",
}
# The sync events: on the ZeroMQ stream (and over OSC) only a subscription that names one
# of them gets it (``{"v":1,"type":"beat"`` as its prefix); subscribing to everything
# ("" or ``{"v":1``) gets every other type.
SYNC_TYPES = ("beat", "bar", "phrase")
_QUOTED = {}


def type_prefix(kind):
    """The bytes every frame of event type ``kind`` begins with (a subscription prefix)."""
    return f'{{"v":{PROTOCOL_VERSION},"type":"{kind}"'.encode()


def encode_event(kind, session, seq, t_ns, beat, channel=0, pitch=0, velocity=0, voice=None,
                 **fields):
    """One event as single-frame JSON bytes; fields in a fixed order (v, type, session, ...).

    Notes are formatted by an f-string (this runs once per note on the sending thread),
    with ``"voice"`` after ``velocity`` when ``voice`` (a name) is given; other types go
    through json.dumps with ``fields``.
    """
    s = _QUOTED.get(session)
    if s is None:
        s = _QUOTED[session] = json.dumps(str(session))
    if kind == "note_on" or kind == "note_off":
        if voice is None:
            return (f'{{"v":1,"type":"{kind}","session":{s},"seq":{seq:d},"t_ns":{t_ns:d},'
                    f'"beat":{float(beat)!r},"channel":{channel:d},"pitch":{pitch:d},'
                    f'"velocity":{velocity:d}}}').encode()
        q = _QUOTED.get(voice)
        if q is None:
            q = _QUOTED[voice] = json.dumps(str(voice))
        return (f'{{"v":1,"type":"{kind}","session":{s},"seq":{seq:d},"t_ns":{t_ns:d},'
                f'"beat":{float(beat)!r},"channel":{channel:d},"pitch":{pitch:d},'
                f'"velocity":{velocity:d},"voice":{q}}}').encode()
    if kind not in EVENT_TYPES:
        raise ValueError(f"unknown event type {kind!r}; allowed: {', '.join(EVENT_TYPES)}")
    event = {"v": PROTOCOL_VERSION, "type": kind, "session": str(session), "seq": seq,
             "t_ns": t_ns, "beat": beat}
    event.update(fields)
    if voice is not None:
        event["voice"] = voice
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
