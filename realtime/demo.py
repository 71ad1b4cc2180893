"""``ostinato demo``: see and hear Ostinato answer a game, without a DAW, in a minute.

Starts a ``Server`` in this process on free ZeroMQ ports and plays a scripted game to
it through a real ``bindings.Client``: menu, then explore (at the bar), the hero's
theme (states.toml's ``hero``, at the bar), a cue "door" on the next line of a 2-bar
grid and stealth at that cue (the door opens: the game sneaks in on the music), a move
along the mood axes (the tension rises), combat (at the bar: the theme goes on, re-keyed in minor; states.toml's
rule for stealth → combat adds its "danger" bridge stinger) with a "hit" and the theme
varied further, victory with no transition named (the rule for combat → victory decides:
at the bar, with the victory stinger), calm (at the bar).  The model served is the shipped ensemble (melody, bass, harmony and drums):
the layers build from explore to combat (the drums come in at combat's first bar), thin
to a pad and bass in stealth and leave a pad and melody in calm.  The melody states the
theme note for note (at its variation) and the presets' ``repetition`` brings it back
through their form; a theme model (``--model engine/models/theme.npz``, one line) also
steers what is composed around it.  ``realtime.show`` prints what the music does every
second, with the voices heard; at the end the recording is rendered to ``demo.wav``
(FluidSynth and the General MIDI SoundFont, each voice its instrument; the built-in synth
where FluidSynth is missing) and drawn to ``demo.png``, a colour per voice, with the
changes marked where they took effect and each return of the theme, as the event stream
announced it.  The display subscribes to the stream's opt-in ``beat``, ``bar`` and
``phrase`` events: each second it draws a beat line, the picture has a row of ticks at
each beat announced (taller at bar lines, tallest where a phrase begins), and the cue is
marked where the stream announced that it played.
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
BEAT_LEVELS = {"beat": 0, "bar": 1, "phrase": 2}  # the height of a sync event's tick


@dataclass(frozen=True)
class Step:
    """One thing the scripted game sends, at a fraction of the performance."""

    at: float
    kind: str                 # "state", "mood", "theme", "stinger" or "cue"
    transition: str           # a cue's "at"; None: states.toml's rule decides (a state)
    fields: dict = field(default_factory=dict)

    def describe(self):
        if self.kind == "cue":
            return f"cue {self.fields['name']} at the next {self.transition} line"
        if self.transition is None:
            return f"{self.kind} {self.fields['name']} (no transition: states.toml's rule)"
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
# the menu so that the first change, to explore, is heard at a bar line.  The cue's 2-bar
# grid line is at most 8 beats away (5 s at explore's 96 BPM, past 10 s): the hero's theme is heard
# whole up to it, and stealth lands there before the mood moves (a tempo change still
# pending when another comes is replaced by it, so none is asked for meanwhile).
CUE = "door"
SCRIPT = (
    Step(0.03, "state", "bar", {"name": "explore"}),
    Step(0.15, "theme", "bar", {"name": "hero", "variation": 0.0}),
    Step(0.29, "cue", "bars:2", {"name": CUE}),
    Step(0.29, "state", f"cue:{CUE}", {"name": "stealth"}),
    Step(0.56, "mood", "beat", {"arousal": 0.6}),
    Step(0.62, "state", "bar", {"name": "combat"}),
    Step(0.68, "theme", "beat", {"name": "hero", "variation": 0.6}),
    Step(0.73, "stinger", "beat", {"name": "hit"}),
    Step(0.79, "state", None, {"name": "victory"}),
    Step(0.88, "state", "bar", {"name": "calm"}),
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
        sections, marks, beats, wall, interrupted, voices = _perform(srv, rec, pub, seconds,
                                                                     lines)
    finally:  # what was played is kept, even if the game client failed on the way
        if part.exists():
            os.replace(part, paths["mid"])
    print(f"ostinato demo: server stopped after {wall:.1f} s and {srv.events_sent} MIDI messages, "
          "no notes left sounding")
    _wrap_up(args, paths, sections, marks, beats, wall, voices)
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
                    show.say("music: " + _answer(step, reply, time.monotonic_ns()))
                    if step.kind not in ("stinger", "cue"):  # stingers show as notes; the
                        # cue is marked where the stream announced it played
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
        marks += [(beat, f"cue {name}") for sess, beat, name, _ in show.cues if sess == "main"]
        beats = [(beat, kind) for sess, beat, kind in show.beats if sess == "main"]
        show.say("stream: " + describe_beats(beats))
    return sections, marks, beats, wall, interrupted, voices


def describe_beats(beats):
    """What the sync events received say: how many beat, bar and phrase events, from
    which beat to which, and the beats missing between (none when the stream lost none)."""
    on = sorted({b for b, kind in beats if kind == "beat"})
    if not on:
        return "no beat events received"
    missing = round(on[-1] - on[0]) + 1 - len(on)
    count = {k: sum(kind == k for _, kind in beats) for k in ("bar", "phrase")}
    return (f"{len(on)} beat events from beat {on[0]:g} to {on[-1]:g} ({missing} missing), "
            f"{count['bar']} bar and {count['phrase']} phrase events")


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
    if step.kind == "cue":
        return game.request("cue", name=step.fields["name"], at=step.transition)
    return game.stinger(step.fields["name"], step.transition)


def _answer(step, reply, now_ns):
    """What the server's ack says the music will do (its ``t_ns`` as seconds from
    ``now_ns``, when the reply came)."""
    when = (f" (t_ns {reply['t_ns']}, in {(reply['t_ns'] - now_ns) / 1e9:.2f} s)"
            if "t_ns" in reply else "")
    if step.kind == "stinger":
        return _stinger(reply)
    if step.kind == "cue":
        return f"cue {reply['name']} placed at beat {reply['beat']:g}{when}"
    if step.kind == "theme":
        t = reply["theme"]
        return (f"from beat {reply['beat']:g}: theme in {t['key']}, {t['bars']} bars, "
                f"{t['notes']} notes, played in {reply['key']} {reply['mode']}")
    voices = (f"; voices {' '.join(reply['voices'])} from beat {reply['voices_beat']:g}"
              if reply.get("voices") else "")
    rule = ""
    if reply.get("rule"):
        rule = f"; rule {reply['rule']}: at the {reply['transition']}"
        if reply.get("stinger"):
            rule += ", bridge " + _stinger(reply["stinger"])
    return (f"from beat {reply['beat']:g}: {reply['key']} {reply['mode']}, {reply['bpm']:g} BPM, "
            f"{reply['density']:g} notes/beat asked, velocity {reply['velocity']}{voices}"
            f"{rule}{when}")


def _stinger(reply):
    """A stinger's ack: where it plays and its notes, or why it does not."""
    from realtime.show import note_name

    if not reply.get("played", True):
        return (f"stinger {reply['name']} not played ({reply['reason']}; next at beat "
                f"{reply['next_beat']:g})")
    notes = " ".join(note_name(p) for p in reply["pitches"])
    queued = " (queued: " + reply["reason"] + ")" if reply.get("queued") else ""
    return f"stinger {reply['name']} at beat {reply['beat']:g}{queued}: {notes}"


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


def _wrap_up(args, paths, sections, marks, beats, wall, voices):
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
    plot_pianoroll([drawn], [f"ostinato demo: {len(notes)} notes, {length:.1f} s; red: each "
                             "change where it took effect, the theme's returns, the cue where "
                             "it played; teal ticks: the beat events (taller: bars)"], png,
                   marks=marks, ticks_per_beat=TICKS_PER_BEAT, voices=names,
                   beats=[(b, BEAT_LEVELS[kind]) for b, kind in beats])
    print(f"  {mid}: {len(notes) - n_stinger} notes + {n_stinger} stinger notes, "
          f"{length:.1f} s of music ({wall:.1f} s performed)")
    print(f"  {wav}: {wav_s:.1f} s, {SAMPLE_RATE} Hz stereo ({how})")
    returns = sum(label == "theme returns" for _, label in marks)
    themes = sum(label.startswith("theme ") for _, label in marks) - returns
    cues = sum(label.startswith("cue ") for _, label in marks)
    print(f"  {png}: piano roll, {len(marks) - themes - returns - cues} mood changes, {themes} "
          f"theme entries, {returns} returns of the theme (through the form) and {cues} cue "
          f"marked; {sum(k == 'beat' for _, k in beats)} beat ticks")
    print("  what each section measured (from the recording):")
    print(f"    {'section':<18} {'from beat':>9} {'BPM':>5} {'seconds':>8} {'notes/s':>8} "
          f"{'mean velocity':>14}  voices heard")
    for s in stats:
        print(f"    {s['label']:<18} {s['beat']:>9.2f} {s['bpm']:>5g} {s['seconds']:>8.1f} "
              f"{s['per_second']:>8.2f} {s['mean_velocity']:>14.1f}  {' '.join(s['voices'])}")
    print("  next: `ostinato serve` and send it moods from your game (see PROTOCOL.md)")
