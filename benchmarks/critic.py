"""The critic at play time: what K drafts a beat cost, and how many sessions stay in time.

Two figures, side by side in one run for K = 0 (the critic loaded, no session using it)
and each K asked for:

- cost: S sessions at the default preset composed through the runtime and the drafter
  exactly as the server's generator thread does (one batched step per call: a draft
  step, then the sessions' own step), for ``beats`` beats after a warm-up beat.  Per
  committed event (µs, CPU time of the loop) and the share of one core S sessions take
  at the preset's tempo; ``sessions_per_core`` is S over that share (linear, an
  upper bound: the engine thread and the machine's other work are not in it).
- capacity: the engine in this process (``Server`` with a port that stamps each
  message as the engine hands it over, as ``breakdown.engine`` does) with S sessions
  open at K: p99 of send − scheduled under 1 ms with every session heard is real-time.

The critic is the trained one (``engine/models/critic.npz``) when it exists, else a
randomly initialised ``engine.training.adversarial.Critic`` of the default shape: the cost
depends on the shapes only.  ``python -m benchmarks.critic`` runs it alone and prints a
table; ``ostinato bench`` runs it inside the sessions section.
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from engine import DEFAULT_MODEL
from engine.ensemble import TEMPERATURE

from .stats import machine

KS = (2, 4, 8)
COST_COUNTS = (1, 8, 32)
SERVER_COUNTS = (1, 8, 16, 32, 64)
JITTER_P99_US = 1000.0


def critic_file(critic, folder):
    """(path, what it is): ``critic`` as given, the shipped one, or a random one."""
    from engine.sampler.critic import DEFAULT_CRITIC

    if critic is not None:
        return str(critic), "given"
    if DEFAULT_CRITIC.exists():
        return str(DEFAULT_CRITIC), "trained"
    from engine.training.adversarial import Critic, CriticConfig, save_critic
    from engine.sampler.weights import Weights

    w = Weights(DEFAULT_MODEL)
    path = Path(folder) / "critic-random.npz"
    save_critic(path, Critic(CriticConfig(vocab_size=w.vocab.size, n_controls=w.spec.size)),
                w.vocab, w.spec)
    return str(path), "random weights, default shape (no trained critic yet)"


def _preset_request(w, name="explore"):
    """(control vector, tonality prior, bpm) of a preset, as the server asks the model."""
    from engine.controls import MODES, parse_key
    from realtime import protocol
    from realtime.mood import Mood, bpm_of, density_of, mode_of, register_of, tonality_of

    p = protocol.load_states()[0][name]
    m = Mood(valence=p["valence"], arousal=p["arousal"], intensity=p["intensity"],
             key=parse_key(p["key"]) if "key" in p else 0,
             mode=MODES.index(p["mode"]) if "mode" in p else None, bpm=p.get("bpm"),
             register=p.get("register", 0), tonality=p.get("tonality"))
    ctl, _, bias = w.spec.request(m.key, mode_of(m), density_of(m),
                                  register_of(m, w.mean_register), tonality_of(m), w.key_relative)
    return ctl, bias, bpm_of(m)


def cost(model, critic, k, sessions, beats=16, seed=0):
    """Composing ``sessions`` sessions with ``k`` drafts a beat (0: no critic) for
    ``beats`` beats as the server's generator thread does; per committed event."""
    from engine.sampler.critic import Drafter
    from engine.sampler.generator import Runtime
    from engine.sampler.weights import Weights

    w = Weights(model) if not isinstance(model, Weights) else model
    rt = Runtime(w, max_sessions=sessions)
    drafter = Drafter(rt, critic) if k else None
    ctl, bias, bpm = _preset_request(w)
    tpb = rt.tpb
    for s in range(sessions):
        rt.open(s, ctl, seed=seed * 1000 + s, temperature=TEMPERATURE)
        rt.pc_bias[s] = rt.next_bias[s] = bias
        rt.candidates[s] = k
    target = np.zeros(sessions, np.int64)

    def play(upto):
        target[:] = upto
        events = 0
        while (rt.gen_tick < target).any():
            if drafter is not None:
                drafter.drive(target, 1)
            rt.advance(target, 1)
            events += int((rt.tail - rt.head).sum())
            rt.head[:] = rt.tail  # played: the ring has room again
        return events

    play(tpb)  # warm-up: kernels loaded, the opening drafted
    t0 = time.process_time()
    events = play(tpb * (beats + 1))
    cpu = time.process_time() - t0
    per_beat = cpu / beats  # seconds of CPU per beat of music, all sessions
    share = per_beat * bpm / 60.0
    out = {"k": k, "sessions": sessions, "beats": beats, "bpm": bpm, "events": events,
           "cpu_s": cpu, "per_event_us": 1e6 * cpu / max(events, 1),
           "core_share": share, "sessions_per_core": sessions / share if share else None}
    if drafter is not None:
        out["drafts"] = int(drafter.counts[0])
        out["drafts_dropped"] = int(drafter.counts[1])
    return out


def engine(model, critic, k, sessions, seconds=8.0):
    """Send lateness in the engine with ``sessions`` sessions playing at ``k`` drafts."""
    from .breakdown import engine as breakdown_engine

    r = breakdown_engine(model, sessions, seconds, changes=0, critic=critic, critic_k=k)
    r.pop("_samples")
    r["k"] = k
    e = r["send_lateness_us"]
    r["realtime"] = bool(e.get("n") and e["p99"] < JITTER_P99_US and r["sessions_heard"] == sessions)
    return r


def run(model=DEFAULT_MODEL, critic=None, ks=KS, cost_counts=COST_COUNTS, beats=16,
        server_counts=SERVER_COUNTS, seconds=8.0, log=print):
    """Both figures for K = 0 and each of ``ks``; the largest real-time count per K."""
    with tempfile.TemporaryDirectory() as tmp:
        path, kind = critic_file(critic, tmp)
        ks = (0,) + tuple(k for k in ks if k)
        costs = {}
        for S in cost_counts:
            for k in ks:
                log(f"critic: cost, {S} session(s) at K={k}")
                costs[f"{S}/{k}"] = cost(model, path, k, S, beats)
        servers, best = {}, {}
        for k in ks:
            for S in server_counts:
                log(f"critic: engine with {S} session(s) at K={k}, {seconds:g} s")
                servers[f"{S}/{k}"] = r = engine(model, path, k, S, seconds)
                if r["realtime"]:
                    best[str(k)] = max(best.get(str(k), 0), S)
            best.setdefault(str(k), 0)
    return {"critic": kind, "ks": list(ks), "cost": costs, "engine": servers,
            "realtime_sessions": best,
            "criterion": f"p99 of (handed to the port - scheduled) in the engine < "
                         f"{JITTER_P99_US:g} µs and every session heard"}


def table(res):
    """Markdown: cost per K beside K = 0, and the engine's lateness and capacity."""
    lines = [f"critic: {res['critic']}", "",
             "| sessions | K | µs per event | core share | sessions per core (linear) |",
             "|---|---|---|---|---|"]
    for r in res["cost"].values():
        lines.append(f"| {r['sessions']} | {r['k']} | {r['per_event_us']:.1f} | "
                     f"{100 * r['core_share']:.1f} % | {r['sessions_per_core']:.0f} |")
    lines += ["", "| sessions | K | send − scheduled p50 / p99 / max (µs) | heard | real-time |",
              "|---|---|---|---|---|"]
    for r in res["engine"].values():
        e = r["send_lateness_us"]
        cell = f"{e['p50']:.0f} / {e['p99']:.0f} / {e['max']:.0f}" if e.get("n") else "-"
        lines.append(f"| {r['sessions']} | {r['k']} | {cell} | {r['sessions_heard']} | "
                     f"{'yes' if r['realtime'] else 'no'} |")
    lines += ["", "real-time sessions in the engine: " + ", ".join(
        f"K={k}: {n}" for k, n in res["realtime_sessions"].items())]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.critic", description=__doc__.split("\n")[0])
    p.add_argument("--model", default=str(DEFAULT_MODEL))
    p.add_argument("--critic", default=None, help="critic .npz (default: trained, else random)")
    p.add_argument("--ks", default=",".join(map(str, KS)), help="K values besides 0")
    p.add_argument("--cost-counts", default=",".join(map(str, COST_COUNTS)))
    p.add_argument("--server-counts", default=",".join(map(str, SERVER_COUNTS)))
    p.add_argument("--beats", type=int, default=16)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--json", default=None, help="write the figures here")
    args = p.parse_args(argv)
    ints = lambda text: tuple(int(x) for x in text.split(",") if x.strip())  # noqa: E731
    res = run(args.model, args.critic, ints(args.ks), ints(args.cost_counts), args.beats,
              ints(args.server_counts), args.seconds)
    res["machine"] = machine()
    res["machine"]["command"] = "python -m benchmarks.critic " + " ".join(
        sys.argv[1:] if argv is None else argv)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    print(table(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
