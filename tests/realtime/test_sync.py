"""Playing along with the game (issue 30): beat, bar and phrase events on the notes' clock,
cues, ``position``, transitions at the phrase and on N-bar grids, pickups.

Driven by hand on a virtual clock (as the ensemble tests are), so each run is the same
music and a storm of requests costs no real time; what the outputs receive is checked.
"""
import random

import numpy as np
import pytest

from engine import DEFAULT_ENSEMBLE
from engine.controls import KEY_NAMES, MODES
from engine.errors import InvalidMessage
from engine.notes import DRUM_CHANNEL
from realtime import protocol
from realtime.layers import STINGER_CHANNEL
from realtime.outputs import BasePort
from realtime.server import Server, ServerConfig
from realtime.timing import ManualClock

from tests.realtime.test_server_keys import CLOCK_START_NS


class Tap(BasePort):
    """Every channel message (status, data1, data2, t_ns, beat, session) and every marker
    (type, fields) in the order the outputs get them."""

    def __init__(self):
        super().__init__()
        self.msgs, self.events = [], []

    def _send(self, status, data1, data2, t_ns, beat, session):
        self.msgs.append((status, data1, data2, t_ns, beat, session))

    def publish(self, type, **fields):
        self.events.append((type, fields))

    def of(self, kind):
        return [f for t, f in self.events if t == kind]


class EarlyTap(Tap):
    """A tap that asks for its messages 40 ms early, as ``serve --events-ahead 40`` does."""

    lead_ns = 40_000_000


class Band:
    """A server on the shipped ensemble, on a virtual clock, played by hand."""

    def __init__(self, tap=None, model=DEFAULT_ENSEMBLE, **cfg):
        self.tap = tap or Tap()
        self.clock = ManualClock(CLOCK_START_NS)
        self.srv = Server(ServerConfig(model=str(model), spin_us=0.0, **cfg),
                          [self.tap], control=False, clock=self.clock)
        self.srv.restart(self.clock.t)
        self.slot = self.srv.sessions["main"].slot

    def call(self, type, **fields):
        return self.srv.call(type, **fields)

    def beat(self):
        return self.srv.seq.ns_tick(self.slot, self.clock.t) / self.srv.tpb

    def play(self, beats, step_ns=40_000_000):
        end = int(self.srv.seq.tick_ns(self.slot, (self.beat() + beats) * self.srv.tpb))
        while self.clock.t < end:
            self.clock.t = min(end, self.clock.t + step_ns)
            while self.srv.compose(self.clock.t):
                pass
            self.srv.step(self.clock.t)


def closing(kind):
    """A fixture that makes ``kind`` (a Band) with the settings given, each closed at the
    test's end."""
    @pytest.fixture
    def fixture():
        made = []

        def make(**cfg):
            made.append(kind(**cfg))
            return made[-1]

        yield make
        for b in made:
            b.srv.close()
    return fixture


band = closing(Band)


def test_beat_bar_and_phrase_events_carry_the_notes_clock(band):
    b = band(initial_state="combat")
    b.play(40)
    beats = b.tap.of("beat")
    got = [e["beat"] for e in beats]
    assert got == [float(i) for i in range(len(got))] and len(got) >= 39
    tpb = b.srv.tpb
    for e in beats:  # the sequencer's time of that tick, to the nanosecond
        assert e["t_ns"] == int(b.srv.seq.tick_ns(b.slot, e["beat"] * tpb))
        assert (e["bar"], e["beat_in_bar"]) == divmod(int(e["beat"]), 4)
        assert (e["phrase"], e["bar_in_phrase"]) == divmod(e["bar"], 8)
    assert [e["beat"] for e in b.tap.of("bar")] == got[::4]
    assert [e["beat"] for e in b.tap.of("phrase")] == got[::32]
    # every note-on on a beat carries that beat's t_ns: the same clock, the same tempo map
    on_beat = [(m[3], m[4]) for m in b.tap.msgs if m[0] & 0xF0 == 0x90 and m[2] > 0
               and m[4] == int(m[4])]
    by_beat = {e["beat"]: e["t_ns"] for e in beats}
    assert len(on_beat) > 40
    assert all(t == by_beat[beat] for t, beat in on_beat if beat in by_beat)


def test_position_says_where_the_music_is_and_when_the_next_downbeat_plays(band):
    b = band(initial_state="explore")
    b.play(5.5 - b.beat())
    pos = b.call("position")
    assert pos["beat"] == pytest.approx(5.5)
    assert (pos["bar"], pos["beat_in_bar"], pos["phrase"], pos["bar_in_phrase"]) == (1, 1, 0, 1)
    assert (pos["next_downbeat"], pos["next_phrase"], pos["phrase_bars"]) == (8.0, 32.0, 8)
    assert pos["next_downbeat_t_ns"] == int(b.srv.seq.tick_ns(b.slot, 8 * b.srv.tpb))
    assert pos["state"] == "explore" and pos["transport"] == "playing"
    assert pos["key"] == KEY_NAMES[b.srv.sessions["main"].mood.key] and pos["mode"] in MODES
    b.call("pause")
    paused = b.call("position")
    assert paused["transport"] == "paused" and paused["next_downbeat_t_ns"] is None


def test_a_cue_is_announced_where_it_was_placed_and_a_change_lands_on_it(band):
    b = band(initial_state="explore")
    b.play(1)
    placed = b.call("cue", name="door", at="bars:2")
    assert placed["beat"] == 8.0
    assert placed["t_ns"] == int(b.srv.seq.tick_ns(b.slot, 8 * b.srv.tpb))
    change = b.call("state", name="combat", transition="cue:door")
    assert change["beat"] == 8.0 and change["transition"] == "cue:door"
    assert b.call("position")["cues"] == {"door": 8.0}
    b.play(10)
    cue = b.tap.of("cue")
    assert [(e["name"], e["beat"], e["t_ns"]) for e in cue] == [("door", 8.0, placed["t_ns"])]
    moods = [e for e in b.tap.of("mood") if e.get("name") == "combat"]
    assert moods and moods[-1]["beat"] == 8.0
    # once played, a cue is gone: a transition at it is refused naming the field
    with pytest.raises(InvalidMessage) as err:
        b.call("state", name="calm", transition="cue:door")
    assert err.value.field == "transition" and "door" in str(err.value)
    with pytest.raises(InvalidMessage) as err:
        b.call("cue", name="late", beat=1.0)
    assert err.value.field == "beat"


def test_a_cue_announced_early_can_still_be_named_until_it_plays(band):
    """With outputs that get events ahead, a cue is announced before it plays; a change
    at it is still accepted until the playhead passes it."""
    b = band(tap=EarlyTap(), initial_state="explore")
    b.play(1)
    placed = b.call("cue", name="door", at="bar")
    b.play(placed["beat"] - b.beat() - 0.05)  # 30 ms or so before it: announced already
    assert [e["name"] for e in b.tap.of("cue")] == ["door"]
    assert b.call("position")["cues"] == {"door": placed["beat"]}
    reply = b.call("stinger", name="victory", transition="cue:door")
    assert reply["played"] and reply["beat"] == placed["beat"]
    b.play(0.2)
    with pytest.raises(InvalidMessage):
        b.call("stinger", name="victory", transition="cue:door")


def test_bad_transition_points_are_refused_naming_the_field():
    for value, code in (("bars:0", "out_of_range"), ("bars:65", "out_of_range"),
                        ("bars:x", "out_of_range"), ("cue:", "out_of_range"),
                        ("soon", "bad_choice"), ("phrases", "bad_choice")):
        with pytest.raises(InvalidMessage) as err:
            protocol.validate({"type": "mood", "valence": 0.1, "transition": value})
        assert err.value.field == "transition" and err.value.code == code
        assert "bars:N" in str(err.value)
    # a stinger sent as notes passes a theme's checks, and is a name or notes, not both
    for msg, field in (({"notes": [[60, 0, 1], [62, 1, 1]]}, "notes"),
                       ({"notes": [[60, 0, 1], [62, 1, 1], [200, 2, 1]]}, "notes"),
                       ({"notes": [[60, 0, 1], [62, 1, 1], [64, 2, 1]], "name": "hit"}, "name")):
        with pytest.raises(InvalidMessage) as err:
            protocol.validate({"type": "stinger", **msg}, (), ("hit",))
        assert err.value.field == field
    for value in ("now", "beat", "bar", "phrase", "bars:1", "bars:64", "cue:door"):
        assert protocol.validate({"type": "key", "key": "D", "transition": value})["transition"] \
            == value


SCALES = {m: {protocol.degree_to_semitones(d, m) for d in range(1, 8)} for m in ("major",)}


def test_a_storm_of_changes_at_phrases_and_grids_lands_on_the_promised_downbeats(band):
    """Key changes at random grids (phrase, bars:N) and random moments, strictly tonal:
    every change's ack names a downbeat of its grid ahead of the playhead, the mood event
    says the same beat, and every pitched note-on is in the scale of the key whose change
    it follows: before the promised beat the old key, from it the new one (100 %)."""
    rng = random.Random(30)
    b = band(initial_state="explore")
    b.call("key", key="C", mode="major", tonality=1.0, transition="now")
    b.play(2)
    timeline = [(0.0, 0)]  # (beat from which, key) of the changes, in order
    checked = 0
    for _ in range(14):
        when = rng.choice(["phrase", "bars:1", "bars:2", "bars:3", "bar"])
        b.play(rng.uniform(0.1, 3.0))
        head = b.beat()
        key = rng.choice([k for k in range(12) if k != timeline[-1][1]])
        ack = b.call("key", key=KEY_NAMES[key], mode="major", tonality=1.0, transition=when)
        grid = {"phrase": 32, "bar": 4}.get(when) or 4 * int(when[5:])
        assert ack["beat"] % grid == 0 and ack["beat"] >= head
        assert ack["t_ns"] == int(b.srv.seq.tick_ns(b.slot, ack["beat"] * b.srv.tpb))
        mood = [e for e in b.tap.of("mood") if e["transition"] == when][-1]
        assert mood["beat"] == ack["beat"] and mood["key"] == KEY_NAMES[key]
        timeline.append((ack["beat"], key))
        b.play(ack["beat"] - b.beat() + 0.5)  # it lands before the next request
        checked += 1
    b.play(2)
    starts = np.array([t for t, _ in timeline])
    wrong, pitched = [], 0
    for status, pitch, vel, _, beat, _ in b.tap.msgs:
        ch = status & 0x0F
        if status & 0xF0 != 0x90 or vel == 0 or ch in (DRUM_CHANNEL, STINGER_CHANNEL):
            continue
        pitched += 1
        key = timeline[int(np.searchsorted(starts, beat, side="right")) - 1][1]
        if (pitch - key) % 12 not in SCALES["major"]:
            wrong.append((beat, pitch, key))
    assert checked == 14 and pitched > 200 and not wrong


def test_a_pickup_starts_the_new_music_before_its_downbeat(band):
    """explore -> combat: the shipped rule's one-beat pickup before its downbeat, the
    voices at the bar line from there."""
    b = band(initial_state="explore")
    b.call("key", key="C", mode="minor", transition="now")
    b.play(5.2)
    reply = b.call("state", name="combat")
    rule = b.srv.commands.rules.rule("explore", "combat")
    assert reply["rule"] == rule.where and rule.pickup_beats == 1.0
    assert reply["transition"] == rule.when
    # 6.0, the next beat, leaves no room for a beat of pickup: the one after does
    assert (reply["beat"], reply["pickup_beat"]) == (7.0, 6.0)
    assert reply["voices_beat"] == 8.0  # the voices enter at the bar line from there
    b.play(4)
    moods = [e for e in b.tap.of("mood") if e.get("name") == "combat"]
    assert moods[-1]["beat"] == 7.0 and moods[-1]["pickup_beat"] == 6.0


def test_every_shipped_rule_is_what_a_state_change_of_its_pair_does(band):
    b = band(initial_state="explore")
    rules = b.srv.commands.rules
    presets = sorted(b.srv.presets)
    assert len(rules) >= 6
    for rule in rules:
        frm = rule.from_state if rule.from_state != "*" else next(
            p for p in presets if rules.rule(p, rule.to_state) is rule)
        to = rule.to_state if rule.to_state != "*" else next(
            p for p in presets if p != frm and rules.rule(frm, p) is rule)
        b.call("state", name=frm, transition="now")
        b.play(0.6)
        head = b.beat()
        events = len(b.tap.events)
        reply = b.call("state", name=to)
        assert reply["rule"] == rule.where and reply["transition"] == rule.when
        unit, n = rule.point
        grid = {"beat": 1, "bar": 4, "phrase": 32, "bars": 4 * n}[unit]
        assert reply["beat"] % grid == 0 and reply["beat"] >= head
        if rule.pickup_beats:
            assert reply["pickup_beat"] < reply["beat"]
        if rule.stinger:
            assert reply["stinger"]["name"] == rule.stinger and reply["stinger"]["played"]
            assert reply["stinger"]["beat"] == reply["beat"]
        new = b.tap.events[events:]
        bpm = b.srv.presets[to].get("bpm")
        tempo = [f for t, f in new if t == "tempo"]
        if bpm is not None and rule.ramp_beats and tempo:
            slot, tpb = b.slot, b.srv.tpb
            assert tempo[-1]["beat"] == reply["beat"]
            end = reply["beat"] + rule.ramp_beats
            assert b.srv.seq.bpm_at(slot, end * tpb) == pytest.approx(bpm)
        b.play(reply["beat"] - b.beat() + 0.5)


def test_stinger_cooldowns_hold_under_a_storm_of_requests(band):
    b = band(initial_state="combat")
    rng = random.Random(7)
    stingers = {n: s for n, s in b.srv.stingers.items()}
    cooled = [n for n, s in stingers.items() if s["min_interval_beats"] > 0]
    assert cooled
    played = dropped = 0
    for _ in range(120):
        b.play(rng.uniform(0.05, 0.8))
        name = rng.choice(cooled + ["notes"])
        when = rng.choice(["now", "beat", "bar", "bars:1"])
        if name == "notes":
            reply = b.call("stinger", notes=[[60, 0, 0.5], [64, 0.5, 0.5], [67, 1, 1]],
                           min_interval_beats=3.0, queue=rng.choice(["drop", "queue"]),
                           transition=when)
        else:
            reply = b.call("stinger", name=name, transition=when)
        played += reply["played"]
        dropped += not reply["played"]
    b.play(8)
    intervals = {n: s["min_interval_beats"] for n, s in stingers.items()}
    intervals["notes"] = 3.0
    starts = {}
    for e in b.tap.of("stinger"):  # in the order they play (a later request may ask earlier)
        starts.setdefault(e["name"], []).append(e["beat"])
    violations = sum(int(y - x < intervals[name] - 1e-9) for name, beats in starts.items()
                     for x, y in zip(sorted(beats), sorted(beats)[1:]))
    assert played > 10 and dropped > 10 and violations == 0
    # every stinger note-on got its note-off
    on = set()
    for status, pitch, vel, _, _, _ in b.tap.msgs:
        if status & 0x0F != STINGER_CHANNEL:
            continue
        if status & 0xF0 == 0x90 and vel:
            on.add(pitch)
        elif status & 0xF0 == 0x80:
            on.discard(pitch)
    assert not on


def test_a_stinger_a_pause_dropped_holds_no_cooldown_and_none_queues_while_stopped(band):
    """A stop or pause drops the stingers not yet begun: their cooldown goes with them,
    so a request after it is not told it joins one that will never sound.  While the
    music is stopped a stinger is refused (start plays afresh: it would never sound)."""
    b = band(initial_state="combat")
    notes = dict(notes=[[60, 0, 0.5], [64, 0.5, 0.5], [67, 1, 1]], min_interval_beats=2.0,
                 queue="queue")
    b.play(1)
    ahead = b.call("stinger", transition="phrase", **notes)
    assert ahead["played"] and ahead["beat"] > b.beat() + 4
    b.call("pause")
    b.call("start")
    now = b.call("stinger", transition="now", **notes)
    assert now["played"] and now["beat"] < ahead["beat"], now
    before = len(b.tap.msgs)
    b.play(2)
    assert any(st & 0x0F == STINGER_CHANNEL and st & 0xF0 == 0x90 and vel
               for st, _, vel, *_ in b.tap.msgs[before:])
    b.call("stop")
    refused = b.call("stinger", transition="now", **notes)
    assert not refused["played"] and "stopped" in refused["reason"], refused
    b.call("start")
    assert b.call("stinger", transition="bar", **notes)["played"]


def test_a_theme_stated_now_plays_whole_before_a_later_change_states_it_again(band):
    """A change at a later grid point that states the theme again (here a mode change)
    is queued behind the statement playing: the theme sounds whole in the old mode, then
    again from the change in the new one."""
    b = band(initial_state="explore")
    b.call("key", key="C", mode="major", transition="now")
    b.play(1)
    start = b.call("theme", name="hero", variation=0.0, transition="bar")["beat"]
    change = b.call("key", key="C", mode="minor", transition="bars:4")["beat"]
    assert change >= start + 8  # the 2-bar theme ends before the change
    b.play(change + 8 - b.beat())
    melody = b.srv.voices[0].channel

    def stated(at):
        return [(m[4] - at, m[1]) for m in b.tap.msgs if m[0] == 0x90 | melody and m[2] > 0
                and at <= m[4] < at + 8]

    # the hero's theme (D minor) moved to C by scale degree: in major, then in minor
    onsets = [0, 1, 2, 3, 4, 4.5, 5, 6, 6.5, 7]
    major = [60, 64, 67, 72, 71, 69, 67, 65, 64, 60]
    minor = [60, 63, 67, 72, 70, 68, 67, 65, 63, 60]
    assert stated(start) == list(zip(onsets, major))
    again = stated(change)
    assert [t for t, _ in again] == onsets
    assert [p % 12 for _, p in again] == [p % 12 for p in minor]
