"""Notes in musical time, and MIDI files in and out through mido.

A piece is a numpy array of ``NOTE_DTYPE``: start and end in ticks of a beat
(``ticks_per_beat`` of the vocabulary, 12 by default), pitch, velocity, channel.
"""
import mido
import numpy as np

from .errors import InvalidMidi

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


def read_midi(path, ticks_per_beat=12, keep_drums=False):
    """Read a type 0 or 1 MIDI file into notes quantised to ``ticks_per_beat``.

    Musical time comes from the file's own pulses per quarter note, so tempo changes
    do not move notes off the beat grid.  Running status is handled by mido.
    """
    try:
        mid = mido.MidiFile(path, clip=True)
    except Exception as exc:  # mido raises several types for broken files
        raise InvalidMidi(f"{path}: {exc}") from exc
    if mid.type == 2:
        raise InvalidMidi(f"{path}: type 2 (asynchronous tracks) is not supported")
    ppq = mid.ticks_per_beat
    if not ppq or ppq <= 0:
        raise InvalidMidi(f"{path}: SMPTE time division is not supported")
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
