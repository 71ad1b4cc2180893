"""A theme as the server states it, measured: the melody voice plays it from the piece's
start (``Request.lead``, ``Runtime.lead_at``), and the form plan brings it back.

A game sends a theme and a variation; the server (``realtime.sessions.Sessions.set_theme``)
makes the melody voice state it note for note at variation 0, re-compose a share v of its
notes near the originals (rhythm and contour kept) at v, and compose freely at 1; a theme
model's z, ``(1 - v) mu``, also steers what is composed.  This module composes exactly
that offline (``engine.generate`` on the numba runtime) and measures it, with the figures of
``engine.theme.variations`` (note accuracy, similarity and novelty, the Spearmans, the
priming baseline), so the two evaluations read alike:

- **Themes**: held-out folk tunes (the test and valid splits of the one-line collections,
  4/4 and 2/2, read as ``engine.evaluation.form.read_folk`` reads them): the first ``bars`` bars
  from each tune's first bar line at or after its first note, sent as a game sends notes
  (``engine.motif.from_notes``: absolute pitches, the key measured).  Each is composed in
  its own key, mode, density and register (``variations._request``).
- **Models**: the shipped ensemble (the server's default: the theme is stated, no z) and
  the theme model (stated and steered by z); the plain generator primed with the theme's
  tokens (``variations.compose_primed``) is the baseline that states nothing.
- **Stated at variation 0**: over the theme's notes, the share the melody voice (the
  ensemble's voice 0; the one-line model's every note) plays in the first ``bars`` bars
  at the same onset and the same pitch class relative to the key (``notes``: the issue's
  figure), at the same pitch (``exact``), and the share of the theme's onsets it plays.
- **The variation curve**: similarity and novelty of the melody voice's first
  ``bars_out`` bars to the theme at each variation (v = 1: no theme stated; the theme
  model composes from z = 0) and the Spearmans of similarity on variation over pieces,
  within themes and of the curve (``variations._spearmans``).
- **Returns**: at variation 0 and each ``repetitions`` value r, ``return_bars`` bars with
  the default form (``engine.form.Form``: phrases of ``Form.bars`` bars), every piece with
  its own seed (the form's draws follow the seed); a phrase after the first "brings the
  theme back" when its start plays at least ``STATED`` of the theme's notes (pitch class
  and onset, from the phrase's first tick), and the mean of that accuracy over the
  phrases.  The form plan brings the theme back at each later phrase with probability r
  (and its bar recalls may replay the bars that stated it, exactly or varied), so the
  share should be near r or above, and 0 at r = 0 (what chance gives).

``python -m engine.theme.stated`` prints the table and writes ``engine/models/theme-stated.json``.
"""
import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from engine import DEFAULT_ENSEMBLE, DEFAULT_MODEL, DEFAULT_THEME
from engine.controls import KEY_NAMES, MODES
from engine.ensemble import MELODY
from engine.errors import InvalidMessage, ModelError
from engine.form import Form
from engine.generate import generate_many, load_weights
from engine.metrics import json_ready
from engine.motif import VARIATION_RANGE, from_notes
from engine.sampler.theme import ThemeEncoder, latent
from engine.theme.variations import (TEMPERATURES, VARIATIONS, _curve, _mean, _per_piece,
                                     _request, _spearmans, compose_primed, note_accuracy)

OUT = DEFAULT_MODEL.with_name("theme-stated.json")
#: A phrase start plays the theme when it plays this share of its notes (the issue's
#: target for a statement at variation 0).
STATED = 0.98


@dataclass(frozen=True)
class StatedConfig:
    """What is composed and measured (see the module docstring)."""

    ticks_per_beat: int = 12
    beats_per_bar: int = 4
    collections: tuple = ("oneills1850", "ryansMammoth", "airdsAirs")
    splits: tuple = ("test", "valid")
    theme_bars: tuple = (2, 4)
    themes: int = 40                 # per theme length
    seeds: tuple = (0, 1, 2)
    variations: tuple = VARIATIONS
    temperatures: tuple = TEMPERATURES
    bars_out: int = 8
    repetitions: tuple = (0.0, 0.5, 0.8)
    return_bars: int = 32
    ensemble: str = str(DEFAULT_ENSEMBLE)
    theme: str = str(DEFAULT_THEME)
    base: str = str(DEFAULT_MODEL)
    seed: int = 0                    # which tunes are drawn

    def __post_init__(self):
        lo, hi = VARIATION_RANGE
        for v in self.variations:
            check_variation(v, "variations")
        if not self.variations or self.variations[0] != lo or self.variations[-1] != hi:
            raise InvalidMessage(f"variations {self.variations!r} must run from {lo:g} to {hi:g}",
                                 field="variations", allowed=f"ascending values {lo:g}..{hi:g}")
        if any(not 0 <= r <= 1 for r in self.repetitions):
            raise InvalidMessage(f"repetitions {self.repetitions!r} are not all in 0..1",
                                 field="repetitions", allowed="values in 0..1")
        if any(b not in range(1, Form.bars + 1) for b in self.theme_bars):
            raise InvalidMessage(f"theme_bars {self.theme_bars!r}", field="theme_bars",
                                 allowed=f"bars 1..{Form.bars} (a theme fits a phrase)")
        if not (isinstance(self.themes, int) and self.themes >= 2):
            raise InvalidMessage(f"themes {self.themes!r}", field="themes", allowed="2 or more")
        if not self.seeds:
            raise InvalidMessage("seeds: none given", field="seeds", allowed="one or more")
        phrase = Form.bars
        if not (isinstance(self.return_bars, int) and self.return_bars >= 2 * phrase
                and self.return_bars % phrase == 0):
            raise InvalidMessage(f"return_bars {self.return_bars!r}", field="return_bars",
                                 allowed=f"a multiple of {phrase} bars, at least {2 * phrase}")


QUICK = dict(themes=4, seeds=(0,), return_bars=16)


def check_variation(variation, field="variation"):
    """InvalidMessage naming ``field`` for a variation outside 0..1."""
    lo, hi = VARIATION_RANGE
    if isinstance(variation, bool) or not isinstance(variation, (int, float, np.floating)) \
            or not lo <= variation <= hi:
        raise InvalidMessage(f"{field} {variation!r} is outside {lo:g}..{hi:g}", field=field,
                             allowed=f"{lo:g}..{hi:g} (0 the theme note for note, 1 free)")


# -- themes --------------------------------------------------------------------------------
def folk_themes(cfg, bars):
    """Up to ``cfg.themes`` held-out themes of exactly ``bars`` bars (``Motif``s with the
    tunes' absolute pitches): each tune's first ``bars`` bars from its first bar line at
    or after its first note (a note held past them is cut at their end)."""
    from engine.evaluation.form import read_folk
    tunes, _ = read_folk(cfg.collections, cfg.splits, cfg, cfg.themes)
    bar = cfg.beats_per_bar * cfg.ticks_per_beat
    tpb = cfg.ticks_per_beat
    out = []
    for j in np.random.default_rng([cfg.seed, bars]).permutation(len(tunes)):
        notes = tunes[j]["notes"]
        if not len(notes):
            continue
        lo = -(-int(notes["start"].min()) // bar) * bar
        hi = lo + bars * bar
        cut = notes[(notes["start"] >= lo) & (notes["start"] < hi)]
        rows = [[int(n["pitch"]), (n["start"] - lo) / tpb, (min(n["end"], hi) - n["start"]) / tpb]
                for n in cut]
        try:
            motif = from_notes(rows, ticks_per_beat=tpb, beats_per_bar=cfg.beats_per_bar,
                               source=tunes[j]["name"])
        except InvalidMessage:  # fewer than 3 notes, or a pitch sounding twice at once
            continue
        if motif.bars == bars:
            out.append(motif)
        if len(out) == cfg.themes:
            break
    return out


# -- composing as the server does -------------------------------------------------------
def stated_lead(motif, variation, weights, mode=None):
    """``Request.lead`` (``Runtime.lead_at``'s notes, variation, length) for ``motif`` at
    ``variation`` in ``mode`` (None: its own), as the server builds it: the notes in the
    model's space (key-relative: in C, the player moves them to the key; else moved to the
    theme's key here), its bars' length; None at variation 1 (free composition).
    InvalidMessage naming ``variation`` outside 0..1."""
    check_variation(variation)
    return motif.lead(float(variation), mode, None if weights.key_relative else motif.tonic)


def encoder_of(model):
    """The model's ``ThemeEncoder`` (a theme model), or None (a plain or ensemble one)."""
    try:
        return ThemeEncoder(model)
    except ModelError:
        return None


def compose_stated(model, motifs, variations=VARIATIONS, seeds=(0,), bars=8, repetition=0.0,
                   temperature=1.0, distinct=False):
    """{variation: [pieces, one per (motif, seed), motif-major]}: each theme stated by the
    melody voice from the piece's start at each variation and, on a theme model, steered by
    z = (1 - v) mu (z = 0 at 1); ``repetition`` > 0 brings it back through the default form.
    ``distinct``: the piece of motif i and seed j is composed with seed
    ``i * len(seeds) + j``, so that the form's draws (which follow a session's seed) differ
    from theme to theme."""
    for v in variations:
        check_variation(v)
    w, enc = load_weights(model), encoder_of(model)
    mus = [enc.encode(m.tokens(w.vocab))[0] for m in motifs] if enc is not None else None
    out = {}
    for v in variations:
        reqs = [_request(m, i * len(seeds) + j if distinct else s, lead=stated_lead(m, v, w),
                         theme=None if enc is None else enc.bias(latent(mus[i], v), m.bars))
                for i, m in enumerate(motifs) for j, s in enumerate(seeds)]
        out[v] = generate_many(w, reqs, bars, temperature=temperature, repetition=repetition)
    return out


def melody_voice(notes, n_voices):
    """The notes of the voice a theme is stated in: an ensemble's melody (voice 0), a
    one-line model's every note."""
    return notes[notes["channel"] == MELODY] if n_voices else notes


# -- figures ---------------------------------------------------------------------------------
def _degrees(notes, tonic):
    """The notes with each pitch replaced by its pitch class relative to ``tonic``."""
    out = notes.copy()
    out["pitch"] = (notes["pitch"].astype(np.int64) - tonic) % 12
    return out


def stated_accuracy(motif, line, at=0):
    """How much of ``motif`` the melody ``line`` plays from tick ``at`` for the theme's
    bars: the shares of its notes at the same onset and pitch class relative to its key
    (``notes``), at the same onset and pitch (``exact``), and of its onsets (``onsets``)."""
    theme = motif.notes.copy()
    theme["start"] += at
    theme["end"] += at
    end = at + motif.bars * motif.beats_per_bar * motif.ticks_per_beat
    line = line[line["start"] >= at]
    exact = note_accuracy(theme, line, end)
    classes = note_accuracy(_degrees(theme, motif.tonic), _degrees(line, motif.tonic), end)
    return dict(notes=classes["notes"], exact=exact["notes"], onsets=exact["onsets"])


def returns(motifs, pieces, seeds, cfg):
    """Over the phrases after the first of each piece: the share that start with the theme
    (``STATED`` of its notes, pitch class and onset), and their mean pitch-class accuracy."""
    phrase = Form.bars * cfg.beats_per_bar * cfg.ticks_per_beat
    acc = [stated_accuracy(m, p, k * phrase)["notes"] for m, p in _per_piece(motifs, pieces, seeds)
           for k in range(1, cfg.return_bars // Form.bars)]
    return dict(phrases=len(acc), returned=float(np.mean([a >= STATED for a in acc])),
                accuracy=float(np.mean(acc)))


def measure_model(model, motifs, cfg):
    """The figures of one model on one set of themes (the module docstring's)."""
    n_voices = load_weights(model).vocab.n_voices
    var = compose_stated(model, motifs, cfg.variations, cfg.seeds, cfg.bars_out)
    var = {v: [melody_voice(p, n_voices) for p in pieces] for v, pieces in var.items()}
    acc = [stated_accuracy(m, p) for m, p in _per_piece(motifs, var[cfg.variations[0]], cfg.seeds)]
    out = dict(
        stated=dict(variation=cfg.variations[0],
                    **{k: float(_mean([a[k] for a in acc])) for k in ("notes", "exact", "onsets")},
                    pieces_all_notes=float(np.mean([a["notes"] >= STATED for a in acc]))),
        variation=_curve(motifs, var, cfg.seeds), **_spearmans(motifs, var, cfg.variations,
                                                               cfg.seeds))
    out["returns"] = {}
    for r in cfg.repetitions:
        back = compose_stated(model, motifs, (0.0,), cfg.seeds, cfg.return_bars, repetition=r,
                              distinct=True)
        lines = [melody_voice(p, n_voices) for p in back[0.0]]
        out["returns"][f"{r:g}"] = returns(motifs, lines, cfg.seeds, cfg)
    return out


def measure(cfg=StatedConfig(), progress=print):
    """Every figure, JSON-ready: per theme length, the themes, the ensemble's and the theme
    model's figures and the priming baseline's curve."""
    t0 = time.process_time()
    out = dict(config=asdict(cfg), stated_threshold=STATED, phrase_bars=Form.bars)
    models = dict(ensemble=cfg.ensemble, theme=cfg.theme)
    for bars in cfg.theme_bars:
        motifs = folk_themes(cfg, bars)
        keys = sorted({f"{KEY_NAMES[m.tonic]} {MODES[m.mode]}" for m in motifs})
        r = out[f"{bars}_bars"] = dict(themes=len(motifs), keys=len(keys),
                                       notes_per_theme=float(np.mean([len(m.notes) for m in motifs])))
        for name, path in models.items():
            progress(f"{bars} bars: {name} ({len(motifs)} themes)")
            r[name] = measure_model(path, motifs, cfg)
        progress(f"{bars} bars: primed baseline")
        r["primed"] = _curve(motifs, compose_primed(cfg.base, motifs, cfg.temperatures, cfg.seeds,
                                                    cfg.bars_out), cfg.seeds)
    out["cpu_seconds"] = time.process_time() - t0
    return json_ready(out)


def table(result):
    """The figures as a text table."""
    cfg = result["config"]
    vs, ts, rs = cfg["variations"], cfg["temperatures"], cfg["repetitions"]
    f = lambda x: "  -  " if x is None else f"{x:5.3f}"  # noqa: E731
    g = lambda x: "  -  " if x is None else f"{x:+5.2f}"  # noqa: E731
    lines = []
    for bars in cfg["theme_bars"]:
        key, r = f"{bars}_bars", result[f"{bars}_bars"]
        lines.append(f"{key.replace('_', ' ')}: {r['themes']} themes, {r['keys']} keys, "
                     f"{r['notes_per_theme']:.1f} notes each; seeds {cfg['seeds']}")
        lines.append("  model     stated@0: notes(pc) exact onsets all  | similarity at v "
                     + " ".join(f"{v:g}" for v in vs) + " | novelty | Spearman pieces/within/curve"
                     " | returns at r " + " ".join(f"{x:g}" for x in rs))
        for name in ("ensemble", "theme"):
            m = r[name]
            s, c = m["stated"], m["variation"]
            lines.append(
                f"  {name:9s} {f(s['notes'])} {f(s['exact'])} {f(s['onsets'])} "
                f"{f(s['pieces_all_notes'])} | "
                + " ".join(f(c[f'{v:g}']["similarity"]) for v in vs) + " | "
                + " ".join(f(c[f'{v:g}']["novelty"]) for v in vs) + " | "
                + f"{g(m['spearman'])} {g(m['spearman_within_theme'])} {g(m['spearman_curve'])} | "
                + " ".join(f(m["returns"][f'{x:g}']["returned"]) for x in rs))
        p = r["primed"]
        lines.append("  primed baseline (default.npz), similarity / novelty at T "
                     + ", ".join(f"{t:g}: {f(p[f'{t:g}']['similarity'])} / "
                                 f"{f(p[f'{t:g}']['novelty'])}" for t in ts))
    lines.append(f"cpu {result['cpu_seconds']:.0f} s")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m engine.theme.stated", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", default=str(OUT), help=f"figures written here (default {OUT})")
    p.add_argument("--quick", action="store_true",
                   help=f"a smoke run: {QUICK['themes']} themes a length, one seed, "
                        f"{QUICK['return_bars']} bars for returns")
    p.add_argument("--themes", type=int, default=None, help="themes per length (default 40)")
    p.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 (default 3)")
    args = p.parse_args(argv)
    kw = dict(QUICK) if args.quick else {}
    if args.themes is not None:
        kw["themes"] = args.themes
    if args.seeds is not None:
        kw["seeds"] = tuple(range(args.seeds))
    try:
        cfg = StatedConfig(**kw)
    except InvalidMessage as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result = measure(cfg, progress=lambda m: print(m, file=sys.stderr))
    print(table(result))
    Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
