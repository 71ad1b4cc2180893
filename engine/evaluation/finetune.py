"""What fine-tuning buys and what it costs: ``python -m engine.evaluation.finetune``.

One composer the shipped generator never heard (by default Monteverdi: the madrigals in
music21's bundled corpus; the generator's data is O'Neill, Ryan's Mammoth, Aird's Airs and
the Bach chorales) is taken as a user would bring it: the top part of each madrigal
written as a ``.mid`` file into a folder, ``pieces`` of them to fine-tune on (the command
holds a sixth of those out for early stopping) and the others, in a folder of their own,
the composer's held-out pieces.  The split is by the SHA-1 of the file names.

The shipped model is fine-tuned (``engine.training.train.fine_tune``, one CPU thread, a wall-time
budget of ``minutes``) with the L2-SP guard and without it, and measured:

- **composer NLL**: nats per event of the composer's held-out pieces, shipped against
  fine-tuned (the target: at least 15 % lower);
- **own NLL**: the shipped model's own held-out music, its dataset's "test" split rebuilt
  from music21's corpus: the pieces of the four collections that ``split_of`` puts in
  "test", read and tokenised as ``ostinato data`` builds ``data/dataset.npz`` (which need
  not exist here); what fine-tuning loses on it (the target: at most 5 %);
- **fresh critic AUC** (``engine.evaluation.scorers.fresh_critic_auc``, the ConvCritic of
  ``ostinato quality``): 8-bar windows of the composer's held-out pieces against those of
  pieces each model composes through the sampler the server plays, asked for the held-out
  pieces' modes, densities and registers (``quality.HeldOut``); a mean over seeds.

Writes ``engine/models/finetune.json``.  ``--quick`` is a tiny run for the tests.
"""
import argparse
import contextlib
import hashlib
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from engine import DEFAULT_MODEL
from engine.controls import to_tonic_c
from engine.errors import InvalidMessage
from engine.evaluation.likelihood import mean_nll
from engine.evaluation.pieces import windows
from engine.evaluation.quality import HeldOut, QualityConfig
from engine.evaluation.scorers import fresh_critic_auc
from engine.generate import Request, generate_many
from engine.metrics import json_ready
from engine.training import corpus
from engine.training.data import SPLITS, Dataset, split_code, split_of
from engine.training.finetune import FinetuneConfig, folder_data, read_folders, sources_dataset
from engine.training.model import load_model
from engine.training.train import fine_tune, validate

SCORE_SUFFIXES = (".mxl", ".xml", ".musicxml", ".krn")
#: The most the model's own validation NLL may rise for a guard to be chosen (the issue's
#: bound on what fine-tuning may cost the shipped model's own held-out music).
OWN_LOSS = 0.05


@dataclass(frozen=True)
class MeasureConfig:
    """What is measured and how long it may take."""

    composer: str = "monteverdi"
    pieces: int = 30              # to fine-tune on (a sixth of them held out for early stop)
    test_pieces: int = 0          # the composer's held-out pieces; 0: all the others
    minutes: float = 4.0          # wall-time budget of each fine-tuning run
    alphas: tuple = (FinetuneConfig.l2sp,)  # L2-SP weights measured (each a run "l2sp ALPHA")
    unguarded: bool = True        # also a run without the guard ("none")
    own_per_collection: int = 0   # own held-out pieces read per collection; 0: all
    critic_seeds: tuple = (0, 1, 2)
    critic_pieces: int = 48       # generated pieces per model and seed
    finetune: FinetuneConfig = FinetuneConfig()
    quality: QualityConfig = QualityConfig()

    def quick(self):
        """A tiny run for the tests: few pieces, a few steps, tiny critics."""
        return replace(self, pieces=6, test_pieces=2, minutes=0.0, own_per_collection=2,
                       critic_seeds=(0,), critic_pieces=4,
                       finetune=replace(self.finetune, steps=4, eval_every=2, seq_len=64),
                       quality=replace(self.quality.quick(), pieces=4))


# -- the music --------------------------------------------------------------------------------
def composer_files(composer):
    """Score files of ``composer`` in music21's bundled corpus, one per piece (of two
    encodings of a piece, the first suffix of ``SCORE_SUFFIXES``), in SHA-1 order of the
    names (a split that never depends on how the corpus lists them)."""
    from music21 import corpus as m21corpus  # seconds to import: only here
    by_stem = {}
    for p in map(Path, m21corpus.getComposer(composer)):
        if p.suffix in SCORE_SUFFIXES:
            old = by_stem.get(p.stem)
            if old is None or SCORE_SUFFIXES.index(p.suffix) < SCORE_SUFFIXES.index(old.suffix):
                by_stem[p.stem] = p
    if not by_stem:
        raise InvalidMessage(f"composer: no score of {composer!r} in music21's corpus",
                             field="composer", allowed="a composer music21.corpus.getComposer "
                                                       "knows (monteverdi, mozart, ...)")
    return sorted(by_stem.values(), key=lambda p: hashlib.sha1(p.name.encode()).hexdigest())


def write_top_lines(files, folder):
    """Write the top part of each score as ``folder/<stem>.mid`` (what a composer brings)."""
    from music21 import converter
    folder.mkdir(parents=True, exist_ok=True)
    for p in files:
        score = converter.parse(str(p))
        top = score.parts[0] if len(score.parts) else score
        top.write("midi", fp=str(folder / f"{p.stem}.mid"))


def all_pieces(ds):
    """(tokens, controls) of every piece of a dataset, whatever its split."""
    return [piece for s in SPLITS for piece in ds.pieces(s)]


def own_test_set(vocab, per_collection=0, split="test"):
    """The shipped generator's own held-out music: the pieces of its dataset's collections
    (``corpus.DEFAULT_COLLECTIONS``) that ``split_of`` puts in ``split`` ("test", or
    "valid" for choosing the guard), read and tokenised as ``ostinato data`` builds them
    (annotated ABC keys, moved to C).  Returns (dataset, pieces per source)."""
    sources = []
    for source in corpus.DEFAULT_COLLECTIONS:
        tasks = [t for t in corpus.source_tasks(source)
                 if split_of(t.group or t.piece_id) == split_code(split)]
        if per_collection:
            tasks = tasks[:per_collection]
        pieces, skipped = corpus.read_all(tasks, corpus.ReadConfig(vocab.ticks_per_beat),
                                          workers=1, progress=False, desc=source)
        sources.append((source, pieces, skipped, {}))
    ds = sources_dataset(sources, vocab, key_relative=True)
    return ds, {s: sum(v["pieces"].values()) for s, v in ds.summary["sources"].items()}


# -- the critic -------------------------------------------------------------------------------
def critic_auc(model_path, real_ds, cfg):
    """Mean over ``cfg.critic_seeds`` of a fresh critic's ROC AUC: the composer's held-out
    pieces (``real_ds``'s "test" split) against pieces ``model_path`` composes for the same
    requests; and the per-seed values."""
    q = replace(cfg.quality, pieces=cfg.critic_pieces)
    held = HeldOut(real_ds, q)
    window = q.window_bars * q.beats_per_bar * real_ds.vocab.ticks_per_beat
    per_seed = []
    for seed in cfg.critic_seeds:
        reqs = [Request(k, m, d, seed=seed * 1_000_003 + i, register=r)
                for i, (k, m, d, r) in enumerate(held.requests)]
        notes = generate_many(str(model_path), reqs, q.bars, beats_per_bar=q.beats_per_bar)
        space = [to_tonic_c(n, r.key) if len(n) else n for n, r in zip(notes, reqs)]
        fake = [windows(real_ds, n, window, held.beats * real_ds.vocab.ticks_per_beat)
                for n in space]
        per_seed.append(fresh_critic_auc(real_ds, held.windows, fake, q, seed))
    return float(np.nanmean(per_seed)), per_seed


def as_test(ds):
    """``ds`` with every piece in its "test" split (what ``HeldOut`` reads)."""
    return Dataset(ds.tokens, ds.controls, ds.offsets, ds.ids, ds.sources,
                   np.full(len(ds), split_code("test"), np.int8), ds.vocab, ds.spec, ds.summary)


# -- the measurement --------------------------------------------------------------------------
def measure(model=DEFAULT_MODEL, cfg=MeasureConfig(), work=None, log=print):
    """Every figure of the module docstring, as a dict."""
    t0, cpu0 = time.monotonic(), time.process_time()
    shipped, vocab, _, meta = load_model(model)
    if vocab.n_voices:
        raise InvalidMessage(f"model: {model} has voices; this measurement is the one-line "
                             "generator's", field="model", allowed="a one-line generator")
    files = composer_files(cfg.composer)
    test_n = cfg.test_pieces or len(files) - cfg.pieces
    if cfg.pieces < 2 or test_n < 1 or cfg.pieces + test_n > len(files):
        raise InvalidMessage(f"pieces: {cfg.pieces} to fine-tune on and {test_n} held out do "
                             f"not fit {cfg.composer}'s {len(files)} scores", field="pieces",
                             allowed=f"2..{len(files) - 1} and test_pieces <= the rest")
    with tempfile.TemporaryDirectory(prefix="ostinato-ft-eval-") as tmp:
        work = Path(work or tmp)
        tune_dir, test_dir = work / "finetune", work / "heldout"
        write_top_lines(files[:cfg.pieces], tune_dir)
        write_top_lines(files[cfg.pieces:cfg.pieces + test_n], test_dir)
        data, report = folder_data([tune_dir], vocab, True, cfg.finetune.valid_pieces,
                                   cfg.finetune.min_notes)
        sources, _ = read_folders([test_dir], False)
        test_ds = as_test(sources_dataset(sources, vocab, True))
        composer_test = all_pieces(test_ds)
        own_ds, own_counts = own_test_set(vocab, cfg.own_per_collection)
        own_test = all_pieces(own_ds)
        own_valid = all_pieces(own_test_set(vocab, cfg.own_per_collection, "valid")[0])
        read_s = time.monotonic() - t0
        log(f"read: {cfg.composer} {report['summary']['pieces']} to fine-tune on, "
            f"{len(composer_test)} held out; own test set {own_counts} [{read_s:.0f} s]")
        rows = {"shipped": dict(model=str(model), composer_nll=mean_nll(shipped, composer_test),
                                own_nll=mean_nll(shipped, own_test),
                                own_valid_nll=mean_nll(shipped, own_valid),
                                valid_nll=validate(shipped, data, cfg.finetune.seq_len,
                                                   cfg.finetune.batch_size, "cpu"))}
        runs = {f"l2sp {a:g}": replace(cfg.finetune, guard="l2sp", l2sp=a) for a in cfg.alphas}
        if cfg.unguarded:
            runs["none"] = replace(cfg.finetune, guard="none")
        for guard, fcfg in runs.items():
            fcfg = replace(fcfg, max_minutes=cfg.minutes)
            out = work / f"run-{guard.replace(' ', '-')}"
            t1 = time.monotonic()
            with contextlib.redirect_stdout(sys.stderr):  # train's log lines
                best = fine_tune(data, model, out, fcfg, progress=False,
                                command=f"python -m engine.evaluation.finetune ({guard})",
                                report=report)
            wall = time.monotonic() - t1
            tuned, _, _, tmeta = load_model(out / "best.npz")
            rows[guard] = dict(valid_nll=best, wall_seconds=wall, step=tmeta["info"]["step"],
                               composer_nll=mean_nll(tuned, composer_test),
                               own_nll=mean_nll(tuned, own_test),
                               own_valid_nll=mean_nll(tuned, own_valid),
                               model=str(out / "best.npz"))
            log(f"{guard}: {rows[guard]}")
        base = rows["shipped"]
        for guard in runs:
            r = rows[guard]
            r["composer_gain"] = 1 - r["composer_nll"] / base["composer_nll"]
            r["own_loss"] = r["own_nll"] / base["own_nll"] - 1
            r["own_valid_loss"] = r["own_valid_nll"] / base["own_valid_nll"] - 1
        # the guard chosen on validation alone: the composer's validation pieces (early
        # stopping's) and the model's own "valid" split, never the test figures above
        fit = [g for g in runs if g != "none" and rows[g]["own_valid_loss"] <= OWN_LOSS]
        chosen = min(fit, key=lambda g: rows[g]["valid_nll"]) if fit else None
        for name in ["shipped", *runs]:
            path = rows[name]["model"]
            rows[name]["critic_auc"], rows[name]["critic_auc_per_seed"] = \
                critic_auc(path, test_ds, cfg)
            log(f"{name}: critic AUC {rows[name]['critic_auc']:.3f}")
        for name in runs:
            rows[name].pop("model")
    return dict(config=asdict(cfg), model=str(model), model_command=meta["info"].get("command"),
                chosen=chosen, rule=f"the lowest composer validation NLL among the guards whose "
                                    f"own valid NLL rises at most {OWN_LOSS:.0%}",
                composer=dict(name=cfg.composer, files=[p.name for p in files[:cfg.pieces]],
                              heldout=[p.name for p in files[cfg.pieces:cfg.pieces + test_n]],
                              summary=report["summary"], keys=report["keys"],
                              skipped=report["skipped"]),
                own_test=dict(pieces=own_counts, tokens=int(sum(len(t) for t, _ in own_test))),
                results=rows, threads=torch.get_num_threads(),
                seconds=dict(wall=time.monotonic() - t0, cpu=time.process_time() - cpu0,
                             reading=read_s))


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m engine.evaluation.finetune",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=DEFAULT_MODEL, help="the shipped generator (%(default)s)")
    p.add_argument("--composer", default=MeasureConfig.composer)
    p.add_argument("--pieces", type=int, default=MeasureConfig.pieces)
    p.add_argument("--test-pieces", type=int, default=MeasureConfig.test_pieces,
                   help="the composer's held-out pieces (0: all the others)")
    p.add_argument("--minutes", type=float, default=MeasureConfig.minutes,
                   help="wall-time budget of each fine-tuning run")
    p.add_argument("--l2sp", type=float, nargs="+", default=[FinetuneConfig.l2sp],
                   metavar="ALPHA", help="L2-SP weights, a run each (%(default)s)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1)")
    p.add_argument("--quick", action="store_true", help="a tiny run (tests)")
    p.add_argument("--json", default="engine/models/finetune.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = MeasureConfig(composer=args.composer, pieces=args.pieces, test_pieces=args.test_pieces,
                        minutes=args.minutes, alphas=tuple(args.l2sp))
    if args.quick:
        cfg = cfg.quick()
    res = measure(args.model, cfg, log=lambda line: print(line, file=sys.stderr))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(json_ready(res), indent=1) + "\n")
    r = res["results"]
    for name, row in r.items():
        extra = "" if name == "shipped" else \
            (f"  composer {-100 * row['composer_gain']:+.1f} %, own {100 * row['own_loss']:+.1f} %"
             f" (valid {100 * row['own_valid_loss']:+.1f} %), composer valid NLL "
             f"{row['valid_nll']:.3f}, {row['wall_seconds']:.0f} s to step {row['step']}")
        print(f"{name:>8}: composer NLL {row['composer_nll']:.3f}, own NLL {row['own_nll']:.3f}, "
              f"critic AUC {row['critic_auc']:.3f}{extra}")
    print(f"chosen on validation ({res['rule']}): {res['chosen']}")
    print(f"wrote {args.json} ({res['seconds']['cpu']:.0f} s of CPU)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
