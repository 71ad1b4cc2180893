"""PROTOCOL.md, written whole: the prose of ``protocoldoc.md`` with every value and table
filled in from the protocol's table, and examples a real server answered.

``document()`` fills the template's ``${name}`` places (``string.Template``): the limits
and addresses from ``realtime.protocol``, the field tables of every message
(``requests_markdown``), the error table and an error reply of each code made by the
validator itself (``errors_markdown``), the event table and frames made by
``encode_event`` (``events_markdown``), the voices' tables, requests and refusals
(``voices_markdown``), and the Examples section (``examples_markdown``).

The examples come from a server started on the shipped model and states (control on
``tcp://127.0.0.1:0``, the event stream on a free loopback port as its only output: no
MIDI, no JACK, no audio): every message type's ``protocol.example()`` request is sent in
``ORDER`` on one REQ socket and rendered with the reply it got.  Requests run one after
another, so each reply shows the session as the requests before it left it.  Replies are
what the server sent, re-spaced like the requests, except the values that depend on when
a request arrived (``PLACEHOLDERS``): those become fixed strings, so the document is the
same on every run and tests/realtime/test_protocol.py compares it with PROTOCOL.md.
Anything else that changes (the table, the shipped model, states.toml, a reply's fields,
the template) changes the document, and the test asks for it to be regenerated:

    python -m realtime.protocoldoc            # print the document
    python -m realtime.protocoldoc --write    # write PROTOCOL.md
"""
import argparse
import json
import re
import sys
import tempfile
import textwrap
from pathlib import Path
from string import Template

import zmq

from engine.errors import InvalidMessage
from engine.form import MAX_PHRASE_BARS, Form

from realtime import protocol
from realtime.layers import Layers
from realtime.mood import DEFAULT_REPETITION
from realtime.osc import MAX_SUBSCRIBERS
from realtime.outputs import ZmqPubPort
from realtime.server import Server, ServerConfig

PROTOCOL_MD = Path(__file__).resolve().parents[1] / "PROTOCOL.md"
TEMPLATE = Path(__file__).with_name("protocoldoc.md")
REPLY_TIMEOUT_MS = 10_000  # the server answers a command it could not run within 5 s itself

# hello first (what a client sends on connecting); ``session`` opens "player2" before
# anything would need it (nothing after it does); otherwise the table's order.
ORDER = ("hello", "mood", "state", "tempo", "key", "stinger", "cue", "position", "theme",
         "start", "stop", "pause", "session", "ping")

# Reply fields whose values depend on when the request arrived, and the placeholder each
# is shown as: the type the real value must have, and its text.
PLACEHOLDERS = {
    "beat": (float, "<number>"),   # the transition point: the next beat or bar from now
    "voices_beat": (float, "<number>"),  # the bar line from there, where the voices change
    "pitches": (list, "<pitches>"),  # a stinger's: over the chord sounding when it arrives
    "t_ns": (int, "<integer>"),    # ping: the server's time.monotonic_ns() at arrival
    "pickup_beat": (float, "<number>"),  # a rule's pickup before the transition point
    "next_beat": (float, "<number>"),  # a stinger cooling down: when it could play
    # position: where the music is when the request arrives
    **{k: (int, "<integer>") for k in ("bar", "beat_in_bar", "phrase", "bar_in_phrase",
                                       "next_downbeat_t_ns", "next_phrase_t_ns")},
    **{k: (float, "<number>") for k in ("next_downbeat", "next_phrase")},
}

# Two paragraphs, wrapped like the rest of PROTOCOL.md's prose.
INTRO = (
    "Each request with the reply it got from a server on the shipped model and states "
    "(`ostinato serve` with only the event stream for output), sent in this order, so each "
    "reply shows the session as the requests before it left it.",
    "Values that depend on when a request arrives differ on every run and are shown as "
    "placeholders: "
    + ", ".join(f'`{k}` as `"{text}"`' for k, (_, text) in PLACEHOLDERS.items()) + ".",
)
WIDTH = 95

# When each error code is given (PROTOCOL.md's error table), in ERROR_CODES' order.
WHEN = {
    "invalid_json": "not UTF-8, not JSON, not a JSON object, or not exactly one frame (OSC: a "
                    "datagram that starts as OSC but does not parse)",
    "unknown_type": "`type` missing or not one of the message types",
    "missing_field": "a required field is missing (" + "; ".join(
        f"`{m.name}`: none of {', '.join(f'`{n}`' for n in m.one_of)} given"
        for m in protocol.MESSAGES if m.one_of) + ")",
    "bad_type": "a field has the wrong JSON type (e.g. a string for a number)",
    "out_of_range": "a number outside its range (`NaN`, `Infinity` and `-Infinity`, which "
                    "Python's JSON reader accepts, are outside every range), a malformed "
                    "`session`, `critic` above 0 on a server without a critic, or `voices` "
                    "the session cannot take (see [Voices](#voices))",
    "bad_choice": "a string not among the choices (transition, key, mode, preset, stinger or "
                  "voice name, a voice's setting or key, or a session the server does not know)",
    "unknown_field": "a field this message type does not have (or `state` or `voices` with "
                     "action `close`)",
    "too_large": f"the message is over {protocol.MAX_MESSAGE_BYTES} bytes, or nests "
                 f"arrays/objects more than {protocol.MAX_DEPTH} deep",
    "server_error": "the server failed while handling a valid request; it keeps running, and "
                    "logs the failure with the request's `id`. Also when the engine could not "
                    "take the command within 5 s (a stalled machine) or the server is shutting "
                    "down: the message then says the request was **not applied**, and it never "
                    "takes effect later, so resending is safe",
}

# One refused request of each code the validator gives (the request as sent, as text),
# answered by ``protocol.parse``; too_large is shown without its 70,000-byte request.
REFUSED = {
    "invalid_json": '{"type": "mood", ',
    "unknown_type": '{"type": "dance", "id": 2}',
    "missing_field": '{"type": "tempo", "id": 3}',
    "bad_type": '{"type": "tempo", "bpm": "fast", "id": 4}',
    "out_of_range": '{"type": "mood", "valence": 1.5, "id": 5}',
    "bad_choice": '{"type": "state", "name": "napping", "id": 6}',
    "unknown_field": '{"type": "stop", "volume": 1, "id": 7}',
    "too_large": " " * 70000,
}
SERVER_ERROR = RuntimeError("model file missing"), 9  # the exception a server_error shows

# The Voices section's requests, shown with the ``voices`` validation makes of each, and
# its refusals, with the reply validation gives each (both by ``protocol.parse``).
VOICE_REQUESTS = (
    '{"type": "mood", "intensity": 0.9, "voices": {"drums": true}}',
    '{"type": "state", "name": "combat", "voices": {"melody": false, "harmony": {"program": 89}}}',
    '{"type": "session", "action": "open", "session": "player2", "state": "explore", '
    '"voices": {"bass": {"channel": 5, "octave": -1, "play": "auto"}}}',
)
VOICE_REFUSED = (
    '{"type": "mood", "voices": {"kazoo": true}, "id": 11}',
    '{"type": "mood", "voices": {"bass": {"program": 128}}, "id": 12}',
    '{"type": "mood", "voices": {"bass": {"channel": 4}, "harmony": {"channel": 4}}, "id": 13}',
    '{"type": "state", "name": "calm", "voices": {"melody": false, "bass": false, '
    '"harmony": false, "drums": false}, "id": 14}',
)
# A preset that sets a program out of range: the shipped states.toml with this edit, as
# ``ostinato serve`` refuses it at start-up.
BAD_PRESET = ("harmony = { program = 89 } }  # a warm pad and bass",
              "harmony = { program = 200 } }  # a warm pad and bass")

# Frames of the event stream's example: (type, seq, t_ns, beat, note or fields).
EVENTS = (
    ("note_on", 123, 1234567890123456, 16.25, dict(channel=0, pitch=60, velocity=90, voice="melody")),
    ("note_off", 124, 1234568140123456, 16.75, dict(channel=0, pitch=60, velocity=0, voice="melody")),
    ("mood", 125, 1234568390123456, 17.0, dict(valence=0.5, arousal=0.8, intensity=0.3)),
    ("transport", 126, 1234568390123456, 17.0, dict(state="pause")),
    ("tempo", 127, 1234568390123456, 17.0, dict(bpm=140.0)),
)


# ---------------------------------------------------------------- from the table

def requests_markdown():
    """The field tables of the envelope and of every message type, from ``MESSAGES``."""
    presets, stingers = protocol.default_names()
    lines = ["| field | type | required | default | allowed | meaning |", "|---|---|---|---|---|---|"]

    def row(f):
        allowed = f.allowed(presets, stingers)
        if f.choices in (protocol.PRESETS, protocol.STINGERS):
            allowed = f"names from states.toml (shipped: {', '.join(allowed)})"
        kind = {"float": "number", "int": "integer", "id": "string or integer",
                "notes": "array (OSC: JSON text)",
                "voices": "object (OSC: JSON text)"}.get(f.kind, "string")
        default = "" if f.default is None else json.dumps(f.default)
        cell = lambda text: text.replace("|", "\\|")  # noqa: E731 - a | in a cell ends it
        return f"| `{f.name}` | {kind} | {'yes' if f.required else 'no'} | {default} | " \
               f"{cell(protocol.show(allowed))} | {cell(f.doc)} |"

    out = ["### Envelope (every message)", "", *lines, "| `type` | string | yes |  | "
           f"{', '.join(protocol.MESSAGE_TYPES)} | message type |", *map(row, protocol.ENVELOPE), ""]
    for m in protocol.MESSAGES:
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
    return "\n".join(out).rstrip("\n")


def errors_markdown():
    """The error table, then each code's reply as the validator gives it (``REFUSED``)."""
    if tuple(WHEN) != protocol.ERROR_CODES:
        raise ValueError("WHEN must describe every error code, in ERROR_CODES' order")
    out = ["| code | when |", "|---|---|", *(f"| `{c}` | {WHEN[c]} |" for c in protocol.ERROR_CODES), ""]
    for code, request in REFUSED.items():
        try:
            protocol.parse(request)
        except InvalidMessage as exc:
            reply = json.loads(protocol.error_reply(exc))
        else:
            raise ValueError(f"the {code} example {request!r} was accepted")
        if reply["code"] != code:
            raise ValueError(f"the {code} example {request!r} got {reply['code']}")
        shown = [] if code == "too_large" else ["```json", request, "```"]
        out += [f"`{code}`:", *shown, "```json", json.dumps(reply), "```"]
    exc, msg_id = SERVER_ERROR
    out += ["`server_error` (the text names the exception):", "```json",
            json.dumps(json.loads(protocol.error_reply(exc, msg_id))), "```"]
    return "\n".join(out)


def events_markdown():
    """The event table (``EVENT_TYPES``) and example frames written by ``encode_event``."""
    frames = [protocol.encode_event(kind, "main", seq, t_ns, beat, **fields).decode()
              for kind, seq, t_ns, beat, fields in EVENTS]
    return "\n".join(["| type | further fields |", "|---|---|",
                      *(f"| `{t}` | {doc} |" for t, doc in protocol.EVENT_TYPES.items()), "",
                      "```json", *frames, "```"])


def voices_markdown():
    """The shipped voices (states.toml's ``[voices]``) and the voices each shipped preset
    plays at its own mood (``realtime.layers``, the server's rule); requests with the value
    validation makes of their ``voices``, refusals with their replies, and a bad preset's
    start-up error, all made by the protocol's own code."""
    shipped = protocol.load_voices(protocol.DEFAULT_STATES)
    presets, _ = protocol.load_states(protocol.DEFAULT_STATES)
    out = ["| voice | channel | program | octave | enter | presence |", "|---|---|---|---|---|---|",
           *(f"| `{v.name}` | {v.channel} | {v.program} | {v.octave} | {v.enter:g} | "
             f"{v.presence:g} |" for v in shipped), "",
           "| preset | `voices` | level | plays |", "|---|---|---|---|"]
    for name, p in presets.items():
        layers = Layers.of(shipped).update(p.get("voices"))
        playing = layers.playing(p["intensity"], p["arousal"])
        setting = f"`{json.dumps(p['voices'])}`" if "voices" in p else 'all `"auto"`'
        out.append(f"| `{name}` | {setting} | "
                   f"{(p['intensity'] + p['arousal']) / 2:g} | "
                   f"{', '.join(shipped[v].name for v in playing)} |")
    out += ["", "Requests, and the `voices` validation passes on:", ""]
    for request in VOICE_REQUESTS:
        out += ["```json", request, "```", "```json", json.dumps(protocol.parse(request)["voices"]),
                "```"]
    out += ["", "Refused by validation:", ""]
    for request in VOICE_REFUSED:
        try:
            protocol.parse(request)
        except InvalidMessage as exc:
            out += ["```json", request, "```", "```json",
                    json.dumps(json.loads(protocol.error_reply(exc))), "```"]
        else:
            raise ValueError(f"the refused voices example {request} was accepted")
    out += ["", "A preset with a program out of range stops `ostinato serve`:", "", "```",
            bad_preset_error(), "```"]
    return "\n".join(out)


def bad_preset_error():
    """The start-up error of the shipped states.toml with ``BAD_PRESET``'s edit, its
    folder left out of the path."""
    text = protocol.DEFAULT_STATES.read_text()
    if BAD_PRESET[0] not in text:
        raise ValueError(f"states.toml has no {BAD_PRESET[0]!r} to edit")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "states.toml"
        path.write_text(text.replace(BAD_PRESET[0], BAD_PRESET[1]))
        try:
            protocol.load_states(path)
        except InvalidMessage as exc:
            return str(exc).replace(f"{folder}/", "")
    raise ValueError(f"states.toml with {BAD_PRESET[1]!r} was accepted")


# ---------------------------------------------------------------- from a real server

def collect(order=ORDER, model=None):
    """[(request, reply)] for each type in ``order``: ``protocol.example(type)`` sent to a
    fresh server on ``model`` (None: the model ``ostinato serve`` loads by default,
    ``ServerConfig``'s) and the states shipped with Ostinato, and its decoded reply.

    Raises RuntimeError for an error reply or no reply: an example must show a success.
    """
    missing = set(protocol.MESSAGE_TYPES) - set(order)
    if missing:
        raise ValueError(f"order leaves out {', '.join(sorted(missing))}")
    cfg = ServerConfig(control="tcp://127.0.0.1:0", states=str(protocol.DEFAULT_STATES),
                       **({} if model is None else {"model": str(model)}))
    pairs = []
    with Server(cfg, [ZmqPubPort("tcp://127.0.0.1:*")]) as srv, zmq.Context() as ctx, \
            ctx.socket(zmq.REQ) as sock:
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(srv.control_address)
        for name in order:
            request = protocol.example(name)
            sock.send(json.dumps(request).encode())
            if not sock.poll(REPLY_TIMEOUT_MS):
                raise RuntimeError(f"no reply to the {name!r} example within "
                                   f"{REPLY_TIMEOUT_MS / 1000:g} s")
            reply = json.loads(sock.recv())
            if reply.get("ok") is not True:
                raise RuntimeError(f"the {name!r} example {request} got an error: {reply}")
            pairs.append((request, reply))
    return pairs


def stable(reply):
    """``reply`` with each ``PLACEHOLDERS`` field's value replaced by its placeholder
    (after checking the value has the type the placeholder stands for)."""
    out = dict(reply)
    for key, (kind, text) in PLACEHOLDERS.items():
        if key in out:
            value = out[key]
            if type(value) is not kind:
                raise TypeError(f"reply field {key!r} is {value!r}, not a {kind.__name__}: "
                                f"its placeholder {text!r} would misdescribe it")
            out[key] = text
    return out


def render(pairs):
    """The Examples section's markdown, from its heading to the blank line after it."""
    out = ["## Examples\n", *(f"\n{wrap(par)}\n" for par in INTRO)]
    for request, reply in pairs:
        out += [f"\n### Example: {request['type']}\n\n",
                f"```json\n{json.dumps(request)}\n```\n",
                f"```json\n{json.dumps(stable(reply))}\n```\n"]
    return "".join(out)


def wrap(paragraph, width=WIDTH):
    """``paragraph`` filled to ``width`` columns, never breaking inside a `code span`."""
    glued = re.sub(r"`[^`]*`", lambda m: m.group().replace(" ", "\0"), paragraph)
    return textwrap.fill(glued, width, break_on_hyphens=False).replace("\0", " ")


def examples_markdown(model=None):
    """The Examples section as the server on ``model`` (None: the default) answers it now."""
    return render(collect(model=model))


# ---------------------------------------------------------------- the document

def _default_form():
    """``engine.form.Form()`` in words, for the prose on repetition and form."""
    form = Form()
    return (f"`{form.shape}` in {form.bars} bars, the bass looping {form.bass_loop} bars and the "
            f"drums {form.drums_loop}")


def document(examples=None):
    """PROTOCOL.md's text; ``examples``: the Examples section (default: ask a server)."""
    return Template(TEMPLATE.read_text()).substitute(
        version=protocol.PROTOCOL_VERSION, control_address=protocol.CONTROL_ADDRESS,
        event_address=protocol.EVENT_ADDRESS, osc_port=protocol.OSC_PORT,
        max_message_bytes=protocol.MAX_MESSAGE_BYTES, max_depth=protocol.MAX_DEPTH,
        max_request_mib=f"{protocol.MAX_REQUEST_BYTES / 2**20:g}", min_notes=protocol.MIN_NOTES,
        max_theme_bars=protocol.MAX_THEME_BARS, max_subscribers=MAX_SUBSCRIBERS,
        requests=requests_markdown(), errors=errors_markdown(), events=events_markdown(),
        voices=voices_markdown(), max_phrase_bars=MAX_PHRASE_BARS, default_form=_default_form(),
        default_repetition=DEFAULT_REPETITION,
        examples=examples_markdown() if examples is None else examples)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m realtime.protocoldoc",
                                description=__doc__.split("\n")[0])
    p.add_argument("--write", action="store_true", help=f"write {PROTOCOL_MD.name} instead of printing it")
    args = p.parse_args(argv)
    text = document()
    if not args.write:
        sys.stdout.write(text)
        return 0
    PROTOCOL_MD.write_text(text)
    print(f"wrote {PROTOCOL_MD}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
