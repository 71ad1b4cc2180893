"""Adversarial fine-tuning: the generator G against a discriminator D.

The loop of the method this project implements: G makes music, D judges real against
generated, both are updated, and the result is evaluated on held-out data.

- **D** (``Critic``) is a causal LSTM over the same tokens and control vectors as G,
  with one logit per prefix: P(real | the music so far).  Causal, not bidirectional,
  because then every prefix has a judgement (ScratchGAN's dense rewards, no Monte-
  Carlo rollouts) and because the server can stream it with G's own numba kernel
  (``engine.sampler.critic``): one step per event, no window to re-read.
  L_D = -[log D(x) + log(1 - D(G(z)))], averaged over the judged positions.
- **G** is the shipped maximum-likelihood LSTM, fine-tuned by policy gradient (REINFORCE):
  sampling a token is not differentiable, so G's log-probability of what it sampled is
  weighted by the discounted return of D's per-step rewards less a moving-average
  baseline.  The reward is the seed's -L_G = log D(G(z)) (``reward="log"``), or 2D - 1
  (``"linear"``, ScratchGAN's).  A KL term towards the frozen pretrained G,
  KL(G || G0) over the whole vocabulary at every sampled step, keeps G from collapsing.
- **z** is the sampling noise: the uniform draws behind each sampled token.  There is no
  latent vector here (the theme VAE is a separate model).

What is judged: a window of ``prefix`` real tokens (G reads them, as it reads the music
already played), then ``window`` tokens that are either the real continuation or G's.
Both D and G see the same control vector along the continuation: the request at its
start (key, mode, density, register) with the beat phase of that sequence's own time,
as the server gives it, so D cannot tell them apart by the controls.

A run folder (``engine.training.runs``) holds ``last.pt`` (G, D, both optimisers,
baseline, progress: ``--resume``), ``log.jsonl`` (one line per ``log_every`` steps),
``curves.png`` and, at the end, ``generator.npz`` and ``critic.npz`` in the server's
torch-free format.
"""
import copy
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from engine.controls import ControlSpec
from engine.errors import ModelError
from engine.modelfile import read_model_file
from engine.training.data import Dataset
from engine.training.model import ModelConfig, MusicLSTM, load_model, save_model
from engine.training.runs import LOG, Run
from engine.training.train import validate
from engine.vocab import TIME_SHIFT, Vocab

REWARDS = ("log", "linear")


@dataclass(frozen=True)
class CriticConfig(ModelConfig):
    """G's config, with a smaller network by default."""

    embed: int = 32
    hidden: int = 128
    layers: int = 1


class Critic(MusicLSTM):
    """D: G's network with a one-logit head, P(real) after each prefix.  Same inputs as G."""

    outputs = 1

    def forward(self, tokens, controls, state=None):
        """tokens [B, T], controls [B, T, C] -> logits [B, T] (prefix t judged), state."""
        logits, state = super().forward(tokens, controls, state)
        return logits[..., 0], state


def save_critic(path, critic, vocab, spec, info=None):
    save_model(path, critic, vocab, spec, info=info, role="critic")


def load_critic(path):
    """(critic in eval mode, vocab, spec, meta) from a critic file."""
    meta, arrays = read_model_file(path)
    if meta.get("role") != "critic":
        raise ModelError(f"{path}: a generator model, not a critic (discriminator) file")
    critic = Critic(CriticConfig(**meta["config"]))
    critic.load_state_dict({k: torch.from_numpy(v) for k, v in arrays.items()})
    return critic.eval(), Vocab.from_dict(meta["vocab"]), ControlSpec.from_dict(meta["controls"]), meta


# -- the losses, each on its own so the tests can check it ------------------------------
def d_loss(real_logits, fake_logits):
    """L_D = -[log D(x) + log(1 - D(G(z)))], averaged over the judged positions."""
    return -(F.logsigmoid(real_logits).mean() + F.logsigmoid(-fake_logits).mean())


def g_loss(fake_logits):
    """L_G = -log D(G(z)), averaged (reported; G is trained through ``rewards``)."""
    return -F.logsigmoid(fake_logits).mean()


def rewards(fake_logits, kind="log"):
    """Per-step reward of G's samples: log D (= -L_G per step) or 2D - 1."""
    if kind == "log":
        return F.logsigmoid(fake_logits)
    if kind == "linear":
        return 2 * torch.sigmoid(fake_logits) - 1
    raise ValueError(f"reward {kind!r} is not one of {REWARDS}")


def discounted(r, gamma):
    """Returns R_t = sum_s>=t gamma^(s-t) r_s along the last axis."""
    out = torch.empty_like(r)
    acc = torch.zeros_like(r[..., 0])
    for t in range(r.shape[-1] - 1, -1, -1):
        acc = r[..., t] + gamma * acc
        out[..., t] = acc
    return out


def policy_loss(logp, advantage):
    """REINFORCE: -mean(A * log pi(sampled)); ``advantage`` carries no gradient."""
    return -(advantage.detach() * logp).mean()


def kl_to(logits, ref_logits):
    """Mean over steps of KL(softmax(logits) || softmax(ref_logits)), exact over the vocab."""
    lp, lq = F.log_softmax(logits, -1), F.log_softmax(ref_logits, -1)
    return (lp.exp() * (lp - lq)).sum(-1).mean()


# -- sampling and the judged windows ----------------------------------------------------
class Windows:
    """Builds the control vectors of judged windows: the request at the continuation's
    start, with each sequence's own beat phase (``ControlSpec.compute``: step t sees the
    time reached after token t)."""

    def __init__(self, vocab, spec):
        kinds, values = vocab.tables()
        self.shift = torch.as_tensor(np.where(kinds == TIME_SHIFT, values, 0), dtype=torch.long)
        self.tpb = spec.ticks_per_beat
        self.phase = spec.slices()["phase"]

    def controls(self, base, phase0, tokens):
        """base [B, C] (phase block ignored), phase0 [B] ticks, tokens [B, T] -> [B, T, C]."""
        B, T = tokens.shape
        out = base[:, None, :].repeat(1, T, 1)
        out[..., self.phase] = 0
        ph = (phase0[:, None] + torch.cumsum(self.shift[tokens], 1)) % self.tpb
        out[..., self.phase.start:self.phase.stop] = F.one_hot(ph, self.tpb).float()
        return out

    def split(self, x, c, prefix):
        """A real batch (x [B, P+T], c [B, P+T, C]) -> the request base and phase at the
        continuation's start (what the last prefix step saw)."""
        base = c[:, prefix - 1]
        phase0 = base[:, self.phase].argmax(-1)
        return base, phase0


@torch.no_grad()
def sample(model, x_prefix, c_prefix, windows, base, phase0, length, temperature=1.0,
           generator=None):
    """G's continuation of real prefixes: ``length`` tokens sampled from its softmax
    (no play-time rules: the policy gradient needs the policy's own distribution)."""
    was = model.training
    model.eval()
    logits, state = model(x_prefix, c_prefix)
    last = logits[:, -1]
    toks = torch.empty(x_prefix.shape[0], length, dtype=torch.long)
    ph = phase0.clone()
    ctl = base.clone()
    for t in range(length):
        p = torch.softmax(last / temperature, -1)
        tok = torch.multinomial(p, 1, generator=generator)[:, 0]
        toks[:, t] = tok
        ph = (ph + windows.shift[tok]) % windows.tpb
        ctl[:, windows.phase] = F.one_hot(ph, windows.tpb).float()
        out, state = model(tok[:, None], ctl[:, None], state)
        last = out[:, 0]
    model.train(was)
    return toks


# -- the training loop ------------------------------------------------------------------
@dataclass(frozen=True)
class AdversarialConfig:
    steps: int = 600
    batch_size: int = 32
    prefix: int = 32          # real tokens G reads before it continues
    window: int = 96          # judged tokens (about 3 bars at two onsets per beat)
    lr_g: float = 2e-5
    lr_d: float = 5e-4
    d_pretrain: int = 200     # D steps against the frozen G before G moves
    d_steps: int = 1          # D steps per G step
    kl: float = 0.2           # weight of KL(G || G0)
    gamma: float = 0.9        # discount of D's per-step rewards
    baseline_decay: float = 0.9
    reward: str = "log"
    temperature: float = 1.0
    seed: int = 0
    log_every: int = 25
    valid_windows: int = 64   # validation NLL and D's held-out accuracy on this many


def adversarial_step(G, G0, D, opt_g, real, fake, c_real, c_fake, prefix, cfg, baseline):
    """One G update from D's judgement of ``fake``; returns (stats, new baseline).

    ``real``/``fake`` [B, P+T] share their prefix; ``c_*`` are their control vectors.
    """
    with torch.no_grad():
        D.eval()
        fl = D(fake, c_fake)[0][:, prefix:]
        D.train()
        r = rewards(fl, cfg.reward)
        R = discounted(r, cfg.gamma)
        b = R.mean(0) if baseline is None else baseline
        adv = R - b
        new_b = cfg.baseline_decay * b + (1 - cfg.baseline_decay) * R.mean(0)
    logits = G(fake[:, :-1], c_fake[:, :-1])[0][:, prefix - 1:]   # predicts fake[:, prefix:]
    logp = torch.log_softmax(logits, -1).gather(-1, fake[:, prefix:, None])[..., 0]
    with torch.no_grad():
        ref = G0(fake[:, :-1], c_fake[:, :-1])[0][:, prefix - 1:]
    pg = policy_loss(logp, adv)
    kl = kl_to(logits, ref)
    loss = pg + cfg.kl * kl
    opt_g.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(G.parameters(), 1.0)
    opt_g.step()
    return dict(pg=pg.item(), kl=kl.item(), reward=r.mean().item(),
                g_loss=g_loss(fl).item()), new_b


def d_step(D, opt_d, real, fake, c_real, c_fake, prefix):
    """One D update on a real and a generated batch; (L_D, accuracy at the last step)."""
    rl = D(real, c_real)[0][:, prefix:]
    fl = D(fake, c_fake)[0][:, prefix:]
    loss = d_loss(rl, fl)
    opt_d.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(D.parameters(), 1.0)
    opt_d.step()
    acc = 0.5 * ((rl[:, -1] > 0).float().mean() + (fl[:, -1] < 0).float().mean())
    return loss.item(), acc.item()


class Batches:
    """Real windows of a split and G's continuations of their prefixes, as tensors."""

    def __init__(self, data, cfg, split, rng, generator):
        self.cfg, self.win = cfg, Windows(data.vocab, data.spec)
        self.it = data.batches(split, cfg.batch_size, cfg.prefix + cfg.window, rng,
                               transpose=None)
        self.generator = generator

    def __call__(self, G):
        x, c, _ = next(self.it)
        x = torch.as_tensor(x, dtype=torch.long)
        c = torch.as_tensor(c, dtype=torch.float32)
        P = self.cfg.prefix
        base, phase0 = self.win.split(x, c, P)
        gen = sample(G, x[:, :P], c[:, :P], self.win, base, phase0, self.cfg.window,
                     self.cfg.temperature, self.generator)
        fake = torch.cat([x[:, :P], gen], 1)
        c_real = torch.cat([c[:, :P], self.win.controls(base, phase0, x[:, P:])], 1)
        c_fake = torch.cat([c[:, :P], self.win.controls(base, phase0, gen)], 1)
        return x, fake, c_real, c_fake


@torch.no_grad()
def held_out(G, D, data, cfg, generator):
    """Validation NLL of G (nats per event) and D's accuracy on held-out windows."""
    nll = validate(G, data, 256, cfg.batch_size, "cpu", cfg.valid_windows)
    rng = np.random.default_rng(12345)  # the same real windows every time
    b = Batches(data, cfg, "valid", rng, generator)
    hits, n = 0.0, 0
    D.eval()
    for _ in range(max(1, cfg.valid_windows // cfg.batch_size)):
        real, fake, cr, cf = b(G)
        hits += (D(real, cr)[0][:, -1] > 0).float().sum() + (D(fake, cf)[0][:, -1] < 0).float().sum()
        n += 2 * len(real)
    D.train()
    return nll, float(hits) / n


def train_adversarial(data, model_path, out, cfg=AdversarialConfig(), critic_cfg=None,
                      resume=False, progress=True, command=None):
    """Fine-tune the generator in ``model_path`` against a new D; returns the final log."""
    run = Run(out)
    if cfg.reward not in REWARDS:
        raise ValueError(f"reward {cfg.reward!r} is not one of {REWARDS}")
    torch.manual_seed(cfg.seed)
    G, vocab, spec, meta = load_model(model_path)
    if vocab != data.vocab or spec != data.spec:
        raise ModelError(f"{model_path}: its vocabulary or controls differ from the dataset's")
    G0 = copy.deepcopy(G).eval()
    for p in G0.parameters():
        p.requires_grad_(False)
    G.eval()  # no dropout: the gradient is of the very policy that sampled
    D = Critic(critic_cfg or CriticConfig(vocab_size=vocab.size, n_controls=spec.size))
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr_g)
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr_d)
    step, baseline, elapsed = 0, None, 0.0
    st = run.resumed(resume)
    if st is not None:
        if st["config"] != asdict(cfg) or st["critic_config"] != asdict(D.cfg):
            raise ValueError(f"{run.checkpoint}: its configs differ from this run's")
        G.load_state_dict(st["G"])
        D.load_state_dict(st["D"])
        opt_g.load_state_dict(st["opt_g"])
        opt_d.load_state_dict(st["opt_d"])
        step, baseline, elapsed = st["step"], st["baseline"], st["elapsed"]
    rng = np.random.default_rng([cfg.seed, step])
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
    batches = Batches(data, cfg, "train", rng, gen)
    total = cfg.d_pretrain + cfg.steps
    acc_run = {}
    last = {}

    def record(**kv):
        for k, v in kv.items():
            acc_run.setdefault(k, []).append(v)

    with run.start(total, step, elapsed, desc="adversarial", progress=progress):
        while step < total:
            g_phase = step >= cfg.d_pretrain
            for _ in range(cfg.d_steps if g_phase else 1):
                real, fake, cr, cf = batches(G)
                ld, acc = d_step(D, opt_d, real, fake, cr, cf, cfg.prefix)
                record(d_loss=ld, d_acc=acc)
            if g_phase:
                st, baseline = adversarial_step(G, G0, D, opt_g, real, fake, cr, cf, cfg.prefix,
                                                cfg, baseline)
                record(**st)
            step += 1
            run.advance()
            if step % cfg.log_every == 0 or step == total:
                elapsed = run.elapsed()
                nll, vacc = held_out(G, D, data, cfg, torch.Generator().manual_seed(7))
                last = dict(step=step, phase="adversarial" if g_phase else "critic",
                            valid_nll=nll, valid_d_acc=vacc, seconds=round(elapsed, 1),
                            **{k: float(np.mean(v)) for k, v in acc_run.items()})
                acc_run.clear()
                run.log(last)
                run.postfix(L_D=f"{last['d_loss']:.3f}", acc=f"{vacc:.2f}", nll=f"{nll:.3f}")
                run.save(dict(G=G.state_dict(), D=D.state_dict(), opt_g=opt_g.state_dict(),
                              opt_d=opt_d.state_dict(), step=step, baseline=baseline,
                              elapsed=elapsed, config=asdict(cfg), critic_config=asdict(D.cfg)))
    info = dict(meta.get("info", {}), adversarial=asdict(cfg), source=str(model_path),
                command=command, valid_nll=last.get("valid_nll"))
    out = run.folder
    save_model(out / "generator.npz", G, vocab, spec, info=info)
    save_critic(out / "critic.npz", D, vocab, spec,
                info=dict(adversarial=asdict(cfg), generator=str(out / "generator.npz"),
                          valid_d_acc=last.get("valid_d_acc"), command=command))
    plot_log(out / LOG, out / "curves.png")
    return last


def plot_log(log_path, png):
    """L_D, L_G, D's accuracy, mean reward and validation NLL against the step."""
    # matplotlib only when the curves are drawn: the loop itself does without
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = [json.loads(line) for line in open(log_path)]
    if not rows:
        return
    fig = Figure(figsize=(10, 6))
    FigureCanvasAgg(fig)
    panels = (("losses", ("d_loss", "g_loss")), ("D accuracy", ("d_acc", "valid_d_acc")),
              ("reward", ("reward",)), ("KL(G || G0)", ("kl",)), ("valid NLL", ("valid_nll",)))
    for i, (title, keys) in enumerate(panels):
        ax = fig.add_subplot(2, 3, i + 1)
        for k in keys:
            pts = [(r["step"], r[k]) for r in rows if k in r]
            if pts:
                ax.plot(*zip(*pts), label=k)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=80)


# -- command line ------------------------------------------------------------------------
def add_arguments(p):
    d = AdversarialConfig()
    p.add_argument("--model", default="engine/models/default.npz",
                   help="the pretrained (maximum-likelihood) generator to fine-tune")
    p.add_argument("--data", default="data/dataset.npz", help="dataset from `ostinato data`")
    p.add_argument("--out", default="runs/adversarial", help="run folder")
    for name, v in asdict(d).items():
        flag = "--" + name.replace("_", "-")
        if name == "reward":
            p.add_argument(flag, default=v, choices=REWARDS, help="per-step reward of G's samples")
        else:
            p.add_argument(flag, type=type(v), default=v)
    p.add_argument("--critic-hidden", type=int, default=CriticConfig.hidden)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--export", default=None, help="copy generator.npz here when done")
    p.add_argument("--export-critic", default=None, help="copy critic.npz here when done")


def run(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    data = Dataset.load(args.data)
    cfg = AdversarialConfig(**{k: getattr(args, k) for k in AdversarialConfig.__dataclass_fields__})
    ccfg = CriticConfig(vocab_size=data.vocab.size, n_controls=data.spec.size,
                        hidden=args.critic_hidden)
    command = "ostinato adversarial " + " ".join(sys.argv[2:])
    last = train_adversarial(data, args.model, args.out, cfg, ccfg, resume=args.resume,
                             command=command)
    print(f"step {last.get('step')}: valid NLL {last.get('valid_nll', math.nan):.4f}, "
          f"D held-out accuracy {last.get('valid_d_acc', math.nan):.3f} -> {args.out}")
    for src, dst in (("generator.npz", args.export), ("critic.npz", args.export_critic)):
        if dst:
            Path(dst).parent.mkdir(parents=True, exist_ok=True)
            Path(dst).write_bytes((Path(args.out) / src).read_bytes())
            print(f"exported {src} to {dst}")
    return 0
