"""What fine-tuning buys and what it costs: ``python -m engine.evaluation.finetune``.

One composer the shipped generator never heard (by default Monteverdi: the madrigals in
music21's bundled corpus; the generator's data is O'Neill, Ryan's Mammoth, Aird's Airs and
the Bach chorales) is taken as a user would bring it: the top part of each madrigal
written as a ``.mid`` file into a folder, ``pieces`` of them to fine-tune on (the command
holds a sixth of those out for early stopping) and the others, in a folder of their own,
the composer's held-out pieces.  The split is by the SHA-1 of the file names.

The shipped model is fine-tuned (``engine.training.train.fine_tune``, one CPU thread, a wall-time
budget of ``minutes``) with the L2-SP guard and without it (and, with ``--replay``, with
rehearsal of its own training data), and measured:

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

The ensemble (``--model engine/models/ensemble.npz``) is measured the same way on a
composer it never heard (by default Palestrina: his masses in music21's corpus, every part
of a score written to the ``.mid`` file, read with voices as ``ostinato data --ensemble``
reads a folder); its own held-out music is the "test" split of ``data/ensemble.npz``
(``--own-data``).  The critic is not trained for it: ``quality.HeldOut`` and the fresh
critic read one line.

``--seeds 0 1 2`` fine-tunes each guard once per training seed (the seed of the batches
and of the weights' start): the composer and own NLL changes then get a mean and a 95 %
t-interval over the seeds (``seed_summary``).

Writes ``engine/models/finetune.json``: the one-line measurement at its top level, the
ensemble's under ``"ensemble"``, a run with several seeds under ``"seeds"`` (each run
keeps the others' entries).  ``--quick`` is a tiny run for the tests.
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
from engine.training.data import SPLITS, BuildConfig, Dataset, split_code, split_of
from engine.training.finetune import FinetuneConfig, folder_data, read_folders, sources_dataset
from engine.training.model import load_model
from engine.training.train import fine_tune, validate

try:
    from scipy.stats import t as student_t
except ImportError:  # pragma: no cover - scipy is installed with the training extras
    student_t = None

SCORE_SUFFIXES = (".mxl", ".xml", ".musicxml", ".krn")
#: The composer measured with an ensemble model: none of the ensemble's data (``bach-parts``,
#: ``quartets``, ``monteverdi``, Freedoom) is his.
ENSEMBLE_COMPOSER = "palestrina"
#: The most the model's own validation NLL may rise for a guard to be chosen (the issue's
#: bound on what fine-tuning may cost the shipped model's own held-out music).
OWN_LOSS = 0.05


@dataclass(frozen=True)
class MeasureConfig:
    """What is measured and how long it may take."""

    composer: str = "monteverdi"  # for an ensemble model, ENSEMBLE_COMPOSER unless given
    pieces: int = 30              # to fine-tune on (a sixth of them held out for early stop)
    test_pieces: int = 0          # the composer's held-out pieces; 0: all the others
    minutes: float = 4.0          # wall-time budget of each fine-tuning run
    alphas: tuple = (FinetuneConfig.l2sp,)  # L2-SP weights measured (each a run "l2sp ALPHA")
    unguarded: bool = True        # also a run without the guard ("none")
    replays: tuple = ()           # rehearsal shares measured (each a run "replay SHARE")
    replay_l2sp: float = 0.0      # the L2-SP weight of those runs too (0: rehearsal alone)
    own_per_collection: int = 0   # own held-out pieces read per collection; 0: all
    critic_seeds: tuple = (0, 1, 2)
    critic_pieces: int = 48       # generated pieces per model and seed
    seeds: tuple = (0,)           # training seeds: a fine-tuning run per guard and seed
    own_data: str = "data/ensemble.npz"  # an ensemble's own held-out music: its test split
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


def write_scores(files, folder):
    """Write every part of each score as ``folder/<stem>.mid``, a track a part (what a
    composer brings for the ensemble, which gives each track a voice)."""
    from music21 import converter
    folder.mkdir(parents=True, exist_ok=True)
    for p in files:
        converter.parse(str(p)).write("midi", fp=str(folder / f"{p.stem}.mid"))


def ensemble_own_sets(vocab, path):
    """(test pieces, valid pieces, pieces per source of the test split) of the ensemble's
    own dataset file ``path``; ModelError-like InvalidMessage if it is missing or its
    vocabulary is not the model's."""
    if not Path(path).exists():
        raise InvalidMessage(f"own_data: {path} does not exist", field="own_data",
                             allowed="the ensemble's dataset (ostinato data --ensemble)")
    ds = Dataset.load(path)
    if ds.vocab != vocab:
        raise InvalidMessage(f"own_data: {path}'s vocabulary is not the model's",
                             field="own_data", allowed="the dataset the model was trained on")
    counts = {}
    for i in ds.piece_rows("test"):
        counts[str(ds.sources[i])] = counts.get(str(ds.sources[i]), 0) + 1
    return ds.pieces("test"), ds.pieces("valid"), counts


def seed_summary(values, level=0.95):
    """Mean, sample standard deviation and a ``level`` Student-t interval of ``values``."""
    v = np.asarray(values, np.float64)
    mean = float(v.mean())
    if len(v) < 2:
        return dict(n=len(v), mean=mean, sd=None, ci95=None)
    sd = float(v.std(ddof=1))
    half = float(student_t.ppf(0.5 + level / 2, len(v) - 1)) * sd / np.sqrt(len(v))
    return dict(n=len(v), mean=mean, sd=sd, ci95=[mean - half, mean + half])


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
    ensemble = vocab.n_voices > 0
    if ensemble:  # the critic reads one line (quality.HeldOut)
        cfg = replace(cfg, critic_seeds=())
    files = composer_files(cfg.composer)
    test_n = cfg.test_pieces or len(files) - cfg.pieces
    if cfg.pieces < 2 or test_n < 1 or cfg.pieces + test_n > len(files):
        raise InvalidMessage(f"pieces: {cfg.pieces} to fine-tune on and {test_n} held out do "
                             f"not fit {cfg.composer}'s {len(files)} scores", field="pieces",
                             allowed=f"2..{len(files) - 1} and test_pieces <= the rest")
    if not cfg.seeds:
        raise InvalidMessage("seeds: no training seed", field="seeds", allowed="one or more")
    if not (cfg.alphas or cfg.unguarded or cfg.replays):
        raise InvalidMessage("l2sp: no run to measure (no L2-SP weight, no unguarded run, no "
                             "replay share)", field="l2sp", allowed="at least one run")
    write = write_scores if ensemble else write_top_lines
    with tempfile.TemporaryDirectory(prefix="ostinato-ft-eval-") as tmp:
        work = Path(work or tmp)
        tune_dir, test_dir = work / "finetune", work / "heldout"
        write(files[:cfg.pieces], tune_dir)
        write(files[cfg.pieces:cfg.pieces + test_n], test_dir)
        data, report = folder_data([tune_dir], vocab, True, cfg.finetune.valid_pieces,
                                   cfg.finetune.min_notes)
        sources, _ = read_folders([test_dir], ensemble)
        test_ds = as_test(sources_dataset(sources, vocab, True))
        composer_test = all_pieces(test_ds)
        if ensemble:
            own_test, own_valid, own_counts = ensemble_own_sets(vocab, cfg.own_data)
        else:
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
        guards = {f"l2sp {a:g}": replace(cfg.finetune, guard="l2sp", l2sp=a)
                  for a in cfg.alphas}
        if cfg.unguarded:
            guards["none"] = replace(cfg.finetune, guard="none")
        # rehearsal: the model's own training pieces mixed in (its test split stays held out)
        own_path = cfg.own_data if ensemble else BuildConfig.out
        both = f" + l2sp {cfg.replay_l2sp:g}" if cfg.replay_l2sp else ""
        for r in cfg.replays:
            guards[f"replay {r:g}{both}"] = replace(
                cfg.finetune, guard="l2sp" if cfg.replay_l2sp else "none", l2sp=cfg.replay_l2sp,
                replay=r, replay_data=own_path)
        # a run per guard and training seed; with one seed a run is named by its guard
        runs = {(g if len(cfg.seeds) == 1 else f"{g} seed {seed}"): (g, fcfg, seed)
                for g, fcfg in guards.items() for seed in cfg.seeds}
        for name, (guard, fcfg, seed) in runs.items():
            fcfg = replace(fcfg, max_minutes=cfg.minutes)
            out = work / f"run-{name.replace(' ', '-')}"
            t1 = time.monotonic()
            with contextlib.redirect_stdout(sys.stderr):  # train's log lines
                best = fine_tune(data, model, out, fcfg, progress=False, seed=seed,
                                command=f"python -m engine.evaluation.finetune ({name})",
                                report=report)
            wall = time.monotonic() - t1
            tuned, _, _, tmeta = load_model(out / "best.npz")
            rows[name] = dict(guard=guard, seed=seed, valid_nll=best, wall_seconds=wall,
                              step=tmeta["info"]["step"],
                              composer_nll=mean_nll(tuned, composer_test),
                              own_nll=mean_nll(tuned, own_test),
                              own_valid_nll=mean_nll(tuned, own_valid),
                              model=str(out / "best.npz"))
            log(f"{name}: {rows[name]}")
        base = rows["shipped"]
        for name in runs:
            r = rows[name]
            r["composer_gain"] = 1 - r["composer_nll"] / base["composer_nll"]
            r["own_loss"] = r["own_nll"] / base["own_nll"] - 1
            r["own_valid_loss"] = r["own_valid_nll"] / base["own_valid_nll"] - 1
        # over the training seeds, per guard: the mean and its t-interval of each change
        seeds = {g: {k: seed_summary([rows[n][k] for n, (gg, _, _) in runs.items() if gg == g])
                     for k in ("composer_gain", "own_loss", "own_valid_loss", "valid_nll")}
                 for g in guards}
        # the guard chosen on validation alone: the composer's validation pieces (early
        # stopping's) and the model's own "valid" split (means over the seeds), never the
        # test figures above
        fit = [g for g in guards if g != "none" and seeds[g]["own_valid_loss"]["mean"] <= OWN_LOSS]
        chosen = min(fit, key=lambda g: seeds[g]["valid_nll"]["mean"]) if fit else None
        for name in ["shipped", *runs] if cfg.critic_seeds else []:
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
                own_test=dict(source=cfg.own_data if ensemble else "music21 (test split)",
                              pieces=own_counts,
                              tokens=int(sum(len(t) for t, _ in own_test))),
                critic=None if cfg.critic_seeds else
                "not measured: quality.HeldOut and the fresh critic read one line",
                results=rows, seeds=seeds if len(cfg.seeds) > 1 else None,
                threads=torch.get_num_threads(),
                seconds=dict(wall=time.monotonic() - t0, cpu=time.process_time() - cpu0,
                             reading=read_s))


def entry_of(model, seeds):
    """Where a measurement goes in the JSON file: the one-line model's single-seed run is
    the file itself (None), the ensemble's "ensemble", a run with several seeds "seeds"
    (under "ensemble" for the ensemble: "ensemble seeds")."""
    ensemble = load_model(model)[1].n_voices > 0
    if len(seeds) > 1:
        return "ensemble seeds" if ensemble else "seeds"
    return "ensemble" if ensemble else None


ENTRIES = ("ensemble", "seeds", "ensemble seeds")


def write_entry(path, entry, res):
    """Write ``res`` to the JSON file ``path`` at ``entry`` (None: the top level), keeping
    the other entries already there."""
    path = Path(path)
    old = json.loads(path.read_text()) if path.exists() else {}
    res = json_ready(res)
    if entry is None:
        new = dict(res, **{k: old[k] for k in ENTRIES if k in old})
    else:
        new = dict(old, **{entry: res})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(new, indent=1) + "\n")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m engine.evaluation.finetune",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help="the shipped generator (%(default)s) or the ensemble")
    p.add_argument("--composer", default=None,
                   help=f"(default {MeasureConfig.composer}; for the ensemble "
                        f"{ENSEMBLE_COMPOSER})")
    p.add_argument("--pieces", type=int, default=MeasureConfig.pieces)
    p.add_argument("--test-pieces", type=int, default=MeasureConfig.test_pieces,
                   help="the composer's held-out pieces (0: all the others)")
    p.add_argument("--minutes", type=float, default=MeasureConfig.minutes,
                   help="wall-time budget of each fine-tuning run")
    p.add_argument("--l2sp", type=float, nargs="*", default=[FinetuneConfig.l2sp],
                   metavar="ALPHA", help="L2-SP weights, a run each (%(default)s; none: "
                                         "no L2-SP run)")
    p.add_argument("--no-unguarded", action="store_true", help="no run without the guard")
    p.add_argument("--replay", type=float, nargs="*", default=[], metavar="SHARE",
                   help="rehearsal shares of the model's own training data, a run each "
                        "(the ensemble's: --own-data; the generator's: data/dataset.npz)")
    p.add_argument("--replay-l2sp", type=float, default=0.0, metavar="ALPHA",
                   help="the L2-SP weight of the rehearsal runs too (0: rehearsal alone)")
    p.add_argument("--seeds", type=int, nargs="+", default=list(MeasureConfig.seeds),
                   metavar="SEED", help="training seeds, a run per guard each (%(default)s)")
    p.add_argument("--critic-seeds", type=int, nargs="*",
                   default=list(MeasureConfig.critic_seeds), metavar="SEED",
                   help="the fresh critic's seeds (none: no critic) (%(default)s)")
    p.add_argument("--own-data", default=MeasureConfig.own_data,
                   help="the ensemble's own dataset, its test split held out (%(default)s)")
    p.add_argument("--patience", type=int, default=FinetuneConfig.patience,
                   help="validations without improvement before early stop (%(default)s)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1)")
    p.add_argument("--quick", action="store_true", help="a tiny run (tests)")
    p.add_argument("--json", default="engine/models/finetune.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    entry = entry_of(args.model, args.seeds)
    composer = args.composer or (ENSEMBLE_COMPOSER if entry and entry.startswith("ensemble")
                                 else MeasureConfig.composer)
    cfg = MeasureConfig(composer=composer, pieces=args.pieces, test_pieces=args.test_pieces,
                        minutes=args.minutes, alphas=tuple(args.l2sp),
                        unguarded=not args.no_unguarded, replays=tuple(args.replay),
                        replay_l2sp=args.replay_l2sp, seeds=tuple(args.seeds),
                        critic_seeds=tuple(args.critic_seeds), own_data=args.own_data,
                        finetune=replace(MeasureConfig.finetune, patience=args.patience))
    if args.quick:
        cfg = cfg.quick()
    res = measure(args.model, cfg, log=lambda line: print(line, file=sys.stderr))
    write_entry(args.json, entry, res)
    r = res["results"]
    for name, row in r.items():
        extra = "" if name == "shipped" else \
            (f"  composer {-100 * row['composer_gain']:+.1f} %, own {100 * row['own_loss']:+.1f} %"
             f" (valid {100 * row['own_valid_loss']:+.1f} %), composer valid NLL "
             f"{row['valid_nll']:.3f}, {row['wall_seconds']:.0f} s to step {row['step']}")
        critic = f", critic AUC {row['critic_auc']:.3f}" if "critic_auc" in row else ""
        print(f"{name:>8}: composer NLL {row['composer_nll']:.3f}, own NLL {row['own_nll']:.3f}"
              f"{critic}{extra}")
    for guard, per in (res["seeds"] or {}).items():
        print(f"{guard} over seeds {list(cfg.seeds)}: " + ", ".join(
            f"{k} {100 * v['mean']:+.1f} % [{100 * v['ci95'][0]:+.1f}, {100 * v['ci95'][1]:+.1f}]"
            for k, v in per.items() if k != "valid_nll"))
    print(f"chosen on validation ({res['rule']}): {res['chosen']}")
    print(f"wrote {args.json}{'' if entry is None else f' [{entry!r}]'} "
          f"({res['seconds']['cpu']:.0f} s of CPU)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
