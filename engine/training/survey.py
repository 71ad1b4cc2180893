"""The ensemble sources surveyed track by track: counts per source, and the random
sample of tracks on which the role assignment is checked by hand.

``counts`` reads every piece of the sources (in at most two worker processes, under
``corpus``'s time and length caps) and reports per source: pieces read and skipped,
tracks (and those left out: unpitched effects), notes per voice as the dataset gets
them (each voice normalised), and the notes of the tracks as read (drum notes among
them).  ``sample`` draws, with a fixed
seed, pieces at random from each source and one track at random from each piece, and
prints them as the table of ``engine/models/ensemble-roles.md`` (the judgement column
is filled in by hand)::

    .venv/bin/python -m engine.training.survey counts
    .venv/bin/python -m engine.training.survey sample --per-source 10 --seed 27
"""
import argparse
import multiprocessing
import sys
from collections import Counter
from dataclasses import dataclass

import numpy as np

from engine.ensemble import DRUMS, VOICES
from engine.errors import InvalidMidi
from engine.training import corpus, multipart

DEFAULT_SOURCES = tuple(multipart.SOURCES)
LEFT_OUT = "left out"  # the role column of a track that gets no voice (an effect)

#: General MIDI 1 program names, by 0-based program (for the per-track report).
GM_PROGRAMS = (
    "Acoustic Grand Piano", "Bright Acoustic Piano", "Electric Grand Piano", "Honky-tonk Piano",
    "Electric Piano 1", "Electric Piano 2", "Harpsichord", "Clavinet",
    "Celesta", "Glockenspiel", "Music Box", "Vibraphone", "Marimba", "Xylophone",
    "Tubular Bells", "Dulcimer",
    "Drawbar Organ", "Percussive Organ", "Rock Organ", "Church Organ", "Reed Organ",
    "Accordion", "Harmonica", "Tango Accordion",
    "Acoustic Guitar (nylon)", "Acoustic Guitar (steel)", "Electric Guitar (jazz)",
    "Electric Guitar (clean)", "Electric Guitar (muted)", "Overdriven Guitar",
    "Distortion Guitar", "Guitar Harmonics",
    "Acoustic Bass", "Electric Bass (finger)", "Electric Bass (pick)", "Fretless Bass",
    "Slap Bass 1", "Slap Bass 2", "Synth Bass 1", "Synth Bass 2",
    "Violin", "Viola", "Cello", "Contrabass", "Tremolo Strings", "Pizzicato Strings",
    "Orchestral Harp", "Timpani",
    "String Ensemble 1", "String Ensemble 2", "Synth Strings 1", "Synth Strings 2",
    "Choir Aahs", "Voice Oohs", "Synth Voice", "Orchestra Hit",
    "Trumpet", "Trombone", "Tuba", "Muted Trumpet", "French Horn", "Brass Section",
    "Synth Brass 1", "Synth Brass 2",
    "Soprano Sax", "Alto Sax", "Tenor Sax", "Baritone Sax", "Oboe", "English Horn",
    "Bassoon", "Clarinet",
    "Piccolo", "Flute", "Recorder", "Pan Flute", "Blown Bottle", "Shakuhachi", "Whistle",
    "Ocarina",
    "Lead 1 (square)", "Lead 2 (sawtooth)", "Lead 3 (calliope)", "Lead 4 (chiff)",
    "Lead 5 (charang)", "Lead 6 (voice)", "Lead 7 (fifths)", "Lead 8 (bass + lead)",
    "Pad 1 (new age)", "Pad 2 (warm)", "Pad 3 (polysynth)", "Pad 4 (choir)",
    "Pad 5 (bowed)", "Pad 6 (metallic)", "Pad 7 (halo)", "Pad 8 (sweep)",
    "FX 1 (rain)", "FX 2 (soundtrack)", "FX 3 (crystal)", "FX 4 (atmosphere)",
    "FX 5 (brightness)", "FX 6 (goblins)", "FX 7 (echoes)", "FX 8 (sci-fi)",
    "Sitar", "Banjo", "Shamisen", "Koto", "Kalimba", "Bagpipe", "Fiddle", "Shanai",
    "Tinkle Bell", "Agogo", "Steel Drums", "Woodblock", "Taiko Drum", "Melodic Tom",
    "Synth Drum", "Reverse Cymbal",
    "Guitar Fret Noise", "Breath Noise", "Seashore", "Bird Tweet", "Telephone Ring",
    "Helicopter", "Applause", "Gunshot",
)


@dataclass(frozen=True)
class TrackRow:
    """One non-empty track of a piece as read and assigned: what the hand check looks at."""

    piece_id: str
    index: int
    name: str
    program: int
    channel: int
    is_drum: bool
    role: str
    notes: int
    mean_pitch: float
    low: int
    high: int
    activity: float

    @property
    def instrument(self):
        """The GM program's name (drum kit for drum tracks, '-' where unknown)."""
        if self.is_drum:
            return "drum kit"
        return GM_PROGRAMS[self.program] if 0 <= self.program < 128 else "-"


def describe_task(task, config=corpus.ReadConfig()):
    """(rows, notes per voice, None) for one ensemble task, or (None, None, reason)
    with the same skip reasons and caps as ``corpus.read_task``."""
    tpb = config.ticks_per_beat
    try:
        with corpus.time_cap(config.max_seconds):
            tracks = multipart.task_tracks(task, tpb, config.max_beats, channels=True)
            roles = multipart.assign_roles(tracks, tpb)
            notes = multipart.ensemble_notes(tracks, roles)
    except corpus.PieceTimeout:
        return None, None, f"timeout: read took over {config.max_seconds:g} s"
    except InvalidMidi as exc:
        return None, None, f"unreadable: {corpus._one_line(exc)}"
    except Exception as exc:  # a reader bug or odd input must not stop the survey
        return None, None, f"error: {type(exc).__name__}: {corpus._one_line(exc)}"
    if len(notes) == 0:
        return None, None, "no notes: nothing playable in the piece"
    beats = int(notes["end"].max()) / tpb
    if beats > config.max_beats:
        return None, None, f"too long: {beats:.0f} beats > {config.max_beats}"
    stats = multipart.track_stats(tracks, tpb)
    rows = [TrackRow(task.piece_id, k, t.name, t.program, t.channel, t.is_drum,
                     LEFT_OUT if r is None else VOICES[r],
                     len(t.notes), round(float(t.notes["pitch"].mean()), 1),
                     int(t.notes["pitch"].min()), int(t.notes["pitch"].max()),
                     round(s[1], 2))
            for k, (t, r, s) in enumerate(zip(tracks, roles, stats)) if len(t.notes)]
    per_voice = np.bincount(notes["channel"], minlength=len(VOICES))
    return rows, per_voice, None


def _describe_star(args):
    return describe_task(*args)


def describe_all(tasks, config=corpus.ReadConfig(), workers=2):
    """``describe_task`` of each task, in order, in up to two worker processes."""
    jobs = [(t, config) for t in tasks]
    if workers <= 1 or len(jobs) < 2:
        return [_describe_star(j) for j in jobs]
    # fresh workers now and then: music21 keeps growing caches
    with multiprocessing.get_context("fork").Pool(min(workers, 2), maxtasksperchild=50) as pool:
        return list(pool.imap(_describe_star, jobs, chunksize=1))


def counts(source, config=corpus.ReadConfig(), workers=2):
    """The survey of one source: pieces, skips by reason, tracks, notes per voice."""
    tasks = multipart.ensemble_tasks(source)
    results = describe_all(tasks, config, workers)
    out = {"source": source, "pieces": 0, "skipped": Counter(), "tracks": 0, "left_out": 0,
           "voices": np.zeros(len(VOICES), np.int64), "track_notes": 0, "drum_notes": 0,
           "programs": set()}
    for rows, per_voice, why in results:
        if why is not None:
            out["skipped"][why.split(":", 1)[0]] += 1
            continue
        out["pieces"] += 1
        out["tracks"] += len(rows)
        out["left_out"] += sum(r.role == LEFT_OUT for r in rows)
        out["voices"] += per_voice
        out["track_notes"] += sum(r.notes for r in rows)
        out["drum_notes"] += sum(r.notes for r in rows if r.role == VOICES[DRUMS])
        out["programs"].update(r.program for r in rows if not r.is_drum and r.program >= 0)
    return out


def sample(sources=DEFAULT_SOURCES, per_source=10, seed=27, config=corpus.ReadConfig()):
    """Tracks drawn at random: per source, ``per_source`` pieces in a seeded random
    order (a piece that cannot be read is passed over) and one track of each."""
    rng = np.random.default_rng(seed)
    drawn = []
    for source in sources:
        tasks = multipart.ensemble_tasks(source)
        order = rng.permutation(len(tasks))
        got = 0
        for i in order:
            if got == per_source:
                break
            rows, _, why = describe_task(tasks[i], config)
            if why is None and rows:
                drawn.append((source, rows[int(rng.integers(len(rows)))]))
                got += 1
    return drawn


def format_counts(surveys):
    """The per-source counts as a markdown table."""
    head = ("| source | pieces | skipped | tracks | left out | melody | bass | harmony | "
            "drums | notes (voices) | notes (tracks) | drum notes | GM programs |")
    lines = [head, "|" + "---|" * 13]
    for s in surveys:
        skipped = ", ".join(f"{k} {v}" for k, v in sorted(s["skipped"].items())) or "0"
        v = s["voices"]
        lines.append(f"| {s['source']} | {s['pieces']} | {skipped} | {s['tracks']} | "
                     f"{s['left_out']} | "
                     + " | ".join(str(int(x)) for x in v)
                     + f" | {int(v.sum())} | {s['track_notes']} | {s['drum_notes']} | "
                     f"{len(s['programs'])} |")
    return "\n".join(lines)


def format_sample(drawn):
    """The drawn tracks as the hand-check table (judgement left blank)."""
    lines = ["| # | source | piece | track | GM program / part name | notes | mean pitch "
             "(range) | active | role | judgement |", "|" + "---|" * 10]
    for k, (source, r) in enumerate(drawn, 1):
        # part names may hold line breaks ("Tenor\nViola") and, in MIDI, any byte
        name = " ".join(r.name.split()).replace("|", "/") or "(unnamed)"
        lines.append(f"| {k} | {source} | {r.piece_id} | {r.index} ({name}) | "
                     f"{r.instrument} / {name} | {r.notes} | {r.mean_pitch:.1f} "
                     f"({r.low}-{r.high}) | {r.activity:.2f} | {r.role} | |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m engine.training.survey",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("counts", "sample"))
    parser.add_argument("--sources", default=",".join(DEFAULT_SOURCES),
                        help="comma-separated ensemble sources (midi:DIR too)")
    parser.add_argument("--per-source", type=int, default=10)
    parser.add_argument("--seed", type=int, default=27)
    parser.add_argument("--workers", type=int, default=2, choices=(1, 2))
    args = parser.parse_args(argv)
    sources = [s.strip() for s in args.sources.split(",") if s.strip()]
    for s in sources:
        multipart.source_kind(s)  # an unknown name fails here, naming the sources
    if args.what == "counts":
        print(format_counts([counts(s, workers=args.workers) for s in sources]))
    else:
        print(format_sample(sample(sources, args.per_source, args.seed)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
