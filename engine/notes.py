"""Notes in musical time, and MIDI files in and out through mido.

A piece is a numpy array of ``NOTE_DTYPE``: start and end in ticks of a beat
(``ticks_per_beat`` of the vocabulary, 12 by default), pitch, velocity, channel.
"""
import os

import mido
import numpy as np

from engine.errors import InvalidMidi

NOTE_DTYPE = np.dtype([("start", np.int64), ("end", np.int64), ("pitch", np.int16),
                       ("velocity", np.int16), ("channel", np.int16)])
DRUM_CHANNEL = 9


def make_notes(rows):
    """Notes from (start, end, pitch[, velocity[, channel]]) tuples; a test helper too."""
    full = [tuple(r) + (80, 0)[len(r) - 3:] for r in rows]
    return np.array(full, dtype=NOTE_DTYPE)


def normalise(notes):
    """Sorted, at least one tick long, no two notes of one pitch overlapping.

    Overlaps on one pitch cannot be told apart in MIDI (or in the token stream),
    so the earlier note is cut where the later one starts.
    """
    notes = np.array(notes, dtype=NOTE_DTYPE, copy=True)
    if len(notes) == 0:
        return notes
    notes = notes[np.lexsort((notes["start"], notes["pitch"]))]
    same = notes["pitch"][1:] == notes["pitch"][:-1]
    nxt = notes["start"][1:]
    cut = same & (notes["end"][:-1] > nxt)
    notes["end"][:-1][cut] = nxt[cut]
    notes["end"] = np.maximum(notes["end"], notes["start"] + 1)
    # a note cut to zero by a later onset at the same tick is a duplicate: drop it
    keep = np.ones(len(notes), bool)
    keep[:-1] = ~(same & (notes["start"][:-1] == nxt))
    notes = notes[keep]
    return notes[np.lexsort((notes["pitch"], notes["start"]))]


# What mido raises for a file it cannot parse: OSError for a bad header or status byte,
# EOFError (with no text) for a file cut short, ValueError/KeyError/IndexError for bad
# message bytes (found by corrupting real files at random).
_MIDO_ERRORS = (OSError, EOFError, ValueError, KeyError, IndexError)


def open_midi(source, clip=False):
    """A type 0 or 1 MIDI file (a path, or a ``mido.MidiFile`` to check) as a
    ``mido.MidiFile``; InvalidMidi naming the file and what is wrong (missing, a
    directory, empty, not MIDI, cut short, type 2, SMPTE time).

    ``clip`` clamps data bytes above 127 instead of rejecting the file (corpus files
    from the wild have them)."""
    if isinstance(source, mido.MidiFile):
        return _playable(source, source.filename or "MIDI data")
    name = os.fspath(source)
    try:
        mid = mido.MidiFile(name, clip=clip)
    except OSError as exc:
        if exc.strerror:  # the file system's error: missing, a directory, no permission
            raise InvalidMidi(f"{name}: cannot read the MIDI file: {exc.strerror}") from None
        raise InvalidMidi(f"{name}: not a MIDI file or corrupt ({exc})") from None
    except EOFError:
        empty = os.path.getsize(name) == 0
        raise InvalidMidi(f"{name}: " + ("the file is empty, not MIDI" if empty else
                                         "the MIDI file is cut short (truncated)")) from None
    except _MIDO_ERRORS as exc:
        raise InvalidMidi(f"{name}: corrupt MIDI data ({type(exc).__name__}: {exc})") from None
    return _playable(mid, name)


def _playable(mid, name):
    if mid.type == 2:
        raise InvalidMidi(f"{name}: MIDI type 2 (independent sequences) is not supported; "
                          "use type 0 or 1")
    if not mid.ticks_per_beat or mid.ticks_per_beat <= 0:
        raise InvalidMidi(f"{name}: SMPTE time division is not supported (ticks per beat "
                          f"{mid.ticks_per_beat}); use pulses per quarter note")
    return mid


def read_midi(path, ticks_per_beat=12, keep_drums=False):
    """Read a type 0 or 1 MIDI file into notes quantised to ``ticks_per_beat``.

    Musical time comes from the file's own pulses per quarter note, so tempo changes
    do not move notes off the beat grid.  Running status is handled by mido.
    """
    mid = open_midi(path, clip=True)
    ppq = mid.ticks_per_beat
    rows = []
    for track in mid.tracks:
        now = 0
        sounding = {}
        for msg in track:
            now += msg.time
            if msg.type not in ("note_on", "note_off"):
                continue
            if msg.channel == DRUM_CHANNEL and not keep_drums:
                continue
            key = (msg.channel, msg.note)
            if msg.type == "note_on" and msg.velocity > 0:
                if key in sounding:
                    s, v = sounding.pop(key)
                    rows.append((s, now, msg.note, v, msg.channel))
                sounding[key] = (now, msg.velocity)
            elif key in sounding:
                s, v = sounding.pop(key)
                rows.append((s, now, msg.note, v, msg.channel))
        for (ch, p), (s, v) in sounding.items():
            rows.append((s, now, p, v, ch))
    notes = np.array(rows, dtype=NOTE_DTYPE)
    if len(notes):
        notes["start"] = np.rint(notes["start"] * ticks_per_beat / ppq)
        notes["end"] = np.rint(notes["end"] * ticks_per_beat / ppq)
    return normalise(notes)


def write_midi(notes, path, ticks_per_beat=12, bpm=120.0, program=0, ppq=480):
    """Write notes to a type 1 MIDI file with one track per channel used."""
    notes = np.asarray(notes, dtype=NOTE_DTYPE)
    scale = ppq // ticks_per_beat if ppq % ticks_per_beat == 0 else ppq / ticks_per_beat
    mid = mido.MidiFile(type=1, ticks_per_beat=ppq)
    meta = mido.MidiTrack()
    meta.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=0))
    meta.append(mido.MetaMessage("time_signature", numerator=4, denominator=4, time=0))
    mid.tracks.append(meta)
    for ch in sorted(set(notes["channel"].tolist())) or [0]:
        sel = notes[notes["channel"] == ch]
        track = mido.MidiTrack()
        if ch != DRUM_CHANNEL:
            track.append(mido.Message("program_change", channel=int(ch), program=program, time=0))
        events = []
        for n in sel:
            events.append((int(round(n["end"] * scale)), 0, int(n["pitch"]), 0))
            events.append((int(round(n["start"] * scale)), 1, int(n["pitch"]), int(n["velocity"])))
        events.sort()
        last = 0
        for t, kind, p, v in events:
            typ = "note_on" if kind else "note_off"
            track.append(mido.Message(typ, channel=int(ch), note=p, velocity=v, time=t - last))
            last = t
        mid.tracks.append(track)
    mid.save(path)
    return mid
