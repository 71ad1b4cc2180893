"""The control protocol: one table of messages and fields, and everything derived from it.

Games send JSON objects (over ZeroMQ, or OSC converted to the same dict); ``parse`` checks
them completely against ``MESSAGES`` so that the music loop only ever sees validated,
normalised dicts.  Replies, error texts, the event stream's frames, the presets of
states.toml and PROTOCOL.md (``python -m realtime.protocoldoc``) come from the same table.

The package's modules, one job each: ``spec`` (the table and its limits), ``values`` (one
field's value checked), ``requests`` (a request parsed and answered), ``events`` (the
event stream's frames), ``states`` (states.toml: presets, stingers, themes, voices, and
its transition rules, ``rules``).  Callers use the names below.
"""
from realtime.protocol.events import EVENT_TYPES, SYNC_TYPES, decode_event, encode_event, type_prefix
from realtime.protocol.requests import error_code, error_reply, ok_reply, parse, validate
from realtime.protocol.spec import (CONTROL_ADDRESS, ENVELOPE, ERROR_CODES, EVENT_ADDRESS, GRID_BARS, KEYS,
                                    MAX_CUES, MAX_DEPTH,
                                    MAX_MESSAGE_BYTES, MAX_REQUEST_BYTES, MAX_THEME_BARS, MAX_THEME_NOTES,
                                    MESSAGE_TYPES, MESSAGES, MIN_NOTES, MODES, NAME_PATTERN, OPEN_ONLY,
                                    OSC_PORT, PLAY, PRESETS, PROTOCOL_VERSION, REPETITION_RANGE,
                                    RESERVED_NAMES, STINGERS, TONALITY_RANGE, TRANSITIONS, VOICE_KEYS,
                                    VOICE_RANGES, example, message_spec, parse_when, when_allowed)
from realtime.protocol.states import (DEFAULT_STATES, default_names, degree_to_semitones, load_states,
                                      load_themes, load_voices, state_names)
from realtime.protocol.values import brief, check_id, reject, show

__all__ = [
    "CONTROL_ADDRESS", "GRID_BARS", "MAX_CUES", "parse_when", "when_allowed", "DEFAULT_STATES", "ENVELOPE", "ERROR_CODES", "EVENT_ADDRESS",
    "EVENT_TYPES", "SYNC_TYPES", "type_prefix", "KEYS", "MAX_DEPTH", "MAX_MESSAGE_BYTES", "MAX_REQUEST_BYTES",
    "MAX_THEME_BARS", "MAX_THEME_NOTES", "MESSAGES", "MESSAGE_TYPES", "MIN_NOTES", "MODES",
    "NAME_PATTERN", "OPEN_ONLY", "OSC_PORT", "PLAY", "PRESETS", "PROTOCOL_VERSION",
    "REPETITION_RANGE", "RESERVED_NAMES", "STINGERS", "TONALITY_RANGE", "TRANSITIONS", "VOICE_KEYS", "VOICE_RANGES", "brief",
    "check_id", "decode_event", "default_names", "degree_to_semitones", "encode_event",
    "error_code", "error_reply", "example", "load_states", "load_themes", "load_voices",
    "message_spec", "ok_reply", "parse", "reject", "show", "state_names", "validate",
]
