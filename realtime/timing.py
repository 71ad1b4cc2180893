"""Waiting for a deadline without holding the GIL.

The player waits for each message's time.  A wait that spins in Python holds the GIL
and delays every other Python thread (the control thread answering a request, the
composer) by up to a switch interval; measured here, a thread sleeping to a deadline
beside such a spinner woke milliseconds late.  So the player sleeps (``Event.wait``, with
1 us timer slack) until just before a deadline and spins the rest of the way inside a
``nogil`` numba kernel, which reads CLOCK_MONOTONIC (the clock of
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


class Waiter:
    """``wait_until(t_ns)``: return at ``time.monotonic_ns()`` time ``t_ns`` or just
    after, spinning without the GIL.  One per thread (it owns a scratch timespec)."""

    def __init__(self):
        self._scratch = np.zeros(2, np.int64)
        _spin_until(0, self._scratch)  # compiled (or loaded from the cache) now

    def wait_until(self, t_ns):
        """Spin to ``t_ns``; returns the time it returned at (ns)."""
        return int(_spin_until(t_ns, self._scratch))


def fine_timer_slack(ns=1000):
    """Let Linux wake the calling thread within ``ns`` of its timeouts instead of the
    default 50 us (``prctl(PR_SET_TIMERSLACK)``); a no-op elsewhere."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).prctl(29, ns, 0, 0, 0)  # 29: PR_SET_TIMERSLACK
