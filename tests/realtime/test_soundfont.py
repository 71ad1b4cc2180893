"""FluidSynth renders the recording as a General MIDI synth: each channel its program,
channel 9 the drum kit; ``render_wav`` falls back to the built-in synth where FluidSynth
cannot run.  The real ``fluidsynth`` program and SoundFont where they are installed."""
import shutil
import wave

import mido
import numpy as np
import pytest

from engine.errors import InvalidMessage, OstinatoError
from realtime.outputs import MidiFilePort
from realtime.render import render_wav
from realtime.soundfont import default_soundfont, fluidsynth_missing

SR = 22050
T0 = 1_000_000_000
needs_fluidsynth = pytest.mark.skipif(
    fluidsynth_missing() is not None,
    reason=f"needs the fluidsynth program and a General MIDI SoundFont ({fluidsynth_missing()}; "
           "`make setup` installs both)")


def _midi(path, notes, programs=()):
    """A one-track .mid: (channel, program) changes at 0, then (beat, channel, pitch,
    beats) notes at 120 BPM."""
    mid = mido.MidiFile(type=1, ticks_per_beat=96)
    track = mido.MidiTrack()
    events = [(0, 0, mido.Message("program_change", channel=c, program=p))
              for c, p in programs]
    for beat, channel, pitch, beats in notes:
        events.append((round(beat * 96), 2, mido.Message("note_on", channel=channel, note=pitch,
                                                         velocity=100)))
        events.append((round((beat + beats) * 96), 1,
                       mido.Message("note_off", channel=channel, note=pitch, velocity=0)))
    now = 0
    for tick, _, msg in sorted(events, key=lambda e: e[:2]):
        track.append(msg.copy(time=tick - now))
        now = tick
    mid.tracks.append(track)
    mid.save(path)
    return path


def _pcm(path):
    with wave.open(str(path), "rb") as w:
        assert w.getsampwidth() == 2 and w.getframerate() == SR
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, w.getnchannels()) / 32768.0


def _render(tmp_path, name, notes, programs=()):
    done = render_wav(_midi(tmp_path / f"{name}.mid", notes, programs), tmp_path / f"{name}.wav",
                      SR)
    assert done.synth == "fluidsynth" and done.fallback is None, done
    return _pcm(done.path)


def _rms(a):
    return float(np.sqrt(np.mean(np.square(a))))


def _apart(a, b):
    """How far two renderings are apart, relative to the louder one (0: the same)."""
    n = max(len(a), len(b))
    a, b = (np.pad(x, ((0, n - len(x)), (0, 0))) for x in (a, b))
    return _rms(a - b) / max(_rms(a), _rms(b))


MELODY = [(0, 0, 72, 1), (1, 0, 76, 1), (2, 0, 79, 2)]
KIT = [(0, 9, 36, 0.5), (1, 9, 38, 0.5), (2, 9, 36, 0.5), (3, 9, 38, 0.5)]


@needs_fluidsynth
def test_a_drums_only_file_sounds(tmp_path):
    # FluidSynth's default gain (0.2) is quiet: one kick peaks near 0.05 of full scale,
    # where a file without notes renders one least step of 16 bits at most
    assert _rms(_render(tmp_path, "silent", [])) < 1e-4
    audio = _render(tmp_path, "drums", KIT)
    assert _rms(audio) > 0.002
    for beat in range(4):  # each hit sounds: the quarter second after each beat is loud
        at = int(beat * 0.5 * SR)
        assert np.abs(audio[at:at + SR // 4]).max() > 0.02, beat


@needs_fluidsynth
def test_channel_9_is_the_drum_kit_and_program_changes_choose_the_instrument(tmp_path):
    snare = _render(tmp_path, "snare", [(0, 9, 38, 1)])
    piano = _render(tmp_path, "piano", [(0, 0, 38, 1)])
    assert _apart(snare, piano) > 0.5  # the same note on channel 9 is not the piano's
    flute = _render(tmp_path, "flute", MELODY, programs=[(0, 73)])
    default = _render(tmp_path, "default", MELODY)
    again = _render(tmp_path, "flute2", MELODY, programs=[(0, 73)])
    assert _apart(flute, again) < 0.01  # FluidSynth renders a file the same way each time
    assert _apart(flute, default) > 0.5


@needs_fluidsynth
def test_a_two_voice_recording_renders_each_voice(tmp_path):
    """The recorder's .mid (a track per voice, a program change mid-way, drums) through
    FluidSynth: it sounds, and muting either voice changes what is heard."""
    def take(name, voices):
        path = tmp_path / f"{name}.mid"
        with MidiFilePort(path, sessions=["main"], ticks_per_beat=96, checkpoint_s=None) as rec:
            rec.voices = {0: {0: "melody", 9: "drums"}}
            rec.send(0xC0, 73, 0, T0, 0.0, 0)
            if "melody" in voices:
                for beat, pitch in enumerate((72, 76, 79, 84)):
                    if beat == 2:
                        rec.send(0xC0, 56, 0, T0, beat, 0)  # flute, then trumpet
                    rec.send(0x90, pitch, 100, T0, beat, 0)
                    rec.send(0x80, pitch, 0, T0, beat + 0.9, 0)
            if "drums" in voices:
                for beat, _, pitch, beats in KIT:
                    rec.send(0x99, pitch, 110, T0, beat, 0)
                    rec.send(0x89, pitch, 0, T0, beat + beats, 0)
        done = render_wav(path, tmp_path / f"{name}.wav", SR)
        assert done.synth == "fluidsynth", done
        return _pcm(done.path)

    both = take("both", ("melody", "drums"))
    assert [t.name for t in mido.MidiFile(tmp_path / "both.mid").tracks] == ["tempo", "melody", "drums"]
    assert _rms(both) > 0.002
    assert _apart(both, take("melody", ("melody",))) > 0.2
    assert _apart(both, take("drums", ("drums",))) > 0.2


def test_without_fluidsynth_the_builtin_synth_renders_and_says_why(tmp_path, monkeypatch):
    """A PATH without the fluidsynth program: a real missing install, not a mock."""
    mid = _midi(tmp_path / "m.mid", MELODY, programs=[(0, 73)])
    monkeypatch.setenv("PATH", str(tmp_path))
    assert shutil.which("fluidsynth") is None
    done = render_wav(mid, tmp_path / "m.wav", SR, tail_s=0.5)
    assert (done.synth, done.soundfont) == ("builtin", None)
    assert "fluidsynth is not installed" in done.fallback and "built-in synth (" in str(done)
    assert done.seconds == pytest.approx(2.5, abs=0.01) and _rms(_pcm(done.path)) > 0.01
    with pytest.raises(OstinatoError, match="fluidsynth is not installed"):
        render_wav(mid, tmp_path / "x.wav", SR, synth="fluidsynth")
    assert str(render_wav(mid, tmp_path / "b.wav", SR, synth="builtin")) == "built-in synth"


def test_a_missing_soundfont_falls_back_and_bad_input_is_named(tmp_path):
    mid = _midi(tmp_path / "m.mid", MELODY)
    done = render_wav(mid, tmp_path / "m.wav", SR, soundfont=str(tmp_path / "none.sf2"))
    assert done.synth == "builtin" and "SoundFont not found" in done.fallback
    with pytest.raises(InvalidMessage) as info:
        render_wav(mid, tmp_path / "m.wav", SR, synth="timidity")
    assert info.value.field == "synth" and "auto" in info.value.allowed
    with pytest.raises(InvalidMessage) as info:
        render_wav(mid, tmp_path / "m.wav", 1000)
    assert info.value.field == "sample_rate"
    (tmp_path / "bad.mid").write_bytes(b"not midi")
    with pytest.raises(OstinatoError):
        render_wav(tmp_path / "bad.mid", tmp_path / "bad.wav", SR)
    assert not (tmp_path / "bad.wav").exists()


@needs_fluidsynth
def test_fluidsynth_is_what_auto_picks_here(tmp_path):
    done = render_wav(_midi(tmp_path / "m.mid", MELODY), tmp_path / "m.wav", SR)
    assert (done.synth, done.soundfont) == ("fluidsynth", default_soundfont())
    assert str(done) == f"FluidSynth, {default_soundfont()}"
    assert done.seconds >= 2.0
