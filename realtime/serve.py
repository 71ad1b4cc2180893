"""``ostinato serve``: the command line of the real-time server.

Its options, the outputs they open (``open_outputs``: MIDI by ``--midi``/``--api``/
``--jack-backend``, the ZeroMQ event stream, the ``.mid`` recording, the audio preview by
``--audio``/``--synth``; the demo opens its MIDI and audio outputs with the same
``midi_output`` and ``audio_output``), and the process around ``Server``: start, wait
for Ctrl-C or SIGTERM, close everything in order.
"""
import argparse
import contextlib
import os
import signal
import sys
import threading
import time

from engine.errors import InvalidMessage, OstinatoError
from engine.generate import add_critic_arguments, critic_path

from realtime import protocol
from realtime.keys import check_serve, is_loopback_host
from realtime.mood import DEFAULT_REPETITION, DEFAULT_TONALITY
from realtime.outputs import MultiPort
from realtime.server import Server, ServerConfig

def add_arguments(p):
    p.add_argument("--model", default=ServerConfig.model,
                   help="model .npz (default: the shipped ensemble; engine/models/default.npz "
                        "plays one line, engine/models/theme.npz one line with themes)")
    p.add_argument("--control", default=protocol.CONTROL_ADDRESS,
                   help=f"ZeroMQ address for game messages (default {protocol.CONTROL_ADDRESS})")
    p.add_argument("--events", default="tcp://127.0.0.1:5556",
                   help="ZeroMQ PUB address of the event stream; 'none' to turn off")
    p.add_argument("--events-ahead", type=float, default=0.0, metavar="MS",
                   help="publish each note up to MS ms before its time (its t_ns says "
                        "when), for clients that schedule it; default 0: at its time")
    p.add_argument("--osc", type=int, default=protocol.OSC_PORT,
                   help=f"UDP port of the OSC endpoint on 127.0.0.1 (default {protocol.OSC_PORT}; "
                        "0 turns it off)")
    p.add_argument("--osc-host", default="127.0.0.1",
                   help="interface of the OSC endpoint (default 127.0.0.1); another one needs "
                        "--osc-allow-remote")
    p.add_argument("--osc-allow-remote", action="store_true",
                   help="let OSC listen on a non-loopback --osc-host: OSC has no authentication, "
                        "so only on a trusted network")
    p.add_argument("--max-request-bytes", type=_request_cap, default=protocol.MAX_REQUEST_BYTES, metavar="N",
                   help=f"hard cap on a control request (default {protocol.MAX_REQUEST_BYTES}): "
                        f"up to it a request over {protocol.MAX_MESSAGE_BYTES} bytes is answered "
                        "too_large, beyond it the connection is dropped")
    p.add_argument("--server-key", default=None, metavar="FILE.key_secret",
                   help="CurveZMQ: the server's secret key (from `ostinato keys`); needed to bind "
                        "--control/--events off loopback, and enforced wherever given")
    p.add_argument("--client-keys", default=None, metavar="DIR",
                   help="CurveZMQ: folder of the public .key files of the clients let in")
    add_midi_arguments(p)
    p.add_argument("--record", default=None, metavar="FILE.mid", help="record to a MIDI file")
    p.add_argument("--audio", action="store_true",
                   help="hear it: FluidSynth (General MIDI) where JACK runs, else the built-in "
                        "synth (see --synth)")
    add_synth_argument(p)
    p.add_argument("--clock", action="store_true",
                   help="send MIDI clock (24 ppqn, start/continue/stop) so a DAW follows the tempo")
    p.add_argument("--show", action="store_true",
                   help="print a status line a second: key, tempo, notes/s, last notes")
    p.add_argument("--state", default="explore", help="preset to start in (default explore)")
    p.add_argument("--states", default=None, help="presets/stingers TOML file")
    p.add_argument("--tonality", type=_tonality, default=None, metavar="T",
                   help=f"tonality prior of sessions that set none: 0 free (the model's own "
                        f"pitches) .. 1 strict (scale notes only); default {DEFAULT_TONALITY}")
    p.add_argument("--repetition", type=_repetition, default=DEFAULT_REPETITION, metavar="R",
                   help="how much the music of sessions that set none (nor their preset) repeats "
                        "itself along its form: 0 through-composed (the model alone) .. 1 a loop; "
                        f"default {DEFAULT_REPETITION}")
    add_critic_arguments(p, "drafts of each beat the critic judges for sessions that set no "
                            "`critic`; 0 plays G alone")
    p.add_argument("--sessions", type=int, default=16, help="most sessions at once")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seconds", type=float, default=None, help="stop after this long")


def _request_cap(text):
    """``--max-request-bytes``: an integer from MAX_MESSAGE_BYTES up (argparse reports others)."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < protocol.MAX_MESSAGE_BYTES:
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed: an integer number of bytes "
                                         f">= {protocol.MAX_MESSAGE_BYTES}")
    return value


def _tonality(text):
    """``--tonality``: a number in 0..1 (argparse reports others)."""
    try:
        value = float(text)
    except ValueError:
        value = None
    lo, hi = protocol.TONALITY_RANGE
    if value is None or not lo <= value <= hi:
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed: a number in {lo}..{hi} "
                                         "(0 free, 1 strict)")
    return value


def _repetition(text):
    """``--repetition``: a number in 0..1 (argparse reports others)."""
    try:
        value = float(text)
    except ValueError:
        value = None
    lo, hi = protocol.REPETITION_RANGE
    if value is None or not lo <= value <= hi:
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed: a number in {lo}..{hi} "
                                         "(0 through-composed, 1 a loop)")
    return value


def add_midi_arguments(p):
    """The virtual MIDI port's options, shared by ``serve`` and ``demo``."""
    p.add_argument("--midi", choices=["virtual", "none"], default="virtual",
                   help="open a virtual MIDI output port a DAW or synth can listen to "
                        "(default), or none")
    p.add_argument("--port-name", default="Ostinato", help="name of the virtual MIDI port")
    p.add_argument("--api", default=None,
                   help="MIDI API: alsa, jack, coremidi, windows_mm (default: $RTMIDI_API, "
                        "else the platform's)")
    p.add_argument("--jack-backend", choices=JACK_BACKENDS, default=None,
                   help="with --api jack: native (default: a JACK client of our own that "
                        "writes each event at its frame) or rtmidi (every event at the start "
                        "of the next period; the baseline); default $OSTINATO_JACK_BACKEND, "
                        "else native")
    p.add_argument("--jack-connect", action="append", default=[], metavar="PORT",
                   help="with the native JACK backend: connect to this JACK MIDI input "
                        "(a name or part of one; repeatable)")


JACK_BACKENDS = ("native", "rtmidi")
SYNTHS = ("auto", "fluidsynth", "builtin")


def add_synth_argument(p):
    p.add_argument("--synth", choices=SYNTHS, default="auto",
                   help="with --audio: fluidsynth (its own JACK client fed by the native "
                        "JACK output: no Python in the audio path), builtin (the numba synth "
                        "through PortAudio), or auto (default): fluidsynth where a JACK "
                        "server runs and fluidsynth and a SoundFont are installed")


def audio_output(args):
    """The ``--audio`` output: FluidSynth or the built-in synth (``--synth``)."""
    import shutil

    from realtime.audio import AudioPort, FluidSynthPort
    from realtime.jack import server_running
    from realtime.soundfont import default_soundfont

    choice = getattr(args, "synth", "auto")
    if choice == "fluidsynth" or (choice == "auto" and shutil.which("fluidsynth")
                                  and default_soundfont() and server_running()):
        return FluidSynthPort()
    return AudioPort()


def jack_backend(choice=None):
    """'native' or 'rtmidi': ``choice``, else $OSTINATO_JACK_BACKEND, else native."""
    field = "jack_backend"
    if choice is None:
        choice, field = os.environ.get("OSTINATO_JACK_BACKEND", "native"), "OSTINATO_JACK_BACKEND"
    if choice not in JACK_BACKENDS:
        raise InvalidMessage(f"{field} {choice!r} is not a JACK backend; allowed: "
                             f"{', '.join(JACK_BACKENDS)}", field=field,
                             allowed=", ".join(JACK_BACKENDS))
    return choice


def midi_output(args):
    """The virtual MIDI output ``args`` ask for (``add_midi_arguments``): the native JACK
    client where the API is JACK, else rtmidi's."""
    from realtime.outputs import JackMidiPort, RtMidiPort, resolve_api

    import rtmidi

    if resolve_api(args.api) == rtmidi.API_UNIX_JACK and \
            jack_backend(getattr(args, "jack_backend", None)) == "native":
        return JackMidiPort(args.port_name, connect=getattr(args, "jack_connect", ()))
    return RtMidiPort(args.port_name, api=args.api)


def open_outputs(args, keys=None):
    """The outputs asked for; one that cannot open is reported in a line and skipped.
    keys: the event stream's CurveZMQ keys (``realtime.keys.ServerKeys``), or None."""
    from realtime.outputs import MidiFilePort, ZmqPubPort

    ports, lines = [], []
    tries = []
    if args.midi == "virtual":
        tries.append(("MIDI port", lambda: midi_output(args)))
    if args.events and args.events != "none":
        tries.append(("event stream", lambda: ZmqPubPort(
            args.events, keys=keys, ahead_ms=getattr(args, "events_ahead", 0.0))))
    if args.record:
        tries.append(("recording", lambda: MidiFilePort(args.record)))
    if args.audio:
        tries.append(("audio", lambda: audio_output(args)))
    for label, make in tries:
        try:
            port = make()
        except (OstinatoError, OSError) as exc:
            lines.append(f"  {label}: not available ({exc})")
            continue
        ports.append(port)
        where = getattr(port, "bound_address", None) or getattr(port, "port_name", None) \
            or getattr(port, "path", None) or getattr(port, "name", "")
        lines.append(f"  {label}: {where}")
    return ports, lines


def run(args):
    with _stop_signals() as stopping:
        return _serve(args, stopping)


@contextlib.contextmanager
def _stop_signals():
    """SIGTERM and SIGINT (Ctrl-C) both set the returned list's events instead of killing
    the process or raising KeyboardInterrupt wherever the main thread is: the server
    then leaves its ``with`` block, so every note ends and the recording is written.
    Append the server's stop event once it exists; one set earlier is set at once."""
    events = [threading.Event()]

    def stop(signum, frame):
        for event in events:
            event.set()

    if threading.current_thread() is not threading.main_thread():
        yield events  # only the main thread may set handlers; the caller stops it
        return
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield events
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _serve(args, stopping):
    keys = check_serve(args)  # a remote bind without keys: refused before anything opens
    ports, lines = open_outputs(args, keys)
    cfg = ServerConfig(model=args.model, control=args.control, max_sessions=args.sessions,
                       seed=args.seed, states=args.states, initial_state=args.state,
                       clock=args.clock, server_key=args.server_key, client_keys=args.client_keys,
                       max_request_bytes=args.max_request_bytes, tonality=args.tonality,
                       repetition=args.repetition,
                       critic=critic_path(args.critic), critic_k=args.critic_k,
                       critic_pick=args.critic_pick, critic_beats=args.critic_beats)
    t0 = time.monotonic()
    # in two steps (Server's listen_first): the control socket answers from here, while
    # the model loads and the kernels compile; what is sent meanwhile applies at the start
    try:
        srv = Server(cfg, ports, listen_first=True)
    except BaseException:
        MultiPort(ports).close()
        raise
    print(f"ostinato serve: control {srv.control_address} answers now; warming up (a first "
          "start compiles the kernels in a child process, tens of seconds: `make setup` does "
          "it ahead, `pip install` alone does not)", flush=True)
    try:
        srv.load()
    except BaseException:
        srv.close()
        raise
    stopping.append(srv.stopping)
    if stopping[0].is_set():  # a signal came while the model loaded
        srv.stop()
    with contextlib.ExitStack() as extra:
        pubs = [p for p in ports if hasattr(p, "publish") and hasattr(p, "bound_address")]
        if args.show and pubs and keys is None:
            from realtime.show import start_show

            # subscribed before the server starts, so it hears the opening key and tempo
            extra.enter_context(start_show(pubs[0].bound_address))
            time.sleep(0.1)  # a SUB socket's connection completes in the background
        elif args.show:
            lines.append("  show: needs the event stream (--events)" if keys is None else
                         "  show: not with --server-key (its subscriber has no client key)")
        extra.enter_context(srv)
        if args.osc:
            from realtime.osc import OscServer

            try:
                osc = extra.enter_context(OscServer(srv.handle, args.osc_host, args.osc,
                                                    presets=srv.presets, stingers=srv.stingers,
                                                    allow_remote=args.osc_allow_remote,
                                                    events=pubs[0] if pubs else None))
                lines.append(f"  OSC: udp://{args.osc_host}:{osc.port} (/ostinato/mood v a i now, ...; "
                             "/ostinato/subscribe for the events)"
                             + ("; no authentication: anyone who reaches it steers the music"
                                if not is_loopback_host(args.osc_host) else ""))
            except (OstinatoError, OSError) as exc:
                lines.append(f"  OSC: not available ({exc})")
        print(f"ostinato serve: ready in {time.monotonic() - t0:.2f} s (music playing, requests "
              f"sent while warming up applied), model {args.model}")
        print(f"  control: {srv.control_address} (JSON; see PROTOCOL.md)")
        if srv.drafter is not None:
            lines.append(f"  critic: {cfg.critic} ({srv.drafter.pick} of K drafts of "
                         f"{srv.drafter.beats:g} beat(s); sessions' default critic {cfg.critic_k})")
        print("\n".join(lines))
        if keys is not None:
            print(f"  CurveZMQ: only the clients whose keys are in {keys.clients} get in "
                  "(bindings/README.md shows how)")
        else:
            print('  try: python -c "import zmq; s=zmq.Context().socket(zmq.REQ); '
                  f"s.connect('{srv.control_address}'); "
                  "s.send_json({'type':'mood','valence':-0.5,'arousal':0.9,'transition':'now'}); "
                  'print(s.recv_json())"')
        sys.stdout.flush()
        if args.seconds:
            srv.stopping.wait(args.seconds)
        else:
            srv.wait()
    print(f"ostinato serve: stopped after {srv.events_sent} MIDI messages, no notes left sounding")
    return 0
