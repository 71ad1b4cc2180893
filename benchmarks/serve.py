"""``ostinato serve`` as a child process, and a listener on its event stream.

The benchmarks measure the server the way a game uses it: a separate process, reached
over ZeroMQ on 127.0.0.1 (and JACK MIDI), so the listener never shares the server's
GIL.  ``time.monotonic_ns`` is one system-wide clock, so times taken in either process
compare directly.
"""
import collections
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import zmq

from engine.errors import ServerUnavailable

from .stats import free_port

REPO = Path(__file__).resolve().parents[1]


def is_ensemble(model):
    """Whether the model file plays voices (an ensemble's vocabulary), read from its
    metadata."""
    from engine.modelfile import read_model_file
    from engine.vocab import Vocab

    meta, _ = read_model_file(model)
    return Vocab.from_dict(meta["vocab"]).n_voices > 0


class ServeProcess:
    """``python -m realtime.cli serve`` with a control socket, and optionally the event
    stream and a JACK virtual MIDI port, on free ports.  Use as a context manager;
    ``t_start_ns`` is taken just before the process is spawned.  ``state``: the preset
    it starts in (None: serve's default).  An ensemble model is served without the
    critic, which drafts one line only."""

    def __init__(self, model, sessions=16, events=True, jack_port=None, env=None,
                 ready_timeout_s=180.0, jack_backend="native", state=None, bind_tries=3):
        self.model, self.sessions, self.jack_port = str(model), sessions, jack_port
        self.state, self.ensemble = state, is_ensemble(model)
        self.jack_backend = jack_backend  # "native" (the default) or "rtmidi" (baseline)
        self.control = f"tcp://127.0.0.1:{free_port()}"
        self.events = f"tcp://127.0.0.1:{free_port()}" if events else None
        self.env = dict(os.environ, **(env or {}))
        self.ready_timeout_s = ready_timeout_s
        self.bind_tries = bind_tries  # 1: a caller that connects before ``wait_ready``
        self.lines = collections.deque(maxlen=200)
        self.t_start_ns = self.t_ready_ns = None
        self._ready = threading.Event()
        self._proc = self._reader = None

    def command(self):
        cmd = [sys.executable, "-m", "realtime.cli", "serve", "--model", self.model,
               "--control", self.control, "--events", self.events or "none",
               "--sessions", str(self.sessions), "--osc", "0"]  # OSC is not measured
        if self.state:
            cmd += ["--state", self.state]
        if self.ensemble:
            cmd += ["--critic", "none"]
        if self.jack_port:
            cmd += ["--midi", "virtual", "--api", "jack", "--port-name", self.jack_port,
                    "--jack-backend", self.jack_backend]
        else:
            cmd += ["--midi", "none"]
        return cmd

    def __enter__(self):
        self._spawn()
        return self

    def _spawn(self):
        self.t_start_ns = time.monotonic_ns()
        self._proc = subprocess.Popen(self.command(), cwd=REPO, env=self.env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True)
        self._reader = threading.Thread(target=self._read, name="serve-stdout", daemon=True)
        self._reader.start()

    def _respawn_on_taken_port(self):
        """Whether the server exited because a port ``free_port`` found was taken before it
        bound it (any socket's outgoing connection may get that ephemeral port meanwhile);
        then it is started again on new ports."""
        if not self._exited() or "Address already in use" not in self.output():
            return False
        self._proc.stdout.close()
        self.control = f"tcp://127.0.0.1:{free_port()}"
        self.events = f"tcp://127.0.0.1:{free_port()}" if self.events else None
        self.lines.clear()
        self._ready.clear()
        self.t_ready_ns = None
        self._spawn()
        return True

    def _exited(self):
        """Whether the server has exited.  Once its output has ended it is waited for:
        for a moment after the pipe closes, ``poll`` may still find it running."""
        if self._reader.is_alive():
            return self._proc.poll() is not None
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            return False
        return True

    def _read(self):
        for line in self._proc.stdout:
            self.lines.append(line.rstrip())
            if "ready in" in line and self.t_ready_ns is None:
                self.t_ready_ns = time.monotonic_ns()
            # printed after every address line (a traceback may quote a "try:" line too)
            if line.startswith("  try:") and self.t_ready_ns is not None:
                self._ready.set()
        self._ready.set()  # the process ended: wake a waiter

    def wait_ready(self):
        """Block until the server printed its addresses; ServerUnavailable if it did not.
        A server that could not bind its ports is started again on others (``bind_tries``
        starts in all): read ``control`` and ``events`` after this returns."""
        self._ready.wait(self.ready_timeout_s)
        for _ in range(self.bind_tries - 1):
            if not self._respawn_on_taken_port():
                break
            self._ready.wait(self.ready_timeout_s)
        if self.t_ready_ns is None or self._exited():
            raise ServerUnavailable("ostinato serve did not start: " + self.output())
        if self.events and not any(("event stream: " + self.events) in l for l in self.lines):
            raise ServerUnavailable("ostinato serve has no event stream: " + self.output())
        if self.jack_port and not any(("MIDI port: " + self.jack_port) in l for l in self.lines):
            raise ServerUnavailable("ostinato serve has no JACK MIDI port: " + self.output())
        return self

    def output(self):
        return " / ".join(list(self.lines)[-8:]) or "no output"

    def __exit__(self, *exc):
        """SIGTERM: the server releases every sounding note and exits."""
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        self._reader.join(5)
        self._proc.stdout.close()
        return False

    @property
    def returncode(self):
        return self._proc.poll()

    @property
    def pid(self):
        """The server's process id (``python -m realtime.cli serve`` itself, no shell)."""
        return self._proc.pid


def drain(sock, out):
    """Append (arrival ns, raw bytes) of every frame waiting on ``sock`` to ``out``."""
    while True:
        try:
            data = sock.recv(zmq.NOBLOCK)
        except zmq.Again:
            return
        out.append((time.monotonic_ns(), data))


class EventStream:
    """A SUB socket on the event stream; frames are stamped on arrival, parsed later."""

    def __init__(self, address, context):
        self.sock = context.socket(zmq.SUB)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVHWM, 0)          # never drop: every event is counted
        self.sock.setsockopt(zmq.RECONNECT_IVL, 5)   # the server may bind after we connect
        self.sock.connect(address)

    def next(self, deadline_ns):
        """(arrival ns, event dict) of the next frame, or None at ``deadline_ns``."""
        left = (deadline_ns - time.monotonic_ns()) // 1_000_000
        if left < 0 or not self.sock.poll(max(0, int(left)) + 1):
            return None
        data = self.sock.recv()
        return time.monotonic_ns(), json.loads(data)

    def record(self, seconds):
        """Every frame arriving in the next ``seconds``: [(arrival ns, raw bytes)]."""
        out = []
        deadline = time.monotonic_ns() + int(seconds * 1e9)
        sock = self.sock
        while True:
            left = (deadline - time.monotonic_ns()) // 1_000_000
            if left < 0:
                return out
            if sock.poll(int(left) + 1):
                drain(sock, out)

    @contextlib.contextmanager
    def recording(self):
        """Read every frame in a thread of its own while the block runs, so that frames are
        stamped as they come even while this thread waits (on a probe process starting,
        say); yields the list [(arrival ns, raw bytes)] it fills."""
        out, stop = [], threading.Event()

        def read():
            while not stop.is_set():
                if self.sock.poll(20):
                    drain(self.sock, out)

        thread = threading.Thread(target=read, name="bench-recorder", daemon=True)
        thread.start()
        try:
            yield out
        finally:
            stop.set()
            thread.join()

    def wait_for_music(self, timeout_s=10.0):
        """Block until a note arrives: the subscription is live and the server plays."""
        deadline = time.monotonic_ns() + int(timeout_s * 1e9)
        while (got := self.next(deadline)) is not None:
            if got[1].get("type") == "note_on":
                return got
        raise ServerUnavailable(f"no note on the event stream within {timeout_s} s")

    def close(self):
        self.sock.close(0)
