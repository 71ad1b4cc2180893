"""Readers that turn scores into notes: music21's bundled corpus and MIDI folders.

A *source* is one corpus collection (``oneills1850``, ``bach``, ...) or one folder of
MIDI files.  Each source becomes a list of *tasks*, one per piece (an ABC tune, a
chorale, a MIDI file), and ``read_all`` reads them in at most two worker processes.
A piece that cannot be read is skipped with a one-line reason ("category: detail"),
never a crash.

ABC goes through symusic's bundled abc2midi (fast, and it carries accidentals through
the bar as the ABC standard says); MusicXML and Humdrum go through music21.  Every
piece is read under a time cap and a length cap, against runaway repeat expansion.
"""
import contextlib
import multiprocessing
import os
import re
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

from engine.errors import InvalidMidi
from engine.notes import DRUM_CHANNEL, NOTE_DTYPE, normalise, read_midi

# collection folder -> reader kind
COLLECTIONS = {
    "oneills1850": "abc",
    "ryansMammoth": "abc",
    "airdsAirs": "abc",
    "essenFolksong": "abc",
    "bach": "music21",
    "palestrina": "music21",
}
# Essen is for non-commercial use only, Palestrina is slow to parse: both opt-in.
DEFAULT_COLLECTIONS = ("oneills1850", "ryansMammoth", "airdsAirs", "bach")
# Readers of further task kinds, kind -> f(task, config) -> notes, registered by the
# module that lists such tasks (engine.training.multipart: wad, music21-parts,
# midi-parts), so that read_task and read_all's forked workers read them too.
READERS = {}
MIDI_SUFFIXES = (".mid", ".midi", ".smf")
# Directives put before every ABC tune: no synthesised guitar-chord accompaniment,
# chord notes struck together (abc2midi staggers them by default).
ABC_DIRECTIVES = "%%MIDI gchordoff\n%%MIDI chordattack 0\n"


@dataclass(frozen=True)
class ReadConfig:
    """How pieces are read; part of every cache key."""

    ticks_per_beat: int = 12
    max_beats: int = 2000        # longer pieces are runaway repeat expansions: skipped
    max_seconds: float = 60.0    # wall-clock cap on reading one piece
    keep_drums: bool = False


@dataclass(frozen=True)
class Task:
    """One piece to read: ``kind`` is abc, music21 or midi; ``payload`` the tune text or path.

    ``group`` names the tune a piece is a version of (pieces of one group share a
    split); empty means the piece is its own group.
    """

    piece_id: str
    kind: str
    payload: str
    group: str = ""


class Piece(NamedTuple):
    """A piece read: its id, its group (see ``Task``) and its notes."""

    piece_id: str
    group: str
    notes: np.ndarray


class PieceTimeout(BaseException):
    """Reading one piece took longer than ``ReadConfig.max_seconds``.

    A BaseException, as KeyboardInterrupt is, so that the readers' own
    ``except Exception`` clauses (music21 has many) cannot swallow it.
    """


def corpus_dir():
    """The corpus folder inside the installed music21 package (nothing is downloaded)."""
    import music21  # music21 takes seconds to import: only when the corpus is read
    return Path(music21.__file__).parent / "corpus"


# -- listing sources ---------------------------------------------------------------------
def source_files(source):
    """Sorted files of a source: a collection name or ``midi:<folder>``."""
    if source.startswith("midi:"):
        root = Path(source[5:])
        if not root.is_dir():
            raise InvalidMidi(f"MIDI folder {root} does not exist")
        return sorted(p for p in root.rglob("*")
                      if p.is_file() and p.suffix.lower() in MIDI_SUFFIXES)
    kind = COLLECTIONS[source]
    root = corpus_dir() / source
    if kind == "abc":
        return sorted(root.rglob("*.abc"))
    if source == "bach":  # the chorales only: not the Roman-numeral analyses
        return sorted(p for p in root.iterdir()
                      if p.name.startswith("bwv") and p.suffix in (".mxl", ".xml", ".krn"))
    return sorted(p for p in root.rglob("*") if p.suffix in (".mxl", ".xml", ".krn", ".musicxml"))


def split_abc(text):
    """Tunes of an ABC file, each carrying the file header's fields (L:, M:, %%MIDI ...).

    The fields go right after the tune's X: line, so the tune's own fields, which
    come later, override them as the ABC standard says (abc2midi, given one tune,
    would ignore a header placed before X:).
    """
    parts = re.split(r"(?m)^(?=X:)", text)
    header = parts[0] if not parts[0].startswith("X:") else ""
    fields = "".join(line + "\n" for line in header.splitlines()
                     if re.match(r"[A-Za-z]:|%%", line) and not line.startswith("X:"))
    out = []
    for tune in (p for p in parts if p.startswith("X:")):
        first, _, rest = tune.partition("\n")
        out.append(f"{first}\n{fields}{rest}")
    return out


def tune_group(tune):
    """Normalised first title of an ABC tune ("Kerry Cobbler, The" = "The Kerry Cobbler").

    O'Neill's collection holds several transcriptions of some tunes, and tunes recur
    across collections; grouping by title keeps them out of each other's splits.
    """
    m = re.search(r"(?m)^T:(.*)$", tune)
    if not m:
        return ""
    title = m.group(1).split(" -- ")[0]  # Ryan's "Acacia -- Reel"
    words = [w for w in re.findall(r"[a-z0-9]+", title.lower()) if w not in ("the", "a")]
    return "title:" + " ".join(words) if words else ""


# ABC modes (K: field) to the model's two: the Ionian family major, the Aeolian family minor
_ABC_MODES = {"": 0, "maj": 0, "major": 0, "ion": 0, "ionian": 0, "lyd": 0, "lydian": 0,
              "mix": 0, "mixolydian": 0, "m": 1, "min": 1, "minor": 1, "aeo": 1, "aeolian": 1,
              "dor": 1, "dorian": 1, "phr": 1, "phrygian": 1, "loc": 1, "locrian": 1}


def abc_key(tune):
    """(tonic pitch class, mode 0 major / 1 minor) from an ABC tune's K: field, or None.

    The key is the last K: of the tune header (the fields before the first music
    line; the file header's fields come first, the tune's own override them).
    Dorian, Phrygian and Locrian count as minor, Lydian and Mixolydian as major;
    K:none, highland-pipe keys (K:HP) and unreadable fields give None.
    """
    key = None
    for line in tune.splitlines():
        line = line.split("%", 1)[0].strip()
        if not line:
            continue
        if not re.match(r"[A-Za-z]:", line):
            break  # the first music line ends the header
        if line.startswith("K:"):
            key = line[2:].strip()
    if not key:
        return None
    m = re.match(r"([A-Ga-g])([#b]?)\s*([A-Za-z]*)", key)
    if not m or key[:2].lower() == "hp":
        return None
    mode = m.group(3).lower()
    if mode not in _ABC_MODES:
        mode = mode[:3]
        if mode not in _ABC_MODES:
            return None
    pc = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}[m.group(1).lower()]
    pc += {"#": 1, "b": -1, "": 0}[m.group(2)]
    return pc % 12, _ABC_MODES[mode]


def annotated_keys(source, files=None):
    """{piece id: (tonic, mode)} for the pieces of a source whose text names their key
    (ABC collections); other sources are measured instead (``engine.training.data``)."""
    if source.startswith("midi:") or COLLECTIONS.get(source) != "abc":
        return {}
    out = {}
    for task in source_tasks(source, files):
        key = abc_key(task.payload)
        if key is not None:
            out[task.piece_id] = key
    return out


def source_tasks(source, files=None):
    """Tasks of a source, in a stable order; ids are collection/file[/tune] or a relative path."""
    files = source_files(source) if files is None else files
    if source.startswith("midi:"):
        root = Path(source[5:])
        return [Task(p.relative_to(root).as_posix(), "midi", str(p)) for p in files]
    kind = COLLECTIONS[source]
    root = corpus_dir() / source
    tasks = []
    for p in files:
        rel = f"{source}/{p.relative_to(root).as_posix()}"
        if kind == "abc":
            raw = p.read_bytes()
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = raw.decode("latin-1")
            tasks += [Task(f"{rel}/{i}", "abc", t, tune_group(t))
                      for i, t in enumerate(split_abc(text))]
        else:
            # bwv248.64-6.mxl, bwv248.64-s.mxl: versions of one chorale; bwv277 as .krn and .mxl
            group = f"{source}:{p.stem.split('-')[0]}" if source == "bach" else ""
            tasks.append(Task(rel, "music21", str(p), group))
    return tasks


# -- readers -----------------------------------------------------------------------------
@contextlib.contextmanager
def quiet_stdout():
    """Point file descriptor 1 at /dev/null: abc2midi prints thousands of warnings there."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def track_notes(track, tpq, ticks_per_beat=12):
    """A symusic track's notes (``tpq`` ticks a quarter) in ticks of a beat, channel 0."""
    arr = track.notes.numpy()
    notes = np.zeros(len(arr["time"]), NOTE_DTYPE)
    start = arr["time"].astype(np.int64)
    notes["start"] = np.rint(start * ticks_per_beat / tpq)
    notes["end"] = np.rint((start + arr["duration"]) * ticks_per_beat / tpq)
    notes["pitch"] = arr["pitch"]
    notes["velocity"] = arr["velocity"]
    return notes


def score_notes(score, ticks_per_beat=12, keep_drums=False):
    """A symusic Score (any tick resolution) -> notes in ticks of a beat (a quarter note)."""
    tpq = score.ticks_per_quarter
    rows = []
    for track in score.tracks:
        if track.is_drum and not keep_drums:
            continue
        part = track_notes(track, tpq, ticks_per_beat)
        if not len(part):
            continue
        part["channel"] = DRUM_CHANNEL if track.is_drum else 0
        rows.append(part)
    return normalise(np.concatenate(rows)) if rows else np.zeros(0, NOTE_DTYPE)


def read_abc(text, ticks_per_beat=12, keep_drums=False):
    """One ABC tune -> notes, through symusic's abc2midi with its stdout silenced."""
    import symusic  # only ABC tunes need it
    m = re.search(r"(?m)^X:.*$", text)
    if not m:
        raise InvalidMidi("ABC tune has no X: line")
    # directives go right after the X: line so they belong to the tune
    rest = re.sub(r"(?m)^%%MIDI\s+gchordon.*$", "", text[m.end():])
    with quiet_stdout():
        try:
            score = symusic.Score.from_abc(f"{text[:m.end()]}\n{ABC_DIRECTIVES}{rest.lstrip(chr(10))}")
        except RuntimeError as exc:
            raise InvalidMidi(f"abc2midi: {exc}") from exc
    return score_notes(score, ticks_per_beat, keep_drums)


def read_music21(path, ticks_per_beat=12):
    """A MusicXML or Humdrum file -> notes through music21, repeats expanded where well formed.

    Chords give one note per pitch; tied notes are merged by ``stripTies``; grace
    notes (no duration) are left out.
    """
    from music21 import converter  # music21 takes seconds to import: only for these files
    try:
        score = converter.parse(path, forceSource=True)
    except Exception as exc:  # music21 raises many types for bad files
        raise InvalidMidi(f"music21 cannot parse: {type(exc).__name__}: {exc}") from exc
    try:
        score = score.expandRepeats()
    except Exception:  # badly formed repeats: read the music as written
        pass
    score = score.stripTies(inPlace=False)
    return normalise(np.array(stream_rows(score, ticks_per_beat), NOTE_DTYPE))


def stream_rows(stream, ticks_per_beat=12):
    """(start, end, pitch, velocity, 0) rows in ticks of every note and chord of a music21
    stream (a score, or one part), ties already stripped."""
    rows = []
    for el in stream.flatten().notes:
        ql = float(el.quarterLength)
        if ql <= 0:
            continue
        start = float(el.offset) * ticks_per_beat
        vel = el.volume.velocity if el.volume.velocity is not None else 80
        for p in getattr(el, "pitches", ()):
            rows.append((round(start), round(start + ql * ticks_per_beat), p.midi, vel, 0))
    return rows


def _on_alarm(signum, frame):
    raise PieceTimeout()


@contextlib.contextmanager
def time_cap(seconds):
    """Raise ``PieceTimeout`` in the main thread after ``seconds`` (no cap elsewhere)."""
    if threading.current_thread() is not threading.main_thread() or seconds <= 0:
        yield
        return
    old = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def read_task(task, config=ReadConfig()):
    """Read one piece: (notes, None), or (None, "category: detail") when it cannot be used."""
    tpb = config.ticks_per_beat
    try:
        with time_cap(config.max_seconds):
            if task.kind == "abc":
                notes = read_abc(task.payload, tpb, config.keep_drums)
            elif task.kind == "music21":
                notes = read_music21(task.payload, tpb)
            elif task.kind == "midi":
                notes = read_midi(task.payload, tpb, config.keep_drums)
            elif task.kind in READERS:
                notes = READERS[task.kind](task, config)
            else:
                raise ValueError(f"unknown task kind {task.kind!r}")
    except PieceTimeout:
        return None, f"timeout: read took over {config.max_seconds:g} s"
    except InvalidMidi as exc:
        return None, f"unreadable: {_one_line(exc)}"
    except Exception as exc:  # a reader bug or odd input must not stop the build
        return None, f"error: {type(exc).__name__}: {_one_line(exc)}"
    if len(notes) == 0:
        return None, "no notes: nothing playable in the piece"
    beats = int(notes["end"].max()) / tpb
    if beats > config.max_beats:
        return None, f"too long: {beats:.0f} beats > {config.max_beats}"
    return notes, None


def _one_line(exc):
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def _read_task_star(args):
    return read_task(*args)


def read_all(tasks, config=ReadConfig(), workers=2, progress=True, desc="reading"):
    """Read tasks in order with up to ``workers`` processes (the machine has 2 cores).

    Returns (pieces, skipped): lists of ``Piece`` and of (piece_id, reason).
    """
    jobs = [(t, config) for t in tasks]
    bar = tqdm(total=len(jobs), desc=desc, unit="piece", disable=not progress,
               file=sys.stderr, leave=False)
    results = []
    with bar:
        if workers <= 1 or len(jobs) < 2:
            for job in jobs:
                results.append(_read_task_star(job))
                bar.update()
        else:
            # fresh workers now and then: music21 keeps growing caches
            with multiprocessing.get_context("fork").Pool(
                    min(workers, 2), maxtasksperchild=500) as pool:
                for r in pool.imap(_read_task_star, jobs, chunksize=4):
                    results.append(r)
                    bar.update()
    pieces = [Piece(t.piece_id, t.group, notes)
              for t, (notes, why) in zip(tasks, results) if why is None]
    skipped = [(t.piece_id, why) for t, (notes, why) in zip(tasks, results) if why is not None]
    return pieces, skipped
