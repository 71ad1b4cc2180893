"""PROTOCOL.md's "Examples" section, made by asking a real server.

``examples_markdown()`` starts a server on the shipped model and states (control on
``tcp://127.0.0.1:0``, the event stream on a free loopback port as its only output: no MIDI,
no JACK, no audio), sends every message type's ``protocol.example()`` request in
``ORDER`` on one REQ socket and renders each request with the reply it got.  Requests run
one after another, so each reply shows the session as the requests before it left it.

Replies are what the server sent, re-spaced like the requests, except the values that
depend on when a request arrived (``PLACEHOLDERS``): those become fixed strings, so the
section is the same on every run and tests/realtime/test_protocol.py compares it with
PROTOCOL.md.  Anything else that changes (the shipped model, states.toml, a reply's fields)
changes the section, and the test asks for it to be regenerated:

    python -m realtime.examples            # print the section
    python -m realtime.examples --write    # replace it in PROTOCOL.md
"""
import argparse
import json
import re
import sys
import textwrap
from pathlib import Path

import zmq

from engine import DEFAULT_MODEL

from realtime import protocol

PROTOCOL_MD = Path(__file__).resolve().parents[1] / "PROTOCOL.md"
HEADING, NEXT_HEADING = "## Examples\n", "## Errors\n"
REPLY_TIMEOUT_MS = 10_000  # the server answers a command it could not run within 5 s itself

# hello first (what a client sends on connecting); ``session`` opens "player2" before
# anything would need it (nothing after it does); otherwise the table's order.
ORDER = ("hello", "mood", "state", "tempo", "key", "stinger", "theme", "start", "stop", "pause",
         "session", "ping")

# Reply fields whose values depend on when the request arrived, and the placeholder each
# is shown as: the type the real value must have, and its text.
PLACEHOLDERS = {
    "beat": (float, "<number>"),   # the transition point: the next beat or bar from now
    "t_ns": (int, "<integer>"),    # ping: the server's time.monotonic_ns() at arrival
}

# Two paragraphs, wrapped like the rest of PROTOCOL.md's prose.
INTRO = (
    "Each request with the reply it got from a server on the shipped model and states "
    "(`ostinato serve` with only the event stream for output), sent in this order, so each "
    "reply shows the session as the requests before it left it; "
    "`python -m realtime.examples --write` regenerates this section and a test checks it.",
    "Values that depend on when a request arrives differ on every run and are shown as "
    "placeholders: "
    + ", ".join(f'`{k}` as `"{text}"`' for k, (_, text) in PLACEHOLDERS.items()) + ".",
)
WIDTH = 95


def collect(order=ORDER, model=DEFAULT_MODEL):
    """[(request, reply)] for each type in ``order``: ``protocol.example(type)`` sent to a
    fresh server on ``model`` and the states shipped with Ostinato, and its decoded reply.

    Raises RuntimeError for an error reply or no reply: an example must show a success.
    """
    from realtime.outputs import ZmqPubPort
    from realtime.server import Server, ServerConfig

    missing = set(protocol.MESSAGE_TYPES) - set(order)
    if missing:
        raise ValueError(f"order leaves out {', '.join(sorted(missing))}")
    cfg = ServerConfig(model=str(model), control="tcp://127.0.0.1:0",
                       states=str(protocol.DEFAULT_STATES))
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
    """The section's markdown (heading to the blank line before "## Errors")."""
    out = [HEADING, *(f"\n{wrap(par)}\n" for par in INTRO)]
    for request, reply in pairs:
        out += [f"\n### Example: {request['type']}\n\n",
                f"```json\n{json.dumps(request)}\n```\n",
                f"```json\n{json.dumps(stable(reply))}\n```\n"]
    return "".join(out) + "\n"


def wrap(paragraph, width=WIDTH):
    """``paragraph`` filled to ``width`` columns, never breaking inside a `code span`."""
    glued = re.sub(r"`[^`]*`", lambda m: m.group().replace(" ", "\0"), paragraph)
    return textwrap.fill(glued, width, break_on_hyphens=False).replace("\0", " ")


def examples_markdown(model=DEFAULT_MODEL):
    """The Examples section as the server on ``model`` answers it now."""
    return render(collect(model=model))


def split(text):
    """(before, Examples section, from "## Errors" on) of PROTOCOL.md's ``text``."""
    start = text.index(HEADING)
    end = text.index(NEXT_HEADING, start)
    return text[:start], text[start:end], text[end:]


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m realtime.examples", description=__doc__.split("\n")[0])
    p.add_argument("--write", action="store_true",
                   help=f"replace the section in {PROTOCOL_MD.name} instead of printing it")
    args = p.parse_args(argv)
    section = examples_markdown()
    if not args.write:
        sys.stdout.write(section)
        return 0
    before, _, after = split(PROTOCOL_MD.read_text())
    PROTOCOL_MD.write_text(before + section + after)
    print(f"wrote the Examples section of {PROTOCOL_MD}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
