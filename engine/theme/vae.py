"""Themes and variations: a VAE latent z that a game can steer (issue 13).

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

Training maximises the ELBO, E_q[log p(x|z)] - KL(q(z|x) || N(0, I)), on phrases that
start at bar lines of the training pieces: the KL weight beta rises linearly from 0 to 1
over ``kl_anneal_steps``, and free bits (Kingma et al. 2016) count each latent
dimension's batch-mean KL as at least ``free_bits`` nats, so no dimension gains by
collapsing onto the prior.  A share of every batch (``theme_dropout``) is decoded with
z = 0 and scored by cross-entropy alone: the plain language-model objective, which keeps
free composition as good as the shipped model.  Posterior collapse shows in the log: KL,
active units (Burda et al. 2016: unit i is active when Var_x(E_q[z_i|x]) > 0.01) and an
estimate of the mutual information I(x; z) (Hoffman & Johnson 2016, as Kim et al. 2018
compute it on a batch).

A run folder holds ``last.pt`` (both networks, both optimisers, progress: ``--resume``),
``log.jsonl`` (one line per ``eval_every`` steps, training and held-out figures) and, at
the end, ``theme.npz``: one model file that every generator loader still reads as the
plain generator (the decoder's x weights under ``MusicLSTM``'s names), with the encoder
and the z weights under ``theme.`` and ``meta["theme"]`` = the ``ThemeConfig``
(``engine.modelfile.theme_shapes`` lists them).  ``load_theme`` reads all of it.

``ostinato theme train``, ``ostinato theme figures MODEL`` and ``ostinato theme encode
FILE.mid`` (what a theme is understood as, and the z the server's encoder gives it) are
the command line.
"""
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence
from tqdm import tqdm

from engine import DEFAULT_MODEL
from engine.controls import ControlSpec
from engine.errors import InvalidMessage, ModelError, OstinatoError
from engine.training.model import ModelConfig, MusicLSTM, load_model
from engine.modelfile import FORMAT, THEME_PREFIX, read_model_file
from engine.vocab import NOTE_OFF, NOTE_ON, START, TIME_SHIFT, VELOCITY, Vocab

# How often each phrase length is drawn in training: mostly 2 and 4 bars, the lengths of
# most themes (unnormalised; lengths outside min_bars..max_bars are not drawn).
BAR_WEIGHTS = {1: 1.0, 2: 4.0, 3: 1.0, 4: 4.0, 5: 0.5, 6: 1.0, 7: 0.5, 8: 2.0}
OTHER_BAR_WEIGHT = 0.5  # lengths beyond 8 bars
ENCODER = THEME_PREFIX + "encoder."


# -- configuration ----------------------------------------------------------------------
def _check(name, value, lo, hi, integer=True, hi_open=False):
    """``value`` in lo..hi (or lo <= value < hi), else one InvalidMessage naming the option."""
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
        _check("z_dim", self.z_dim, 1, 1024)
        _check("enc_embed", self.enc_embed, 1, 4096)
        _check("enc_hidden", self.enc_hidden, 1, 4096)
        _check("max_bars", self.max_bars, 1, 32)
        _check("min_bars", self.min_bars, 1, self.max_bars)
        _check("beats_per_bar", self.beats_per_bar, 1, 16)
        _check("positions_per_bar", self.positions_per_bar, 0, 16)
        return self


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
        _check("steps", self.steps, 1, 10 ** 8)
        _check("batch_size", self.batch_size, 1, 4096)
        _check("lr_enc", self.lr_enc, 1e-8, 1.0, integer=False)
        _check("lr_dec", self.lr_dec, 0.0, 1.0, integer=False)
        _check("kl_anneal_steps", self.kl_anneal_steps, 0, 10 ** 8)
        _check("free_bits", self.free_bits, 0.0, 10.0, integer=False)
        _check("theme_dropout", self.theme_dropout, 0.0, 1.0, integer=False, hi_open=True)
        _check("eval_every", self.eval_every, 1, 10 ** 8)
        _check("valid_phrases", self.valid_phrases, 1, 100000)
        _check("stream_windows", self.stream_windows, 0, 10 ** 6)
        _check("max_tokens", self.max_tokens, 2, 100000)
        _check("seed", self.seed, 0, 2 ** 32 - 1)
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


# -- phrases ----------------------------------------------------------------------------
@dataclass
class PhraseBatch:
    """Phrases padded to one length.  The encoder reads ``tokens``; the decoder reads
    ``inputs`` (START, then the phrase less its last token) with ``controls`` and is scored
    on predicting ``tokens`` where ``mask`` is true."""

    tokens: torch.Tensor    # [B, T] int64, 0 after each phrase's end
    lengths: torch.Tensor   # [B] int64
    inputs: torch.Tensor    # [B, T] int64
    controls: torch.Tensor  # [B, T, C] float32: the dataset's controls for each prediction
    mask: torch.Tensor      # [B, T] bool
    bars: torch.Tensor      # [B] int64
    pos: torch.Tensor       # [B, T] int64: each token's conductor position (0 without)

    def to(self, device):
        return PhraseBatch(*(getattr(self, f.name).to(device) for f in fields(self)))


class Phrases:
    """The phrases of one split of a dataset, for sampling.

    A phrase starts at a bar line, at the first note-on sounding there (at its velocity
    token, where the vocabulary has them); bar lines are every ``beats_per_bar`` beats
    from the start of the piece, from the cumulative time shifts (the dataset keeps no
    time signature or pickup).  A phrase of k bars holds every token up to the bar line k
    bars on, and the note-offs on that line; the piece must last that long, and the
    phrase be at most ``max_tokens`` long.  The decoder's controls are the dataset's: the
    ones before token i are those for predicting token i (``ControlSpec.compute``), so
    the START that replaces the token before the phrase gets the controls of the piece
    at the phrase's start.  A token's position (``ThemeConfig.positions_per_bar``) is the
    bar / beat it happens in, counted from the phrase's start and modulo the phrase's
    length, so the note-offs on its closing line are at position 0, where a theme that
    goes round again starts.
    """

    def __init__(self, dataset, split, cfg: ThemeConfig, max_tokens=512):
        self.vocab, self.cfg = dataset.vocab, cfg
        self.bar = cfg.beats_per_bar * dataset.vocab.ticks_per_beat
        if cfg.positions_per_bar and self.bar % cfg.positions_per_bar:
            raise OstinatoError(f"--positions-per-bar {cfg.positions_per_bar} must divide a "
                                f"bar's {self.bar} ticks")
        self.pos_ticks = self.bar // max(cfg.positions_per_bar, 1)
        kinds, values = dataset.vocab.tables()
        self.kinds, self.values = kinds, values
        self.pieces = dataset.pieces(split)
        piece, start, ends = [], [], []
        for p, (tok, _) in enumerate(self.pieces):
            tok = tok.astype(np.int64)
            kind = kinds[tok]
            shift = np.where(kind == TIME_SHIFT, values[tok], 0)
            before = np.cumsum(shift) - shift  # the time at which each token happens
            total = before[-1] + shift[-1]
            ons = np.flatnonzero(kind == NOTE_ON)
            first = ons[np.r_[True, before[ons][1:] != before[ons][:-1]]]  # first per instant
            first = first[(before[first] % self.bar == 0) & (first > 0)]  # 0 is START
            first = first - ((first > 0) & (kind[first - 1] == VELOCITY))
            # A phrase ending at time e ends before the first token after e, or at e that is
            # not a note-off (a canonical stream puts the note-offs of an instant first):
            # searchsorted on 2 * time + (not a note-off), made non-decreasing to be safe.
            key = np.maximum.accumulate(2 * before + (kind != NOTE_OFF))
            end_time = before[first][:, None] + self.bar * np.arange(1, cfg.max_bars + 1)
            end = np.searchsorted(key, 2 * end_time + 1, "left")
            ok = (end_time <= total) & (end - first[:, None] <= max_tokens)
            piece.append(np.full(len(first), p))
            start.append(first)
            ends.append(np.where(ok, end, -1))
        self.piece = np.concatenate(piece) if piece else np.zeros(0, np.int64)
        self.start = np.concatenate(start) if start else np.zeros(0, np.int64)
        self.end = np.concatenate(ends) if ends else np.zeros((0, cfg.max_bars), np.int64)
        #: bar count -> the rows (bar starts) that have a phrase of that many bars
        self.rows = {k: np.flatnonzero(self.end[:, k - 1] >= 0)
                     for k in range(cfg.min_bars, cfg.max_bars + 1)}
        drawn = [k for k, r in self.rows.items() if len(r)]
        w = np.array([BAR_WEIGHTS.get(k, OTHER_BAR_WEIGHT) for k in drawn])
        self.bar_counts, self.weights = np.array(drawn, np.int64), w / max(w.sum(), 1e-12)
        self.split = split

    def pick(self, rng, n, bars=None, replace=True):
        """(rows, bar counts) of n phrases: of ``bars`` bars each, or of lengths drawn by
        ``BAR_WEIGHTS``; without ``replace``, distinct phrases, as many as there are."""
        if bars is None:
            if not len(self.bar_counts):
                raise OstinatoError(f"the {self.split} split has no phrases of "
                                    f"{self.cfg.min_bars}..{self.cfg.max_bars} bars")
            ks = rng.choice(self.bar_counts, size=n, p=self.weights)
            return np.array([rng.choice(self.rows[k]) for k in ks], np.int64), ks
        rows = self.rows.get(bars, np.zeros(0, np.int64))
        if not len(rows):
            return rows, rows
        rows = rng.choice(rows, size=n if replace else min(n, len(rows)), replace=replace)
        return rows, np.full(len(rows), bars)

    def phrase(self, row, bars):
        """(tokens, controls, index of the first token in its piece) of one phrase."""
        tok, ctl = self.pieces[self.piece[row]]
        i, j = self.start[row], self.end[row, bars - 1]
        return tok[i:j].astype(np.int64), ctl[i - 1:j - 1].astype(np.float32), i

    def positions(self, tokens, bars):
        """Each token's conductor position (see the class), [T] int64; zeros without."""
        if not self.cfg.positions_per_bar:
            return np.zeros(len(tokens), np.int64)
        return theme_positions(tokens, bars, self.kinds, self.values, self.pos_ticks,
                               self.cfg.positions_per_bar)

    def batch(self, rows, bars):
        """The phrases of ``rows`` (of ``bars`` bars each) as one padded PhraseBatch."""
        got = [self.phrase(r, k) for r, k in zip(rows, bars)]
        B, T, C = len(got), max(len(t) for t, _, _ in got), got[0][1].shape[1]
        tokens = np.zeros((B, T), np.int64)
        inputs = np.full((B, T), self.vocab.token(START), np.int64)
        controls = np.zeros((B, T, C), np.float32)
        pos = np.zeros((B, T), np.int64)
        for r, ((t, c, _), k) in enumerate(zip(got, bars)):
            tokens[r, :len(t)] = t
            inputs[r, 1:len(t)] = t[:-1]
            controls[r, :len(t)] = c
            pos[r, :len(t)] = self.positions(t, k)
        lengths = np.array([len(t) for t, _, _ in got], np.int64)
        return PhraseBatch(torch.from_numpy(tokens), torch.from_numpy(lengths),
                           torch.from_numpy(inputs), torch.from_numpy(controls),
                           torch.from_numpy(np.arange(T)[None] < lengths[:, None]),
                           torch.as_tensor(np.asarray(bars, np.int64)), torch.from_numpy(pos))

    def sample(self, rng, n, bars=None, replace=True):
        """A PhraseBatch of n phrases (see ``pick``); None if there are none."""
        rows, ks = self.pick(rng, n, bars, replace)
        return self.batch(rows, ks) if len(rows) else None


def theme_positions(tokens, bars, kinds, values, pos_ticks, per_bar):
    """The conductor position of each token of a phrase of ``bars`` bars that starts at a
    bar line: (the time it happens // ``pos_ticks``) mod (bars * ``per_bar``), the time
    being the sum of the time shifts before it (``Vocab.tables``' kinds and values)."""
    t = np.asarray(tokens, np.int64)
    shift = np.where(kinds[t] == TIME_SHIFT, values[t], 0)
    before = np.cumsum(shift) - shift
    return (before // pos_ticks) % (int(bars) * per_bar)


def phrases(dataset, split, rng, n, cfg=ThemeConfig(), bars=None, max_tokens=512):
    """A PhraseBatch of n phrases of a split (``Phrases``; build one to sample often)."""
    return Phrases(dataset, split, cfg, max_tokens).sample(rng, n, bars)


# -- the objective and what shows posterior collapse -------------------------------------
def kl_per_dim(mu, logvar):
    """KL(N(mu, sigma^2) || N(0, 1)) per row and latent dimension, [B, Z]."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def free_bits_kl(kl_mean, free_bits):
    """sum_i max(KL_i, lambda) over the batch-mean KL of each dimension, [Z] (Kingma et al.
    2016): a dimension below lambda counts as lambda and gets no gradient."""
    return torch.clamp(kl_mean, min=free_bits).sum()


def beta_at(step, anneal_steps):
    """The KL weight at a step: rising linearly from 0 to 1 over ``anneal_steps``."""
    return 1.0 if anneal_steps <= 0 else min(1.0, step / anneal_steps)


def phrase_ce(logits, batch):
    """Reconstruction cross-entropy of each phrase, summed over its real positions, [B]."""
    ce = F.cross_entropy(logits.transpose(1, 2), batch.tokens, reduction="none")
    return (ce * batch.mask).sum(1)


def active_units(mu, threshold=0.01):
    """Latent units whose posterior mean varies over the phrases: Var_x(mu_i) > threshold."""
    if len(mu) < 2:
        return 0
    return int((mu.var(0) > threshold).sum())


def mutual_information(mu, logvar, generator=None):
    """I(x; z) under q on a batch: E_x E_q(z|x)[log q(z|x)] - E_q(z)[log q(z)], q(z) the
    batch's aggregate posterior (Kim et al. 2018's estimator; it equals
    E_x[KL(q(z|x) || p(z))] - KL(q(z) || p(z))).  At most log B; 0 when z ignores x."""
    B, Z = mu.shape
    log2pi = math.log(2 * math.pi)
    neg_entropy = (-0.5 * Z * log2pi - 0.5 * (1 + logvar).sum(-1)).mean()
    eps = torch.randn(mu.shape, generator=generator).to(mu.device)
    z = mu + (0.5 * logvar).exp() * eps  # one z per phrase, each from its own posterior
    dev = z[:, None, :] - mu[None, :, :]  # [B (z of phrase j), B (posterior of phrase k), Z]
    log_q = -0.5 * (dev.pow(2) / logvar.exp()[None]).sum(-1) \
        - 0.5 * (Z * log2pi + logvar.sum(-1))[None]
    log_qz = torch.logsumexp(log_q, dim=1) - math.log(B)
    return float(neg_entropy - log_qz.mean())


def theme_loss(vae, batch, drop, beta, free_bits, generator=None):
    """The training loss of one batch and its parts.

    Rows where ``drop`` is true are decoded with z = 0 and cost their cross-entropy only;
    the others with z ~ q(z | phrase) (reparameterised) and cost cross-entropy + beta *
    free-bits KL.  Per phrase: the cross-entropy summed over its tokens, averaged over
    the batch; the KL term is over the theme rows' batch-mean KL per dimension, weighted
    by their share of the batch, so each theme row carries its own KL once.
    """
    B = len(batch.lengths)
    keep = ~drop.to(batch.tokens.device)
    n = int(keep.sum())
    z = batch.controls.new_zeros(B, vae.cfg.z_dim)
    kl_term = kl = batch.controls.new_zeros(())
    mu = logvar = None
    if n:
        mu, logvar = vae.encoder(batch.tokens[keep], batch.lengths[keep])
        eps = torch.randn(mu.shape, generator=generator).to(mu.device)
        z[keep] = mu + (0.5 * logvar).exp() * eps
        kld = kl_per_dim(mu, logvar)
        kl = kld.sum(1).mean()
        kl_term = free_bits_kl(kld.mean(0), free_bits) * (n / B)
    logits, _ = vae.decoder(batch.inputs, batch.controls, z, pos=batch.pos)
    ce = phrase_ce(logits, batch)
    loss = ce.mean() + beta * kl_term
    return loss, dict(ce=ce.mean().item(), tokens=int(batch.lengths.sum()), ce_sum=ce.sum().item(),
                      kl=kl.item(), kl_fb=kl_term.item(), mu=mu, logvar=logvar)


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


# -- held-out figures -------------------------------------------------------------------
@torch.no_grad()
def stream_nll(model, dataset, split, seq_len=256, max_windows=None, batch_size=32):
    """NLL (nats per event) of a z-free generator (``MusicLSTM`` or ``ThemeDecoder`` at
    z = 0) on a split's stream, in non-overlapping windows; None if it is too short."""
    n = len(dataset.stream(split)[0])
    if n < 2:
        return None
    x, c, y = dataset.eval_windows(split, min(seq_len, n - 1))
    if max_windows:
        x, c, y = x[:max_windows], c[:max_windows], y[:max_windows]
    device = next(model.parameters()).device
    was = model.training
    model.eval()
    total = 0.0
    for i in range(0, len(x), batch_size):
        logits, _ = model(torch.as_tensor(x[i:i + batch_size], device=device),
                          torch.as_tensor(c[i:i + batch_size], device=device))
        total += F.cross_entropy(logits.flatten(0, 1), torch.as_tensor(
            y[i:i + batch_size], device=device).flatten(), reduction="sum").item()
    model.train(was)
    return total / max(y.size, 1)


@torch.no_grad()
def theme_figures(model, dataset, split="valid", bars=(2, 4), n=256, seed=0, base=None,
                  stream_windows=None, max_tokens=512, batch_size=64):
    """Held-out figures of a ``ThemeVAE`` on distinct phrases of exactly each of ``bars``
    bars, the same ones for the same seed, under ``"{k}_bars"``: per token the ELBO's NLL
    bound (one z ~ q), the reconstruction NLL and the teacher-forced accuracy (argmax of
    the logits = the next token) at z = mu and at z = 0, per phrase the KL, and over the
    phrases the active units and the MI estimate; with ``base`` (the plain model it came
    from) that model's NLL on the same phrases.  Under ``"stream"``: the decoder's NLL at
    z = 0 on the split's stream (``stream_windows`` 256-token windows; 0: none, None: all)
    and, with ``base``, the base model's, for "within 2 % of the plain LSTM"."""
    vae, dec = model, model.decoder
    was = vae.training
    vae.eval()
    if base is not None:
        base.eval()
    device = next(vae.parameters()).device
    pool = Phrases(dataset, split, vae.cfg, max_tokens)
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for k in bars:
        rows, ks = pool.pick(np.random.default_rng([seed, k]), n, k, replace=False)
        if not len(rows):
            out[f"{k}_bars"] = dict(phrases=0)
            continue
        s = dict.fromkeys(("elbo", "ce_mu", "ce_z0", "ce_base", "kl", "hit_mu", "hit_z0"), 0.0)
        mus, logvars, tokens = [], [], 0
        for i in range(0, len(rows), batch_size):
            b = pool.batch(rows[i:i + batch_size], ks[i:i + batch_size]).to(device)
            m = b.mask
            mu, logvar = vae.encoder(b.tokens, b.lengths)
            z = mu + (0.5 * logvar).exp() * torch.randn(mu.shape, generator=gen).to(device)
            kl = kl_per_dim(mu, logvar).sum(1)
            s["elbo"] += (phrase_ce(dec(b.inputs, b.controls, z, pos=b.pos)[0], b)
                          + kl).sum().item()
            s["kl"] += kl.sum().item()
            for name, zz in (("mu", mu), ("z0", None)):
                logits = dec(b.inputs, b.controls, zz, pos=b.pos)[0]
                s[f"ce_{name}"] += phrase_ce(logits, b).sum().item()
                s[f"hit_{name}"] += ((logits.argmax(-1) == b.tokens) & m).sum().item()
            if base is not None:
                s["ce_base"] += phrase_ce(base(b.inputs, b.controls)[0], b).sum().item()
            mus.append(mu)
            logvars.append(logvar)
            tokens += int(b.lengths.sum())
        mu, logvar = torch.cat(mus), torch.cat(logvars)
        fig = dict(phrases=len(rows), tokens=tokens, nll_elbo=s["elbo"] / tokens,
                   nll_mu=s["ce_mu"] / tokens, nll_z0=s["ce_z0"] / tokens,
                   kl=s["kl"] / len(rows), active_units=active_units(mu), z_dim=vae.cfg.z_dim,
                   mi=mutual_information(mu, logvar, gen), accuracy_mu=s["hit_mu"] / tokens,
                   accuracy_z0=s["hit_z0"] / tokens)
        if base is not None:
            fig["nll_base"] = s["ce_base"] / tokens
        out[f"{k}_bars"] = fig
    if stream_windows != 0:
        st = dict(nll_z0=stream_nll(dec, dataset, split, max_windows=stream_windows))
        if base is not None:
            st["nll_base"] = stream_nll(base, dataset, split, max_windows=stream_windows)
            if st["nll_z0"] is not None and st["nll_base"]:
                st["z0_vs_base"] = st["nll_z0"] / st["nll_base"] - 1.0
        out["stream"] = st
    vae.train(was)
    return out


def format_figures(figs):
    """The figures as a few lines of text."""
    lines = []
    for key, f in figs.items():
        if key == "stream":
            if f.get("nll_z0") is None:
                continue
            line = f"stream: NLL at z = 0 {f['nll_z0']:.4f} nats/event"
            if f.get("nll_base") is not None:
                line += f", base model {f['nll_base']:.4f} ({100 * f.get('z0_vs_base', 0):+.2f} %)"
            lines.append(line)
        elif not f.get("phrases"):
            lines.append(f"{key.replace('_', ' ')}: no held-out phrases")
        else:
            lines.append(
                f"{key.replace('_', ' ')}: {f['phrases']} phrases, {f['tokens']} tokens; "
                f"NLL/token ELBO {f['nll_elbo']:.4f}, at z = mu {f['nll_mu']:.4f}, at z = 0 "
                f"{f['nll_z0']:.4f}" + (f", base {f['nll_base']:.4f}" if "nll_base" in f else "")
                + f"; KL {f['kl']:.2f} nats/phrase; active units {f['active_units']}/"
                f"{f['z_dim']}; MI {f['mi']:.3f} nats; accuracy at z = mu "
                f"{f['accuracy_mu']:.3f}, at z = 0 {f['accuracy_z0']:.3f}")
    return "\n".join(lines)


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


# -- training ---------------------------------------------------------------------------
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
    from engine.training.data import Dataset

    tc = train_cfg.check()
    cfg = cfg.check()
    if max_minutes is not None:
        _check("max_minutes", max_minutes, 1e-6, 10 ** 7, integer=False)
    data = Dataset.load(dataset_path)
    base, vocab, spec, base_meta = load_model(base_model, device)
    if vocab != data.vocab or spec != data.spec:
        raise ModelError(f"{base_model}: its vocabulary or controls differ from the dataset's "
                         f"({dataset_path})")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(tc.seed)
    vae = ThemeVAE.from_plain(base, cfg).to(device)
    opt = TwoRateAdam(vae, tc.lr_enc, tc.lr_dec)
    pool = Phrases(data, "train", cfg, tc.max_tokens)
    step, elapsed, last = 0, 0.0, {}
    ckpt = out / "last.pt"
    if resume and ckpt.exists():
        st = torch.load(ckpt, map_location=device, weights_only=True)
        same = {k: v for k, v in asdict(tc).items() if k != "steps"}
        if st["theme"] != asdict(cfg) or {k: v for k, v in st["train"].items()
                                          if k != "steps"} != same:
            raise ModelError(f"{ckpt}: its configs differ from this run's (only --steps may "
                             "change on --resume)")
        vae.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        step, elapsed, last = st["step"], st["elapsed"], st.get("last", {})
    info = dict(base_meta.get("info", {}), base=str(base_model), theme_train=asdict(tc),
                command=command, data=str(dataset_path))
    bar = tqdm(total=tc.steps, initial=step, disable=not progress, desc="theme", unit="step",
               file=sys.stderr, dynamic_ncols=True)
    log = open(out / "log.jsonl", "a")
    t0 = time.monotonic() - elapsed
    acc = dict(ce_sum=0.0, tokens=0, ce=[], kl=[], kl_fb=[], mu=[], logvar=[])
    try:
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
            bar.update(1)
            bar.set_postfix(ce=f"{parts['ce_sum'] / parts['tokens']:.3f}/tok",
                            kl=f"{parts['kl']:.2f}", beta=f"{beta:.2f}")
            timed_out = bool(max_minutes) and (time.monotonic() - t0) > max_minutes * 60
            if step % tc.eval_every == 0 or step == tc.steps or timed_out:
                # the interval's posteriors (the last 512 at most) for units and MI
                mu = torch.cat(acc["mu"])[-512:] if acc["mu"] else None
                lv = torch.cat(acc["logvar"])[-512:] if acc["mu"] else None
                mi_gen = torch.Generator().manual_seed(step)
                valid = theme_figures(vae, data, "valid", (2, 4), tc.valid_phrases, tc.seed,
                                      base=base, stream_windows=tc.stream_windows,
                                      max_tokens=tc.max_tokens)
                elapsed = time.monotonic() - t0
                last = dict(step=step, ce=float(np.mean(acc["ce"])),
                            ce_token=acc["ce_sum"] / max(acc["tokens"], 1),
                            kl=float(np.mean(acc["kl"])), kl_fb=float(np.mean(acc["kl_fb"])),
                            beta=beta, active_units=active_units(mu) if mu is not None else 0,
                            mi=mutual_information(mu, lv, mi_gen) if mu is not None else 0.0,
                            lr_enc=opt.new.param_groups[0]["lr"],
                            lr_dec=opt.old.param_groups[0]["lr"],
                            seconds=round(elapsed, 1), valid=valid)
                acc = dict(ce_sum=0.0, tokens=0, ce=[], kl=[], kl_fb=[], mu=[], logvar=[])
                log.write(json.dumps(last) + "\n")
                log.flush()
                torch.save(dict(model=vae.state_dict(), opt=opt.state_dict(), step=step,
                                elapsed=elapsed, theme=asdict(cfg), train=asdict(tc),
                                last=last), ckpt)
                v2 = valid.get("2_bars", {})
                bar.write(f"step {step}: ce {last['ce_token']:.4f}/token, KL {last['kl']:.2f}, "
                          f"beta {beta:.2f}, active {last['active_units']}/{cfg.z_dim}, MI "
                          f"{last['mi']:.3f}; valid 2 bars NLL(ELBO) "
                          f"{v2.get('nll_elbo', math.nan):.4f}, KL {v2.get('kl', math.nan):.2f}"
                          f" [{elapsed / 60:.1f} min]")
                if timed_out:
                    bar.write(f"time budget of {max_minutes} min reached")
                    break
    finally:
        bar.close()
        log.close()
    save_theme(out / "theme.npz", vae, vocab, spec,
               info=dict(info, step=step, valid=last.get("valid"), train_seconds=elapsed))
    return last


# -- command line -----------------------------------------------------------------------
def _add_config(p, cls):
    for f in fields(cls):
        p.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=f.default,
                       help=f"{f.metadata['help']} (default: %(default)s)")


def add_arguments(p):
    acts = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    t = acts.add_parser("train", help="train a theme VAE from the shipped generator",
                        description="train the theme encoder and the z-conditioned decoder "
                                    "(ELBO, KL annealing, free bits); writes OUT/theme.npz")
    t.add_argument("--data", default="data/dataset.npz", help="dataset from `ostinato data`")
    t.add_argument("--base", default=str(DEFAULT_MODEL),
                   help="the plain generator the decoder starts from (default: %(default)s)")
    t.add_argument("--out", default="runs/theme", help="run folder (default: %(default)s)")
    _add_config(t, ThemeConfig)
    _add_config(t, ThemeTrainConfig)
    t.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    t.add_argument("--max-minutes", type=float, default=None, help="wall-time budget")
    t.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    t.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    f = acts.add_parser("figures", help="held-out figures of a theme model",
                        description="ELBO NLL, KL, active units, MI and accuracy on held-out "
                                    "phrases, and the z = 0 decoder against the base model")
    f.add_argument("model", help="theme model file (theme.npz)")
    f.add_argument("--data", default="data/dataset.npz", help="dataset from `ostinato data`")
    f.add_argument("--split", default="valid", choices=("train", "valid", "test"))
    f.add_argument("--bars", type=int, nargs="+", default=[2, 4], help="phrase lengths (2 4)")
    f.add_argument("--n", type=int, default=256, help="phrases of each length (256)")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--base", default=None, help="plain model to compare with (default: the "
                                                "one the theme model was trained from)")
    f.add_argument("--stream-windows", type=int, default=None,
                   help="256-token windows of the stream for the NLL at z = 0 (default: all)")
    f.add_argument("--json", action="store_true", help="print the figures as JSON")
    f.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    v = acts.add_parser("eval", help="the theme model on held-out themes, through the sampler "
                        "that plays", description="held-out figures (as `figures`) and the "
                        "variation evaluation (engine/theme/variations.py): reconstruction at "
                        "variation 0, similarity and novelty against variation, a fresh "
                        "critic's AUC at each variation, the plain model primed with each "
                        "theme as the baseline, and interpolation between held-out themes")
    v.add_argument("model", help="theme model file (theme.npz)")
    v.add_argument("--data", default="data/dataset.npz", help="dataset from `ostinato data`")
    v.add_argument("--split", default="test", choices=("train", "valid", "test"))
    v.add_argument("--n", type=int, default=64, help="held-out themes of each length (64)")
    v.add_argument("--seeds", type=int, default=2, help="pieces per theme and setting (2)")
    v.add_argument("--base", default=None, help="plain model for the baseline (default: the "
                                                "one the theme model was trained from)")
    v.add_argument("--json", default=None, metavar="PATH", help="write every figure here")
    v.add_argument("--lm-dir", default="runs/quality/lm", help="where the independent LSTM "
                   "(engine/evaluation/quality.py, trained on the valid split) is cached (%(default)s)")
    v.add_argument("--quick", action="store_true", help="tiny critics and independent LSTM "
                   "(QualityConfig.quick): a first look, not figures to quote")
    v.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    e = acts.add_parser("encode", help="what a theme is understood as: key, bars, notes, z",
                        description="read a theme (a .mid file, or --notes) as the server "
                                    "would: its measured key, length and notes; with a theme "
                                    "model, the latent it encodes to (torch-free encoder)")
    e.add_argument("theme", nargs="?", help="a .mid file (every track and channel but drums)")
    e.add_argument("--notes", default=None, metavar="JSON",
                   help='the theme as [[pitch, start_beat, duration_beats], ...] instead')
    e.add_argument("--mode", choices=("major", "minor"), default=None,
                   help="the mode it is to be played in (default: its own)")
    e.add_argument("--model", default=None, help="theme model file (theme.npz) to encode with")


def run(args):
    if getattr(args, "threads", None) is not None:  # encode runs no torch
        _check("threads", args.threads, 1, 1024)
        torch.set_num_threads(args.threads)
    return ACTIONS[args.action](args)


def _run_train(args):
    cfg = ThemeConfig(**{f.name: getattr(args, f.name) for f in fields(ThemeConfig)})
    tc = ThemeTrainConfig(**{f.name: getattr(args, f.name) for f in fields(ThemeTrainConfig)})
    last = train_theme(args.data, args.base, args.out, cfg, tc, resume=args.resume,
                       max_minutes=args.max_minutes, device=args.device,
                       command="ostinato theme " + " ".join(sys.argv[2:]))
    print(f"step {last.get('step')}: ce {last.get('ce_token', math.nan):.4f} nats/token, KL "
          f"{last.get('kl', math.nan):.2f} nats/phrase -> {Path(args.out) / 'theme.npz'}")
    return 0


def _run_figures(args):
    from engine.training.data import Dataset

    for k in args.bars:
        _check("bars", k, 1, 32)
    _check("n", args.n, 1, 100000)
    if args.stream_windows is not None:
        _check("stream_windows", args.stream_windows, 0, 10 ** 6)
    enc, dec, vocab, spec, meta = load_theme(args.model)
    cfg = theme_config(meta)
    if max(args.bars) > cfg.max_bars:
        _check("bars", max(args.bars), 1, cfg.max_bars)
    data = Dataset.load(args.data)
    if vocab != data.vocab or spec != data.spec:
        raise ModelError(f"{args.model}: its vocabulary or controls differ from the dataset's")
    base_path = args.base or meta.get("info", {}).get("base") or str(DEFAULT_MODEL)
    base = load_model(base_path)[0]
    tc = meta.get("info", {}).get("theme_train", {})
    figs = theme_figures(ThemeVAE(enc, dec, cfg), data, args.split, tuple(args.bars), args.n,
                         args.seed, base=base, stream_windows=args.stream_windows,
                         max_tokens=tc.get("max_tokens", ThemeTrainConfig.max_tokens))
    if args.json:
        print(json.dumps(dict(model=str(args.model), base=str(base_path), split=args.split,
                              figures=figs), indent=1))
    else:
        print(f"{args.model} on {args.data} ({args.split}), base {base_path}")
        print(format_figures(figs))
    return 0


def _run_encode(args):
    from engine.sampler.theme import ThemeEncoder  # the server's encoder: what plays is measured

    from engine.controls import MODES
    from engine.motif import from_command_line

    motif = from_command_line(args.theme, args.notes)
    mode = None if args.mode is None else MODES.index(args.mode)
    print(f"{motif.source}: {motif.describe()}")
    if mode is not None and mode != motif.mode:
        print(f"  played in {args.mode}: mapped by scale degree to the parallel {args.mode}")
    if args.model:
        enc = ThemeEncoder(args.model)
        meta = read_model_file(args.model)[0]
        vocab = Vocab.from_dict(meta["vocab"])
        tokens = motif.tokens(vocab, mode)
        t0 = time.perf_counter()
        mu, logvar = enc.encode(tokens)
        ms = 1e3 * (time.perf_counter() - t0)
        kl = 0.5 * float(np.sum(mu ** 2 + np.exp(logvar) - 1.0 - logvar))
        print(f"  {len(tokens)} tokens -> z of {len(mu)} dimensions: |mu| {np.linalg.norm(mu):.2f}, "
              f"mean sigma {float(np.exp(0.5 * logvar).mean()):.3f}, KL to the prior "
              f"{kl:.1f} nats (encoded in {ms:.1f} ms, numba; the first call compiles)")
    return 0


def _run_eval(args):
    from engine.training.data import Dataset
    from engine.evaluation.quality import QualityConfig, independent_lm
    from engine.theme.variations import evaluate_variations

    _check("n", args.n, 1, 100000)
    _check("seeds", args.seeds, 1, 100)
    t0 = time.monotonic()
    enc, dec, vocab, spec, meta = load_theme(args.model)
    data = Dataset.load(args.data)
    if vocab != data.vocab or spec != data.spec:
        raise ModelError(f"{args.model}: its vocabulary or controls differ from the dataset's")
    base_path = args.base or meta.get("info", {}).get("base") or str(DEFAULT_MODEL)
    tc = meta.get("info", {}).get("theme_train", {})
    figs = theme_figures(ThemeVAE(enc, dec, theme_config(meta)), data, args.split, (2, 4),
                         args.n * 4, base=load_model(base_path)[0],
                         max_tokens=tc.get("max_tokens", ThemeTrainConfig.max_tokens))
    qc = QualityConfig(window_bars=8)
    qc = qc.quick() if args.quick else qc
    lm, lm_info = independent_lm(data, args.lm_dir, qc, progress=True)
    var = evaluate_variations(args.model, base_path, data, args.split, args.n,
                              tuple(range(args.seeds)), quality=qc, lm=lm)
    var["independent_lm"] = lm_info
    out = dict(model=str(args.model), base=str(base_path), data=str(args.data),
               split=args.split, figures=figs, variations=var,
               seconds=round(time.monotonic() - t0, 1))
    print(format_figures(figs))
    for k in ("2_bars", "4_bars"):
        r = var.get(k, {})
        if not r.get("themes"):
            continue
        rec = r["reconstruction"]
        print(f"{k.replace('_', ' ')}: {r['themes']} themes; at variation 0, note accuracy "
              f"{rec['note_accuracy']:.3f}, onsets {rec['onset_accuracy']:.3f}; Spearman of "
              f"similarity on variation {r['spearman']:.3f} over pieces, "
              f"{r['spearman_within_theme']:.3f} within themes, {r['spearman_curve']:.3f} "
              "of the curve")
        for name, curve in (("variation", r["variation"]), ("primed, temperature", r["primed"])):
            print(f"  {name:20s} " + "  ".join(
                f"{x}: sim {c['similarity']:.3f} nov {c['novelty']:.3f}" for x, c in curve.items()))
        if "critic_auc" in r:
            print("  critic AUC           " + "  ".join(
                f"{x}: {c['mean']:.3f} ({c['vs_free']:+.3f})" for x, c in r["critic_auc"].items()))
        ip = r.get("interpolation", {})
        if ip.get("pairs"):
            print(f"  interpolation, {ip['pairs']} pairs: midpoint NLL {ip['midpoint_nll']:.3f} "
                  f"vs endpoints {ip['endpoint_nll']:.3f} ({ip['midpoint_vs_endpoints']:+.1%}); "
                  f"edit distance never falls in {ip['monotone_share']:.0%} of pairs; mean "
                  "distance " + " ".join(f"{d:.2f}" for d in ip["distance"]))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=float))
        print(f"wrote {args.json}")
    return 0


ACTIONS = {"train": _run_train, "figures": _run_figures, "eval": _run_eval,
           "encode": _run_encode}
