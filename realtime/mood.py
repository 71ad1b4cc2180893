"""Conditioning: the game's mood turned into model controls and performance settings.

The mapping follows the music-emotion literature (Gabrielsson & Lindström 2010;
Eerola & Vuoskoski 2013): valence chooses the mode (major above zero, minor below)
and nudges the register; arousal drives tempo and note density; intensity drives
loudness.  Explicit ``key``/``tempo`` messages and preset values override the
mapping until the next message that sets the same thing.

``tonality`` (0 ``free`` .. 1 ``strict``) is the weight of a prior over the mode's scale
at sampling (``engine.controls.tonality_bias``); a session that sets none plays the
server's default (``DEFAULT_TONALITY``, or ``serve --tonality``).  ``max_note_beats`` is
a guard against notes held on and on, from the preset (``DEFAULT_MAX_NOTE_BEATS``
otherwise): note lengths come from the model, this only cuts off a runaway one.

``repetition`` (0 through-composed .. 1 a loop) is how much the music recalls its own bars
along the session's ``form`` (``engine.form.Form``: the preset's, else ``Form()``); a
session that sets none plays the server's default (``DEFAULT_REPETITION``, or ``serve
--repetition``).  The sampler follows both from the next bar line (``Runtime.set_form``).

``style`` (``engine.controls.STYLES``: game, baroque, classical, renaissance) asks a model
told styles for the texture of the collection it learned it from; None asks for none, the
mix of them all.  A model told no styles plays as it does.
"""
from dataclasses import dataclass, replace

from engine.controls import DEFAULT_TONALITY, KEY_NAMES, MODES
from engine.form import Form
# The longest a note sounds when the preset sets no ``max_note_beats``.
from engine.generate import DEFAULT_MAX_NOTE_BEATS

#: The repetition of sessions that set none, where the server is given none (``serve
#: --repetition``): through-composed, the model alone, as the server played before forms.
DEFAULT_REPETITION = 0.0


@dataclass(frozen=True)
class Mood:
    """What a session is asked to play; ``None`` means 'derive from the mood axes'."""

    valence: float = 0.3
    arousal: float = 0.4
    intensity: float = 0.5
    key: int = 0             # tonic pitch class
    mode: int | None = None  # 0 major, 1 minor
    bpm: float | None = None
    register: int = 0        # semitones from the model's usual register
    tonality: float | None = None        # None: the server's default
    max_note_beats: float | None = None  # None: DEFAULT_MAX_NOTE_BEATS
    repetition: float | None = None      # None: the server's default
    form: Form | None = None             # None: Form()
    style: str | None = None             # engine.controls.STYLES's; None: none, the mix

    def update(self, **fields):
        return replace(self, **{k: v for k, v in fields.items() if v is not None})


def mode_of(m: Mood):
    return m.mode if m.mode is not None else (0 if m.valence >= 0 else 1)


def density_of(m: Mood):
    """Onsets per beat asked of the model: 0.75 (still) to 4 (frantic)."""
    return 0.75 + 3.25 * m.arousal


def bpm_of(m: Mood):
    return m.bpm if m.bpm is not None else 64.0 + 88.0 * m.arousal


def register_of(m: Mood, base):
    """Mean pitch asked of the model: the model's own register, moved by the preset and
    up to four semitones by valence."""
    return base + m.register + 4.0 * m.valence


def tonality_of(m: Mood, default=DEFAULT_TONALITY):
    """The tonality prior's weight in effect: the session's, else the server's default."""
    return m.tonality if m.tonality is not None else default


def repetition_of(m: Mood, default=DEFAULT_REPETITION):
    """The repetition in effect: the session's, else the server's default."""
    return m.repetition if m.repetition is not None else default


def form_of(m: Mood):
    """The form the session follows: its preset's, else ``Form()``."""
    return m.form if m.form is not None else Form()


def max_note_beats_of(m: Mood):
    return m.max_note_beats if m.max_note_beats is not None else DEFAULT_MAX_NOTE_BEATS


def velocity_of(m: Mood):
    """Base MIDI velocity before the beat accent: 40 (soft) to 110 (loud)."""
    return 40.0 + 70.0 * m.intensity


def describe(m: Mood, base_register, default_tonality=DEFAULT_TONALITY,
             default_repetition=DEFAULT_REPETITION):
    """What the session plays, as asked: the key and register requested (what is heard,
    whatever the model composes in), the tonality and repetition in effect and the mood
    axes."""
    return dict(key=KEY_NAMES[m.key], mode=MODES[mode_of(m)], bpm=round(bpm_of(m), 1),
                density=round(density_of(m), 2), register=round(register_of(m, base_register), 1),
                velocity=round(velocity_of(m)), tonality=tonality_of(m, default_tonality),
                repetition=repetition_of(m, default_repetition), style=m.style,
                valence=m.valence, arousal=m.arousal, intensity=m.intensity)
