"""``ostinato demo``: see and hear Ostinato answer a game, without a DAW, in a minute.

Starts a ``Server`` in this process on free ZeroMQ ports and plays a scripted game to
it through a real ``bindings.Client``: menu, then explore (at the bar), the hero's
theme (states.toml's ``hero``, at the bar), a move along the mood axes, stealth (at
once), combat (at the bar: the theme goes on, re-keyed in minor) with a "danger"
stinger and the theme varied further, victory (at once) with its stinger, calm (at
the bar).  The model served is the shipped ensemble (melody, bass, harmony and drums):
the layers build from explore to combat (the drums come in at combat's first bar), thin
to a pad and bass in stealth and leave a pad and melody in calm.  The melody states the
theme note for note (at its variation) and the presets' ``repetition`` brings it back
through their form; a theme model (``--model engine/models/theme.npz``, one line) also
steers what is composed around it.  ``realtime.show`` prints what the music does every
second, with the voices heard; at the end the recording is rendered to ``demo.wav``
(FluidSynth and the General MIDI SoundFont, each voice its instrument; the built-in synth
where FluidSynth is missing) and drawn to ``demo.png``, a colour per voice, with the
changes marked where they took effect and each return of the theme, as the event stream
announced it.
"""
import os
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path

from engine import DEFAULT_ENSEMBLE
from engine.ensemble import VOICES
from engine.errors import InvalidMessage, OstinatoError, PortError

from realtime.layers import STINGER_CHANNEL, STINGER_VOICE
from realtime.serve import add_midi_arguments, add_synth_argument
from realtime.server import ServerConfig

START_STATE = "menu"
SECONDS_RANGE = (20.0, 3600.0)
SAMPLE_RATE = 48000
TICKS_PER_BEAT = 12  # the piano roll's grid (the vocabulary's)


@dataclass(frozen=True)
class Step:
    """One thing the scripted game sends, at a fraction of the performance."""

    at: float
    kind: str                 # "state", "mood", "theme" or "stinger"
    transition: str
    fields: dict = field(default_factory=dict)

    def describe(self):
        if self.kind == "mood":
            axes = ", ".join(f"{k} {v:+.2f}" for k, v in self.fields.items())
            return f"mood {axes} ({self.transition})"
        if self.kind == "theme":
            return (f"theme {self.fields['name']}, variation {self.fields['variation']:g} "
                    f"({self.transition})")
        return f"{self.kind} {self.fields['name']} ({self.transition})"

    def label(self):
        """The piano roll's mark and the summary's name for a mood or state step."""
        if self.kind == "mood":
            return "mood " + " ".join(f"{k[0]}{v:+.1f}" for k, v in self.fields.items())
        if self.kind == "theme":
            return f"theme {self.fields['name']} v{self.fields['variation']:g}"
        return self.fields["name"]


# Spaced so that each quantised change takes effect well before the next message even
# at --seconds 20: a bar lasts 1.7 s (combat) to 3.3 s (calm), and the game starts in
# the menu so that the first change, to explore, is heard at a bar line.
SCRIPT = (
    Step(0.03, "state", "bar", {"name": "explore"}),
    Step(0.15, "theme", "bar", {"name": "hero", "variation": 0.0}),
    Step(0.29, "mood", "beat", {"valence": 0.8, "arousal": 0.6}),
    Step(0.37, "state", "now", {"name": "stealth"}),
    Step(0.45, "state", "bar", {"name": "combat"}),
    Step(0.50, "theme", "beat", {"name": "hero", "variation": 0.6}),
    Step(0.60, "stinger", "beat", {"name": "danger"}),
    Step(0.72, "state", "now", {"name": "victory"}),
    Step(0.72, "stinger", "beat", {"name": "victory"}),
    Step(0.82, "state", "bar", {"name": "calm"}),
)


@dataclass
class Section:
    """A stretch of the performance under one mood, from the beat it took effect."""

    label: str
    beat: float
    bpm: float
    voices_from: float = None  # the bar line its voices took effect (an ensemble's)


def add_arguments(p):
    p.add_argument("--seconds", type=float, default=60.0,
                   help=f"length of the performance ({SECONDS_RANGE[0]:g}..{SECONDS_RANGE[1]:g}, "
                        "default 60)")
    p.add_argument("--out-dir", default=".", help="where demo.mid, demo.wav and demo.png go "
                                                   "(default: the current folder)")
    p.add_argument("--model", default=str(DEFAULT_ENSEMBLE), help="model .npz (default: the "
                   "shipped ensemble; engine/models/theme.npz: one line, whose latent also "
                   "steers the music around the theme)")
    add_midi_arguments(p)
    p.add_argument("--audio", action="store_true",
                   help="play it live: FluidSynth where JACK runs, else the built-in synth "
                        "(see --synth)")
    add_synth_argument(p)
    p.add_argument("--soundfont", default=None, metavar="PATH",
                   help="render demo.wav with FluidSynth and this SoundFont (default: the "
                        "first General MIDI SoundFont installed; the built-in synth where "
                        "there is none or FluidSynth is missing)")
    p.add_argument("--seed", type=int, default=0)


def run(args):
    seconds = args.seconds
    lo, hi = SECONDS_RANGE
    if not lo <= seconds <= hi:  # also false for nan
        raise InvalidMessage(f"--seconds is {seconds!r}; allowed {lo:g}..{hi:g}",
                             field="seconds", allowed=f"{lo:g}..{hi:g}")
    if args.soundfont and not Path(args.soundfont).is_file():
        raise InvalidMessage(f"--soundfont {args.soundfont!r} is not a file",
                             field="soundfont", allowed="a SoundFont (.sf2) file")
    out = Path(args.out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PortError(f"cannot create the output folder {str(out)!r}: {exc.strerror}") from exc
    paths = {ext: (out / f"demo.{ext}").resolve() for ext in ("mid", "wav", "png")}

    t_setup = time.monotonic()
    # record beside demo.mid, and rename when the server has stopped: a run that fails
    # to start leaves an earlier demo.mid as it was
    part = paths["mid"].with_name(f".demo-{os.getpid()}.mid")
    try:
        srv, rec, pub, lines = _open(args, part, paths["mid"])
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    lines.insert(0, f"ostinato demo: server ready in {time.monotonic() - t_setup:.2f} s, "
                    f"model {args.model}")
    try:
        sections, marks, wall, interrupted, voices = _perform(srv, rec, pub, seconds, lines)
    finally:  # what was played is kept, even if the game client failed on the way
        if part.exists():
            os.replace(part, paths["mid"])
    print(f"ostinato demo: server stopped after {wall:.1f} s and {srv.events_sent} MIDI messages, "
          "no notes left sounding")
    _wrap_up(args, paths, sections, marks, wall, voices)
    return 130 if interrupted else 0


def _open(args, record_path, mid_path):
    """The server and its outputs; an optional output that cannot open is a line, skipped."""
    from realtime.outputs import MidiFilePort, ZmqPubPort
    from realtime.serve import midi_output
    from realtime.server import Server

    pub = ZmqPubPort("tcp://127.0.0.1:*")
    ports, lines = [pub], []
    try:
        rec = MidiFilePort(record_path)
        ports.append(rec)
        lines.append(f"  recording: {mid_path}")
        if args.midi == "virtual":
            try:
                port = midi_output(args)
                ports.append(port)
                lines.append(f"  MIDI port: {port.port_name!r} (connect a synth to hear it live)")
            except (OstinatoError, OSError) as exc:
                lines.append(f"  MIDI port: not available ({exc})")
        if args.audio:
            from realtime.serve import audio_output

            try:
                port = audio_output(args)
                ports.append(port)
                lines.append(f"  audio: {getattr(port, 'device_name', None) or port.name}")
            except (OstinatoError, OSError) as exc:
                lines.append(f"  audio: not available ({exc})")
        cfg = ServerConfig(model=args.model, control="tcp://127.0.0.1:*", seed=args.seed,
                           initial_state=START_STATE)
        srv = Server(cfg, ports)
    except BaseException:
        for port in ports:
            port.close()
        raise
    return srv, rec, pub, lines


def _perform(srv, rec, pub, seconds, header):
    """Play the script; returns (sections, marks, wall seconds, interrupted, and the
    voice of each MIDI channel as hello told)."""
    from bindings.client import Client

    from realtime.mood import bpm_of, describe
    from realtime.show import Show

    start = srv.sessions["main"].mood
    start_bpm = bpm_of(start)
    rec.tempo(start_bpm, 0.0)  # the server records tempo messages only: we record the rest
    sections = [Section(START_STATE, 0.0, start_bpm)]
    marks = [(0.0, START_STATE)]
    interrupted = False
    try:
        show = Show(pub.bound_address)  # subscribes before the first note
    except BaseException:
        srv.close()
        raise
    # the server announces changes, not where it starts: tell the display
    show.feed(dict(type="mood", session="main", beat=0.0, name=START_STATE,
                   **describe(start, srv.base_register, srv.tonality)))
    with show, srv:
        t0 = show.t0 = time.monotonic()
        show.write(header + [
            f"  control: {srv.control_address}   event stream: {pub.bound_address}",
            f"  a {seconds:g} s scripted game follows; each second a line shows what the music does"])
        try:
            with Client(srv.control_address, timeout=5.0) as game:
                hello = game.hello()
                voices = {v["channel"]: v["name"] for v in hello["capabilities"]["voices"]
                          if v["channel"] is not None}
                show.say(f"game → hello: {hello['server']} {hello['version']}, "
                         f"states {', '.join(hello['states'])}; voices "
                         + ", ".join(f"{name} (channel {ch})" for ch, name in voices.items()))
                for step in SCRIPT:
                    _sleep_until(t0 + step.at * seconds)
                    show.say("game → " + step.describe())
                    reply = _send(game, step)
                    show.say("music: " + _answer(step, reply))
                    if step.kind != "stinger":  # stingers show as notes; marks are changes
                        marks.append((reply["beat"], step.label()))
                    if step.kind in ("state", "mood"):  # the sections are the moods'
                        rec.tempo(reply["bpm"], reply["beat"])
                        sections[:] = [s for s in sections if s.beat < reply["beat"]]
                        sections.append(Section(step.label(), reply["beat"], reply["bpm"],
                                                reply.get("voices_beat")))
                _sleep_until(t0 + seconds)
        except KeyboardInterrupt:
            interrupted = True
            show.say("interrupted: stopping and writing what was played")
        show.say("game → (quits); the server releases every note and closes its outputs")
        wall = time.monotonic() - t0
        # each return of the theme through the form, as the event stream announced it
        returns = [beat for sess, beat in show.returns if sess == "main"]
        marks += [(beat, "theme returns") for beat in returns]
        if returns:
            show.say("music: the theme came back at beat " + ", ".join(f"{b:g}" for b in returns)
                     + " (its returns through the form)")
    return sections, marks, wall, interrupted, voices


def _sleep_until(deadline):
    """Sleep to an absolute monotonic deadline (a late wake-up never shifts the next)."""
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(left)


def _send(game, step):
    if step.kind == "state":
        return game.state(step.fields["name"], step.transition)
    if step.kind == "mood":
        return game.mood(transition=step.transition, **step.fields)
    if step.kind == "theme":
        return game.theme(transition=step.transition, **step.fields)
    return game.stinger(step.fields["name"], step.transition)


def _answer(step, reply):
    """What the server's ack says the music will do."""
    from realtime.show import note_name

    if step.kind == "stinger":
        notes = " ".join(note_name(p) for p in reply["pitches"])
        return f"stinger at beat {reply['beat']:g}: {notes}"
    if step.kind == "theme":
        t = reply["theme"]
        return (f"from beat {reply['beat']:g}: theme in {t['key']}, {t['bars']} bars, "
                f"{t['notes']} notes, played in {reply['key']} {reply['mode']}")
    voices = (f"; voices {' '.join(reply['voices'])} from beat {reply['voices_beat']:g}"
              if reply.get("voices") else "")
    return (f"from beat {reply['beat']:g}: {reply['key']} {reply['mode']}, {reply['bpm']:g} BPM, "
            f"{reply['density']:g} notes/beat asked, velocity {reply['velocity']}{voices}")


def section_stats(notes, sections, end_beat, tpb=TICKS_PER_BEAT, voices=None):
    """Measured density and loudness of each section of the recording.

    notes: NOTE_DTYPE in ticks of ``tpb`` (``channel``: the MIDI channel); sections:
    ``Section``s in beat order; voices: {MIDI channel: voice name} (an ensemble's).
    Stinger notes (their own channel) are counted apart.  Returns dicts with label, beat,
    bpm, seconds, notes, per_second, mean_velocity, stinger_notes and voices (the names
    of the voices with notes in the section, in ``VOICES`` order, from the bar line they
    took effect: a voice enters or leaves there, not at a "now").
    """
    voices = voices or {}
    out = []
    bounds = [s.beat for s in sections[1:]] + [end_beat]
    for sec, end in zip(sections, bounds):
        if end <= sec.beat:
            continue
        inside = notes[(notes["start"] >= sec.beat * tpb) & (notes["start"] < end * tpb)]
        voiced = max(sec.beat, sec.voices_from or 0.0) * tpb
        stinger = inside["channel"] == STINGER_CHANNEL
        music = inside[~stinger]
        secs = (end - sec.beat) * 60.0 / sec.bpm
        out.append(dict(label=sec.label, beat=sec.beat, bpm=sec.bpm, seconds=secs,
                        notes=len(music), per_second=len(music) / secs,
                        mean_velocity=float(music["velocity"].mean()) if len(music) else 0.0,
                        stinger_notes=int(stinger.sum()),
                        voices=[v for v in VOICES if v in
                                {voices.get(int(c)) for c in
                                 set(music["channel"][music["start"] >= voiced].tolist())}]))
    return out


def _wrap_up(args, paths, sections, marks, wall, voices):
    """Render demo.wav, draw demo.png and print what each section measured."""
    import numpy as np

    from engine.notes import read_midi
    from engine.pianoroll import plot_pianoroll

    import mido

    from realtime.render import render_wav

    mid, wav, png = paths["mid"], paths["wav"], paths["png"]
    length = mido.MidiFile(mid).length
    notes = read_midi(mid, ticks_per_beat=TICKS_PER_BEAT, keep_drums=True)
    how = render_wav(mid, wav, SAMPLE_RATE, soundfont=args.soundfont)
    with wave.open(str(wav), "rb") as w:
        wav_s = w.getnframes() / w.getframerate()
    end_beat = max([notes["end"].max() / TICKS_PER_BEAT if len(notes) else 0.0]
                   + [s.beat for s in sections])
    stats = section_stats(notes, sections, end_beat, voices=voices)
    n_stinger = sum(s["stinger_notes"] for s in stats)
    # the piano roll colours each voice: a note's channel becomes its voice's index
    names = VOICES + (STINGER_VOICE,)
    by_channel = {**voices, STINGER_CHANNEL: STINGER_VOICE}
    drawn = notes.copy()
    drawn["channel"] = np.array([names.index(by_channel.get(int(c), VOICES[0]))
                                 for c in notes["channel"]], dtype=notes["channel"].dtype)
    plot_pianoroll([drawn], [f"ostinato demo: {len(notes)} notes, {length:.1f} s; red lines: "
                             "each mood or theme change where it took effect, and each "
                             "return of the theme"], png,
                   marks=marks, ticks_per_beat=TICKS_PER_BEAT, voices=names)
    print(f"  {mid}: {len(notes) - n_stinger} notes + {n_stinger} stinger notes, "
          f"{length:.1f} s of music ({wall:.1f} s performed)")
    print(f"  {wav}: {wav_s:.1f} s, {SAMPLE_RATE} Hz stereo ({how})")
    returns = sum(label == "theme returns" for _, label in marks)
    themes = sum(label.startswith("theme ") for _, label in marks) - returns
    print(f"  {png}: piano roll, {len(marks) - themes - returns} mood changes, {themes} theme "
          f"entries and {returns} returns of the theme (through the form) marked")
    print("  what each section measured (from the recording):")
    print(f"    {'section':<18} {'from beat':>9} {'BPM':>5} {'seconds':>8} {'notes/s':>8} "
          f"{'mean velocity':>14}  voices heard")
    for s in stats:
        print(f"    {s['label']:<18} {s['beat']:>9.2f} {s['bpm']:>5g} {s['seconds']:>8.1f} "
              f"{s['per_second']:>8.2f} {s['mean_velocity']:>14.1f}  {' '.join(s['voices'])}")
    print("  next: `ostinato serve` and send it moods from your game (see PROTOCOL.md)")
