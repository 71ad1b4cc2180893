"""Layers: which voices of an ensemble a session plays, on which channels, with which
instruments (vertical remixing, as Wwise and FMOD layer stems by intensity).

A session's ``Layers`` start from the server's voices (states.toml's ``[voices]``,
``realtime.protocol.load_voices``), are updated by its preset's ``voices`` and then by
the ``voices`` of the messages it is sent (each already normalised by the protocol to
{voice name: {play, program, channel, octave}}).  ``play`` is True (forced on), False
(forced off) or "auto": the mood's level, (intensity + arousal) / 2, brings a voice in
from its ``enter`` on.  At least one voice plays: with none, the allowed voice that
enters first does.
"""
from dataclasses import dataclass, replace

import numpy as np

from engine.ensemble import BASS, HARMONY, PRIORS, VOICES
from engine.notes import DRUM_CHANNEL

from realtime import protocol

AUTO = "auto"
STINGER_CHANNEL = 15  # stingers play on their own channel (MIDI channel 16) ...
STINGER_VOICE = "stinger"  # ... which the event stream calls this
STINGER_PROGRAM = 61  # General MIDI Brass Section, for an ensemble's stingers


@dataclass(frozen=True)
class Layers:
    """A session's voices: ``voices`` (``engine.ensemble.Voice`` per voice id: program,
    channel, octave, enter, presence) and ``play`` (per voice id: True, False or AUTO)."""

    voices: tuple
    play: tuple

    @classmethod
    def of(cls, voices):
        """Every voice on its server settings, layered by the mood."""
        return cls(tuple(voices), (AUTO,) * len(voices))

    def update(self, settings, field="voices"):
        """These layers with ``settings`` ({name: {play, program, channel, octave}}, as the
        protocol normalises a ``voices`` value) applied.  A channel that two voices would
        take is refused (InvalidMessage on ``field``), before anything changes."""
        if not settings:
            return self
        voices, play = list(self.voices), list(self.play)
        for name, setting in settings.items():
            v = VOICES.index(name)
            if "play" in setting:
                play[v] = setting["play"]
            changed = {k: setting[k] for k in ("program", "channel", "octave") if k in setting}
            if changed:
                voices[v] = replace(voices[v], **changed)
        if not any(play):
            raise protocol.reject(
                "out_of_range", f"{field}: every voice would be off; at least one must be "
                "allowed to play", field, "at least one voice true or \"auto\"")
        stinger = [v.name for v in voices if v.channel == STINGER_CHANNEL]
        if stinger:
            raise protocol.reject(
                "out_of_range", f"{field}: channel {STINGER_CHANNEL} is the stingers'; "
                f"{stinger[0]} needs another", field,
                f"channels 0..{STINGER_CHANNEL - 1} (drums: {DRUM_CHANNEL})")
        taken = {}
        for voice in voices:
            other = taken.setdefault(voice.channel, voice.name)
            if other != voice.name:
                raise protocol.reject(
                    "out_of_range", f"{field}: channel {voice.channel} is taken twice ("
                    f"{other} and {voice.name}); each voice needs its own channel", field,
                    "one channel 0..15 per voice, now: "
                    + ", ".join(f"{v.name} {v.channel}" for v in voices))
        return Layers(tuple(voices), tuple(play))

    def playing(self, intensity, arousal):
        """The ids of the voices that play at this mood (never none)."""
        level = (intensity + arousal) / 2.0
        on = [v for v, p in enumerate(self.play)
              if p is True or (p == AUTO and level >= self.voices[v].enter)]
        if on:
            return tuple(on)
        allowed = [v for v, p in enumerate(self.play) if p is not False] or range(len(self.play))
        return (min(allowed, key=lambda v: self.voices[v].enter),)

    def channels(self):
        """{channel: voice name} of these layers."""
        return {v.channel: v.name for v in self.voices}

    def describe(self, playing=None):
        """The layers as a reply shows them: {name: {channel, program, octave, play}} and,
        with ``playing``, whether each voice plays now."""
        out = {}
        for v, voice in enumerate(self.voices):
            out[voice.name] = dict(channel=voice.channel, program=voice.program,
                                   octave=voice.octave, play=self.play[v])
            if playing is not None:
                out[voice.name]["playing"] = v in playing
        return out


class Voicing:
    """The server side of an ensemble's layers: a session's voices into the model (its
    voice mask at bar lines, the sampler's presence bias), the sequencer (channel and
    octave per voice), the outputs (program changes; which voice each channel carries)
    and the stingers (over the current chord).

    ``rt``: the sessions' ``Runtime``; ``seq``: their ``Sequencer``; ``engine``: the
    ``realtime.engine.Engine`` whose queue sends; ``sessions``: the open sessions by
    name (the ``Sessions``' own dict); ``voices``: the server's ``Voice`` per voice id,
    empty for a one-line model; ``bar_ticks``: ticks in a bar.
    """

    def __init__(self, rt, seq, engine, sessions, voices, bar_ticks):
        self.rt, self.seq, self.engine, self.sessions = rt, seq, engine, sessions
        self.voices, self.bar_ticks = tuple(voices), bar_ticks
        self.tpb = seq.tpb

    def layers(self, preset, voices=None, base=None):
        """The layers of a session in ``preset`` (None: none) with a message's ``voices``
        on top, from ``base`` (default: the server's voices); None for a one-line model,
        which refuses ``voices`` (InvalidMessage naming the field)."""
        if not self.voices:
            if voices:
                raise protocol.reject("out_of_range", "voices need an ensemble model and this "
                                      "server's model plays one line: start it with `ostinato "
                                      "serve --model engine/models/ensemble.npz`", "voices",
                                      "none on a one-line model")
            return None
        layers = base if base is not None else Layers.of(self.voices)
        if preset is not None and preset.get("voices"):
            layers = layers.update(preset["voices"])
        return layers.update(voices)

    def own_channels(self, layers, explicit):
        """A further session's pitched voices move to channels no other session uses, as
        far as there are free ones (a DAW then records each session's voices apart);
        channels the message set (``explicit``: its ``voices``) stay as set.  Drums stay
        on General MIDI's drum channel."""
        used = {c for other in self.sessions.values() if other.layers is not None
                for c in other.layers.channels()}
        mine = set(layers.channels())
        free = [c for c in range(16) if c not in used | mine | {DRUM_CHANNEL, STINGER_CHANNEL}]
        moved = {}
        for voice in layers.voices:
            if voice.channel in used and voice.channel != DRUM_CHANNEL and \
                    "channel" not in explicit.get(voice.name, {}) and free:
                moved[voice.name] = {"channel": free.pop(0)}
        return layers.update(moved)

    def apply(self, sess, now):
        """The session's channels, octaves and programs take effect now (program changes
        sent on its channels) and the outputs learn which voice each channel carries."""
        s = sess.slot
        self.name_voices()  # first: the outputs then know whose program each change is
        if sess.layers is not None:
            programs = [(STINGER_CHANNEL, STINGER_PROGRAM)]
            for v, voice in enumerate(sess.layers.voices):
                self.seq.vchan[s, v] = voice.channel
                self.seq.vshift[s, v] = 12 * voice.octave
                programs.append((voice.channel, voice.program))
            beat = max(0.0, self.seq.ns_tick(s, now) / self.tpb)
            self.engine.send(self.seq, self.seq.programs(s, now, beat, programs))

    def start(self, sess):
        """A session's music starts afresh (nothing sounds): its voices are set at once,
        with the priors an ensemble plays at (``engine.ensemble.PRIORS``)."""
        if sess.layers is not None:
            self.rt.set_voices(sess.slot, sess.playing)
            self.rt.set_priors(sess.slot, **PRIORS)
            self._presence(sess)

    def _presence(self, sess):
        """The sampler's bias towards naming each voice that plays (``Voice.presence``)."""
        for v, voice in enumerate(sess.layers.voices):
            self.rt.voice_bias[sess.slot, v] = voice.presence if v in sess.playing else 0.0

    def change(self, sess, layers, mood, tick, now):
        """From the bar line at or after ``tick``: the voices ``layers`` plays at ``mood``
        (the model's voice mask; the notes of voices that leave end there); channels and
        programs change at once.  Returns (voice names, the bar's beat) for the reply,
        or (None, None) for a one-line session."""
        if sess.layers is None:
            return None, None
        s = sess.slot
        changed = layers.voices != sess.layers.voices
        sess.layers = layers
        playing = layers.playing(mood.intensity, mood.arousal)
        at = -(-int(tick) // self.bar_ticks) * self.bar_ticks
        if playing != sess.playing:  # the same set pending or playing: nothing to do
            sess.playing = playing
            self.rt.voices_at(s, at, playing)
        self._presence(sess)
        if changed:
            self.apply(sess, now)
        return names(playing), at / self.tpb

    def chord_step(self, sess, key, mode):
        """Scale steps that put a stinger's degree 1 on the root of the harmony an ensemble
        sounds where its music is composed up to (the bass's lowest note, else the
        harmony's), so that the stinger is heard over the current chord; 0 for one line,
        for silence and for a root outside the scale of ``key`` (pitch class), ``mode``."""
        if sess.layers is None:
            return 0
        s, rt = sess.slot, self.rt
        degrees = [protocol.degree_to_semitones(d, mode) for d in range(1, 8)]
        for v in (BASS, HARMONY):
            held = np.flatnonzero(rt.sounding[s, v * 128:(v + 1) * 128] >= 0)
            if len(held):
                heard = int(held[0]) + int(self.seq.transpose[s]) + int(self.seq.vshift[s, v])
                above = (heard - key) % 12
                return degrees.index(above) if above in degrees else 0
        return 0

    def name_voices(self):
        """Tell the outputs which voice each session's channels carry (their note events
        say it): an ensemble's from its layers, one line's "melody"; the stingers'."""
        voices = {}
        for sess in self.sessions.values():
            chans = (sess.layers.channels() if sess.layers is not None else
                     {int(self.seq.vchan[sess.slot, 0]): VOICES[0]})
            voices[sess.slot] = {**chans, STINGER_CHANNEL: STINGER_VOICE}
        self.engine.in_order("voices", voices)


def names(ids):
    """Voice names of voice ids."""
    return [VOICES[v] for v in ids]
