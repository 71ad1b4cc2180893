"""Multi-part music read track by track, each track given a voice of the ensemble.

An *ensemble source* is a collection of multi-part pieces that can be had on this
machine: the Freedoom soundtracks (MIDI lumps inside two WADs, ``engine.training.wad``),
three groups of music21's bundled multi-part works, or a folder of MIDI files
(``midi:<folder>``).  ``ensemble_tasks`` lists a source as ``corpus.Task`` objects of
the kinds ``wad``, ``music21-parts`` and ``midi-parts``; this module registers
``read_notes`` for them in ``corpus.READERS``, so ``corpus.read_task`` and
``corpus.read_all`` (its forked worker pool) read them under their time and length
caps, with their skip reasons.  A piece comes back as ONE
notes array whose ``channel`` field holds the voice id (``engine.ensemble``), each voice
normalised on its own, so that two voices on one pitch both survive.

Roles (``assign_roles``), from the tracks of one piece:

* drums: every track on the drum channel (MIDI channel 10), whatever its pitches;
* bass: the lowest line (median pitch) among the pitched tracks that play through the
  piece (``RoleConfig.min_activity``) and sit below ``RoleConfig.bass_ceiling``;
  GM Bass-family programs first, where any qualifies;
* melody: the top line among the other pitched tracks that play through the piece,
  single lines (``max_polyphony``) before chordal ones and other instruments before
  synth pads: a pad or a strummed guitar above the tune is harmony, not melody;
* harmony: every other pitched track.

Tracks of unpitched GM programs on a pitched channel (``EFFECT_PROGRAMS``: taiko,
reverse cymbal, gunshot) get no voice and are left out.  A lone pitched track
is the melody; with two, the lower is the bass (when below the ceiling).  A track is
never split: a piano track holding both hands is ranked as one line by its median
pitch (alone it is the melody).  Empty tracks get no role.  A track that is mostly
rests can be neither bass nor melody unless no track plays through the piece.

Reading the MIDI is symusic's (about a hundred times faster than mido); the MIDI
channel of each symusic track, which symusic does not keep, comes from a scan of the
file's bytes (``midi_channels``), only for the per-track report.  music21 pieces are
read part by part the way ``corpus.read_music21`` reads a whole score: repeats
expanded where well formed and not runaway (otherwise the music as written), ties
merged, grace notes left out.  The music21 route writes no MIDI in between, so the
MIDI exporter's pitfalls (a TimeSignature shared between parts) do not arise.
"""
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.ensemble import BASS, DRUMS, HARMONY, MELODY, VOICES
from engine.errors import InvalidMidi
from engine.notes import DRUM_CHANNEL, NOTE_DTYPE, normalise
from engine.training import corpus, wad

#: Ensemble source name -> task kind.  ``midi:<folder>`` is a source too (kind midi-parts).
SOURCES = {
    "freedoom": "wad",
    "bach-parts": "music21-parts",
    "quartets": "music21-parts",
    "monteverdi": "music21-parts",
}
KINDS = ("wad", "music21-parts", "midi-parts")

#: The licence of each source, as the model card must name it.
LICENCES = {
    "freedoom": "Freedoom 0.12 (Debian package freedoom): BSD-style 3-clause licence "
                "(/usr/share/doc/freedoom/copyright)",
    "bach-parts": "music21 corpus, J. S. Bach chorales and cantata movements: public-domain "
                  "music, encodings distributed with music21 (corpus/license.txt: mixed, "
                  "per-file notices)",
    "quartets": "music21 corpus, string quartets by Haydn, Mozart and Beethoven: "
                "public-domain music, encodings distributed with music21 (corpus/license.txt: "
                "mixed, per-file notices)",
    "monteverdi": "music21 corpus, Monteverdi madrigals books 3-5: public-domain music, "
                  "encodings distributed with music21 (corpus/license.txt: mixed, per-file "
                  "notices)",
    "midi:": "a folder of the user's own MIDI files: the user's licence",
}
# The music21 corpus folders behind each music21 source.  Palestrina is left out on
# purpose: its encodings carry a restrictive copyright notice.
MUSIC21_FOLDERS = {
    "bach-parts": ("bach",),
    "quartets": ("haydn", "mozart", "beethoven"),
    "monteverdi": ("monteverdi",),
}
MUSIC21_SUFFIXES = (".mxl", ".musicxml", ".xml", ".krn")  # preferred first among twins
#: GM programs of unpitched sounds on a pitched channel: the Percussive family but the
#: pitched Tinkle Bell (112) and Steel Drums (114), and the Sound Effects family (taiko,
#: reverse cymbal, gunshot at pitch 122, ...).  They fit no voice (their pitches are
#: neither notes nor General MIDI drum keys): such tracks are left out of the piece.
EFFECT_PROGRAMS = frozenset([113, *range(115, 128)])
#: GM programs 32-39, the Bass family: preferred for the bass among the low lines.
BASS_PROGRAMS = range(32, 40)
#: GM programs 88-103, Synth Pad and Synth Effects: a melody only where nothing else is.
PAD_PROGRAMS = range(88, 104)


@dataclass(frozen=True)
class RoleConfig:
    """How roles are given.  ``span_beats``: the window in which a track counts as
    playing (it starts a note there); ``min_activity``: the share of windows a bass or
    melody must play in;
    ``bass_ceiling``: a line whose median pitch is at or above it (middle C) is no
    bass; ``max_polyphony``: notes per onset above which a track is chordal."""

    span_beats: int = 4
    min_activity: float = 0.25
    bass_ceiling: float = 60.0
    max_polyphony: float = 1.5


@dataclass
class Track:
    """One track (MIDI) or part (music21): its notes in ticks of a beat (channel 0).

    ``program`` is the 0-based GM program, -1 where unknown; ``channel`` the 0-based
    MIDI channel, -1 where unknown (music21 parts have none)."""

    name: str
    program: int
    channel: int
    is_drum: bool
    notes: np.ndarray = field(repr=False)


# -- listing sources ---------------------------------------------------------------------
def source_kind(source):
    """The task kind of an ensemble source name; InvalidMidi naming the sources otherwise."""
    if source.startswith("midi:"):
        return "midi-parts"
    if source not in SOURCES:
        raise InvalidMidi(f"ensemble source {source!r} is not one of "
                          f"{', '.join(SOURCES)} or midi:<folder>")
    return SOURCES[source]


def ensemble_files(source):
    """Sorted files a source reads (for cache keys): WADs, score files or MIDI files.

    Freedoom is looked for where Debian installs it; InvalidMidi when it is missing
    (``make setup`` installs the package)."""
    kind = source_kind(source)
    if kind == "midi-parts":
        return corpus.source_files(source)
    if kind == "wad":
        wads = wad.freedoom_wads()
        if not wads:
            raise InvalidMidi(f"Freedoom is not installed: no {' or '.join(wad.FREEDOOM_WADS)} "
                              f"in {wad.FREEDOOM_DIR} (`make setup` installs the Debian "
                              "package freedoom)")
        return [Path(w) for w in wads]
    root = corpus.corpus_dir()
    return [root / rel for rel in _music21_pieces(MUSIC21_FOLDERS[source])]


def _music21_pieces(folders):
    """Corpus-relative paths of the multi-part works in music21 folders (metadata
    ``numberOfParts`` >= 2; for a quartet folder, exactly 4: Mozart's K. 545 piano
    sonata lies beside his quartets).  Of two encodings of one piece (``x.krn`` and
    ``x.mxl``, ``x_old.mxl`` and ``x.mxl``) only the first suffix of
    ``MUSIC21_SUFFIXES`` is kept, the newer for ``_old``."""
    from music21 import corpus as m21corpus  # seconds to import: only when listing
    quartets = folders == MUSIC21_FOLDERS["quartets"]
    found = {}
    bundle = m21corpus.corpora.CoreCorpus().metadataBundle
    # The bundle has no __iter__: iterating it calls __getitem__, which lists every
    # entry each time (15 000 entries: 10 s).  Its entry dict is read once instead.
    for entry in list(getattr(bundle, "_metadataEntries", {}).values()) or bundle:
        rel = Path(str(entry.sourcePath))
        if rel.parts[0] not in folders or rel.suffix not in MUSIC21_SUFFIXES:
            continue
        md = entry.metadata  # unpickled on first use: only for the folders asked for
        if md is None:
            continue
        parts = md.numberOfParts or 0
        if parts < 2 or (quartets and parts != 4):
            continue
        if rel.parts[0] == "bach" and not rel.name.startswith("bwv"):
            continue
        found[rel.as_posix()] = rel
    keep = []
    for key, rel in found.items():
        base = key[:-len(rel.suffix)]  # strings: Path.with_suffix would eat "bwv1.6"'s ".6"
        better = any(base + s in found
                     for s in MUSIC21_SUFFIXES[:MUSIC21_SUFFIXES.index(rel.suffix)])
        newer = base.endswith("_old") and any(base[:-4] + s in found for s in MUSIC21_SUFFIXES)
        if not better and not newer:
            keep.append(key)
    return sorted(keep)


def ensemble_tasks(source, files=None):
    """Tasks of an ensemble source, in a stable order, for ``corpus.read_all``.

    Ids: ``freedoom1.wad/D_E1M1``, corpus-relative paths (``bach/bwv1.6.mxl``) or paths
    relative to the MIDI folder.  Groups (pieces of one group share a split): Freedoom
    songs by the SHA-1 of their bytes (D_E1M5 and D_E2M6 are one song), Bach pieces by
    BWV number as ``corpus`` groups them (so a chorale's split is the same in both
    datasets), others their own.
    """
    kind = source_kind(source)
    files = ensemble_files(source) if files is None else files
    if kind == "midi-parts":
        root = Path(source[5:])
        return [corpus.Task(p.relative_to(root).as_posix(), kind, str(p)) for p in files]
    if kind == "wad":
        tasks = []
        for path in files:
            for lump in wad.music_lumps(path):
                data = wad.read_lump(path, lump.name)
                group = "freedoom:" + hashlib.sha1(data).hexdigest()[:16]
                tasks.append(corpus.Task(f"{Path(path).name}/{lump.name}", kind,
                                         f"{path}\0{lump.name}", group))
        return tasks
    root = corpus.corpus_dir()
    tasks = []
    for p in files:
        rel = Path(p).relative_to(root).as_posix()
        group = f"bach:{Path(p).stem.split('-')[0]}" if rel.startswith("bach/") else ""
        tasks.append(corpus.Task(rel, kind, str(p), group))
    return tasks


# -- reading tracks ----------------------------------------------------------------------
def midi_tracks(data, name="MIDI data", ticks_per_beat=12, channels=False):
    """The tracks of a standard MIDI file (bytes) as symusic splits it: one per MTrk
    chunk and (channel, program), notes in ticks of a beat as ``corpus.score_notes``.

    ``channels`` fills in each track's MIDI channel from a scan of the bytes; without
    it only drum tracks know theirs (9).  InvalidMidi naming ``name`` when symusic
    cannot parse the data."""
    import symusic  # only MIDI readers need it
    try:
        score = symusic.Score.from_midi(data, sanitize_data=True)
    except RuntimeError as exc:
        raise InvalidMidi(f"{name}: not a readable MIDI file ({corpus._one_line(exc)})") from None
    tpq = score.ticks_per_quarter
    if tpq <= 0:
        raise InvalidMidi(f"{name}: ticks per quarter note is {tpq}, must be positive")
    found = midi_channels(data) if channels else None
    if found is None or len(found) != len(score.tracks) or any(
            (ch == DRUM_CHANNEL) != t.is_drum for ch, t in zip(found, score.tracks)):
        found = [DRUM_CHANNEL if t.is_drum else -1 for t in score.tracks]
    tracks = []
    for t, ch in zip(score.tracks, found):
        notes = corpus.track_notes(t, tpq, ticks_per_beat)
        tracks.append(Track(t.name, int(t.program), int(ch), bool(t.is_drum), notes))
    return tracks


def _varlen(data, i):
    value = 0
    while i < len(data):
        b = data[i]
        i += 1
        value = (value << 7) | (b & 0x7F)
        if not b & 0x80:
            break
    return value, i


def midi_channels(data):
    """The MIDI channel of each track symusic makes of a MIDI file, in symusic's order:
    per MTrk chunk, one track per (channel, program) that plays a note, sorted by
    channel then program (found by trying symusic 0.6; checked against mido on all 67
    Freedoom songs).  None when the bytes do not walk cleanly (the caller then leaves
    the channels unknown)."""
    if data[:4] != b"MThd":
        return None
    pos = 8 + int.from_bytes(data[4:8], "big")
    out = []
    while pos + 8 <= len(data):
        chunk, length = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "big")
        pos += 8
        end, i = min(pos + length, len(data)), pos
        pos += length
        if chunk != b"MTrk":
            continue
        status, program, seen = 0, [0] * 16, set()
        while i < end:
            _, i = _varlen(data, i)  # delta time
            if i >= end:
                break
            b = data[i]
            if b in (0xFF, 0xF0, 0xF7):  # meta or sysex: skip, running status untouched
                i += 2 if b == 0xFF else 1
                n, i = _varlen(data, i)
                i += n
                continue
            if b & 0x80:
                status, i = b, i + 1
            if status < 0x80 or status >= 0xF0:
                return None  # a data byte with no status, or a system message mid-track
            kind, ch = status & 0xF0, status & 0x0F
            if kind in (0xC0, 0xD0):
                if kind == 0xC0 and i < end:
                    program[ch] = data[i]
                i += 1
                continue
            if kind == 0x90 and i + 1 < end and data[i + 1] > 0:
                seen.add((ch, program[ch]))
            i += 2
        out += [ch for ch, _ in sorted(seen)]
    return out


def music21_tracks(path, ticks_per_beat=12, max_beats=2000):
    """The parts of a multi-part score (MusicXML, Humdrum) as tracks, through music21.

    Repeats are expanded when well formed and when the expansion stays within
    ``max_beats`` (a runaway expansion falls back to the music as written, which the
    length cap then judges); chords give one note per pitch; ties are merged; grace
    notes are left out.  InvalidMidi when music21 cannot parse the file or it has
    fewer than two parts."""
    from music21 import converter  # music21 takes seconds to import: only for these files
    try:
        score = converter.parse(path, forceSource=True)
    except Exception as exc:  # music21 raises many types for bad files
        raise InvalidMidi(f"{path}: music21 cannot parse: {type(exc).__name__}: "
                          f"{corpus._one_line(exc)}") from None
    parts = list(getattr(score, "parts", ()))
    if len(parts) < 2:
        raise InvalidMidi(f"{path}: {len(parts)} part(s), not a multi-part piece")
    try:
        expanded = score.expandRepeats()
        if float(expanded.highestTime) > max_beats:
            expanded = score  # runaway expansion: read the music as written
    except Exception:  # badly formed repeats: read the music as written
        expanded = score
    expanded = expanded.stripTies(inPlace=False)
    tracks = []
    for k, part in enumerate(expanded.parts):
        rows = corpus.stream_rows(part, ticks_per_beat)
        inst = part.getInstrument(returnDefault=False)
        program = inst.midiProgram if inst is not None and inst.midiProgram is not None else -1
        name = part.partName or (inst.instrumentName if inst is not None else None) or \
            f"part {k + 1}"
        tracks.append(Track(str(name), int(program), -1, False, np.array(rows, NOTE_DTYPE)))
    return tracks


def task_tracks(task, ticks_per_beat=12, max_beats=2000, channels=False):
    """The tracks of one ensemble task (any of ``KINDS``)."""
    if task.kind == "wad":
        path, lump = task.payload.split("\0")
        data = wad.read_song(path, lump)
        return midi_tracks(data, f"{path}:{lump}", ticks_per_beat, channels)
    if task.kind == "midi-parts":
        try:
            data = Path(task.payload).read_bytes()
        except OSError as exc:
            raise InvalidMidi(f"{task.payload}: cannot read the MIDI file: "
                              f"{exc.strerror or exc}") from None
        return midi_tracks(data, task.payload, ticks_per_beat, channels)
    if task.kind == "music21-parts":
        return music21_tracks(task.payload, ticks_per_beat, max_beats)
    raise ValueError(f"unknown task kind {task.kind!r}")


# -- roles -------------------------------------------------------------------------------
def track_stats(tracks, ticks_per_beat=12, config=RoleConfig()):
    """Per track: (median pitch, activity, polyphony), NaN median for an empty track.

    Activity is the share of the piece's ``span_beats`` windows in which the track
    starts a note (onsets, not sounding: a pad held for eight bars or a reverse cymbal
    does not make a line); polyphony the mean number of notes per onset (1 for a
    single line)."""
    span = config.span_beats * ticks_per_beat
    ends = [int(t.notes["end"].max()) for t in tracks if len(t.notes)]
    spans = max(1, -(-max(ends, default=1) // span))
    out = []
    for t in tracks:
        n = t.notes
        if len(n) == 0:
            out.append((float("nan"), 0.0, 0.0))
            continue
        activity = len(np.unique(n["start"] // span)) / spans
        polyphony = len(n) / len(np.unique(n["start"]))
        out.append((float(np.median(n["pitch"])), activity, polyphony))
    return out


def assign_roles(tracks, ticks_per_beat=12, config=RoleConfig()):
    """The voice id of each track (``engine.ensemble``), None for a track left out
    (empty, or an unpitched effect: ``EFFECT_PROGRAMS``).

    See the module docstring for the rules.  Ties on the median pitch go to the lower
    (bass) or higher (melody) mean pitch, then to the more active track, then to the
    earlier track."""
    stats = track_stats(tracks, ticks_per_beat, config)
    roles = [None] * len(tracks)
    pitched = []
    for i, t in enumerate(tracks):
        if len(t.notes) == 0:
            continue
        if t.is_drum or t.channel == DRUM_CHANNEL:
            roles[i] = DRUMS
        elif t.program not in EFFECT_PROGRAMS:
            pitched.append(i)
    if not pitched:
        return roles
    mean = {i: float(tracks[i].notes["pitch"].mean()) for i in pitched}

    def active(i):
        return stats[i][1] >= config.min_activity

    if len(pitched) > 1:
        pool = [i for i in _narrow(pitched, active) if stats[i][0] < config.bass_ceiling]
        pool = _narrow(pool, lambda i: tracks[i].program in BASS_PROGRAMS)
        if pool:
            roles[min(pool, key=lambda i: (stats[i][0], mean[i], -stats[i][1], i))] = BASS
    pool = _narrow([i for i in pitched if roles[i] is None], active,
                   lambda i: tracks[i].program not in PAD_PROGRAMS,
                   lambda i: stats[i][2] <= config.max_polyphony)
    if pool:
        roles[max(pool, key=lambda i: (stats[i][0], mean[i], stats[i][1], -i))] = MELODY
    for i in pitched:
        if roles[i] is None:
            roles[i] = HARMONY
    return roles


def _narrow(pool, *keeps):
    """``pool`` narrowed by each test in turn; a test that would leave nothing is skipped."""
    for keep in keeps:
        pool = [i for i in pool if keep(i)] or pool
    return pool


def ensemble_notes(tracks, roles):
    """One notes array: each track's notes with ``channel`` = its voice id, each voice
    normalised on its own, sorted by start, voice, pitch; empty-role tracks dropped."""
    voices = []
    for v in range(len(VOICES)):
        parts = [t.notes for t, r in zip(tracks, roles) if r == v and len(t.notes)]
        if parts:
            notes = normalise(np.concatenate(parts))
            notes["channel"] = v
            voices.append(notes)
    if not voices:
        return np.zeros(0, NOTE_DTYPE)
    notes = np.concatenate(voices)
    return notes[np.lexsort((notes["pitch"], notes["channel"], notes["start"]))]


def read_notes(task, config=corpus.ReadConfig()):
    """One ensemble task -> its notes (channel = voice id); what ``corpus.read_task``
    calls for the kinds in ``KINDS``.  Drums are always kept (``keep_drums`` is for
    single-line MIDI folders)."""
    tracks = task_tracks(task, config.ticks_per_beat, config.max_beats)
    return ensemble_notes(tracks, assign_roles(tracks, config.ticks_per_beat))


corpus.READERS.update(dict.fromkeys(KINDS, read_notes))


def read_source(source, config=corpus.ReadConfig(), workers=2, progress=True, max_pieces=0):
    """(pieces, skipped) of an ensemble source, through ``corpus.read_all``."""
    tasks = ensemble_tasks(source)
    if max_pieces:
        tasks = tasks[:max_pieces]
    return corpus.read_all(tasks, config, workers, progress, desc=source)
