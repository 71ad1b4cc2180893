"""Outputs: one port contract (``base.BasePort``) and one small module per backend.

The backend is picked by argument, then ``$OSTINATO_OUTPUT`` (``open_port``), as mido
picks its backend; ``ostinato ports`` lists the MIDI APIs and ports there are.
"""
import contextlib
import json
import os
import sys

import rtmidi

from engine.errors import InvalidMessage

from realtime.outputs.base import (BasePort, Sounding, midi_bytes, note_of, session_names,
                                   voice_map)
from realtime.outputs.jack import JackMidiPort
from realtime.outputs.midifile import MAX_BPM, MIN_BPM, MidiFilePort
from realtime.outputs.multi import MultiPort
from realtime.outputs.stream import ZmqPubPort
from realtime.outputs.virtual import API_ALIASES, RtMidiPort, api_label, list_ports, resolve_api

# what callers import from here: the port contract, every backend, and open_port
__all__ = ["API_ALIASES", "BACKENDS", "MAX_BPM", "MIN_BPM", "BasePort", "JackMidiPort",
           "MidiFilePort", "MultiPort", "RtMidiPort", "Sounding", "ZmqPubPort", "add_arguments",
           "api_label", "list_ports", "midi_bytes", "note_of", "open_port", "resolve_api", "run",
           "session_names", "voice_map"]


BACKENDS = {"rtmidi": RtMidiPort, "jack": JackMidiPort, "zmq": ZmqPubPort, "file": MidiFilePort}


def open_port(kind=None, **kwargs):
    """Open an output of ``kind`` ("rtmidi", "jack", "zmq" or "file") with the backend's
    arguments.

    Without ``kind``: $OSTINATO_OUTPUT, else "rtmidi" (as mido reads $MIDO_BACKEND).
    """
    field = "kind"
    if kind is None:
        kind, field = os.environ.get("OSTINATO_OUTPUT", "rtmidi"), "OSTINATO_OUTPUT"
    backend = BACKENDS.get(str(kind).strip().lower())
    if backend is None:
        raise InvalidMessage(f"{field} {kind!r} is not an output kind; allowed: {', '.join(BACKENDS)}",
                             field=field, allowed=", ".join(BACKENDS))
    return backend(**kwargs)


def add_arguments(parser):
    parser.add_argument("--api", help="only this API: " + ", ".join(API_ALIASES)
                        + " (default: every API compiled into python-rtmidi)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def run(args):
    with _no_jack_autostart(), _quiet_fd2():
        rows = list_ports(args.api)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print("Compiled MIDI APIs: " + ", ".join(api_label(a) for a in rtmidi.get_compiled_api()))
    for var in ("RTMIDI_API", "OSTINATO_OUTPUT"):
        print(f"{var}: {os.environ.get(var, '(not set)')}")
    print()
    for row in rows:
        print(f"{row['label']}, RTMIDI_API={_env_name(row['api'])}")
        if row["error"]:
            print(f"  unavailable: {row['error']}\n")
            continue
        for key in ("inputs", "outputs"):
            print(f"  {key.capitalize()}:")
            print("\n".join(f"    {p!r}" for p in row[key]) or "    (none)")
        print()
    return 0


def _env_name(api):
    return next((k[4:] for k in dir(rtmidi) if k.startswith("API_") and getattr(rtmidi, k) == api),
                str(api))


@contextlib.contextmanager
def _no_jack_autostart():
    """Listing ports must not start a JACK server as a side effect, as libjack would."""
    saved = os.environ.get("JACK_NO_START_SERVER")
    os.environ["JACK_NO_START_SERVER"] = "1"
    try:
        yield
    finally:
        if saved is None:
            del os.environ["JACK_NO_START_SERVER"]
        else:
            os.environ["JACK_NO_START_SERVER"] = saved


@contextlib.contextmanager
def _quiet_fd2():
    """Silence file descriptor 2 while ALSA and libjack print their own complaints."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
