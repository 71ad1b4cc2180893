"""The server's clock, and waiting for a deadline without holding the GIL.

Every time the server reads and every wait it makes for a deadline go through one clock
object, a constructor argument of ``Server``: ``MONOTONIC`` plays music, a
``ManualClock`` lets a test move time by hand.

The player waits for each message's time.  A wait that spins in Python holds the GIL
and delays every other Python thread (the control thread answering a request, the
composer) by up to a switch interval; measured here, a thread sleeping to a deadline
beside such a spinner woke milliseconds late.  So on the real clock the player sleeps
(``Event.wait``, with 1 us timer slack) until just before a deadline and spins the rest
of the way inside a ``nogil`` numba kernel, which reads CLOCK_MONOTONIC (the clock of
``time.monotonic_ns()``) through ``clock_gettime``.
"""
import contextlib
import ctypes
import ctypes.util
import sys
import time

import numpy as np
from numba import njit

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
_gettime = _libc.clock_gettime
_gettime.restype, _gettime.argtypes = ctypes.c_int, (ctypes.c_int, ctypes.c_uint64)
# time.monotonic_ns() reads CLOCK_MONOTONIC on Linux (and on macOS a clock of the same
# rate), so a deadline from it is met on this clock
_CLOCK_MONOTONIC = time.CLOCK_MONOTONIC

# (not cached: numba does not cache functions that call ctypes pointers; this compiles in
# well under a second)


@njit(nogil=True)
def _now(scratch):
    _gettime(np.int32(_CLOCK_MONOTONIC), np.uint64(scratch.ctypes.data))
    return scratch[0] * 1_000_000_000 + scratch[1]


@njit(nogil=True)
def _spin_until(t_ns, scratch):
    now = _now(scratch)
    while now < t_ns:
        now = _now(scratch)
    return now


class MonotonicClock:
    """The machine's CLOCK_MONOTONIC (``time.monotonic_ns()``): the clock music plays on."""

    def now_ns(self):
        return time.monotonic_ns()

    def sleep(self, event, until_ns):
        """Sleep until the clock reads ``until_ns`` or ``event`` is set; True if it was."""
        return event.wait(max(0.0, (until_ns - time.monotonic_ns()) / 1e9))


MONOTONIC = MonotonicClock()


class ManualClock:
    """A clock that only its owner moves (``t``, in ns): a test's seam.

    Nothing waits on it for real: a wait for a time it has not reached returns at once
    (the message is still stamped with its time), and ``sleep`` returns once another
    thread has moved the clock past the deadline or set the event.
    """

    def __init__(self, t_ns=0):
        self.t = t_ns

    def now_ns(self):
        return self.t

    def sleep(self, event, until_ns):
        while self.t < until_ns:
            if event.wait(0.001):  # the owner moves ``t`` from another thread
                return True
        return event.is_set()


class Waiter:
    """``wait_until(t_ns)``: return at time ``t_ns`` of ``clock`` or just after.

    On ``MONOTONIC`` it spins without the GIL; one per thread (it owns a scratch
    timespec).  On any other clock it never spins: it returns the clock's reading at
    once if that is at or past ``t_ns``, else ``t_ns`` (a virtual clock is not waited
    for in real time)."""

    def __init__(self, clock=MONOTONIC):
        self.clock = clock
        self._real = clock is MONOTONIC
        if self._real:
            self._scratch = np.zeros(2, np.int64)
            _spin_until(0, self._scratch)  # compiled (or loaded from the cache) now

    def wait_until(self, t_ns):
        """Wait for ``t_ns``; returns the time it returned at (ns)."""
        if self._real:
            return int(_spin_until(t_ns, self._scratch))
        return max(int(t_ns), self.clock.now_ns())


def fine_timer_slack(ns=1000):
    """Let Linux wake the calling thread within ``ns`` of its timeouts instead of the
    default 50 us (``prctl(PR_SET_TIMERSLACK)``); a no-op elsewhere."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).prctl(29, ns, 0, 0, 0)  # 29: PR_SET_TIMERSLACK
