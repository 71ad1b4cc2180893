"""The LSTM stepped in numba: a batched GEMV, the gate nonlinearities and one step.

Sessions are stepped together: each weight row is read once per batch and applied to
every session that needs an event (``gemv``), so a step costs about one read of the
weights (``engine.sampler.weights.Weights``) whatever the batch.  Float32 throughout,
with fast-math flags that let LLVM vectorize the dot products.
"""
import numpy as np
from numba import njit

FLAGS = {"reassoc", "contract", "arcp", "nsz"}  # fast dot products, but keep inf/nan
F32 = np.float32
KERNEL = dict(nogil=True, cache=True, fastmath=FLAGS, error_model="numpy")  # no zero checks


@njit(inline="always", **KERNEL)
def tanh32(x):
    """tanh in float32: Eigen's 13/6 rational approximation (error < 3e-7), which LLVM
    can vectorize where a call to tanhf cannot be."""
    lim = F32(7.90531110763549805)
    x = lim if x > lim else x
    x = -lim if x < -lim else x
    x2 = x * x
    p = x2 * F32(-2.76076847742355e-16) + F32(2.00018790482477e-13)
    p = x2 * p + F32(-8.60467152213735e-11)
    p = x2 * p + F32(5.12229709037114e-08)
    p = x2 * p + F32(1.48572235717979e-05)
    p = x2 * p + F32(6.37261928875436e-04)
    p = x2 * p + F32(4.89352455891786e-03)
    q = x2 * F32(1.19825839466702e-06) + F32(1.18534705686654e-04)
    q = x2 * q + F32(2.26843463243900e-03)
    q = x2 * q + F32(4.89352518554385e-03)
    return x * p / q


@njit(inline="always", **KERNEL)
def sigmoid32(x):
    return F32(0.5) * tanh32(F32(0.5) * x) + F32(0.5)


@njit(**KERNEL)
def gemv(W, x, out, idx, n):
    """out[s] += W @ x[s] for the sessions idx[:n].  Four sessions share each weight
    load (two rows at a time: eight accumulators stay in registers).  A session on its
    own is a dot product per row: reading the weights is its limit, not arithmetic."""
    G, K = W.shape
    k = 0
    while k + 4 <= n:
        s0, s1, s2, s3 = idx[k], idx[k + 1], idx[k + 2], idx[k + 3]
        for j in range(0, G - 1, 2):
            a00 = a01 = a02 = a03 = a10 = a11 = a12 = a13 = F32(0.0)
            for q in range(K):
                w0, w1 = W[j, q], W[j + 1, q]
                x0, x1, x2, x3 = x[s0, q], x[s1, q], x[s2, q], x[s3, q]
                a00 += w0 * x0
                a01 += w0 * x1
                a02 += w0 * x2
                a03 += w0 * x3
                a10 += w1 * x0
                a11 += w1 * x1
                a12 += w1 * x2
                a13 += w1 * x3
            out[s0, j] += a00
            out[s1, j] += a01
            out[s2, j] += a02
            out[s3, j] += a03
            out[s0, j + 1] += a10
            out[s1, j + 1] += a11
            out[s2, j + 1] += a12
            out[s3, j + 1] += a13
        for j in range(G - G % 2, G):
            for kk in range(k, k + 4):
                _dot_row(W, x, out, idx[kk], j)
        k += 4
    for k in range(k, n):
        for j in range(G):
            _dot_row(W, x, out, idx[k], j)


@njit(**KERNEL)
def _dot_row(W, x, out, s, j):
    acc = F32(0.0)
    for q in range(W.shape[1]):
        acc += W[j, q] * x[s, q]
    out[s, j] += acc


@njit(**KERNEL)
def lstm_cell(gates, h, c, layer, idx, n):
    """The gate nonlinearities of one layer (gate order i, f, g, o as in torch)."""
    H = h.shape[2]
    for k in range(n):
        s = idx[k]
        for j in range(H):
            cc = (sigmoid32(gates[s, H + j]) * c[s, layer, j]
                  + sigmoid32(gates[s, j]) * tanh32(gates[s, 2 * H + j]))
            c[s, layer, j] = cc
            h[s, layer, j] = sigmoid32(gates[s, 3 * H + j]) * tanh32(cc)


@njit(**KERNEL)
def lstm_step(idx, n, tokens, controls, h, c, tok_table, w0, w_rest, b_rest, w_out, b_out,
              xbuf, gates, logits, zbias):
    """One step for sessions idx[:n]: feed tokens[s] with controls[s], update h/c [S,L,H],
    write logits[s].  xbuf [S, max(C+H, 2H)] and gates [S, 4H] are scratch.  zbias
    [S, L, 4H] is each session's extra gate bias per layer: W_z z of its theme
    (``engine.sampler.theme``), zero without one."""
    L, H = h.shape[1], h.shape[2]
    C = controls.shape[1]
    G = 4 * H
    for layer in range(L):
        # input vector per session: [controls, h0] for layer 0, [h_{l-1}, h_l] above
        for k in range(n):
            s = idx[k]
            if layer == 0:
                for j in range(C):
                    xbuf[s, j] = controls[s, j]
                for j in range(H):
                    xbuf[s, C + j] = h[s, 0, j]
                for j in range(G):
                    gates[s, j] = tok_table[tokens[s], j] + zbias[s, 0, j]
            else:
                for j in range(H):
                    xbuf[s, j] = h[s, layer - 1, j]
                    xbuf[s, H + j] = h[s, layer, j]
                for j in range(G):
                    gates[s, j] = b_rest[layer - 1, j] + zbias[s, layer, j]
        gemv(w0 if layer == 0 else w_rest[layer - 1], xbuf, gates, idx, n)
        lstm_cell(gates, h, c, layer, idx, n)
    for k in range(n):
        s = idx[k]
        for j in range(H):  # the head reads the top layer's h from xbuf's first H columns
            xbuf[s, j] = h[s, L - 1, j]
        for v in range(w_out.shape[0]):
            logits[s, v] = b_out[v]
    gemv(w_out, xbuf, logits, idx, n)
