"""The music's position for the game: beat, bar and phrase events, and the cues it places.

A game schedules its own work on the music: the crosshair flashes on the beat, the boss
door opens on a downbeat, the cutscene waits for the phrase (Wwise's music callbacks,
FMOD's timeline beats and markers).  ``Sync`` sends, for every session, a ``beat`` event
at each beat, a ``bar`` event at each bar line and a ``phrase`` event where a phrase of
the session's form begins, each stamped with the time the sequencer gives that tick
(``Sequencer.tick_ns``: the clock and tempo map its notes are placed by, so a note on the
beat and the beat's event carry the same ``t_ns``).  It also keeps each session's cues,
named positions a game places (``cue``), and announces each as its position plays.

The player calls ``due`` at each look with the horizon it collects notes to, so these
events go out as notes do: at their time, or that lead early to an output that
schedules by ``t_ns`` (``serve --events-ahead``).  The beat and bar of a session are
counted from its tick 0; its phrases are ``form.bars`` bars long (``realtime.mood.form_of``).
"""
import bisect
import math

import numpy as np

from realtime.mood import form_of
from realtime.protocol import MAX_CUES, reject

NONE = -1


class Sync:
    """Beat, bar and phrase events and cues of ``max_sessions`` slots of ``seq`` (a
    ``realtime.sequencer.Sequencer``), published through ``engine`` (``Engine.at_time``)."""

    def __init__(self, seq, engine, max_sessions):
        self.seq, self.engine = seq, engine
        self.tpb = seq.tpb
        self.bar_ticks = seq.tpb * seq.beats_per_bar
        self.next = np.full(max_sessions, NONE, np.int64)  # the next beat tick to announce
        self.when = np.full(max_sessions, math.inf)        # ... and when it plays (ns)
        self.cues = [[] for _ in range(max_sessions)]      # sorted [(tick, name)] per slot
        # cues announced (an output with a lead gets them early) but perhaps not played
        # yet: a transition may still name them until the playhead passes them
        self.heard = [[] for _ in range(max_sessions)]
        self._version = -1  # the tempo map ``when`` was computed under (``seq.version``)
        self._cue_at = None  # when the first cue of any session plays (None: to compute)

    # -- a session's grid ------------------------------------------------------------
    def start(self, s, tick):
        """Session s plays from ``tick``: its beats are announced from the first one at or
        after it.  Its cues stay (a "now" change or a restart keeps the game's markers)."""
        self.next[s] = -(-int(tick) // self.tpb) * self.tpb
        self.when[s] = self.seq.tick_ns(s, self.next[s])

    def stop(self, s):
        """Session s closed: nothing more of it is announced, its cues are gone."""
        self.next[s] = NONE
        self.when[s] = math.inf
        self.cues[s] = []
        self.heard[s] = []
        self._cue_at = None

    def position(self, tick, form):
        """(bar, beat in bar, phrase, bar in phrase) of ``tick`` (an int) in ``form``."""
        bar, in_bar = divmod(int(tick), self.bar_ticks)
        phrase, in_phrase = divmod(bar, form.bars)
        return bar, in_bar // self.tpb, phrase, in_phrase

    # -- cues ------------------------------------------------------------------------
    def place(self, s, name, tick):
        """Cue ``name`` at ``tick`` of session s (replacing a cue of that name)."""
        cues = [c for c in self.cues[s] if c[1] != name]
        self.heard[s] = [c for c in self.heard[s] if c[1] != name]
        if len(cues) >= MAX_CUES:
            raise reject("out_of_range", f"session has {MAX_CUES} cues waiting; a cue is "
                         "forgotten once it plays", "name", f"at most {MAX_CUES} cues pending")
        bisect.insort(cues, (int(tick), name))
        self.cues[s] = cues
        self._cue_at = None

    def waiting(self, s, head):
        """Session s's cues not yet played at tick ``head`` (its playhead): [(tick, name)]."""
        self.heard[s] = [c for c in self.heard[s] if c[0] >= head]
        return self.heard[s] + self.cues[s]

    def cue(self, s, name, head, field="transition"):
        """The tick of session s's cue ``name`` not yet played at tick ``head`` (announced
        or not); InvalidMessage naming ``field`` and the cues there are when there is
        none (never placed, or already played)."""
        waiting = self.waiting(s, head)
        for tick, cue in waiting:
            if cue == name:
                return tick
        names = sorted(c[1] for c in waiting)
        raise reject("bad_choice", f"{field}: the session has no cue {name!r} waiting (a cue "
                     "is placed with the `cue` message and forgotten once it plays); waiting: "
                     f"{', '.join(names) or 'none'}", field,
                     [f"cue:{n}" for n in names] or "a cue placed with `cue`")

    # -- the player's look -------------------------------------------------------------
    def due(self, horizon, sessions, frozen):
        """Publish every beat, bar, phrase and cue event due by ``horizon`` (ns) of the
        sessions (``{name: Session}``) not ``frozen``; returns when the next one is due."""
        seq = self.seq
        if seq.version != self._version:  # a tempo change moved the times
            self._version = seq.version
            for s in np.flatnonzero(self.next >= 0):
                self.when[s] = seq.tick_ns(s, self.next[s])
            self._cue_at = None
        if self._cue_at is None:
            self._cue_at = min((seq.tick_ns(s, c[0][0]) for s, c in enumerate(self.cues) if c),
                               default=math.inf)
        first = min(float(self.when.min()), self._cue_at)
        if first > horizon:  # the player looks once per message: most looks end here
            return first
        nxt = math.inf
        for sess in sessions.values():
            s = sess.slot
            if frozen[s] or self.next[s] < 0:
                continue
            while self.when[s] <= horizon:
                self._announce(sess, int(self.next[s]), int(self.when[s]))
                self.next[s] += self.tpb
                self.when[s] = seq.tick_ns(s, self.next[s])
            nxt = min(nxt, self.when[s])
            cues = self.cues[s]
            while cues:
                t = seq.tick_ns(s, cues[0][0])
                if t > horizon:
                    nxt = min(nxt, t)
                    break
                tick, name = cues.pop(0)
                self.heard[s] = (self.heard[s] + [(tick, name)])[-MAX_CUES:]
                self._cue_at = None
                self.engine.at_time(int(t), "publish", "cue", session=s, t_ns=int(t),
                                    beat=tick / self.tpb, name=name)
        return nxt

    def _announce(self, sess, tick, t):
        s, form = sess.slot, form_of(sess.mood)
        bar, in_bar, phrase, in_phrase = self.position(tick, form)
        fields = dict(session=s, t_ns=t, beat=tick / self.tpb, bar=bar, beat_in_bar=in_bar,
                      phrase=phrase, bar_in_phrase=in_phrase,
                      bpm=round(float(self.seq.bpm_at(s, tick)), 3))
        at = self.engine.at_time
        at(t, "publish", "beat", **fields)
        if in_bar == 0:
            at(t, "publish", "bar", **fields)
            if in_phrase == 0:
                at(t, "publish", "phrase", bars=form.bars, **fields)

