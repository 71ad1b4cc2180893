"""The Python client's sync calls against a real playing server (notes and sync events 40 ms
ahead): beat/bar/phrase events only when subscribed, on the beat grid, scheduled by
``due_in`` as notes are; cues placed and announced; ``position``; the new transition points
and a stinger sent as notes.  Correctness only: no wall-clock figure is asserted."""
import time

import pytest

from bindings import Client, EventListener
from bindings.client import SYNC_TYPES, ServerError

from .conftest import MOTIF


def check_grid(beats):
    """Consecutive ``beat`` events of one steady tempo lie on its grid: their t_ns differ by
    60e9 / bpm per beat, to the nanosecond the sequencer rounds each tick to."""
    assert len(beats) >= 2, beats
    for a, b in zip(beats, beats[1:]):
        assert b["beat"] - a["beat"] == 1 and a["bpm"] == b["bpm"], (a, b)
        assert abs((b["t_ns"] - a["t_ns"]) - 60e9 / a["bpm"]) <= 1, (a, b)
        assert b["beat_in_bar"] == (a["beat_in_bar"] + 1) % 4, (a, b)
        assert b["bar"] == a["bar"] + (b["beat_in_bar"] == 0), (a, b)


def test_sync_events_come_only_when_named_and_lie_on_the_beat_grid(playing_server):
    control, events = playing_server
    with Client(control, timeout=5) as client:
        offset = client.sync_clock(pings=4)
    with EventListener(events, types=list(SYNC_TYPES), timeout=5) as sync, \
            EventListener(events, timeout=5) as everything:
        got = []
        for event in sync:
            before = time.monotonic_ns()
            due = EventListener.due_in(event, offset)  # as a note is scheduled
            after = time.monotonic_ns()
            assert event["t_ns"] - after - offset <= due * 1e9 <= event["t_ns"] - before - offset + 1000
            got.append(event)
            if sum(e["type"] == "beat" for e in got) >= 6:
                break
        others = [e for _, e in zip(range(40), everything)]
    assert {e["type"] for e in got} <= set(SYNC_TYPES)
    beats = [e for e in got if e["type"] == "beat"]
    check_grid(beats)
    on_beat = {e["beat"]: e["t_ns"] for e in beats}
    for e in got:  # a bar (phrase) event is the beat event of its downbeat, to the ns
        if e["type"] in ("bar", "phrase") and e["beat"] in on_beat:
            assert e["beat_in_bar"] == 0 and e["t_ns"] == on_beat[e["beat"]], e
        if e["type"] == "phrase":
            assert e["bar_in_phrase"] == 0 and e["bars"] >= 1, e
    assert all(set(e) >= {"bar", "beat_in_bar", "phrase", "bar_in_phrase", "bpm"} for e in got)
    assert len(others) == 40 and any(e["type"] == "note_on" for e in others)
    assert not any(e["type"] in SYNC_TYPES for e in others), others  # opt-in


def test_cue_position_and_the_new_transition_points(playing_server):
    control, events = playing_server
    with Client(control, timeout=5) as client, \
            EventListener(events, types=["cue", "beat"], timeout=10) as listener:
        assert listener.recv(timeout=10)["type"] == "beat"  # subscribed: no cue is missed
        here = client.position()
        assert here["for"] == "position" and here["transport"] == "playing"
        assert here["next_downbeat"] % 4 == 0 and here["next_downbeat"] >= here["beat"]
        downbeat = here["next_downbeat_t_ns"]
        assert type(downbeat) is int
        before = time.monotonic_ns()
        due = EventListener.due_in(downbeat)  # an int is a time: the cutscene's start
        after = time.monotonic_ns()
        assert downbeat - after - 1000 <= due * 1e9 <= downbeat - before + 1000
        soon = client.cue("soon", at="bar")  # the next bar line: announced even if close
        assert soon["beat"] % 4 == 0 and soon["beat"] >= here["beat"], soon
        # a bar further, so that it is still waiting when the change below is placed on it
        door = client.cue("door", beat=here["next_downbeat"] + 4)
        assert door["beat"] == here["next_downbeat"] + 4 and type(door["t_ns"]) is int
        late = client.cue("late", beat=door["beat"] + 64)
        assert late["beat"] == door["beat"] + 64
        cues = client.position()["cues"]
        assert (cues["door"], cues["late"]) == (door["beat"], late["beat"]), cues
        # a change landing on the cue: the same beat and t_ns
        moved = client.mood(arousal=0.7, transition="cue:door")
        assert (moved["beat"], moved["t_ns"]) == (door["beat"], door["t_ns"]), moved
        for transition in ("phrase", "bars:4"):
            assert client.mood(intensity=0.4, transition=transition)["beat"] % 4 == 0
        with pytest.raises(ServerError) as info:
            client.mood(arousal=0.5, transition="bars:65")
        assert (info.value.code, info.value.field) == ("out_of_range", "transition")
        with pytest.raises(ServerError) as info:
            client.mood(arousal=0.5, transition="cue:nowhere")
        assert (info.value.code, info.value.field) == ("bad_choice", "transition")
        stinger = client.stinger(notes=MOTIF[:3], min_interval_beats=8, queue="drop")
        assert stinger["played"] is True and len(stinger["pitches"]) == 3, stinger
        again = client.stinger(notes=MOTIF[:3], min_interval_beats=8, queue="drop")
        assert again["played"] is False and again["next_beat"] > stinger["beat"], again
        assert client.stinger("hit")["for"] == "stinger"
        heard = {}
        for event in listener:
            if event["type"] == "cue":
                heard[event["name"]] = (event["beat"], event["t_ns"])
                if event["name"] == "door":
                    break
        assert heard == {"soon": (soon["beat"], soon["t_ns"]), "door": (door["beat"], door["t_ns"])}
        # announced ahead of its time (events ahead), it waits until it plays, then is gone
        time.sleep(max(0.0, EventListener.due_in(door["t_ns"])) + 0.05)
        assert "door" not in client.position()["cues"]
