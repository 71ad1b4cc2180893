"""Stingers: where one sounds (``place``, ``place_notes``: in the session's key, over the
harmony sounding, above its melody) and its cooldown: "don't play this again for N beats",
per session.

A game fires `hit` on every hit; at 140 bpm in a fight that can be several a beat, and a
stinger repeated on every beat stops being an accent.  states.toml gives a stinger
``min_interval_beats`` (0: no cooldown) and ``queue``: a stinger asked to start sooner than
that after its last start in the same session is dropped (``"drop"``) or played at the first
point of its grid once the cooldown is over (``"queue"``; a request made while one is
already waiting to start joins it, so a burst queues one stinger, not a backlog).  ``Cooldown`` is that
bookkeeping, apart from the sequencer: stingers are placed at a known position and never
rewound, so remembering each one's last starts is enough.  The one thing that moves them is
a stop or pause, which drops every stinger not yet begun (``cancel``): a start that never
sounded must neither hold a cooldown nor be the one a request is told it "joins".
"""
import math
from dataclasses import dataclass
from fractions import Fraction

from engine.controls import MODES

from realtime import protocol
from realtime.layers import STINGER_CHANNEL
from realtime.mood import mode_of, register_of, velocity_of

KEEP = 8  # starts remembered per session and stinger


@dataclass(frozen=True)
class Decision:
    """What ``Cooldown.decide`` says of a request: ``play`` it at ``at``, or (``play``
    False) drop it; ``at`` is then the first point of its grid it could have started on
    (for a request joining a queued one, that one's start).
    ``ready`` is the position the cooldown ends (None: it had none running), ``queued``
    whether ``at`` is later than asked, ``reason`` why it is not played as asked."""
    play: bool
    at: int | float
    ready: int | float | None = None
    queued: bool = False
    reason: str | None = None


class Cooldown:
    """Per session and stinger, the positions its last starts were given, and the decision
    for the next request.

    ``stingers``: name -> a states.toml stinger (``load_states``'s: ``min_interval_beats``
    and ``queue`` are read).  Positions are in ticks of ``ticks_per_beat`` per beat (1:
    beats); pass integer ticks for exact arithmetic.  The interval in ticks is rounded up,
    so a stinger never starts sooner than ``min_interval_beats`` after its last start.
    Not thread-safe: the caller holds the lock it holds for the session.
    """

    def __init__(self, stingers, ticks_per_beat=1):
        self.ticks_per_beat = ticks_per_beat
        self.interval, self.queue = {}, {}
        for name, s in stingers.items():
            self.interval[name], self.queue[name] = self.policy(s)
        # session -> {stinger name -> positions of its last starts given, oldest first}
        self.last = {}

    def policy(self, stinger):
        """(interval in ticks, rounded up; queue or not) of a stinger's
        ``min_interval_beats`` and ``queue`` (left out: 0 and "drop")."""
        interval = math.ceil(Fraction(stinger.get("min_interval_beats", 0)) * self.ticks_per_beat)
        return interval, stinger.get("queue", "drop") == "queue"

    def decide(self, session, name, at, grid, stinger=None):
        """The decision for stinger ``name`` asked to start in ``session`` at grid position
        ``at`` (the transition point its request asked for), on a grid of step ``grid``
        (1 beat for "beat", a bar for "bar", ...; 0 for "now": no grid, the cooldown's end
        itself is its next point).  ``stinger``: the policy (``min_interval_beats``,
        ``queue``) of one ``stingers`` lacks, such as a message's ``notes`` stinger (its
        ``name`` is then the caller's key for it); None: ``stingers``' for ``name``.  A
        played decision is remembered as the stinger's last start; a dropped one changes
        nothing.  KeyError for a stinger ``stingers`` lacks and no ``stinger`` given."""
        interval, queue = self.policy(stinger) if stinger is not None else \
            (self.interval[name], self.queue[name])
        starts = self.last.setdefault(session, {}).setdefault(name, [])
        last = starts[-1] if starts else None
        if last is None or interval == 0 or at >= last + interval:
            self._given(starts, at)
            return Decision(True, at)
        ready = last + interval
        first = ready if grid <= 0 else at + grid * -((at - ready) // grid)  # ceil, exact for ints
        beats = interval / self.ticks_per_beat
        if queue and last >= at:
            # one is already waiting to start at or after the point asked: this request
            # joins it (a burst of requests queues one stinger, not a backlog of them)
            return Decision(False, last, ready, False, f"{name} already waits to start at beat "
                            f"{last / self.ticks_per_beat:g}")
        if queue:
            self._given(starts, first)
            return Decision(True, first, ready, True,
                            f"{name} waits out its cooldown of {beats:g} beats")
        return Decision(False, first, ready, False,
                        f"{name} is cooling down: at most once every {beats:g} beats")

    @staticmethod
    def _given(starts, at):
        """Remember a start given (each is later than the one before: a request is played
        only at or after the last start's cooldown); the last few are enough to fall back
        on when ``cancel`` drops the later ones."""
        starts.append(at)
        del starts[:-KEEP]

    def cancel(self, session, after):
        """The stingers of ``session`` that would start after position ``after`` were
        dropped before they sounded (a stop or pause): forget those starts, so the start
        before them holds the cooldown again."""
        for starts in self.last.get(session, {}).values():
            while starts and starts[-1] > after:
                starts.pop()

    def forget(self, session):
        """Drop what ``session`` remembers (it closed: its id may be used again)."""
        self.last.pop(session, None)


def place(music, sess, stinger, tick):
    """Play ``stinger`` (a states.toml stinger) over the session from ``tick``, in its
    key, over the harmony sounding (its degree 1 on the chord's root), above its
    melody's register; returns the pitches."""
    s, mood = sess.slot, sess.mood
    mode = MODES[mode_of(mood)]
    tonic, step = _frame(music, sess)
    pitches = [min(127, max(0, tonic + protocol.degree_to_semitones(d + step, mode)))
               for d in stinger["degrees"]]
    durs = [max(1, round(d * music.tpb)) for d in stinger["durations"]]
    music.seq.add_stinger(s, tick, pitches, durs, stinger["velocity"], STINGER_CHANNEL)
    return pitches


def place_notes(music, sess, motif, tick):
    """Play ``motif`` (an ``engine.motif.Motif``: a stinger sent as notes) from
    ``tick`` as ``place`` plays a named one: moved to the session's key and mode
    by scale degree, over the harmony, above the melody; returns the pitches."""
    mode = mode_of(sess.mood)
    tonic, step = _frame(music, sess)
    rel = motif.key_relative(mode)  # in C, in the session's mode
    scale = [protocol.degree_to_semitones(d, MODES[mode]) for d in range(1, 8)]
    lift = protocol.degree_to_semitones(1 + step, MODES[mode])
    pitches = []
    base = 12 * (int(rel["pitch"].min()) // 12)  # its lowest octave on the tonic's
    for p in rel["pitch"]:
        octave, pc = divmod(int(p) - base, 12)
        shifted = (protocol.degree_to_semitones(scale.index(pc) + 1 + step, MODES[mode])
                   if pc in scale else pc + lift)
        pitches.append(min(127, max(0, tonic + 12 * octave + shifted)))
    starts = [int(t) for t in rel["start"]]
    durs = [max(1, int(e - t)) for t, e in zip(rel["start"], rel["end"])]
    vel = int(min(127, velocity_of(sess.mood) + 10))
    music.seq.add_stinger(sess.slot, tick, pitches, durs, vel, STINGER_CHANNEL, starts)
    return pitches


def _frame(music, sess):
    """(the tonic a stinger's degree 1 sits on: the key's, above the melody's register;
    the scale steps to the root of the harmony sounding)."""
    mood = sess.mood
    reg = register_of(mood, music.base_register) + 5
    tonic = mood.key + 12 * round((reg - mood.key) / 12)
    return tonic, music.voicing.chord_step(sess, mood.key, MODES[mode_of(mood)])
