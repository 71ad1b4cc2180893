"""Form measured: how often music repeats a bar, a phrase, and at what distance.

Its figures (``engine.evaluation.repeats``): the bar-repeat rate, the phrase-repeat rate
and the self-similarity profile of each line.

``measure`` applies them to held-out real music and to music composed by the sampler that
plays at each ``repetition`` (``engine.generate``), with the project's fresh critics
(``scorers.fresh_critic_auc`` for one line, ``texture_critic.critic_auc`` for the ensemble)
and a repetition for each shipped preset, matched in the form that preset plays (the
ensemble is measured again in each such form besides the config's); ``python -m
engine.evaluation.form`` runs it.
"""
import argparse
import json
import math
import re
import sys
import time
import tomllib
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from engine import DEFAULT_ENSEMBLE, DEFAULT_MODEL
from engine.controls import find_key, key_shift, to_tonic_c
from engine.ensemble import TEMPERATURE
from engine.errors import InvalidMessage
from engine.form import Form, check_form
from engine.evaluation.repeats import (ENSEMBLE_LINES, ONE_LINE, over_seeds, piece_figures,
                                      set_figures, span)
from engine.metrics import interval, json_ready

#: Meters (ABC M: values) whose bar is four quarter notes.
FOUR_QUARTERS = {"C", "C|", "4/4", "2/2"}
#: Which real music each shipped preset is matched to.  The server plays game music: the
#: presets of play (menu, explore, stealth, combat, boss, victory) loop as game soundtracks
#: do, so they match the ensemble's game soundtracks (Freedoom, every split: its held-out
#: split has too few pieces to measure); the lyrical ones (calm: a pad and a melody;
#: defeat: a slow air) match the folk tunes the one-line model learned from.
PRESET_KINDS = dict(menu="game", explore="game", stealth="game", combat="game", boss="game",
                    victory="game", calm="folk", defeat="folk")
STATES = Path(__file__).resolve().parents[2] / "realtime" / "states.toml"


@dataclass(frozen=True)
class FormEvalConfig:
    """What is measured and composed.  ``folk``: the one-line collections (ABC, 4/4 and 2/2
    tunes of ``splits``); ``ensemble_data``: the ensemble dataset (its ``splits``, and every
    split of ``game_source``); generated: ``pieces`` one-line pieces of ``bars`` bars and one
    ensemble piece per held-out ensemble piece, per seed and repetition."""

    ticks_per_beat: int = 12
    beats_per_bar: int = 4
    window_bars: int = 8
    phrase_bars: int = 4
    near: float = 0.75
    max_windows: int = 4            # per real piece (32 bars)
    splits: tuple = ("test", "valid")
    folk: tuple = ("oneills1850", "ryansMammoth", "airdsAirs")
    ensemble_data: str = "data/ensemble.npz"
    game_source: str = "freedoom"
    model: str = str(DEFAULT_MODEL)
    ensemble: str = str(DEFAULT_ENSEMBLE)
    repetitions: tuple = (0.0, 0.25, 0.5, 0.75, 1.0)
    shape: str = Form.shape         # the form the generated music follows (engine.form.Form)
    phrase: int = Form.bars         # ... its phrase, in bars
    seeds: int = 3
    pieces: int = 64                # one-line pieces per seed and repetition
    bars: int = 16                  # of each one-line piece
    max_folk: int = None            # real folk tunes per collection; None: all
    max_ensemble: int = None        # held-out ensemble pieces; None: all
    critic_steps: int = 300         # the one-line fresh critic's training steps
    temperature: float = TEMPERATURE  # the sampler's, of every generated piece (as served)

    def __post_init__(self):
        def bad(field, value, allowed):
            raise InvalidMessage(f"{field} {value!r} is outside {allowed}", field=field,
                                 allowed=allowed)
        if not (isinstance(self.window_bars, int) and 2 <= self.window_bars <= 16):
            bad("window_bars", self.window_bars, "2..16")
        if not (isinstance(self.phrase_bars, int) and 1 <= self.phrase_bars <= self.window_bars // 2):
            bad("phrase_bars", self.phrase_bars, f"1..{self.window_bars // 2}")
        if not 0 < self.near <= 1:
            bad("near", self.near, "(0, 1]")
        if not 0 < self.temperature <= 10:
            bad("temperature", self.temperature, "(0, 10]")
        if not self.repetitions or any(not 0 <= r <= 1 for r in self.repetitions):
            bad("repetitions", self.repetitions, "one or more values in 0..1")
        check_form(self.shape, self.phrase, field="shape")
        if not (isinstance(self.seeds, int) and 2 <= self.seeds <= 100):
            bad("seeds", self.seeds, "2..100 (an interval needs two)")
        if not (isinstance(self.bars, int) and self.window_bars <= self.bars <= 256):
            bad("bars", self.bars, f"{self.window_bars}..256")
        if not (isinstance(self.pieces, int) and self.pieces >= 4):
            bad("pieces", self.pieces, ">= 4 (the critic halves each side)")

    def quick(self):
        """A small run (tests, a first look): two repetitions, few pieces, a short critic."""
        return replace(self, repetitions=(0.0, 1.0), seeds=2, pieces=8, max_folk=6,
                       max_ensemble=6, critic_steps=20)


# -- held-out real music -------------------------------------------------------------------
def abc_meters(text):
    """Every meter an ABC tune names: M: fields and inline [M:...] changes."""
    found = re.findall(r"(?m)^M:([^%\n]*)|\[M:([^\]]*)\]", text)
    return [re.sub(r"\s", "", a or b) for a, b in found if (a or b).strip()]


def read_folk(collections, splits, cfg, limit=None):
    """(pieces, left_out): the tunes of the ABC ``collections`` in ``splits`` (the dataset's
    split rule, ``engine.training.data.split_of``) whose every meter has bars of four quarter
    notes, read as the dataset reads them (``corpus.read_task``), a pickup moved so that bar
    lines fall at multiples of the bar (music21's first measures); each piece a dict(name,
    source, notes, key: the ABC K: field's (tonic, mode), else measured);
    left_out counts the others by reason.  ``limit``: at most this many per collection."""
    from engine.evaluation.heldout_ensemble import score_meta
    from engine.training import corpus
    from engine.training.data import SPLITS, split_of
    codes = {SPLITS.index(s) for s in splits}
    pieces, left = [], {}
    for source in collections:
        kept = 0
        for task in corpus.source_tasks(source):
            if split_of(task.group or task.piece_id) not in codes or (limit and kept >= limit):
                continue
            meters = abc_meters(task.payload)
            if not meters or any(m not in FOUR_QUARTERS for m in meters):
                why = "meter " + ",".join(sorted(set(meters)) or ["none"])
                left[why] = left.get(why, 0) + 1
                continue
            notes, why = corpus.read_task(task, corpus.ReadConfig(cfg.ticks_per_beat))
            if notes is None:
                left[why.split(":")[0]] = left.get(why.split(":")[0], 0) + 1
                continue
            _, shift, _ = score_meta(task.payload, cfg.ticks_per_beat, cfg.beats_per_bar)
            notes = notes.copy()
            notes["start"] += shift
            notes["end"] += shift
            key = corpus.abc_key(task.payload) or find_key(notes)[:2]
            pieces.append(dict(name=task.piece_id, source=source, notes=notes, key=key))
            kept += 1
    return pieces, left


def cut(notes, cfg, where):
    """The notes of the windows ``where`` = (first bar, windows) says, moved to start at
    tick 0 (a bar line) and ended at the last window's end."""
    bar = cfg.beats_per_bar * cfg.ticks_per_beat
    first, windows = where
    lo, hi = first * bar, (first + windows * cfg.window_bars) * bar
    n = notes[(notes["start"] >= lo) & (notes["start"] < hi)].copy()
    n["end"] = np.minimum(n["end"], hi) - lo
    n["start"] -= lo
    return n


# -- generated music -----------------------------------------------------------------------
def one_line_asks(real, n, cfg, rng):
    """(key, mode, density, register) of ``n`` one-line pieces, each mirroring a real tune
    in turn (in C): its mode, onsets per beat, mean pitch moved to a random key."""
    out = []
    for j in rng.permutation(len(real))[np.arange(n) % len(real)]:
        notes, mode = real[j]["c"], real[j]["key"][1]
        key = int(rng.integers(12))
        beats = max(1, real[j]["windows"] * cfg.window_bars * cfg.beats_per_bar)
        out.append((key, int(mode), float(np.clip(len(notes) / beats, 0.25, 16)),
                    float(np.clip(notes["pitch"].mean() + key_shift(key), 0, 127))))
    return out


def windows_encoded(vocab_spec, notes, cfg, windows):
    """(tokens, controls) of each of the first ``windows`` windows from tick 0 of a piece
    in the model's pitch space that holds 2+ notes."""
    from engine.evaluation.pieces import encode
    out, length = [], cfg.window_bars * cfg.beats_per_bar * cfg.ticks_per_beat
    for w in range(windows):
        a = w * length
        x = notes[(notes["start"] >= a) & (notes["start"] < a + length)].copy()
        x["start"] -= a
        x["end"] = np.minimum(x["end"] - a, length)
        if len(x) >= 2:
            out.append(encode(vocab_spec, x))
    return out


def one_line(cfg, real, progress):
    """Per repetition: the one-line model's figures over seeds and the fresh critic's AUC
    (``scorers.fresh_critic_auc``: a new ConvCritic, real windows against generated ones)."""
    from engine.evaluation.quality import QualityConfig
    from engine.evaluation.scorers import fresh_critic_auc
    from engine.generate import Request, generate_many, load_weights
    w = load_weights(cfg.model)
    vs = SimpleNamespace(vocab=w.vocab, spec=w.spec)
    qcfg = replace(QualityConfig(), critic_steps=cfg.critic_steps)
    real_w = [windows_encoded(vs, r["c"], cfg, r["windows"]) for r in real]
    asks = one_line_asks(real, cfg.pieces, cfg, np.random.default_rng(0))
    rows = []
    for rep in cfg.repetitions:
        sets, aucs = [], []
        for seed in range(cfg.seeds):
            reqs = [Request(k, m, d, seed=seed * 1_000_003 + i, register=r)
                    for i, (k, m, d, r) in enumerate(asks)]
            made = generate_many(w, reqs, cfg.bars, beats_per_bar=cfg.beats_per_bar,
                                 repetition=rep, form=Form(cfg.shape, cfg.phrase),
                                 temperature=cfg.temperature)
            windows = cfg.bars // cfg.window_bars
            sets.append(set_figures([piece_figures(n, ONE_LINE, cfg, (0, windows))
                                     for n in made], ONE_LINE, cfg))
            fake = [windows_encoded(vs, to_tonic_c(n, q.key) if len(n) else n, cfg, windows)
                    for n, q in zip(made, reqs)]
            aucs.append(fresh_critic_auc(vs, real_w, fake, qcfg, seed))
        rows.append(dict(repetition=rep, figures=over_seeds(sets, ONE_LINE),
                         critic_auc=interval(aucs)))
        progress(f"one line, repetition {rep:g}: bar repeat "
                 f"{rows[-1]['figures']['line']['bar_repeat']['mean']:.3f}, critic AUC "
                 f"{rows[-1]['critic_auc']['mean']:.3f}")
    return rows


def ensemble(cfg, held, progress, form=None):
    """Per repetition: the ensemble's figures over seeds, one piece per held-out piece asked
    for its controls (``ensemble_texture.mirror``), and ``texture_critic``'s fresh critic;
    the music follows ``form`` (None: the config's shape and phrase)."""
    form = form or Form(cfg.shape, cfg.phrase)
    from engine.evaluation import texture_critic as tc
    from engine.evaluation.ensemble_texture import critic_over_seeds, mirror
    from engine.generate import load_weights
    w = load_weights(cfg.ensemble)
    ecfg = tc.EnsembleEvalConfig(ticks_per_beat=cfg.ticks_per_beat,
                                 beats_per_bar=cfg.beats_per_bar, bootstrap=0)
    real = [p["cut"] for p in held]
    asks = [mirror(p["cut"], p["key"], p["windows"] * cfg.window_bars, ecfg, source=p["source"])
            for p in held]
    seeds, rows = list(range(cfg.seeds)), []
    for rep in cfg.repetitions:
        made = [compose(w, asks, seed, rep, form, cfg) for seed in seeds]
        sets = [set_figures([piece_figures(n, ENSEMBLE_LINES, cfg, (0, a["bars"] // cfg.window_bars))
                             for n, a in zip(m, asks)], ENSEMBLE_LINES, cfg) for m in made]
        critic = critic_over_seeds(real, made, seeds, ecfg)
        rows.append(dict(repetition=rep, figures=over_seeds(sets, ENSEMBLE_LINES),
                         critic_auc=critic["auc"], critic_windows=critic["windows"]))
        progress(f"ensemble, {form_label(form)}, repetition {rep:g}: melody bar repeat "
                 f"{rows[-1]['figures']['melody']['bar_repeat']['mean']:.3f}, critic AUC "
                 f"{critic['auc']['mean']:.3f}")
    return rows


def compose(w, asks, seed, repetition, form, cfg, **request):
    """The ensemble ``w``'s piece for each ask (``ensemble_texture.mirror``) at generation
    seed ``seed``, following ``form`` at ``repetition``, cut to the ask's bars; ``request``:
    more ``engine.generate.Request`` fields (a prior's weight)."""
    from engine.generate import Request, generate_many
    bar = cfg.beats_per_bar * cfg.ticks_per_beat
    reqs = [Request(a["key"], a["mode"], a["density"], seed=seed * 1_000_003 + i,
                    register=a["register"], voices=a["voices"], style=a.get("style"),
                    parts=a.get("parts"), **request)
            for i, a in enumerate(asks)]
    out = generate_many(w, reqs, max(a["bars"] for a in asks), beats_per_bar=cfg.beats_per_bar,
                        repetition=repetition, form=form, temperature=cfg.temperature)
    return [cut_bars(n, a["bars"] * bar) for n, a in zip(out, asks)]


def held_pieces(cfg, splits, sources=None, limit=None):
    """The pieces of ``cfg.ensemble_data``'s ``splits`` (of ``sources``; None: every one)
    as real music: dicts of name, source, split, key, notes, the windows measured (``span``) and
    the notes cut to them; pieces without a whole window left out, then at most ``limit``.
    Also the pieces left out by the reader (``read_held_out``)."""
    from engine.evaluation.heldout_ensemble import read_held_out
    got, left = read_held_out(cfg.ensemble_data, splits, cfg.ticks_per_beat, cfg.beats_per_bar,
                              sources)
    out = []
    for p in got:
        where = span(p.notes, cfg, cfg.max_windows)
        if where[1]:
            out.append(dict(name=p.name, source=p.source, split=p.split, key=p.key, notes=p.notes,
                            where=where, windows=where[1], cut=cut(p.notes, cfg, where)))
    return out[:limit], left


def cut_bars(notes, end):
    """The notes that start before tick ``end``, ended by it."""
    n = notes[notes["start"] < end].copy()
    n["end"] = np.minimum(n["end"], end)
    return n


# -- presets -------------------------------------------------------------------------------
def form_label(form):
    """A form as the JSON names it: shape/bars/bass loop/drums loop, "ABAB/8/2/1", then the
    bass's and the drums' shares of the repetition where either is not 1, "/0.8/0.5"."""
    label = f"{form.shape}/{form.bars}/{form.bass_loop}/{form.drums_loop}"
    if (form.bass_share, form.drums_share) != (1.0, 1.0):
        label += f"/{form.bass_share:g}/{form.drums_share:g}"
    return label


def preset_forms(states=STATES):
    """{preset: the Form it plays} (``form`` in ``states``; the default where it has none)."""
    presets = tomllib.loads(Path(states).read_text()).get("presets", {})
    return {name: Form(**p.get("form", {})) for name, p in presets.items()}


def preset_plan(name, states=STATES):
    """(the Form preset ``name`` plays, its repetition); InvalidMessage on field
    ``--preset`` naming the presets when ``states`` has no such preset."""
    presets = tomllib.loads(Path(states).read_text()).get("presets", {})
    if name not in presets:
        raise InvalidMessage(f"--preset {name!r} is not in {states}", field="--preset",
                             allowed=sorted(presets))
    return Form(**presets[name].get("form", {})), float(presets[name].get("repetition", 0.0))


def ensemble_rows(result, form):
    """The generated ensemble rows of ``form``: ``generated.ensemble`` in the config's form,
    ``generated.ensemble_forms[label]`` in another a preset plays."""
    cfg = result["config"]
    if form == Form(cfg["shape"], cfg["phrase"]):
        return result["generated"]["ensemble"]
    return result["generated"]["ensemble_forms"][form_label(form)]


def preset_repetitions(result, states=STATES):
    """For each preset of ``states``: its kind (``PRESET_KINDS``; "game" for a name not
    listed), the real bar-repeat rate of that kind, and the repetition (of those measured)
    whose generated ensemble melody's rate is nearest it, the ensemble following the
    preset's own form (``generated.ensemble_forms``), and the one-line model's (in the
    config's form)."""
    forms = preset_forms(states)
    real = dict(game=result["real"]["game"]["melody"]["bar_repeat"]["mean"],
                folk=result["real"]["folk"]["all"]["line"]["bar_repeat"]["mean"])

    def bar_repeats(rows, line):
        return [(r["repetition"], r["figures"][line]["bar_repeat"]["mean"]) for r in rows]

    one_line = bar_repeats(result["generated"]["one_line"], "line")
    out = {}
    for name, form in forms.items():
        kind = PRESET_KINDS.get(name, "game")
        target = real[kind]
        row = dict(kind=kind, matched_to=("Freedoom (the ensemble's game soundtracks), melody"
                                          if kind == "game" else "folk tunes, the line"),
                   real_bar_repeat=target, form=form_label(form))
        curves = dict(ensemble=bar_repeats(ensemble_rows(result, form), "melody"),
                      one_line=one_line)
        for model, curve in curves.items():
            rep, got = min(curve, key=lambda rg: math.inf if rg[1] is None or target is None
                           else abs(rg[1] - target))
            row[model] = dict(repetition=rep, bar_repeat=got,
                              gap=None if got is None or target is None else got - target)
        out[name] = row
    return out


# -- the whole measurement -----------------------------------------------------------------
def measure(cfg=FormEvalConfig(), progress=print, states=STATES):
    """Real and generated form figures, the critics and the presets' repetitions (a
    JSON-ready dict)."""
    from engine.evaluation.heldout_ensemble import SPLIT_NAMES
    t0 = time.process_time()
    folk, folk_left = read_folk(cfg.folk, cfg.splits, cfg, cfg.max_folk)
    for p in folk:
        where = span(p["notes"], cfg, cfg.max_windows)
        p["windows"] = where[1]
        p["c"] = to_tonic_c(cut(p["notes"], cfg, where), p["key"][0])
        p["figures"] = piece_figures(p["notes"], ONE_LINE, cfg, where)
    folk = [p for p in folk if p["windows"]]
    figs = {p["name"]: p["figures"] for p in folk}
    real_folk = {s: set_figures([figs[p["name"]] for p in folk if p["source"] == s], ONE_LINE, cfg)
                 for s in cfg.folk}
    real_folk["all"] = set_figures(list(figs.values()), ONE_LINE, cfg)
    real_folk["left_out"] = folk_left
    progress(f"{len(folk)} folk tunes in 4/4 or 2/2 ({sum(folk_left.values())} left out)")

    def ensemble_pieces(splits, sources=None, limit=None):
        got, left = held_pieces(cfg, splits, sources, limit)
        for p in got:
            p["figures"] = piece_figures(p["notes"], ENSEMBLE_LINES, cfg, p["where"])
        return got, left

    held, held_left = ensemble_pieces(cfg.splits, limit=cfg.max_ensemble)
    ens_figs = [p["figures"] for p in held]
    real_ens = {s: set_figures([f for f, p in zip(ens_figs, held) if p["source"] == s],
                               ENSEMBLE_LINES, cfg) for s in sorted({p["source"] for p in held})}
    real_ens["all"] = set_figures(ens_figs, ENSEMBLE_LINES, cfg)
    real_ens["left_out"] = len(held_left)
    game, _ = ensemble_pieces(SPLIT_NAMES, (cfg.game_source,))
    real_game = set_figures([p["figures"] for p in game], ENSEMBLE_LINES, cfg)
    real_game["source"], real_game["splits"] = cfg.game_source, list(SPLIT_NAMES)
    progress(f"{len(held)} held-out ensemble pieces, {len(game)} {cfg.game_source} pieces")
    clock = dict(real=time.process_time() - t0)
    gen = dict(one_line=one_line(cfg, folk, progress))
    clock["one_line"] = time.process_time() - t0 - clock["real"]
    gen["ensemble"] = ensemble(cfg, held, progress)
    # each form a preset plays gets its own curve: a preset is matched in the form it plays
    gen["ensemble_forms"] = {}
    for form in sorted(set(preset_forms(states).values()), key=form_label):
        if form != Form(cfg.shape, cfg.phrase):
            gen["ensemble_forms"][form_label(form)] = ensemble(cfg, held, progress, form)
    clock["ensemble"] = time.process_time() - t0 - clock["real"] - clock["one_line"]
    result = dict(config=asdict(cfg), real=dict(folk=real_folk, ensemble=real_ens, game=real_game),
                  generated=gen,
                  interval="real: 95 % t-interval over pieces; generated: over seeds")
    result["presets"] = preset_repetitions(result, states)
    clock["total"] = time.process_time() - t0
    result["cpu_seconds"] = clock
    return json_ready(result)


def format_table(r):
    """The printed summary: real sets, generated rows, presets."""
    def iv(f, pct=True):
        if f is None or f.get("mean") is None:
            return "n/a"
        k = 100 if pct else 1
        x = f"{k * f['mean']:.1f}" if pct else f"{f['mean']:.3f}"
        return x + (f" [{k * f['lo']:.1f}, {k * f['hi']:.1f}]" if pct and f.get("lo") is not None
                    else f" [{f['lo']:.3f}, {f['hi']:.3f}]" if f.get("lo") is not None else "")

    def prof(s):
        return " ".join("  n/a" if v is None else f"{v:5.2f}" for v in s)

    lines = ["REAL (bar-repeat %, phrase-repeat %, similarity at lag 1..7)",
             f"{'set':28s} {'pieces':>6s} {'bar repeat':>20s} {'phrase repeat':>20s}  profile"]
    sets = [(f"folk {k}", v, "line") for k, v in r["real"]["folk"].items() if k != "left_out"]
    sets += [(f"ensemble {k} {ln}", v, ln) for k, v in r["real"]["ensemble"].items()
             if k != "left_out" for ln in ENSEMBLE_LINES]
    sets += [(f"{r['real']['game']['source']} (all splits) {ln}", r["real"]["game"], ln)
             for ln in ENSEMBLE_LINES]
    for name, v, ln in sets:
        lines.append(f"{name:28s} {v['pieces']:6d} {iv(v[ln]['bar_repeat']):>20s} "
                     f"{iv(v[ln]['phrase_repeat']):>20s}  {prof(v[ln]['similarity'])}")
    lines.append("GENERATED (per repetition; 95 % interval over seeds)")
    for model, ln in (("one_line", "line"), ("ensemble", "melody")):
        for row in r["generated"][model]:
            f = row["figures"]
            lines.append(f"{model:9s} rep {row['repetition']:4.2f} {ln:7s} "
                         f"{iv(f[ln]['bar_repeat']):>20s} {iv(f[ln]['phrase_repeat']):>20s}  "
                         f"{prof(f[ln]['similarity'])}  critic AUC {iv(row['critic_auc'], False)}")
        if model == "ensemble":
            for row in r["generated"][model]:
                lines.append(f"{'':9s} rep {row['repetition']:4.2f} bar repeat: " + ", ".join(
                    f"{v} {iv(row['figures'][v]['bar_repeat'])}" for v in ENSEMBLE_LINES))
    for label, rows in r["generated"]["ensemble_forms"].items():
        for row in rows:
            f = row["figures"]["melody"]
            lines.append(f"ensemble  rep {row['repetition']:4.2f} {label}: melody "
                         f"{iv(f['bar_repeat']):>20s} {iv(f['phrase_repeat']):>20s}  "
                         f"{prof(f['similarity'])}  critic AUC {iv(row['critic_auc'], False)}")
    lines.append("PRESETS (the measured repetition nearest real music of the preset's kind, "
                 "in the preset's form)")
    for name, p in r["presets"].items():
        e, o = p["ensemble"], p["one_line"]
        lines.append(f"{name:8s} {p['kind']:5s} {p['form']:14s} "
                     f"real {100 * (p['real_bar_repeat'] or 0):5.1f} %  "
                     f"ensemble: repetition {e['repetition']:g} ({100 * (e['bar_repeat'] or 0):.1f} %)"
                     f"   one line: repetition {o['repetition']:g} "
                     f"({100 * (o['bar_repeat'] or 0):.1f} %)")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m engine.evaluation.form",
                                description=__doc__.split("\n")[0])
    p.add_argument("--out", default="engine/models/form.json", help="the JSON of every figure")
    p.add_argument("--seeds", type=int, default=None, help="generation seeds (default 3)")
    p.add_argument("--pieces", type=int, default=None,
                   help="one-line pieces per seed and repetition (default 64)")
    p.add_argument("--states", default=str(STATES), help="the presets to match")
    p.add_argument("--repetitions", default=None, metavar="R,R,...",
                   help="the repetitions composed at (default 0,0.25,0.5,0.75,1)")
    p.add_argument("--form", default=None, metavar="SHAPE",
                   help=f"the shape the generated music follows (default {Form.shape})")
    p.add_argument("--data", default=None, metavar="NPZ",
                   help="the ensemble dataset whose held-out pieces (and game source) are real "
                        f"music (default {FormEvalConfig.ensemble_data})")
    p.add_argument("--phrase", type=int, default=None, metavar="BARS",
                   help=f"the form's phrase, in bars (default {Form.bars})")
    p.add_argument("--temperature", type=float, default=None,
                   help="the sampler's temperature of every generated piece")
    p.add_argument("--model", default=None,
                   help=f"the ensemble model (default {FormEvalConfig.ensemble})")
    p.add_argument("--quick", action="store_true", help="a small run (tests, a first look)")
    args = p.parse_args(argv)
    cfg = FormEvalConfig().quick() if args.quick else FormEvalConfig()
    reps = None
    if args.repetitions:
        try:
            reps = tuple(float(r) for r in args.repetitions.split(","))
        except ValueError:
            p.error(f"--repetitions {args.repetitions!r}: R,R,... each a number in 0..1")
    given = dict(seeds=args.seeds, pieces=args.pieces, shape=args.form, phrase=args.phrase,
                 repetitions=reps, ensemble_data=args.data, temperature=args.temperature,
                 ensemble=args.model)
    try:
        cfg = replace(cfg, **{k: v for k, v in given.items() if v is not None})
    except InvalidMessage as exc:  # one line naming the field, no traceback
        print(f"{p.prog}: {exc}", file=sys.stderr)
        return 2
    result = measure(cfg, lambda m: print(m, file=sys.stderr, flush=True), args.states)
    print(format_table(result))
    Path(args.out).write_text(json.dumps(result, indent=1, allow_nan=False))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
