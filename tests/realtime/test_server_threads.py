"""The engine and generator threads under a storm of commands.

Sixteen sessions play while a client changes moods, keys, tempi and states at every
transition point, opens and closes sessions, fires stingers, pauses and restarts, as
fast as the server answers.  The wire stream must stay well formed throughout (no
note-on of a note already sounding on its channel, no note-off of a silent one,
events in time order within each session) and nothing may be left sounding at the end.
"""
import random
import threading
import time

from realtime.outputs import BasePort
from realtime.engine import FAR
from realtime.server import Server, ServerConfig


class Wire(BasePort):
    """Checks every message against the notes sounding on each channel as it arrives."""

    def __init__(self):
        super().__init__()
        self.sounding = set()
        self.errors = []
        self.last_t = {}
        self.stamps = []
        self.count = 0

    def _send(self, status, data1, data2, t_ns, beat, session):
        kind, key = status & 0xF0, (status & 0x0F, data1)
        if kind == 0x90 and data2 > 0:
            if key in self.sounding:
                self.errors.append(f"note-on of sounding {key}")
            self.sounding.add(key)
        elif kind == 0x80 or kind == 0x90:
            if key not in self.sounding:
                self.errors.append(f"note-off of silent {key}")
            self.sounding.discard(key)
        if t_ns < self.last_t.get(session, 0):
            self.errors.append(f"session {session} went back in time")
        self.last_t[session] = t_ns
        self.stamps.append(t_ns)
        self.count += 1


def test_a_storm_of_commands_keeps_the_wire_well_formed(model_path):
    wire = Wire()
    rng = random.Random(7)
    srv = Server(ServerConfig(model=str(model_path), max_sessions=16), [wire], control=False)
    with srv:
        for i in range(15):
            srv.call("session", action="open", session=f"s{i}")
        names = ["main"] + [f"s{i}" for i in range(15)]
        end = time.monotonic() + 4.0
        calls = 0
        while time.monotonic() < end:
            name = rng.choice(names)
            unit = rng.choice(["now", "beat", "bar"])
            pick = rng.random()
            if pick < 0.4:
                srv.call("mood", session=name, valence=rng.uniform(-1, 1),
                         arousal=rng.uniform(0, 1), intensity=rng.uniform(0, 1), transition=unit)
            elif pick < 0.5:
                srv.call("key", session=name, key=rng.choice(["C", "F#", "Bb"]),
                         mode=rng.choice(["major", "minor"]), transition=unit)
            elif pick < 0.6:
                srv.call("tempo", session=name, bpm=rng.uniform(70, 160), transition=unit,
                         ramp_beats=rng.choice([0.0, 2.0]))
            elif pick < 0.7:
                srv.call("state", session=name, name=rng.choice(sorted(srv.presets)),
                         transition=unit)
            elif pick < 0.78:
                srv.call("stinger", session=name, name=rng.choice(sorted(srv.stingers)),
                         transition=unit)
            elif pick < 0.86 and name != "main":
                srv.call("session", action="close", session=name)
                srv.call("session", action="open", session=name)
            elif pick < 0.9:
                srv.call(rng.choice(["pause", "stop"]))
                time.sleep(0.02)
                srv.call("start")
            time.sleep(rng.uniform(0.0, 0.01))
            calls += 1
    assert calls > 100
    assert wire.count > 200  # the music went on throughout
    assert wire.errors == []
    assert wire.sounding == set()


def test_commands_from_two_threads_send_what_they_make_due_in_order(model_path):
    """Two control threads (as the ZeroMQ and OSC endpoints are) change moods "now" as fast
    as they are answered; each collects its change's first note itself (``Sessions.play``
    on the command's thread).  The wire gets every message once, in stamp order, well
    formed, and nothing is left sounding."""
    wire = Wire()
    srv = Server(ServerConfig(model=str(model_path), max_sessions=4), [wire], control=False)
    calls = []
    with srv:
        srv.call("session", action="open", session="other")

        def game(name, seed):
            rng = random.Random(seed)
            end = time.monotonic() + 3.0
            while time.monotonic() < end:
                srv.call("mood", session=name, intensity=rng.uniform(0, 1),
                         transition=rng.choice(["now", "now", "beat"]))
                calls.append(name)
                time.sleep(rng.uniform(0.0, 0.005))

        threads = [threading.Thread(target=game, args=(n, i)) for i, n in enumerate(["main", "other"])]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert calls.count("main") > 20 and calls.count("other") > 20
    assert wire.errors == [] and wire.sounding == set()
    assert wire.stamps == sorted(wire.stamps)  # the queue's order


def test_a_command_the_engine_cannot_take_in_time_is_withdrawn_not_applied_late(model_path):
    from engine.errors import ServerError

    wire = Wire()
    cfg = ServerConfig(model=str(model_path), command_timeout_s=0.3)
    with Server(cfg, [wire], control=False) as srv:
        before = srv.sessions["main"].mood
        with srv.engine.lock:  # a command waits for it, as under a long stall
            try:
                srv.call("mood", intensity=1.0, valence=-1.0, transition="now")
            except ServerError as exc:
                refused = str(exc)
            else:
                refused = None
        # once the engine runs again, the withdrawn mood must not take effect late
        assert srv.call("ping") == {}
        assert srv.call("start")["state"] == "playing"  # a command it does take, answered
        assert srv.sessions["main"].mood == before
    assert refused and "did not apply" in refused and "'mood'" in refused
    assert wire.errors == [] and wire.sounding == set()


def test_a_message_sent_after_a_later_stamped_one_is_stamped_no_earlier(model_path):
    # an event the generator published after its time comes after messages stamped later
    wire = Wire()
    srv = Server(ServerConfig(model=str(model_path)), [wire], control=False)
    t0 = time.monotonic_ns()
    for i, (status, t) in enumerate([(0x90, t0 + 2_000_000), (0x91, t0 + 1_000_000)]):
        srv.seq.out[i] = status, 60, 100, 0
        srv.seq.out_ns[i] = t
    srv.engine.send(srv.seq, 2)
    srv.seq.out[0], srv.seq.out_ns[0] = (0x80, 60, 0, 0), t0
    srv.engine.send(srv.seq, 1)
    srv.engine.deliver(FAR)  # the player's part: each queued message at its time
    assert wire.stamps == [t0 + 2_000_000] * 3  # sent in order, none stamped before the first
    assert wire.errors == [] and wire.sounding == {(1, 60)}


class _SlowLooks:
    """A music whose every look (``play``) takes ``look_s`` and asks to be looked at
    again 5 ms on; it composes nothing."""

    def __init__(self, look_s):
        self.look_s, self.looks = look_s, 0

    def play(self, now):
        self.looks += 1
        time.sleep(self.look_s)
        return now + 5_000_000

    def generate(self, now):
        return False, now + 20_000_000

    def publish(self):
        return FAR

    def silence(self, now):
        pass


def test_the_player_wakes_as_much_earlier_as_its_looks_take():
    """On the real clock the margin is the longest of the player's recent looks (capped):
    a look of 2 ms makes the player collect 2 ms further ahead, one of 5 ms the cap; a
    test's manual clock gets none."""
    from realtime.engine import MAX_MARGIN_NS, Engine
    from realtime.timing import ManualClock
    for look_s, lo, hi in ((0.002, 2_000_000, MAX_MARGIN_NS), (0.005, MAX_MARGIN_NS, MAX_MARGIN_NS)):
        engine = Engine(Wire())
        music = _SlowLooks(look_s)
        engine.drive(music)
        engine.start()
        try:
            deadline = time.monotonic() + 5.0
            while music.looks < 10 and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            engine.stop()
            engine.join()
        assert music.looks >= 10
        assert lo <= engine.margin <= hi and engine.ahead == engine.spin + engine.margin
    engine = Engine(Wire(), clock=ManualClock())
    music = _SlowLooks(0.001)
    engine.drive(music)
    engine.start()
    try:
        deadline = time.monotonic() + 5.0
        while music.looks < 3 and time.monotonic() < deadline:
            engine.clock.t += 10_000_000
            time.sleep(0.005)
    finally:
        engine.stop()
        engine.join()
    assert music.looks >= 3 and engine.margin == 0
