"""Acknowledgement round trip under load: how long a game waits for a mood's reply.

A second process (as a game engine is) sends a mood change to one session every 20-80 ms
(the musical gaps of ``latency``: an idle CPU and libzmq wake slower after a gap than
back to back) and times each request until its reply, while the sessions of the jitter
run play on.  The changes go at the next bar, so that the music being
measured beside them goes on as it would; the reply says the change is applied.
"""
import json
import subprocess
import sys
import time

import numpy as np

from .latency import GAP_MS
from .serve import REPO


class AckProbe:
    """``with AckProbe(address, session, seconds): ...``; then ``.samples_ns``.

    Entering starts the probe process and returns once its client is connected; it then
    sends for ``seconds``, and leaving the block waits for it (at most ``seconds`` + 10 s)."""

    def __init__(self, address, session, seconds, seed=0):
        self.args = [address, session, str(seconds), str(seed)]
        self.seconds = seconds
        self.samples_ns = []
        self._proc = None

    def __enter__(self):
        self._proc = subprocess.Popen([sys.executable, "-m", "benchmarks.ack", *self.args],
                                      cwd=REPO, stdout=subprocess.PIPE, text=True)
        # its start-up (imports, connecting) is over before the measuring begins
        if self._proc.stdout.readline().strip() != "ready":
            self._proc.kill()
            self._proc.communicate()
            raise RuntimeError("the acknowledgement probe did not start")
        return self

    def __exit__(self, *exc):
        try:
            out, _ = self._proc.communicate(timeout=self.seconds + 10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.communicate()
            raise RuntimeError("the acknowledgement probe did not finish") from None
        if self._proc.returncode != 0:
            raise RuntimeError(f"the acknowledgement probe failed (exit {self._proc.returncode})")
        self.samples_ns = json.loads(out)["rtt_ns"]
        return False


def probe(address, session, seconds, seed=0):
    """The probe process: round trips (ns) of moods sent to ``session`` for ``seconds``."""
    from bindings.client import Client

    rng = np.random.default_rng(seed)
    rtt = []
    with Client(address, timeout=5.0) as client:
        client.ping()  # connected before the clock starts
        print("ready", flush=True)
        end = time.monotonic() + seconds
        i = 0
        while time.monotonic() < end:
            t0 = time.monotonic_ns()
            client.mood(intensity=0.3 + 0.4 * (i % 2), transition="bar", session=session)
            rtt.append(time.monotonic_ns() - t0)
            i += 1
            time.sleep(rng.uniform(*GAP_MS) / 1e3)
    return rtt


if __name__ == "__main__":
    address, session, seconds, seed = sys.argv[1:5]
    print(json.dumps({"rtt_ns": probe(address, session, float(seconds), int(seed))}))
