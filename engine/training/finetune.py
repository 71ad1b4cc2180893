"""Fine-tuning: a shipped model adapted to a folder of a composer's own pieces.

``ostinato train --init MODEL --midi DIR`` (or ``--init MODEL --data NPZ --finetune``)
starts from a model file (the generator, ``engine/models/default.npz``, or the ensemble,
``engine/models/ensemble.npz``) and trains it on the new pieces with
``engine.training.train.train``:

- **Reading.** Each folder is read as ``ostinato data --midi`` reads it: for a one-line
  model every track of a file merged into one line, for a model whose vocabulary has
  voices as ``ostinato data --ensemble`` reads a MIDI folder (``engine.training.multipart``:
  each track given a voice).  The pieces are tokenised by ``engine.training.data.build`` (the
  one definition of a dataset: moved to C, duplicates and too-short pieces skipped), into a
  temporary file that is read back into memory.  A folder that is missing, unreadable or
  holds no MIDI file, and a file that cannot be read or has no notes, is reported with its
  reason and the run goes on with the rest; only when nothing is left does it stop.
- **Hold-out.** ``valid_pieces`` pieces (by default a sixth, at least one) are held out
  for validation and early stopping, chosen by the SHA-1 of their ids: the same pieces on
  every run and machine, whatever order the files are listed in.
- **The guard against forgetting: L2-SP** (Li, Grandvalet & Davoine, "Explicit inductive
  bias for transfer learning with convolutional networks", ICML 2018): the loss gains
  ``alpha * ||w - w0||^2``, a pull of every weight towards the starting model's.  It needs
  nothing but the model file, where replaying a share of the original data would need
  ``data/dataset.npz`` (3.4 M tokens built from music21's corpus in tens of minutes, absent
  on a user's machine, and for the ensemble the Freedoom WADs too); and it costs one vector
  operation a step, where EWC would need the original data for its Fisher information.
  ``guard="none"`` trains without it (for measuring what it does).
- **Rehearsal, where the original data is at hand** (``replay``, ``replay_data``): pieces
  of the starting model's own training split are mixed into the composer's until they make
  a share of the training events (``with_replay``); validation and early stopping stay on
  the composer's pieces.  It combines with either guard.
- **Training** is ``engine.training.train.train`` (``train.finetune`` gives it
  ``train_settings``): the fine-tuning defaults of ``FinetuneConfig``, a cosine schedule,
  a validation every ``eval_every`` steps, early stop after ``patience`` without
  improvement, a wall-time budget.
- **The result** is ``OUT/best.npz``, written by the same ``save_model`` as every training
  run (the model file format ``serve --model`` and ``generate --model`` read), its
  ``meta.info.finetune`` naming the starting model, the guard and the pieces.

``describe`` is what the command prints: pieces, notes, voices found, keys and every
piece or folder left out.
"""
import hashlib
import os
import sys
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from engine.controls import KEY_NAMES, MODES, find_key, pitched
from engine.ensemble import VOICES
from engine.errors import InvalidMessage, InvalidMidi, ModelError, OstinatoError
from engine.modelfile import read_model_file
from engine.training import corpus
from engine.training.data import SPLITS, BuildConfig, Dataset, build, split_code
from engine.training.model import ModelConfig, load_model

GUARDS = ("l2sp", "none")


@dataclass(frozen=True)
class FinetuneConfig:
    """How a model is adapted.  The training settings are the defaults ``ostinato train``
    takes when it fine-tunes (each can be given on the command line)."""

    guard: str = "l2sp"          # "l2sp" (see the module docstring) or "none"
    l2sp: float = 0.3            # alpha: loss += alpha * sum over weights (w - w0)^2
    valid_pieces: int = 0        # pieces held out for early stopping; 0: a sixth, >= 1
    steps: int = 1000
    lr: float = 5e-4
    batch_size: int = 16
    seq_len: int = 128
    eval_every: int = 25
    patience: int = 4
    max_minutes: float = 10.0
    min_notes: int = 16          # shorter pieces are skipped, as ``ostinato data`` does
    replay: float = 0.0          # share of the training events from the model's own data
    replay_data: str = ""        # that data: the dataset the starting model was trained on

    def __post_init__(self):
        if self.guard not in GUARDS:
            raise InvalidMessage(f"guard: {self.guard!r} is not a guard", field="guard",
                                 allowed=", ".join(GUARDS))
        if not (self.l2sp >= 0 and self.valid_pieces >= 0 and self.steps >= 1
                and self.lr > 0 and self.batch_size >= 1 and self.seq_len >= 2
                and self.eval_every >= 1 and self.patience >= 1 and self.max_minutes >= 0):
            raise InvalidMessage(f"impossible fine-tuning config {self}", field="config",
                                 allowed="l2sp >= 0, valid_pieces >= 0, steps, batch_size, "
                                         "eval_every, patience >= 1, seq_len >= 2, lr > 0")
        if not 0 <= self.replay < 1:
            raise InvalidMessage(f"replay: {self.replay} is not a share", field="replay",
                                 allowed="0 <= replay < 1")
        if self.replay and not self.replay_data:
            raise InvalidMessage("replay_data: replay needs the starting model's dataset",
                                 field="replay_data", allowed="a dataset file (ostinato data)")


# -- reading the folders -------------------------------------------------------------------
def folder_tasks(folder, ensemble):
    """(source name, tasks) of one MIDI folder, or InvalidMidi naming the folder and why it
    gives nothing (missing, not a folder, unreadable, no MIDI file in it)."""
    root = Path(folder)
    if not root.exists():
        raise InvalidMidi(f"{folder}: no such folder")
    if not root.is_dir():
        raise InvalidMidi(f"{folder}: not a folder")
    if not os.access(root, os.R_OK | os.X_OK):
        raise InvalidMidi(f"{folder}: unreadable folder (permission denied)")
    source = f"midi:{root.resolve()}"
    try:
        files = corpus.source_files(source)
    except OSError as exc:
        raise InvalidMidi(f"{folder}: unreadable folder ({exc.strerror or exc})") from None
    if not files:
        raise InvalidMidi(f"{folder}: empty: no MIDI file ({', '.join(corpus.MIDI_SUFFIXES)}) "
                          "in it or below it")
    if ensemble:
        from engine.training import multipart  # music21 and symusic only when asked for
        return source, multipart.ensemble_tasks(source, files)
    return source, corpus.source_tasks(source, files)


def read_folders(folders, ensemble, progress=False):
    """(sources, problems): for ``build``'s ``sources``, (source, pieces, skipped, info) of
    each folder that gave pieces (notes read as ``ostinato data`` reads them), and one line
    "folder: reason" per folder that gave none."""
    sources, problems = [], []
    cfg = corpus.ReadConfig(keep_drums=ensemble)  # an ensemble's drums are a voice
    for folder in folders:
        try:
            source, tasks = folder_tasks(folder, ensemble)
        except InvalidMidi as exc:
            problems.append(str(exc))
            continue
        pieces, skipped = corpus.read_all(tasks, cfg, workers=1, progress=progress,
                                          desc=Path(folder).name)
        sources.append((source, pieces, skipped, {"folder": str(folder),
                                                  "files": len(tasks)}))
    return sources, problems


def piece_keys(sources, ensemble, min_notes):
    """Counter of "C major"-style keys of the pieces, found as ``build`` finds a MIDI
    piece's key (Krumhansl-Kessler over its pitched voices)."""
    keys = Counter()
    for _, pieces, _, _ in sources:
        for p in pieces:
            tonal = pitched(p.notes, ensemble)
            if len(p.notes) >= min_notes and len(tonal):
                tonic, mode = find_key(tonal)[:2]
                keys[f"{KEY_NAMES[tonic]} {MODES[mode]}"] += 1
    return keys


def sources_dataset(sources, vocab, key_relative, min_notes=16, log=None):
    """A ``Dataset`` in memory of pieces read elsewhere (``build``'s ``sources``), tokenised
    by ``build`` in ``vocab``'s way (one line, or with voices), split by ``split_of`` as
    ``ostinato data`` splits (``holdout`` re-splits it)."""
    with tempfile.TemporaryDirectory(prefix="ostinato-finetune-") as tmp:
        out = Path(tmp) / "pieces.npz"
        build(BuildConfig(out=str(out), key_relative=key_relative, ensemble=vocab.n_voices > 0,
                          min_notes=min_notes, progress=False,
                          read=corpus.ReadConfig(ticks_per_beat=vocab.ticks_per_beat)),
              log=log, sources=sources)
        ds = Dataset.load(out)
    if ds.vocab != vocab:
        raise ModelError(f"the pieces' vocabulary {ds.vocab.to_dict()} is not the model's "
                         f"{vocab.to_dict()}")
    return ds


def holdout(ds, valid_pieces=0, keep_test=True):
    """``ds`` with its pieces (all but "test", or with ``keep_test`` false all of them)
    re-split: ``valid_pieces`` of them (0: a sixth, at least 1) held out as "valid", chosen
    by the SHA-1 of their ids, the others "train"; a parallel-mode copy of a held-out piece
    is dropped (it would leak into training).
    InvalidMessage when fewer than two pieces leave nothing to train or to validate on."""
    test = split_code("test") if keep_test else -1
    rows = [i for i in range(len(ds)) if ds.split[i] != test]
    originals = [i for i in rows if not str(ds.ids[i]).endswith("#parallel")]
    n = len(originals)
    k = valid_pieces or max(1, round(n / 6))
    if n < 2 or k >= n:
        raise InvalidMessage(f"valid_pieces: {n} piece(s) to learn from, {k} held out for validation leave "
                             "none to train on", field="valid_pieces",
                             allowed=f"at least 2 pieces, and valid_pieces < {max(n, 1)}")
    digest = lambda i: hashlib.sha1(str(ds.ids[i]).encode("utf-8")).hexdigest()
    held = {str(ds.ids[i]) for i in sorted(originals, key=digest)[:k]}
    keep, code = [], []
    for i in range(len(ds)):
        pid = str(ds.ids[i])
        if ds.split[i] == test:
            keep.append(i), code.append(test)
        elif pid in held:
            keep.append(i), code.append(split_code("valid"))
        elif pid.split("#")[0] not in held:
            keep.append(i), code.append(split_code("train"))
    tok, ctl, off, ids, sources = _pieces([(ds, i) for i in keep])
    on = ds.vocab.offsets[1]  # note-on tokens: one per note
    per = [(SPLITS[c], tok[off[j]:off[j + 1]]) for j, c in enumerate(code)]
    summary = dict(ds.summary, held_out=sorted(held))
    summary["pieces"] = {s: sum(1 for x, _ in per if x == s) for s in SPLITS}
    summary["tokens"] = {s: sum(len(t) for x, t in per if x == s) for s in SPLITS}
    summary["notes"] = {s: sum(int(((t >= on) & (t < on + 128)).sum()) for x, t in per if x == s)
                        for s in SPLITS}
    return Dataset(tok, ctl, off, ids, sources, np.array(code, np.int8), ds.vocab, ds.spec,
                   summary)


def _pieces(rows):
    """(tokens, controls, offsets, ids, sources) of the pieces ``rows`` ((dataset, index)
    pairs) in that order: the arrays of a ``Dataset`` made of them."""
    parts = [(d, int(d.offsets[i]), int(d.offsets[i + 1]), i) for d, i in rows]
    return (np.concatenate([d.tokens[a:b] for d, a, b, _ in parts]),
            np.concatenate([d.controls[a:b] for d, a, b, _ in parts]),
            np.cumsum([0] + [b - a for _, a, b, _ in parts]).astype(np.int64),
            np.array([d.ids[i] for d, _, _, i in parts]),
            np.array([d.sources[i] for d, _, _, i in parts]))


def folder_data(folders, vocab, key_relative, valid_pieces=0, min_notes=16, progress=False):
    """(dataset, report) of MIDI folders for a model of vocabulary ``vocab``: read
    (``read_folders``), tokenised (``sources_dataset``), held out (``holdout``).  The report
    (what ``describe`` prints) holds the build summary, the keys and every problem.
    OstinatoError naming each folder and its problem when none gives a piece."""
    ensemble = vocab.n_voices > 0
    sources, problems = read_folders(folders, ensemble, progress)
    skipped = []
    if not any(pieces for _, pieces, _, _ in sources):
        why = problems + [f"{info['folder']}/{pid}: {reason}" for _, _, sk, info in sources
                          for pid, reason in sk]
        raise OstinatoError("no piece to learn from: " + "; ".join(why or ["no folder given"]))
    ds = sources_dataset(sources, vocab, key_relative, min_notes, log=skipped.append)
    ds = holdout(ds, valid_pieces, keep_test=False)  # every piece is the user's to learn from
    folder_of = {s: info["folder"] for s, _, _, info in sources}
    skipped = [_name_file(line, folder_of) for line in skipped]
    report = dict(summary=ds.summary, keys=dict(piece_keys(sources, ensemble, min_notes)),
                  problems=problems, skipped=skipped, ensemble=ensemble,
                  files=sum(info["files"] for _, _, _, info in sources))
    return ds, report


def _name_file(line, folder_of):
    """A ``build`` skip line "piece id: reason" (ids relative to their folder), with the
    folder put before the id so the user can find the file."""
    if len(folder_of) == 1:
        return f"{next(iter(folder_of.values())).rstrip('/')}/{line}"
    return line


def describe(report, ds):
    """The lines the command prints: what it learned from and what it left out."""
    s = report["summary"]
    lines = []
    for p in report["problems"]:
        lines.append(f"skipped folder {p}")
    for p in report["skipped"]:
        lines.append(f"skipped {p}")
    tr, va = (s["pieces"][x] for x in ("train", "valid"))
    notes, events = (s[k]["train"] + s[k]["valid"] for k in ("notes", "tokens"))
    lines.append(f"learning from {tr + va} pieces of {report['files']} files "
                 f"({tr} to train on, {va} held out for validation): {notes} notes, "
                 f"{events} events")
    if report["ensemble"]:
        voices = s.get("voices", {})
        found = ", ".join(f"{v} {sum(voices.get(v, {}).values())} notes" for v in VOICES)
        lines.append(f"voices found: {found}")
    else:
        lines.append("voices: one line (every track of a file merged, as the generator plays)")
    keys = sorted(report["keys"].items(), key=lambda kv: (-kv[1], kv[0]))
    lines.append("keys (each piece moved to C): " + (", ".join(f"{k} {n}" for k, n in keys)
                                                     or "not recorded in the dataset"))
    lines.append("held out: " + ", ".join(s.get("held_out", [])))
    return lines


# -- the guards ------------------------------------------------------------------------------
def with_replay(ds, own_path, share, seed=0):
    """``ds`` with pieces of the dataset file ``own_path`` (its "train" split, in an order
    drawn with ``seed``) added to the "train" split until they make ``share`` of its
    training events; the "valid" split (early stopping) stays the composer's alone.
    ModelError when the file's vocabulary is not ``ds``'s."""
    own = Dataset.load(own_path)
    if own.vocab != ds.vocab:
        raise ModelError(f"replay_data: {own_path}'s vocabulary {own.vocab.to_dict()} is not "
                         f"the model's {ds.vocab.to_dict()}")
    rows = own.piece_rows("train")
    want = share / (1 - share) * len(ds.stream("train")[0])
    picked, total = [], 0
    for i in np.random.default_rng(seed).permutation(rows):
        if total >= want:
            break
        picked.append(int(i))
        total += int(own.offsets[i + 1] - own.offsets[i])
    summary = dict(ds.summary, replay=dict(data=str(own_path), share=share, pieces=len(picked),
                                           tokens=total))
    split = np.concatenate([ds.split, np.full(len(picked), split_code("train"), np.int8)])
    return Dataset(*_pieces([(ds, i) for i in range(len(ds))] + [(own, i) for i in picked]),
                   split, ds.vocab, ds.spec, summary)


def l2sp_penalty(init, alpha):
    """The L2-SP term as a function of the model being trained: ``alpha`` times the sum
    over its weights of the squared distance to those of the model file ``init``."""
    _, arrays = read_model_file(init)
    anchor = {k: torch.from_numpy(np.array(v, np.float32)) for k, v in arrays.items()}

    def penalty(model):
        total = 0.0
        for name, w in model.named_parameters():
            a = anchor[name]
            if a.device != w.device:
                a = anchor[name] = a.to(w.device)
            total = total + ((w - a) ** 2).sum()
        return alpha * total
    return penalty


def train_settings(ds, init, config=FinetuneConfig(), report=None):
    """The keyword arguments of ``engine.training.train.train`` that fine-tune the model
    file ``init`` on ``ds`` (its "train" split; early stopping on its "valid" split): the
    model's config, the guard's penalty, the training settings, and ``info.finetune`` for
    the model file (the starting model, the guard and the pieces).
    ``engine.training.train.finetune`` runs it."""
    meta, _ = read_model_file(init)
    n_valid = len(ds.stream("valid")[0])
    n_train = len(ds.stream("train")[0])
    seq_len = min(config.seq_len, (n_valid - 1) // 2, n_train - 1)
    if seq_len < 2:
        raise InvalidMessage(f"pieces: too little music, {n_train} training and {n_valid} "
                             "validation events", field="pieces", allowed="longer or more pieces")
    penalty = l2sp_penalty(init, config.l2sp) if config.guard == "l2sp" else None
    info = dict(finetune=dict(init=str(init), init_command=meta["info"].get("command"),
                              **asdict(config), seq_len_used=seq_len,
                              pieces={s: len(ds.piece_rows(s)) for s in ("train", "valid")},
                              held_out=list(ds.summary.get("held_out", [])),
                              keys=(report or {}).get("keys")))
    return dict(cfg=ModelConfig(**meta["config"]), steps=config.steps,
                batch_size=config.batch_size, seq_len=seq_len, lr=config.lr,
                eval_every=config.eval_every, patience=config.patience,
                max_minutes=config.max_minutes or None, init=init, penalty=penalty, info=info)


def config_from_args(args):
    """A ``FinetuneConfig`` from ``ostinato train``'s options (None: the config's default)."""
    base = FinetuneConfig()
    pick = lambda name: getattr(args, name) if getattr(args, name, None) is not None \
        else getattr(base, name)
    return FinetuneConfig(guard=pick("guard"), l2sp=pick("l2sp"), replay=pick("replay"),
                          replay_data=pick("replay_data"),
                          valid_pieces=pick("valid_pieces"), steps=pick("steps"), lr=pick("lr"),
                          batch_size=pick("batch_size"), seq_len=pick("seq_len"),
                          eval_every=pick("eval_every"), patience=pick("patience"),
                          max_minutes=pick("max_minutes"))


def prepare(args):
    """(dataset, report, config) of ``ostinato train --init MODEL --midi DIR ...`` (or
    ``--data NPZ --finetune``), having printed what it learned from (``describe``)."""
    if not args.init:
        raise InvalidMessage("init: fine-tuning needs --init MODEL, the model to start from",
                             field="init", allowed="a model file, e.g. engine/models/default.npz")
    config = config_from_args(args)
    _, vocab, _, meta = load_model(args.init)
    key_relative = bool(meta["info"].get("key_relative", True))
    if args.midi:
        ds, report = folder_data(args.midi, vocab, key_relative, config.valid_pieces,
                                 config.min_notes, progress=sys.stderr.isatty())
    else:
        ds = holdout(Dataset.load(args.data or "data/dataset.npz"), config.valid_pieces)
        report = dict(summary=ds.summary, keys={}, problems=[], skipped=[],
                      ensemble=ds.vocab.n_voices > 0, files=len(ds))
    for line in describe(report, ds):
        print(line)
    return ds, report, config
