"""realtime.stingers.Cooldown: a stinger starts no sooner than min_interval_beats after its
last start in a session; one asked for sooner is dropped, or queued to the first point of
its grid after the cooldown."""
import random
from collections import defaultdict

import pytest

from realtime.protocol.states import load_states
from realtime.stingers import Cooldown, Decision

TPB = 480  # ticks per beat, as the server's sequencer counts them


def stinger(interval=0, queue="drop"):
    return {"degrees": [1], "durations": [1.0], "velocity": 100, "min_interval_beats": interval,
            "queue": queue}


def test_without_a_cooldown_every_request_plays_where_asked():
    cool = Cooldown({"hit": stinger()})
    assert [cool.decide("s", "hit", at, 1) for at in (0, 0, 1, 1, 2)] == [Decision(True, at) for at in (0, 0, 1, 1, 2)]


def test_a_request_inside_the_cooldown_is_dropped_saying_when_it_could_play():
    cool = Cooldown({"hit": stinger(2)})
    assert cool.decide("s", "hit", 0, 1) == Decision(True, 0)
    dropped = cool.decide("s", "hit", 1, 1)
    assert (dropped.play, dropped.at, dropped.ready, dropped.queued) == (False, 2, 2, False)
    assert dropped.reason == "hit is cooling down: at most once every 2 beats"
    assert cool.decide("s", "hit", 2, 1) == Decision(True, 2)  # the interval exactly: plays
    # on a bar grid, the first bar line after the cooldown
    assert cool.decide("s", "hit", 3, 4) == Decision(False, 7, 4, False, dropped.reason)


def test_a_queued_request_starts_at_the_first_grid_point_after_the_cooldown():
    cool = Cooldown({"danger": stinger(6, "queue")})
    assert cool.decide("s", "danger", 0, 4).play
    queued = cool.decide("s", "danger", 4, 4)  # the next bar is inside the cooldown: the one after
    assert (queued.play, queued.at, queued.ready, queued.queued) == (True, 8, 6, True)
    assert queued.reason == "danger waits out its cooldown of 6 beats"
    # asked again while it waits: the request joins it, nothing more is queued
    joined = cool.decide("s", "danger", 5, 1)
    assert (joined.play, joined.at) == (False, 8) and "already waits to start at beat 8" in joined.reason
    assert cool.decide("s", "danger", 14, 1) == Decision(True, 14)  # 8 + 6


def test_a_burst_of_queued_requests_queues_one_stinger_not_a_backlog():
    cool = Cooldown({"danger": stinger(4, "queue")}, ticks_per_beat=TPB)
    # requests all through two beats, each for the next beat
    decisions = [cool.decide("s", "danger", TPB * (1 + now // TPB), TPB) for now in range(0, 2 * TPB, 5)]
    played = [d for d in decisions if d.play]
    assert played == [Decision(True, TPB), Decision(True, 5 * TPB, 5 * TPB, True,
                                                     "danger waits out its cooldown of 4 beats")]
    # the others join the one waiting: the first beat's the one on it, the second's the queued
    assert {d.at for d in decisions if not d.play} == {TPB, 5 * TPB}


def test_a_cancelled_start_is_forgotten_and_the_one_before_holds_the_cooldown():
    cool = Cooldown({"danger": stinger(4, "queue")})
    assert cool.decide("s", "danger", 0, 1).play
    assert cool.decide("s", "danger", 16, 16) == Decision(True, 16)  # a phrase ahead
    assert cool.decide("s", "danger", 5, 1).reason == "danger already waits to start at beat 16"
    cool.cancel("s", 5)  # a pause at beat 5 dropped the one at 16
    cool.cancel("other", 5)  # a session with none remembered: nothing to do
    assert cool.decide("s", "danger", 6, 1) == Decision(True, 6)
    assert cool.decide("s", "danger", 7, 1).at == 10  # 6 holds the cooldown, 0 is past
    cool.cancel("s", 6)  # 6 had begun: it stays, 10 goes
    assert cool.decide("s", "danger", 7, 1) == Decision(True, 10, 10, True,
                                                        "danger waits out its cooldown of 4 beats")


def test_now_has_no_grid_so_a_queued_stinger_starts_when_the_cooldown_ends():
    cool = Cooldown({"danger": stinger(1.5, "queue")}, ticks_per_beat=TPB)
    assert cool.decide("s", "danger", 100, 0).at == 100
    assert cool.decide("s", "danger", 101, 0) == Decision(True, 100 + 720, 820, True,
                                                          "danger waits out its cooldown of 1.5 beats")


def test_the_interval_in_ticks_is_rounded_up():
    cool = Cooldown({"v": stinger(0.333)}, ticks_per_beat=TPB)  # 159.84 ticks: 160
    assert cool.interval["v"] == 160
    cool.decide("s", "v", 1000, 1)
    assert not cool.decide("s", "v", 1159, 1).play and cool.decide("s", "v", 1160, 1).play


def test_sessions_and_stingers_cool_down_apart_and_a_closed_session_is_forgotten():
    cool = Cooldown({"hit": stinger(4), "boom": stinger(4)})
    assert cool.decide("a", "hit", 0, 1).play and cool.decide("b", "hit", 1, 1).play
    assert cool.decide("a", "boom", 1, 1).play
    assert not cool.decide("a", "hit", 2, 1).play and not cool.decide("b", "hit", 2, 1).play
    cool.forget("a")
    cool.forget("never-opened")
    assert cool.decide("a", "hit", 2, 1).play and not cool.decide("b", "hit", 3, 1).play
    with pytest.raises(KeyError):
        cool.decide("a", "nope", 0, 1)


def test_a_stinger_the_file_lacks_brings_its_own_policy():
    cool = Cooldown({"hit": stinger(2)})
    notes = {"min_interval_beats": 3.0, "queue": "queue"}  # a message's `notes` stinger
    assert cool.decide("s", "notes", 0, 1, notes).play
    assert cool.decide("s", "notes", 1, 1, notes) == Decision(True, 3, 3, True,
                                                              "notes waits out its cooldown of 3 beats")
    assert cool.decide("s", "notes", 6, 1, {}) == Decision(True, 6)  # left out: no cooldown
    assert cool.decide("s", "hit", 0, 1).play and not cool.decide("s", "hit", 1, 1).play


def test_the_shipped_stingers_cooldowns_are_read():
    _, stingers = load_states()
    cool = Cooldown(stingers, ticks_per_beat=TPB)
    assert cool.interval["hit"] == 2 * TPB and not cool.queue["hit"] and cool.queue["danger"]
    assert cool.decide("s", "hit", 0, TPB).play and not cool.decide("s", "hit", TPB, TPB).play


POLICIES = {"none": stinger(), "hit": stinger(2), "danger": stinger(4, "queue"),
            "odd": stinger(0.75, "queue"), "long": stinger(64), "bar": stinger(3.5)}
GRIDS = (0, TPB, 4 * TPB, 3 * TPB, 16 * TPB, 8 * TPB)  # now, beat, bar, a 3/4 bar, phrase, bars:2


@pytest.mark.parametrize("seed,forward", [(1, True), (2, True), (3, False)])
def test_a_storm_of_requests_never_breaks_an_interval(seed, forward):
    """Random requests from 4 sessions for 6 stingers on random grids, the clock moving on
    (or, ``forward`` False, points asked in any order); sessions close now and then.  Every
    start is at least the interval after the one before it (0 violations), on the grid
    asked, and a request is refused only inside a cooldown."""
    rng = random.Random(seed)
    cool = Cooldown(POLICIES, ticks_per_beat=TPB)
    starts = defaultdict(list)  # (session, name) -> starts given, this session's lifetime
    now, played, dropped, queued = 0, 0, 0, 0
    for _ in range(20000):
        now = now + rng.randrange(0, TPB) if forward else rng.randrange(0, 400 * TPB)
        session, name, grid = f"s{rng.randrange(4)}", rng.choice(list(POLICIES)), rng.choice(GRIDS)
        if rng.random() < 0.002:
            cool.forget(session)
            for key in [k for k in starts if k[0] == session]:
                del starts[key]
            continue
        asked = now if grid == 0 else now + (-now) % grid  # the next point of the grid
        interval = cool.interval[name]
        before = starts[(session, name)]
        last = max(before, default=None)
        d = cool.decide(session, name, asked, grid)
        if interval == 0 or last is None or asked >= last + interval:
            assert d == Decision(True, asked)  # outside any cooldown: as asked
        elif d.play:
            assert POLICIES[name]["queue"] == "queue" and d.queued and last < asked
            assert d.at >= last + interval and (grid == 0 or (d.at - asked) % grid == 0)
            assert d.at - (last + interval) < max(grid, 1)  # the first such point
        else:
            assert d.ready == last + interval and d.at >= asked
            if POLICIES[name]["queue"] == "queue":  # joins the one waiting
                assert d.at == last >= asked
            else:
                assert d.at >= d.ready and d.at - d.ready < max(grid, 1)
        if d.play:
            before.append(d.at)
            played, queued = played + 1, queued + d.queued
        else:
            dropped += 1
    violations = sum(b - a < cool.interval[name] for (_, name), s in starts.items()
                     for a, b in zip(sorted(s), sorted(s)[1:]))
    assert violations == 0
    # the storm tried every branch (points asked in any order mostly fall behind a start)
    assert played > 1000 and dropped > 1000 and queued > (100 if forward else 5)
