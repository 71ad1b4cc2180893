"""Which discriminator: a causal LSTM, a bidirectional LSTM or a 1-D convolution, measured.

``python -m engine.training.critics`` trains each architecture on the same real windows and the same
windows the generator sampled (``engine.training.adversarial.Batches``: a real prefix, then either
the real continuation or the generator's), and reports each one's ROC AUC on held-out
windows (real from the validation split, generated afresh), over seeds, with its torch
time per judged window.  D in ``engine.training.adversarial`` is the causal LSTM (``Critic``); this
is the measurement behind that choice, and ``engine/models/critic-arch.json`` holds it.

All three see the same inputs (token embedding + control vector per step) and are of a
similar size; the causal LSTM is trained as it is used (a judgement at every prefix), the
other two on the whole window's label, and all are judged on whole windows.
"""
import argparse
import json
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from engine.metrics import interval, roc_auc
from engine.training.adversarial import AdversarialConfig, Batches, Critic, CriticConfig, d_loss
from engine.training.data import Dataset
from engine.training.model import load_model


class BiCritic(nn.Module):
    """A bidirectional LSTM: both directions' final states -> one logit per window."""

    def __init__(self, cfg: CriticConfig):
        super().__init__()
        self.embed = nn.Embedding(cfg.vocab_size, cfg.embed)
        self.lstm = nn.LSTM(cfg.embed + cfg.n_controls, cfg.hidden // 2, 1, batch_first=True,
                            bidirectional=True)
        self.head = nn.Linear(cfg.hidden, 1)

    def forward(self, tokens, controls):
        _, (h, _) = self.lstm(torch.cat([self.embed(tokens), controls], -1))
        return self.head(torch.cat([h[0], h[1]], -1))[:, 0]


class ConvCritic(nn.Module):
    """Three dilated 1-D convolutions (receptive field 29 steps), max over time -> a logit."""

    def __init__(self, cfg: CriticConfig):
        super().__init__()
        self.embed = nn.Embedding(cfg.vocab_size, cfg.embed)
        w = cfg.hidden
        self.convs = nn.ModuleList([nn.Conv1d(cfg.embed + cfg.n_controls, w, 5, padding=2),
                                    nn.Conv1d(w, w, 5, padding=4, dilation=2),
                                    nn.Conv1d(w, w, 5, padding=8, dilation=4)])
        self.head = nn.Linear(w, 1)

    def forward(self, tokens, controls, lengths=None):
        """-> one logit per window.  ``lengths`` [B]: steps past a window's length are
        padding, zeroed before every layer (as the convolutions' own zero padding) and left
        out of the max, so a padded window is judged as the window alone."""
        x = torch.cat([self.embed(tokens), controls], -1).transpose(1, 2)
        keep = None
        if lengths is not None:
            keep = (torch.arange(x.shape[-1])[None, :] < torch.as_tensor(lengths)[:, None])[:, None]
        for conv in self.convs:
            x = F.relu(conv(x if keep is None else x * keep))
        if keep is not None:
            x = x.masked_fill(~keep, float("-inf"))
        return self.head(x.max(-1).values)[:, 0]


ARCHITECTURES = ("causal-lstm", "bidirectional-lstm", "conv1d")


def make(arch, cfg):
    return {"causal-lstm": Critic, "bidirectional-lstm": BiCritic, "conv1d": ConvCritic}[arch](cfg)


def window_logits(model, tokens, controls, prefix):
    """One logit per window (the causal LSTM's at the last step) and the training loss's
    logits (the causal LSTM's at every judged step)."""
    if isinstance(model, Critic):
        every = model(tokens, controls)[0][:, prefix:]
        return every[:, -1], every
    one = model(tokens, controls)
    return one, one[:, None]


@dataclass(frozen=True)
class ArchConfig:
    train_batches: int = 48     # batches of real and generated windows to train on
    test_batches: int = 16
    epochs: int = 6
    lr: float = 1e-3
    hidden: int = 128
    seeds: tuple = (0, 1, 2)


def sample_windows(data, G, adv, split, n, seed):
    """n batches of (real, fake, c_real, c_fake) from one split, sampled once."""
    b = Batches(data, adv, split, np.random.default_rng(seed), torch.Generator().manual_seed(seed))
    return [b(G) for _ in range(n)]


def compare(model_path, data, cfg=ArchConfig(), adv=AdversarialConfig(), progress=print):
    """{arch: {auc: [per seed], mean, interval, params, ms_per_window}}."""
    G, vocab, spec, _ = load_model(model_path)
    train = sample_windows(data, G, adv, "train", cfg.train_batches, 1)
    test = sample_windows(data, G, adv, "valid", cfg.test_batches, 2)
    ccfg = CriticConfig(vocab_size=vocab.size, n_controls=spec.size, hidden=cfg.hidden)
    out = {}
    for arch in ARCHITECTURES:
        aucs, ms = [], []
        for seed in cfg.seeds:
            torch.manual_seed(seed)
            D = make(arch, ccfg)
            opt = torch.optim.Adam(D.parameters(), lr=cfg.lr)
            order = np.random.default_rng(seed)
            D.train()
            for _ in range(cfg.epochs):
                for i in order.permutation(len(train)):
                    real, fake, cr, cf = train[i]
                    loss = d_loss(window_logits(D, real, cr, adv.prefix)[1],
                                  window_logits(D, fake, cf, adv.prefix)[1])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
            D.eval()
            pos, neg = [], []
            t0 = time.perf_counter()
            with torch.no_grad():
                for real, fake, cr, cf in test:
                    pos.append(window_logits(D, real, cr, adv.prefix)[0].numpy())
                    neg.append(window_logits(D, fake, cf, adv.prefix)[0].numpy())
            ms.append((time.perf_counter() - t0) * 1e3 / (2 * len(test) * adv.batch_size))
            aucs.append(roc_auc(np.concatenate(pos), np.concatenate(neg)))
            progress(f"{arch} seed {seed}: held-out AUC {aucs[-1]:.3f}")
        iv = interval(aucs)
        out[arch] = dict(auc=aucs, mean=iv["mean"], interval=[iv["lo"], iv["hi"]],
                         params=sum(p.numel() for p in D.parameters()),
                         ms_per_window=float(np.median(ms)))
    return dict(model=str(model_path), config=asdict(cfg), windows=asdict(adv), results=out)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m engine.training.critics", description=__doc__.split("\n")[0])
    p.add_argument("--model", default="engine/models/default.npz")
    p.add_argument("--data", default="data/dataset.npz")
    p.add_argument("--json", default="engine/models/critic-arch.json")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="a tiny run (tests)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = ArchConfig(train_batches=2, test_batches=2, epochs=1, hidden=16, seeds=(0, 1)) \
        if args.quick else ArchConfig()
    adv = AdversarialConfig(batch_size=8, prefix=8, window=16) if args.quick else AdversarialConfig()
    r = compare(args.model, Dataset.load(args.data), cfg, adv)
    with open(args.json, "w") as f:
        json.dump(r, f, indent=1)
    for arch, v in r["results"].items():
        print(f"{arch:20s} AUC {v['mean']:.3f} [{v['interval'][0]:.3f}, {v['interval'][1]:.3f}] "
              f"{v['params']:,} parameters, {v['ms_per_window']:.2f} ms per window (torch)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
