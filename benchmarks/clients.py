"""The game clients of a storm (``benchmarks.storm``): processes that each send their
share of random transitions, some SIGKILLed part-way and replaced.

A client sends ``mood``, ``state``, ``key``, ``tempo`` (with ramps) and ``stinger`` (by
name, or as notes with a cooldown) at every kind of transition point (now, beat, bar,
phrase, bars:N, a cue it placed, now and then one it did not), ``cue``, ``position``,
``stop``, ``pause``, ``start`` and ``session`` open/close, on sessions of its own and on
"main", and waits for each answer before the next.  Against an ensemble
model (``hello`` lists two voices or more) a quarter of its ``mood``, ``state`` and
``session`` opens also carry a random ``voices`` value: voices forced on, off or back to
"auto", their programs, octaves and now and then their channels (moved while their notes
sound, or onto another voice's channel, which the server refuses).
"""
import multiprocessing
import os
import random
import signal
import time

import zmq

from engine.controls import KEY_NAMES, MODES
from realtime import protocol

TRANSITIONS = ("now", "beat", "bar", "phrase", "bars:1", "bars:2", "bars:4", "cue:c0", "cue:c1")
# A stinger sent as notes, and its cooldown: what the storm checks the stream against.
NOTES_STINGER = [[60, 0, 0.5], [64, 0.5, 0.5], [67, 1, 1]]
NOTES_INTERVAL_BEATS = 2.0
REPLY_TIMEOUT_MS = 30_000  # a guard against a hang, not a measurement
VOICES_SHARE = 0.25        # of mood, state and open messages, when the model has voices


def random_voices(rng, voices):
    """A random ``voices`` value over the voice names ``voices``: one to all of them,
    each true, false, "auto" or an object of some of play, program, octave and (one in
    five) channel, drawn from the protocol's ranges.  Not filtered: a value that turns
    every voice off, or gives a channel twice or the stingers' one, is refused by the
    server, and the music must play on."""
    out = {}
    for name in rng.sample(list(voices), rng.randint(1, len(voices))):
        if rng.random() < 0.5:
            out[name] = rng.choice(protocol.PLAY)
            continue
        setting = {}
        if rng.random() < 0.6:
            setting["play"] = rng.choice(protocol.PLAY)
        if rng.random() < 0.4:
            setting["program"] = rng.randint(*protocol.VOICE_RANGES["program"])
        if rng.random() < 0.3 and name != "drums":  # drums are never transposed
            setting["octave"] = rng.randint(*protocol.VOICE_RANGES["octave"])
        if rng.random() < 0.2:
            setting["channel"] = rng.randint(*protocol.VOICE_RANGES["channel"])
        out[name] = setting or {"play": "auto"}
    return out


def random_message(rng, mine, prefix, presets, stingers, voices=()):
    """One random transition for a client whose open sessions are ``mine``; ``voices``:
    the names of the model's voices (two or more: an ensemble, and some messages carry
    ``voices``)."""
    session = rng.choice(mine) if mine and rng.random() < 0.6 else "main"
    kind = rng.choices(("mood", "state", "key", "tempo", "stinger", "stop", "pause", "start",
                        "open", "close", "cue", "position"),
                       (30, 14, 10, 10, 8, 3, 3, 8, 8, 6, 5, 2))[0]
    transition = rng.choice(TRANSITIONS)
    if kind == "mood":
        msg = {"type": "mood", "transition": transition}
        for axis, lo in (("valence", -1.0), ("arousal", 0.0), ("intensity", 0.0)):
            if rng.random() < 0.7:
                msg[axis] = round(rng.uniform(lo, 1.0), 3)
        msg.setdefault("arousal", round(rng.random(), 3))
    elif kind == "state":
        msg = {"type": "state", "name": rng.choice(presets), "transition": transition}
    elif kind == "key":
        msg = {"type": "key", "key": rng.choice(KEY_NAMES), "mode": rng.choice(MODES),
               "transition": transition}
    elif kind == "tempo":
        msg = {"type": "tempo", "bpm": round(rng.uniform(40, 240), 1), "transition": transition}
        if rng.random() < 0.4:
            msg["ramp_beats"] = round(rng.uniform(0.5, 8.0), 2)
    elif kind == "stinger" and rng.random() < 0.3:
        msg = {"type": "stinger", "notes": NOTES_STINGER, "transition": transition,
               "min_interval_beats": NOTES_INTERVAL_BEATS, "queue": rng.choice(("drop", "queue"))}
    elif kind == "stinger":
        msg = {"type": "stinger", "name": rng.choice(stingers), "transition": transition}
    elif kind == "cue":
        msg = {"type": "cue", "name": rng.choice(("c0", "c1")),
               "at": rng.choice(("beat", "bar", "phrase", "bars:2"))}
    elif kind == "position":
        msg = {"type": "position"}
    elif kind in ("stop", "pause", "start"):
        return {"type": kind}
    elif kind == "open" and len(mine) < 2:
        name = f"{prefix}-{rng.randrange(3)}"
        if name in mine:
            name = f"{prefix}-{rng.randrange(3, 6)}"
        msg = {"type": "session", "action": "open", "session": name}
        if rng.random() < 0.5:
            msg["state"] = rng.choice(presets)
        if len(voices) > 1 and rng.random() < VOICES_SHARE:
            msg["voices"] = random_voices(rng, voices)
        return msg
    elif kind == "close" and mine:
        return {"type": "session", "action": "close", "session": rng.choice(mine)}
    else:
        msg = {"type": "mood", "arousal": round(rng.random(), 3), "transition": "now"}
    if msg["type"] in ("mood", "state") and len(voices) > 1 and rng.random() < VOICES_SHARE:
        msg["voices"] = random_voices(rng, voices)
    msg["session"] = session
    return msg


def client_main(control, seed, quota, counter, prefix, presets, stingers, voices=(),
                voiced=None):
    """A game client process: ``quota`` random transitions, each answered, counted in
    ``counter`` (a shared integer) as its answer arrives; ``voiced`` (a pair of integers
    shared with no lock, this process's alone, so that a SIGKILL never leaves a lock
    held): the answered messages that carried ``voices``, and those refused."""
    rng = random.Random(seed)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(control)
    mine = []
    for _ in range(quota):
        msg = random_message(rng, mine, prefix, presets, stingers, voices)
        sock.send_json(msg)
        if not sock.poll(REPLY_TIMEOUT_MS):
            raise SystemExit(f"client {prefix}: no reply within {REPLY_TIMEOUT_MS} ms to {msg}")
        reply = sock.recv_json()
        if msg["type"] == "session" and reply.get("ok"):
            if msg["action"] == "open":
                mine.append(msg["session"])
            else:
                mine.remove(msg["session"])
        if voiced is not None and "voices" in msg:
            voiced[1] += not reply.get("ok")
            voiced[0] += 1
        with counter.get_lock():
            counter.value += 1
    sock.close()
    ctx.term()


class Clients:
    """Client processes sending ``transitions`` in all; ``kill`` of the first ``clients``
    are SIGKILLed part-way through their share, and a new process (same session names)
    sends the rest of it.  ``voices``: the names of the model's voices (``hello``'s
    capabilities.voices), which the messages' ``voices`` values draw from."""

    def __init__(self, control, transitions, clients, kill, seed, voices=()):
        self.control, self.seed, self.voices = control, seed, tuple(voices)
        self.mp = multiprocessing.get_context("spawn")  # no fork of a threaded parent
        self.voiced = []    # per process: messages with ``voices`` answered, refused
        self.presets, self.stingers = (tuple(d) for d in protocol.load_states(None))
        share = [transitions // clients + (i < transitions % clients) for i in range(clients)]
        self.running = []   # (process, counter, quota, prefix, kill at count or None)
        self.killed = 0
        self.spawned = 0
        self.rng = random.Random(seed)
        for i, quota in enumerate(share):
            kill_at = int(quota * self.rng.uniform(0.3, 0.7)) if i < kill else None
            self._spawn(quota, f"c{i}", kill_at)
        self.done = []      # counters of finished or killed processes

    def _spawn(self, quota, prefix, kill_at):
        counter = self.mp.Value("q", 0)
        self.voiced.append(self.mp.Array("q", 2, lock=False))
        proc = self.mp.Process(target=client_main, daemon=True,
                               args=(self.control, self.seed * 1000 + self.spawned, quota,
                                     counter, prefix, self.presets, self.stingers,
                                     self.voices, self.voiced[-1]))
        proc.start()
        self.spawned += 1
        self.running.append((proc, counter, quota, prefix, kill_at))

    @property
    def voices_sent(self):
        """(answered, refused) of the messages that carried ``voices``."""
        return tuple(sum(v[i] for v in self.voiced) for i in (0, 1))

    @property
    def sent(self):
        return sum(c.value for c in self.done) + sum(r[1].value for r in self.running)

    def run(self, timeout_s):
        """Until every share is sent (killing and replacing as planned); raises on a
        client that failed or on ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while self.running:
            if time.monotonic() > deadline:
                self.terminate()
                raise RuntimeError(f"storm clients did not finish within {timeout_s} s "
                                   f"({self.sent} transitions answered)")
            for item in list(self.running):
                proc, counter, quota, prefix, kill_at = item
                if kill_at is not None and counter.value >= kill_at:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.join()
                    self.killed += 1
                    self.running.remove(item)
                    self.done.append(counter)
                    self._spawn(quota - counter.value, prefix, None)
                elif not proc.is_alive():
                    proc.join()
                    self.running.remove(item)
                    self.done.append(counter)
                    if proc.exitcode != 0:
                        self.terminate()
                        raise RuntimeError(f"storm client {prefix} failed (exit {proc.exitcode})")
            time.sleep(0.02)

    def terminate(self):
        for proc, *_ in self.running:
            proc.kill()
            proc.join()
        self.running = []
