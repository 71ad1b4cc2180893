"""Grooves: folk melodies over Debian ``mma`` accompaniments, as multi-part MIDI files.

The ensemble learns its texture from about a hundred game songs and some hundreds of
classical pieces.  Game music of the looping kind is a melody over a band: a bass, a
chord instrument and drums repeating a bar or two.  ``mma`` (Musical MIDI Accompaniment,
GPL, Debian package ``mma``) renders a chord chart in any of its library's grooves to
exactly that band.  This module gives it the charts: each 4/4 folk tune of the one-line
model's *training* split (the held-out tunes stay unseen) is harmonised bar by bar with
the key's triads that best cover its notes, rendered in a groove chosen by the tune's
hash, and its melody is laid over the band as one more track.  The files are read like
any MIDI folder: ``ostinato data --ensemble --midi data/grooves``.

Synthetic on purpose: the band is as regular as ``mma``'s patterns, the harmony as plain
as a bar-by-bar fit.  The model card reports whether training on it helps the model that
plays, measured on the real held-out pieces.

``python -m engine.training.grooves --out data/grooves [--max-tunes N]``
"""

import argparse
import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import InvalidMidi

TPB = 12                      # ticks per beat of the notes read from ABC
BAR = 4 * TPB                 # 4/4 only
#: ``mma`` grooves of the library in straight 4/4 (no swing, no 12/8): rock, pop,
#: ballad, folk and dance bands, the kinds game soundtracks loop.
GROOVES = ("8Beat", "BasicRock", "FolkRock", "SoftRock", "PopBallad", "RockBallad",
           "Ballad", "Folk", "PianoBallad", "Trance", "Ska", "BubbleRock", "Twist",
           "Strut", "JazzRock", "Desert", "HillCountry")
NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
MAJOR, MINOR = (0, 2, 4, 5, 7, 9, 11), (0, 2, 3, 5, 7, 8, 10)
#: Log-prior of a chord by its root's degree in the scale: the tonic, the dominant and
#: the subdominant first, as plain harmonisations do.
DEGREE_PRIOR = (0.6, 0.1, 0.0, 0.4, 0.5, 0.2, 0.0)
MELODY_PROGRAM = 73           # General MIDI flute, on channel 1 (mma counts down from 16)



@dataclass(frozen=True)
class GrooveConfig:
    """Which tunes and how they are rendered.  ``min_bars``: shorter tunes are left out;
    ``split_bonus``: log-odds a two-chord bar must gain over one chord to be split."""

    collections: tuple = ("oneills1850", "ryansMammoth", "airdsAirs")
    max_tunes: int = 400
    min_bars: int = 8
    tempo: int = 120
    split_bonus: float = 1.0


def triads(tonic, mode):
    """(name, pitch classes, prior) of the key's consonant triads (V major in minor)."""
    scale = MAJOR if mode == 0 else MINOR
    out = []
    for deg, step in enumerate(scale):
        third = scale[(deg + 2) % 7] - step
        fifth = scale[(deg + 4) % 7] - step
        third, fifth = third % 12, fifth % 12
        if mode == 1 and deg == 4:
            third = 4                      # the harmonic minor's dominant
        if fifth != 7:
            continue                       # no diminished triads
        root = (tonic + step) % 12
        name = NAMES[root] + ("" if third == 4 else "m")
        out.append((name, {root, (root + third) % 12, (root + 7) % 12}, DEGREE_PRIOR[deg]))
    return out


def _fit(notes, lo, hi, chord):
    """How well a chord covers the melody between ticks lo and hi: each note's sounding
    length in beats, doubled on beats 1 and 3, counted for when in the chord, against."""
    score = 0.0
    for n in notes:
        a, b = max(int(n["start"]), lo), min(int(n["end"]), hi)
        if b <= a:
            continue
        w = (b - a) / TPB * (2.0 if n["start"] >= lo and n["start"] % (2 * TPB) == 0 else 1.0)
        score += w if int(n["pitch"]) % 12 in chord else -w
    return score


def harmonise(notes, bars, tonic, mode, split_bonus=1.0):
    """One ``mma`` chord line per bar: the best triad of the bar, or two (beats 1 and 3)
    where that fits the melody better by ``split_bonus``; the last bar on the tonic."""
    chords = triads(tonic, mode)
    tonic_name = chords[0][0]
    lines = []
    for bar in range(bars):
        lo = bar * BAR
        if bar == bars - 1:
            lines.append(tonic_name)
            continue
        sounding = notes[(notes["end"] > lo) & (notes["start"] < lo + BAR)]

        def best(a, b):
            return max((_fit(sounding, a, b, pcs) + prior, name) for name, pcs, prior in chords)

        whole = best(lo, lo + BAR)
        first, second = best(lo, lo + 2 * TPB), best(lo + 2 * TPB, lo + BAR)
        if first[1] != second[1] and first[0] + second[0] > whole[0] + split_bonus:
            lines.append(f"{first[1]} {second[1]}")
        else:
            lines.append(whole[1])
    return lines


def skyline(notes):
    """One line: the highest note of each onset, cut where the next onset starts (folk
    tunes write double stops, and a melody voice is a line)."""
    notes = np.sort(notes, order=["start", "pitch"])
    top = notes[np.r_[notes["start"][1:] != notes["start"][:-1], True]].copy()
    top["end"][:-1] = np.minimum(top["end"][:-1], top["start"][1:])
    return top


def barred(notes):
    """The melody cut to whole bars: bar lines fall where the tune's end does (a tune
    with a pickup ends on a short bar that completes it), the pickup is dropped and the
    rest moved to start at 0.  (notes, bars)."""
    end = int(notes["end"].max())
    phase = end % BAR
    kept = notes[notes["start"] >= phase].copy()
    kept["start"] -= phase
    kept["end"] -= phase
    return kept, (end - phase) // BAR


def chart(chords, groove, tempo):
    """The ``mma`` source of a chord chart: tempo, groove, one numbered line per bar."""
    lines = [f"Tempo {tempo}", f"Groove {groove}"]
    lines += [f"{i + 1} {c}" for i, c in enumerate(chords)]
    return "\n".join(lines) + "\n"


def render(chords, groove, tempo, notes, workdir):
    """A ``mido.MidiFile``: ``mma``'s band for the chart, and the melody on channel 1."""
    import mido
    src, out = Path(workdir) / "chart.mma", Path(workdir) / "band.mid"
    src.write_text(chart(chords, groove, tempo))
    run = subprocess.run(["mma", "-f", str(out), str(src)], capture_output=True, text=True)
    if run.returncode != 0 or not out.exists():
        raise InvalidMidi(f"mma failed on groove {groove}: {run.stdout[-300:]}{run.stderr[-300:]}")
    band = mido.MidiFile(out)
    scale = band.ticks_per_beat / TPB
    events = []
    for n in notes:
        events.append((int(round(n["start"] * scale)), 1, int(n["pitch"]), int(n["velocity"])))
        events.append((int(round(n["end"] * scale)), 0, int(n["pitch"]), 0))
    events.sort(key=lambda e: (e[0], e[1]))  # a note-off before a note-on at one tick
    track = mido.MidiTrack([mido.MetaMessage("track_name", name="Melody", time=0),
                            mido.Message("program_change", channel=0, program=MELODY_PROGRAM,
                                         time=0)])
    now = 0
    for tick, on, pitch, vel in events:
        kind = "note_on" if on else "note_off"
        track.append(mido.Message(kind, channel=0, note=pitch, velocity=vel, time=tick - now))
        now = tick
    band.tracks.append(track)
    return band


def tunes(config):
    """(piece id, ABC text, (tonic, mode)) of the training split's 4/4 tunes with a key,
    in a stable order."""
    from engine.training import corpus
    from engine.training.data import split_of
    out = []
    for source in config.collections:
        for task in corpus.source_tasks(source):
            meter = re.search(r"(?m)^M:\s*(\S+)", task.payload)
            key = corpus.abc_key(task.payload)
            if not meter or meter.group(1) not in ("4/4", "C") or key is None:
                continue
            if split_of(task.group or task.piece_id) != 0:
                continue
            out.append((task.piece_id, task.payload, key))
    return out


def file_name(piece_id, groove):
    """The .mid a tune is written to: its id made one path component, and its groove."""
    return piece_id.replace("/", "_").replace(".abc", "") + f"_{groove.lower()}.mid"


def groove_of(piece_id):
    """The groove a tune is rendered in: chosen by its id's SHA-1, the same everywhere."""
    h = int.from_bytes(hashlib.sha1(piece_id.encode()).digest()[:4], "big")
    return GROOVES[h % len(GROOVES)]


def build(out_dir, config=GrooveConfig(), progress=True):
    """Write one ``.mid`` per usable tune into ``out_dir``, at most ``config.max_tunes``,
    spread evenly over the tunes.  Returns (written, skipped reasons)."""
    from tqdm import tqdm

    from engine.training import corpus
    if shutil.which("mma") is None:
        raise InvalidMidi("mma is not installed (`make setup` installs the Debian package mma)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    found = tunes(config)
    picked = found if len(found) <= config.max_tunes else [
        found[i] for i in np.linspace(0, len(found) - 1, config.max_tunes).astype(int)]
    written, skipped = 0, Counter()
    with tempfile.TemporaryDirectory() as work:
        for piece_id, text, (tonic, mode) in tqdm(picked, desc="grooves", disable=not progress):
            try:
                notes = corpus.read_abc(text, TPB)
            except InvalidMidi as exc:
                skipped[str(exc)[:40]] += 1
                continue
            if len(notes) == 0:
                skipped["no notes"] += 1
                continue
            notes, bars = barred(skyline(notes))
            if bars < config.min_bars:
                skipped["short"] += 1
                continue
            groove = groove_of(piece_id)
            chords = harmonise(notes, bars, tonic, mode, config.split_bonus)
            midi = render(chords, groove, config.tempo, notes, work)
            midi.save(out_dir / file_name(piece_id, groove))
            written += 1
    return written, dict(skipped)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m engine.training.grooves",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="data/grooves", help="folder of .mid files (%(default)s)")
    parser.add_argument("--max-tunes", type=int, default=GrooveConfig.max_tunes,
                        help="at most this many tunes (%(default)s)")
    args = parser.parse_args(argv)
    if args.max_tunes < 1:
        parser.error("--max-tunes: must be at least 1")
    written, skipped = build(args.out, GrooveConfig(max_tunes=args.max_tunes))
    print(f"{written} grooves written to {args.out}; skipped: {skipped or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
