"""Held-out NLL: how likely real music is under a model, per event.

``mean_nll`` is the token-weighted mean NLL of a model on pieces (the LM score of
``ostinato quality``, the interpolation figures of ``engine.theme.variations``);
``nll_figures`` sets the LSTM beside a Kneser-Ney n-gram (``engine.evaluation.ngram``)
on the same predicted tokens; ``prior_nll`` scores the held-out pieces under the
tonality prior the runtime adds to the note-on logits, per tonality value.
"""
import numpy as np
import torch

from engine.controls import tonality_bias
from engine.errors import InvalidMessage
from engine.evaluation.ngram import NGram
from engine.vocab import NOTE_ON


def mean_nll(model, pieces):
    """Token-weighted mean NLL (nats per predicted event) of (tokens, controls) pieces."""
    total = count = 0
    for t, c in pieces:
        if len(t) >= 2:
            total += model.nll(t, c) * (len(t) - 1)
            count += len(t) - 1
    return total / count if count else float("nan")


def nll_figures(model, train_tokens, pieces, order=5, vocab_size=None):
    """LSTM and n-gram NLL (nats and bits per event) on the same held-out pieces."""
    pieces = [(t, c) for t, c in pieces if len(t) >= 2]
    if not pieces:
        raise InvalidMessage("no held-out piece has two or more tokens", field="split",
                             allowed="a split with pieces")
    total, count = 0.0, 0
    for t, c in pieces:
        n = len(t) - 1  # model.nll predicts tokens[1:]
        total += model.nll(t, c) * n
        count += n
    lstm = total / count
    ngram = NGram(order, vocab_size).fit([t for t in train_tokens])
    ng = ngram.nll([t for t, _ in pieces])
    return dict(pieces=len(pieces), tokens=count, ngram_order=order,
                lstm_nats=lstm, lstm_bits=lstm / np.log(2),
                ngram_nats=ng, ngram_bits=ng / np.log(2), improvement=1 - lstm / ng)


def piece_logits(model, tokens, controls, chunk=512):
    """The model's logits [len - 1, V] (float64) for predicting tokens[1:], the state
    carried across chunks as ``MusicLSTM.nll`` does."""
    t = torch.as_tensor(np.asarray(tokens, np.int64))[None]
    c = torch.as_tensor(np.asarray(controls, np.float32))[None]
    out, state = [], None
    with torch.no_grad():
        for i in range(0, t.shape[1] - 1, chunk):
            x = t[:, i:min(i + chunk, t.shape[1] - 1)]
            logits, state = model(x, c[:, i:i + x.shape[1]], state)
            out.append(logits[0].double().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.cfg.vocab_size))


def prior_nll(model, pieces, vocab, spec, tonalities, key_relative):
    """Held-out NLL under the tonality prior, per tonality value.

    The prior (``tonality_bias``) is added to the model's note-on logits and the
    distribution renormalised, as the runtime samples.  Each step's scale comes from
    the mode channel of its controls; its tonic is C for a key-relative dataset (its
    pieces were moved to C) and else the key channel's.  A held-out note the prior
    forbids (tonality 1, a note outside the scale) has probability 0: the NLL is then
    infinite, so the mean over the other tokens and the forbidden share are given too.
    """
    was = model.training
    model.eval()
    sl = spec.slices()
    on0 = vocab.offsets[NOTE_ON]
    pcs = np.arange(128) % 12
    biases = [np.array([tonality_bias(m, t) for m in range(2)]) for t in tonalities]
    total = np.zeros(len(tonalities))
    finite = np.zeros(len(tonalities))
    forbidden = np.zeros(len(tonalities), np.int64)
    count = 0
    for tokens, controls in pieces:
        if len(tokens) < 2:
            continue
        z0 = piece_logits(model, tokens, controls)
        y = np.asarray(tokens[1:], np.int64)
        ctl = np.asarray(controls[:-1], np.float32)
        mode = np.argmax(ctl[:, sl["mode"]], 1)
        tonic = np.zeros(len(y), np.int64) if key_relative else np.argmax(ctl[:, sl["key"]], 1)
        rel = (pcs[None, :] - tonic[:, None]) % 12   # [steps, 128] degree of each pitch
        rows = np.arange(len(y))
        for j, b in enumerate(biases):
            z = z0.copy()
            z[:, on0:on0 + 128] += b[mode[:, None], rel]
            m = z.max(1, keepdims=True)
            lse = m[:, 0] + np.log(np.exp(z - m).sum(1))
            lp = z[rows, y] - lse
            ok = np.isfinite(lp)
            total[j] += -lp.sum() if ok.all() else np.inf
            finite[j] -= lp[ok].sum()
            forbidden[j] += int((~ok).sum())
        count += len(y)
    model.train(was)
    return [dict(tonality=float(t), nll_nats=total[j] / max(count, 1),
                 nll_nats_allowed=finite[j] / max(count - forbidden[j], 1),
                 forbidden_share=forbidden[j] / max(count, 1), tokens=count)
            for j, t in enumerate(tonalities)]
