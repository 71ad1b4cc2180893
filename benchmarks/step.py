"""One generator step at batch 1: the numba kernel against torch and the memory bound.

Every candidate steps the same model (the file the server loads) one event at a time,
carrying its state: ``engine.sampler.lstm.lstm_step``; torch's ``nn.LSTM`` through
``MusicLSTM.forward`` on a [1, 1] input; and a stack of ``nn.LSTMCell`` with the same
weights.  The bound is the time to read the weights once at a copy bandwidth measured
in the same run (STREAM's convention: a copy of n bytes moves 2n).  The logits of all
three are compared so the race is between equal computations.
"""
import time

import numpy as np
from numba import njit

from engine.sampler.generator import Runtime
from engine.sampler.lstm import FLAGS, gemv, lstm_cell, lstm_step
from engine.sampler.weights import Weights

from .stats import summary, us

DRAM_BYTES = 256 << 20


def _timed(fn, iters):
    out = np.empty(iters, np.int64)
    clock = time.perf_counter_ns
    for i in range(iters):
        t0 = clock()
        fn(i)
        out[i] = clock() - t0
    return out


def _inputs(w, n, seed=0):
    rng = np.random.default_rng(seed)
    ctl = np.stack([w.spec.vector(int(rng.integers(12)), int(rng.integers(2)), 2.0, 64.0, phase=t)
                    for t in range(w.vocab.ticks_per_beat)]).astype(np.float32)
    tokens = rng.integers(0, w.vocab.size, n)  # drawn last: a longer run has the same prefix
    return tokens, ctl


def _stepper(w, n):
    """A one-session runtime and step(i), which feeds input i of ``n`` to ``lstm_step``."""
    rt = Runtime(w, max_sessions=1)
    idx = np.zeros(1, np.int64)
    tokens, ctl = _inputs(w, n)
    args = rt.kernel_args()

    def step(i):
        rt.tokens[0] = tokens[i]
        rt.controls[0] = ctl[i % len(ctl)]
        lstm_step(idx, 1, *args)

    return rt, step


def numba_step(w, iters, warmup=200):
    """Per-call ns of ``lstm_step`` for one session, and the logits after ``warmup`` steps."""
    rt, step = _stepper(w, iters + warmup)
    _timed(step, warmup)
    check = rt.logits[0].copy()
    return _timed(lambda i: step(i + warmup), iters), check


def numba_step_after_gap(w, count, gap_ms=(20.0, 80.0), seed=3):
    """Per-call ns of ``lstm_step`` after an idle 20-80 ms, the gap between a server's
    notes: on a shared machine the weights have left the caches by then, so this is
    the step an immediate transition pays for (two of them, the first this cold)."""
    _, step = _stepper(w, count + 20)
    gaps = np.random.default_rng(seed).uniform(*gap_ms, count) / 1e3
    _timed(step, 20)
    out = np.empty(count, np.int64)
    for i in range(count):
        time.sleep(gaps[i])
        t0 = time.perf_counter_ns()
        step(i + 20)
        out[i] = time.perf_counter_ns() - t0
    return out


def torch_steps(path, w, iters, threads, warmup=200):
    """Per-call ns of the nn.LSTM and LSTMCell steps at ``threads`` torch threads, and the
    largest logit difference of each from the numba step after ``warmup`` steps."""
    import torch
    from torch import nn

    from engine.training.model import load_model

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model, *_ = load_model(path)
        H, L = model.cfg.hidden, model.cfg.layers
        cells = [nn.LSTMCell(model.lstm.input_size if l == 0 else H, H) for l in range(L)]
        with torch.no_grad():
            for l, cell in enumerate(cells):
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(cell, name).copy_(getattr(model.lstm, f"{name}_l{l}"))
        tokens, ctl = _inputs(w, iters + warmup)
        tok_t = torch.from_numpy(tokens).view(-1, 1, 1)
        ctl_t = torch.from_numpy(ctl).view(len(ctl), 1, 1, -1)
        state = [None]
        cstate = [[(torch.zeros(1, H), torch.zeros(1, H)) for _ in range(L)]]
        out = {}

        def lstm(i):
            out["lstm"], state[0] = model(tok_t[i], ctl_t[i % len(ctl)], state[0])

        def cell(i):
            x = torch.cat([model.embed(tok_t[i][0]), ctl_t[i % len(ctl)][0]], dim=-1)
            new = []
            for c, hc in zip(cells, cstate[0]):
                h, cc = c(x, hc)
                new.append((h, cc))
                x = h
            cstate[0] = new
            out["cell"] = model.head(x)

        result = {}
        with torch.inference_mode():
            for name, fn in (("lstm", lstm), ("cell", cell)):
                _timed(fn, warmup)
                result[name + "_logits"] = out[name].reshape(-1).numpy().copy()
                result[name] = _timed(lambda i: fn(i + warmup), iters)
        return result
    finally:
        torch.set_num_threads(before)


def torch_profile(path, steps=300, top=5):
    """Where the nn.LSTM step spends its time: the ``top`` ops by self CPU time, as
    (op, µs per step, share) from torch.profiler at 1 thread."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from engine.training.model import load_model

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model, *_ = load_model(path)
        x = torch.zeros(1, 1, dtype=torch.long)
        c = torch.zeros(1, 1, model.cfg.n_controls)
        state = None
        with torch.inference_mode():
            for _ in range(50):
                _, state = model(x, c, state)
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(steps):
                    _, state = model(x, c, state)
        ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
        total = sum(e.self_cpu_time_total for e in ops)
        return [(e.key, e.self_cpu_time_total / steps, e.self_cpu_time_total / total)
                for e in ops[:top]]
    finally:
        torch.set_num_threads(before)


def copy_bandwidth(nbytes, min_s=0.3, max_reps=10000):
    """Best bytes/s of np.copyto over a buffer of ``nbytes`` (2 × nbytes moved a copy)."""
    src = np.ones(nbytes // 4, np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    best = None
    end = time.perf_counter() + min_s
    reps = 0
    while reps < 3 or (time.perf_counter() < end and reps < max_reps):
        t0 = time.perf_counter_ns()
        np.copyto(dst, src)
        dt = time.perf_counter_ns() - t0
        best = dt if best is None else min(best, dt)
        reps += 1
    return 2 * src.nbytes / (best / 1e9)


@njit(nogil=True, cache=True, fastmath=FLAGS)
def _read(a):
    acc = np.float32(0.0)
    for i in range(a.shape[0]):
        acc += a[i]
    return acc


def read_bandwidth(nbytes, min_s=0.3, max_reps=10000):
    """Best bytes/s of one vectorized read pass (a float32 sum) over ``nbytes``: what a
    kernel that only streams the weights could reach, beside the copy's convention."""
    a = np.ones(nbytes // 4, np.float32)
    _read(a)
    best = None
    end = time.perf_counter() + min_s
    reps = 0
    while reps < 3 or (time.perf_counter() < end and reps < max_reps):
        t0 = time.perf_counter_ns()
        _read(a)
        dt = time.perf_counter_ns() - t0
        best = dt if best is None else min(best, dt)
        reps += 1
    return a.nbytes / (best / 1e9)


def parts(w, iters):
    """p50 µs of one step's phases at batch 1, each timed alone with the kernel's own
    pieces: the gate GEMVs that stream the weights, the gate nonlinearities, the head."""
    rt = Runtime(w, max_sessions=1)
    rng = np.random.default_rng(0)
    rt.xbuf[:] = rng.standard_normal(rt.xbuf.shape).astype(np.float32) * 0.1
    idx = np.zeros(1, np.int64)
    L = w.layers

    def gemvs(i):
        gemv(w.w0, rt.xbuf, rt.gates, idx, 1)
        for l in range(L - 1):
            gemv(w.w_rest[l], rt.xbuf, rt.gates, idx, 1)

    def cells(i):
        for l in range(L):
            lstm_cell(rt.gates, rt.h, rt.c, l, idx, 1)

    def head(i):
        gemv(w.w_out, rt.xbuf, rt.logits, idx, 1)

    out = {}
    for name, fn in (("gate_gemv", gemvs), ("gate_nonlinearity", cells), ("head_gemv", head)):
        _timed(fn, 100)
        rt.gates[:] = rng.standard_normal(rt.gates.shape) * 0.1  # typical, finite values
        out[name + "_us_p50"] = float(np.median(_timed(fn, iters))) / 1e3
    return out


def run(model, iters=20000, torch_iters=2000, torch_threads=(1, None), dram_bytes=DRAM_BYTES,
        log=print):
    """Every figure of the step benchmark, as a JSON-ready dict."""
    w = Weights(model)
    log(f"step: numba lstm_step x{iters}")
    ns, ref = numba_step(w, iters)
    gap_count = max(iters // 200, 5)
    log(f"step: numba lstm_step after an idle 20-80 ms, x{gap_count}")
    cold = numba_step_after_gap(w, gap_count)
    res = {"model": {"hidden": w.hidden, "layers": w.layers, "vocab": w.vocab.size,
                     "controls": w.n_controls, "weight_bytes": int(w.nbytes)},
           "numba_us": summary(us(ns)), "numba_after_gap_us": summary(us(cold)),
           "_samples": {"numba": us(ns), "numba_after_gap": us(cold)}}
    try:
        import torch
    except ImportError as exc:
        res["torch"] = f"unavailable: {exc}"
    else:
        res["torch"] = {}
        for threads in torch_threads:
            n = threads or torch.get_num_threads()
            log(f"step: torch nn.LSTM and LSTMCell x{torch_iters} at {n} thread(s)")
            t = torch_steps(model, w, torch_iters, n)
            key = f"threads_{n}" + ("_default" if threads is None else "")
            res["torch"][key] = {
                "lstm_us": summary(us(t["lstm"])), "cell_us": summary(us(t["cell"])),
                "lstm_vs_numba_p50": float(np.median(t["lstm"]) / np.median(ns)),
                "cell_vs_numba_p50": float(np.median(t["cell"]) / np.median(ns)),
                "max_logit_diff_lstm": float(np.abs(t["lstm_logits"] - ref).max()),
                "max_logit_diff_cell": float(np.abs(t["cell_logits"] - ref).max())}
        log("step: torch.profiler on the nn.LSTM step")
        res["torch_profile"] = [{"op": op, "us_per_step": u, "share": sh}
                                for op, u, sh in torch_profile(model, max(torch_iters // 4, 20))]
    log(f"step: copy bandwidth (weights' size and {dram_bytes >> 20} MB)")
    bw_cache = copy_bandwidth(w.nbytes)
    bw_read = read_bandwidth(w.nbytes)
    bw_dram = copy_bandwidth(dram_bytes, min_s=1.0, max_reps=10)
    p50 = float(np.median(ns)) / 1e3
    log("step: profile of the kernel by parts")
    res["parts"] = parts(w, max(iters // 4, 100))
    res["bound"] = {
        "copy_GBps_weights_size": bw_cache / 1e9, "copy_GBps_large": bw_dram / 1e9,
        "large_buffer_MB": dram_bytes >> 20,
        "bound_us_weights_size": w.nbytes / bw_cache * 1e6,
        "bound_us_large": w.nbytes / bw_dram * 1e6,
        "numba_p50_vs_bound_weights_size": p50 / (w.nbytes / bw_cache * 1e6),
        "numba_p50_vs_bound_large": p50 / (w.nbytes / bw_dram * 1e6),
        "read_GBps_weights_size": bw_read / 1e9,
        "read_us_weights_size": w.nbytes / bw_read * 1e6,
        "flops_per_step": int(2 * _macs(w)),
        "numba_GFLOPs_at_p50": 2 * _macs(w) / (p50 * 1e3)}
    return res


def _macs(w):
    """Multiply-adds of one step: the gate GEMVs of every layer and the output head."""
    G, H = 4 * w.hidden, w.hidden
    return G * w.w0.shape[1] + (w.layers - 1) * G * 2 * H + w.w_out.shape[0] * H
