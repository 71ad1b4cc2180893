"""A sharded, streaming training set: pieces in shard files, read one shard at a time.

``ostinato data`` writes one ``.npz`` that ``engine.training.data.Dataset`` loads whole;
a studio's library of a million pieces does not fit that way.  Here the pieces of each
split go into shard files of ``pieces_per_shard`` pieces (``train-00000.npz``: tokens
int16, controls float16, piece offsets), listed in a small ``index.json`` (vocabulary,
controls, and per shard its file, pieces and tokens).  ``ShardWriter`` takes pieces one
at a time, so a corpus is never whole in memory when written either.

Training batches are a function of (seed, step) alone, never of the number of
processes: step ``s`` trains on one shard (shards are taken in an order shuffled per
pass from the seed, each for ``steps_per_shard`` consecutive steps, so a reader loads a
shard once per stretch), and its global batch of windows is drawn from
``default_rng([seed, s])``.  Process ``rank`` of ``world`` takes its slice of that
global batch (``batch(step, rank, world)``), so W processes together train on exactly
the windows one process would, and a run resumes at any step on any number of
processes.  At most one shard is held in memory: memory stays flat however many shards
there are.
"""
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.controls import ControlSpec
from engine.ensemble import DRUMS
from engine.errors import OstinatoError
from engine.training.data import SPLITS, windows
from engine.vocab import Vocab

INDEX = "index.json"
FORMAT = 1


def _bad(field, problem, allowed):
    return OstinatoError(f"{field}: {problem} (allowed: {allowed})")


class ShardWriter:
    """Write pieces into shards of ``pieces_per_shard`` pieces per split, then the index
    (``close``, or leaving the ``with``); ``compress``: deflate the shard files."""

    def __init__(self, folder, vocab: Vocab, spec: ControlSpec, pieces_per_shard=1000,
                 summary=None, compress=False):
        if not isinstance(pieces_per_shard, int) or pieces_per_shard < 1:
            raise _bad("pieces_per_shard", f"{pieces_per_shard!r} is not a positive integer",
                       ">= 1")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.vocab, self.spec, self.summary = vocab, spec, dict(summary or {})
        self.pieces_per_shard = pieces_per_shard
        self.save = np.savez_compressed if compress else np.savez
        self.shards = {s: [] for s in SPLITS}
        self._open = {s: [] for s in SPLITS}
        self._pitch_sum, self._pitch_count = 0.0, 0
        self._on = vocab.offsets[1]

    def __enter__(self):
        return self

    def __exit__(self, kind, *exc):
        if kind is None:
            self.close()
        return False

    def add(self, split, tokens, controls):
        """One piece (tokens beginning with START, controls [len, spec.size])."""
        if split not in self.shards:
            raise _bad("split", f"{split!r} is not a split", ", ".join(SPLITS))
        tokens = np.asarray(tokens, np.int16)
        controls = np.asarray(controls, np.float16)
        if controls.shape != (len(tokens), self.spec.size):
            raise _bad("controls", f"shape {controls.shape} does not match {len(tokens)} "
                       f"tokens", f"({len(tokens)}, {self.spec.size})")
        if split == "train":  # the mean register of the training notes, as train.mean_register
            notes = (tokens >= self._on) & (tokens < self._on + 128)
            if self.vocab.n_voices > DRUMS:
                notes &= self.vocab.voices_of(tokens) != DRUMS
            self._pitch_sum += float(np.sum(tokens[notes].astype(np.int64) - self._on))
            self._pitch_count += int(notes.sum())
        self._open[split].append((tokens, controls))
        if len(self._open[split]) == self.pieces_per_shard:
            self._flush(split)

    def _flush(self, split):
        pieces = self._open[split]
        if not pieces:
            return
        name = f"{split}-{len(self.shards[split]):05d}.npz"
        offsets = np.concatenate([[0], np.cumsum([len(t) for t, _ in pieces])]).astype(np.int64)
        with open(self.folder / name, "wb") as f:
            self.save(f, tokens=np.concatenate([t for t, _ in pieces]),
                     controls=np.concatenate([c for _, c in pieces]), offsets=offsets)
        self.shards[split].append(dict(file=name, pieces=len(pieces), tokens=int(offsets[-1])))
        self._open[split] = []

    def close(self):
        """Write the last, partial shards and ``index.json``; return the index's path."""
        for split in SPLITS:
            self._flush(split)
        register = self._pitch_sum / self._pitch_count if self._pitch_count else 67.0
        index = dict(format=FORMAT, vocab=self.vocab.to_dict(), spec=self.spec.to_dict(),
                     summary=self.summary, mean_register=register,
                     pieces_per_shard=self.pieces_per_shard, splits=self.shards)
        path = self.folder / INDEX
        path.write_text(json.dumps(index))
        return path


def write_dataset(data, folder, pieces_per_shard=1000):
    """Shard a built ``Dataset`` (``ostinato data``'s file) into ``folder``."""
    with ShardWriter(folder, data.vocab, data.spec, pieces_per_shard, data.summary) as w:
        for split in SPLITS:
            for tokens, controls in data.pieces(split):
                w.add(split, tokens, controls)
    return Path(folder) / INDEX


@dataclass(frozen=True)
class Schedule:
    """Which windows each step trains on: ``global_batch`` windows of ``seq_len`` tokens
    from one shard, drawn from ``seed``; ``transpose``: the random interval [lo, hi) of
    each window (None: as written)."""
    global_batch: int = 32
    seq_len: int = 128
    seed: int = 0
    transpose: tuple = None


class ShardedDataset:
    """An opened shard folder: its vocabulary and controls, shards read on demand."""

    def __init__(self, folder):
        self.folder = Path(folder)
        path = self.folder / INDEX
        if not path.exists():
            raise OstinatoError(f"shards {self.folder}: no {INDEX} (write one with "
                                f"`python -m engine.training.shards`)")
        try:
            index = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise OstinatoError(f"shards {path}: not a readable index: {exc}") from exc
        if index.get("format") != FORMAT:
            raise OstinatoError(f"shards {path} has format {index.get('format')}, this code "
                                f"reads format {FORMAT}: rewrite them")
        self.vocab = Vocab.from_dict(index["vocab"])
        self.spec = ControlSpec.from_dict(index["spec"])
        self.summary = index["summary"]
        self.key_relative = bool(self.summary.get("key_relative", False))
        self.mean_register = index["mean_register"]
        self.shards = index["splits"]
        self._cached = (None, None)  # (file, (tokens, controls)): the one shard held

    def pieces(self, split):
        return sum(s["pieces"] for s in self.shards.get(split, []))

    def shard(self, split, i):
        """(tokens, controls) of shard ``i`` of ``split``, end to end; the last one read
        stays in memory, no other."""
        name = self.shards[split][i]["file"]
        if self._cached[0] != name:
            self._cached = (None, None)  # drop the old shard before reading the new one
            try:
                with np.load(self.folder / name, allow_pickle=False) as z:
                    self._cached = (name, (z["tokens"], z["controls"]))
            except (OSError, ValueError, KeyError) as exc:
                raise OstinatoError(f"shard {self.folder / name}: unreadable: {exc}") from exc
        return self._cached[1]

    def _usable(self, split, seq_len):
        usable = [i for i, s in enumerate(self.shards.get(split, [])) if s["tokens"] > seq_len + 1]
        if not usable:
            raise _bad("seq_len", f"{seq_len} is longer than every {split} shard of "
                       f"{self.folder}", "shorter than a shard's tokens")
        return usable

    def steps_per_shard(self, schedule):
        """Consecutive steps on one shard: about one pass over a mean shard's tokens."""
        shards = self.shards["train"]
        mean_tokens = sum(s["tokens"] for s in shards) / len(shards)
        return max(1, round(mean_tokens / (schedule.seq_len * schedule.global_batch)))

    def shard_of(self, step, schedule, per=None):
        """The training shard step ``step`` draws from (a function of seed and step)."""
        usable = self._usable("train", schedule.seq_len)
        slot = step // (per or self.steps_per_shard(schedule))
        order = np.random.default_rng([schedule.seed, slot // len(usable), 1]).permutation(
            len(usable))
        return usable[order[slot % len(usable)]]

    def batch(self, step, schedule: Schedule, rank=0, world=1):
        """The slice ``rank`` of ``world`` of step ``step``'s global batch: x_tokens int64
        [B/W, T], x_controls float32 [B/W, T, C], y_tokens int64 [B/W, T]."""
        b, t = schedule.global_batch, schedule.seq_len
        if b % world:
            raise _bad("global_batch", f"{b} is not a multiple of the {world} processes",
                       f"a multiple of {world}")
        tokens, controls = self.shard("train", self.shard_of(step, schedule))
        rng = np.random.default_rng([schedule.seed, step])
        starts = rng.integers(0, len(tokens) - t, size=b)
        lo, hi = schedule.transpose if schedule.transpose else (0, 1)
        ks = rng.integers(lo, hi, size=b)
        part = slice(rank * b // world, (rank + 1) * b // world)
        x, c, y, _ = windows(tokens, controls, starts[part], t, ks[part], self.vocab, self.spec)
        return x, c, y

    def eval_windows(self, split, seq_len, max_windows=None):
        """Non-overlapping windows of a split, shard by shard, untransposed, at most
        ``max_windows``: (x, c, y) arrays."""
        xs, cs, ys, n = [], [], [], 0
        for i in self._usable(split, seq_len):
            tokens, controls = self.shard(split, i)
            starts = np.arange(0, len(tokens) - seq_len, seq_len)
            if max_windows:
                starts = starts[:max_windows - n]
            x, c, y, _ = windows(tokens, controls, starts, seq_len, np.zeros(len(starts)),
                                 self.vocab, self.spec)
            xs.append(x), cs.append(c), ys.append(y)
            n += len(starts)
            if max_windows and n >= max_windows:
                break
        return np.concatenate(xs), np.concatenate(cs), np.concatenate(ys)


def synthetic(folder, pieces, vocab=None, spec=None, piece_len=64, pieces_per_shard=1000,
              seed=0, valid_share=0.05, compress=True):
    """A synthetic corpus of ``pieces`` random pieces of ``piece_len`` tokens (START, then
    notes, offs and time shifts) for measuring and testing: written piece by piece."""
    vocab = vocab or Vocab()
    spec = spec or ControlSpec()
    rng = np.random.default_rng(seed)
    o = vocab.offsets
    n_valid = max(1, int(math.ceil(pieces * valid_share)))
    with ShardWriter(folder, vocab, spec, pieces_per_shard,
                     dict(key_relative=True, synthetic=True), compress) as w:
        for i in range(pieces):
            body = rng.integers(o[1], o[4], size=piece_len - 1)
            tokens = np.concatenate([[o[0]], body])
            controls = np.repeat(rng.random((1, spec.size)), piece_len, axis=0)
            w.add("valid" if i < n_valid else "train", tokens, controls)
    return Path(folder) / INDEX


def main(argv=None):
    import argparse
    from engine.training.data import Dataset
    p = argparse.ArgumentParser(prog="python -m engine.training.shards",
                                description="shard a dataset from `ostinato data`")
    p.add_argument("--data", default="data/dataset.npz")
    p.add_argument("--out", required=True, help="shard folder")
    p.add_argument("--pieces-per-shard", type=int, default=1000)
    a = p.parse_args(argv)
    path = write_dataset(Dataset.load(a.data), a.out, a.pieces_per_shard)
    index = json.loads(path.read_text())
    print(", ".join(f"{s}: {len(v)} shards" for s, v in index["splits"].items()) + f" -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
