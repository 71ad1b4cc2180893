"""Training on several processes and machines: torch DistributedDataParallel on shards.

``torchrun --nproc_per_node N -m engine.training.distributed --shards DIR ...`` (or,
across machines, torchrun's ``--nnodes``/``--rdzv-endpoint``) trains ``MusicLSTM`` on a
shard folder (``engine.training.shards``); without torchrun the same command trains on
one process.  The process group is set up from torchrun's environment (RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT): gloo on a CPU, NCCL on GPUs (one per
process, by LOCAL_RANK).

Each step's global batch is fixed by (seed, step) (``ShardedDataset.batch``); process
``rank`` takes its slice, each computes the mean loss of its slice, and DDP averages
the gradients, so W processes take the very step one process would with the whole
batch (up to the order of float sums).  Dropout draws differ with the world size: a
run equal to the bit needs ``--dropout 0``.  Rank 0 validates with the others (each a
slice of the windows, summed), writes ``best.npz`` and ``last.pt``; the checkpoint
holds the step, and the data position is a function of (seed, step), so a run resumes
on any number of processes.

Fine-tuning: ``--init MODEL --l2sp ALPHA`` adds fine-tuning's guard
(``engine.training.finetune.l2sp_penalty``) to every process's loss; its gradient is the
same on each, so DDP's average keeps it as one process has it.
"""
import math
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from engine.errors import ModelError
from engine.modelfile import read_model_file
from engine.training.finetune import l2sp_penalty
from engine.training.model import ModelConfig, MusicLSTM, save_model
from engine.training.runs import Run, read_checkpoint
from engine.training.shards import Schedule, ShardedDataset
from engine.training.train import lr_at, model_arguments, start_from, window_loss


@dataclass(frozen=True)
class Context:
    """This process's place: rank of world, and its device."""
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: str = "cpu"

    @property
    def main(self):
        return self.rank == 0


def init(device="cpu"):
    """The Context from torchrun's environment, joining the process group when WORLD_SIZE
    > 1 (gloo for a CPU, NCCL for CUDA); one process without torchrun: rank 0 of 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = str(device).startswith("cuda")
    if cuda:
        device = f"cuda:{local}"
        torch.cuda.set_device(local)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world)
    return Context(rank, world, local, str(device))


def finish(ctx):
    """Leave the process group (if joined)."""
    if ctx.world > 1 and dist.is_initialized():
        dist.destroy_process_group()


def _sum(ctx, *values):
    """The values summed over every process (as they are on one)."""
    if ctx.world == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64,
                     device=ctx.device if ctx.device.startswith("cuda") else "cpu")
    dist.all_reduce(t)
    return tuple(t.tolist())


def validate(model, data, ctx, seq_len, batch_size, max_windows=None):
    """Mean cross-entropy (nats per event) over the validation windows, each process
    taking every world-th one."""
    x, c, y = data.eval_windows("valid", seq_len, max_windows)
    x, c, y = x[ctx.rank::ctx.world], c[ctx.rank::ctx.world], y[ctx.rank::ctx.world]
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            xb = torch.as_tensor(x[i:i + batch_size], dtype=torch.long, device=ctx.device)
            cb = torch.as_tensor(c[i:i + batch_size], dtype=torch.float32, device=ctx.device)
            yb = torch.as_tensor(y[i:i + batch_size], dtype=torch.long, device=ctx.device)
            logits, _ = model(xb, cb)
            total += nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), yb.reshape(-1), reduction="sum").item()
            count += yb.numel()
    model.train()
    total, count = _sum(ctx, total, count)
    return total / max(count, 1)


def train(data: ShardedDataset, out, cfg, ctx=Context(), *, steps=20000, global_batch=32,
          seq_len=128, lr=2e-3, eval_every=500, patience=6, seed=0, resume=False,
          max_minutes=None, transpose=(-5, 7), valid_windows=256, init=None, command=None,
          progress=True, until=None, l2sp=None):
    """Train ``MusicLSTM(cfg)`` on the shards ``data`` into ``out`` as process ``ctx``;
    return the best validation NLL.  The arguments are ``engine.training.train.train``'s,
    ``global_batch`` being the batch of all processes together; ``until``: stop (with a
    checkpoint) after that step, to go on with ``resume`` (a job in parts: the learning
    rate schedule still spans ``steps``).  ``l2sp``: the L2-SP guard's weight towards
    ``init``'s weights (fine-tuning; None: no guard)."""
    if l2sp is not None and init is None:
        raise ModelError("l2sp: the guard pulls towards --init's weights: give --init MODEL")
    run = Run(out) if ctx.main else None
    torch.manual_seed(seed)
    net = MusicLSTM(cfg).to(ctx.device)
    if init is not None and not resume:
        start_from(net, init, cfg, data.vocab, data.spec)
    penalty = None if l2sp is None else l2sp_penalty(init, l2sp)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    schedule = Schedule(global_batch, seq_len, seed, None if data.key_relative else transpose)
    step, best, bad, elapsed = 0, math.inf, 0, 0.0
    checkpoint = Path(out) / "last.pt"
    if resume and checkpoint.exists():
        st = read_checkpoint(checkpoint, ctx.device, needs=("model", "opt", "step", "schedule"))
        saved = dict(st["schedule"], transpose=tuple(st["schedule"]["transpose"] or ()) or None)
        for name, theirs, mine in (("config", st["config"], asdict(cfg)),
                                   ("schedule", saved, asdict(schedule))):
            if theirs != mine:  # the data position is (seed, step) under this schedule only
                raise ModelError(f"{checkpoint}: its {name} {theirs} is not this run's {mine}")
        net.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        step, best, bad, elapsed = st["step"], st["best"], st["bad"], st["elapsed"]
    model = net
    if ctx.world > 1:
        model = DistributedDataParallel(
            net, device_ids=[ctx.local_rank] if ctx.device.startswith("cuda") else None)
    info = dict(command=command, data=data.summary, mean_register=data.mean_register,
                key_relative=data.key_relative, batch_size=global_batch, seq_len=seq_len,
                lr=lr, device=ctx.device, processes=ctx.world)
    if l2sp is not None:
        info["finetune"] = dict(init=str(init), guard="l2sp", l2sp=l2sp)
    running = None
    if run is not None:
        run.start(steps, step, elapsed, desc="train", progress=progress, max_minutes=max_minutes)
    try:
        while step < steps:
            for g in opt.param_groups:
                g["lr"] = lr_at(step, steps, lr)
            loss = window_loss(model, *data.batch(step, schedule, ctx.rank, ctx.world),
                               ctx.device)
            opt.zero_grad(set_to_none=True)
            # DDP averages the gradients over the processes here (the guard's, on the bare
            # module's weights, is the same on each)
            (loss if penalty is None else loss + penalty(net)).backward()
            nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            step += 1
            (mean,) = _sum(ctx, loss.item() / ctx.world)
            running = mean if running is None else 0.98 * running + 0.02 * mean
            timed_out = run.out_of_time() if run is not None else False
            if run is not None:
                run.advance(loss=f"{running:.3f}", best=f"{best:.3f}")
            (timed_out,) = _sum(ctx, float(timed_out))  # rank 0's clock decides for all
            stop_here = step == until
            if step % eval_every == 0 or step == steps or timed_out or stop_here:
                val = validate(net, data, ctx, seq_len * 2, global_batch, valid_windows)
                improved = val < best - 1e-4
                best, bad = (val, 0) if improved else (best, bad + 1)
                if run is not None:
                    elapsed = run.elapsed()
                    if improved:
                        save_model(run.folder / "best.npz", net, data.vocab, data.spec,
                                   info=dict(info, step=step, valid_nll=val,
                                             train_seconds=elapsed))
                    run.log(dict(step=step, train=running, valid=val, lr=lr_at(step, steps, lr),
                                 seconds=round(elapsed, 1), processes=ctx.world))
                    run.save(dict(model=net.state_dict(), opt=opt.state_dict(), step=step,
                                  best=best, bad=bad, elapsed=elapsed, config=asdict(cfg),
                                  schedule=asdict(schedule)))
                    run.write(f"step {step}: train {running:.4f} valid {val:.4f}"
                              f"{' (best)' if improved else ''} [{elapsed / 60:.1f} min]")
                if ctx.world > 1:
                    dist.barrier()  # last.pt is whole before any process goes on
                if stop_here:
                    break
                if bad >= patience or timed_out:
                    if run is not None:
                        run.write(f"early stop: no improvement in {patience} validations"
                                  if bad >= patience else f"time budget of {max_minutes} min "
                                                          f"reached")
                    break
    finally:
        if run is not None:
            run.close()
    return best


def add_arguments(p):
    p.add_argument("--shards", required=True, metavar="DIR",
                   help="shard folder (python -m engine.training.shards)")
    p.add_argument("--out", default="runs/default", help="run folder (checkpoints, log)")
    model_arguments(p)
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--batch-size", type=int, default=32,
                   help="the global batch, of all processes together")
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--valid-windows", type=int, default=256)
    p.add_argument("--patience", type=int, default=6)
    p.add_argument("--max-minutes", type=float, default=None)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads per process")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--until", type=int, default=None, metavar="STEP",
                   help="stop with a checkpoint after STEP (go on later with --resume)")
    p.add_argument("--init", default=None, metavar="MODEL",
                   help="start from this model file (its size is used)")
    p.add_argument("--l2sp", type=float, default=None, metavar="ALPHA",
                   help="fine-tune --init with the L2-SP guard: loss += ALPHA * sum "
                        "(w - w_init)^2 (default: no guard)")


def run(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    ctx = init(args.device)
    try:
        data = ShardedDataset(args.shards)
        cfg = ModelConfig(vocab_size=data.vocab.size, n_controls=data.spec.size,
                          embed=args.embed, hidden=args.hidden, layers=args.layers,
                          dropout=args.dropout)
        if args.init:
            cfg = ModelConfig(**read_model_file(args.init)[0]["config"])
        best = train(data, args.out, cfg, ctx, steps=args.steps, global_batch=args.batch_size,
                     seq_len=args.seq_len, lr=args.lr, eval_every=args.eval_every,
                     patience=args.patience, seed=args.seed, resume=args.resume,
                     max_minutes=args.max_minutes, valid_windows=args.valid_windows,
                     init=args.init, command=" ".join(sys.argv),
                     progress=ctx.main and sys.stderr.isatty(), until=args.until,
                     l2sp=args.l2sp)
        if ctx.main:
            print(f"best validation NLL {best:.4f} nats/event on {ctx.world} process(es) "
                  f"-> {Path(args.out) / 'best.npz'}")
        if ctx.world > 1:
            # every process is done with the group before any leaves it: gloo aborts a
            # process whose peer tears its connections down while it still holds them
            # ("terminate called without an active exception", seen once in CI)
            dist.barrier()
    finally:
        finish(ctx)
    return 0


def main(argv=None):
    import argparse
    p = argparse.ArgumentParser(prog="python -m engine.training.distributed",
                                description="train on shards, on one process or under torchrun")
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
