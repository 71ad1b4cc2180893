"""Phrases: the themes a theme model learns from, cut from a dataset at bar lines.

``Phrases`` finds every phrase of ``min_bars``..``max_bars`` bars of a split and draws
them (lengths weighted by ``BAR_WEIGHTS``) as padded ``PhraseBatch``es: what the encoder
reads, what the decoder is fed and scored on, and each token's conductor position.
"""
from dataclasses import dataclass, fields

import numpy as np
import torch

from engine.errors import OstinatoError
from engine.theme.model import ThemeConfig
from engine.vocab import NOTE_OFF, NOTE_ON, START, TIME_SHIFT, VELOCITY

# How often each phrase length is drawn in training: mostly 2 and 4 bars, the lengths of
# most themes (unnormalised; lengths outside min_bars..max_bars are not drawn).
BAR_WEIGHTS = {1: 1.0, 2: 4.0, 3: 1.0, 4: 4.0, 5: 0.5, 6: 1.0, 7: 0.5, 8: 2.0}
OTHER_BAR_WEIGHT = 0.5  # lengths beyond 8 bars


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
