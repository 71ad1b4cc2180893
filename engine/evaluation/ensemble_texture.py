"""The learned ensemble against held-out real music and the rule-based arranger.

Three kinds of set are judged the same way (``engine.evaluation.texture_critic``: the texture
figures of ``engine.evaluation.texture``, the music21 key of the pitched voices, and a
fresh critic on 8-bar multi-voice windows, real against each set):

- ``real``: the held-out pieces (``engine.evaluation.heldout_ensemble``), each cut to its
  first ``max_bars`` bars;
- ``learned``: the shipped ensemble model composing through the sampler that plays
  (``engine.generate.generate_many``: the numba ``Runtime``), one piece per real piece and
  seed, asked for that piece's own controls: its annotated key (else the key its pitched
  voices measure, ``engine.controls.find_key``), its mode, its pitched onsets per beat,
  its mean pitched pitch, the voices it plays, and as many bars;
- ``arranger``: ``engine.arranger.arrange`` in the same key, mode and bars, the presets'
  grooves in turn, keeping the voices the real piece plays.

Every chord is estimated from the notes (no set is judged against its own plan).  A
generated set's figures are means over its pieces per seed, given with a 95 % t-interval
over ``seeds`` generation seeds; the real set's over its pieces.  The critic is trained
and scored per seed (real against real: two disjoint halves of the real pieces, drawn
anew per seed), its AUC given with the interval over seeds.

``drums_bias`` (log-odds added to the drums' VOICE token, ``Runtime.voice_bias``) makes
one learned set per value; a non-zero value needs a sampler that takes it.
"""
import time
from dataclasses import asdict, dataclass

import numpy as np

from engine import DEFAULT_ENSEMBLE
from engine.controls import DEFAULT_TONALITY, MAX_PART_DENSITY, STYLES, find_key, style_of
from engine.ensemble import (CENTRE, CONSONANCE, DEFAULTS, DRUMS, INVERSION, ORDERING, PITCHED,
                             ROOTING, SMOOTHING, TEMPERATURE)
from engine.errors import InvalidMessage
from engine.evaluation import texture_critic as ev
from engine.evaluation import texture as tx
from engine.evaluation.heldout_ensemble import SPLIT_NAMES, read_held_out
from engine.evaluation.pieces import crop
from engine.metrics import interval, json_ready

#: The issue's targets: the learned ensemble's key and mode (music21, 24 keys); strong-beat
#: consonance and the bass on the root within this many points of real music; the critic.
TARGETS = dict(key=0.95, consonance_points=0.05, bass_root_points=0.05, critic_auc=0.80)


@dataclass(frozen=True)
class TextureEvalConfig:
    """What is compared: the ensemble dataset and splits held out, the model, how many
    generation seeds, the longest piece in bars, temperature, the drums biases (one
    learned set each), which voices a piece asks for ("piece": those the real piece
    plays; "all"), which style ("piece": the real piece's collection's, ``style_of``;
    "none"; or one of ``engine.controls.STYLES`` for every piece) and whether a model told
    the voices' densities is given the real piece's ("piece") or none ("none")."""

    data: str = "data/ensemble.npz"
    model: str = str(DEFAULT_ENSEMBLE)
    splits: tuple = ("test", "valid")
    seeds: int = 5
    max_bars: int = 32
    temperature: float = TEMPERATURE
    drums_bias: tuple = (DEFAULTS[DRUMS].presence, 0.0)
    consonance: float = CONSONANCE  # the consonance prior of every learned set
    rooting: float = ROOTING        # and the root prior
    inversion: float = INVERSION    # and the inversion prior
    centre: float = CENTRE          # and the tonal-centre prior (engine.controls)
    ordering: float = ORDERING      # and the voice-order prior
    smoothing: float = SMOOTHING    # and the line prior
    tonality: float = DEFAULT_TONALITY  # the tonality prior (engine.controls), as served
    repetition: float = 0.0         # the form's repetition (engine.form), 0: through-composed
    voices: str = "piece"
    max_pieces: int = None
    style: str = "piece"
    parts: str = "piece"

    def __post_init__(self):
        def bad(field, value, allowed):
            raise InvalidMessage(f"{field} {value!r}", field=field, allowed=allowed)
        if not self.splits or any(s not in SPLIT_NAMES for s in self.splits):
            bad("splits", self.splits, f"one or more of {', '.join(SPLIT_NAMES)}")
        if not (isinstance(self.seeds, int) and 2 <= self.seeds <= 100):
            bad("seeds", self.seeds, "2..100 (an interval needs two)")
        if not (isinstance(self.max_bars, int) and 8 <= self.max_bars <= 256):
            bad("max_bars", self.max_bars, "8..256 bars")
        if not 0 < self.temperature <= 10:
            bad("temperature", self.temperature, "(0, 10]")
        if not 0 <= self.tonality <= 1:
            bad("tonality", self.tonality, "0..1")
        if not 0 <= self.repetition <= 1:
            bad("repetition", self.repetition, "0..1")
        if not self.drums_bias or any(not -20 <= b <= 20 for b in self.drums_bias):
            bad("drums_bias", self.drums_bias, "one or more log-odds in -20..20")
        if self.voices not in ("piece", "all"):
            bad("voices", self.voices, "piece or all")
        if self.style not in ("piece", "none", *STYLES):
            bad("style", self.style, f"piece, none or one of {', '.join(STYLES)}")
        if self.parts not in ("piece", "none"):
            bad("parts", self.parts, "piece or none")
        if self.max_pieces is not None and self.max_pieces < 2:
            bad("max_pieces", self.max_pieces, ">= 2, or None for all")


# -- requests mirroring the real pieces --------------------------------------------------
def bars_of(notes, cfg=ev.EnsembleEvalConfig()):
    """Whole bars from tick 0 to the piece's last end."""
    bar = cfg.beats_per_bar * cfg.ticks_per_beat
    return -(-int(notes["end"].max()) // bar) if len(notes) else 0


def mirror(notes, key, bars, cfg=ev.EnsembleEvalConfig(), all_voices=False, source=None):
    """The controls a generated piece is asked for, measured on a real piece (cut to
    ``bars`` bars): dict(key, mode, density, register, voices, bars, style, parts).  ``key`` is the
    annotated (tonic, mode), None to measure it (``find_key`` of the pitched voices).
    Density is pitched onsets per beat (as the model's density control counts them),
    kept within 0.25..16; voices those that sound (None with ``all_voices``); style that of
    the piece's ``source`` (``engine.controls.style_of``; None: none); parts the melody's,
    bass's and harmony's onsets per beat (each within 0..``MAX_PART_DENSITY``)."""
    p = tx.pitched(notes)
    tonic, mode = key if key is not None else find_key(p)[:2]
    beats = bars * cfg.beats_per_bar
    voices = None if all_voices else tuple(sorted(set(notes["channel"].tolist())))
    return dict(key=int(tonic) % 12, mode=int(mode),
                density=float(np.clip(len(p) / beats, 0.25, 16.0)),
                register=float(p["pitch"].mean()), voices=voices, bars=int(bars),
                style=None if source is None else style_of(source),
                parts=tuple(float(np.clip((notes["channel"] == v).sum() / beats, 0,
                                          MAX_PART_DENSITY)) for v in PITCHED))


def _voice_bias(bias, n_voices):
    """The sampler's per-voice log-odds for a drums bias of ``bias`` (the others 0)."""
    return tuple(float(bias) if v == DRUMS else 0.0 for v in range(n_voices))


def compose(weights, asks, seed, temperature=TEMPERATURE, drums_bias=0.0, cfg=ev.EnsembleEvalConfig(),
            consonance=CONSONANCE, rooting=ROOTING, tonality=DEFAULT_TONALITY, repetition=0.0,
            centre=CENTRE, ordering=ORDERING, smoothing=SMOOTHING, inversion=INVERSION):
    """The learned ensemble's piece for each ask (``mirror``), composed through
    ``engine.generate.generate_many`` at the longest ask's length and cut to each ask's
    bars (the sampler is causal: a piece cut short is the piece of that length)."""
    from engine.generate import Request, generate_many
    vb = _voice_bias(drums_bias, weights.vocab.n_voices)
    reqs = [Request(a["key"], a["mode"], a["density"], seed=seed * 1_000_003 + i,
                    register=a["register"], voices=a["voices"], voice_bias=vb,
                    consonance=consonance, rooting=rooting, tonality=tonality, centre=centre,
                    ordering=ordering, smoothing=smoothing, inversion=inversion,
                    style=a.get("style"), parts=a.get("parts"))
            for i, a in enumerate(asks)]
    made = generate_many(weights, reqs, max(a["bars"] for a in asks),
                         beats_per_bar=cfg.beats_per_bar, temperature=temperature,
                         repetition=repetition)
    bar = cfg.beats_per_bar * cfg.ticks_per_beat
    return [crop(n, a["bars"] * bar) for n, a in zip(made, asks)]


def arrange_like(asks, seed, cfg=ev.EnsembleEvalConfig()):
    """The arranger's piece for each ask: its key, mode and bars, the presets' grooves in
    turn (those with drums where the ask has drums, as an author would pick), the voices
    the ask names kept (all without)."""
    from engine.arranger import GROOVES, arrange
    every = sorted(GROOVES)
    drummed = [g for g in every if GROOVES[g].drums is not None]
    out = []
    for i, a in enumerate(asks):
        grooves = drummed if a["voices"] is None or DRUMS in a["voices"] else every
        n = arrange(a["key"], a["mode"], a["bars"], cfg.beats_per_bar, None,
                    grooves[(seed + i) % len(grooves)], seed * 1_000_003 + i).notes
        out.append(n if a["voices"] is None else n[np.isin(n["channel"], a["voices"])])
    return out


# -- figures of a set --------------------------------------------------------------------
def set_summary(pieces, asks, reference, cfg=ev.EnsembleEvalConfig()):
    """One set's figures, each a mean over its pieces (``engine.evaluation.ensemble.set_figures``
    with estimated chords), plus: ``key`` (music21 key and mode against the key asked, 24
    keys; pieces asked None left out), ``density`` (pitched onsets per beat realised
    against asked, and per voice against the real piece's own, ``reference``) and
    ``drums_sounding`` (share of pieces asked for drums that have a drum note)."""
    figs = ev.set_figures(pieces, cfg)
    out = {k: v["mean"] for k, v in figs.items() if isinstance(v, dict)}
    keys = [(a["key"], a["mode"]) if a.get("asked_key", True) else None for a in asks]
    if any(k is not None for k in keys):
        acc = tx.key_accuracy(pieces, keys, cfg.ticks_per_beat)
        out.update(key=acc["key_and_mode"], key_mode=acc["mode"], key_tonic=acc["tonic"],
                   key_pieces=acc["pieces"])
    got = np.array([len(tx.pitched(n)) / (a["bars"] * cfg.beats_per_bar)
                    for n, a in zip(pieces, asks)])
    asked = np.array([a["density"] for a in asks])
    out.update(density_asked=float(asked.mean()), density_realised=float(got.mean()),
               density_abs_error=float(np.abs(got - asked).mean()),
               density_ratio=float((got / asked).mean()))
    per_voice = tx.density_adherence(pieces, reference, cfg.beats_per_bar, cfg.ticks_per_beat)
    for name, d in per_voice.items():
        out[f"density_{name}_vs_real_abs_error"] = d["abs_error"]
    drums = [bool((n["channel"] == DRUMS).any()) for n, a in zip(pieces, asks)
             if a["voices"] is None or DRUMS in a["voices"]]
    out["drums_sounding"] = float(np.mean(drums)) if drums else float("nan")
    out["drums_asked_pieces"] = len(drums)
    out["pieces"] = len(pieces)
    return out


def over_seeds(per_seed):
    """{figure: mean, lo, hi (95 % t-interval over seeds), seeds} from a list of
    ``set_summary`` dicts, one per seed."""
    names = [k for k in per_seed[0] if isinstance(per_seed[0][k], (int, float))]
    return {k: interval([s.get(k, float("nan")) for s in per_seed]) for k in names}


def over_pieces(pieces, asks, reference, cfg=ev.EnsembleEvalConfig()):
    """The real set's figures as ``set_summary`` gives them, each with a 95 % t-interval
    over its pieces (per-piece values) and n, the pieces that had something to measure."""
    one = [set_summary([n], [a], [r], cfg) for n, a, r in zip(pieces, asks, reference)]
    whole = set_summary(pieces, asks, reference, cfg)
    out = {}
    for k, v in whole.items():
        if not isinstance(v, (int, float)) or k in ("pieces", "drums_asked_pieces", "key_pieces"):
            continue
        iv = interval([o.get(k, float("nan")) for o in one])
        out[k] = dict(mean=iv["mean"], lo=iv["lo"], hi=iv["hi"],
                      n=sum(1 for s in iv["seeds"] if s is not None))
    out["pieces"] = len(pieces)
    out["key_pieces"] = whole.get("key_pieces", 0)
    return out


def critic_over_seeds(real, sets, seeds, cfg=ev.EnsembleEvalConfig()):
    """The fresh critic's AUC per seed (``sets[i]`` the generated pieces of seed i; None:
    real against real) and its interval over seeds, with the windows and pieces."""
    aucs, last = [], None
    for s, fake in zip(seeds, sets):
        last = ev.real_vs_real(real, s, cfg) if fake is None else ev.critic_auc(real, fake, s, cfg)
        aucs.append(last["auc"]["mean"])
    iv = interval(aucs)
    return dict(auc=dict(mean=iv["mean"], lo=iv["lo"], hi=iv["hi"], seeds=iv["seeds"]),
                windows=last["windows"], pieces=last["pieces"],
                top_features=(last["bootstrap"] or {}).get("top_features"))


# -- the comparison ----------------------------------------------------------------------
def compare(tcfg=TextureEvalConfig(), seed=0, cfg=ev.EnsembleEvalConfig(), progress=print):
    """Every figure of real, learned (per drums bias) and arranger sets, JSON-ready,
    with the targets and whether each is met."""
    from engine.generate import load_weights
    clock = {}
    t0 = time.process_time()
    held, left = read_held_out(tcfg.data, tcfg.splits, cfg.ticks_per_beat, cfg.beats_per_bar)
    if tcfg.max_pieces:
        held = held[:tcfg.max_pieces]
    bar = cfg.beats_per_bar * cfg.ticks_per_beat
    lengths = [min(bars_of(p.notes, cfg), tcfg.max_bars) for p in held]
    real = [crop(p.notes, b * bar) for p, b in zip(held, lengths)]
    asks = [dict(mirror(n, p.key, b, cfg, tcfg.voices == "all", p.source),
                 asked_key=p.key is not None)
            for n, p, b in zip(real, held, lengths)]
    if tcfg.style != "piece":
        asks = [dict(a, style=None if tcfg.style == "none" else tcfg.style) for a in asks]
    if tcfg.parts == "none":
        asks = [dict(a, parts=None) for a in asks]
    gen_asks = [dict(a, asked_key=True) for a in asks]
    reference = [tx.voice_density(n, cfg.beats_per_bar, cfg.ticks_per_beat) for n in real]
    clock["read"] = time.process_time() - t0
    progress(f"{len(real)} held-out pieces ({len(left)} left out), "
             f"{sum(lengths)} bars; {tcfg.seeds} seeds")
    seeds = [seed + k for k in range(tcfg.seeds)]
    sets = dict(real=dict(figures=over_pieces(real, asks, reference, cfg),
                          critic=critic_over_seeds(real, [None] * len(seeds), seeds, cfg)))
    clock["real"] = time.process_time() - t0 - clock["read"]
    weights = load_weights(tcfg.model)
    made = {}
    for b in tcfg.drums_bias:
        t = time.process_time()
        # "learned" is the ensemble as a server plays it: drums at their shipped presence
        name = "learned" if b == DEFAULTS[DRUMS].presence else f"learned_drums_bias_{b:g}"
        made[name] = [compose(weights, gen_asks, s, tcfg.temperature, b, cfg, tcfg.consonance,
                              tcfg.rooting, tcfg.tonality, tcfg.repetition, tcfg.centre,
                              tcfg.ordering, tcfg.smoothing, tcfg.inversion)
                      for s in seeds]
        clock[f"{name}_compose"] = time.process_time() - t
    made["arranger"] = [arrange_like(gen_asks, s, cfg) for s in seeds]
    for name, per_seed in made.items():
        t = time.process_time()
        sets[name] = dict(figures=dict(over_seeds([set_summary(p, gen_asks, reference, cfg)
                                                   for p in per_seed]),
                                       pieces=len(real), seeds=len(seeds)),
                          critic=critic_over_seeds(real, per_seed, seeds, cfg))
        clock[f"{name}_judge"] = time.process_time() - t
        progress(f"{name}: critic AUC {sets[name]['critic']['auc']['mean']:.3f}")
    clock["total_cpu"] = time.process_time() - t0
    by_source = {}
    for p in held:
        by_source[p.source] = by_source.get(p.source, 0) + 1
    return json_ready(dict(
        config=dict(texture=asdict(tcfg), measure=asdict(cfg)), seed=seed, seeds=seeds,
        real=dict(pieces=[p.name for p in held], by_source=by_source, bars=lengths,
                  left_out=left, splits=list(tcfg.splits),
                  annotated_keys=sum(p.key is not None for p in held)),
        sets=sets, targets=targets(sets), cpu_seconds=clock))


def _mean(sets, name, fig):
    f = sets[name]["figures"].get(fig)
    return None if f is None else f["mean"]


def targets(sets):
    """Each target of the issue, per learned set: the figure, the bound and whether the
    mean meets it (``interval_meets``: whether the whole 95 % interval does)."""
    out = {}
    real_key = _mean(sets, "real", "key")
    arr_auc = sets["arranger"]["critic"]["auc"]
    for name in (n for n in sets if n.startswith("learned")):
        fig = sets[name]["figures"]
        auc = sets[name]["critic"]["auc"]
        rows = dict(key=dict(value=fig["key"]["mean"], real=real_key, target=f">= {TARGETS['key']}",
                             met=fig["key"]["mean"] >= TARGETS["key"],
                             interval_meets=(fig["key"]["lo"] or -1) >= TARGETS["key"]))
        for fig_name, bound in (("consonance", TARGETS["consonance_points"]),
                                ("bass_root", TARGETS["bass_root_points"])):
            r, g = _mean(sets, "real", fig_name), fig[fig_name]
            rows[fig_name] = dict(value=g["mean"], real=r, difference=g["mean"] - r,
                                  target=f"within {bound:.2f} of real",
                                  met=abs(g["mean"] - r) <= bound,
                                  interval_meets=g["lo"] is not None and
                                  r - bound <= g["lo"] and g["hi"] <= r + bound)
        rows["critic_auc"] = dict(value=auc["mean"], arranger=arr_auc["mean"],
                                  target=f"<= {TARGETS['critic_auc']} and below the arranger's",
                                  met=auc["mean"] <= TARGETS["critic_auc"] and
                                  auc["mean"] < arr_auc["mean"],
                                  interval_meets=auc["hi"] is not None and
                                  auc["hi"] <= TARGETS["critic_auc"] and
                                  auc["hi"] < (arr_auc["lo"] or 0))
        out[name] = rows
    return out


#: The rows of ``format_table``: (figure, label, as a percentage).
ROWS = (("key", "key and mode, music21 (24 keys)", True),
        ("consonance", "strong-beat consonance", True),
        ("bass_root", "bass on the chord root (strong beats)", True),
        ("crossing_any", "ticks with voices crossed", True),
        ("drums_onsets_per_bar", "drum onsets per bar", False),
        ("drums_backbeat", "snare hits on the backbeat", True),
        ("drums_repetition", "drum bar = bar before", True),
        ("drums_sounding", "pieces asked for drums that have them", True),
        ("density_realised", "pitched onsets per beat (asked: real piece's)", False),
        ("density_abs_error", "  its mean absolute error against the ask", False))


def format_table(res):
    """A Markdown table of every set's figures (mean [95 % interval]) and the critic."""
    names = list(res["sets"])

    def cell(f, pct):
        if f is None or f.get("mean") is None:
            return "n/a"
        fmt = (lambda x: f"{100 * x:.1f}") if pct else (lambda x: f"{x:.2f}")
        iv = f" [{fmt(f['lo'])}, {fmt(f['hi'])}]" if f.get("lo") is not None else ""
        return fmt(f["mean"]) + iv

    lines = ["| figure | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for key, label, pct in ROWS:
        lines.append(f"| {label}{' (%)' if pct else ''} | " + " | ".join(
            cell(res["sets"][n]["figures"].get(key), pct) for n in names) + " |")
    lines.append("| fresh critic ROC AUC, real against the set | " + " | ".join(
        cell(res["sets"][n]["critic"]["auc"], False) for n in names) + " |")
    lines.append("| critic windows (real, set) | " + " | ".join(
        ", ".join(str(w) for w in res["sets"][n]["critic"]["windows"]) for n in names) + " |")
    return "\n".join(lines)
