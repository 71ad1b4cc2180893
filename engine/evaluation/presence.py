"""How often a voice of the ensemble sounds as its presence bias rises: the figure that
sets ``Voice.presence`` (``engine.ensemble``) for the drums.

The shipped ensemble model names the drums seldom (most of its data has none), so a
server session that asks for drums may hear few.  The sampler that plays adds
``Runtime.voice_bias[s, v]`` (log-odds) to voice v's VOICE token
(``engine.sampler.voices``); this module composes with it, through that sampler, as a
server session plays: all voices on, the per-voice entry rule at the start (every voice
sounds a note before time moves on), the server's temperature, and the controls of a
mood (by default what ``realtime.mood`` asks of the model for the combat preset).  For
each bias it gives, over ``seeds`` sessions of ``bars`` bars: the share of bars in which
the voice has at least one onset, the share of sessions whose first bar has one, and
onsets per bar of every voice.

``python -m engine.evaluation.presence`` prints the table and the smallest bias that
makes the voice sound in at least 90 % of bars (``recommend``).
"""
import argparse
import json
import sys
from dataclasses import dataclass

import numpy as np

from engine.controls import DEFAULT_TONALITY
from engine.ensemble import CENTRE, DRUMS, PRIORS, TEMPERATURE, VOICES, voice_id
from engine.errors import InvalidMessage
from engine.sampler.generator import Runtime
from engine.sampler.weights import Weights
from engine.vocab import NOTE_ON

ENSEMBLE_MODEL = "engine/models/ensemble.npz"
BIASES = (0.0, 1.0, 2.0, 3.0, 4.0)
#: The share of bars a voice asked for should sound in.
TARGET = 0.9
#: The entry rules ``onsets`` composes under: per voice (as played), or the one-line rule.
ENTRY = ("voice", "first")


@dataclass(frozen=True)
class Asked:
    """What a session asks of the model: tonic pitch class, mode (0 major, 1 minor),
    onsets per beat, register moved from the model's mean (semitones), tonality, the
    sampler's temperature, the style (``engine.controls.STYLES``; None: none).  The default is the combat preset as the server plays it
    (``realtime/states.toml``: valence -0.4, arousal 0.85; ``realtime.mood``: density
    0.75 + 3.25 x arousal, register + 4 x valence, minor; ``serve``'s temperature)."""

    key: int = 0
    mode: int = 1
    density: float = 0.75 + 3.25 * 0.85
    register_shift: float = 4.0 * -0.4
    tonality: float = DEFAULT_TONALITY
    temperature: float = TEMPERATURE
    style: str | None = None


COMBAT = Asked()


def onsets(weights, voice=DRUMS, bias=0.0, seeds=16, bars=32, beats_per_bar=4, asked=COMBAT,
           entry="voice", join=0, others=None):
    """Note-ons per (session, bar, voice), [seeds, bars, n_voices], of ``seeds`` sessions
    (seeds 0..seeds-1) composed for ``bars`` bars with ``bias`` on ``voice``'s token.
    ``entry``: "voice", the rule as a session plays (every voice sounds before time moves
    on, at the start and where a switch brings a voice in), or "first", for comparison,
    the one-line rule (entry at the start only, ending at the first note; a voice
    brought in may play, and need not).  ``join``: the bar
    at which ``voice`` comes in (``Runtime.voices_at``), as a layer does when the mood
    rises; 0: it plays from the start.  ``others``: every voice's bias (``voice``'s then
    replaced by ``bias``); None: 0."""
    if entry not in ENTRY:
        raise InvalidMessage(f"entry {entry!r} is not one of {', '.join(ENTRY)}",
                             field="entry", allowed=list(ENTRY))
    w = weights if isinstance(weights, Weights) else Weights(weights)
    nv = w.vocab.n_voices
    if not nv:
        raise InvalidMessage("a one-line model has no voices to bias", field="model",
                             allowed="an ensemble model (one with voices)")
    S = int(seeds)
    bar_ticks = beats_per_bar * w.vocab.ticks_per_beat
    end = bars * bar_ticks
    rt = Runtime(w, max_sessions=S, ring=1024, snapshots=False)
    ctl, _, prior = w.spec.request(asked.key, asked.mode, asked.density,
                                   w.mean_register + asked.register_shift, asked.tonality,
                                   w.key_relative, CENTRE, asked.style)
    for s in range(S):
        rt.open(s, ctl, seed=s, temperature=asked.temperature)
        rt.pc_bias[s] = rt.next_bias[s] = prior
        if others is not None:
            rt.voice_bias[s] = others
        rt.voice_bias[s, voice] = bias
        rt.set_priors(s, **PRIORS)  # as a server plays an ensemble
        if join:
            rt.set_voices(s, [v for v in range(nv) if v != voice])
            rt.voices_at(s, join * bar_ticks, range(nv))
    if entry == "first":  # step each session to its first note-on; its entry ends there
        for s in range(S):
            one = np.zeros(S, np.int64)
            one[s] = end
            while not (w.kinds[rt.ev_tok[s, 1:rt.tail[s]]] == NOTE_ON).any():
                rt.advance(one, 1)
            rt.entered[s] = True
            rt.entry[s] = False
    counts = np.zeros((S, bars, nv), np.int64)
    budget = end * 8 + 64  # events a session may make (a guard against a runaway model)
    made = np.zeros(S, np.int64)
    for stop in ([join * bar_ticks] if join else []) + [end]:
        target = np.full(S, stop, np.int64)
        while ((rt.gen_tick < target) & (made < budget)).any():
            target[made >= budget] = 0  # a runaway session stops where it is
            rt.advance(target, 512)
            for s in range(S):
                h, t = int(rt.head[s]), int(rt.tail[s])
                i = np.arange(h, t) % rt.ring
                on = w.kinds[rt.ev_tok[s, i]] == NOTE_ON
                bar = rt.ev_tick[s, i[on]] // bar_ticks
                keep = bar < bars
                np.add.at(counts[s], (bar[keep], rt.ev_voice[s, i[on]][keep]), 1)
                made[s] += t - h
                rt.head[s] = rt.ready[s] = t  # played: the ring has room again
        if entry == "first":  # the voice brought in (at the stop reached) need not enter
            rt.entered[:] = True
            rt.entry[:] = False
    return counts


def presence_figures(weights, voice=DRUMS, biases=BIASES, seeds=16, bars=32, beats_per_bar=4,
                     asked=COMBAT, entry="voice", join=0, others=None):
    """One row per bias: {bias, entry, join, bars_sounding (share of the seeds x bars
    bars from ``join`` on with an onset of ``voice``), first_bar (share of sessions whose
    bar ``join`` has one), per_bar {voice name: onsets per bar from ``join`` on}}."""
    w = weights if isinstance(weights, Weights) else Weights(weights)
    if not 0 <= join < bars:
        raise InvalidMessage(f"join {join} is outside 0..{bars - 1} (bars)", field="join",
                             allowed=f"0..{bars - 1}")
    rows = []
    for b in biases:
        c = onsets(w, voice, float(b), seeds, bars, beats_per_bar, asked, entry, join,
                   others)[:, join:]
        rows.append(dict(bias=float(b), entry=entry, join=join,
                         bars_sounding=float((c[:, :, voice] > 0).mean()),
                         first_bar=float((c[:, 0, voice] > 0).mean()),
                         per_bar={VOICES[v]: float(c[:, :, v].mean())
                                  for v in range(c.shape[2])},
                         sounding={VOICES[v]: float((c[:, :, v] > 0).mean())
                                   for v in range(c.shape[2])}))
    return rows


def recommend(rows, target=TARGET):
    """The smallest bias whose voice sounds in at least ``target`` of bars, or None."""
    ok = [r["bias"] for r in rows if r["bars_sounding"] >= target]
    return min(ok) if ok else None


def table(rows, voice=DRUMS):
    """The rows as a Markdown table."""
    names = list(rows[0]["per_bar"])
    head = (f"| {VOICES[voice]} bias | entry | from bar | bars with {VOICES[voice]} | "
            "its first bar | " + " | ".join(f"{n} notes/bar" for n in names) +
            " | bars with each voice |")
    lines = [head, "|" + "---|" * (6 + len(names))]
    for r in rows:
        lines.append(f"| {r['bias']:g} | {r['entry']} | {r['join']} | "
                     f"{100 * r['bars_sounding']:.1f} % | "
                     f"{100 * r['first_bar']:.0f} % | "
                     + " | ".join(f"{r['per_bar'][n]:.2f}" for n in names) + " | "
                     + " / ".join(f"{100 * r['sounding'][n]:.0f}" for n in names) + " % |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m engine.evaluation.presence",
                                description=__doc__.split("\n")[0])
    p.add_argument("--model", default=ENSEMBLE_MODEL, help=f"ensemble model ({ENSEMBLE_MODEL})")
    p.add_argument("--voice", default="drums", help="the voice biased (default drums)")
    p.add_argument("--biases", default=",".join(f"{b:g}" for b in BIASES),
                   help="log-odds tried, comma-separated (default 0,1,2,3,4)")
    p.add_argument("--seeds", type=int, default=16, help="sessions per bias (default 16)")
    p.add_argument("--bars", type=int, default=32, help="bars per session (default 32)")
    p.add_argument("--entry", default="voice", choices=ENTRY + ("both",),
                   help="entry rule at the start: voice (as a session plays; the default), "
                        "first (the one-line rule, for comparison) or both")
    p.add_argument("--join", type=int, default=0,
                   help="the bar at which the voice comes in (a layer brought in by the mood; "
                        "the figures count from there); 0: it plays from the start (default)")
    p.add_argument("--others", default=None,
                   help="every voice's bias, comma-separated in voice order (the biased voice's "
                        "then replaced by each of --biases); default 0")
    p.add_argument("--json", default=None, help="write the rows here as well")
    args = p.parse_args(argv)
    try:
        voice = voice_id(args.voice)
        biases = [float(b) for b in args.biases.split(",") if b.strip()]
        others = None if args.others is None else [float(b) for b in args.others.split(",")]
        if others is not None and len(others) != len(VOICES):
            raise ValueError(f"--others needs {len(VOICES)} numbers")
    except (InvalidMessage, ValueError) as e:
        p.error(f"{e} (--voice: one of {', '.join(VOICES)}; --biases: numbers)")
    rules = ENTRY if args.entry == "both" else (args.entry,)
    w = Weights(args.model)
    rows = [r for rule in rules
            for r in presence_figures(w, voice, biases, args.seeds, args.bars, entry=rule,
                                      join=args.join, others=others)]
    print(table(rows, voice))
    best = recommend([r for r in rows if r["entry"] == "voice"] if "voice" in rules else rows)
    print(f"\nsmallest bias with {args.voice} in >= {100 * TARGET:.0f} % of bars: "
          + (f"{best:g}" if best is not None else "none of those tried"))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(rows=rows, recommended=best, asked=COMBAT.__dict__,
                           seeds=args.seeds, bars=args.bars), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
