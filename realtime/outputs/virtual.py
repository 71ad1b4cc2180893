"""A virtual MIDI port through python-rtmidi (ALSA, CoreMIDI, Windows MM; JACK as the
baseline), the API picked by argument, then ``RTMIDI_API``, then the platform's."""
import os
import sys
import threading
import time

import rtmidi
from rtmidi.midiutil import get_api_from_environment

from engine.errors import InvalidMessage, PortError

from realtime.outputs.base import BasePort, Sounding, midi_bytes


API_ALIASES = {"alsa": "LINUX_ALSA", "jack": "UNIX_JACK", "coremidi": "MACOSX_CORE",
               "windows_mm": "WINDOWS_MM", "dummy": "RTMIDI_DUMMY"}
_API_ALLOWED = ", ".join(API_ALIASES) + " or " + ", ".join(API_ALIASES.values())


def resolve_api(api=None):
    """The rtmidi API constant: ``api``, else $RTMIDI_API, else API_UNSPECIFIED (platform default).

    ``api`` is "alsa", "jack", "coremidi", "windows_mm", an RTMIDI_API name such as
    "UNIX_JACK", or an ``rtmidi.API_*`` constant.  $RTMIDI_API is read by python-rtmidi's
    own ``get_api_from_environment``, except that an unknown value is an error here
    rather than a logged warning.
    """
    if api is None:
        value = os.environ.get("RTMIDI_API")
        if value is not None and not hasattr(rtmidi, "API_" + value.upper()):
            raise InvalidMessage(f"RTMIDI_API={value!r} is not an rtmidi API; use {_API_ALLOWED}",
                                 field="RTMIDI_API", allowed=_API_ALLOWED)
        return get_api_from_environment(rtmidi.API_UNSPECIFIED)
    if isinstance(api, int):
        if not rtmidi.API_UNSPECIFIED <= api <= rtmidi.API_RTMIDI_DUMMY:
            raise InvalidMessage(f"api {api} is not an rtmidi.API_* constant",
                                 field="api", allowed=_API_ALLOWED)
        return api
    key = API_ALIASES.get(str(api).lower(), str(api).upper())
    if not hasattr(rtmidi, "API_" + key):
        raise InvalidMessage(f"api {api!r} is not an rtmidi API; use {_API_ALLOWED}",
                             field="api", allowed=_API_ALLOWED)
    return getattr(rtmidi, "API_" + key)


def api_label(api):
    """'Jack (jack)'-style name of an API for messages."""
    if api == rtmidi.API_UNSPECIFIED:
        return "the platform's default MIDI API"
    return f"{rtmidi.get_api_display_name(api)} ({rtmidi.get_api_name(api)})"


def _check_compiled(api):
    # rtmidi itself falls back to another API with only a printed warning
    compiled = rtmidi.get_compiled_api()
    if api != rtmidi.API_UNSPECIFIED and api not in compiled:
        names = ", ".join(api_label(a) for a in compiled) or "none"
        raise PortError(f"MIDI API {api_label(api)} is not compiled into python-rtmidi here; "
                        f"compiled: {names}")


def _hint(api):
    """Why an API might fail here, for the error message."""
    if api == rtmidi.API_UNIX_JACK:
        return " (start one with `jackd -d dummy -r 48000 -p 256`; $JACK_DEFAULT_SERVER names the server)"
    if api in (rtmidi.API_LINUX_ALSA, rtmidi.API_UNSPECIFIED) and sys.platform.startswith("linux") \
            and not os.path.exists("/dev/snd/seq"):
        return " (no ALSA sequencer: /dev/snd/seq is missing; try api='jack' or RTMIDI_API=UNIX_JACK)"
    return ""


def pick_port(ports, wanted, api):
    """Index of the port named ``wanted``: its exact name, else the one port containing it."""
    if wanted in ports:
        return ports.index(wanted)
    matches = [i for i, p in enumerate(ports) if wanted in p]
    if len(matches) == 1:
        return matches[0]
    listing = ", ".join(map(repr, ports)) or "none"
    raise PortError(f"{wanted!r} matches {'several' if matches else 'no'} MIDI output port "
                    f"of {api_label(api)}; ports: {listing}")


class RtMidiPort(BasePort):
    """MIDI out through python-rtmidi: a virtual port named ``name`` that a DAW or synth
    connects to, or, with ``connect``, an existing output port (a hardware synth).

    rtmidi has no timestamps: bytes leave when ``send`` is called, so the sequencer
    calls it at the event's time.  Notes still on at close get their note-off.

    With JACK, rtmidi hands bytes to JACK's process thread through a ring buffer, and
    its closePort waits for one process cycle only, which may be one that read the
    buffer before the last bytes arrived (rtmidi issues 24 and 235; here 2 closes in 100
    lost a note-off).  Close therefore waits until ``jack_drain_s`` after the last send:
    two periods of 1024 frames at 48 kHz (0 closes in 100 lost one).
    """

    name = "rtmidi"

    def __init__(self, name="Ostinato", api=None, connect=None, client_name=None,
                 jack_drain_s=0.05):
        super().__init__()
        self.jack_drain_s = jack_drain_s
        self._last_send_ns = 0
        self.api = resolve_api(api)
        _check_compiled(self.api)
        self.port_name = name
        self._sounding = Sounding()
        self._lock = threading.Lock()  # close() may come from another thread than send()
        try:
            self._out = rtmidi.MidiOut(self.api, name=client_name or name)
        except rtmidi.RtMidiError as exc:
            raise PortError(f"cannot open {api_label(self.api)}: {exc}{_hint(self.api)}") from exc
        self.api = self._out.get_current_api()
        try:
            if connect is None:
                self._out.open_virtual_port(name)
            else:
                ports = self._out.get_ports()
                index = pick_port(ports, connect, self.api)
                self._out.open_port(index, name)
                self.port_name = ports[index]
        except (rtmidi.RtMidiError, NotImplementedError, PortError) as exc:
            self._out.delete()
            if isinstance(exc, PortError):
                raise
            what = f"connect to {connect!r}" if connect else f"open virtual port {name!r}"
            raise PortError(f"cannot {what} with {api_label(self.api)}: {exc}") from exc

    def _send(self, status, data1, data2, t_ns, beat, session):
        message = midi_bytes(status, data1, data2)
        with self._lock:
            self._sounding.update(message, beat, session)
            try:
                self._out.send_message(message)
            except Exception as exc:  # rtmidi raises its own errors and OSError
                raise PortError(f"MIDI port {self.port_name!r} failed to send: {exc}") from exc
            self._last_send_ns = time.monotonic_ns()

    def _close(self):
        with self._lock:
            try:
                for _, channel, pitch, _ in self._sounding.drain():
                    self._out.send_message((0x80 | channel, pitch, 0))
                    self._last_send_ns = time.monotonic_ns()
                if self.api == rtmidi.API_UNIX_JACK:
                    deadline = self._last_send_ns + int(self.jack_drain_s * 1e9)
                    while (left := deadline - time.monotonic_ns()) > 0:
                        time.sleep(left / 1e9)
            finally:
                self._out.close_port()
                self._out.delete()


def list_ports(api=None):
    """[{api, name, label, inputs, outputs, error}] for each compiled rtmidi API (or ``api``).

    An API that cannot be used here (no JACK server, no ALSA sequencer) has ``error``
    set to the reason and no ports.
    """
    apis = rtmidi.get_compiled_api()
    if api is not None:
        apis = [resolve_api(api)]
        _check_compiled(apis[0])
    rows = []
    for a in apis:
        row = {"api": a, "name": rtmidi.get_api_name(a), "label": api_label(a),
               "inputs": [], "outputs": [], "error": None}
        try:
            for key, cls in (("inputs", rtmidi.MidiIn), ("outputs", rtmidi.MidiOut)):
                probe = cls(a, name="ostinato-ports")
                try:
                    row[key] = probe.get_ports()
                finally:
                    probe.delete()
        except rtmidi.RtMidiError as exc:
            row["error"] = f"{exc}{_hint(a)}"
        rows.append(row)
    return rows
