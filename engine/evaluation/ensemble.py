"""The evaluation of multi-voice music: real pieces against generated sets.

``evaluate_ensemble`` measures a set of real ensemble pieces and each generated set with
``engine.evaluation.texture_critic``: the texture figures per set (strong-beat consonance,
the bass on the chord root, voice crossings, drum figures, per-voice density, the music21
key of the texture) as means over pieces with 95 % t-intervals, and the fresh critic on
8-bar multi-voice windows, real against each set and real against itself (the sanity
check that should come out near 0.5).

Real multi-part music comes from music21's Bach chorales (``chorales``: soprano the
melody, bass the bass, alto and tenor the harmony, no drums) until the multi-part readers
of ``engine.training`` exist.  ``python -m engine.evaluation.ensemble`` prints the figures;
with ``--source heldout`` it compares the learned ensemble, through the sampler that plays,
with the held-out pieces of the ensemble dataset and the arranger
(``engine.evaluation.ensemble_texture``) and writes ``engine/models/ensemble-texture.json``.
"""
import argparse
import json
import sys
from dataclasses import asdict
from typing import NamedTuple

import numpy as np

from engine.controls import DEFAULT_TONALITY
from engine.ensemble import (BASS, CENTRE, CONSONANCE, DEFAULTS, DRUMS, HARMONY, MELODY,
                             INVERSION, ORDERING, PITCHED, ROOTING, SMOOTHING, TEMPERATURE,
                             VOICES)
from engine.errors import InvalidMessage
from engine.evaluation.texture_critic import (EnsembleEvalConfig, critic_auc, real_vs_real,
                                              set_figures)
from engine.metrics import json_ready
from engine.notes import NOTE_DTYPE, normalise


# -- real multi-part music ---------------------------------------------------------------
class Chorale(NamedTuple):
    """A Bach chorale as an ensemble piece: its file name, notes and annotated key."""

    name: str
    notes: np.ndarray
    key: tuple | None       # (tonic pitch class, mode 0 major / 1 minor) as encoded, or None


_SATB = (("soprano", MELODY), ("alto", HARMONY), ("tenor", HARMONY), ("bass", BASS))


def read_chorale(path, ticks_per_beat=12, beats_per_bar=4):
    """A four-part chorale file -> ``Chorale``, or None when it is not one in the meter
    asked (a part among soprano, alto, tenor, bass missing, or another time signature).

    The parts are found by name (instrumental parts are left out); tied notes merged; read
    as written (repeats not expanded).  A pickup is shifted so that bar lines fall at
    multiples of ``beats_per_bar`` from tick 0.  The key is the soprano's first key
    (music21 ``Key``, its mode as encoded in the file)."""
    from music21 import converter, key, meter  # music21 takes seconds to import: only here
    score = converter.parse(str(path)).stripTies(inPlace=False)
    parts = {}
    for part in score.parts:
        name = (part.partName or "").strip().lower()
        for voice_name, voice in _SATB:
            if name.startswith(voice_name) and voice_name not in parts:
                parts[voice_name] = (part, voice)
    if len(parts) < len(_SATB):
        return None
    soprano = parts["soprano"][0]
    sigs = {ts.ratioString for ts in soprano.flatten().getElementsByClass(meter.TimeSignature)}
    if sigs != {f"{beats_per_bar}/4"}:
        return None
    bar = beats_per_bar * ticks_per_beat
    measures = soprano.getElementsByClass("Measure")
    shift = round(-float(measures[1].offset) * ticks_per_beat) % bar if len(measures) > 1 else 0
    rows = []
    for part, voice in parts.values():
        for el in part.flatten().notes:
            ql = float(el.quarterLength)
            if ql <= 0:
                continue  # grace notes
            s = round(float(el.offset) * ticks_per_beat) + shift
            for p in el.pitches:
                rows.append((s, s + round(ql * ticks_per_beat), p.midi, 80, voice))
    keys = soprano.flatten().getElementsByClass(key.Key)
    k = (keys[0].tonic.pitchClass, 0 if keys[0].mode == "major" else 1) \
        if len(keys) and keys[0].mode in ("major", "minor") else None
    return Chorale(str(getattr(path, "name", path)), ensemble_normalise(rows), k)


def ensemble_normalise(rows):
    """Notes from (start, end, pitch, velocity, voice) rows, ``normalise``d voice by voice
    (two voices on one pitch are both kept: a unison)."""
    notes = np.array(rows, NOTE_DTYPE)
    parts = [normalise(notes[notes["channel"] == v]) for v in range(len(VOICES))]
    out = np.concatenate(parts)
    return out[np.lexsort((out["channel"], out["pitch"], out["start"]))]


def chorales(limit=None, ticks_per_beat=12, beats_per_bar=4):
    """Bach chorales of music21's corpus in the meter asked, in file order, one version of
    each (bwv248.64-6 and bwv248.64-s are one chorale): a list of ``Chorale``."""
    from music21 import corpus  # as above
    out, seen = [], set()
    for path in corpus.getComposer("bach"):
        group = path.stem.split("-")[0]
        if not path.name.startswith("bwv") or group in seen:
            continue
        c = read_chorale(path, ticks_per_beat, beats_per_bar)
        if c is None:
            continue
        seen.add(group)
        out.append(c)
        if limit is not None and len(out) >= limit:
            break
    return out


def shuffle_pitches(notes, rng):
    """A control: each pitched voice's pitches permuted among its notes (rhythm, register
    and density kept; harmony and melodic lines destroyed); drums untouched."""
    out = np.array(notes, copy=True)
    for v in PITCHED:
        idx = np.flatnonzero(out["channel"] == v)
        out["pitch"][idx] = out["pitch"][idx][rng.permutation(len(idx))]
    return ensemble_normalise(out)



# -- everything --------------------------------------------------------------------------
def evaluate_ensemble(real_pieces, generated, seed=0, cfg=EnsembleEvalConfig(), keys=None,
                      plans=None):
    """All figures per set, JSON-ready: ``sets`` {"real", each generated name: set_figures
    plus ``critic``}: for "real", the critic of real against real (two disjoint halves,
    near 0.5 expected); for a generated set, real against it.  ``keys`` and ``plans`` map a
    set name to its keys asked and harmonic plans, one per piece (see ``set_figures``)."""
    keys, plans = keys or {}, plans or {}
    if "real" in generated:
        raise InvalidMessage("a generated set is named 'real'", field="generated",
                             allowed="any name but 'real'")
    sets = dict(real=real_pieces, **generated)
    out = {}
    for name, pieces in sets.items():
        out[name] = set_figures(pieces, cfg, plans.get(name), keys.get(name))
        out[name]["critic"] = real_vs_real(real_pieces, seed, cfg) if name == "real" else \
            critic_auc(real_pieces, pieces, seed, cfg)
    return json_ready(dict(config=asdict(cfg), seed=seed, sets=out))


def real_pieces(source, limit=None, cfg=EnsembleEvalConfig()):
    """(names, notes, keys) of real held-out multi-part music: "chorales" (``chorales``:
    bar lines from the score, annotated keys) or an ensemble source of
    ``engine.training.multipart`` (freedoom, bach-parts, quartets, monteverdi, midi:DIR;
    roles as it assigns them, keys None, bar lines assumed at tick 0)."""
    if source == "chorales":
        got = chorales(limit, cfg.ticks_per_beat, cfg.beats_per_bar)
        return [c.name for c in got], [c.notes for c in got], [c.key for c in got]
    from engine.training import corpus, multipart  # torch-free, but only when asked
    got, _ = multipart.read_source(source, corpus.ReadConfig(ticks_per_beat=cfg.ticks_per_beat),
                                   workers=1, progress=False, max_pieces=limit or 0)
    got = [p for p in got if (p.notes["channel"] != DRUMS).any()]
    return [p.piece_id for p in got], [p.notes for p in got], [None] * len(got)


def arranged(pieces, keys, seed=0, cfg=EnsembleEvalConfig(), melodies=False):
    """The rule-based arranger (``engine.arranger.arrange``) asked for each real piece's
    key and length in bars, the presets' grooves taken in turn: (notes, plans).  With
    ``melodies`` it harmonizes the real piece's melody voice instead of composing one.
    A piece without a key (or, with ``melodies``, without a melody) is skipped."""
    from engine.arranger import GROOVES, arrange
    grooves = sorted(GROOVES)
    bar = cfg.beats_per_bar * cfg.ticks_per_beat
    notes, plans, asked = [], [], []
    for i, (n, k) in enumerate(zip(pieces, keys)):
        mel = n[n["channel"] == MELODY] if melodies else None
        if k is None or (melodies and len(mel) == 0):
            continue
        a = arrange(k[0], k[1], max(1, -(-int(n["end"].max()) // bar)), cfg.beats_per_bar,
                    mel, grooves[i % len(grooves)], seed + i)
        notes.append(a.notes)
        plans.append(a.plan)
        asked.append(k)
    return notes, plans, asked


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m engine.evaluation.ensemble",
        description="Texture figures and the fresh critic: real multi-part music against "
                    "the rule-based arranger (engine.arranger) and against itself.")
    parser.add_argument("--source", default="chorales",
                        help="real music: chorales (Bach, SATB, 4/4, annotated keys; the "
                             "default), an engine.training.multipart source, or heldout (the "
                             "learned ensemble against the held-out pieces: see below)")
    parser.add_argument("--pieces", type=int, default=None, help="at most this many pieces")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shuffled", action="store_true",
                        help="add a control set: the real pieces with each voice's pitches "
                             "shuffled")
    parser.add_argument("--out", default=None, help="write the JSON here as well (with "
                        f"--source heldout: default {HELDOUT_OUT})")
    held = parser.add_argument_group(
        "--source heldout: the learned ensemble through the sampler that plays, beside the "
        "held-out pieces of an ensemble dataset and the arranger (engine.evaluation.ensemble_texture)")
    held.add_argument("--data", default="data/ensemble.npz", help="the ensemble dataset")
    held.add_argument("--model", default=None, help="ensemble model (default: the shipped one)")
    held.add_argument("--splits", default="test,valid",
                      help="held-out splits, comma-separated (default test,valid)")
    held.add_argument("--seeds", type=int, default=5, help="generation seeds (default 5)")
    held.add_argument("--max-bars", type=int, default=32,
                      help="real pieces cut to their first N bars, generated as long (default 32)")
    held.add_argument("--drums-bias", default=f"{DEFAULTS[DRUMS].presence:g},0",
                      help="log-odds added to the drums' voice token, comma-separated: one "
                           "learned set each (default: the shipped presence, as a server "
                           f"plays it, and 0: {DEFAULTS[DRUMS].presence:g},0)")
    held.add_argument("--consonance", type=float, default=CONSONANCE,
                      help="the consonance prior's weight of the learned sets (default: "
                           f"the shipped {CONSONANCE:g})")
    held.add_argument("--rooting", type=float, default=ROOTING,
                      help=f"the root prior's weight of the learned sets (default: the shipped "
                           f"{ROOTING:g})")
    held.add_argument("--inversion", type=float, default=INVERSION,
                      help="the inversion prior's weight of the learned sets (default: the "
                           f"shipped {INVERSION:g})")
    held.add_argument("--centre", type=float, default=CENTRE,
                      help="the tonal-centre prior's weight of the learned sets "
                           f"(engine.controls.tonality_bias; default: the shipped {CENTRE:g})")
    held.add_argument("--ordering", type=float, default=ORDERING,
                      help="the voice-order prior's weight of the learned sets (default: the "
                           f"shipped {ORDERING:g})")
    held.add_argument("--smoothing", type=float, default=SMOOTHING,
                      help="the line prior's weight of the learned sets (default: the shipped "
                           f"{SMOOTHING:g})")
    held.add_argument("--tonality", type=float, default=DEFAULT_TONALITY,
                      help=f"the tonality prior of the learned sets (default: the server's "
                           f"{DEFAULT_TONALITY:g})")
    held.add_argument("--temperature", type=float, default=TEMPERATURE,
                      help="the sampler's temperature of the learned sets (default: the "
                           f"server's {TEMPERATURE:g})")
    held.add_argument("--repetition", type=float, default=0.0,
                      help="the form's repetition of the learned sets (default 0: "
                           "through-composed)")
    held.add_argument("--style", default="piece",
                      help="the style each generated piece asks a model told styles for: the "
                           "real piece's collection's (piece, the default), none, or one style "
                           "for all")
    held.add_argument("--parts", choices=("piece", "none"), default="piece",
                      help="the voices' densities a model told them is given: the real "
                           "piece's (piece, the default) or none")
    held.add_argument("--voices", choices=("piece", "all"), default="piece",
                      help="voices a generated piece may play: the real piece's (default) or all")
    args = parser.parse_args(argv)
    cfg = EnsembleEvalConfig()
    if args.source == "heldout":
        return _heldout(args, cfg)
    names, pieces, keys = real_pieces(args.source, args.pieces, cfg)
    print(f"{len(pieces)} real pieces read from {args.source}", file=sys.stderr)
    generated, gen_keys, plans = {}, {}, {}
    if any(k is not None for k in keys):
        for name, mel in (("arranger", False), ("arranger_on_real_melody", True)):
            generated[name], plans[name], gen_keys[name] = arranged(pieces, keys, args.seed,
                                                                   cfg, mel)
    if args.shuffled:
        rng = np.random.default_rng([args.seed, 5])
        generated["shuffled_pitches"] = [shuffle_pitches(n, rng) for n in pieces]
    res = evaluate_ensemble(pieces, generated, args.seed, cfg, keys=dict(real=keys, **gen_keys),
                            plans=plans)
    res["real_source"] = args.source
    res["generated_sets"] = dict(
        arranger="engine.arranger.arrange in each real piece's annotated key and length, "
                 "its own melody, the presets' grooves in turn; bass checked against its plan",
        arranger_on_real_melody="the same, harmonizing the real piece's melody voice",
        shuffled_pitches="control: the real pieces, each voice's pitches permuted")
    text = json.dumps(res, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


HELDOUT_OUT = "engine/models/ensemble-texture.json"


def _heldout(args, cfg):
    """``--source heldout``: ``engine.evaluation.ensemble_texture.compare``, its JSON written
    to ``--out`` and its table printed."""
    from engine.evaluation import ensemble_texture as et
    try:
        biases = tuple(float(b) for b in args.drums_bias.split(",") if b.strip())
    except ValueError:
        raise InvalidMessage(f"--drums-bias {args.drums_bias!r}", field="--drums-bias",
                             allowed="comma-separated numbers (log-odds)") from None
    kw = dict(data=args.data, splits=tuple(s.strip() for s in args.splits.split(",") if s.strip()),
              seeds=args.seeds, max_bars=args.max_bars, drums_bias=biases, voices=args.voices,
              max_pieces=args.pieces, consonance=args.consonance, rooting=args.rooting,
              tonality=args.tonality, repetition=args.repetition, centre=args.centre,
              ordering=args.ordering, smoothing=args.smoothing, inversion=args.inversion,
              temperature=args.temperature, style=args.style, parts=args.parts)
    if args.model:
        kw["model"] = args.model
    res = et.compare(et.TextureEvalConfig(**kw), args.seed, cfg,
                     progress=lambda line: print(line, file=sys.stderr))
    out = args.out or HELDOUT_OUT
    with open(out, "w") as f:
        f.write(json.dumps(res, indent=1) + "\n")
    print(et.format_table(res))
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    main()
