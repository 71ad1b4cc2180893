"""Offline composition through the sampler that plays: ``engine.sampler.generator.Runtime``.

There is one sampler.  ``generate`` opens a session of the numba runtime exactly as the
server does (START token, the entry rule: the piece starts with a note; the no-stuck-
note rules; the per-session longest note; the tonality prior) and, with no clock to
wait for, advances it straight to the last tick, reading the events out of its ring
as the player would.  ``generate_many`` composes many pieces at once in the slots of
one runtime: batched steps read each weight once for every session.

Keys: a key-relative model (``Weights.key_relative``, trained on pieces moved to C)
composes in C at the register less the shift and the notes are moved up by
``engine.controls.key_shift``; an older model is asked for the key itself
(``engine.controls.model_key``).  The tonality prior lives in the model's pitch space,
relative to the key control's tonic.

An ensemble model (``Vocab.n_voices`` > 0) composes every voice in one session: its
notes come back with ``channel`` = voice id (``engine.ensemble``), only the pitched voices
moved to the key (drums never), and ``run`` writes one track per voice
(``engine.ensemble.write_ensemble_midi``).  ``Request.voices`` names the voices that may
play (the runtime's mask, ``Runtime.set_voices``); all of them by default.

With ``repetition`` > 0 every session follows a form (``engine.form.Form``, the default
one unless ``form`` names another) from the piece's first tick, a bar line, as a server
session with that ``repetition`` does (``Runtime.set_form``): 0 is through-composed, 1 recalls
every bar the form allows, exactly.

With a critic (``critic``, ``critic_k`` K > 0) every session drafts K continuations of
a beat and D picks one, as a server session with ``critic`` K does
(``engine.sampler.critic.Drafter``): the same drafter, the same draft length and the same pick.

The same request and seed give the same piece.  ``generate_many`` with the same list of
requests always gives the same pieces.  A piece composed beside others came out
identical to the same request composed alone in 150 of 150 pieces checked on the
reference machine, but that is not guaranteed: the runtime's batched dot products may
round in another order than a session stepped alone.
"""
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine import DEFAULT_MODEL
from engine.controls import (DEFAULT_TONALITY, KEY_NAMES, KEY_SPELLINGS, MODES, STYLES,
                             TONALITY_RANGE, check_parts, check_style, parse_key)
from engine.ensemble import (CENTRE, DEFAULTS, DRUMS, PRIORS, TEMPERATURE, VOICES, voice_id,
                             write_ensemble_midi)
from engine.errors import InvalidMessage
from engine.form import LETTERS, REPETITION_RANGE, Form, check_form
from engine.motif import VARIATION_RANGE, from_command_line
from engine.notes import NOTE_DTYPE, write_midi
from engine.sampler.critic import (DEFAULT_CRITIC, DRAFT_BEATS, MAX_CANDIDATES, MAX_DRAFT_BEATS, PICKS,
                                   CriticRuntime, Drafter)
from engine.sampler.generator import DEFAULT_MAX_NOTE_BEATS, MAX_NOTE_BEATS, Runtime
from engine.sampler.theme import ThemeEncoder, latent
from engine.sampler.weights import Weights
from engine.vocab import START, TIME_SHIFT, Vocab

MAX_BARS = 1024
MAX_DENSITY = 16.0
#: The longest a note may be asked to sound, in beats (``max_note_beats``, here and in a
#: server's presets), and how long it sounds when nothing asks (the runtime's guard
#: against a note held on and on; note lengths come from the model).


@dataclass(frozen=True)
class Request:
    """One piece to compose: tonic pitch class, mode (0 major, 1 minor), onsets per beat,
    seed; register (mean MIDI pitch, None: the model's training mean), tonality
    (None: ``DEFAULT_TONALITY``) and theme: what a theme's latent adds to a theme model,
    ``(W_z z per layer, (h0, c0))`` from ``engine.sampler.theme.ThemeEncoder.bias`` (None: free
    composition); prime: tokens (in the model's pitch space) fed before composing and not
    part of the piece, which starts where they end (priming the LSTM with a theme);
    voices: the ids of the voices that may play, for an ensemble model (None: all);
    voice_bias: log-odds added to each voice's token (``Runtime.voice_bias``; None: each
    voice's ``presence`` in ``engine.ensemble.DEFAULTS``, as a server plays it);
    consonance, rooting: the consonance and root priors' weights (``Runtime.consonance``,
    ``Runtime.rooting``; None: ``engine.ensemble.CONSONANCE``, ``ROOTING``); inversion: the
    inversion prior's (``Runtime.inversion``; None: ``INVERSION``); ordering: the
    voice-order prior's (``Runtime.ordering``; None: ``engine.ensemble.ORDERING``);
    smoothing: the line prior's (``Runtime.smoothing``; None: ``SMOOTHING``); leading: the
    lead-in's (``Runtime.leading``; None: ``LEADING``); joining: the join rule's limit
    (``Runtime.joining``; None: ``JOINING``); centre: the
    tonal-centre prior's weight (``engine.controls.tonality_bias``; None:
    ``engine.ensemble.CENTRE`` for an ensemble model, 0 for one line); lead: a theme
    the melody states from the piece's start, ``Runtime.lead_at``'s (notes, variation,
    length) (notes in the model's space: key-relative, in C), as a server session states a
    theme sent to it (None: none); style: a name of ``engine.controls.STYLES`` (None: no
    style, the mix; a model told no styles ignores it); parts: the melody's, bass's and
    harmony's onsets per beat (``engine.controls.check_parts``; None: not given, the voices
    share ``density``; a model not told them ignores it)."""

    key: int
    mode: int
    density: float
    seed: int = 0
    register: float = None
    tonality: float = None
    theme: object = None
    prime: object = None
    voices: tuple = None
    voice_bias: tuple = None
    consonance: float = None
    rooting: float = None
    inversion: float = None
    ordering: float = None
    smoothing: float = None
    leading: float = None
    joining: float = None
    centre: float = None
    lead: tuple = None
    style: str = None
    parts: tuple = None


def _bad(field, value, allowed):
    return InvalidMessage(f"{field} {value!r} is outside {allowed}", field=field, allowed=allowed)


def check(bars=16, beats_per_bar=4, temperature=1.0, max_note_beats=DEFAULT_MAX_NOTE_BEATS,
          density=2.0, mode=0, tonality=DEFAULT_TONALITY, register=None, key=0, critic_k=0,
          critic_pick="sample", critic_beats=1.0, repetition=0.0):
    """InvalidMessage naming the field and its range for the first impossible value."""

    def number(v):
        return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)

    def whole(v):
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    if not (whole(bars) and 1 <= bars <= MAX_BARS):
        raise _bad("bars", bars, f"1..{MAX_BARS}")
    if not (whole(beats_per_bar) and 1 <= beats_per_bar <= 16):
        raise _bad("beats_per_bar", beats_per_bar, "1..16")
    if not (number(temperature) and 0 < temperature <= 10):
        raise _bad("temperature", temperature, "(0, 10]")
    if not (number(max_note_beats) and 0 < max_note_beats <= MAX_NOTE_BEATS):
        raise _bad("max_note_beats", max_note_beats, f"(0, {MAX_NOTE_BEATS:g}] beats")
    if not (number(density) and 0 < density <= MAX_DENSITY):
        raise _bad("density", density, f"(0, {MAX_DENSITY:g}] onsets per beat")
    if not (whole(mode) and mode in (0, 1)):
        raise _bad("mode", mode, "0 (major) or 1 (minor)")
    if not (number(tonality) and TONALITY_RANGE[0] <= tonality <= TONALITY_RANGE[1]):
        raise _bad("tonality", tonality, "0..1 (0 free, 1 strict)")
    if register is not None and not (number(register) and 0 <= register <= 127):
        raise _bad("register", register, "0..127 (mean MIDI pitch)")
    if not (whole(key) and 0 <= key <= 11):
        raise _bad("key", key, "pitch class 0..11")
    if not (whole(critic_k) and 0 <= critic_k <= MAX_CANDIDATES):
        raise _bad("critic_k", critic_k, f"0..{MAX_CANDIDATES} drafts judged (0: no critic)")
    if critic_pick not in PICKS:
        raise InvalidMessage(f"critic_pick {critic_pick!r} is not one of {', '.join(PICKS)}",
                             field="critic_pick", allowed=list(PICKS))
    if not (number(critic_beats) and 0 < critic_beats <= MAX_DRAFT_BEATS):
        raise _bad("critic_beats", critic_beats, f"(0, {MAX_DRAFT_BEATS:g}] beats a draft")
    if not (number(repetition) and REPETITION_RANGE[0] <= repetition <= REPETITION_RANGE[1]):
        raise _bad("repetition", repetition, "0..1 (0 through-composed, 1 a loop)")


def check_voices(vocab, voices, critic_k=0):
    """InvalidMessage naming the field for ``voices`` (ids) a model cannot play, or for
    a critic asked of an ensemble model (the drafter copies no voice state yet)."""
    n = vocab.n_voices
    if voices is not None:
        if not n:
            raise InvalidMessage(f"voices {list(voices)} asked of a one-line model: an "
                                 "ensemble model (one with voices) plays voices",
                                 field="voices", allowed="none for this model")
        ids = list(voices)
        if not ids or any(isinstance(v, bool) or not isinstance(v, (int, np.integer))
                          or not 0 <= v < n for v in ids):
            raise InvalidMessage(f"voices {ids} are not voice ids of this model", field="voices",
                                 allowed=f"one or more of 0..{n - 1} "
                                         f"({', '.join(VOICES[:n])})")
    if n and critic_k:
        raise InvalidMessage(f"critic_k {critic_k}: the critic does not judge an ensemble "
                             "model's drafts yet", field="critic_k", allowed="0 for an ensemble")


def needs_critic(critic_k, critic):
    """InvalidMessage on field ``critic`` when K > 0 drafts are asked for without one."""
    if critic_k and not critic:
        raise InvalidMessage(f"critic_k {critic_k} needs a critic: give --critic PATH (a critic "
                             "file from `ostinato adversarial`), or critic_k 0", field="critic",
                             allowed="a critic .npz when critic_k > 0")


def key_of(name):
    """Pitch class of a key name; an unknown name is an error listing every allowed one."""
    try:
        return parse_key(name)
    except InvalidMessage:
        allowed = ", ".join(KEY_SPELLINGS)
        raise InvalidMessage(f"key {name!r} is not a key name; allowed: {allowed}", field="key",
                             allowed=allowed) from None


def load_weights(model):
    """A ``engine.sampler.weights.Weights`` as is, or loaded from a model path."""
    if isinstance(model, Weights):
        return model
    return Weights(model)


def generate(weights, key, mode, density, bars, seed=0, register=None, beats_per_bar=4,
             temperature=TEMPERATURE, tonality=None, max_note_beats=DEFAULT_MAX_NOTE_BEATS,
             max_tokens=None, critic=None, critic_k=0, critic_pick="sample", critic_beats=1.0,
             theme=None, voices=None, repetition=0.0, form=None, style=None, parts=None):
    """Notes (NOTE_DTYPE) of ``bars`` bars composed under constant controls.

    weights: ``engine.sampler.weights.Weights`` or a model path; key: pitch class 0-11;
    mode: 0 major, 1 minor; density: onsets per beat; register: mean MIDI pitch
    (default: the training data's); tonality: 0 free .. 1 strict (default
    ``DEFAULT_TONALITY``); critic..., repetition, form: see ``generate_many``; theme,
    voices, style, parts: see ``Request``.  Pitches are as heard (a key-relative model's shift applied, drums
    unmoved); an ensemble's notes carry their voice id in ``channel``.
    """
    req = Request(key, mode, density, seed, register, tonality, theme, voices=voices,
                  style=style, parts=parts)
    return generate_many(weights, [req], bars, beats_per_bar=beats_per_bar,
                         temperature=temperature, max_note_beats=max_note_beats,
                         max_tokens=max_tokens, critic=critic, critic_k=critic_k,
                         critic_pick=critic_pick, critic_beats=critic_beats,
                         repetition=repetition, form=form)[0]


def load_critic(critic):
    """A critic for ``engine.sampler.critic.Drafter`` as is (``CriticRuntime`` or critic
    ``Weights``), or loaded from a critic file's path."""
    if isinstance(critic, (CriticRuntime, Weights)):
        return critic
    return Weights(critic, role="critic")


def generate_many(weights, requests, bars, beats_per_bar=4, temperature=TEMPERATURE,
                  max_note_beats=DEFAULT_MAX_NOTE_BEATS,
                  max_tokens=None, sessions=64, progress=None, critic=None, critic_k=0,
                  critic_pick="sample", critic_beats=1.0, repetition=0.0, form=None):
    """Notes of each request (a ``Request`` or a (key, mode, density, seed) tuple),
    composed ``sessions`` at a time in one runtime.  A session stops after ``max_tokens``
    events (default: eight a tick), a guard against a model that never moves time on.
    ``progress(n)`` is called as pieces finish.

    ``critic``: a critic file (or ``load_critic``'s result); with ``critic_k`` K > 0 every
    piece is composed from drafts of ``critic_beats`` beats, K at a time, of which D
    picks one (``critic_pick``: "sample", weights D/(1-D), or "best"), exactly as a
    server session with ``critic`` K plays.

    ``repetition`` (0..1) and ``form`` (an ``engine.form.Form``; None: the default one):
    with ``repetition`` > 0 each piece follows the form from its first tick (after a prime),
    its bars ``beats_per_bar`` beats long (``Runtime.set_form``)."""

    w = load_weights(weights)
    reqs = [r if isinstance(r, Request) else Request(*r) for r in requests]
    check(bars=bars, beats_per_bar=beats_per_bar, temperature=temperature,
          max_note_beats=max_note_beats, critic_k=critic_k, critic_pick=critic_pick,
          critic_beats=critic_beats, repetition=repetition)
    if form is not None and not isinstance(form, Form):
        raise InvalidMessage(f"form {form!r} is not an engine.form.Form", field="form",
                             allowed="an engine.form.Form, or None for the default")
    form = Form() if form is None else form
    needs_critic(critic_k, critic)
    for r in reqs:
        check(density=r.density, mode=r.mode, key=r.key, register=r.register,
              tonality=DEFAULT_TONALITY if r.tonality is None else r.tonality)
        check_voices(w.vocab, r.voices, critic_k)
    if not reqs:
        return []
    vocab, spec = w.vocab, w.spec
    tpb = vocab.ticks_per_beat
    end = bars * beats_per_bar * tpb
    max_tokens = max_tokens or end * 8 + 64
    S = max(1, min(int(sessions), len(reqs)))
    rt = Runtime(w, max_sessions=S, max_note_beats=max_note_beats)
    drafter = Drafter(rt, load_critic(critic), critic_beats, critic_pick) if critic_k else None
    R = rt.ring
    target = np.full(S, end, np.int64)
    job = np.full(S, -1, np.int64)          # request composed in each slot, -1: free
    shift = np.zeros(S, np.int64)
    skip = np.zeros(S, np.int64)            # ticks of each slot's prime, not part of its piece
    limit = np.full(S, max_tokens, np.int64)  # events a slot may make: its prime's and more
    tokens = [[] for _ in range(S)]
    out = [None] * len(reqs)
    nxt = 0

    def start(s):
        nonlocal nxt
        r = reqs[nxt]
        reg = w.mean_register if r.register is None else r.register
        t = DEFAULT_TONALITY if r.tonality is None else r.tonality
        centre = (CENTRE if rt.n_voices else 0.0) if r.centre is None else r.centre
        ctl, k, bias = spec.request(r.key, r.mode, r.density, reg, t, w.key_relative, centre,
                                    r.style, r.parts)
        rt.open(s, ctl, seed=int(r.seed), temperature=temperature, tick=0)
        if r.voices is not None:
            rt.set_voices(s, r.voices)
        if rt.n_voices:
            rt.voice_bias[s] = (r.voice_bias if r.voice_bias is not None else
                                [v.presence for v in DEFAULTS[:rt.n_voices]])
            rt.set_priors(s, **{name: weight if getattr(r, name) is None else getattr(r, name)
                                for name, weight in PRIORS.items()})
        if r.theme is not None:  # the piece is a phrase that starts from the theme's state
            rt.set_theme(s, r.theme[0], r.theme[1])
        skip[s] = 0
        if r.prime is not None and len(r.prime):
            prime = np.asarray(r.prime, np.int64)
            rt.queue(s, prime)
            kinds, values = vocab.tables()
            skip[s] = int(values[prime][kinds[prime] == TIME_SHIFT].sum())
        if repetition > 0 or r.lead is not None:  # the piece's first tick is a bar line
            rt.set_form(s, float(repetition), form, bar_ticks=tpb * beats_per_bar,
                        origin=int(skip[s]))
        if r.lead is not None:
            rt.lead_at(s, int(skip[s]), *r.lead)
        target[s] = end + skip[s]
        limit[s] = max_tokens + (0 if r.prime is None else len(r.prime))
        rt.pc_bias[s] = bias
        rt.next_bias[s] = bias
        rt.candidates[s] = critic_k
        job[s], shift[s] = nxt, k
        tokens[s] = [vocab.offsets[START]]  # as ring slot 0 holds it
        nxt += 1

    def finish(s):
        out[job[s]] = _notes(vocab, tokens[s], end, int(shift[s]), int(skip[s]))
        rt.close(s)
        job[s] = -1
        if progress:
            progress(1)

    for s in range(S):
        start(s)
    while (job >= 0).any():
        # events each session may still make (START aside): a runaway stops at max_tokens
        left = min(limit[s] + 1 - len(tokens[s]) for s in np.flatnonzero(job >= 0))
        if drafter is not None:  # every session short of the end gets its next draft
            drafter.drive(target, 1 << 30)
        rt.advance(target, max(1, left))
        for s in np.flatnonzero(job >= 0):
            h, t = int(rt.head[s]), int(rt.tail[s])
            if t > h:
                tokens[s].extend(rt.ev_tok[s, np.arange(h, t) % R].tolist())
                rt.head[s] = rt.ready[s] = t  # played: the ring has room again
            if rt.gen_tick[s] >= target[s] or len(tokens[s]) > limit[s]:
                finish(s)
                if nxt < len(reqs):
                    start(s)
    return out


def _notes(vocab, tokens, end, shift, skip=0):
    """Decoded notes from ``skip`` ticks on (earlier ones were a prime), cut to ``end``
    ticks after it and moved by ``shift`` semitones (an ensemble's drums stay: their
    pitch is an instrument); a pitch the move takes outside 0..127 is dropped."""
    notes = vocab.decode(np.asarray(tokens, np.int64))
    if skip:
        notes = notes[notes["start"] >= skip]
        notes["start"] -= skip
        notes["end"] -= skip
    notes = notes[notes["start"] < end]
    notes["end"] = np.minimum(notes["end"], end)
    if shift:
        move = notes["channel"] != DRUMS if vocab.n_voices > DRUMS else np.ones(len(notes), bool)
        p = notes["pitch"].astype(np.int64) + shift * move
        notes = notes[(p >= 0) & (p <= 127)]
        notes["pitch"] = p[(p >= 0) & (p <= 127)]
    return np.ascontiguousarray(notes, dtype=NOTE_DTYPE)


# -- command line --------------------------------------------------------------------
def add_arguments(p):
    p.add_argument("--key", default="C", help="tonic: " + ", ".join(KEY_SPELLINGS) + " (default C)")
    p.add_argument("--mode", default="major", choices=MODES)
    p.add_argument("--density", type=float, default=2.0,
                   help=f"note onsets per beat, (0, {MAX_DENSITY:g}] (default 2)")
    p.add_argument("--register", type=float, default=None,
                   help="mean MIDI pitch (default: the model's training average)")
    p.add_argument("--tonality", type=float, default=None,
                   help="prior over the mode's scale, 0 free .. 1 strict "
                        f"(default {DEFAULT_TONALITY:g})")
    p.add_argument("--bars", type=int, default=16, help=f"1..{MAX_BARS} (default 16)")
    p.add_argument("--beats-per-bar", type=int, default=4)
    p.add_argument("--tempo", type=float, default=110.0, help="tempo written to the file, BPM")
    p.add_argument("--temperature", type=float, default=TEMPERATURE,
                   help=f"the sampler's (default {TEMPERATURE:g}, as a server plays)")
    p.add_argument("--repetition", type=float, default=0.0, metavar="R",
                   help="0 through-composed .. 1 a loop: how often a bar the form allows "
                        "comes back (default 0)")
    p.add_argument("--form", default=None, metavar="SHAPE",
                   help=f"the phrase's sections, letters {LETTERS[0]}..{LETTERS[-1]} "
                        f"(default {Form.shape}, {Form.bars} bars; followed when --repetition > 0)")
    p.add_argument("--style", default=None, metavar="STYLE",
                   help=f"the texture asked of a model told styles: {', '.join(STYLES)} "
                        "(default: none, the mix of them all)")
    p.add_argument("--parts", default=None, metavar="M,B,H",
                   help="onsets per beat of the melody, bass and harmony, asked of a model "
                        "told them (`ostinato train --parts`; default: not given, the voices "
                        "share --density)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default=str(DEFAULT_MODEL), help="model .npz (default: shipped)")
    p.add_argument("--voices", default=None, metavar="NAMES",
                   help="an ensemble model's voices that may play, comma-separated from "
                        f"{', '.join(VOICES)} (default: all)")
    add_critic_arguments(p)
    p.add_argument("--theme", default=None, metavar="MOTIF.mid",
                   help="compose a variation of this theme (needs a theme model: --model "
                        "theme.npz from `ostinato theme train`)")
    p.add_argument("--theme-notes", default=None, metavar="JSON",
                   help="the theme as [[pitch, start_beat, duration_beats], ...] instead")
    p.add_argument("--variation", type=float, default=0.3,
                   help="0 stays close to the theme .. 1 composes freely (default 0.3)")
    p.add_argument("-o", "--output", default="out.mid", help="MIDI file to write")


def add_critic_arguments(p, k_help="drafts of each beat the critic judges; 0 plays G alone"):
    """``--critic PATH --critic-k K --critic-pick --critic-beats``, shared by ``serve``."""
    p.add_argument("--critic", default=None, metavar="PATH",
                   help=f"critic (discriminator) .npz from `ostinato adversarial` (default "
                        f"{DEFAULT_CRITIC} if it exists; 'none': no critic)")
    p.add_argument("--critic-k", type=int, default=0, metavar="K",
                   help=f"{k_help} (0..{MAX_CANDIDATES}, default 0)")
    p.add_argument("--critic-pick", choices=PICKS, default="sample",
                   help="sample: draft k with weight D/(1-D) (discriminator rejection "
                        "sampling, the default); best: the draft D scores highest")
    p.add_argument("--critic-beats", type=float, default=DRAFT_BEATS, metavar="B",
                   help=f"length of a draft in beats (default {DRAFT_BEATS:g})")


def critic_path(arg):
    """The critic file ``--critic`` names: None for 'none', the shipped one when not given
    and it exists, else None."""
    if arg is None:
        return str(DEFAULT_CRITIC) if DEFAULT_CRITIC.exists() else None
    return None if arg == "none" else arg


def run(args):
    key = key_of(args.key)
    tonality = DEFAULT_TONALITY if args.tonality is None else args.tonality
    check(bars=args.bars, beats_per_bar=args.beats_per_bar, temperature=args.temperature,
          density=args.density, mode=MODES.index(args.mode), tonality=tonality,
          register=args.register, key=key, critic_k=args.critic_k, critic_beats=args.critic_beats)
    if not (isinstance(args.repetition, (int, float)) and
            REPETITION_RANGE[0] <= args.repetition <= REPETITION_RANGE[1]):
        raise _bad("--repetition", args.repetition, "0..1 (0 through-composed, 1 a loop)")
    form = None
    if args.form is not None:
        check_form(args.form, Form.bars, Form.bass_loop, Form.drums_loop, field="--form")
        form = Form(shape=args.form)
    if not 1 <= args.tempo <= 1000:
        raise _bad("tempo", args.tempo, "1..1000 BPM")
    critic = critic_path(args.critic)
    if args.critic_k and critic is None:
        raise InvalidMessage(f"--critic-k {args.critic_k} needs a critic: pass --critic PATH",
                             field="--critic", allowed="a critic .npz when --critic-k > 0")
    voices = None if args.voices is None else [
        voice_id(v.strip()) for v in args.voices.split(",") if v.strip()]
    weights = load_weights(Path(args.model))
    vocab = weights.vocab
    check_voices(vocab, voices, args.critic_k)
    if args.style is not None:
        check_style(args.style)
        if not weights.spec.styles:
            raise InvalidMessage(f"--style {args.style} needs a model told styles; "
                                 f"{args.model} has none", field="style",
                                 allowed="none (this model has no styles)")
    parts = None
    if args.parts is not None:
        try:
            parts = [float(x) for x in args.parts.split(",")]
        except ValueError:
            parts = args.parts  # not numbers: check_parts says so, naming the field
        parts = check_parts(parts)
        if not weights.spec.parts:
            raise InvalidMessage(f"--parts {args.parts} needs a model told the voices' "
                                 f"densities; {args.model} is not told them", field="parts",
                                 allowed="none (this model is not told them)")
    theme, about = theme_of(args, MODES.index(args.mode))
    notes = generate(weights, key, MODES.index(args.mode), args.density, args.bars,
                     seed=args.seed, register=args.register, beats_per_bar=args.beats_per_bar,
                     temperature=args.temperature, tonality=tonality,
                     critic=critic if args.critic_k else None, critic_k=args.critic_k,
                     critic_pick=args.critic_pick, critic_beats=args.critic_beats, theme=theme,
                     voices=voices, repetition=args.repetition, form=form, style=args.style,
                     parts=parts)
    if vocab.n_voices:
        write_ensemble_midi(notes, args.output, bpm=args.tempo, beats_per_bar=args.beats_per_bar,
                            ticks_per_beat=vocab.ticks_per_beat)
        counts = np.bincount(notes["channel"], minlength=vocab.n_voices)
        about += " (" + ", ".join(f"{VOICES[v]} {int(counts[v])}"
                                  for v in range(vocab.n_voices)) + ")"
    else:
        write_midi(notes, args.output, ticks_per_beat=vocab.ticks_per_beat, bpm=args.tempo)
    judged = f", critic {args.critic_k} drafts a beat ({args.critic_pick})" if args.critic_k else ""
    if args.repetition:
        judged += f", repetition {args.repetition:g} ({(form or Form()).shape})"
    print(f"wrote {args.output}: {len(notes)} notes, {args.bars} bars, "
          f"{KEY_NAMES[key]} {args.mode}, density {args.density:g}, tonality {tonality:g}{judged}"
          f"{about}")
    return 0


def theme_of(args, mode):
    """(what ``Request.theme`` takes, a note for the summary line) for ``--theme`` /
    ``--theme-notes`` at ``--variation``; (None, "") without a theme."""

    if args.theme is None and args.theme_notes is None:
        return None, ""
    if not (isinstance(args.variation, (int, float)) and
            VARIATION_RANGE[0] <= args.variation <= VARIATION_RANGE[1]):
        raise _bad("--variation", args.variation, "0..1 (0 close to the theme, 1 free)")

    motif = from_command_line(args.theme, args.theme_notes, "--theme-notes", "--theme")
    enc = ThemeEncoder(args.model)  # a plain model is refused here, with the way to a theme one
    vocab = Vocab.from_dict(enc.meta["vocab"])
    mu, _ = enc.encode(motif.tokens(vocab, mode))
    about = (f"; a variation ({args.variation:g}) of the theme in "
             f"{KEY_NAMES[motif.tonic]} {MODES[motif.mode]}, {motif.bars} bars")
    return enc.bias(latent(mu, args.variation), motif.bars), about
