"""Firing fuzz cases at a running server and tallying what comes back: ``ZmqFuzzer``
(pipelined DEALER sockets), ``OscFuzzer`` (UDP, lock-step), and the checks after a storm
that the music still plays (``NoteCounter``, ``music_plays``, ``diagnose``).
"""
import json
import socket
import threading
import time

import zmq

from realtime.fuzz.messages import encode
from realtime.fuzz.oracle import problem
from realtime.fuzz.osc import osc_datagram, osc_reply
from realtime.outputs import BasePort

class Tally:
    """Counts of what a fuzz run sent and got back, and the first problems seen."""

    def __init__(self):
        self.sent = self.answered = self.unanswered = self.extra = 0
        self.kinds, self.codes, self.problems = {}, {}, []
        self.accepted = {}  # ok replies by message type: valid cases that were not refused

    def record(self, case, replies):
        self.sent += 1
        self.kinds[case.kind] = self.kinds.get(case.kind, 0) + 1
        self.answered += min(len(replies), len(case.expects))
        self.unanswered += max(0, len(case.expects) - len(replies))
        for expect, reply in zip(case.expects, replies):
            code = "ok" if reply.get("ok") else reply.get("code")
            self.codes[code] = self.codes.get(code, 0) + 1
            if reply.get("ok"):
                self.accepted[reply.get("for")] = self.accepted.get(reply.get("for"), 0) + 1
            wrong = problem(expect, reply)
            if wrong is not None and len(self.problems) < 20:
                self.problems.append(f"{case.kind} {repr(case.payload)[:300]}: {wrong}")
        if len(replies) < len(case.expects) and len(self.problems) < 20:
            self.problems.append(f"{case.kind} {repr(case.payload)[:300]}: unanswered")

    def as_dict(self):
        return {"sent": self.sent, "answered": self.answered, "unanswered": self.unanswered,
                "extra_replies": self.extra, "server_errors": self.codes.get("server_error", 0),
                "replies_by_code": dict(sorted(self.codes.items())),
                "cases_by_kind": dict(sorted(self.kinds.items())),
                "accepted_by_type": dict(sorted(self.accepted.items(), key=lambda kv: str(kv[0]))),
                "problems": list(self.problems)}


class ZmqFuzzer:
    """Fires batches of cases at a control address over ``n`` DEALER sockets, pipelined
    (each socket's replies come back in its order), and tallies the answers."""

    def __init__(self, address, n=4, timeout_s=20.0):
        self.ctx = zmq.Context()
        self.socks = []
        for _ in range(n):
            sock = self.ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(address)
            self.socks.append(sock)
        self.timeout_s = timeout_s
        self.tally = Tally()
        self._sentinel = 0

    def send(self, cases):
        """Send ``cases`` (each has one expected answer) and record the replies."""
        queues = [cases[i::len(self.socks)] for i in range(len(self.socks))]
        for sock, queue in zip(self.socks, queues):
            for case in queue:
                sock.send_multipart(list(case.payload))
        for sock, queue in zip(self.socks, queues):
            for case in queue:
                self.tally.record(case, self._recv(sock, 1))

    def _recv(self, sock, n):
        replies, deadline = [], time.monotonic() + self.timeout_s
        while len(replies) < n:
            left = deadline - time.monotonic()
            if left <= 0 or not sock.poll(int(left * 1000) + 1):
                break
            replies.append(json.loads(sock.recv_multipart()[-1]))
        return replies

    def settle(self):
        """A ping with a fresh id on every socket: the very next reply must be its pong, or
        some request got more than one answer.  True if all were."""
        clean = True
        for sock in self.socks:
            self._sentinel += 1
            sock.send(encode({"type": "ping", "id": f"sentinel-{self._sentinel}"}))
            while True:
                reply = self._recv(sock, 1)
                if reply and reply[0].get("id") == f"sentinel-{self._sentinel}":
                    break
                if not reply:
                    return False
                self.tally.extra += 1
                clean = False
        return clean

    def request(self, obj):
        """One request on the first socket after a settle: its reply (or None)."""
        self.socks[0].send(encode(obj))
        reply = self._recv(self.socks[0], 1)
        return reply[0] if reply else None

    def close(self):
        self.ctx.destroy(linger=0)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class OscFuzzer:
    """Sends OSC cases one at a time over UDP (lock-step, so loopback loses nothing) and
    tallies the answers; a case with no expected answer is checked by the next one's."""

    def __init__(self, port, host="127.0.0.1", timeout_s=10.0):
        self.target = (host, port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.timeout_s = timeout_s
        self.tally = Tally()

    def send(self, cases):
        for case in cases:
            self.sock.sendto(case.payload, self.target)
            replies = [self._recv() for _ in case.expects]
            self.tally.record(case, [r for r in replies if r is not None])

    def _recv(self):
        self.sock.settimeout(self.timeout_s)
        try:
            return osc_reply(self.sock.recv(65536))
        except socket.timeout:
            return None

    def settle(self):
        """A ping with a fresh id: the next reply must be its own (nothing was answered twice
        and garbage went unanswered)."""
        self.sock.sendto(osc_datagram("/ostinato/ping", ["id", "osc-sentinel"]), self.target)
        while True:
            reply = self._recv()
            if reply is None:
                return False
            if reply.get("id") == "osc-sentinel":
                return self.tally.extra == 0
            self.tally.extra += 1

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


# ---------------------------------------------------------------- is the music still playing?

class NoteCounter(BasePort):
    """An output that counts the note-ons it is sent (the BasePort contract, in memory)."""

    name = "note-counter"

    def __init__(self):
        super().__init__()
        self.notes = 0
        self._lock = threading.Lock()

    def _send(self, status, data1, data2, t_ns, beat, session):
        if status & 0xF0 == 0x90 and data2 > 0:
            with self._lock:
                self.notes += 1


def music_plays(notes, zmq_fuzzer, more=5, timeout_s=60.0):
    """Set the music going again (whatever the storm left) and wait for ``more`` notes;
    the replies to the set-up requests, for a failure's message."""
    replies = []
    for request in ({"type": "session", "action": "open", "session": "main", "state": "explore"},
                    {"type": "start"}, {"type": "tempo", "bpm": 140.0, "transition": "now"},
                    {"type": "mood", "arousal": 0.9, "intensity": 0.9, "transition": "now"}):
        replies.append(zmq_fuzzer.request(request))
        if replies[-1] is None:
            raise TimeoutError(f"no reply to {request}")
    before, deadline = notes.notes, time.monotonic() + timeout_s
    while notes.notes < before + more and time.monotonic() < deadline:
        time.sleep(0.05)
    return notes.notes - before, replies


def diagnose(srv):
    """The engine's state, for a failure message."""
    return (f"state {srv.state}, engine thread alive {srv.engine.threads_alive()[0]}, generator alive "
            f"{srv.engine.threads_alive()[1]}, sessions {[(n, s.slot, s.mood) for n, s in srv.sessions.items()]}, "
            f"frozen {list(srv.seq.frozen)}; " + "; ".join(
                f"{n}: now_tick {srv.seq.ns_tick(s.slot, time.monotonic_ns()):.1f} gen_tick "
                f"{srv.rt.gen_tick[s.slot]} head {srv.rt.head[s.slot]} ready {srv.rt.ready[s.slot]} "
                f"tail {srv.rt.tail[s.slot]} active {srv.rt.active[s.slot]} bpm "
                f"{srv.seq.bpm_at(s.slot, srv.seq.ns_tick(s.slot, time.monotonic_ns())):.1f} asap "
                f"{srv.seq.asap_tick[s.slot]} entry {srv.rt.entry[s.slot]} switch {srv.rt.switch_tick[s.slot]}"
                for n, s in srv.sessions.items()))
