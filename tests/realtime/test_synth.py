"""The built-in synthesiser and offline rendering, checked on real MIDI files written with mido."""
import shutil
import subprocess
import sys
import wave
from pathlib import Path

import mido
import numpy as np
import pytest

from realtime.cli import main as cli_main
from engine.errors import InvalidMessage, InvalidMidi
from realtime.render import midi_events, render_midi, write_wav
from realtime.soundfont import default_soundfont
from realtime.synth import Synth, SynthConfig
from realtime.voices import TIMBRES, T_ATT, T_REL, program_timbre

SR = 48000
ROOT = Path(__file__).resolve().parents[2]
SILENCE = 10 ** (-60 / 20)  # -60 dBFS

# (channel, program, pitch, start beat, length in beats).  120 bpm for beats 0-4, then
# 200 bpm: beat b starts at b * 0.5 s before beat 4 and 2.0 + (b - 4) * 0.3 s after.
NOTES = [(0, 0, 60, 0, 1), (1, 24, 64, 2, 0.5), (2, 16, 67, 4, 1), (3, 33, 43, 7, 1),
         (4, 48, 72, 10, 2), (0, 0, 72, 14, 1)]


def beat_seconds(b):
    return b * 0.5 if b <= 4 else 2.0 + (b - 4) * 0.3


def write_song(path, notes=NOTES, hold=None):
    """Type-1 file: tempo track with a change at beat 4, one track of notes with gaps.

    hold: index of a note left without its note-off.
    """
    tpb = 480
    mid = mido.MidiFile(type=1, ticks_per_beat=tpb)
    meta = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500000, time=0),
                           mido.MetaMessage("set_tempo", tempo=300000, time=4 * tpb)])
    timed = []
    for i, (ch, prog, pitch, start, length) in enumerate(notes):
        t0 = round(start * tpb)
        timed.append((t0, 0, mido.Message("program_change", channel=ch, program=prog)))
        timed.append((t0, 1, mido.Message("note_on", channel=ch, note=pitch, velocity=100)))
        if i != hold:
            timed.append((t0 + round(length * tpb), 0,
                          mido.Message("note_off", channel=ch, note=pitch, velocity=0)))
    track, now = mido.MidiTrack(), 0
    for t, _, msg in sorted(timed, key=lambda x: (x[0], x[1])):
        track.append(msg.copy(time=t - now))
        now = t
    mid.tracks += [meta, track]
    mid.save(path)
    return path


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    path = write_song(tmp_path_factory.mktemp("synth") / "song.mid")
    return path, render_midi(path, SR)


def test_tempo_map_places_events_on_exact_frames(song):
    path, _ = song
    events, end = midi_events(path, SR)
    ons = [f for f, st, d1, d2 in events if st & 0xF0 == 0x90]
    assert ons == [round(beat_seconds(n[3]) * SR) for n in NOTES]
    assert end == round(beat_seconds(15) * SR)


def test_onsets_silence_and_no_clipping(song):
    _, audio = song
    mono = np.abs(audio).max(axis=1)
    assert audio.dtype == np.float32 and audio.shape[1] == 2
    assert np.abs(audio).max() <= 1.0
    for i, (ch, prog, pitch, start, length) in enumerate(NOTES):
        on = round(beat_seconds(start) * SR)
        off = round(beat_seconds(start + length) * SR)
        # sample-exact: nothing before the note-on frame (the gap before it is silent) ...
        assert on == 0 or mono[on - SR // 100:on].max() == 0.0, f"note {i} sounds early"
        # ... sound from that frame (a sine starts at 0, so from the next at the latest) ...
        assert np.flatnonzero(mono[on:on + SR // 10])[0] <= 1, f"note {i} starts late"
        # ... and above -60 dBFS within 3 ms, or within the timbre's attack (the pad's is slow)
        first = np.flatnonzero(mono[on:on + SR // 10] > SILENCE)[0]
        bound_ms = 3.0 + 1000 * TIMBRES[program_timbre(prog), T_ATT]
        assert first / SR * 1000 < bound_ms, f"note {i} onset {first / SR * 1000:.2f} ms late"
        # after the release the voice is silent until the next note
        quiet_from = off + round((TIMBRES[program_timbre(prog), T_REL] + 0.01) * SR)
        nxt = round(beat_seconds(NOTES[i + 1][3]) * SR) if i + 1 < len(NOTES) else len(mono)
        assert mono[quiet_from:nxt].max() < SILENCE, f"note {i} still sounds after its release"


def test_no_clicks_at_note_ends(song):
    _, audio = song
    x = audio[:, 0].astype(np.float64)
    step = np.abs(np.diff(x))
    for i, (ch, prog, pitch, start, length) in enumerate(NOTES):
        off = round(beat_seconds(start + length) * SR)
        rel = round((TIMBRES[program_timbre(prog), T_REL] + 0.005) * SR)
        held = step[off - SR * 30 // 1000:off].max()   # sample-to-sample change while held
        ending = step[off:off + rel].max()
        # a hard stop would jump by the note's own amplitude, far above its held slope
        assert held > 0
        assert ending <= 1.05 * held, f"note {i}: end step {ending:.4g} vs held {held:.4g}"


def test_renders_bit_identically_twice(song):
    path, audio = song
    assert np.array_equal(render_midi(path, SR), audio)


def test_note_without_note_off_is_released_at_file_end(tmp_path):
    path = write_song(tmp_path / "held.mid", NOTES[:4], hold=2)  # the organ note is never let go
    audio = render_midi(path, SR, tail_s=1.0)
    end = round(beat_seconds(8) * SR)   # the file ends with the bass note's off
    organ = round(beat_seconds(6) * SR)  # where its note-off would have been
    assert np.abs(audio[organ + SR // 10:round(beat_seconds(7) * SR)]).max() > 0.01  # held on
    assert np.abs(audio[end + SR // 10:]).max() == 0.0          # released at the end, then silent


@pytest.mark.parametrize("program", [0, 24, 16, 33])
def test_equal_tempered_pitch(program):
    for pitch in (40, 57, 69, 81):
        synth = Synth()
        synth.program(0, program)
        synth.note_on(0, pitch, 100)
        x = synth.render(SR // 2)[1200:, 0].astype(np.float64) * np.hanning(SR // 2 - 1200)
        n = 8 * len(x)
        spec = np.abs(np.fft.rfft(x, n))
        freqs = np.arange(len(spec)) * SR / n
        want = 440.0 * 2 ** ((pitch - 69) / 12)
        band = np.flatnonzero((freqs > want / 1.03) & (freqs < want * 1.03))
        k = band[np.argmax(spec[band])]
        a, b, c = np.log(spec[k - 1:k + 2])
        got = (k + 0.5 * (a - c) / (a - 2 * b + c)) * SR / n
        assert abs(1200 * np.log2(got / want)) < 2.0, (program, pitch, got, want)
        assert spec[k] > 0.1 * spec.max()  # the fundamental is a strong partial, not leakage


@pytest.mark.parametrize("program", [0, 24, 16, 48, 33])
def test_velocity_changes_loudness(program):
    levels = []
    for vel in (30, 70, 120):
        synth = Synth()
        synth.program(0, program)
        synth.note_on(0, 60, vel)
        levels.append(np.sqrt(np.mean(synth.render(SR // 4) ** 2)))
    assert levels[0] < levels[1] < levels[2]


def test_dense_chord_is_limited_not_clipped():
    synth = Synth()
    synth.program(0, 16)  # organ: sustained, so all 32 voices sound together
    for i in range(32):
        synth.note_on(0, 36 + i * 2, 127)
    audio = synth.render(SR // 2)
    assert synth.active_voices == 32
    assert synth.peak > synth.config.knee    # the limiter had work to do
    assert np.abs(audio).max() <= 1.0


def test_events_are_sample_accurate_and_carried_over():
    synth = Synth()
    synth.program(0, 16)
    synth.note_on(0, 60, 100, frame_offset=700)  # beyond the first 256-frame block
    first = synth.render(256)
    assert not first.any() and synth.queued_events == 1
    second = synth.render(512)
    assert not second[:700 - 256].any() and second[700 - 256:700 - 256 + 2].any()  # sine starts at 0


def test_voice_stealing_fades_the_oldest_voice():
    def play(polyphony, pitches, steal_at, fifth=True):
        synth = Synth(SynthConfig(polyphony=polyphony))
        synth.program(0, 16)  # organ: sustained, so the stolen voice would go on sounding
        for p in pitches:
            synth.note_on(0, p, 100)
        if fifth:
            synth.note_on(0, 43, 100, frame_offset=steal_at)
        out = synth.render(steal_at + SR // 10)
        return out[:, 0].astype(np.float64), synth

    at = SR // 5 + 37
    stolen, synth = play(4, [36, 38, 40, 41], at)
    full, _ = play(32, [36, 38, 40, 41], at)
    alone, _ = play(32, [36], at, fifth=False)        # the oldest voice, the one stolen, by itself
    assert synth.steals == 1 and synth.active_voices == 4
    missing = full - stolen                # what stealing removed: the oldest voice's tail
    fade = round(synth.config.steal_fade_s * SR) + 1
    assert np.abs(missing[:at]).max() < 1e-6
    assert np.allclose(missing[at + fade:], alone[at + fade:], atol=1e-6)  # gone after the fade
    # it fades: no step larger than the voice's own slope plus its level spread over the fade
    own = np.abs(np.diff(alone[at - SR // 20:at])).max()
    assert np.abs(np.diff(missing[at - 1:at + fade + 1])).max() <= own + 1.5 * np.abs(alone).max() / fade
    assert np.abs(alone[at - 20:at]).max() > 10 * own   # a hard cut there would jump this far


def test_all_notes_off_leaves_nothing_sounding():
    synth = Synth()
    for ch, prog in enumerate((0, 24, 16, 48, 33)):
        synth.program(ch, prog)
        synth.note_on(ch, 60, 100)
    synth.note_on(9, 36, 100)
    synth.control_change(0, 64, 127)   # sustain pedal down: note-offs would be held
    synth.render(SR // 10)
    synth.note_off(0, 60)
    synth.all_notes_off()
    tail = synth.render(SR)
    assert synth.active_voices == 0
    assert not tail[-SR // 2:].any()


@pytest.mark.parametrize("call, field, allowed", [
    (lambda s: s.note_on(16, 60, 100), "channel", "0..15"),
    (lambda s: s.note_on(0, 128, 100), "pitch", "0..127"),
    (lambda s: s.note_on(0, 60, -1), "velocity", "0..127"),
    (lambda s: s.note_off(0, 60, frame_offset=-5), "frame_offset", "0..2147483647"),
    (lambda s: s.program(0, 200), "program", "0..127"),
    (lambda s: s.control_change(0, 7, 300), "value", "0..127"),
    (lambda s: s.render(np.zeros((4, 2), np.float64).shape[0], np.zeros((4, 2))), "out", None),
    (lambda s: Synth(SynthConfig(sample_rate=1000)), "sample_rate", "8000..192000"),
    (lambda s: Synth(SynthConfig(polyphony=0)), "polyphony", "1..256"),
])
def test_bad_input_names_the_field(call, field, allowed):
    with pytest.raises(InvalidMessage) as err:
        call(Synth())
    assert err.value.field == field and field in str(err.value)
    if allowed:
        assert err.value.allowed == allowed


def test_unreadable_midi_is_invalid_midi(tmp_path):
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"RIFF not a midi file")
    with pytest.raises(InvalidMidi, match="bad.mid"):
        render_midi(bad)
    with pytest.raises(InvalidMidi):
        render_midi(tmp_path / "missing.mid")


def test_write_wav_round_trip(tmp_path):
    t = np.arange(SR // 10) / SR
    audio = np.stack([0.5 * np.sin(2 * np.pi * 440 * t), -0.25 * np.ones_like(t)], axis=1)
    write_wav(tmp_path / "a.wav", audio, SR)
    with wave.open(str(tmp_path / "a.wav")) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (2, 2, SR, len(t))
        pcm = np.frombuffer(w.readframes(len(t)), "<i2").reshape(-1, 2)
    assert np.abs(pcm / 32767.0 - audio).max() <= 0.5 / 32767 + 1e-12
    with pytest.raises(InvalidMessage, match="audio"):
        write_wav(tmp_path / "b.wav", np.zeros((4, 2, 2)), SR)


def test_render_command_end_to_end(tmp_path):
    mid = write_song(tmp_path / "song.mid")
    out = tmp_path / "song.wav"
    res = subprocess.run([sys.executable, "-m", "realtime.cli", "render", str(mid), "-o", str(out),
                          "--rate", "22050"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    _, end = midi_events(mid, 22050)
    with wave.open(str(out)) as w:
        assert w.getframerate() == 22050 and w.getnchannels() == 2 and w.getsampwidth() == 2
        assert w.getnframes() == end + 22050   # the file plus the default 1 s tail
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    assert np.abs(pcm).max() > 1000


def test_render_command_rejects_bad_rate(tmp_path, capsys):
    mid = write_song(tmp_path / "song.mid", NOTES[:1])
    assert cli_main(["render", str(mid), "-o", str(tmp_path / "x.wav"), "--rate", "1000"]) == 1
    err = capsys.readouterr().err
    assert "rate" in err and "8000..192000" in err
    assert not (tmp_path / "x.wav").exists()


@pytest.mark.skipif(not (shutil.which("fluidsynth") and default_soundfont()),
                    reason="needs the fluidsynth program and a General MIDI SoundFont")
def test_render_command_with_fluidsynth(tmp_path):
    mid = write_song(tmp_path / "song.mid")
    out = tmp_path / "fs.wav"
    assert cli_main(["render", str(mid), "-o", str(out), "--soundfont", default_soundfont()]) == 0
    with wave.open(str(out)) as w:
        assert w.getframerate() == SR and w.getnchannels() == 2
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2)
    _, end = midi_events(mid, SR)
    assert len(pcm) >= end
    first = np.flatnonzero(np.abs(pcm[:, 0]) > 30)[0]   # the first note starts at frame 0
    assert first < SR // 50
