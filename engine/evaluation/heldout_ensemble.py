"""Held-out real ensemble music, read the way the texture figures need it.

The pieces are those of the held-out splits of an ensemble dataset (``ostinato data
--ensemble``: ``data/ensemble.npz``), read again from where they came from, in their own
key (the dataset moved them to C), each track given its voice by
``engine.training.multipart`` exactly as the dataset was built.  What the tokens do not
keep is read from the score:

- the meter: only pieces whose every time signature makes a bar of ``beats_per_bar``
  quarter notes (4/4 and 2/2 for 4) are kept, since strong beats, bars and the critic's
  8-bar windows are counted in such bars (the model composes in them too); the others
  are left out with the reason;
- the bar lines: a pickup is moved so that bar lines fall at multiples of the bar from
  tick 0 (``measures[1].offset``, as ``engine.evaluation.ensemble.read_chorale`` does);
- the annotated key: the first music21 ``Key`` of the first part (tonic, mode), None
  where the file names none (MIDI files: the Freedoom songs).

The notes come from the dataset's per-source read cache when it is on this machine (the
cache ``engine.training.data`` wrote, named in the dataset's summary), else they are read
again through ``engine.training.corpus.read_task``.
"""
import json
from pathlib import Path
from typing import NamedTuple

import numpy as np

from engine.ensemble import DRUMS
from engine.errors import InvalidMessage, OstinatoError

SPLIT_NAMES = ("train", "valid", "test")


class HeldOutPiece(NamedTuple):
    """One held-out piece: its dataset id, source and split, its notes (``channel`` = voice
    id, bar lines at multiples of the bar from tick 0), annotated key (tonic, mode) or
    None, and its time signatures."""

    name: str
    source: str
    split: str
    notes: np.ndarray
    key: tuple | None
    meter: tuple


def _bar_quarters(sig):
    """Quarter notes in a bar of a time signature "n/d"."""
    n, d = (int(x) for x in sig.split("/"))
    return n * 4 / d


def score_meta(path, ticks_per_beat=12, beats_per_bar=4):
    """(time signatures, pickup shift in ticks, annotated key or None) of a score file,
    parsed by music21 as written (no repeats expanded)."""
    from music21 import converter, key, meter  # music21 takes seconds to import: only here
    score = converter.parse(str(path))
    first = score.parts[0] if len(score.parts) else score
    flat = first.flatten()
    sigs = tuple(sorted({ts.ratioString for ts in flat.getElementsByClass(meter.TimeSignature)}))
    measures = first.getElementsByClass("Measure")
    bar = beats_per_bar * ticks_per_beat
    shift = round(-float(measures[1].offset) * ticks_per_beat) % bar if len(measures) > 1 else 0
    keys = [k for k in flat.getElementsByClass(key.Key) if k.mode in ("major", "minor")]
    k = (keys[0].tonic.pitchClass, 0 if keys[0].mode == "major" else 1) if keys else None
    return sigs, shift, k


def midi_meta(data):
    """(time signatures, 0, None) of a standard MIDI file's bytes (symusic): a MIDI file
    starts on a bar line, and names no key the evaluation trusts."""
    import symusic  # only MIDI readers need it
    score = symusic.Score.from_midi(data, sanitize_data=True)
    sigs = tuple(sorted({f"{t.numerator}/{t.denominator}" for t in score.time_signatures}))
    return sigs or ("4/4",), 0, None  # no time signature: MIDI's default, 4/4


def task_meta(task, ticks_per_beat=12, beats_per_bar=4):
    """``score_meta`` or ``midi_meta`` of an ensemble task (``engine.training.multipart``)."""
    from engine.training import wad
    if task.kind == "music21-parts":
        return score_meta(task.payload, ticks_per_beat, beats_per_bar)
    if task.kind == "wad":
        path, lump = task.payload.split("\0")
        return midi_meta(wad.read_song(path, lump))
    return midi_meta(Path(task.payload).read_bytes())


def _cached(summary, source, ids):
    """{id: notes} of the wanted ids from a source's read cache, {} without one."""
    path = ((summary.get("sources") or {}).get(source) or {}).get("cache")
    if not path or not Path(path).exists():
        return {}
    with np.load(path, allow_pickle=False) as z:
        got, offsets, notes = [str(i) for i in z["ids"]], z["offsets"], z["notes"]
    return {i: notes[offsets[j]:offsets[j + 1]].copy() for j, i in enumerate(got) if i in ids}


def read_held_out(data="data/ensemble.npz", splits=("test",), ticks_per_beat=12,
                  beats_per_bar=4, sources=None):
    """(pieces, left_out): a ``HeldOutPiece`` for each piece of the ``splits`` of the ensemble
    dataset ``data`` in a meter of ``beats_per_bar`` quarter notes, in dataset order, and
    {id: reason} for the others (another meter, unreadable, no pitched voice); with
    ``sources`` (dataset source names), only the pieces of those sources."""
    from engine.training import corpus, multipart  # torch-free, but only when asked
    bad = [s for s in splits if s not in SPLIT_NAMES]
    if bad or not splits:
        raise InvalidMessage(f"splits {list(splits)}", field="splits",
                             allowed=f"one or more of {', '.join(SPLIT_NAMES)}")
    path = Path(data)
    if not path.exists():
        raise OstinatoError(f"ensemble dataset {path} does not exist: build it with "
                            "`ostinato data --ensemble --out data/ensemble.npz`")
    with np.load(path, allow_pickle=False) as z:
        summary = json.loads(str(z["meta"])).get("summary", {})
        ids, source_of, split = z["ids"], z["sources"], z["split"]
    codes = {SPLIT_NAMES.index(s): s for s in splits}
    wanted = [(str(ids[i]), str(source_of[i]), codes[int(split[i])])
              for i in range(len(ids)) if int(split[i]) in codes
              and (sources is None or str(source_of[i]) in sources)]
    if not summary.get("ensemble", False):
        raise OstinatoError(f"{path} is not an ensemble dataset (`ostinato data --ensemble`)")
    cfg = corpus.ReadConfig(ticks_per_beat=ticks_per_beat)
    out, left = [], {}
    by_source = {}
    for pid, source, _ in wanted:
        by_source.setdefault(source, []).append(pid)
    tasks, cached = {}, {}
    for source, pids in by_source.items():
        base = source.split("#")[0]
        tasks.update({t.piece_id: t for t in multipart.ensemble_tasks(base) if t.piece_id in pids})
        cached.update(_cached(summary, source, set(pids)))
    for pid, source, sp in wanted:
        task = tasks.get(pid)
        if task is None:
            left[pid] = "not found in its source on this machine"
            continue
        sigs, shift, key = task_meta(task, ticks_per_beat, beats_per_bar)
        if not sigs or any(_bar_quarters(s) != beats_per_bar for s in sigs):
            left[pid] = f"meter {', '.join(sigs) or 'unknown'}: not {beats_per_bar} quarters a bar"
            continue
        notes = cached.get(pid)
        if notes is None:
            notes, reason = corpus.read_task(task, cfg)
            if notes is None:
                left[pid] = reason
                continue
        notes = np.array(notes, copy=True)
        notes["start"] += shift
        notes["end"] += shift
        if not (notes["channel"] != DRUMS).any():
            left[pid] = "no pitched voice"
            continue
        out.append(HeldOutPiece(pid, source, sp, notes, key, sigs))
    return out, left
