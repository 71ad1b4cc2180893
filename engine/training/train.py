"""Training: ``ostinato train`` with validation, checkpoints, resume and early stop.

A run folder (``engine.training.runs``) holds ``last.pt`` (weights, optimiser and
progress, for ``--resume``), ``best.npz`` (the best model on validation, in the format
the server loads) and ``log.jsonl`` (one line per validation).
"""
import math
import sys
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from engine.controls import STYLES
from engine.ensemble import DRUMS
from engine.modelfile import read_model_file
from engine.training.data import Dataset
from engine.errors import InvalidMessage, ModelError
from engine.training.model import ModelConfig, MusicLSTM, load_model, save_model
from engine.training import finetune
from engine.training.finetune import GUARDS, FinetuneConfig
from engine.training.runs import Run

STEPS = 20000
# the defaults of a training run that is not fine-tuning (those are FinetuneConfig's)
DEFAULTS = dict(data="data/dataset.npz", steps=STEPS, batch_size=32, seq_len=128, lr=2e-3,
                eval_every=500, patience=6)


def validate(model, data, seq_len, batch_size, device, max_windows=None):
    """Mean cross-entropy (nats per event) over the validation windows."""
    x, c, y = data.eval_windows("valid", seq_len)
    if max_windows:
        x, c, y = x[:max_windows], c[:max_windows], y[:max_windows]
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            xb = torch.as_tensor(x[i:i + batch_size], dtype=torch.long, device=device)
            cb = torch.as_tensor(c[i:i + batch_size], dtype=torch.float32, device=device)
            yb = torch.as_tensor(y[i:i + batch_size], dtype=torch.long, device=device)
            logits, _ = model(xb, cb)
            total += nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), yb.reshape(-1), reduction="sum").item()
            count += yb.numel()
    model.train()
    return total / max(count, 1)


def mean_register(data):
    """Mean pitch of the training notes (an ensemble's pitched voices: a drum's pitch is an
    instrument): the default register when generating."""
    tokens, _ = data.stream("train")
    on = data.vocab.offsets[1]
    t = tokens[(tokens >= on) & (tokens < on + 128) & (data.stream_voices("train") != DRUMS)]
    return float(np.mean(t - on)) if len(t) else 67.0


def start_from(model, path, cfg, vocab, spec=None):
    """Load the weights of the model file ``path`` into ``model``; ModelError unless its
    config and vocabulary are ``cfg`` and ``vocab`` (and its controls ``spec``, if given).
    A model told fewer control blocks starts one told more (``spec.styles`` where it had
    none, ``spec.parts``): the new blocks' input weights start at zero, so it plays as it
    did until training teaches it them."""
    init, init_vocab, init_spec, meta = load_model(path)
    if spec is not None and init_spec != spec and _grows(init_spec, spec):
        grown = dict(meta["config"], n_controls=spec.size)
        if grown != asdict(cfg):
            raise ModelError(f"--init {path}: its config {meta['config']} is not this run's "
                             f"{asdict(cfg)}")
        weights = init.state_dict()
        first = weights["lstm.weight_ih_l0"]
        n_in = first.shape[1] - init_spec.size  # the token embedding's columns come first
        old, cols = init_spec.slices(), [first[:, :n_in]]
        for name, width in spec.layout:
            cols.append(first[:, n_in + old[name].start:n_in + old[name].stop] if name in old
                        else first.new_zeros(first.shape[0], width))
        weights["lstm.weight_ih_l0"] = torch.cat(cols, dim=1)
        model.load_state_dict(weights)
        return
    if meta["config"] != asdict(cfg):
        raise ModelError(f"--init {path}: its config {meta['config']} is not this run's "
                         f"{asdict(cfg)}")
    if init_vocab != vocab:
        raise ModelError(f"--init {path}: its vocabulary {init_vocab.to_dict()} is not the "
                         f"data's {vocab.to_dict()}")
    if spec is not None and init_spec != spec:
        raise ModelError(f"--init {path}: its controls {init_spec.to_dict()} are not the "
                         f"data's {spec.to_dict()}")
    model.load_state_dict(init.state_dict())


def new_columns(init_spec, spec, n_in):
    """The columns of the first LSTM layer's input weights (after ``n_in`` embedding
    columns) that belong to the control blocks of ``spec`` that ``init_spec`` lacks."""
    old, new = init_spec.slices(), spec.slices()
    return [n_in + i for name, sl in new.items() if name not in old
            for i in range(sl.start, sl.stop)]


def only_new(model, columns):
    """The parameters to train when only the new control blocks learn (``--only-new``):
    the first layer's input weights, their gradient kept to ``columns``; every other
    parameter frozen, so the model plays as it did wherever the new blocks are zero."""
    w = model.lstm.weight_ih_l0
    keep = torch.zeros(w.shape[1], dtype=w.dtype, device=w.device)
    keep[columns] = 1
    for p in model.parameters():
        p.requires_grad_(p is w)
    w.register_hook(lambda g: g * keep)
    return [w]


def lr_at(step, steps, lr):
    """The learning rate at ``step`` of ``steps``: a cosine from ``lr`` down to a tenth."""
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(step / steps, 1.0))))


def window_loss(model, x, c, y, device):
    """Mean cross-entropy of ``model`` on a batch of windows (tokens, controls, targets)."""
    xb = torch.as_tensor(x, dtype=torch.long, device=device)
    cb = torch.as_tensor(c, dtype=torch.float32, device=device)
    yb = torch.as_tensor(y, dtype=torch.long, device=device)
    logits, _ = model(xb, cb)
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), yb.reshape(-1))


def model_arguments(p):
    """The network's size options, shared by every training entry point."""
    p.add_argument("--hidden", type=int, default=ModelConfig.hidden)
    p.add_argument("--layers", type=int, default=ModelConfig.layers)
    p.add_argument("--embed", type=int, default=ModelConfig.embed)
    p.add_argument("--dropout", type=float, default=ModelConfig.dropout)


def train(data, out, cfg, *, steps=20000, batch_size=32, seq_len=128, lr=2e-3,
          eval_every=500, patience=6, device="cpu", seed=0, resume=False,
          max_minutes=None, transpose=(-5, 7), valid_windows=None, command=None,
          progress=True, init=None, penalty=None, info=None, new_only=False):
    """Train ``MusicLSTM(cfg)`` on ``data`` into the folder ``out``; return the best
    validation NLL.  ``max_minutes`` bounds the wall time (then it stops like early stop).
    ``transpose``: the random transposition of each window, for absolute-key datasets
    only (a key-relative one trains as written).  ``init``: a model file to start from (the
    stage before, in a run longer than a session, or the model fine-tuning adapts): its
    config, vocabulary and controls must be ``cfg`` and the data's.  ``penalty``: a
    function of the model giving a term added to each step's loss (fine-tuning's guard,
    ``engine.training.finetune``); ``info``: more entries for the model file's ``info``;
    ``new_only``: with an ``init`` told fewer control blocks, train only the new blocks'
    input weights (``only_new``).
    """
    run = Run(out)
    torch.manual_seed(seed)
    model = MusicLSTM(cfg).to(device)
    if init is not None and not resume:
        start_from(model, init, cfg, data.vocab, data.spec)
    params = list(model.parameters())
    if new_only:
        columns = [] if init is None else new_columns(load_model(init)[2], data.spec, cfg.embed)
        if not columns:
            raise InvalidMessage("--only-new trains the control blocks --init lacks, and "
                                 "there are none", field="only_new",
                                 allowed="with --init from a model told fewer control blocks")
        params = only_new(model, columns)
    opt = torch.optim.Adam(params, lr=lr)
    step, best, bad, elapsed = 0, math.inf, 0, 0.0
    rng = np.random.default_rng(seed)
    st = run.resumed(resume, map_location=device)
    if st is not None:
        if st["config"] != asdict(cfg):
            raise ValueError(f"{run.checkpoint}: config {st['config']} differs from {asdict(cfg)}")
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        step, best, bad, elapsed = st["step"], st["best"], st["bad"], st["elapsed"]
        rng = np.random.default_rng([seed, step])
    if data.key_relative:
        transpose = None  # every piece is in C: transposing would teach other tonics
    info = dict(command=command, data=data.summary, mean_register=mean_register(data),
                key_relative=data.key_relative, batch_size=batch_size, seq_len=seq_len, lr=lr,
                device=str(device), **(info or {}))
    batches = data.batches("train", batch_size, seq_len, rng, transpose=transpose)
    running = None
    with run.start(steps, step, elapsed, desc="train", progress=progress,
                   max_minutes=max_minutes):
        while step < steps:
            for g in opt.param_groups:
                g["lr"] = lr_at(step, steps, lr)
            loss = window_loss(model, *next(batches), device)
            opt.zero_grad(set_to_none=True)
            (loss if penalty is None else loss + penalty(model)).backward()
            nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            step += 1
            running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
            run.advance(loss=f"{running:.3f}", best=f"{best:.3f}")
            timed_out = run.out_of_time()
            if step % eval_every == 0 or step == steps or timed_out:
                val = validate(model, data, seq_len * 2, batch_size, device, valid_windows)
                elapsed = run.elapsed()
                improved = val < best - 1e-4
                if improved:
                    best, bad = val, 0
                    save_model(run.folder / "best.npz", model, data.vocab, data.spec,
                               info=dict(info, step=step, valid_nll=val, train_seconds=elapsed))
                else:
                    bad += 1
                run.log(dict(step=step, train=running, valid=val, lr=lr_at(step, steps, lr),
                             seconds=round(elapsed, 1)))
                run.save(dict(model=model.state_dict(), opt=opt.state_dict(), step=step,
                              best=best, bad=bad, elapsed=elapsed, config=asdict(cfg)))
                run.write(f"step {step}: train {running:.4f} valid {val:.4f}"
                          f"{' (best)' if improved else ''} [{elapsed / 60:.1f} min]")
                if bad >= patience:
                    run.write(f"early stop: no improvement in {patience} validations")
                    break
                if timed_out:
                    run.write(f"time budget of {max_minutes} min reached")
                    break
    return best


def fine_tune(data, init, out, config=FinetuneConfig(), report=None, **kwargs):
    """Fine-tune the model file ``init`` on ``data`` (``engine.training.finetune``: its
    "train" split, early stop on its "valid" split, the guard of ``config``) into the run
    folder ``out``; return the best validation NLL.  ``kwargs``: ``train``'s device, seed,
    resume, command, progress."""
    if config.replay:
        data = finetune.with_replay(data, config.replay_data, config.replay, kwargs.get("seed", 0))
    return train(data, out, **finetune.train_settings(data, init, config, report), **kwargs)


def add_arguments(p):
    p.add_argument("--data", default=None,
                   help="dataset from `ostinato data` (default data/dataset.npz)")
    p.add_argument("--out", default="runs/default", help="run folder (checkpoints, log)")
    model_arguments(p)
    p.add_argument("--steps", type=int, default=None, help=f"(default {STEPS}; fine-tuning "
                   f"{FinetuneConfig.steps})")
    p.add_argument("--batch-size", type=int, default=None,
                   help=f"(default 32; fine-tuning {FinetuneConfig.batch_size})")
    p.add_argument("--seq-len", type=int, default=None, help="(default 128)")
    p.add_argument("--lr", type=float, default=None,
                   help=f"(default 2e-3; fine-tuning {FinetuneConfig.lr:g})")
    p.add_argument("--eval-every", type=int, default=None,
                   help=f"(default 500; fine-tuning {FinetuneConfig.eval_every})")
    p.add_argument("--valid-windows", type=int, default=None,
                   help="validate on at most this many windows (default: all)")
    p.add_argument("--patience", type=int, default=None,
                   help=f"validations without improvement (default 6; fine-tuning "
                        f"{FinetuneConfig.patience})")
    p.add_argument("--max-minutes", type=float, default=None,
                   help=f"wall-time budget (default none; fine-tuning "
                        f"{FinetuneConfig.max_minutes:g})")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--export", default=None, help="copy the best model here when done")
    p.add_argument("--styles", action="store_true",
                   help="tell the model each piece's style (engine.controls.STYLES: a control "
                        "block naming the collection's texture, so a game can ask for its own)")
    p.add_argument("--style-dropout", type=float, default=0.2, metavar="SHARE",
                   help="with --styles: the share of training windows told no style, so that "
                        "a request for none plays the mix of all (default 0.2)")
    p.add_argument("--parts", action="store_true",
                   help="tell the model each pitched voice's density (ControlSpec.parts: the "
                        "melody's, bass's and harmony's onsets per beat, as MIDI-GPT's "
                        "per-track density), so a game can ask for a busy harmony over a "
                        "slow melody")
    p.add_argument("--parts-dropout", type=float, default=0.2, metavar="SHARE",
                   help="with --parts: the share of training windows not told them, so that "
                        "a request without them plays as before (default 0.2)")
    p.add_argument("--only-new", action="store_true",
                   help="with --init from a model told fewer control blocks (--styles, "
                        "--parts): train only the new blocks' input weights, the model "
                        "otherwise frozen as it was")
    p.add_argument("--init", default=None, metavar="MODEL",
                   help="start from this model file (a stage before; its size is used)")
    g = p.add_argument_group("fine-tuning (engine.training.finetune): adapt --init to new music")
    g.add_argument("--midi", nargs="+", action="extend", default=[], metavar="DIR",
                   help="fine-tune --init on the MIDI files of these folders (read as "
                        "`ostinato data --midi` reads them; with voices for an ensemble)")
    g.add_argument("--finetune", action="store_true",
                   help="fine-tune --init on --data (held-out pieces, the guard) rather than "
                        "continue a stage")
    g.add_argument("--guard", choices=GUARDS, default=None,
                   help=f"against forgetting: l2sp pulls the weights towards --init's, none "
                        f"(default {FinetuneConfig.guard})")
    g.add_argument("--l2sp", type=float, default=None, metavar="ALPHA",
                   help=f"the L2-SP weight: loss += ALPHA * sum (w - w_init)^2 (default "
                        f"{FinetuneConfig.l2sp:g})")
    g.add_argument("--replay", type=float, default=None, metavar="SHARE",
                   help="rehearsal: this share of the training events from --replay-data, the "
                        "starting model's own dataset (default 0: none)")
    g.add_argument("--replay-data", default=None, metavar="NPZ",
                   help="the dataset --init was trained on (e.g. data/ensemble.npz)")
    g.add_argument("--valid-pieces", type=int, default=None, metavar="N",
                   help="pieces held out for early stopping (default: a sixth, at least 1)")


def run(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.midi or args.finetune:
        ds, report, config = finetune.prepare(args)
        command = "ostinato train " + " ".join(sys.argv[2:])
        best = fine_tune(ds, args.init, args.out, config, device=args.device, seed=args.seed,
                         resume=args.resume, command=command, progress=sys.stderr.isatty(),
                         report=report)
        print(f"best validation NLL {best:.4f} nats/event on the "
              f"{len(ds.piece_rows('valid'))} held-out pieces -> {Path(args.out) / 'best.npz'}")
        _export(args)
        return 0
    for name, value in DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    data = Dataset.load(args.data)
    if args.styles:
        data = data.with_styles(STYLES, args.style_dropout)
    if args.parts:
        data = data.with_parts(args.parts_dropout)
    cfg = ModelConfig(vocab_size=data.vocab.size, n_controls=data.spec.size, embed=args.embed,
                      hidden=args.hidden, layers=args.layers, dropout=args.dropout)
    if args.init:  # the stage before decides the size (and the data the controls)
        cfg = replace(ModelConfig(**read_model_file(args.init)[0]["config"]),
                      n_controls=data.spec.size)
    command = "ostinato train " + " ".join(sys.argv[2:])
    best = train(data, args.out, cfg, steps=args.steps, batch_size=args.batch_size,
                 seq_len=args.seq_len, lr=args.lr, eval_every=args.eval_every,
                 patience=args.patience, device=args.device, seed=args.seed,
                 resume=args.resume, max_minutes=args.max_minutes,
                 valid_windows=args.valid_windows, command=command, init=args.init,
                 new_only=args.only_new)
    print(f"best validation NLL {best:.4f} nats/event -> {Path(args.out) / 'best.npz'}")
    _export(args)
    return 0


def _grows(init_spec, spec):
    """Whether ``spec`` is ``init_spec`` with control blocks added: styles where it had
    none, the voices' densities where it had none, all else the same."""
    return (replace(init_spec, styles=spec.styles, parts=spec.parts) == spec and
            init_spec.styles in ((), spec.styles) and spec.parts >= init_spec.parts)


def _export(args):
    if args.export:
        Path(args.export).parent.mkdir(parents=True, exist_ok=True)
        Path(args.export).write_bytes((Path(args.out) / "best.npz").read_bytes())
        print(f"exported to {args.export}")
