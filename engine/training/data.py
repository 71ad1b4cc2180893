"""The training set: pieces read, tokenised, measured, split and batched.

``ostinato data`` reads each source (a corpus collection or a MIDI folder) through
``engine.training.corpus`` (a folder of recordings through ``engine.training.audio``,
which transcribes them), caching the notes per source so adding a MIDI folder does not
re-read the corpus (``engine.training.sources``), then moves every piece to the common
tonic C (key-relative: the sequencer transposes to the key a game asks for, so the tonic
never depends on the model), tokenises it (``Vocab.encode``), measures its controls
(``ControlSpec.compute``) and writes one ``.npz``.  A piece's key is its annotated
one (an ABC K: field) where the source has one, else the Krumhansl-Kessler key of
the whole piece; it moves by at most a tritone (``controls.key_shift``), so its
register changes little.  Mode augmentation adds, for a share of the training
pieces, a copy in the parallel mode (major to harmonic minor and back, by scale
degree).  ``Dataset`` loads it and serves training batches: random windows of the
training stream (of an absolute-key dataset, each transposed by a random interval).
Splits are by piece, from a hash of the piece id (or of the tune's group, so two
transcriptions of one tune share a split): they never change between runs or machines.

``ostinato data --ensemble`` builds an ensemble dataset instead: multi-part pieces
(``sources.ensemble_readers``, the one place the multi-part sources plug in) whose notes
carry their voice id in ``channel`` (``engine.ensemble``), tokenised with a vocabulary with
voices (``Vocab.n_voices``).  The dataset file carries that vocabulary, and so every
model trained on it.  In an ensemble piece only the pitched voices move: the key is
found from them, the move to C and the parallel-mode copy leave the drums as they are,
and so does every transposition of a training window (``transpose_tokens``,
``windows``), which follows the voice in force along the token stream.
"""
import hashlib
import itertools
import json
import os
import sys
import time
import zipfile
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from engine.training import corpus
from engine.training.audio import read_audio_sources
from engine.training.sources import ensemble_readers, read_sources
from engine.controls import (MODES, ControlSpec, find_key, parallel_mode, pitched, style_of,
                             to_tonic_c)
from engine.ensemble import DRUMS, VOICES
from engine.errors import InvalidMessage, OstinatoError
from engine.vocab import NOTE_OFF, NOTE_ON, Vocab

SPLITS = ("train", "valid", "test")
SPLIT_SHARES = (0.90, 0.05, 0.05)
FORMAT = 1


@dataclass(frozen=True)
class BuildConfig:
    """What goes into a dataset and where it is written."""

    collections: tuple = corpus.DEFAULT_COLLECTIONS
    midi_dirs: tuple = ()
    audio_dirs: tuple = ()       # recordings, transcribed by engine.training.audio
    out: str = "data/dataset.npz"
    cache_dir: str = ""          # "" = a cache/ folder beside ``out``
    rebuild: bool = False        # ignore caches and read every source again
    max_pieces: int = 0          # 0 = all; else at most this many pieces per source
    min_notes: int = 16
    key_relative: bool = True    # move every piece to the tonic C (False: keys as written)
    mode_augment: float = 0.0    # share of training pieces that also get a parallel-mode copy
    ensemble: bool = False       # multi-part sources, one voice per part (see the docstring)
    workers: int = 2
    progress: bool = True
    read: corpus.ReadConfig = field(default_factory=corpus.ReadConfig)


# -- splits ------------------------------------------------------------------------------
def split_of(key):
    """Split code (0 train, 1 valid, 2 test) of a piece id or group, from its SHA-1.

    SHA-1, unlike Python's ``hash``, is the same in every process and on every machine.
    """
    u = int.from_bytes(hashlib.sha1(key.encode("utf-8")).digest()[:8], "big") / 2.0 ** 64
    edges = np.cumsum(SPLIT_SHARES)
    return int(min(np.searchsorted(edges, u, side="right"), len(SPLITS) - 1))


def _bad(field, problem, allowed):
    """An InvalidMessage whose text names the field and what it accepts."""
    return InvalidMessage(f"{field}: {problem} (allowed: {allowed})", field=field,
                          allowed=allowed)


def split_code(split):
    if split not in SPLITS:
        raise _bad("split", f"{split!r} is not a split", ", ".join(SPLITS))
    return SPLITS.index(split)


# -- building ----------------------------------------------------------------------------
def _category(reason):
    return reason.split(":", 1)[0]


def build(config=BuildConfig(), log=None, sources=None):
    """Read, tokenise, split and write the dataset; returns the build summary.

    Each skipped piece gets one line "piece id: category: detail", passed to ``log``
    and written to ``<out>.skipped.txt`` beside the dataset.  ``sources``, an iterable
    of (source name, pieces, skipped, info), replaces the reading of the config's
    sources (pieces read elsewhere or made by hand).
    """
    lines = []

    def log_skip(line):
        lines.append(line)
        if log:
            log(line)
    t0 = time.monotonic()
    tpb, ens = config.read.ticks_per_beat, config.ensemble
    vocab = Vocab(ticks_per_beat=tpb, n_voices=len(VOICES) if ens else 0)
    spec = ControlSpec(ticks_per_beat=tpb)
    toks, ctrls, ids, srcs, splits = [], [], [], [], []
    seen = {}
    summary = {"sources": {}, "skipped": {}}
    keys = Counter()  # where each piece's key came from: annotated or measured
    modes = {when: {m: [0, 0, 0] for m in MODES} for when in ("before", "after")}
    voices = np.zeros((len(VOICES), len(SPLITS)), np.int64)  # ensemble notes per voice
    if sources is None:
        sources = itertools.chain(read_sources(config), read_audio_sources(config))
    for source, pieces, skipped, info in sources:
        skipped = list(skipped)
        counts = {"pieces": [0, 0, 0], "tokens": [0, 0, 0], "notes": [0, 0, 0]}
        annotated = corpus.annotated_keys(source) if config.key_relative and not ens else {}
        for pid, group, notes in pieces:
            if len(notes) < config.min_notes:
                skipped.append((pid, f"too short: {len(notes)} notes < {config.min_notes}"))
                continue
            if ens and ((notes["channel"] < 0) | (notes["channel"] >= len(VOICES))).any():
                bad = int(notes["channel"][(notes["channel"] < 0) |
                                           (notes["channel"] >= len(VOICES))][0])
                skipped.append((pid, f"bad voice: channel {bad} is not a voice id "
                                     f"0..{len(VOICES) - 1}"))
                continue
            sp = split_of(group or pid)
            tonal = pitched(notes, ens)  # the key is the pitched voices' (drums: none)
            tonic, mode = annotated.get(pid) or (find_key(tonal)[:2] if len(tonal) else (0, 0))
            if config.key_relative:
                notes = to_tonic_c(notes, tonic, ens)
            versions = [(pid, notes, mode)]
            if sp == 0 and config.mode_augment > 0 and \
                    _share(pid) < config.mode_augment and config.key_relative:
                versions.append((pid + "#parallel", parallel_mode(notes, mode, ens), 1 - mode))
            for vid, vnotes, vmode in versions:
                tokens = vocab.encode(vnotes)
                digest = hashlib.sha1(tokens.tobytes()).hexdigest()
                if digest in seen:  # a tune printed twice would leak across splits
                    skipped.append((vid, f"duplicate: same notes as {seen[digest]}"))
                    continue
                seen[digest] = vid
                toks.append(tokens.astype(np.int16))
                ctrls.append(spec.compute(tokens, vocab).astype(np.float16))
                ids.append(vid)
                srcs.append(source)
                splits.append(sp)
                counts["pieces"][sp] += 1
                counts["tokens"][sp] += len(tokens)
                counts["notes"][sp] += len(vnotes)
                if ens:
                    voices[:, sp] += np.bincount(vnotes["channel"], minlength=len(VOICES))
                modes["after"][MODES[vmode]][sp] += 1
                if vid == pid:
                    modes["before"][MODES[vmode]][sp] += 1
                    if config.key_relative:
                        keys["annotated" if pid in annotated else "measured"] += 1
        for pid, why in skipped:
            log_skip(f"{pid}: {why}")
        by_reason = dict(Counter(_category(w) for _, w in skipped))
        for k, n in by_reason.items():
            summary["skipped"][k] = summary["skipped"].get(k, 0) + n
        summary["sources"][source] = {**{k: dict(zip(SPLITS, v)) for k, v in counts.items()},
                                      "skipped": by_reason, **info}
    if not toks:
        raise OstinatoError("no pieces left to write: every source was empty or skipped")
    for key in ("pieces", "tokens", "notes"):
        summary[key] = {s: sum(v[key][s] for v in summary["sources"].values()) for s in SPLITS}
    summary["key_relative"] = config.key_relative
    summary["keys"] = dict(keys)
    summary["mode_augment"] = config.mode_augment
    summary["ensemble"] = ens
    if ens:
        summary["voices"] = {v: dict(zip(SPLITS, map(int, row))) for v, row in zip(VOICES, voices)}
    summary["modes"] = {when: {m: dict(zip(SPLITS, v)) for m, v in by.items()}
                        for when, by in modes.items()}
    summary["seconds"] = round(time.monotonic() - t0, 1)
    meta = {"format": FORMAT, "vocab": vocab.to_dict(), "spec": spec.to_dict(),
            "summary": summary, "key_relative": config.key_relative}
    out = Path(config.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.npz")
    np.savez_compressed(
        tmp, tokens=np.concatenate(toks), controls=np.concatenate(ctrls),
        offsets=np.cumsum([0] + [len(t) for t in toks]).astype(np.int64),
        ids=np.array(ids, dtype=str), sources=np.array(srcs, dtype=str),
        split=np.array(splits, np.int8), meta=np.array(json.dumps(meta)))
    os.replace(tmp, out)
    out.with_name(out.name + ".skipped.txt").write_text("".join(l + "\n" for l in lines))
    return summary


# -- keys and modes ----------------------------------------------------------------------


def _share(piece_id):
    """A number in [0, 1) fixed by the piece id (SHA-1): who gets a parallel-mode copy."""
    digest = hashlib.sha1(("mode:" + piece_id).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


# -- transposition and windows -----------------------------------------------------------
def _pitch_tables(vocab):
    """Per token id: is it a note-on/off, and its pitch (-1 for other tokens)."""
    kinds, values = vocab.tables()
    is_note = (kinds == NOTE_ON) | (kinds == NOTE_OFF)
    return is_note, np.where(is_note, values, -1)


def _movable(tokens, vocab, voices=None):
    """Which tokens a transposition moves: note-ons and -offs, in an ensemble those of the
    pitched voices only (``voices``: the voice in force at each token, ``Vocab.voices_of``,
    computed from ``tokens`` when not given)."""
    is_note, _ = _pitch_tables(vocab)
    notes = is_note[tokens]
    if vocab.n_voices > DRUMS:
        voices = vocab.voices_of(tokens) if voices is None else voices
        notes &= voices != DRUMS
    return notes


def transpose_tokens(tokens, k, vocab, voices=None):
    """Tokens with every pitched note moved by k semitones, or None if a pitch would leave
    0..127.  An ensemble's drum notes stay (``voices``: the voice in force at each token,
    for a window cut from a longer stream; by default found from ``tokens`` themselves)."""
    _, pitch = _pitch_tables(vocab)
    tokens = np.asarray(tokens)
    notes = _movable(tokens, vocab, voices)
    if notes.any():
        p = pitch[tokens][notes]
        if p.min() + k < 0 or p.max() + k > 127:
            return None
    return (tokens + k * notes).astype(tokens.dtype)


def windows(tokens, controls, starts, seq_len, ks, vocab, spec, voices=None):
    """Windows of a stream at ``starts``, each transposed by its k (0 where out of range).

    In an ensemble the drum notes stay: ``voices`` is the voice in force at each token of
    the whole stream (``Vocab.voices_of(tokens)``; computed here when needed and not
    given), as a window may begin in the middle of a voice's run.
    Returns x_tokens int64 [B,T], x_controls float32 [B,T,C], y_tokens int64 [B,T] and
    the k actually applied to each window.
    """
    is_note, pitch = _pitch_tables(vocab)
    idx = np.asarray(starts)[:, None] + np.arange(seq_len + 1)
    win = tokens[idx].astype(np.int64)
    ks = np.asarray(ks, np.int64).copy()
    notes = is_note[win]
    if vocab.n_voices > DRUMS and ks.any():
        voices = vocab.voices_of(tokens) if voices is None else voices
        notes &= voices[idx] != DRUMS
    hi = np.where(notes, pitch[win], -1).max(1)
    lo = np.where(notes, pitch[win], 128).min(1)
    ks[(hi + ks > 127) | (lo + ks < 0)] = 0
    win += notes * ks[:, None]
    ctrl = controls[idx[:, :-1]].astype(np.float32)
    for k in np.unique(ks[ks != 0]):
        rows = ks == k
        ctrl[rows] = spec.transpose(ctrl[rows], int(k))
    return win[:, :-1], ctrl, win[:, 1:], ks


def _check_share(field, share):
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 1:
        raise _bad(field, f"{share!r} is not a share", "0..1")


class Dataset:
    """A built dataset: pieces by split, their token stream, batches for training."""

    def __init__(self, tokens, controls, offsets, ids, sources, split, vocab, spec,
                 summary=None):
        self.tokens, self.controls, self.offsets = tokens, controls, offsets
        self.ids, self.sources, self.split = ids, sources, split
        self.vocab, self.spec, self.summary = vocab, spec, summary or {}
        # every piece was moved to C (see the module docstring): train without transposing
        self.key_relative = bool(self.summary.get("key_relative", False))
        self._streams = {}
        self._voices = {}
        #: per control block blanked in training (``batches``), the share of windows
        self.dropout = {}

    def with_styles(self, styles, dropout):
        """This dataset with a style block after each control vector (``ControlSpec.styles``
        = ``styles``): the one-hot of its piece's style (``engine.controls.style_of`` its
        source; all zero for a source of no style), blanked in a share ``dropout`` of the
        training windows (``batches``), so that a model asked for no style plays the mix it
        learned from all of them."""
        if self.spec.styles:
            raise OstinatoError("this dataset's controls already carry styles")
        if self.spec.parts:  # the style block comes before the parts block
            raise OstinatoError("tell a dataset its styles before the voices' densities")
        _check_share("style_dropout", dropout)
        styles = tuple(styles)
        piece = np.repeat(np.arange(len(self.ids)), np.diff(self.offsets))
        onehot = np.zeros((len(self.ids), len(styles)), self.controls.dtype)
        for i, source in enumerate(self.sources):
            style = style_of(str(source))
            if style in styles:
                onehot[i, styles.index(style)] = 1
        return self._widened(onehot[piece], replace(self.spec, styles=styles), "style",
                             dropout)

    def with_parts(self, dropout):
        """This dataset told each pitched voice's density (``ControlSpec.parts``, measured
        by ``ControlSpec.part_densities`` piece by piece), the block blanked in a share
        ``dropout`` of the training windows (``batches``), so that a model not given them
        plays as one never told them."""
        if self.spec.parts:
            raise OstinatoError("this dataset's controls already carry the voices' densities")
        _check_share("parts_dropout", dropout)
        spec = replace(self.spec, parts=True)
        o = self.offsets
        block = np.concatenate([spec.part_densities(self.tokens[o[i]:o[i + 1]], self.vocab)
                                for i in range(len(self.ids))])
        return self._widened(block.astype(self.controls.dtype), spec, "parts", dropout)

    def _widened(self, block, spec, name, dropout):
        """This dataset with ``block`` after each control vector, under ``spec``, the
        block ``name`` blanked in a share ``dropout`` of the training windows."""
        out = Dataset(self.tokens, np.concatenate([self.controls, block], axis=1),
                      self.offsets, self.ids, self.sources, self.split, self.vocab, spec,
                      self.summary)
        out.dropout = {**self.dropout, name: float(dropout)}
        return out

    @classmethod
    def load(cls, path):
        path = Path(path)
        if not path.exists():
            raise OstinatoError(f"dataset {path} does not exist: build it with `ostinato data`")
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                arrays = {k: z[k] for k in ("tokens", "controls", "offsets", "ids",
                                            "sources", "split")}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise OstinatoError(f"dataset {path} is not a readable dataset file: {exc}") from exc
        if meta.get("format") != FORMAT:
            raise OstinatoError(f"dataset {path} has format {meta.get('format')}, "
                                f"this code reads format {FORMAT}: rebuild it")
        return cls(vocab=Vocab.from_dict(meta["vocab"]), spec=ControlSpec.from_dict(meta["spec"]),
                   summary=meta["summary"], **arrays)

    def __len__(self):
        return len(self.ids)

    def piece_rows(self, split):
        """The indices of a split's pieces (into ``ids``, ``sources``), in stored order."""
        return np.flatnonzero(self.split == split_code(split))

    def pieces(self, split):
        """(tokens int16, controls float16) of each piece of a split, as stored."""
        o = self.offsets
        return [(self.tokens[o[i]:o[i + 1]], self.controls[o[i]:o[i + 1]])
                for i in self.piece_rows(split)]

    def stream(self, split):
        """All pieces of a split end to end (each starts with START): tokens, controls."""
        if split not in self._streams:
            code = split_code(split)
            mask = np.repeat(self.split == code, np.diff(self.offsets))
            self._streams[split] = (self.tokens[mask], self.controls[mask])
        return self._streams[split]

    def stream_voices(self, split):
        """The voice in force at each token of a split's stream (``Vocab.voices_of``)."""
        if split not in self._voices:
            self._voices[split] = self.vocab.voices_of(self.stream(split)[0])
        return self._voices[split]

    def _check_len(self, split, seq_len):
        n = len(self.stream(split)[0])
        if not isinstance(seq_len, (int, np.integer)) or not 1 <= seq_len <= n - 1:
            raise _bad("seq_len", f"{seq_len!r} does not fit the {split} stream of {n} tokens",
                       f"1..{n - 1}")
        return n

    def batches(self, split, batch_size, seq_len, rng, transpose=(-5, 6)):
        """Endless random training batches (x_tokens, x_controls, y_tokens), y = x shifted by one.

        Each window is transposed by a random k in [lo, hi), or by 0 where a pitch
        would leave 0..127; ``transpose=None`` leaves the music as written.
        """
        n = self._check_len(split, seq_len)
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise _bad("batch_size", f"{batch_size!r} is not a positive integer", ">= 1")
        lo, hi = transpose if transpose else (0, 1)
        if not (-127 <= lo < hi <= 128):
            raise _bad("transpose", f"[{lo}, {hi}) is empty or too wide",
                       "(lo, hi) with -127 <= lo < hi <= 128, or None")
        tokens, controls = self.stream(split)
        voices = self.stream_voices(split) if self.vocab.n_voices > DRUMS and transpose \
            else None
        while True:
            starts = rng.integers(0, n - seq_len, size=batch_size)
            ks = rng.integers(lo, hi, size=batch_size)
            x, c, y, _ = windows(tokens, controls, starts, seq_len, ks, self.vocab, self.spec,
                                 voices)
            for name, share in self.dropout.items():
                if share:
                    c[rng.random(batch_size) < share, :, self.spec.slices()[name]] = 0
            yield x, c, y

    def eval_windows(self, split, seq_len):
        """Every non-overlapping window of a split, in order, untransposed: (x, c, y) arrays."""
        n = self._check_len(split, seq_len)
        tokens, controls = self.stream(split)
        starts = np.arange(0, n - seq_len, seq_len)
        x, c, y, _ = windows(tokens, controls, starts, seq_len, np.zeros(len(starts)),
                             self.vocab, self.spec)
        return x, c, y


# -- command line ------------------------------------------------------------------------
def add_arguments(parser):
    names = ", ".join(corpus.COLLECTIONS)
    parser.add_argument("--collections", default=None,
                        help=f"comma-separated corpus collections ({names}), 'all', or 'none' "
                             f"(default: {','.join(corpus.DEFAULT_COLLECTIONS)}; Essen is "
                             "non-commercial, Palestrina slow); with --ensemble, multi-part "
                             "sources (engine.training.multipart.SOURCES; default: all)")
    parser.add_argument("--ensemble", action="store_true",
                        help="build an ensemble dataset: multi-part pieces (and --midi folders) "
                             "read with one voice per part (melody, bass, harmony, drums), "
                             "tokenised with voice tokens")
    parser.add_argument("--midi", nargs="+", action="extend", default=[], metavar="DIR",
                        help="folders of .mid files to add (searched recursively)")
    parser.add_argument("--audio", nargs="+", action="extend", default=[], metavar="DIR",
                        help="folders of .wav, .flac and .ogg recordings to add, transcribed "
                             "with basic-pitch (searched recursively; not with --ensemble)")
    parser.add_argument("--keep-drums", action="store_true",
                        help="keep channel-10 drum notes from MIDI files")
    parser.add_argument("--out", default="data/dataset.npz", help="dataset file (%(default)s)")
    parser.add_argument("--rebuild", action="store_true",
                        help="ignore the per-source caches and read everything again")
    parser.add_argument("--max-pieces", type=int, default=0, metavar="N",
                        help="read at most N pieces per source (0: all)")
    parser.add_argument("--absolute-keys", action="store_true",
                        help="keep each piece in its written key (default: every piece moved "
                             "to C, the sequencer transposes at play time)")
    parser.add_argument("--mode-augment", type=float, default=0.0, metavar="SHARE",
                        help="share 0..1 of training pieces that also get a copy in the "
                             "parallel mode (default 0)")
    parser.add_argument("--workers", type=int, default=2, help="reader processes, 1-2 (2)")
    parser.add_argument("--verbose", action="store_true", help="print every skipped piece")


def parse_collections(text, known=None):
    """Collection names from the --collections text, checked against ``known`` (default:
    the corpus collections; for an ensemble dataset, the multi-part sources)."""
    known = tuple(corpus.COLLECTIONS if known is None else known)
    text = text.strip()
    if text == "all":
        return known
    if text in ("", "none"):
        return ()
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    bad = [n for n in names if n not in known]
    if bad:
        raise _bad("collections", f"unknown collection {bad[0]!r}",
                   ", ".join(known) + ", all, none")
    return names


def format_summary(summary):
    """The build summary as a small table."""
    lines = [f"{'source':<40} {'split':<6} {'pieces':>7} {'notes':>9} {'tokens':>10}"]
    rows = list(summary["sources"].items()) + [("total", summary)]
    for name, s in rows:
        tag = " (cached)" if s.get("cached") else ""
        for sp in SPLITS:
            lines.append(f"{(name + tag)[-40:]:<40} {sp:<6} {s['pieces'][sp]:>7} "
                         f"{s['notes'][sp]:>9} {s['tokens'][sp]:>10}")
    skipped = summary["skipped"]
    lines.append("skipped: " + (", ".join(f"{k} {v}" for k, v in sorted(skipped.items()))
                                if skipped else "none"))
    if "modes" in summary:
        for when in ("before", "after"):
            by = summary["modes"][when]
            lines.append(f"modes {when} augmentation (train): " + ", ".join(
                f"{m} {by[m]['train']}" for m in MODES))
    if summary.get("key_relative"):
        lines.append("keys moved to C: " + ", ".join(f"{k} {v}" for k, v in
                                                     sorted(summary["keys"].items())))
    if summary.get("voices"):
        lines.append("notes per voice (all splits): " + ", ".join(
            f"{v} {sum(by.values())}" for v, by in summary["voices"].items()))
    lines.append(f"time: {summary['seconds']:.1f} s")
    return "\n".join(lines)


def run(args):
    if args.max_pieces < 0:
        raise _bad("max_pieces", f"{args.max_pieces} is negative", ">= 0 (0: all)")
    if not 1 <= args.workers <= 2:
        raise _bad("workers", f"{args.workers} is out of range", "1..2")
    if not 0.0 <= args.mode_augment <= 1.0:
        raise _bad("mode_augment", f"{args.mode_augment} is out of range", "0..1")
    if args.ensemble:
        known = default = tuple(ensemble_readers().SOURCES)
    else:
        known, default = corpus.COLLECTIONS, corpus.DEFAULT_COLLECTIONS
    text = ",".join(default) if args.collections is None else args.collections
    collections = parse_collections(text, known)
    for d in args.midi:
        if not Path(d).is_dir():
            raise _bad("midi", f"{d} is not a folder", "existing folders")
    for d in args.audio:
        if not Path(d).is_dir():
            raise _bad("audio", f"{d} is not a folder", "existing folders")
    if args.audio and args.ensemble:
        raise _bad("audio", "a transcription is one line without voices, an ensemble dataset "
                            "needs parts", "--audio without --ensemble")
    if not collections and not args.midi and not args.audio:
        raise _bad("collections", "nothing to read: no collections, no --midi or --audio "
                   "folders", ", ".join(known) + ", all, --midi DIR or --audio DIR")
    config = BuildConfig(collections=collections, midi_dirs=tuple(args.midi),
                         audio_dirs=tuple(args.audio), out=args.out,
                         rebuild=args.rebuild, max_pieces=args.max_pieces,
                         key_relative=not args.absolute_keys, mode_augment=args.mode_augment,
                         ensemble=args.ensemble, workers=args.workers,
                         progress=sys.stderr.isatty(),
                         read=corpus.ReadConfig(keep_drums=args.keep_drums))
    log = (lambda line: print(line, file=sys.stderr)) if args.verbose else None
    summary = build(config, log=log)
    print(format_summary(summary))
    print(f"wrote {args.out} (skipped pieces listed in {args.out}.skipped.txt)")
    return 0
