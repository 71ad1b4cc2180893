"""Batched sessions: step cost per session, the event rate music needs, and how many
sessions one server keeps in time.

``lstm_step`` is timed for S sessions at once (per-session cost = step / S).  The rate
the default model asks for is measured by generating at the default preset; the
compute share of a core S sessions need follows.  The capacity itself is measured, not
derived, twice for each count S: ``ostinato serve`` runs with S sessions open and the
jitter of every note on its event stream is taken (the end-to-end figure: it includes
ZeroMQ's hop between processes); and the engine runs in this process with a recording
port, which stamps each message as the engine hands it over (the server's own figure).
A count is real-time when that p99 stays under 1 ms and every session was heard (every
count is tried: the idle-gap effect can make a small count miss where a larger passes).
The same two figures with the critic on (``benchmarks.critic``: K drafts judged a beat,
beside K = 0 in the same run) are under ``critic``.

``ensemble`` measures an ensemble model (melody, bass, harmony and drums in one stream)
the same way, with every voice playing: the batched step on its weights, its event rate
in the ``combat`` preset (all four voices in; note-ons counted by voice) and the
sessions the engine keeps in time with every session in ``combat`` (the voices each
session was heard in are counted).
"""
import time

import numpy as np
import zmq

from engine.ensemble import VOICES
from engine.sampler.generator import Runtime
from engine.sampler.lstm import lstm_step
from engine.sampler.weights import Weights
from engine.vocab import NOTE_ON

from . import critic as critic_bench
from . import jitter
from .stats import summary, us

STEP_COUNTS = (1, 8, 64, 256)
SERVER_COUNTS = (1, 8, 16, 32, 64, 128, 256)
JITTER_P99_US = 1000.0
ENSEMBLE_STATE = "combat"  # the shipped preset that brings every voice in


def step_times(w, counts=STEP_COUNTS, seconds=1.5, min_iters=20):
    """{S: summary of one batched step (µs), per-session p50 (µs)} for each count."""
    out = {}
    for S in counts:
        rt = Runtime(w, max_sessions=S)
        idx = np.arange(S, dtype=np.int64)
        rng = np.random.default_rng(S)
        rt.tokens[:] = rng.integers(0, w.vocab.size, S)
        args = rt.kernel_args()
        lstm_step(idx, S, *args)
        times = []
        end = time.monotonic_ns() + int(seconds * 1e9)
        while len(times) < min_iters or time.monotonic_ns() < end:
            t0 = time.perf_counter_ns()
            lstm_step(idx, S, *args)
            times.append(time.perf_counter_ns() - t0)
        s = summary(us(times))
        out[str(S)] = {"step_us": s, "per_session_us_p50": s["p50"] / S}
    return out


def event_rate(model, beats=400, state=None):
    """Tokens (time shifts and voice tokens included) and notes a session generates per
    beat and per second at preset ``state`` (None: the server's default), measured by
    running the generator; ``advance_us_per_beat``: the generator's own time per beat of
    music for that session (its ``advance`` calls summed: steps, sampling, voices).  An
    ensemble's note-ons are also counted by voice."""
    from realtime.server import Server, ServerConfig
    from realtime.mood import bpm_of

    cfg = ServerConfig(model=str(model), max_sessions=1,
                       **({} if state is None else {"initial_state": state}))
    srv = Server(cfg, [], control=False)
    try:
        rt = srv.rt
        kinds = srv.weights.kinds
        n_voices = srv.weights.vocab.n_voices
        bpm = bpm_of(srv.sessions["main"].mood)
        tpb = srv.tpb
        start = int(rt.gen_tick[0])
        target = np.array([start + beats * tpb], np.int64)
        counts = np.zeros(int(kinds.max()) + 1, np.int64)
        by_voice = np.zeros(max(n_voices, 1), np.int64)
        spent = 0
        while rt.gen_tick[0] < target[0]:
            head = int(rt.tail[0])
            t0 = time.perf_counter_ns()
            stepped = rt.advance(target, 64)
            spent += time.perf_counter_ns() - t0
            if stepped == 0:
                break
            for i in range(head, int(rt.tail[0])):
                kind = kinds[rt.ev_tok[0, i % rt.ring]]
                counts[kind] += 1
                if kind == NOTE_ON:
                    by_voice[max(int(rt.ev_voice[0, i % rt.ring]), 0)] += 1
            rt.head[0] = rt.tail[0]  # played: frees the ring
        played = (int(rt.gen_tick[0]) - start) / tpb
    finally:
        srv.close()
    per_beat = counts.sum() / played
    out = {"preset": cfg.initial_state, "bpm": bpm, "beats": played,
           "tokens_per_beat": per_beat, "note_ons_per_beat": counts[NOTE_ON] / played,
           "tokens_per_s": per_beat * bpm / 60.0, "advance_us_per_beat": spent / 1e3 / played}
    if n_voices:
        out["note_ons_per_beat_by_voice"] = {VOICES[v]: by_voice[v] / played
                                             for v in range(n_voices)}
    return out


def sweep(model, counts=SERVER_COUNTS, seconds=8.0, log=print):
    """Jitter on the event stream for each session count; returns ({S: result}, the
    largest count that met p99 < 1 ms with every session heard, or 0)."""
    ctx = zmq.Context()
    results = {}
    try:
        for S in counts:
            log(f"sessions: serve with {S} session(s), {seconds:g} s")
            r = jitter.measure(model, S, seconds, ctx)
            r["realtime"] = bool(r["zmq_us"].get("n") and r["zmq_us"]["p99"] < JITTER_P99_US
                                 and r["sessions_heard"] == S)
            results[str(S)] = r
    finally:
        ctx.term()
    return results, max([int(S) for S, r in results.items() if r["realtime"]], default=0)


def engine_sweep(model, counts=SERVER_COUNTS, seconds=8.0, log=print, state=None):
    """Send lateness in the engine itself for each session count, every session in preset
    ``state`` (None: the server's default); returns ({S: result}, the largest count that
    met p99 < 1 ms with every session heard, or 0)."""
    from .breakdown import engine

    results = {}
    for S in counts:
        log(f"sessions: engine alone with {S} session(s)"
            + (f" in {state}" if state else "") + f", {seconds:g} s")
        r = engine(model, S, seconds, changes=0, state=state)
        r.pop("_samples")
        e = r["send_lateness_us"]
        r["realtime"] = bool(e.get("n") and e["p99"] < JITTER_P99_US and r["sessions_heard"] == S)
        results[str(S)] = r
    return results, max([int(S) for S, r in results.items() if r["realtime"]], default=0)


def run(model, step_seconds=1.5, server_seconds=8.0, step_counts=STEP_COUNTS,
        server_counts=SERVER_COUNTS, log=print, critic=None, critic_ks=None):
    """Every figure above; ``critic``: the critic file the critic figures use (default:
    the trained one, else random weights); ``critic_ks``: K values besides 0 (default
    2, 4, 8, and 2 alone in a run as short as ``--quick``'s)."""
    w = Weights(model)
    log("sessions: batched lstm_step for " + ", ".join(map(str, step_counts)))
    steps = step_times(w, step_counts, step_seconds)
    log("sessions: event rate at the default preset")
    rate = event_rate(model)
    _per_beat(steps, rate)
    results, best = sweep(model, server_counts, server_seconds, log)
    eng, eng_best = engine_sweep(model, server_counts, server_seconds, log)
    if critic_ks is None:
        critic_ks = critic_bench.KS if server_seconds >= 2 else critic_bench.KS[:1]
    judged = critic_bench.run(model, critic, critic_ks, [c for c in step_counts if c <= 64],
                              server_counts=[c for c in server_counts if c <= 64],
                              seconds=server_seconds, log=log)
    return {"step": steps, "rate": rate, "server": results, "realtime_sessions": best,
            "engine": eng, "realtime_sessions_engine": eng_best, "critic": judged,
            "criterion": f"p99 of (arrival - scheduled) on the event stream < {JITTER_P99_US:g} µs "
                         "and every session heard",
            "criterion_engine": f"p99 of (handed to the port - scheduled) in the engine < "
                                f"{JITTER_P99_US:g} µs and every session heard"}


def _per_beat(steps, rate):
    """Add to each count's step figures the LSTM's µs per session per beat of music and
    the share of one core it takes when that many sessions play in time."""
    for S, r in steps.items():
        r["us_per_beat"] = rate["tokens_per_beat"] * r["per_session_us_p50"]
        r["core_share"] = int(S) * rate["tokens_per_s"] * r["per_session_us_p50"] / 1e6


def ensemble(model, step_seconds=1.5, server_seconds=8.0, step_counts=STEP_COUNTS,
             server_counts=SERVER_COUNTS, log=print, state=ENSEMBLE_STATE, line=None):
    """The figures of ``run`` for an ensemble model with every voice playing: the
    batched step on its weights, its event rate in ``state`` and the engine's sweep with
    every session in ``state``; ``line``: a one-line model whose event rate in ``state``
    is measured too (``rate_line``), to compare at the same mood and tempo.  Real-time as in ``engine_sweep`` (p99 < 1 ms, every
    session heard), and here also each of the model's voices heard (``every_voice``)."""
    w = Weights(model)
    if not w.vocab.n_voices:
        raise ValueError(f"{model} is a one-line model, not an ensemble")
    log("ensemble: batched lstm_step for " + ", ".join(map(str, step_counts)))
    steps = step_times(w, step_counts, step_seconds)
    log(f"ensemble: event rate in {state}")
    rate = event_rate(model, state=state)
    _per_beat(steps, rate)
    rate_line = None if line is None else event_rate(line, state=state)
    eng, _ = engine_sweep(model, server_counts, server_seconds, log, state=state)
    voices = list(VOICES[:w.vocab.n_voices])
    for r in eng.values():
        r["every_voice"] = all(r.get("voices_heard", {}).get(v, 0) > 0 for v in voices)
        r["realtime"] = r["realtime"] and r["every_voice"]
    eng_best = max([int(S) for S, r in eng.items() if r["realtime"]], default=0)
    return {"state": state, "voices": voices, "step": steps, "rate": rate, "rate_line": rate_line,
            "engine": eng,
            "realtime_sessions_engine": eng_best,
            "criterion_engine": f"p99 of (handed to the port - scheduled) in the engine < "
                                f"{JITTER_P99_US:g} µs, every session heard and every voice "
                                f"heard, every session in {state}"}
