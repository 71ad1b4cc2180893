"""The audio transcription measured: held-out music rendered, transcribed, scored by mir_eval.

``ostinato data --audio`` learns from what basic-pitch hears (``engine.training.audio``).
How well it hears is measured here on music whose notes are known: held-out pieces are
written to MIDI, rendered to WAV by the ``fluidsynth`` program with a General MIDI
SoundFont, transcribed exactly as ``ostinato data --audio`` transcribes a recording
(``Transcriber.transcribe``: libsndfile, resampling, basic-pitch on onnxruntime, the beat
tracker), and the notes found are scored against the notes written with
``mir_eval.transcription`` at its defaults (onset within 50 ms, pitch within 50 cents;
for a note also the offset within 20 % of the note's length or 50 ms):

- **onset F1**: a note found counts when its onset and pitch match a written note's;
- **note F1**: its offset has to match as well.

The held-out sets (``SETS``):

- ``folk``: O'Neill's 1850 tunes of the test split (``engine.training.data.split_of`` of
  their tune group: none was trained on), one line, on a piano;
- ``ensemble``: the test pieces of the ensemble dataset (``data/ensemble.npz``: chorales,
  quartets, Monteverdi, Freedoom), melody, bass and harmony each on its General MIDI
  program (``engine.ensemble.DEFAULTS``: flute, bass, strings), the drums left out;
- ``ensemble-piano``: the same notes, every voice on a piano.

Each piece plays at a tempo of its own (80..140 bpm, from its id) for its first
``seconds``; a unison of two voices counts as one written note, as it is one sound.  The
figures are per-piece means with their 95 % t-intervals over the pieces, per set and
over all, and how often the beat tracker's tempo is within 4 % of the written one (or of
its double or half).  ``python -m engine.evaluation.transcription`` writes them to
``engine/models/transcription.json``; the renders are done by the fluidsynth program
directly, since the engine does not import the server (``realtime.soundfont``).
"""
import argparse
import hashlib
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from engine.ensemble import DRUMS, write_ensemble_midi
from engine.errors import OstinatoError
from engine.metrics import interval, json_ready
from engine.notes import normalise, write_midi

SETS = ("folk", "ensemble", "ensemble-piano")
TARGET_ONSET_F1 = 0.6
TEMPO_TOLERANCE = 0.04


@dataclass(frozen=True)
class TranscriptionEvalConfig:
    """What is measured: which sets, how many pieces of each, how much of each piece."""

    sets: tuple = SETS
    pieces: int = 16             # per set (at most: the held-out pieces there are)
    seconds: float = 30.0        # each piece's first seconds are rendered
    ensemble_data: str = "data/ensemble.npz"
    folk_source: str = "oneills1850"
    soundfont: str = ""          # "" = fluidsynth's own default SoundFont
    sample_rate: int = 44100     # of the renders
    ticks_per_beat: int = 12

    def quick(self):
        """A run of seconds: two folk tunes, 8 s each (the test's)."""
        return replace(self, sets=("folk",), pieces=2, seconds=8.0)


def piece_bpm(piece_id):
    """The tempo a piece is rendered at: 80..140 bpm, fixed by its id (SHA-1)."""
    return 80 + int.from_bytes(hashlib.sha1(piece_id.encode()).digest()[:4], "big") % 61


# -- the held-out pieces -----------------------------------------------------------------
def folk_pieces(cfg):
    """(id, notes) of the first ``cfg.pieces`` test-split tunes of the folk source that
    read, and {id: reason} for those that did not."""
    from engine.training import corpus
    from engine.training.data import split_code, split_of
    test = split_code("test")
    out, left = [], {}
    read = corpus.ReadConfig(ticks_per_beat=cfg.ticks_per_beat)
    for task in corpus.source_tasks(cfg.folk_source):
        if len(out) >= cfg.pieces:
            break
        if split_of(task.group or task.piece_id) != test:
            continue
        notes, why = corpus.read_task(task, read)
        if notes is None:
            left[task.piece_id] = why
        else:
            out.append((task.piece_id, notes))
    return out, left


def ensemble_pieces(cfg):
    """(id, notes with channel = voice id, drums left out) of the first ``cfg.pieces``
    test pieces of the ensemble dataset, and {id: reason} for those left out."""
    from engine.evaluation.heldout_ensemble import read_held_out
    held, left = read_held_out(cfg.ensemble_data, ("test",), cfg.ticks_per_beat)
    out = [(p.name, p.notes[p.notes["channel"] != DRUMS]) for p in held[:cfg.pieces]]
    return out, left


def crop_seconds(notes, seconds, bpm, ticks_per_beat):
    """The notes that start in the first ``seconds`` at ``bpm``, cut to end there."""
    limit = int(seconds * bpm / 60 * ticks_per_beat)
    notes = notes[notes["start"] < limit].copy()
    notes["end"] = np.minimum(notes["end"], limit)
    return notes


def reference(notes, bpm, ticks_per_beat):
    """(intervals in seconds, pitches in Hz) of written notes, for mir_eval: one note per
    sound (a unison of two voices is one)."""
    one = notes.copy()
    one["channel"] = 0
    one = normalise(one)
    sec = 60.0 / bpm / ticks_per_beat
    intervals = np.stack([one["start"] * sec, one["end"] * sec], axis=1).astype(np.float64)
    return intervals, hz(one["pitch"])


def hz(pitch):
    return 440.0 * 2.0 ** ((np.asarray(pitch, np.float64) - 69) / 12)


# -- rendering ---------------------------------------------------------------------------
def fluidsynth_missing():
    """Why the renders cannot run here, or None."""
    if shutil.which("fluidsynth") is None:
        return "fluidsynth is not installed (Debian: apt-get install fluidsynth)"
    return None


def render(midi_path, wav_path, cfg, timeout_s=300):
    """A MIDI file to a WAV file with the fluidsynth program (``cfg.soundfont``, else its
    default General MIDI SoundFont)."""
    cmd = ["fluidsynth", "-ni", "-q", "-F", str(wav_path), "-r", str(cfg.sample_rate)]
    if cfg.soundfont:
        if not Path(cfg.soundfont).is_file():
            raise OstinatoError(f"soundfont: {cfg.soundfont} is not a file")
        cmd.append(cfg.soundfont)
    cmd.append(str(midi_path))
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise OstinatoError(f"fluidsynth took longer than {timeout_s} s on {midi_path}") from exc
    if res.returncode != 0 or not Path(wav_path).is_file():
        raise OstinatoError(f"fluidsynth failed ({res.returncode}) on {midi_path}: "
                            f"{(res.stderr or res.stdout).strip()[:300]}")


# -- scoring -----------------------------------------------------------------------------
def score(ref_intervals, ref_hz, events):
    """mir_eval's precision, recall and F1 of the transcribed ``events`` (EVENT_DTYPE)
    against the written notes, by onset and by note (onset and offset), at its defaults."""
    import mir_eval
    est_intervals = np.stack([events["start"], events["end"]], axis=1).astype(np.float64) \
        if len(events) else np.zeros((0, 2))
    est_hz = hz(events["pitch"]) if len(events) else np.zeros(0)
    out = {}
    for name, ratio in (("onset", None), ("note", 0.2)):
        p, r, f, _ = mir_eval.transcription.precision_recall_f1_overlap(
            ref_intervals, ref_hz, est_intervals, est_hz, offset_ratio=ratio)
        out.update({f"{name}_precision": p, f"{name}_recall": r, f"{name}_f1": f})
    return out


def tempo_match(estimated, written):
    """(within TEMPO_TOLERANCE of the written tempo, or of its double or half)."""
    ratio = estimated / written
    near = [abs(ratio * k - 1) <= TEMPO_TOLERANCE for k in (1.0, 0.5, 2.0)]
    return near[0], any(near)


def _program(set_name):
    """How a set's piece is written to MIDI: the ensemble's GM programs, or a piano."""
    if set_name == "ensemble":
        return lambda notes, path, bpm, tpb: write_ensemble_midi(notes, path, bpm=bpm,
                                                                 ticks_per_beat=tpb)
    return lambda notes, path, bpm, tpb: write_midi(notes, path, ticks_per_beat=tpb, bpm=bpm,
                                                    program=0)


FIGURES = ("onset_f1", "note_f1", "onset_precision", "onset_recall", "note_precision",
           "note_recall")


def summarise(rows):
    """Per-piece means with 95 % t-intervals of every figure, and the tempo shares."""
    out = {"pieces": len(rows)}
    for k in FIGURES:
        iv = interval([r[k] for r in rows])
        out[k] = {"mean": iv["mean"], "lo": iv["lo"], "hi": iv["hi"]}
    out["tempo_within_4pct"] = float(np.mean([r["tempo_ok"] for r in rows])) if rows else None
    out["tempo_within_4pct_or_octave"] = \
        float(np.mean([r["tempo_octave_ok"] for r in rows])) if rows else None
    return out


def _met(summary):
    """Whether a summary's mean onset F1 reaches the target."""
    mean = summary["onset_f1"]["mean"]
    return mean is not None and mean >= TARGET_ONSET_F1


def measure(cfg=TranscriptionEvalConfig(), log=None):
    """Render, transcribe and score every set; the result as a JSON-ready dict."""
    from engine.training.audio import BASIC_PITCH, InvalidAudio, Transcriber
    missing = fluidsynth_missing()
    if missing:
        raise OstinatoError(missing)
    bad = [s for s in cfg.sets if s not in SETS]
    if bad or not cfg.sets:
        raise OstinatoError(f"sets: {bad[0] if bad else 'none'} is not a set "
                            f"(allowed: {', '.join(SETS)})")
    log = log or (lambda m: None)
    cpu0 = time.process_time()
    child0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    transcriber = Transcriber(threads=1)
    rows, left = [], {}
    loaded = {}
    with tempfile.TemporaryDirectory(prefix="ostinato-transcription-") as tmp:
        for set_name in cfg.sets:
            base = "folk" if set_name == "folk" else "ensemble"
            if base not in loaded:
                loaded[base] = folk_pieces(cfg) if base == "folk" else ensemble_pieces(cfg)
                left.update({f"{base}:{k}": v for k, v in loaded[base][1].items()})
            write = _program(set_name)
            for i, (pid, notes) in enumerate(loaded[base][0]):
                bpm = piece_bpm(pid)
                notes = crop_seconds(notes, cfg.seconds, bpm, cfg.ticks_per_beat)
                mid, wav = Path(tmp, f"{set_name}-{i}.mid"), Path(tmp, f"{set_name}-{i}.wav")
                write(notes, mid, bpm, cfg.ticks_per_beat)
                render(mid, wav, cfg)
                try:
                    tr = transcriber.transcribe(wav, cfg.ticks_per_beat)
                except InvalidAudio as exc:  # e.g. a piece silent in its first seconds
                    left[f"{set_name}:{pid}"] = str(exc)
                    continue
                ref_iv, ref_hz = reference(notes, bpm, cfg.ticks_per_beat)
                row = {"set": set_name, "piece": pid, "bpm": bpm, "notes": len(ref_hz),
                       "found": len(tr.events), "tracked_bpm": round(tr.bpm, 2),
                       **score(ref_iv, ref_hz, tr.events)}
                row["tempo_ok"], row["tempo_octave_ok"] = tempo_match(tr.bpm, bpm)
                rows.append(row)
                log(f"{set_name:15s} {pid[:40]:40s} {bpm:3d} bpm  notes {row['notes']:4d} "
                    f"found {row['found']:4d}  onset F1 {row['onset_f1']:.3f}  "
                    f"note F1 {row['note_f1']:.3f}")
    child = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = {
        "transcriber": BASIC_PITCH,
        "renderer": "fluidsynth, " + (cfg.soundfont or "its default General MIDI SoundFont"),
        "scoring": "mir_eval.transcription.precision_recall_f1_overlap at its defaults "
                   "(onset 50 ms, pitch 50 cents; note: offset within 20 % or 50 ms)",
        "config": asdict(cfg),
        "target": {"onset_f1": TARGET_ONSET_F1},
        "sets": {s: summarise([r for r in rows if r["set"] == s]) for s in cfg.sets},
        "all": summarise(rows),
        "pieces": rows,
        "left_out": left,
        "cpu_seconds": {"transcription": round(time.process_time() - cpu0, 1),
                        "fluidsynth": round(child.ru_utime + child.ru_stime
                                            - child0.ru_utime - child0.ru_stime, 1)},
    }
    result["target"].update(met=_met(result["all"]),
                            met_per_set={k: _met(v) for k, v in result["sets"].items()})
    return json_ready(result)


def format_table(result):
    """The per-set figures as a small table."""
    def cell(iv):
        if iv["mean"] is None:
            return "     -          "
        lo = "" if iv["lo"] is None else f" [{iv['lo']:.3f}, {iv['hi']:.3f}]"
        return f"{iv['mean']:.3f}{lo}"
    lines = [f"{'set':15s} {'pieces':>6s}  {'onset F1':24s}  {'note F1':24s}  tempo ok"]
    for name, s in list(result["sets"].items()) + [("all", result["all"])]:
        t = s["tempo_within_4pct_or_octave"]
        lines.append(f"{name:15s} {s['pieces']:6d}  {cell(s['onset_f1']):24s}  "
                     f"{cell(s['note_f1']):24s}  {'-' if t is None else f'{100 * t:.0f} %'}")
    t = result["target"]
    lines.append(f"target onset F1 >= {t['onset_f1']}: over all pieces "
                 f"{'met' if t['met'] else 'not met'}; per set: " + ", ".join(
                     f"{k} {'met' if v else 'not met'}" for k, v in t["met_per_set"].items()))
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m engine.evaluation.transcription",
                                description=__doc__.split("\n")[0])
    p.add_argument("--out", default="engine/models/transcription.json",
                   help="the JSON of every figure (%(default)s)")
    p.add_argument("--sets", default=None, metavar="SET,...",
                   help=f"held-out sets ({', '.join(SETS)}; default all)")
    p.add_argument("--pieces", type=int, default=None, help="pieces per set (default 16)")
    p.add_argument("--seconds", type=float, default=None,
                   help="seconds rendered of each piece (default 30)")
    p.add_argument("--data", default=None, metavar="NPZ",
                   help="the ensemble dataset whose test pieces are rendered "
                        f"(default {TranscriptionEvalConfig.ensemble_data})")
    p.add_argument("--soundfont", default=None, metavar="SF2",
                   help="the SoundFont (default: fluidsynth's own General MIDI SoundFont)")
    p.add_argument("--quick", action="store_true", help="two folk tunes of 8 s (tests)")
    args = p.parse_args(argv)
    cfg = TranscriptionEvalConfig().quick() if args.quick else TranscriptionEvalConfig()
    if args.pieces is not None and args.pieces < 1:
        p.error(f"--pieces {args.pieces}: at least 1")
    if args.seconds is not None and args.seconds <= 0:
        p.error(f"--seconds {args.seconds}: more than 0")
    sets = tuple(s.strip() for s in args.sets.split(",") if s.strip()) if args.sets else None
    given = dict(sets=sets, pieces=args.pieces, seconds=args.seconds,
                 ensemble_data=args.data, soundfont=args.soundfont)
    cfg = replace(cfg, **{k: v for k, v in given.items() if v is not None})
    try:
        result = measure(cfg, lambda m: print(m, file=sys.stderr, flush=True))
    except OstinatoError as exc:  # one line naming what is wrong, no traceback
        print(f"{p.prog}: {exc}", file=sys.stderr)
        return 2
    print(format_table(result))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, allow_nan=False))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
