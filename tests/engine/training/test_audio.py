"""Recordings as training data (``engine.training.audio``), on real audio.

The recordings are real: a few notes written to MIDI and rendered by the fluidsynth program
with its General MIDI SoundFont, saved as WAV, FLAC and OGG by libsndfile; the bad ones are
real files too (digital silence, a third of a second, text named .flac, an empty .ogg, a
WAV whose header states 0 Hz).  basic-pitch runs on onnxruntime, as ``ostinato data
--audio`` runs it.
"""
import argparse
import importlib.util
import shutil
import sys

import numpy as np
import pytest

from engine.errors import InvalidMessage, OstinatoError
from engine.evaluation.transcription import TranscriptionEvalConfig, render
from engine.notes import make_notes, write_midi
from engine.training import audio, data
from engine.training.audio import (InvalidAudio, Transcriber, audio_files, beat_positions,
                                   read_audio_source, source_name, to_ticks)

pytestmark = pytest.mark.skipif(not shutil.which("fluidsynth"),
                                reason="needs the fluidsynth program")
sf = pytest.importorskip("soundfile")

# up and down C major, a note each quarter second at 120 bpm (6 ticks of 12 a beat)
PITCHES = [60, 64, 67, 72, 76, 79, 84, 79, 76, 72, 67, 64, 60, 62, 65, 69, 72, 77]
BPM = 120


def arpeggio():
    return make_notes([(6 * i, 6 * i + 5, p, 90) for i, p in enumerate(PITCHES)])


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """The arpeggio rendered by fluidsynth: the WAV's path."""
    tmp = tmp_path_factory.mktemp("rec")
    write_midi(arpeggio(), tmp / "arpeggio.mid", bpm=BPM)
    render(tmp / "arpeggio.mid", tmp / "arpeggio.wav", TranscriptionEvalConfig())
    return tmp / "arpeggio.wav"


@pytest.fixture(scope="module")
def transcriber():
    return Transcriber()


def _found(events, pitch, onset):
    return bool(((events["pitch"] == pitch) & (np.abs(events["start"] - onset) <= 0.05)).any())


@pytest.mark.parametrize("fmt", ["WAV", "FLAC", "OGG"])
def test_the_notes_played_are_found(recording, transcriber, tmp_path, fmt):
    y, rate = sf.read(recording, dtype="float32")
    path = tmp_path / f"arpeggio.{fmt.lower()}"
    sf.write(path, y, rate, format=fmt)
    tr = transcriber.transcribe(path)
    onsets = 0.25 * np.arange(len(PITCHES))
    hits = [_found(tr.events, p, t) for p, t in zip(PITCHES, onsets)]
    assert sum(hits) >= len(PITCHES) - 1, (fmt, hits, tr.events)
    # the notes as the dataset takes them: NOTE_DTYPE in ticks, every written pitch there
    assert tr.notes.dtype == arpeggio().dtype
    assert set(PITCHES) <= set(tr.notes["pitch"].tolist())
    assert tr.notes["start"].min() >= 0 and (tr.notes["end"] > tr.notes["start"]).all()
    assert 0.25 * len(PITCHES) < tr.seconds < 0.25 * len(PITCHES) + 4  # + the release tail


def test_tensorflow_stays_out(recording, transcriber):
    transcriber.transcribe(recording)
    assert "tensorflow" not in sys.modules
    assert importlib.util.find_spec("tensorflow") is None


def test_beat_positions_follow_the_tracked_beats():
    beats = np.array([1.0, 1.5, 2.0, 2.6])
    pos, bpm = beat_positions([1.25, 0.75, 2.3, 2.9], beats)
    assert np.allclose(pos, [0.5, -0.5, 2.5, 3.5])
    assert bpm == pytest.approx(60 / 0.5)
    pos, bpm = beat_positions([1.0, 2.5], np.array([0.4]), fallback_bpm=90)
    assert np.allclose(pos, [1.5, 3.75]) and bpm == 90


def test_notes_move_by_whole_beats_to_start_in_beat_zero():
    events = np.array([(2.25, 2.5, 60, 0.5), (2.75, 3.0, 62, 1.0)], audio.EVENT_DTYPE)
    notes, bpm = to_ticks(events, np.arange(0.0, 10.0, 0.5), ticks_per_beat=12)
    # 2.25 s is beat 4.5: it keeps its half beat and moves to 0.5
    assert notes["start"].tolist() == [6, 18] and notes["end"].tolist() == [12, 24]
    assert notes["velocity"].tolist() == [64, 127] and bpm == pytest.approx(120)


def _bad_folder(folder, recording):
    """A folder of one good recording and every kind of bad one (each a real file)."""
    y, rate = sf.read(recording, dtype="float32")
    sub = folder / "takes"
    sub.mkdir(parents=True)
    sf.write(folder / "good.flac", y, rate, format="FLAC")
    sf.write(sub / "silent.wav", np.zeros(3 * rate, np.float32), rate)
    sf.write(sub / "short.ogg", y[:rate // 3], rate, format="OGG")
    (folder / "notes.flac").write_text("these are not samples\n" * 50)
    (folder / "empty.ogg").write_bytes(b"")
    sf.write(folder / "rate0.wav", y[:rate], rate)
    raw = bytearray((folder / "rate0.wav").read_bytes())
    raw[24:28] = (0).to_bytes(4, "little")  # the fmt chunk's sample rate
    (folder / "rate0.wav").write_bytes(bytes(raw))
    (folder / "readme.txt").write_text("not a recording: not listed")


def test_bad_recordings_are_skipped_with_their_reason(recording, tmp_path):
    folder = tmp_path / "recordings"
    _bad_folder(folder, recording)
    assert [p.name for p in audio_files(folder)] == [
        "empty.ogg", "good.flac", "notes.flac", "rate0.wav", "short.ogg", "silent.wav"]
    lines = []
    out = tmp_path / "ds.npz"
    cfg = data.BuildConfig(collections=(), audio_dirs=(str(folder),), out=str(out),
                           progress=False, workers=1)
    summary = data.build(cfg, log=lines.append)
    source = source_name(folder)
    assert summary["skipped"] == {"unreadable": 2, "sample rate": 1, "too short": 1,
                                  "silent": 1}
    why = dict(line.split(": ", 1) for line in lines)
    assert why["takes/silent.wav"].startswith("silent: peak -inf dBFS")
    assert why["takes/short.ogg"].startswith("too short: 0.33 s")
    assert why["rate0.wav"] == "sample rate: the header says 0 Hz (allowed 8000..384000 Hz)"
    assert why["notes.flac"].startswith("unreadable:")
    assert why["empty.ogg"].startswith("unreadable:")
    assert (tmp_path / "ds.npz.skipped.txt").read_text().count("\n") == 5
    # the good one went in as MIDI does, marked as coming from audio
    ds = data.Dataset.load(out)
    assert ds.ids.tolist() == ["good.flac"] and ds.sources.tolist() == [source]
    assert source.startswith("audio:")
    assert summary["sources"][source]["transcriber"] == audio.BASIC_PITCH
    assert summary["sources"][source]["cached"] is False
    assert sum(summary["sources"][source]["notes"].values()) >= len(PITCHES)
    # a second build reads the folder's cache: the same pieces, nothing transcribed
    again = data.build(cfg)
    assert again["sources"][source]["cached"] is True
    assert again["skipped"] == summary["skipped"]


def test_an_empty_folder_is_named(tmp_path, capsys):
    empty = tmp_path / "nothing"
    (empty / "deeper").mkdir(parents=True)
    (empty / "deeper" / "score.mid").write_bytes(b"MThd")
    cfg = data.BuildConfig(collections=(), audio_dirs=(str(empty),), out=str(tmp_path / "d.npz"),
                           progress=False)
    pieces, skipped, _ = read_audio_source(source_name(empty), cfg)
    assert pieces == [] and len(skipped) == 1
    assert skipped[0][1] == f"empty folder: {empty} holds no .wav, .flac, .ogg files"
    assert str(empty) in capsys.readouterr().err
    with pytest.raises(OstinatoError, match="no pieces left"):
        data.build(cfg)


def test_unusable_files_raise_one_reason(transcriber, tmp_path):
    sf.write(tmp_path / "quiet.wav", np.full(44100, 1e-4, np.float32), 44100, subtype="FLOAT")
    with pytest.raises(InvalidAudio, match=r"^silent: peak -80 dBFS < -60 dBFS$"):
        transcriber.load(tmp_path / "quiet.wav")
    sf.write(tmp_path / "slow.wav", np.ones(8000, np.float32) * 0.5, 4000)
    with pytest.raises(InvalidAudio, match=r"^sample rate: 4000 Hz \(allowed 8000\.\.384000 Hz\)$"):
        transcriber.load(tmp_path / "slow.wav")


def _args(*argv):
    parser = argparse.ArgumentParser()
    data.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_the_command_refuses_a_missing_folder_and_ensembles(tmp_path):
    with pytest.raises(InvalidMessage) as exc:
        data.run(_args("--audio", str(tmp_path / "missing"), "--collections", "none"))
    assert exc.value.field == "audio" and "missing is not a folder" in str(exc.value)
    with pytest.raises(InvalidMessage) as exc:
        data.run(_args("--audio", str(tmp_path), "--ensemble", "--collections", "none"))
    assert exc.value.field == "audio" and "ensemble" in str(exc.value)


def test_the_command_builds_from_audio(recording, tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    shutil.copy(recording, folder / "take1.wav")
    out = tmp_path / "audio.npz"
    assert data.run(_args("--audio", str(folder), "--collections", "none", "--out", str(out),
                          "--workers", "1")) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "skipped: none" in printed
    assert data.Dataset.load(out).sources.tolist() == [f"audio:{folder.resolve()}"]
