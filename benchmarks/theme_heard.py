"""Whether a theme sent over the wire is heard: the share of its interval 3-grams that the
melody voice plays in the next 20 s.

A real ``realtime.server.Server`` (``ServerConfig`` defaults: the shipped ensemble model,
no theme model) runs on 127.0.0.1 with its ZeroMQ event stream; a ``bindings.Client``
opens one fresh session per condition, in the ``explore`` preset (the melody voice enters
at 0.0, so it plays in every mood), and sends each its ``theme`` message at the next bar
line: the theme below at variation 0, 0.5 and 1, and, for the baseline, ``action: free``
(no theme at all: free music).  A ``bindings.EventListener`` on the stream keeps the
``note_on`` events whose ``voice`` is ``melody``, from the transition's beat (the reply's
``beat``) for ``--seconds`` after the message was sent.

The figure: take the pitches the melody plays in order (at a beat where it sounds more
than one note onset, its highest: the melody's line), their successive intervals, and the
interval 3-grams (three successive intervals, four notes: transposition-invariant, so the
session's key and the voice's register drop out); ``heard`` is the share of the theme's
distinct interval 3-grams found among the melody's.  The theme's own are taken from the
notes the server states (``engine.motif``'s key-relative theme, in the session's mode:
the same intervals as sent when the modes agree).  A fresh server per seed (its
``ServerConfig.seed``); the conditions' sessions play side by side on it.

    python -m benchmarks.theme_heard [--seconds 20] [--seeds 0 1 2 3 4]
        [--out benchmarks/results/theme_heard.json]
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from bindings.client import Client, EventListener
from engine.controls import MODES
from engine.metrics import json_ready
from engine.motif import from_notes
from engine.theme.variations import ngrams
from realtime.outputs.stream import ZmqPubPort
from realtime.server import Server, ServerConfig

# Two bars in D major, nine notes, [pitch, start_beat, duration_beats]: a rising triad to
# the octave, a stepwise fall and a turn back up (six distinct interval 3-grams).
THEME = [[62, 0, 1], [66, 1, 0.5], [69, 1.5, 0.5], [74, 2, 1], [73, 3, 1],
         [71, 4, 0.5], [69, 4.5, 0.5], [66, 5, 1], [67, 6, 2]]
# condition -> the theme message's variation (None: no theme, action "free")
CONDITIONS = {"free": None, "variation 0": 0.0, "variation 0.5": 0.5, "variation 1": 1.0}
SESSION_IDS = {"free": "free", "variation 0": "var0", "variation 0.5": "var05",
               "variation 1": "var1"}
STATE = "explore"
GRAM = 3
REPO = Path(__file__).resolve().parents[1]


def line(events):
    """The melody's pitches in order from its ``note_on`` events: one a beat (the highest
    where several start together)."""
    top = {}
    for e in events:
        top[e["beat"]] = max(top.get(e["beat"], -1), e["pitch"])
    return [top[b] for b in sorted(top)]


def grams(pitches, n=GRAM):
    """The interval n-grams of ``pitches`` (successive differences, n at a time), as the
    theme evaluation counts them (``engine.theme.variations.ngrams``)."""
    return ngrams(np.diff(np.asarray(pitches, np.int64)).tolist(), n)


def heard(theme_pitches, melody_pitches, n=GRAM):
    """The share of the theme's distinct interval n-grams among the melody's."""
    want = grams(theme_pitches, n)
    return len(want & grams(melody_pitches, n)) / len(want)


def theme_pitches(mode):
    """The theme's pitches as the server states them in a session of ``mode`` ("major",
    "minor": a reply's)."""
    return [int(p) for p in from_notes(THEME).key_relative(MODES.index(mode))["pitch"]]


def listen_once(seed, seconds, conditions=CONDITIONS, model=None):
    """One fresh server (``seed``): a session per condition, each sent its theme message at
    once, then ``seconds`` of the stream.  {condition: {"heard", "melody_notes", "mode",
    "beat"}}."""
    pub = ZmqPubPort("tcp://127.0.0.1:*")
    cfg = ServerConfig(control="tcp://127.0.0.1:*", seed=seed, max_sessions=len(conditions) + 1,
                       initial_state=STATE, **({} if model is None else dict(model=str(model))))
    srv = Server(cfg, [pub])
    try:
        srv.start()
        with Client(srv.control_address, timeout=10.0) as client, \
                EventListener(pub.bound_address, types=["note_on"], timeout=0.05) as events:
            _join(events, pub)
            replies, sent = {}, {}
            for name in conditions:
                sid = SESSION_IDS[name]
                client.open_session(sid, state=STATE)
            for name, variation in conditions.items():
                sid = SESSION_IDS[name]
                sent[sid] = time.monotonic()
                replies[name] = (client.free_theme(session=sid) if variation is None else
                                 client.theme(THEME, variation=variation, session=sid))
            end = time.monotonic() + seconds
            got = {sid: [] for sid in sent}
            while time.monotonic() < end:
                e = events.recv(0.05)
                if e is None or e.get("voice") != "melody" or e.get("session") not in got:
                    continue
                if time.monotonic() - sent[e["session"]] <= seconds:
                    got[e["session"]].append(e)
    finally:
        srv.close()
        pub.close()
    out = {}
    for name in conditions:
        r = replies[name]
        mel = [e for e in got[SESSION_IDS[name]] if e["beat"] >= r["beat"]]
        out[name] = dict(heard=heard(theme_pitches(r["mode"]), line(mel)),
                         melody_notes=len(mel), mode=r["mode"], beat=r["beat"])
    return out


def _join(events, pub, timeout_s=30.0):
    """Wait until the SUB socket gets what the server publishes (ZeroMQ's slow joiner):
    the main session's notes are arriving."""
    deadline = time.monotonic() + timeout_s
    while events.recv(0.1) is None:
        if time.monotonic() > deadline:
            raise TimeoutError("no note event within 30 s: the SUB socket never connected")


def run(seeds=(0, 1, 2, 3, 4), seconds=20.0, model=None, log=print):
    """Every condition on every seed: {"per_seed": {seed: {condition: ...}}, "summary":
    {condition: mean, min, max of heard, mean melody notes}, and the set-up}."""
    per = {}
    for seed in seeds:
        per[seed] = r = listen_once(seed, seconds, model=model)
        log(f"seed {seed}: " + ", ".join(f"{k} {v['heard']:.2f} ({v['melody_notes']} notes)"
                                          for k, v in r.items()))
    summary = {}
    for name in CONDITIONS:
        h = np.array([per[s][name]["heard"] for s in seeds])
        summary[name] = dict(mean=float(h.mean()), min=float(h.min()), max=float(h.max()),
                             melody_notes=float(np.mean([per[s][name]["melody_notes"]
                                                         for s in seeds])))
    return dict(theme=THEME, gram=GRAM, seconds=seconds, state=STATE,
                model=_shown(model or ServerConfig().model), seeds=list(seeds),
                theme_grams=len(grams([p for p, *_ in THEME])),
                per_seed={str(k): v for k, v in per.items()}, summary=summary)


def _shown(path):
    """``path`` relative to the repository where it is inside it."""
    path = Path(path).resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def table(res):
    """The figures as a text table."""
    rows = [f"theme interval {res['gram']}-grams heard in {res['seconds']:g} s of the melody "
            f"(seeds {res['seeds']}, {res['theme_grams']} 3-grams in the theme)",
            f"{'condition':15s} {'mean':>6s} {'min':>6s} {'max':>6s} {'notes':>7s}"]
    for name, s in res["summary"].items():
        rows.append(f"{name:15s} {s['mean']:6.2f} {s['min']:6.2f} {s['max']:6.2f} "
                    f"{s['melody_notes']:7.1f}")
    return "\n".join(rows)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.theme_heard",
                                description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=20.0, help="listening after each theme")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--model", default=None, help="model file (default: the server's)")
    p.add_argument("--out", default="benchmarks/results/theme_heard.json")
    args = p.parse_args(argv)
    res = run(args.seeds, args.seconds, args.model)
    print(table(res))
    with open(args.out, "w") as f:
        json.dump(json_ready(res), f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
