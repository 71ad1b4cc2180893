"""The conditioned LSTM: token embedding + control vector in, next-token logits out.

A model file is a plain ``.npz``: the weights under their state-dict names, and one
JSON string ``meta`` holding the model config, the vocabulary and the control spec.
It loads without unpickling anything, and the server reads the same file without
torch (``engine.sampler.generator``).
"""
import json
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from engine.controls import ControlSpec
from engine.errors import ModelError
from engine.modelfile import FORMAT, read_model_file
from engine.vocab import Vocab



@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int = 305
    n_controls: int = 28
    embed: int = 64
    hidden: int = 256
    layers: int = 2
    dropout: float = 0.1


class MusicLSTM(nn.Module):
    """LSTM over event tokens, conditioned at every step on a control vector."""

    outputs = None  # logits per step: the vocabulary's (a subclass may judge instead)

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.embed)
        self.lstm = nn.LSTM(cfg.embed + cfg.n_controls, cfg.hidden, cfg.layers,
                            batch_first=True, dropout=cfg.dropout if cfg.layers > 1 else 0.0)
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.hidden, self.outputs or cfg.vocab_size)

    def forward(self, tokens, controls, state=None):
        """tokens [B, T] int64, controls [B, T, C] -> logits [B, T, V], (h, c)."""
        x = torch.cat([self.embed(tokens), controls], dim=-1)
        y, state = self.lstm(x, state)
        return self.head(self.drop(y)), state

    @torch.no_grad()
    def nll(self, tokens, controls, chunk=512):
        """Mean negative log-likelihood (nats per event) of a token stream.

        ``tokens`` and ``controls`` cover the stream; token t+1 is predicted from
        tokens up to t, the state carried across chunks.
        """
        was = self.training
        self.eval()
        t = torch.as_tensor(np.asarray(tokens, np.int64))[None]
        c = torch.as_tensor(np.asarray(controls, np.float32))[None]
        total, count, state = 0.0, 0, None
        for i in range(0, t.shape[1] - 1, chunk):
            x, y = t[:, i:i + chunk], t[:, i + 1:i + chunk + 1]
            x = x[:, :y.shape[1]]
            logits, state = self(x, c[:, i:i + x.shape[1]], state)
            total += nn.functional.cross_entropy(logits[0], y[0], reduction="sum").item()
            count += y.shape[1]
        self.train(was)
        return total / max(count, 1)


def save_model(path, model, vocab: Vocab, spec: ControlSpec, info=None, role="generator"):
    """Write weights and metadata to one .npz (float32).  ``role``: "generator" (next-
    token logits) or "critic" (one logit of P(real), ``engine.training.adversarial.Critic``)."""
    meta = dict(format=FORMAT, role=role, config=asdict(model.cfg), vocab=vocab.to_dict(),
                controls=spec.to_dict(), info=info or {})
    arrays = {k: v.detach().cpu().float().numpy() for k, v in model.state_dict().items()}
    with open(path, "wb") as f:
        np.savez(f, meta=np.array(json.dumps(meta)), **arrays)


def load_model(path, device="cpu"):
    """(model in eval mode, vocab, spec, meta) from a model file."""
    meta, arrays = read_model_file(path)
    if meta.get("role", "generator") != "generator":
        raise ModelError(f"{path}: a {meta['role']} file, not a generator model")
    cfg = ModelConfig(**meta["config"])
    model = MusicLSTM(cfg)
    try:
        model.load_state_dict({k: torch.from_numpy(v) for k, v in arrays.items()})
    except RuntimeError as exc:
        raise ModelError(f"{path}: weights do not match the config ({exc})") from exc
    model.to(device).eval()
    return model, Vocab.from_dict(meta["vocab"]), ControlSpec.from_dict(meta["controls"]), meta
