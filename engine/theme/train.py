"""Training a theme model (``ostinato theme train``): the ELBO of
``engine.theme.objective`` on phrases of the training split (``engine.theme.data``), at
two learning rates (``TwoRateAdam``), in a run folder.

A run folder (``engine.training.runs``) holds ``last.pt`` (both networks, both
optimisers, progress: ``--resume``), ``log.jsonl`` (one line per ``eval_every`` steps,
training and held-out figures of ``engine.theme.figures``) and, at the end,
``theme.npz`` (``engine.theme.model.save_theme``).
"""
import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from engine.errors import ModelError
from engine.theme.data import Phrases
from engine.theme.figures import theme_figures
from engine.theme.model import ThemeConfig, ThemeVAE, check_range, save_theme
from engine.theme.objective import active_units, beta_at, mutual_information, theme_loss
from engine.training.data import Dataset
from engine.training.model import load_model
from engine.training.runs import Run


@dataclass(frozen=True)
class ThemeTrainConfig:
    """How a theme model is trained (``train_theme``)."""

    steps: int = field(default=10000, metadata={"help": "training steps"})
    batch_size: int = field(default=32, metadata={"help": "phrases per step"})
    lr_enc: float = field(default=1e-3, metadata={
        "help": "learning rate of the new weights: encoder, W_z, initial state"})
    lr_dec: float = field(default=1e-4, metadata={
        "help": "learning rate of the decoder's shipped weights (0 freezes them)"})
    kl_anneal_steps: int = field(default=2000, metadata={
        "help": "steps over which the KL weight beta rises from 0 to 1"})
    free_bits: float = field(default=0.1, metadata={
        "help": "free bits: nats of KL per latent dimension that cost nothing"})
    theme_dropout: float = field(default=0.25, metadata={
        "help": "share of each batch decoded with z = 0 (free composition)"})
    eval_every: int = field(default=500, metadata={"help": "steps between validations"})
    valid_phrases: int = field(default=256, metadata={
        "help": "held-out phrases of each length (2 and 4 bars) per validation"})
    stream_windows: int = field(default=64, metadata={
        "help": "held-out 256-token windows for the z = 0 vs base NLL (0: none)"})
    max_tokens: int = field(default=512, metadata={"help": "longest phrase, in tokens"})
    seed: int = field(default=0, metadata={"help": "random seed"})

    def check(self):
        check_range("steps", self.steps, 1, 10 ** 8)
        check_range("batch_size", self.batch_size, 1, 4096)
        check_range("lr_enc", self.lr_enc, 1e-8, 1.0, integer=False)
        check_range("lr_dec", self.lr_dec, 0.0, 1.0, integer=False)
        check_range("kl_anneal_steps", self.kl_anneal_steps, 0, 10 ** 8)
        check_range("free_bits", self.free_bits, 0.0, 10.0, integer=False)
        check_range("theme_dropout", self.theme_dropout, 0.0, 1.0, integer=False, hi_open=True)
        check_range("eval_every", self.eval_every, 1, 10 ** 8)
        check_range("valid_phrases", self.valid_phrases, 1, 100000)
        check_range("stream_windows", self.stream_windows, 0, 10 ** 6)
        check_range("max_tokens", self.max_tokens, 2, 100000)
        check_range("seed", self.seed, 0, 2 ** 32 - 1)
        return self


class TwoRateAdam:
    """Adam at two learning rates: ``lr_enc`` for the new weights (encoder, W_z, initial
    state), ``lr_dec`` for the decoder's shipped ones.  A decoder layer's input weight
    holds both ([W_x | W_z], one ``nn.LSTM``), so it is in both optimisers, each stepped
    with the other's columns' gradient zeroed: Adam's moments of a column whose gradient
    is always zero stay zero, and so does its update."""

    def __init__(self, vae, lr_enc, lr_dec):
        dec = vae.decoder
        self.lr_enc, self.lr_dec = lr_enc, lr_dec
        self.shared = [(layer.weight_ih_l0, n) for layer, n in zip(dec.layers, dec.inputs)]
        new = [*vae.encoder.parameters(), *dec.init_h.parameters(), *dec.init_c.parameters(),
               dec.conductor, *(p for p, _ in self.shared)]
        old = [p for name, p in dec.named_parameters()
               if not name.startswith(("init_", "conductor"))]
        self.new, self.old = torch.optim.Adam(new, lr=lr_enc), torch.optim.Adam(old, lr=lr_dec)

    def scale(self, factor):
        """Both rates times ``factor`` (the schedule)."""
        self.new.param_groups[0]["lr"] = self.lr_enc * factor
        self.old.param_groups[0]["lr"] = self.lr_dec * factor

    def zero_grad(self):
        self.new.zero_grad(set_to_none=True)
        self.old.zero_grad(set_to_none=True)

    def step(self):
        grads = [p.grad.clone() for p, _ in self.shared]
        for p, n in self.shared:
            p.grad[:, n:] = 0  # the decoder's rate moves W_x only
        self.old.step()
        for (p, n), g in zip(self.shared, grads):
            p.grad.copy_(g)
            p.grad[:, :n] = 0  # and the new weights' rate W_z only
        self.new.step()

    def state_dict(self):
        return dict(new=self.new.state_dict(), old=self.old.state_dict())

    def load_state_dict(self, st):
        self.new.load_state_dict(st["new"])
        self.old.load_state_dict(st["old"])


def _schedule(step, steps):
    """train.py's cosine: the rates fall to a tenth over the run."""
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(step / steps, 1.0)))


def train_theme(dataset_path, base_model, out, cfg=ThemeConfig(), train_cfg=ThemeTrainConfig(),
                resume=False, max_minutes=None, progress=True, device="cpu", command=None):
    """Train a theme model on the dataset's phrases, its decoder starting from the plain
    generator ``base_model``, in the run folder ``out``; write ``out/theme.npz`` and
    return the last log line.  ``resume`` continues from ``out/last.pt`` (the configs must
    match; ``steps`` may grow); ``max_minutes`` bounds the wall time.

    Every step draws its phrases, theme-dropout rows, z noise and dropout masks from
    seeds fixed by (seed, step), so a resumed run takes the very steps the uninterrupted
    run would have taken.
    """
    tc = train_cfg.check()
    cfg = cfg.check()
    if max_minutes is not None:
        check_range("max_minutes", max_minutes, 1e-6, 10 ** 7, integer=False)
    data = Dataset.load(dataset_path)
    base, vocab, spec, base_meta = load_model(base_model, device)
    if vocab != data.vocab or spec != data.spec:
        raise ModelError(f"{base_model}: its vocabulary or controls differ from the dataset's "
                         f"({dataset_path})")
    run = Run(out)
    torch.manual_seed(tc.seed)
    vae = ThemeVAE.from_plain(base, cfg).to(device)
    opt = TwoRateAdam(vae, tc.lr_enc, tc.lr_dec)
    pool = Phrases(data, "train", cfg, tc.max_tokens)
    step, elapsed, last = 0, 0.0, {}
    st = run.resumed(resume, map_location=device)
    if st is not None:
        same = {k: v for k, v in asdict(tc).items() if k != "steps"}
        if st["theme"] != asdict(cfg) or {k: v for k, v in st["train"].items()
                                          if k != "steps"} != same:
            raise ModelError(f"{run.checkpoint}: its configs differ from this run's (only "
                             "--steps may change on --resume)")
        vae.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        step, elapsed, last = st["step"], st["elapsed"], st.get("last", {})
    info = dict(base_meta.get("info", {}), base=str(base_model), theme_train=asdict(tc),
                command=command, data=str(dataset_path))
    acc = dict(ce_sum=0.0, tokens=0, ce=[], kl=[], kl_fb=[], mu=[], logvar=[])
    with run.start(tc.steps, step, elapsed, desc="theme", progress=progress,
                   max_minutes=max_minutes):
        while step < tc.steps:
            rng = np.random.default_rng([tc.seed, step])
            torch.manual_seed(tc.seed * 1_000_003 + step)  # the decoder's dropout, z noise
            # one phrase length per batch, drawn by BAR_WEIGHTS: a batch is padded to its
            # longest phrase, and mixed lengths padded to ~3x the mean (twice the work)
            bars = int(rng.choice(pool.bar_counts, p=pool.weights))
            batch = pool.sample(rng, tc.batch_size, bars=bars).to(device)
            drop = torch.as_tensor(rng.random(tc.batch_size) < tc.theme_dropout)
            beta = beta_at(step, tc.kl_anneal_steps)
            opt.scale(_schedule(step, tc.steps))
            vae.train()
            loss, parts = theme_loss(vae, batch, drop, beta, tc.free_bits)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
            opt.step()
            step += 1
            for k in ("ce", "kl", "kl_fb"):
                acc[k].append(parts[k])
            acc["ce_sum"] += parts["ce_sum"]
            acc["tokens"] += parts["tokens"]
            if parts["mu"] is not None:
                acc["mu"].append(parts["mu"].detach())
                acc["logvar"].append(parts["logvar"].detach())
            run.advance(ce=f"{parts['ce_sum'] / parts['tokens']:.3f}/tok",
                        kl=f"{parts['kl']:.2f}", beta=f"{beta:.2f}")
            timed_out = run.out_of_time()
            if step % tc.eval_every == 0 or step == tc.steps or timed_out:
                # the interval's posteriors (the last 512 at most) for units and MI
                mu = torch.cat(acc["mu"])[-512:] if acc["mu"] else None
                lv = torch.cat(acc["logvar"])[-512:] if acc["mu"] else None
                mi_gen = torch.Generator().manual_seed(step)
                valid = theme_figures(vae, data, "valid", (2, 4), tc.valid_phrases, tc.seed,
                                      base=base, stream_windows=tc.stream_windows,
                                      max_tokens=tc.max_tokens)
                elapsed = run.elapsed()
                last = dict(step=step, ce=float(np.mean(acc["ce"])),
                            ce_token=acc["ce_sum"] / max(acc["tokens"], 1),
                            kl=float(np.mean(acc["kl"])), kl_fb=float(np.mean(acc["kl_fb"])),
                            beta=beta, active_units=active_units(mu) if mu is not None else 0,
                            mi=mutual_information(mu, lv, mi_gen) if mu is not None else 0.0,
                            lr_enc=opt.new.param_groups[0]["lr"],
                            lr_dec=opt.old.param_groups[0]["lr"],
                            seconds=round(elapsed, 1), valid=valid)
                acc = dict(ce_sum=0.0, tokens=0, ce=[], kl=[], kl_fb=[], mu=[], logvar=[])
                run.log(last)
                run.save(dict(model=vae.state_dict(), opt=opt.state_dict(), step=step,
                              elapsed=elapsed, theme=asdict(cfg), train=asdict(tc), last=last))
                v2 = valid.get("2_bars", {})
                run.write(f"step {step}: ce {last['ce_token']:.4f}/token, KL {last['kl']:.2f}, "
                          f"beta {beta:.2f}, active {last['active_units']}/{cfg.z_dim}, MI "
                          f"{last['mi']:.3f}; valid 2 bars NLL(ELBO) "
                          f"{v2.get('nll_elbo', math.nan):.4f}, KL {v2.get('kl', math.nan):.2f}"
                          f" [{elapsed / 60:.1f} min]")
                if timed_out:
                    run.write(f"time budget of {max_minutes} min reached")
                    break
    save_theme(run.folder / "theme.npz", vae, vocab, spec,
               info=dict(info, step=step, valid=last.get("valid"), train_seconds=elapsed))
    return last
