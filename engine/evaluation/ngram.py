"""A 5-gram token model with interpolated modified Kneser-Ney smoothing: the baseline.

The LSTM's held-out NLL means little on its own; beside an n-gram fitted on the same
training tokens it says how much the network's long memory and controls buy.

Scoring matches ``MusicLSTM.nll``: in each piece, tokens[1:] are predicted, each from
up to ``order - 1`` tokens before it in the same piece.  Pieces are padded on the left
with a PAD symbol (id ``vocab_size``, never predicted), so every prediction has a full
context and short contexts at a piece's start are contexts of their own.

Smoothing follows Chen & Goodman (1998): three discounts per order estimated from the
count-of-counts, continuation counts for every order below the top, and the unigram
interpolated with the uniform distribution, so every token has a probability.
N-grams are hashed to int64 keys in base ``vocab_size + 1``; tables are sorted key
arrays searched with ``np.searchsorted``.
"""
from dataclasses import dataclass

import numpy as np

from engine.errors import InvalidMessage, InvalidToken

_INT64_MAX = np.iinfo(np.int64).max


@dataclass
class _Level:
    """One order's tables: n-gram keys and (continuation) counts, per-context sums."""

    keys: np.ndarray        # sorted n-gram keys (context * base + word)
    counts: np.ndarray      # count of each n-gram (raw at the top order, else continuation)
    ctx_keys: np.ndarray    # sorted context keys
    ctx_total: np.ndarray   # sum of counts over words, per context
    ctx_gamma: np.ndarray   # back-off weight per context (mass the discounts freed)
    discounts: np.ndarray   # D for counts 1, 2, 3+ (index 0 unused, D(0) = 0)


def discounts(counts):
    """Modified KN discounts D1, D2, D3+ from the count-of-counts n1..n4.

    Where the data are too small for an estimate in (0, j] (a count-of-counts is
    zero, or the formula leaves the range), the single discount n1 / (n1 + 2 n2)
    of Ney et al. stands in; with neither, 0.5.
    """
    n = np.bincount(np.minimum(counts, 5), minlength=6)[1:5].astype(np.float64)
    n1, n2, n3, n4 = n
    y = n1 / (n1 + 2 * n2) if n1 > 0 and n2 > 0 else 0.5
    est = [1 - 2 * y * n2 / n1 if n1 > 0 else 0.0,
           2 - 3 * y * n3 / n2 if n2 > 0 else 0.0,
           3 - 4 * y * n4 / n3 if n3 > 0 else 0.0]
    d = [e if 0 < e <= j + 1 else y for j, e in enumerate(est)]
    return np.array([0.0] + d)


def _level(keys, counts, base):
    """Tables of one order from sorted unique keys and their counts."""
    ctx = keys // base
    ctx_keys, first = np.unique(ctx, return_index=True)
    total = np.add.reduceat(counts, first).astype(np.float64)
    disc = discounts(counts)
    freed = np.add.reduceat(disc[np.minimum(counts, 3)], first)
    return _Level(keys, counts, ctx_keys, total, freed / total, disc)


def _lookup(sorted_keys, queries):
    """(index, found) of each query in a sorted key array."""
    idx = np.searchsorted(sorted_keys, queries)
    idx = np.minimum(idx, len(sorted_keys) - 1)
    return idx, sorted_keys[idx] == queries if len(sorted_keys) else np.zeros(len(queries), bool)


class NGram:
    """Interpolated modified Kneser-Ney n-gram model over token ids.

    ``NGram(order=5).fit(pieces)`` then ``nll(pieces)``; ``vocab_size`` defaults to
    one more than the largest token seen in fitting.
    """

    def __init__(self, order=5, vocab_size=None):
        if not isinstance(order, (int, np.integer)) or order < 1:
            raise InvalidMessage(f"order {order!r} must be an integer >= 1",
                                 field="order", allowed=">= 1")
        self.order = int(order)
        self.vocab_size = vocab_size
        self.levels = []
        self.unigram = None

    # -- helpers -------------------------------------------------------------------
    @property
    def base(self):
        return self.vocab_size + 1

    @property
    def pad(self):
        return self.vocab_size

    def _check(self, pieces):
        pieces = [np.asarray(p) for p in ([pieces] if _is_one(pieces) else pieces)]
        for p in pieces:
            if p.ndim != 1:
                raise InvalidToken(f"a piece must be a 1-D token array, got shape {p.shape}")
            if len(p) and (p.min() < 0 or p.max() >= self.vocab_size):
                bad = p[(p < 0) | (p >= self.vocab_size)][0]
                raise InvalidToken(f"token {bad} outside [0, {self.vocab_size - 1}]")
        return pieces

    def _grams(self, pieces):
        """(n, order) int64 array: each predicted token with its padded context."""
        k = self.order
        rows = []
        for p in pieces:
            if len(p) < 2:
                continue
            padded = np.concatenate([np.full(k - 1, self.pad, np.int64), p.astype(np.int64)])
            idx = np.arange(k, len(padded))[:, None] + np.arange(-k + 1, 1)
            rows.append(padded[idx])
        return np.concatenate(rows) if rows else np.empty((0, k), np.int64)

    def _keys(self, grams):
        """Key of each row's last j tokens, for j = 1..order (list index j - 1)."""
        out, key = [], np.zeros(len(grams), np.int64)
        mult = 1
        for j in range(1, self.order + 1):
            key = key + grams[:, -j] * mult
            mult *= self.base
            out.append(key.copy())
        return out

    # -- fitting -------------------------------------------------------------------
    def fit(self, pieces):
        """Count n-grams of the pieces (a list of token arrays, or one array)."""
        pieces = [np.asarray(p) for p in ([pieces] if _is_one(pieces) else pieces)]
        if self.vocab_size is None:
            self.vocab_size = int(max((p.max() for p in pieces if len(p)), default=-1)) + 1
        if self.vocab_size < 1:
            raise InvalidMessage("no tokens to fit", field="pieces", allowed="at least one piece "
                                 "of two or more tokens")
        if self.base ** self.order > _INT64_MAX:
            raise InvalidMessage(f"order {self.order} with {self.vocab_size} tokens overflows "
                                 "int64 keys", field="order",
                                 allowed=f"<= {int(np.log(_INT64_MAX) / np.log(self.base))}")
        grams = self._grams(self._check(pieces))
        if len(grams) == 0:
            raise InvalidMessage("no tokens to predict", field="pieces",
                                 allowed="at least one piece of two or more tokens")
        top_keys, top_counts = np.unique(self._keys(grams)[-1], return_counts=True)
        levels = [_level(top_keys, top_counts, self.base)]
        keys = top_keys
        for j in range(self.order - 1, 0, -1):
            # continuation count: distinct left extensions of each shorter n-gram
            keys, counts = np.unique(keys % self.base ** j, return_counts=True)
            levels.append(_level(keys, counts, self.base))
        self.levels = levels[::-1]  # index j - 1 holds order j
        uni = self.levels[0]
        cont = np.zeros(self.vocab_size)
        cont[uni.keys] = np.maximum(uni.counts - uni.discounts[np.minimum(uni.counts, 3)], 0)
        # the unigram's one context (the empty one) backs off to the uniform distribution
        self.unigram = cont / uni.ctx_total[0] + uni.ctx_gamma[0] / self.vocab_size
        return self

    # -- scoring -------------------------------------------------------------------
    def _probs(self, grams):
        """Probability of each row's last token given the tokens before it."""
        keys = self._keys(grams)
        p = self.unigram[grams[:, -1]]
        for j in range(2, self.order + 1):
            lv = self.levels[j - 1]
            ci, seen = _lookup(lv.ctx_keys, keys[j - 1] // self.base)
            ki, hit = _lookup(lv.keys, keys[j - 1])
            c = np.where(hit, lv.counts[ki], 0)
            top = np.maximum(c - lv.discounts[np.minimum(c, 3)], 0) / lv.ctx_total[ci]
            p = np.where(seen, top + lv.ctx_gamma[ci] * p, p)
        return p

    def logprobs(self, pieces):
        """Natural-log probability of every predicted token (tokens[1:] of each piece)."""
        if not self.levels:
            raise InvalidMessage("the model is not fitted", field="model", allowed="call fit first")
        return np.log(self._probs(self._grams(self._check(pieces))))

    def nll(self, pieces):
        """Mean negative log-likelihood in nats per predicted token, as ``MusicLSTM.nll``."""
        lp = self.logprobs(pieces)
        return float(-lp.mean()) if len(lp) else 0.0

    def count(self, gram):
        """Stored count of an n-gram (1 to ``order`` tokens, PAD allowed): the raw count
        at the top order, the continuation count (distinct left neighbours) below it."""
        gram = np.asarray(gram, np.int64)
        if not 1 <= len(gram) <= self.order or gram.min() < 0 or gram.max() > self.pad:
            raise InvalidToken(f"n-gram {gram.tolist()} is not 1..{self.order} tokens "
                               f"in [0, {self.pad}]")
        if not self.levels:
            raise InvalidMessage("the model is not fitted", field="model", allowed="call fit first")
        lv = self.levels[len(gram) - 1]
        key = 0
        for t in gram.tolist():
            key = key * self.base + t
        i, hit = _lookup(lv.keys, np.array([key], np.int64))
        return int(lv.counts[i[0]]) if hit[0] else 0

    def distribution(self, context):
        """P(w | context) for every token w: an array of ``vocab_size`` that sums to 1.

        ``context`` is the tokens before the prediction, the piece's first token first;
        only its last ``order - 1`` count, and a shorter one is a piece's beginning.
        """
        ctx = self._check([np.asarray(context, np.int64)])[0][-(self.order - 1):] \
            if self.order > 1 else np.empty(0, np.int64)
        if not self.levels:
            raise InvalidMessage("the model is not fitted", field="model", allowed="call fit first")
        full = np.concatenate([np.full(self.order - 1 - len(ctx), self.pad, np.int64), ctx])
        words = np.arange(self.vocab_size, dtype=np.int64)
        grams = np.concatenate([np.broadcast_to(full, (self.vocab_size, len(full))),
                                words[:, None]], axis=1)
        return self._probs(grams)


def _is_one(pieces):
    """Whether ``pieces`` is one token array rather than a list of them."""
    return isinstance(pieces, np.ndarray) and pieces.ndim == 1 or (
        isinstance(pieces, (list, tuple)) and len(pieces) > 0
        and all(isinstance(x, (int, np.integer)) for x in pieces))
