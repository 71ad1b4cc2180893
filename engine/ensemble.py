"""The voices of the ensemble: melody, bass, harmony and drums.

One definition of each voice: its id (the value a note's ``channel`` field holds in an
ensemble piece, and the value of a voice token), its name (as the protocol, presets and
model cards spell it), and the defaults a preset starts from: a General MIDI program, a
MIDI channel (drums on channel 10, General MIDI's percussion channel) and a register
(the mean MIDI pitch it plays around; none for drums, whose pitches are instruments).

Drums are never transposed and never count towards key, mode, register or tonality:
``PITCHED`` lists the voices that do.
"""
from dataclasses import dataclass

import mido

from engine.errors import InvalidMessage
from engine.notes import DRUM_CHANNEL

MELODY, BASS, HARMONY, DRUMS = range(4)
VOICES = ("melody", "bass", "harmony", "drums")
PITCHED = (MELODY, BASS, HARMONY)


@dataclass(frozen=True)
class Voice:
    """A voice's settings: GM program (0-based), MIDI channel (0-based), the register it
    plays around (MIDI pitch; None for drums), and for a server: ``octave``, octaves it is
    moved by on the way out (drums never move); ``enter``, the level of the mood
    ((intensity + arousal) / 2, 0..1) from which layering brings it in; ``presence``, a
    log-odds bias the sampler adds to the voice's token, so that a voice the model would
    seldom name (drums in most of its data) is heard when it is asked for."""

    name: str
    program: int
    channel: int
    register: float | None
    octave: int = 0
    enter: float = 0.0
    presence: float = 0.0


#: The defaults, by voice id.  Programs: Flute, Fingered Bass, String Ensemble 1 and the
#: standard kit; channels 1, 2, 3 and 10 as a DAW numbers them.  Drums' presence 1: of the
#: biases tried, the one whose weakest voice sounds in most combat bars (every voice in 72 to
#: 82 % of them; drums in 35 % at 0, and at 2 the harmony in 57 %), measured by
#: ``python -m engine.evaluation.presence --biases 0,1,1.5,2`` on the shipped ensemble.
DEFAULTS = (
    Voice("melody", program=73, channel=0, register=72.0, enter=0.0),
    Voice("bass", program=33, channel=1, register=40.0, enter=0.2),
    Voice("harmony", program=48, channel=2, register=60.0, enter=0.0),
    Voice("drums", program=0, channel=DRUM_CHANNEL, register=None, enter=0.55, presence=1.0),
)


#: The consonance prior's weight an ensemble plays at (``Runtime.consonance``: log-odds
#: taken from a pitched note-on per held pitch class it clashes with).  1: of 0, 1 and 2, the
#: weight whose fresh critic AUC was lowest on the validation pieces (0.74 against 0.77 and
#: 0.81; ``python -m engine.evaluation.ensemble --source heldout --splits valid
#: --consonance C``); the model card has its test figures.
CONSONANCE = 1.0
#: The root prior's weight (``Runtime.rooting``: log-odds a bass note-on loses for each
#: point it roots what the voices above hold less well than the best root does).  Off: on the
#: validation pieces it put the bass on the root (54 % -> 74 % at 2) but the fresh critic
#: told the music apart more easily at every weight tried (0.72 -> 0.76..0.83) and the key
#: blurred (75 % -> 45 %); the model card has the table.
ROOTING = 0.0
#: The inversion prior's weight (``Runtime.inversion``: log-odds a melody or harmony note-on
#: loses for each point the sounding bass note, as the root of what would then sound, falls
#: short of the best root: the upper voices build root-position chords on the bass).  0.75:
#: of 0, 0.5, 0.75, 1 and 2, the smallest weight whose validation pieces meet both the key
#: and the bass-on-root targets with the fresh critic within its interval of none (10 seeds:
#: bass on the root 59.5 % -> 64.7 %, key 94.8 % -> 96.7 %, critic 0.63 -> 0.64); the model
#: card has the table and the test pieces' figures.
INVERSION = 0.75
#: The voice-order prior's weight (``Runtime.ordering``: log-odds a pitched note-on loses
#: for each other voice it would cross: the bass under the harmony under the melody).  2: of
#: 1, 2 and 4 (with the centre prior at 1), the weight whose fresh critic AUC was lowest on
#: the validation pieces (0.69 against 0.70 and 0.74); voices crossed 11 % -> 2 % (real: 3 %).
ORDERING = 2.0
#: The line prior's weight (``Runtime.smoothing``: log-odds a melody or bass note-on loses
#: per semitone it leaps beyond a whole step from the voice's last note).  0.2: of 0, 0.1,
#: 0.2, 0.4 and 0.8 (centre 1, voice order 2), the weight whose fresh critic AUC was lowest
#: on the validation pieces over 10 seeds (0.63 against 0.71, 0.65, 0.70, 0.79): the
#: generated lines leapt more often than real ones, the critic's strongest feature.
SMOOTHING = 0.2
#: The sampler's priors an ensemble plays at, by the ``Runtime`` array that holds each
#: (``Runtime.set_priors``): one place for the server, ``generate`` and the evaluations.
#: The lead-in's weight (``Runtime.leading``: log-odds a melody or bass note-on loses per
#: semitone it lies beyond a whole step from the first pitch of the bar its voice recalls
#: next, in the bar before it; ``engine.sampler.plan.lead_in``).  Off: at the game presets'
#: form, 0.6 halved the melody's leaps across bar lines (41 % -> 28 %; real music 14 %) but
#: the fresh critic told the music apart more easily (0.80 -> 0.83, 8 seeds); the model
#: card has the figures.
LEADING = 0.0
#: The join rule's limit (``Runtime.joining``: the most semitones the melody may leap into a
#: bar it recalls; a recall that would leap further is dropped and the melody composes that
#: bar new; ``engine.sampler.plan._joins``; 0: off).
JOINING = 0.0
PRIORS = dict(consonance=CONSONANCE, rooting=ROOTING, inversion=INVERSION, ordering=ORDERING,
              smoothing=SMOOTHING, leading=LEADING, joining=JOINING)
#: The tonal-centre prior's weight an ensemble plays at (``engine.controls.tonality_bias``:
#: each pitch class's odds times its Krumhansl-Kessler rating over the mean, to this power).
#: 1: on the validation pieces (10 seeds, voice order at 2) 0.5 and 1 tie on the critic
#: (0.69, 0.70; 1.5 and 2: 0.76, 0.77) and 1 is in its key more often (84 % against 78 %;
#: none 75 %); the model card has the table.
CENTRE = 1.0
#: The sampler's temperature a server plays at (``ServerConfig.temperature``; any model),
#: ``ostinato generate`` and every evaluation of the sampler that plays.  1, the model's own
#: distribution: on the validation pieces (10 seeds, the priors above, through-composed)
#: 0.8, 0.9, 0.95 and 1 tie on the fresh critic (0.66, 0.63, 0.62, 0.64, every interval
#: about +-0.03) and on the key (94.3, 94.8, 93.8, 96.7 %); the model card has the table.
TEMPERATURE = 1.0


def voice_id(name):
    """The id of a voice name; InvalidMessage on field ``voice`` naming the voices."""
    try:
        return VOICES.index(name)
    except ValueError:
        raise InvalidMessage(f"voice {name!r} is not one of {', '.join(VOICES)}",
                             field="voice", allowed=list(VOICES)) from None


def write_ensemble_midi(notes, path, bpm=120.0, beats_per_bar=4, ticks_per_beat=12,
                        ppq=480):
    """An ensemble (``channel`` = voice id) to a type 1 .mid: a tempo track, then one
    track per voice that has notes, named after the voice, on its MIDI channel from
    ``engine.ensemble.DEFAULTS`` with its program (drums on channel 10, no program)."""
    scale = ppq / ticks_per_beat
    mid = mido.MidiFile(type=1, ticks_per_beat=ppq)
    meta = mido.MidiTrack()
    meta.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=0))
    meta.append(mido.MetaMessage("time_signature", numerator=beats_per_bar, denominator=4,
                                 time=0))
    mid.tracks.append(meta)
    for v in sorted(set(notes["channel"].tolist())):
        d = DEFAULTS[v]
        track = mido.MidiTrack()
        track.append(mido.MetaMessage("track_name", name=d.name, time=0))
        if d.channel != DRUM_CHANNEL:
            track.append(mido.Message("program_change", channel=d.channel, program=d.program,
                                      time=0))
        events = []
        for n in notes[notes["channel"] == v]:
            events.append((int(round(n["end"] * scale)), 0, int(n["pitch"]), 0))
            events.append((int(round(n["start"] * scale)), 1, int(n["pitch"]), int(n["velocity"])))
        events.sort()
        last = 0
        for t, on, p, vel in events:
            track.append(mido.Message("note_on" if on else "note_off", channel=d.channel, note=p,
                                      velocity=vel, time=t - last))
            last = t
        mid.tracks.append(track)
    mid.save(path)
    return mid
