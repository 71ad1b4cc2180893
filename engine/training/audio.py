"""Recordings as training data: WAV, FLAC and OGG transcribed to notes by basic-pitch.

``ostinato data --audio DIR`` reads each recording of a folder with libsndfile
(``soundfile``), mixes it to mono, resamples it to basic-pitch's 22,050 Hz and runs
Spotify's basic-pitch: its ONNX model, shipped inside the basic-pitch wheel, in an
onnxruntime session (never TensorFlow, which stays out of the install: the Makefile installs
basic-pitch with ``--no-deps``), then basic-pitch's own note creation (onset and frame
thresholds, minimum note length, the "melodia trick") turns the model's activations into
notes in seconds.

A recording has no beat grid, and the model's vocabulary counts time in ticks of a beat:
librosa's beat tracker finds the beats, and every time is mapped onto them piecewise
linearly (beat k at the k-th tracked beat, the first and last beat periods carried on
beyond the ends), so a recording with rubato keeps its notes on its own beats.  The notes
then enter the dataset exactly as a MIDI file's do (``engine.notes.NOTE_DTYPE``, channel
0), in a source named ``audio:<folder>``, so the dataset says which pieces came from audio.

A recording that cannot be used is skipped with one line "category: detail" (unreadable,
sample rate, too short, silent, no notes, too long), and the build goes on with the rest.
A folder's transcriptions are cached like a MIDI folder's notes
(``engine.training.sources``), keyed by its files and the transcription settings.
"""
import contextlib
import hashlib
import json
import logging
import struct
import sys
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

from engine.errors import OstinatoError
from engine.notes import NOTE_DTYPE, normalise
from engine.training import corpus, sources

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
BASIC_PITCH = "basic-pitch 0.4.0, ONNX model on onnxruntime"
# How basic-pitch's run_inference windows a recording: windows of AUDIO_N_SAMPLES that
# overlap by this many model frames, half of which are cut from each side of a window.
OVERLAP_FRAMES = 30
WINDOW_BATCH = 16            # windows per onnxruntime call (a minute of audio is ~30)
EVENT_DTYPE = np.dtype([("start", np.float64), ("end", np.float64), ("pitch", np.int16),
                        ("amplitude", np.float32)])


class InvalidAudio(OstinatoError, ValueError):
    """A recording cannot be transcribed; the text is "category: detail"."""


@dataclass(frozen=True)
class TranscribeConfig:
    """How recordings are checked and transcribed (basic-pitch's defaults); part of the
    cache key of an audio folder."""

    onset_threshold: float = 0.5      # basic-pitch: an onset activation above this starts a note
    frame_threshold: float = 0.3      # basic-pitch: a note lasts while its frames stay above this
    min_note_ms: float = 127.70       # basic-pitch: shorter notes are dropped
    min_seconds: float = 1.0          # shorter recordings are skipped (too short)
    silence_dbfs: float = -60.0       # a recording whose peak stays below this is silent
    min_rate: int = 8000              # sample rates (Hz) accepted from a file
    max_rate: int = 384000
    fallback_bpm: float = 120.0       # the tempo when the beat tracker finds under 2 beats


class Transcription(NamedTuple):
    """One recording transcribed: ``events`` (EVENT_DTYPE, seconds), the tracked ``beats``
    (seconds), the global tempo (60 / median beat period, bpm), the notes in ticks of a
    beat (NOTE_DTYPE) and the recording's length in seconds."""

    events: np.ndarray
    beats: np.ndarray
    bpm: float
    notes: np.ndarray
    seconds: float


# -- basic-pitch on onnxruntime ----------------------------------------------------------
@contextlib.contextmanager
def _quiet_logging():
    """basic-pitch logs a warning for each backend it does not find (TensorFlow, CoreML,
    TFLite) when imported; those absences are intended here."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def backend():
    """(onnxruntime, basic_pitch.inference, basic_pitch.note_creation, basic_pitch.constants,
    the ONNX model's path); OstinatoError saying how to install them where they are missing."""
    try:
        import onnxruntime
        with _quiet_logging():
            import basic_pitch
            from basic_pitch import constants, inference, note_creation
    except ImportError as exc:
        raise OstinatoError(
            f"audio transcription needs basic-pitch and onnxruntime ({exc}): run `make setup`, "
            "or pip install -e '.[audio]' then pip install --no-deps basic-pitch==0.4.0") from exc
    path = basic_pitch.build_icassp_2022_model_path(basic_pitch.FilenameSuffix.onnx)
    if not path.is_file():
        raise OstinatoError(f"basic-pitch's ONNX model is missing: {path}")
    return onnxruntime, inference, note_creation, constants, path


class Transcriber:
    """basic-pitch's ONNX model in one onnxruntime session (loaded once, ``threads`` CPU
    threads), and the checks and beat tracking around it."""

    def __init__(self, config=TranscribeConfig(), threads=1):
        ort, self._inference, self._notes, constants, path = backend()
        self.config = config
        self.sample_rate = constants.AUDIO_SAMPLE_RATE
        self._window = constants.AUDIO_N_SAMPLES
        self._hop = constants.FFT_HOP
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        # basic-pitch's own wrapper around our session, so the output names stay its own
        model = self._inference.Model.__new__(self._inference.Model)
        model.model_type, model.model = self._inference.Model.MODEL_TYPES.ONNX, session
        self._model = model

    # -- audio in
    def load(self, path):
        """A recording as mono float32 at basic-pitch's rate, and its length in seconds;
        InvalidAudio (unreadable, sample rate, too short, silent) where it cannot be used."""
        import soundfile
        cfg = self.config
        try:
            info = soundfile.info(str(path))
        except (soundfile.LibsndfileError, RuntimeError, OSError) as exc:
            rate = _wav_header_rate(path)
            if rate is not None and not cfg.min_rate <= rate <= cfg.max_rate:
                raise InvalidAudio(f"sample rate: the header says {rate} Hz (allowed "
                                   f"{cfg.min_rate}..{cfg.max_rate} Hz)") from None
            raise InvalidAudio(f"unreadable: not WAV, FLAC or OGG audio, or corrupt "
                               f"({_libsndfile_text(exc)})") from None
        rate = int(info.samplerate)
        if not cfg.min_rate <= rate <= cfg.max_rate:
            raise InvalidAudio(f"sample rate: {rate} Hz (allowed {cfg.min_rate}..{cfg.max_rate} Hz)")
        seconds = info.frames / rate
        if seconds < cfg.min_seconds:
            raise InvalidAudio(f"too short: {seconds:.2f} s < {cfg.min_seconds:g} s")
        try:
            data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
        except (soundfile.LibsndfileError, RuntimeError, OSError) as exc:
            raise InvalidAudio(f"unreadable: {_libsndfile_text(exc)}") from None
        audio = data.mean(axis=1)
        if not np.isfinite(audio).all():
            raise InvalidAudio("unreadable: the samples hold NaN or infinity")
        peak = float(np.abs(audio).max()) if len(audio) else 0.0
        dbfs = 20 * np.log10(peak) if peak > 0 else -np.inf
        if dbfs < cfg.silence_dbfs:
            raise InvalidAudio(f"silent: peak {dbfs:.0f} dBFS < {cfg.silence_dbfs:g} dBFS")
        if rate != self.sample_rate:
            import librosa  # soxr, as basic-pitch's own librosa.load resamples
            audio = librosa.resample(audio, orig_sr=rate, target_sr=self.sample_rate)
        return audio.astype(np.float32), len(data) / rate

    # -- the model
    def events(self, audio):
        """basic-pitch's notes of mono audio at ``sample_rate``: EVENT_DTYPE, in seconds."""
        inf, cfg = self._inference, self.config
        overlap = OVERLAP_FRAMES * self._hop
        padded = np.concatenate([np.zeros(overlap // 2, np.float32), audio])
        windows = np.stack([w for w, _ in inf.window_audio_file(padded, self._window - overlap)])
        out = {"note": [], "onset": [], "contour": []}
        for i in range(0, len(windows), WINDOW_BATCH):
            for k, v in self._model.predict(windows[i:i + WINDOW_BATCH]).items():
                out[k].append(v)
        out = {k: inf.unwrap_output(np.concatenate(v), len(audio), OVERLAP_FRAMES)
               for k, v in out.items()}
        frames = int(round(cfg.min_note_ms / 1000 * self.sample_rate / self._hop))
        _, found = self._notes.model_output_to_notes(
            out, onset_thresh=cfg.onset_threshold, frame_thresh=cfg.frame_threshold,
            min_note_len=frames, include_pitch_bends=False, melodia_trick=True)
        events = np.array([(s, e, p, a) for s, e, p, a, _ in found], EVENT_DTYPE)
        return events[np.lexsort((events["pitch"], events["start"]))]

    def beats(self, audio):
        """The tracked beat times of mono audio at ``sample_rate``, in seconds."""
        import librosa
        _, beats = librosa.beat.beat_track(y=audio, sr=self.sample_rate, units="time")
        return np.asarray(beats, np.float64)

    def transcribe(self, path, ticks_per_beat=12):
        """A ``Transcription`` of one recording; InvalidAudio where it cannot be used."""
        audio, seconds = self.load(path)
        events = self.events(audio)
        beats = self.beats(audio)
        notes, bpm = to_ticks(events, beats, ticks_per_beat, self.config.fallback_bpm)
        return Transcription(events, beats, bpm, notes, seconds)


def _libsndfile_text(exc):
    text = str(exc).strip().splitlines()
    return text[-1][:200] if text else type(exc).__name__


def _wav_header_rate(path):
    """The sample rate a RIFF/WAVE file's fmt chunk states, or None (not such a file):
    libsndfile refuses a WAV whose rate is 0 without saying why."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return None
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    at = 12
    while at + 8 <= len(head):
        cid, size = head[at:at + 4], struct.unpack("<I", head[at + 4:at + 8])[0]
        if cid == b"fmt " and at + 16 <= len(head):
            return struct.unpack("<I", head[at + 12:at + 16])[0]
        at += 8 + size + (size & 1)
    return None


# -- seconds to beats --------------------------------------------------------------------
def beat_positions(times, beats, fallback_bpm=120.0):
    """Times (seconds) as beat positions along the tracked ``beats``: beat k at beats[k],
    linear in between, the first and last periods carried on beyond the ends; at
    ``fallback_bpm`` from time 0 where fewer than two beats were found.  Returns the
    positions and the global tempo (60 / median period, bpm)."""
    times = np.asarray(times, np.float64)
    if len(beats) < 2:
        return times * fallback_bpm / 60.0, float(fallback_bpm)
    period = np.diff(beats)
    pos = np.interp(times, beats, np.arange(len(beats), dtype=np.float64))
    pos = np.where(times < beats[0], (times - beats[0]) / period[0], pos)
    pos = np.where(times > beats[-1], len(beats) - 1 + (times - beats[-1]) / period[-1], pos)
    return pos, float(60.0 / np.median(period))


def to_ticks(events, beats, ticks_per_beat=12, fallback_bpm=120.0):
    """(notes, bpm): transcribed events as NOTE_DTYPE notes in ticks of the tracked beats
    (``beat_positions``), moved by whole beats so the first starts in beat 0, velocity
    127 x amplitude, channel 0; and the global tempo."""
    notes = np.zeros(len(events), NOTE_DTYPE)
    if not len(events):
        return notes, beat_positions([], beats, fallback_bpm)[1]
    start, bpm = beat_positions(events["start"], beats, fallback_bpm)
    end, _ = beat_positions(events["end"], beats, fallback_bpm)
    shift = np.floor(start.min())  # whole beats: each note keeps its place in the beat
    notes["start"] = np.rint((start - shift) * ticks_per_beat)
    notes["end"] = np.rint((end - shift) * ticks_per_beat)
    notes["pitch"] = events["pitch"]
    notes["velocity"] = np.clip(np.rint(events["amplitude"] * 127), 1, 127)
    return normalise(notes), bpm


# -- folders -----------------------------------------------------------------------------
def audio_files(folder):
    """Sorted WAV, FLAC and OGG files under a folder (searched recursively); InvalidAudio
    naming the folder where it is missing, unreadable or holds none."""
    root = Path(folder)
    if not root.is_dir():
        raise InvalidAudio(f"missing folder: {root} is not a folder")
    try:
        files = sorted(p for p in root.rglob("*")
                       if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
    except OSError as exc:
        raise InvalidAudio(f"unreadable folder: {root}: {exc.strerror or exc}") from None
    if not files:
        raise InvalidAudio(f"empty folder: {root} holds no {', '.join(AUDIO_SUFFIXES)} files")
    return files


def transcribe_file(path, transcriber, read_config):
    """(notes, None) for one recording, or (None, "category: detail") where it is skipped
    (as ``corpus.read_task`` answers for a score)."""
    try:
        notes = transcriber.transcribe(path, read_config.ticks_per_beat).notes
    except InvalidAudio as exc:
        return None, str(exc)
    except Exception as exc:  # an odd file must not stop the build
        return None, f"error: {type(exc).__name__}: {str(exc).strip()[:200]}"
    if not len(notes):
        return None, "no notes: the transcription found none"
    beats = int(notes["end"].max()) / read_config.ticks_per_beat
    if beats > read_config.max_beats:
        return None, f"too long: {beats:.0f} beats > {read_config.max_beats}"
    return notes, None


def source_name(folder):
    return f"audio:{Path(folder).resolve()}"


def read_audio_source(source, config, transcribe=TranscribeConfig()):
    """(pieces, skipped, info) of an ``audio:<folder>`` source of a ``BuildConfig``, from
    its cache when current; a missing, unreadable or empty folder gives no pieces and
    one skip line for the folder itself."""
    folder = Path(source[len("audio:"):])
    try:
        files = audio_files(folder)
    except InvalidAudio as exc:
        print(f"{source}: {exc} (skipped)", file=sys.stderr)
        return [], [(str(folder), str(exc))], {"cached": False, "parsed": 0}
    settings = hashlib.sha1(json.dumps([BASIC_PITCH, asdict(transcribe)]).encode()).hexdigest()
    path = sources.cache_path(source, files, config, prefix=f"audio-{settings[:8]}-")
    info = {"transcriber": BASIC_PITCH, "cache": str(path)}
    if path.exists() and not config.rebuild:
        try:
            pieces, skipped = sources.load_notes(path)
            return pieces, skipped, {**info, "cached": True, "parsed": 0}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            pass  # a damaged cache is transcribed again
    if config.max_pieces:
        files = files[:config.max_pieces]
    transcriber = Transcriber(transcribe, threads=config.workers)
    pieces, skipped = [], []
    for p in tqdm(files, desc=source, unit="file", disable=not config.progress,
                  file=sys.stderr, leave=False):
        pid = p.relative_to(folder).as_posix()
        notes, why = transcribe_file(p, transcriber, config.read)
        if why is None:
            pieces.append(corpus.Piece(pid, "", notes))
        else:
            skipped.append((pid, why))
    sources.save_notes(path, pieces, skipped)
    return pieces, skipped, {**info, "cached": False, "parsed": len(files)}


def read_audio_sources(config):
    """(source, pieces, skipped, info) of each audio folder of a ``BuildConfig``."""
    for folder in config.audio_dirs:
        source = source_name(folder)
        yield (source, *read_audio_source(source, config))
