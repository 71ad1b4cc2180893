"""Offline rendering: a MIDI file to audio with the built-in synth, sample-exact, the WAV
writer, ``render_wav`` (FluidSynth and a General MIDI SoundFont where they are installed,
the built-in synth otherwise), and the ``ostinato render`` command."""
import math
import os
import wave
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import mido
import numpy as np

from engine.errors import InvalidMessage, OstinatoError
from engine.notes import open_midi

from realtime.soundfont import SOUNDFONTS, default_soundfont, fluidsynth_missing, render_fluidsynth
from realtime.synth import Synth, SynthConfig, check_float, check_int, push_event
from realtime.voices import EV_ALL_NOTES_OFF, EV_ALL_SOUND_OFF


def midi_events(source, sample_rate=48000):
    """The channel messages of a MIDI file as (frame, status, data1, data2), and its end frame.

    Frames are exact: each tempo segment is summed as a fraction, then rounded once,
    so long files do not drift.
    """
    mid = open_midi(source)
    sr = check_int("sample_rate", sample_rate, 8000, 192000)
    tpb = mid.ticks_per_beat
    tempo = 500000
    seg_tick, seg_start = 0, Fraction(0)
    tick = 0
    events = []

    def frame_at(t):
        return seg_start + Fraction((t - seg_tick) * tempo * sr, tpb * 1_000_000)

    for msg in mido.merge_tracks(mid.tracks):
        tick += msg.time
        if msg.type == "set_tempo":
            seg_start, seg_tick, tempo = frame_at(tick), tick, msg.tempo
        elif not msg.is_meta and msg.type in ("note_on", "note_off", "control_change",
                                              "program_change"):
            b = msg.bytes()
            events.append((round(frame_at(tick)), b[0], b[1], b[2] if len(b) > 2 else 0))
    return events, round(frame_at(tick))


def render_midi(source, sample_rate=48000, tail_s=1.0, config=None, block=4096):
    """Render a MIDI file (path or mido.MidiFile) with the built-in synth, sample-exact.

    Returns float32 (frames, 2): the file's length plus `tail_s` for releases.  Notes
    still held when the file ends are released there; the last frames are silent.
    """
    sr = check_int("sample_rate", sample_rate, 8000, 192000)
    tail = round(check_float("tail_s", tail_s, 0.0, 60.0) * sr)
    events, end = midi_events(source, sr)
    cfg = SynthConfig(sample_rate=sr) if config is None else config
    if cfg.sample_rate != sr:
        raise InvalidMessage(f"config.sample_rate {cfg.sample_rate} differs from sample_rate {sr}",
                             field="sample_rate", allowed=str(cfg.sample_rate))
    synth = Synth(cfg)
    total = end + tail
    fade = int(math.ceil(cfg.steal_fade_s * sr)) + 1
    # held notes end with the file; anything left fades out just before the last frame
    events.append((end, EV_ALL_NOTES_OFF, 0, 0))
    events.append((max(end, total - fade), EV_ALL_SOUND_OFF, 0, 0))
    out = np.zeros((total, 2), np.float32)
    i, pos = 0, 0
    while pos < total:
        n = min(block, total - pos)
        while i < len(events) and events[i][0] < pos + n:
            f, st, d1, d2 = events[i]
            if not push_event(synth.ev, synth.meta, f - pos, st, d1, d2):
                if f == pos:
                    raise OstinatoError(f"more than {cfg.max_events} events at frame {f}")
                n = f - pos  # queue full: render up to this event, then go on
                break
            i += 1
        synth.render(n, out[pos:pos + n])
        pos += n
    return out


def write_wav(path, audio, sample_rate):
    """Write float audio (frames,) or (frames, channels) in [-1, 1] as 16-bit PCM WAV."""
    sr = check_int("sample_rate", sample_rate, 8000, 192000)
    a = np.asarray(audio)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or not 1 <= a.shape[1] <= 8 or not np.issubdtype(a.dtype, np.floating):
        raise InvalidMessage(f"audio must be float (frames,) or (frames, 1..8), got {a.dtype} {a.shape}",
                             field="audio", allowed="float (frames, channels)")
    pcm = np.round(np.clip(a, -1.0, 1.0) * 32767.0).astype("<i2")
    # the file is opened here, not by wave.open: when wave opens it and fails (no such
    # folder), its half-made writer prints a traceback from __del__ (CPython 3.11)
    with open(path, "wb") as f, wave.open(f, "wb") as w:
        w.setnchannels(a.shape[1])
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(pcm.tobytes())


SYNTHS = ("auto", "fluidsynth", "builtin")


@dataclass(frozen=True)
class Rendering:
    """What ``render_wav`` wrote: the WAV, its length, the synth that played it
    ("fluidsynth" or "builtin"), the SoundFont FluidSynth loaded, and why FluidSynth was
    not used when it was wanted (``fallback``)."""

    path: str
    seconds: float
    synth: str
    soundfont: str | None = None
    fallback: str | None = None

    def __str__(self):
        if self.synth == "fluidsynth":
            return f"FluidSynth, {self.soundfont}"
        return "built-in synth" + (f" ({self.fallback})" if self.fallback else "")


def render_wav(midi_path, wav_path, sample_rate=48000, synth="auto", soundfont=None,
               tail_s=1.0):
    """Render a MIDI file to a 16-bit WAV and say how (a ``Rendering``).

    synth: "auto" renders with FluidSynth and a General MIDI SoundFont (``soundfont``,
    else the first of ``SOUNDFONTS``) when both are installed, each channel with the
    program its program changes select and channel 9 as the drum kit, and with the
    built-in synth otherwise or when FluidSynth fails (``fallback`` says why);
    "fluidsynth" insists (OstinatoError when it cannot); "builtin" never tries it.
    tail_s: seconds after the file's end for releases (built-in synth; FluidSynth
    renders until its player ends).
    """
    if synth not in SYNTHS:
        raise InvalidMessage(f"synth must be one of {', '.join(SYNTHS)}, got {synth!r}",
                             field="synth", allowed=list(SYNTHS))
    sr = check_int("sample_rate", sample_rate, 8000, 192000)
    tail_s = check_float("tail_s", tail_s, 0.0, 60.0)
    open_midi(midi_path)  # a file that is no MIDI is an error for either synth
    fallback = None
    if synth != "builtin":
        fallback = fluidsynth_missing(soundfont)
        if fallback is None:
            try:
                render_fluidsynth(midi_path, wav_path, sr, soundfont)
                return Rendering(os.fspath(wav_path), _wav_seconds(wav_path), "fluidsynth",
                                 soundfont or default_soundfont())
            except OstinatoError as exc:
                if synth == "fluidsynth":
                    raise
                fallback = f"FluidSynth failed: {exc}"
        elif synth == "fluidsynth":
            raise OstinatoError(fallback)
    write_wav(wav_path, render_midi(midi_path, sr, tail_s=tail_s), sr)
    return Rendering(os.fspath(wav_path), _wav_seconds(wav_path), "builtin", fallback=fallback)


def _wav_seconds(path):
    with wave.open(os.fspath(path), "rb") as w:
        return w.getnframes() / w.getframerate()


def add_arguments(parser):
    parser.add_argument("midi", help="MIDI file to render (type 0 or 1)")
    parser.add_argument("-o", "--output", help="WAV file to write (default: the MIDI name with .wav)")
    parser.add_argument("--rate", type=int, default=48000, help="sample rate in Hz (8000-192000)")
    parser.add_argument("--tail", type=float, default=1.0,
                        help="seconds rendered after the file ends, for releases (built-in synth)")
    parser.add_argument("--synth", choices=SYNTHS, default="builtin",
                        help="builtin (default, numba, no files needed), fluidsynth "
                             "(needs the fluidsynth program and a General MIDI SoundFont, "
                             "e.g. Debian's timgm6mb-soundfont) or auto (FluidSynth where "
                             "it is installed, else the built-in synth)")
    parser.add_argument("--soundfont", metavar="PATH",
                        help="SoundFont (.sf2) for FluidSynth; implies --synth fluidsynth "
                             f"(default: the first of {', '.join(SOUNDFONTS)})")


def run(args):
    out = Path(args.output) if args.output else Path(args.midi).with_suffix(".wav")
    rate = check_int("rate", args.rate, 8000, 192000)
    tail = check_float("tail", args.tail, 0.0, 60.0)
    synth = "fluidsynth" if args.soundfont and args.synth == "builtin" else args.synth
    done = render_wav(args.midi, out, rate, synth, args.soundfont, tail)
    print(f"wrote {out}: {done.seconds:.2f} s at {rate} Hz ({done})")
    return 0
