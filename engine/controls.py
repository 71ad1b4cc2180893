"""Control signals measured from the music itself, as Performance RNN's controls.

The model sees, at every step, a control vector describing the music around the
next event: key and mode (Krumhansl-Kessler key finding over a window), note
density (onsets per beat in the next few beats), register (mean pitch nearby) and
the position inside the beat.  Training measures them from real pieces, so no mood
labels are needed; at run time the server sets them from the game's mood.

The layout is one table, ``ControlSpec.layout``; ``vector`` builds a control vector
from named values, ``compute`` measures one per token of a piece.

In an ensemble (a vocabulary with voices, ``engine.ensemble``) the drums are no pitches:
key, mode and register are measured on the pitched voices only, and so is density
(onsets per beat of the pitched voices; see ``ControlSpec.compute``).  A model trained with
``--parts`` is also told each pitched voice's share of it (``ControlSpec.parts``, as
MIDI-GPT's per-track density).  ``to_tonic_c`` and ``parallel_mode`` leave drum notes where
they are, given ``drums``.
"""
from dataclasses import asdict, dataclass

import numpy as np

from engine.ensemble import DRUMS, PITCHED, VOICES
from engine.errors import InvalidMessage
from engine.vocab import NOTE_ON, TIME_SHIFT, Vocab

KEY_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
MODES = ("major", "minor")
#: Every spelling ``parse_key`` reads (the canonical case), for choices and error messages.
KEY_SPELLINGS = ("C", "C#", "Db", "D", "D#", "Eb", "E", "F", "F#", "Gb", "G", "G#", "Ab", "A",
                 "A#", "Bb", "B")
_LETTERS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}

#: The styles a model can be told to play (the ``style`` control, ``ostinato train
#: --styles``): by name, the ensemble collections (``engine.training.multipart``'s sources)
#: whose texture each asks for.  Measured, a model told them plays no closer to a collection
#: for being asked for it (engine/models/README.md, "Styles"); the shipped one is told none.
STYLES = {"game": ("freedoom",), "baroque": ("bach-parts",), "classical": ("quartets",),
          "renaissance": ("monteverdi",)}


def check_style(style):
    """``style`` if it is one of ``STYLES``; else InvalidMessage on field ``style``."""
    if not isinstance(style, str) or style not in STYLES:
        raise InvalidMessage(f"style {style!r} is not one of {', '.join(STYLES)}",
                             field="style", allowed=", ".join(STYLES))
    return style


def style_of(source):
    """The style whose collections include ``source`` (a dataset's source name), or None."""
    return next((name for name, sources in STYLES.items() if source in sources), None)


# Krumhansl & Kessler (1982) probe-tone profiles, tonic first.
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def parse_key(name):
    """Pitch class of a key name such as C, F#, Eb, bb (letter case ignored)."""
    if not isinstance(name, str) or not 1 <= len(name) <= 2 or name[0].upper() not in _LETTERS:
        raise InvalidMessage(f"key {name!r} is not a key name", field="key",
                             allowed="C, C#, Db, D, ..., Bb, B")
    pc = _LETTERS[name[0].upper()]
    if len(name) == 2:
        if name[1] not in "#b":
            raise InvalidMessage(f"key {name!r}: accidental must be # or b", field="key",
                                 allowed="C, C#, Db, D, ..., Bb, B")
        pc += 1 if name[1] == "#" else -1
    return pc % 12


# Scale degrees above the tonic: major, and minor with both sevenths (natural and the
# harmonic minor's leading tone), as the minor music the model learns from uses them.
SCALES = ({0, 2, 4, 5, 7, 9, 11}, {0, 2, 3, 5, 7, 8, 10, 11})
TONALITY_FREE, TONALITY_STRICT = 0.0, 1.0
TONALITY_RANGE = (TONALITY_FREE, TONALITY_STRICT)
#: The tonality prior of a request that asks for none, everywhere (server, generate,
#: eval): chosen by measurement (``ostinato eval``'s tonality sweep; engine/models/README.md, "Tonality").
DEFAULT_TONALITY = 0.5


def key_shift(tonic):
    """Semitones from the model's common tonic (C) to ``tonic``, at most a tritone:
    -6..5, so a key is reached by the smaller move and the register changes little.
    Data building moves each piece by ``-key_shift(its tonic)``; play moves the music
    back up by ``key_shift(requested tonic)``."""
    return (int(tonic) + 6) % 12 - 6


def model_key(key, register, key_relative):
    """Where a request for ``key`` (pitch class) at mean pitch ``register`` is composed:
    (semitones the sequencer transposes by, key control, register control).  A
    key-relative model (trained with every piece moved to C) composes in C at the
    register less the shift, so the music heard keeps the register asked for; an older
    model is asked for the key itself and nothing is transposed."""
    if not key_relative:
        return 0, int(key) % 12, float(register)
    k = key_shift(key)
    return k, 0, float(register) - k


#: What the tonal-centre prior gives the degrees that tell a major key from the neighbours it
#: was heard as (log-odds, in place of the probe-tone rating): the fourth degree is the tonic
#: of the subdominant's key and the sixth the relative minor's, so they lean away from the
#: centre; the leading tone, the one note the subdominant's key lacks, leans towards it.  In
#: the ensemble, music asked in D major was mostly misheard in G major or B minor; with these
#: music21 hears the key asked in 94.5 % of held-out requests (85.5 % with the ratings;
#: engine/models/README.md, "The key degrees").
MAJOR_KEY_DEGREES = {5: -0.4, 9: -0.4, 11: 0.3}


def _centre_profiles():
    """The tonal-centre prior's shape per mode: log of the Krumhansl-Kessler profile over
    its mean (tonic +0.6, fifth +0.4, third +0.2 ... in major), so a weight of 1 multiplies
    each pitch class's odds by its probe-tone rating relative to the average one; in major,
    ``MAJOR_KEY_DEGREES`` in place of the fourth, sixth and seventh degrees' ratings."""
    out = np.log(np.array([KK_MAJOR / KK_MAJOR.mean(), KK_MINOR / KK_MINOR.mean()]))
    for pc, v in MAJOR_KEY_DEGREES.items():
        out[0, pc] = v
    return out


CENTRE_PROFILES = _centre_profiles()


def tonality_bias(mode, tonality, centre=0.0):
    """Log-prior (12 floats, pitch classes relative to the tonic) added to the model's
    note-on logits: the mix ``(1 - t) + t * in_scale`` of a flat prior and the mode's
    scale, so 0 (``free``) changes nothing and 1 (``strict``) forbids notes outside it;
    plus ``centre`` times the mode's ``CENTRE_PROFILES`` (the tonal-centre prior: the
    tonic's triad made likelier than the rest of the scale, so the music stays in its key
    rather than drifting to a neighbour's; 0: off)."""
    t = float(tonality)
    if not TONALITY_FREE <= t <= TONALITY_STRICT:
        raise InvalidMessage(f"tonality must be in 0..1, got {tonality!r}", field="tonality",
                             allowed="0..1")
    scale = SCALES[int(mode)]
    out = np.zeros(12, np.float64)
    for pc in range(12):
        if pc not in scale:
            out[pc] = np.log(1.0 - t) if t < 1.0 else -np.inf
    return out + float(centre) * CENTRE_PROFILES[int(mode)]


def _profiles():
    """24 z-scored key profiles: rows 0-11 major on C..B, 12-23 minor."""
    rows = [np.roll(KK_MAJOR, k) for k in range(12)] + [np.roll(KK_MINOR, k) for k in range(12)]
    p = np.array(rows)
    p = p - p.mean(1, keepdims=True)
    return p / np.linalg.norm(p, axis=1, keepdims=True)


PROFILES = _profiles()


def key_scores(histograms):
    """Correlation of pitch-class histograms (..., 12) with the 24 key profiles."""
    h = np.asarray(histograms, np.float64)
    h = h - h.mean(-1, keepdims=True)
    norm = np.linalg.norm(h, axis=-1, keepdims=True)
    return (h / np.where(norm > 0, norm, 1.0)) @ PROFILES.T


def drum_mask(notes, ensemble):
    """Which notes are drums: in an ensemble piece (channel = voice id) those of the drums
    voice; in one line none (a kept channel-10 note is a pitch like any other there)."""
    if not ensemble:
        return np.zeros(len(notes), bool)
    return notes["channel"] == DRUMS


def pitched(notes, ensemble):
    """The notes that have a pitch: all of one line, an ensemble's without its drums."""
    return notes[~drum_mask(notes, ensemble)] if ensemble else notes


def find_key(notes):
    """(tonic pitch class, mode index, correlation) of notes by duration-weighted KK.
    Give it pitched notes (``pitched``): a drum's pitch is an instrument, not a key."""
    hist = np.zeros(12)
    np.add.at(hist, notes["pitch"] % 12, (notes["end"] - notes["start"]).astype(float))
    s = key_scores(hist)
    best = int(np.argmax(s))
    return best % 12, best // 12, float(s[best])


@dataclass(frozen=True)
class ControlSpec:
    """What the controls are and how they are measured."""

    ticks_per_beat: int = 12
    key_window_beats: int = 32
    density_window_beats: int = 4
    register_window_beats: int = 8
    density_scale: float = 0.25  # feature = onsets per beat * scale
    register_centre: float = 64.0
    register_scale: float = 1 / 12
    #: The styles the model was told, in the order of their block (``STYLES``'s names); none
    #: in a model trained without them, whose vector has no style block.
    styles: tuple = ()
    #: Whether the model is told each pitched voice's density (the ``parts`` block, after
    #: the style block: a flag that they are given, then the onsets per beat of the melody,
    #: bass and harmony over the next ``density_window_beats``, times ``density_scale``), as
    #: MIDI-GPT/MMM's per-track density.  All zero: not given, the voices share ``density``
    #: as the model learned from the windows trained without them.
    parts: bool = False

    def __post_init__(self):
        object.__setattr__(self, "styles", tuple(self.styles))  # a model file's JSON list

    @property
    def layout(self):
        """(name, width) of each block of the control vector, in order: the style block
        last, so a model told styles reads the other blocks where one without does."""
        out = (("key", 12), ("mode", 2), ("density", 1), ("register", 1),
               ("phase", self.ticks_per_beat))
        out += (("style", len(self.styles)),) if self.styles else ()
        return out + ((("parts", 1 + len(PITCHED)),) if self.parts else ())

    @property
    def size(self):
        return sum(w for _, w in self.layout)

    def slices(self):
        out, acc = {}, 0
        for name, w in self.layout:
            out[name] = slice(acc, acc + w)
            acc += w
        return out

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, d):
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    def vector(self, key, mode, density, register, phase=0, out=None, style=None, parts=None):
        """Control vector from values: key pitch class, mode (0 major, 1 minor),
        onsets per beat, mean MIDI pitch, tick inside the beat, ``style`` (a name of
        ``STYLES``; None: no style, the style block all zero, the mix the model learned from
        the windows trained without theirs; ignored by a model told no styles) and ``parts``
        (the melody's, bass's and harmony's onsets per beat; None: not given; ignored by a
        model not told them)."""
        v = np.zeros(self.size, np.float32) if out is None else out
        v[:] = 0
        s = self.slices()
        i = None if style is None else self.style_index(style)
        if i is not None:
            v[s["style"].start + i] = 1
        if parts is not None:
            parts = check_parts(parts)
            if self.parts:
                v[s["parts"]] = (1.0, *(x * self.density_scale for x in parts))
        v[s["key"].start + int(key) % 12] = 1
        v[s["mode"].start + int(mode)] = 1
        v[s["density"].start] = density * self.density_scale
        v[s["register"].start] = (register - self.register_centre) * self.register_scale
        v[s["phase"].start + int(phase) % self.ticks_per_beat] = 1
        return v

    def style_index(self, style):
        """The place of ``style`` in this model's style block; InvalidMessage on field
        ``style`` naming ``STYLES``."""
        check_style(style)
        return self.styles.index(style) if style in self.styles else None

    def request(self, key, mode, density, register, tonality, key_relative, centre=0.0,
                style=None, parts=None):
        """What the model is asked for a request (tonic, mode, onsets per beat, mean pitch,
        tonality; the tonal-centre prior's weight; the style; the voices' densities):
        (control vector, semitones
        the sequencer transposes its notes by,
        tonality prior per pitch class in the model's pitch space).  See ``model_key``:
        the prior is the mode's scale on the tonic the model composes in."""
        shift, key_ctl, reg_ctl = model_key(key, register, key_relative)
        return (self.vector(key_ctl, mode, density, reg_ctl, style=style, parts=parts), shift,
                np.roll(tonality_bias(mode, tonality, centre), key_ctl))

    def describe(self, v):
        """Named values back from a control vector (inverse of ``vector``)."""
        s = self.slices()
        out = dict(
            key=int(np.argmax(v[s["key"]])), mode=int(np.argmax(v[s["mode"]])),
            density=float(v[s["density"]][0] / self.density_scale),
            register=float(v[s["register"]][0] / self.register_scale + self.register_centre),
            phase=int(np.argmax(v[s["phase"]])))
        if self.styles:  # the style asked (None: none), in a model told styles
            block = v[s["style"]]
            out["style"] = self.styles[int(np.argmax(block))] if block.max() > 0 else None
        if self.parts:  # the voices' densities asked (None: not given)
            block = v[s["parts"]]
            out["parts"] = (tuple(float(x / self.density_scale) for x in block[1:])
                            if block[0] > 0 else None)
        return out

    def transpose(self, controls, k):
        """Controls of the same piece transposed by k semitones."""
        s = self.slices()
        out = controls.copy()
        out[..., s["key"]] = np.roll(controls[..., s["key"]], k, axis=-1)
        out[..., s["register"]] += k * self.register_scale
        return out

    def compute(self, tokens, vocab=None):
        """One control vector per token: the controls for predicting the next token.

        Step t sees token t and the controls measured at the time reached after it
        (the time of token t+1): the key of the surrounding ``key_window_beats``,
        the onsets per beat over the next ``density_window_beats``, the mean pitch
        of onsets within ``register_window_beats`` around it, and the tick phase.

        With voices (``vocab.n_voices``), every measure is of the pitched voices: the
        drums have no key or register, and density counts pitched onsets too, so that
        the density a mood asks for means the same whether the drums play or not (the
        layers switch them on and off) and a hi-hat's eighths do not swamp it (a third
        of the Freedoom notes are drums).  Without pitched notes: C major, density 0,
        the register at its centre.
        """
        vocab = vocab or Vocab(ticks_per_beat=self.ticks_per_beat)
        tpb = self.ticks_per_beat
        tokens = np.asarray(tokens)
        kinds, values = vocab.tables()
        shift = np.where(kinds[tokens] == TIME_SHIFT, values[tokens], 0)
        pos = np.cumsum(shift)  # time after each token
        notes = pitched(vocab.decode(tokens), vocab.n_voices > DRUMS)
        out = np.zeros((len(tokens), self.size), np.float32)
        s = self.slices()
        out[np.arange(len(tokens)), s["phase"].start + pos % tpb] = 1
        if len(notes) == 0:
            out[:, s["key"].start] = 1
            out[:, s["mode"].start] = 1
            return out
        onsets = notes["start"]
        # key: duration-weighted pitch-class histogram per beat, summed over the window
        n_beats = int(max(pos[-1], notes["end"].max()) // tpb) + 2
        per_beat = np.zeros((n_beats, 12))
        np.add.at(per_beat, (onsets // tpb, notes["pitch"] % 12),
                  (notes["end"] - notes["start"]).astype(float))
        cum = np.vstack([np.zeros((1, 12)), np.cumsum(per_beat, 0)])
        half = self.key_window_beats // 2
        b = np.arange(n_beats)
        width = min(2 * half, n_beats)  # short pieces: the window is the whole piece
        lo = np.clip(b - half, 0, n_beats - width)
        hi = lo + width
        best = np.argmax(key_scores(cum[hi] - cum[lo]), axis=1)
        beat = np.minimum(pos // tpb, n_beats - 1)
        out[np.arange(len(tokens)), s["key"].start + best[beat] % 12] = 1
        out[np.arange(len(tokens)), s["mode"].start + best[beat] // 12] = 1
        # density: onsets in [pos, pos + W)
        w = self.density_window_beats * tpb
        cnt = np.searchsorted(onsets, pos + w, "left") - np.searchsorted(onsets, pos, "left")
        out[:, s["density"].start] = cnt / self.density_window_beats * self.density_scale
        if self.parts:
            out[:, s["parts"]] = self.part_densities(tokens, vocab)
        # register: mean onset pitch within +-W/2, else the piece's mean
        rw = self.register_window_beats * tpb // 2
        csum = np.concatenate([[0.0], np.cumsum(notes["pitch"].astype(float))])
        a = np.searchsorted(onsets, pos - rw, "left")
        z = np.searchsorted(onsets, pos + rw, "left")
        mean = np.where(z > a, (csum[z] - csum[a]) / np.maximum(z - a, 1),
                        notes["pitch"].mean())
        out[:, s["register"].start] = (mean - self.register_centre) * self.register_scale
        return out


    def part_densities(self, tokens, vocab):
        """The ``parts`` block of each token's controls (``compute``'s convention: measured
        from the time reached after the token): the flag 1, then per pitched voice its
        note-ons over the next ``density_window_beats`` per beat, times ``density_scale``.
        A line without voices counts its notes as the melody's."""
        tokens = np.asarray(tokens)
        kinds, values = vocab.tables()
        k = kinds[tokens]
        pos = np.cumsum(np.where(k == TIME_SHIFT, values[tokens], 0))
        voice = vocab.voices_of(tokens) if vocab.n_voices > DRUMS else np.zeros(len(tokens))
        w = self.density_window_beats * self.ticks_per_beat
        out = np.zeros((len(tokens), 1 + len(PITCHED)), np.float32)
        out[:, 0] = 1
        for j, v in enumerate(PITCHED):
            onsets = pos[(k == NOTE_ON) & (voice == v)]  # in time order, as the tokens
            cnt = np.searchsorted(onsets, pos + w, "left") - np.searchsorted(onsets, pos, "left")
            out[:, 1 + j] = cnt / self.density_window_beats * self.density_scale
        return out


#: The most onsets per beat a voice's density may ask for (a 32nd-note run).
MAX_PART_DENSITY = 8.0


def check_parts(parts):
    """``parts`` as a tuple of floats, one per pitched voice (melody, bass, harmony: onsets
    per beat, 0..``MAX_PART_DENSITY``); else InvalidMessage on field ``parts``."""
    names = ", ".join(VOICES[v] for v in PITCHED)
    allowed = f"{len(PITCHED)} onsets per beat ({names}), each 0..{MAX_PART_DENSITY:g}"
    try:
        items = list(parts) if not isinstance(parts, (str, bytes, dict)) else None
        out = tuple(float(x) for x in items)
    except (TypeError, ValueError):
        raise InvalidMessage(f"parts {parts!r} is not {allowed}", field="parts",
                             allowed=allowed) from None
    if len(out) != len(PITCHED) or any(isinstance(x, (bool, str)) for x in items) or \
            not all(0 <= x <= MAX_PART_DENSITY for x in out):
        raise InvalidMessage(f"parts {parts!r} is not {allowed}", field="parts", allowed=allowed)
    return out


# Parallel-mode copy by scale degree above C: major to harmonic minor (E->Eb, A->Ab, the
# leading tone kept) and minor to major (Eb->E, Ab->A, Bb->B); other pitch classes stay.
TO_MINOR = np.array([0, 1, 2, 3, 3, 5, 6, 7, 8, 8, 10, 11])
TO_MAJOR = np.array([0, 1, 2, 4, 4, 5, 6, 7, 9, 9, 11, 11])


def to_tonic_c(notes, tonic, ensemble=False):
    """The notes moved so that ``tonic`` becomes C, by at most a tritone (an octave
    further where a pitch would leave 0..127).  In an ``ensemble`` piece the drums stay
    (their pitch is an instrument) and only the pitched notes decide the octave."""
    move_it = ~drum_mask(notes, ensemble)
    out = notes.copy()
    if not move_it.any():
        return out
    k = -key_shift(tonic)
    p = notes["pitch"][move_it].astype(np.int64)
    for move in (k, k + 12, k - 12):
        if p.min() + move >= 0 and p.max() + move <= 127:
            k = move
            break
    out["pitch"][move_it] = p + k
    return out


def parallel_mode(notes, mode, ensemble=False):
    """Notes in C of ``mode`` (0 major, 1 minor) mapped by scale degree to the other mode;
    an ``ensemble`` piece's drums stay as they are."""
    table = TO_MINOR if mode == 0 else TO_MAJOR
    move_it = ~drum_mask(notes, ensemble)
    p = notes["pitch"][move_it].astype(np.int64)
    out = notes.copy()
    out["pitch"][move_it] = p - p % 12 + table[p % 12]
    return out
