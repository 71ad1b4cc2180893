"""The theme model: a VAE latent z that a game can steer (issue 13).

An encoder reads a theme, a phrase of 1-8 bars in the dataset's key-relative tokens, and
gives the mean and log-variance of a latent z.  The decoder is the shipped streaming
generator with z added in two places: every step, as an extra bias on each LSTM layer's
gates (W_z z), and through the initial state (h0 = tanh(W_h z), c0 = W_c z).  Without a
theme z = 0, and then both terms are exactly zero: the decoder is the plain generator
(free composition), so one model serves both.  W_z z is one vector per theme, added to
the gates the plain layer already computes, so a serving step costs what it does today.

With ``positions_per_bar`` > 0 z also gives each position of the theme (a bar, or a beat
at 4) a code u_p = tanh(A_p z), a flat conductor after MusicVAE's hierarchical decoder:
the layers' input is then ``[x ; z ; u_p(t)]``, p(t) the position of the token being
predicted (from the phrase's start, round its length), so the gates get W_z z + W_u u_p.
At run time that is one bias per position, computed once per theme, the runtime copying
in the row of the position its music is at (``engine.sampler.generator.Runtime``).

Each decoder layer is its own single-layer ``nn.LSTM`` whose input is ``[x ; z]``: its
gates are W_x x + W_z z + W_hh h + b, the plain layer's plus the bias W_z z, so the
server can run it with the plain generator's numba kernel once that bias is computed.
The decoder starts as a copy of a plain model file with every z weight zero, so at the
start it *is* that model, for any z.

A trained theme model is ``theme.npz``: one model file that every generator loader still
reads as the plain generator (the decoder's x weights under ``MusicLSTM``'s names), with
the encoder and the z weights under ``theme.`` and ``meta["theme"]`` = the
``ThemeConfig`` (``engine.modelfile.theme_shapes`` lists them). ``load_theme`` reads all
of it.
"""
import json
import math
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from engine.controls import ControlSpec
from engine.errors import InvalidMessage, ModelError
from engine.modelfile import FORMAT, THEME_PREFIX, read_model_file
from engine.training.model import ModelConfig, MusicLSTM
from engine.vocab import Vocab

ENCODER = THEME_PREFIX + "encoder."


# -- configuration ----------------------------------------------------------------------
def check_range(name, value, lo, hi, integer=True, hi_open=False):
    """``value`` in lo..hi (or lo <= value < hi), else one InvalidMessage naming the option
    ``--name``: the theme model's configs and its command line check their options so."""
    opt = "--" + name.replace("_", "-")
    if integer:
        ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    else:
        ok = isinstance(value, (int, float, np.number)) and math.isfinite(value)
    ok = ok and lo <= value and (value < hi if hi_open else value <= hi)
    if not ok:
        allowed = f"{lo} <= {name} < {hi}" if hi_open else f"{lo}..{hi}"
        raise InvalidMessage(f"{opt}: {value!r} is out of range (allowed: {allowed})",
                             field=opt, allowed=allowed)


@dataclass(frozen=True)
class ThemeConfig:
    """The theme model's sizes and what a theme is; saved as the model file's meta["theme"]."""

    z_dim: int = field(default=64, metadata={"help": "size of the latent z"})
    enc_embed: int = field(default=64, metadata={"help": "encoder token embedding size"})
    enc_hidden: int = field(default=128, metadata={"help": "encoder LSTM size, each direction"})
    min_bars: int = field(default=1, metadata={"help": "shortest theme, in bars"})
    max_bars: int = field(default=8, metadata={"help": "longest theme, in bars"})
    beats_per_bar: int = field(default=4, metadata={"help": "beats in a bar"})
    positions_per_bar: int = field(default=0, metadata={
        "help": "latent codes per bar (a flat conductor): 0 one z for the whole theme; k "
                "a code tanh(A_p z) for each of k positions per bar, added to the gates "
                "beside W_z z"})

    @property
    def positions(self):
        """How many conductor codes a theme model has: one per position of max_bars."""
        return self.max_bars * self.positions_per_bar

    def check(self):
        check_range("z_dim", self.z_dim, 1, 1024)
        check_range("enc_embed", self.enc_embed, 1, 4096)
        check_range("enc_hidden", self.enc_hidden, 1, 4096)
        check_range("max_bars", self.max_bars, 1, 32)
        check_range("min_bars", self.min_bars, 1, self.max_bars)
        check_range("beats_per_bar", self.beats_per_bar, 1, 16)
        check_range("positions_per_bar", self.positions_per_bar, 0, 16)
        return self


# -- the networks -----------------------------------------------------------------------
class ThemeEncoder(nn.Module):
    """A phrase's tokens -> (mu, log sigma^2) of q(z | phrase): an embedding, one
    bidirectional LSTM layer, and a linear map of both directions' final states."""

    def __init__(self, vocab_size, cfg: ThemeConfig):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, cfg.enc_embed)
        self.lstm = nn.LSTM(cfg.enc_embed, cfg.enc_hidden, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * cfg.enc_hidden, 2 * cfg.z_dim)

    def forward(self, tokens, lengths):
        """tokens [B, T] padded, lengths [B] -> mu [B, Z], logvar [B, Z]."""
        packed = pack_padded_sequence(self.embed(tokens), lengths.cpu(), batch_first=True,
                                      enforce_sorted=False)
        _, (h, _) = self.lstm(packed)  # h [2, B, K]: forward at the end, backward at the start
        mu, logvar = self.out(torch.cat([h[0], h[1]], -1)).chunk(2, -1)
        return mu, logvar


class ThemeDecoder(nn.Module):
    """The generator with z: ``MusicLSTM`` with each layer its own one-layer ``nn.LSTM`` over
    ``[layer input ; z]`` and an initial state from z.  At z = 0 it computes exactly what
    ``MusicLSTM`` with the same x weights does (the z columns meet zeros, tanh(0) = 0).

    With ``positions`` > 0 (``ThemeConfig.positions``) z also gives a code per position of
    the phrase, u_p = tanh(A_p z) (a flat conductor, after MusicVAE's hierarchical one):
    the layers read ``[layer input ; z ; u_p(t)]``, p(t) the position of the token being
    predicted, so each bar (or beat) of the theme gets a bias of its own.  u_p is zero at
    z = 0 too."""

    def __init__(self, cfg: ModelConfig, z_dim, positions=0):
        super().__init__()
        self.cfg, self.z_dim, self.positions = cfg, z_dim, positions
        self.inputs = [cfg.embed + cfg.n_controls] + [cfg.hidden] * (cfg.layers - 1)
        self.extra = z_dim * (2 if positions else 1)  # the columns after each layer's input
        self.embed = nn.Embedding(cfg.vocab_size, cfg.embed)
        self.layers = nn.ModuleList(nn.LSTM(n + self.extra, cfg.hidden, batch_first=True)
                                    for n in self.inputs)
        # no bias terms: z = 0 must give the zero state
        self.init_h = nn.ModuleList(nn.Linear(z_dim, cfg.hidden, bias=False) for _ in self.inputs)
        self.init_c = nn.ModuleList(nn.Linear(z_dim, cfg.hidden, bias=False) for _ in self.inputs)
        # A_p [P, Z, Z], random so that W_u (zero at the start) gets a gradient at once
        self.conductor = nn.Parameter(torch.randn(positions, z_dim, z_dim) / math.sqrt(z_dim))
        # MusicLSTM's dropouts: nn.LSTM's between its layers, and one before the head
        self.between = nn.Dropout(cfg.dropout if cfg.layers > 1 else 0.0)
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.hidden, cfg.vocab_size)

    @classmethod
    def from_plain(cls, model: MusicLSTM, z_dim, positions=0):
        """A decoder that is ``model`` at every z: its weights copied, every z weight zero."""
        dec = cls(model.cfg, z_dim, positions)
        with torch.no_grad():
            dec.embed.weight.copy_(model.embed.weight)
            dec.head.weight.copy_(model.head.weight)
            dec.head.bias.copy_(model.head.bias)
            for k, (layer, n) in enumerate(zip(dec.layers, dec.inputs)):
                layer.weight_ih_l0[:, :n] = getattr(model.lstm, f"weight_ih_l{k}")
                layer.weight_ih_l0[:, n:] = 0
                for name in ("weight_hh", "bias_ih", "bias_hh"):
                    getattr(layer, f"{name}_l0").copy_(getattr(model.lstm, f"{name}_l{k}"))
            for lin in (*dec.init_h, *dec.init_c):
                lin.weight.zero_()
        return dec

    def plain_state_dict(self):
        """The x weights under ``MusicLSTM``'s names: the plain generator at z = 0."""
        out = {"embed.weight": self.embed.weight, "head.weight": self.head.weight,
               "head.bias": self.head.bias}
        for k, (layer, n) in enumerate(zip(self.layers, self.inputs)):
            out[f"lstm.weight_ih_l{k}"] = layer.weight_ih_l0[:, :n]
            for name in ("weight_hh", "bias_ih", "bias_hh"):
                out[f"lstm.{name}_l{k}"] = getattr(layer, f"{name}_l0")
        return out

    def gate_weights(self, k):
        """W_z of layer k, [4H, Z]: the latent's per-gate bias there is W_z z."""
        n = self.inputs[k]
        return self.layers[k].weight_ih_l0[:, n:n + self.z_dim]

    def code_weights(self, k):
        """W_u of layer k, [4H, Z]: position p's code adds W_u u_p to the gates there."""
        n = self.inputs[k] + self.z_dim
        return self.layers[k].weight_ih_l0[:, n:n + self.z_dim]

    def codes(self, z):
        """u_p = tanh(A_p z) for every position, [B, P, Z]."""
        return torch.tanh(torch.einsum("pyz,bz->bpy", self.conductor, z))

    def initial_state(self, z):
        """(h0, c0), each [layers, B, H]: tanh(W_h z) and W_c z per layer."""
        return (torch.stack([torch.tanh(lin(z)) for lin in self.init_h]),
                torch.stack([lin(z) for lin in self.init_c]))

    def forward(self, tokens, controls, z=None, state=None, pos=None):
        """tokens [B, T], controls [B, T, C], z [B, Z] (None: no theme, z = 0) -> logits
        [B, T, V] and the state (h, c), each [layers, B, H] as ``MusicLSTM``'s.  ``state``
        continues a stream; without it the stream starts from z's initial state.  ``pos``
        [B, T]: the position of each predicted token (``Phrases``), needed with a theme
        when the decoder has positions."""
        B, T = tokens.shape
        if z is None:
            z = controls.new_zeros(B, self.z_dim)
            if self.positions:
                pos = tokens.new_zeros(B, T)
        if state is None:
            state = self.initial_state(z)
        zt = z[:, None, :].expand(B, T, self.z_dim)  # the same z at every step
        if self.positions:
            if pos is None:
                raise ValueError("this decoder has positions: give pos with z")
            u = self.codes(z)  # [B, P, Z]
            zt = torch.cat([zt, torch.gather(u, 1, pos[..., None].expand(B, T, self.z_dim))], -1)
        x = torch.cat([self.embed(tokens), controls], -1)
        hs, cs = [], []
        for k, layer in enumerate(self.layers):
            y, (h, c) = layer(torch.cat([x, zt], -1),
                              (state[0][k:k + 1].contiguous(), state[1][k:k + 1].contiguous()))
            hs.append(h)
            cs.append(c)
            x = self.between(y) if k + 1 < len(self.layers) else y
        return self.head(self.drop(x)), (torch.cat(hs), torch.cat(cs))


class ThemeVAE(nn.Module):
    """The encoder and the decoder together, with the ``ThemeConfig`` they were made for."""

    def __init__(self, encoder: ThemeEncoder, decoder: ThemeDecoder, cfg: ThemeConfig):
        super().__init__()
        self.encoder, self.decoder, self.cfg = encoder, decoder, cfg

    @classmethod
    def from_plain(cls, model: MusicLSTM, cfg: ThemeConfig):
        """A new encoder and a decoder that starts as ``model``."""
        return cls(ThemeEncoder(model.cfg.vocab_size, cfg),
                   ThemeDecoder.from_plain(model, cfg.z_dim, cfg.positions), cfg)


# -- the model file ---------------------------------------------------------------------
def save_theme(path, vae, vocab: Vocab, spec: ControlSpec, info=None):
    """One model file: the plain generator (the decoder's x weights under ``MusicLSTM``'s
    names, so every generator loader reads it), the encoder and z weights under
    ``theme.``, and ``meta["theme"]`` (float32 .npz, ``engine.modelfile``'s format)."""
    dec = vae.decoder
    meta = dict(format=FORMAT, role="generator", config=asdict(dec.cfg), vocab=vocab.to_dict(),
                controls=spec.to_dict(), info=info or {}, theme=asdict(vae.cfg))
    arrays = dict(dec.plain_state_dict())
    for k in range(dec.cfg.layers):
        arrays[f"{THEME_PREFIX}gates_l{k}"] = dec.gate_weights(k)
        arrays[f"{THEME_PREFIX}h0_l{k}"] = dec.init_h[k].weight
        arrays[f"{THEME_PREFIX}c0_l{k}"] = dec.init_c[k].weight
        if dec.positions:
            arrays[f"{THEME_PREFIX}codes_l{k}"] = dec.code_weights(k)
    if dec.positions:
        arrays[f"{THEME_PREFIX}conductor"] = dec.conductor
    arrays.update({ENCODER + k: v for k, v in vae.encoder.state_dict().items()})
    arrays = {k: v.detach().cpu().float().numpy() for k, v in arrays.items()}
    with open(path, "wb") as f:
        np.savez(f, meta=np.array(json.dumps(meta)), **arrays)


def theme_config(meta):
    """The ThemeConfig of a theme model's metadata."""
    return ThemeConfig(**{f.name: meta["theme"][f.name] for f in fields(ThemeConfig)
                          if f.name in meta["theme"]})


def load_theme(path):
    """(ThemeEncoder, ThemeDecoder, vocab, spec, meta) of a theme model, in eval mode."""
    meta, a = read_model_file(path, theme=True)
    if meta.get("role", "generator") != "generator" or "theme" not in meta:
        raise ModelError(f"{path}: not a theme model (its metadata has no 'theme'): train one "
                         "with `ostinato theme train`")
    cfg = theme_config(meta)
    plain = MusicLSTM(ModelConfig(**meta["config"]))
    plain.load_state_dict({k: torch.from_numpy(v) for k, v in a.items()
                           if not k.startswith(THEME_PREFIX)})
    dec = ThemeDecoder.from_plain(plain, cfg.z_dim, cfg.positions)
    with torch.no_grad():
        if cfg.positions:
            dec.conductor.copy_(torch.from_numpy(a[f"{THEME_PREFIX}conductor"]))
        for k in range(dec.cfg.layers):
            if cfg.positions:
                dec.code_weights(k).copy_(torch.from_numpy(a[f"{THEME_PREFIX}codes_l{k}"]))
            dec.gate_weights(k).copy_(torch.from_numpy(a[f"{THEME_PREFIX}gates_l{k}"]))
            dec.init_h[k].weight.copy_(torch.from_numpy(a[f"{THEME_PREFIX}h0_l{k}"]))
            dec.init_c[k].weight.copy_(torch.from_numpy(a[f"{THEME_PREFIX}c0_l{k}"]))
    enc = ThemeEncoder(dec.cfg.vocab_size, cfg)
    enc.load_state_dict({k[len(ENCODER):]: torch.from_numpy(v) for k, v in a.items()
                         if k.startswith(ENCODER)})
    return (enc.eval(), dec.eval(), Vocab.from_dict(meta["vocab"]),
            ControlSpec.from_dict(meta["controls"]), meta)
