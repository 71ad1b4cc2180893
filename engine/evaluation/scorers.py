"""The models an evaluation trains for itself, to score music it did not make.

- The **independent LM** (``independent_lm``): a one-layer ``MusicLSTM`` trained by
  ``engine.training.train.train`` on the "valid" split alone, never on "train" (the
  generators') nor "test" (the held-out music); the LM score is NLL under it.
- A **reverse LM** (``reverse_lm``): a small LSTM trained on generated music, scoring
  the held-out real pieces (music covering little of real music's variety trains an LM
  that finds real music unlikely).
- A **fresh critic** (``fresh_critic_auc``): a new ``engine.training.critics.ConvCritic``
  telling real windows from generated ones, its ROC AUC on held-out windows.
"""
import contextlib
import hashlib
import io
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from engine.errors import InvalidMessage
from engine.evaluation.likelihood import mean_nll
from engine.metrics import roc_auc
from engine.training.adversarial import CriticConfig
from engine.training.critics import ConvCritic
from engine.training.data import Dataset
from engine.training.model import ModelConfig, load_model
from engine.training.runs import CHECKPOINT, LOG
from engine.training.train import train


def _train_lm(ds, pieces, folder, hidden, steps, cfg, seed, progress):
    """The best model (torch) of ``engine.training.train.train`` of a one-layer LSTM on the
    (tokens, controls) ``pieces``, a random tenth of them its validation (early
    stopping).  They are put in a ``Dataset`` of their own; train's log lines go to
    stderr, or nowhere without ``progress``."""
    n = len(pieces)
    code = np.zeros(n, np.int8)
    # a random tenth, not the last: pieces come grouped by collection, and the last tenth
    # would be one collection the LM never saw (its early stop would pick an untrained LM)
    code[np.random.default_rng([seed, n]).permutation(n)[:max(1, n // 10)]] = 1
    view = Dataset(np.concatenate([t for t, _ in pieces]).astype(np.int16),
                   np.concatenate([c for _, c in pieces]).astype(np.float16),
                   np.cumsum([0] + [len(t) for t, _ in pieces]).astype(np.int64),
                   np.array([f"p{i}" for i in range(n)]), np.array(["quality"] * n), code,
                   ds.vocab, ds.spec, dict(key_relative=ds.key_relative))
    n_tr, n_va = (len(view.stream(s)[0]) for s in ("train", "valid"))
    seq = min(cfg.seq_len, n_tr - 1, (n_va - 1) // 2)
    if n < 2 or seq < 1:
        raise InvalidMessage(f"too little music to train an LM ({n} pieces, {n_tr} + {n_va} "
                             "tokens)", field="pieces", allowed="more or longer pieces")
    mcfg = ModelConfig(vocab_size=ds.vocab.size, n_controls=ds.spec.size, embed=cfg.lm_embed,
                       hidden=hidden, layers=1, dropout=0.1)
    with contextlib.redirect_stdout(sys.stderr if progress else io.StringIO()):
        train(view, folder, mcfg, steps=steps, batch_size=cfg.batch_size, seq_len=seq,
              lr=cfg.lr, eval_every=max(1, steps // 4), patience=10 ** 6, seed=seed,
              progress=progress, command="ostinato quality")
    return load_model(Path(folder) / "best.npz")


def independent_lm(ds, folder, cfg, progress=False):
    """(model, info): the LM behind the LM score, trained on the "valid" split alone,
    never on "train" (the generators') nor "test" (the held-out music).  Cached in
    ``folder``: trained again only when the config or the valid split's tokens differ."""
    folder, pieces = Path(folder), ds.pieces("valid")
    digest = hashlib.sha1(b"".join(t.tobytes() for t, _ in pieces)).hexdigest()
    want = dict(embed=cfg.lm_embed, hidden=cfg.lm_hidden, steps=cfg.lm_steps,
                batch_size=cfg.batch_size, seq_len=cfg.seq_len, lr=cfg.lr, valid_sha1=digest)
    path, meta = folder / "best.npz", folder / "lm.json"
    cached = path.exists() and meta.exists() and json.loads(meta.read_text()) == want
    if cached:
        model, _, _, m = load_model(path)
    else:
        for f in (CHECKPOINT, LOG, "best.npz"):
            (folder / f).unlink(missing_ok=True)
        model, _, _, m = _train_lm(ds, pieces, folder, cfg.lm_hidden, cfg.lm_steps, cfg, 0,
                                   progress)
        meta.write_text(json.dumps(want))
    return model, dict(path=str(path), cached=cached, split="valid", pieces=len(pieces),
                       config=want, valid_nll=m["info"].get("valid_nll"))


def reverse_lm(ds, generated, real, cfg, seed):
    """NLL of the real pieces under a small LSTM trained on the ``generated`` pieces."""
    with tempfile.TemporaryDirectory() as tmp:
        model = _train_lm(ds, generated, tmp, cfg.reverse_hidden, cfg.reverse_steps, cfg, seed,
                          False)[0]
    return mean_nll(model, real)


def fresh_critic_auc(ds, real, fake, cfg, seed):
    """ROC AUC of a new critic on held-out windows.  ``real`` and ``fake`` are lists,
    one per piece, of (tokens, controls) windows; each side's pieces are split in halves
    (seeded), the critic trains on the first (balanced batches, binary cross-entropy of
    its logit per window) and is scored on the second.

    The critic is ``engine.training.critics.ConvCritic`` (dilated 1-D convolutions, max over
    time), the strongest of the three architectures ``python -m engine.training.critics``
    measured at telling real music from the generator's (a weak judge would make every
    method look real); never the D of adversarial training."""
    rng = np.random.default_rng([seed, 17])

    def halves(groups):
        order = rng.permutation(len(groups))
        k = (len(groups) + 1) // 2
        return [[w for i in part for w in groups[i]] for part in (order[:k], order[k:])]

    (r_tr, r_te), (f_tr, f_te) = halves(real), halves(fake)
    if not (r_tr and r_te and f_tr and f_te):
        return float("nan")

    def logits(D, wins):
        T = max(len(t) for t, _ in wins)
        x = torch.zeros(len(wins), T, dtype=torch.long)
        c = torch.zeros(len(wins), T, ds.spec.size)
        for i, (t, cc) in enumerate(wins):
            x[i, :len(t)] = torch.as_tensor(t.astype(np.int64))
            c[i, :len(t)] = torch.as_tensor(cc.astype(np.float32))
        return D(x, c, [len(t) for t, _ in wins])   # padding is left out of the max

    torch.manual_seed(seed)
    D = ConvCritic(CriticConfig(vocab_size=ds.vocab.size, n_controls=ds.spec.size,
                                embed=cfg.critic_embed, hidden=cfg.critic_hidden, layers=1))
    opt = torch.optim.Adam(D.parameters(), lr=cfg.critic_lr)
    half = max(1, cfg.batch_size // 2)
    y = torch.cat([torch.ones(half), torch.zeros(half)])
    for _ in range(cfg.critic_steps):
        batch = [r_tr[i] for i in rng.integers(len(r_tr), size=half)] + \
                [f_tr[i] for i in rng.integers(len(f_tr), size=half)]
        loss = F.binary_cross_entropy_with_logits(logits(D, batch), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(D.parameters(), 1.0)
        opt.step()
    D.eval()
    with torch.no_grad():
        return roc_auc(logits(D, r_te).numpy(), logits(D, f_te).numpy())
