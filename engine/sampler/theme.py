"""Themes at run time, without torch: a theme's tokens to z, and z to what the runtime adds.

A theme model file (``engine.theme.model``) is the plain generator plus a phrase encoder and
the latent's weights.  Here the encoder, an embedding and one bidirectional LSTM layer,
runs in numba: the embedding and input weights are folded into one table per direction
(``tok[token]`` is a row copy, as in ``engine.sampler.generator``), so a step is one GEMV
over h.  Its output is the mean of q(z | theme); the server composes from that mean,
or from a point nearer the prior for a freer variation.

What z changes in the generator is computed once per theme (``bias``): W_z z per layer,
the extra gate bias ``Runtime.set_theme`` gives the session, and the initial state
tanh(W_h z), W_c z; with a conductor, one bias per position of the theme (bar or beat),
the runtime copying the row of the position its music is at.  A step then costs what it
costs without a theme.
"""
import numpy as np
from numba import njit

from engine.errors import InvalidToken, ModelError
from engine.modelfile import read_model_file
from engine.motif import VARIATION_RANGE

from engine.sampler.lstm import KERNEL, sigmoid32, tanh32

ENC = "theme.encoder."


class ThemeEncoder:
    """The encoder and latent weights of a theme model file, in the kernels' layout."""

    def __init__(self, path, max_tokens=2048):  # 512 notes in 8 bars make at most 1,408
        meta, a = read_model_file(path, theme=True)
        if "theme" not in meta:
            raise ModelError(f"{path}: a plain generator, not a theme model (no 'theme' in "
                             "its metadata): train one with `ostinato theme train`")
        self.meta, self.config = meta, meta["theme"]
        self.per_bar = self.config.get("positions_per_bar", 0)
        self.max_bars = self.config.get("max_bars", 8)
        self.z_dim = self.config["z_dim"]
        self.max_tokens = max_tokens
        K = self.config["enc_hidden"]
        f32 = lambda x: np.ascontiguousarray(x, dtype=np.float32)  # noqa: E731
        emb = a[ENC + "embed.weight"].astype(np.float64)
        self.tok, self.w_hh = [], []
        for d in ("", "_reverse"):
            w_ih = a[f"{ENC}lstm.weight_ih_l0{d}"].astype(np.float64)
            b = a[f"{ENC}lstm.bias_ih_l0{d}"].astype(np.float64) + a[f"{ENC}lstm.bias_hh_l0{d}"]
            self.tok.append(f32(emb @ w_ih.T + b))                  # [V, 4K]
            self.w_hh.append(f32(a[f"{ENC}lstm.weight_hh_l0{d}"]))  # [4K, K]
        self.w_out = a[ENC + "out.weight"].astype(np.float64)        # [2Z, 2K]
        self.b_out = a[ENC + "out.bias"].astype(np.float64)
        L = meta["config"]["layers"]
        self.gates = np.stack([a[f"theme.gates_l{k}"] for k in range(L)]).astype(np.float64)
        self.h0 = np.stack([a[f"theme.h0_l{k}"] for k in range(L)]).astype(np.float64)
        self.c0 = np.stack([a[f"theme.c0_l{k}"] for k in range(L)]).astype(np.float64)
        if self.per_bar:  # the conductor: u_p = tanh(A_p z), and W_u of every layer in one
            self.conductor = a["theme.conductor"].astype(np.float64)                # [P, Z, Z]
            self.codes = np.concatenate([a[f"theme.codes_l{k}"] for k in range(L)]).astype(
                np.float64)                                                         # [L 4H, Z]
        self._h = np.zeros((2, K), np.float32)   # scratch: each direction's state
        self._c = np.zeros((2, K), np.float32)
        self._g = np.zeros(4 * K, np.float32)
        self.vocab_size, self.hidden = meta["config"]["vocab_size"], K

    def encode(self, tokens):
        """(mu, logvar) of q(z | tokens), each [Z] float64: the theme's tokens as the
        training phrases are (key-relative, no START), 1..``max_tokens`` of them."""
        t = np.ascontiguousarray(tokens, dtype=np.int64)
        if t.ndim != 1 or not 1 <= len(t) <= self.max_tokens:
            raise InvalidToken(f"a theme is 1..{self.max_tokens} tokens, got shape {t.shape}")
        if t.min() < 0 or t.max() >= self.vocab_size:
            raise InvalidToken(f"theme tokens must be in 0..{self.vocab_size - 1}")
        _encode(t, self.tok[0], self.w_hh[0], self.tok[1], self.w_hh[1], self._h, self._c,
                self._g)
        out = self.w_out @ np.concatenate([self._h[0], self._h[1]]) + self.b_out
        return out[:self.z_dim].copy(), out[self.z_dim:].copy()

    def positions(self, bars):
        """How many position biases a theme of ``bars`` bars gets (0: one bias): its bars,
        at most the model's ``max_bars`` (a longer theme goes round the codes again),
        times the positions per bar."""
        return min(int(bars), self.max_bars) * self.per_bar

    def bias(self, z, bars=None):
        """What z adds to the generator: (bias, (h0, c0) each [L, H]), float32, for
        ``Runtime.set_theme``.  bias is W_z z per layer [L, 4H]; for a conductor model
        (``positions_per_bar`` > 0) and a theme of ``bars`` bars (None: ``max_bars``) it
        is [n, L, 4H], W_z z + W_u tanh(A_p z) for each of its n positions.  z = 0 gives
        zeros, one bias: the plain generator."""
        z = np.asarray(z, np.float64)
        f32 = lambda x: x.astype(np.float32)  # noqa: E731
        bias = self.gates @ z
        state = (f32(np.tanh(self.h0 @ z)), f32(self.c0 @ z))
        if not self.per_bar or not z.any():
            return f32(bias), state
        n = self.positions(self.max_bars if bars is None else bars)
        u = np.tanh(self.conductor[:n] @ z)                     # [n, Z]
        rows = (self.codes @ u.T).T.reshape(n, *bias.shape)     # W_u u_p: one GEMM (BLAS)
        return f32(bias[None] + rows), state


def latent(mu, variation):
    """The z a session composes from at ``variation`` 0..1: the theme's posterior mean at
    0 (stay close to the theme), moved in a straight line towards the prior's centre, z = 0,
    which is free composition, at 1: z = (1 - variation) mu.  The sampling noise makes
    each pass different at every variation."""
    lo, hi = VARIATION_RANGE
    if not lo <= variation <= hi:
        raise ValueError(f"variation {variation!r} is outside {lo:g}..{hi:g}")
    return (1.0 - variation) * np.asarray(mu, np.float64)


def slerp(z0, z1, t):
    """Spherical interpolation from z0 (t = 0) to z1 (t = 1), as MusicVAE blends latents:
    along the great circle between their directions, the norm moving linearly; linear
    where the angle is tiny or a point is the origin (free composition)."""
    z0, z1 = np.asarray(z0, np.float64), np.asarray(z1, np.float64)
    n0, n1 = np.linalg.norm(z0), np.linalg.norm(z1)
    if n0 < 1e-12 or n1 < 1e-12:
        return (1 - t) * z0 + t * z1
    cos = float(np.clip(z0 @ z1 / (n0 * n1), -1.0, 1.0))
    omega = np.arccos(cos)
    if omega < 1e-6:
        return (1 - t) * z0 + t * z1
    u0, u1 = z0 / n0, z1 / n1
    direction = (np.sin((1 - t) * omega) * u0 + np.sin(t * omega) * u1) / np.sin(omega)
    return direction * ((1 - t) * n0 + t * n1)


@njit(**KERNEL)
def _direction(tokens, step, tok, w_hh, h, c, g):
    """One LSTM direction over tokens (``step`` +1 forwards, -1 backwards) from zero
    state, into h and c [K]."""
    K = h.shape[0]
    h[:] = 0.0
    c[:] = 0.0
    n = tokens.shape[0]
    for i in range(n):
        t = tokens[i] if step > 0 else tokens[n - 1 - i]
        for j in range(4 * K):
            acc = tok[t, j]
            for q in range(K):
                acc += w_hh[j, q] * h[q]
            g[j] = acc
        for j in range(K):  # gate order i, f, g, o as in torch
            cc = sigmoid32(g[K + j]) * c[j] + sigmoid32(g[j]) * tanh32(g[2 * K + j])
            c[j] = cc
            h[j] = sigmoid32(g[3 * K + j]) * tanh32(cc)


@njit(**KERNEL)
def _encode(tokens, tok_f, whh_f, tok_b, whh_b, h, c, g):
    """Both directions' final states: h[0] after the last token read forwards, h[1] after
    the first read backwards (what ``nn.LSTM``'s h_n holds for a packed sequence)."""
    _direction(tokens, 1, tok_f, whh_f, h[0], c[0], g)
    _direction(tokens, -1, tok_b, whh_b, h[1], c[1], g)
