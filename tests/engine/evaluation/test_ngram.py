"""The Kneser-Ney n-gram baseline: counts, normalisation, discounts, scoring like the LSTM."""
import math
from collections import Counter

import numpy as np
import pytest

from engine.training.data import BuildConfig, Dataset, build
from engine.errors import InvalidMessage, InvalidToken
from engine.evaluation.ngram import NGram, discounts


# -- an independent, loop-and-dict reference of interpolated modified Kneser-Ney --------
def ref_discounts(counts):
    n = [sum(1 for c in counts if c == k) for k in (1, 2, 3, 4)]
    y = n[0] / (n[0] + 2 * n[1]) if n[0] and n[1] else 0.5
    est = [1 - 2 * y * n[1] / n[0] if n[0] else 0.0,
           2 - 3 * y * n[2] / n[1] if n[1] else 0.0,
           3 - 4 * y * n[3] / n[2] if n[2] else 0.0]
    return [e if 0 < e <= j + 1 else y for j, e in enumerate(est)]


def ref_model(pieces, order, vocab):
    pad = vocab
    table = {order: Counter()}
    for p in pieces:
        padded = [pad] * (order - 1) + list(p)
        for i in range(order, len(padded)):
            table[order][tuple(padded[i - order + 1:i + 1])] += 1
    for n in range(order - 1, 0, -1):
        table[n] = Counter(g[1:] for g in table[n + 1])  # distinct left extensions
    disc = {n: ref_discounts(list(table[n].values())) for n in table}

    def prob(context, w):
        ctx = ([pad] * (order - 1) + list(context))[len(context):] if order > 1 else []
        p = 1.0 / vocab
        for n in range(1, order + 1):
            h = tuple(ctx[len(ctx) - (n - 1):]) if n > 1 else ()
            seen = {g[-1]: c for g, c in table[n].items() if g[:-1] == h}
            if not seen:
                continue
            total = sum(seen.values())
            d = lambda c: disc[n][min(c, 3) - 1]
            gamma = sum(d(c) for c in seen.values()) / total
            c = seen.get(w, 0)
            p = (max(c - d(c), 0) / total if c else 0.0) + gamma * p
        return p
    return prob


def test_matches_reference_implementation():
    rng = np.random.default_rng(1)
    # a skewed small vocabulary so counts of 1, 2, 3 and 4+ all occur
    pieces = [rng.choice(6, size=rng.integers(2, 40), p=[.4, .25, .15, .1, .06, .04])
              for _ in range(30)]
    for order in (1, 2, 3, 4):
        model = NGram(order, vocab_size=6).fit(pieces)
        ref = ref_model(pieces, order, 6)
        for _ in range(20):
            ctx = rng.integers(0, 6, size=rng.integers(0, 5))
            want = [ref(list(ctx), w) for w in range(6)]
            np.testing.assert_allclose(model.distribution(ctx), want, rtol=1e-12)


def test_counts_and_continuation_counts():
    pieces = [np.array([0, 1, 2, 1, 2, 1, 2]), np.array([0, 1, 2])]
    m = NGram(3, vocab_size=3).fit(pieces)
    pad = m.pad
    assert m.count([1, 2, 1]) == 2          # raw trigram count
    assert m.count([2, 1, 2]) == 2
    assert m.count([pad, 0, 1]) == 2        # a piece's start is a context of its own
    assert m.count([0, 1, 0]) == 0
    # bigram (1, 2) follows 0 in both pieces and 2 twice: two distinct left neighbours
    assert m.count([1, 2]) == 2
    # unigram 2 is preceded only by 1: one distinct left neighbour, though seen 4 times
    assert m.count([2]) == 1
    with pytest.raises(InvalidToken):
        m.count([1, 2, 1, 2])


def test_kneser_ney_prefers_words_with_many_contexts():
    # F is frequent but only ever after x; G is rarer but follows five different tokens
    x, F, G = 1, 2, 3
    pieces = [np.array([0, x, F])] * 10 + [np.array([0, a, G]) for a in (4, 5, 6, 7, 8)]
    m = NGram(2, vocab_size=10).fit(pieces)
    p = m.distribution([9])                  # 9 was never seen: back off to the unigram
    assert p[G] > p[F]
    assert m.distribution([x])[F] > 0.5      # but after x, F is the likely word


def test_distribution_sums_to_one_for_random_contexts():
    rng = np.random.default_rng(0)
    pieces = [rng.integers(0, 40, size=rng.integers(2, 300)) for _ in range(50)]
    pieces += [np.tile([3, 7, 9, 7], 30)]
    for order in (1, 2, 5):
        m = NGram(order, vocab_size=40).fit(pieces)
        for _ in range(30):
            ctx = rng.integers(0, 40, size=rng.integers(0, 8))
            p = m.distribution(ctx)
            assert p.shape == (40,) and (p > 0).all()
            assert math.isclose(p.sum(), 1.0, rel_tol=1e-9)
        assert math.isclose(m.distribution([3, 7, 9]).sum(), 1.0, rel_tol=1e-9)


def test_discounts_follow_chen_goodman_and_stay_in_range():
    counts = np.array([1] * 50 + [2] * 20 + [3] * 10 + [4] * 6 + [9] * 3)
    n1, n2, n3, n4 = 50, 20, 10, 6
    y = n1 / (n1 + 2 * n2)
    np.testing.assert_allclose(discounts(counts)[1:],
                               [1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3])
    # too few counts for the three-discount estimate: fall back to one discount in (0, 1]
    d = discounts(np.array([5, 7, 9]))
    assert (d[1:] > 0).all() and (d[1:] <= [1, 2, 3]).all()


def test_on_real_tunes_higher_orders_predict_better(tmp_path):
    # 150 tunes of Aird's Airs from music21's corpus, built as `ostinato data` builds them
    out = tmp_path / "dataset.npz"
    build(BuildConfig(collections=("airdsAirs",), max_pieces=150, out=str(out), workers=1,
                      progress=False))
    ds = Dataset.load(out)
    train = [t for t, _ in ds.pieces("train")]
    held = [t for t, _ in ds.pieces("valid") + ds.pieces("test")]
    assert len(held) >= 5
    nll = {k: NGram(k, ds.vocab.size).fit(train).nll(held) for k in (1, 2, 5)}
    assert nll[5] < nll[2] < nll[1] < math.log(ds.vocab.size)
    for lv in NGram(5, ds.vocab.size).fit(train).levels:
        assert (lv.discounts[1:] > 0).all() and (lv.discounts[1:] <= [1, 2, 3]).all()


def test_repetitive_music_scores_lower_than_random():
    rng = np.random.default_rng(5)
    motif = np.array([0, 12, 40, 7, 19, 40, 12, 52, 40])
    train = [np.concatenate([[0], np.tile(motif, 20)]) for _ in range(5)]
    train += [rng.integers(0, 60, 200) for _ in range(5)]
    m = NGram(5, vocab_size=60).fit(train)
    repetitive = m.nll([np.concatenate([[0], np.tile(motif, 10)])])
    random = m.nll([rng.integers(0, 60, 200)])
    assert repetitive < 0.5 < math.log(60) - 1 < random


def test_scores_tokens_one_onwards_of_each_piece_like_the_lstm():
    rng = np.random.default_rng(2)
    pieces = [rng.integers(0, 20, n) for n in (1, 2, 17, 50)]
    m = NGram(3, vocab_size=20).fit(pieces)
    lp = m.logprobs(pieces)
    assert len(lp) == sum(len(p) - 1 for p in pieces)
    # a piece's second token is predicted from the first alone, not from the piece before
    p = pieces[2]
    assert math.isclose(lp[1], math.log(m.distribution(p[:1])[p[1]]))
    assert math.isclose(m.nll(pieces), -lp.mean())
    # one array is one piece
    assert math.isclose(m.nll(pieces[3]), -m.logprobs([pieces[3]]).mean())


def test_bad_input_is_named():
    with pytest.raises(InvalidMessage) as e:
        NGram(0)
    assert e.value.field == "order"
    with pytest.raises(InvalidMessage) as e:
        NGram(9, vocab_size=305).fit([np.arange(10)])
    assert e.value.field == "order"
    with pytest.raises(InvalidMessage) as e:
        NGram(3, vocab_size=5).fit([np.array([1])])
    assert e.value.field == "pieces"
    m = NGram(3, vocab_size=5).fit([np.array([1, 2, 3])])
    with pytest.raises(InvalidToken, match=r"token 7 outside \[0, 4\]"):
        m.nll([np.array([1, 7])])
    with pytest.raises(InvalidMessage) as e:
        NGram(3, vocab_size=5).nll([np.array([1, 2])])
    assert e.value.field == "model"


def test_fits_a_training_sized_stream():
    # about the size of the real training set: 3 M tokens in 10 k pieces
    rng = np.random.default_rng(0)
    steps = rng.integers(0, 4, size=(10000, 300))
    pieces = list(np.cumsum(steps, axis=1) % 305)
    m = NGram(5, vocab_size=305).fit(pieces)
    assert len(m.levels) == 5 and m.levels[-1].counts.sum() == 10000 * 299
