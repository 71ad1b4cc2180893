"""libjack through ctypes, for the native JACK clients (``realtime.jackreader``,
``realtime.jackwriter``, ``realtime.jackcapture``).

Each of those clients has a process callback that is native code: a numba
``@cfunc(int32(uint32, voidptr))`` registered on ``libjack.so.0``, working on one
preallocated int64 state array whose address is the callback's argument, so it
allocates nothing, touches no Python object and raises nothing.  Pointers are passed to
libjack as ``c_uint64`` (numba calls such ctypes functions in nopython mode).  This
module loads the library and declares its functions, and holds what the clients share:
the clock offset between JACK and ``time.monotonic_ns()``, the shutdown callback, the
port listing and a close that survives a dead server.
"""
import ctypes
import ctypes.util
import logging

import numpy as np
from numba import carray, cfunc, njit, types

from engine.errors import PortError

log = logging.getLogger("ostinato.jackmidi")

_lib = None


def load_libjack():
    """libjack.so.0 with the types of the functions used declared (and libc's memcpy,
    sched_getscheduler and clock_gettime as ``memcpy_`` etc.), loaded once a process."""
    global _lib
    if _lib is not None:
        return _lib
    try:
        lib = ctypes.CDLL(ctypes.util.find_library("jack") or "libjack.so.0")
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError as exc:
        raise PortError(f"cannot load libjack.so.0 (Debian package libjack-jackd2-0): {exc}")
    u64, u32, i32 = ctypes.c_uint64, ctypes.c_uint32, ctypes.c_int32
    for name, res, args in (
            ("jack_client_open", u64, (ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_int))),
            ("jack_client_close", i32, (u64,)),
            ("jack_port_register", u64, (u64, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                                         ctypes.c_ulong)),
            ("jack_port_name", ctypes.c_char_p, (u64,)),
            ("jack_set_process_callback", i32, (u64, u64, u64)),
            ("jack_set_xrun_callback", i32, (u64, u64, u64)),
            ("jack_activate", i32, (u64,)),
            ("jack_deactivate", i32, (u64,)),
            ("jack_connect", i32, (u64, ctypes.c_char_p, ctypes.c_char_p)),
            ("jack_get_ports", ctypes.POINTER(ctypes.c_char_p),
             (u64, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong)),
            ("jack_free", None, (ctypes.c_void_p,)),
            ("jack_port_get_buffer", u64, (u64, u32)),
            ("jack_midi_get_event_count", u32, (u64,)),
            ("jack_midi_event_get", i32, (u64, u64, u32)),
            ("jack_midi_get_lost_event_count", u32, (u64,)),
            ("jack_last_frame_time", u32, (u64,)),
            ("jack_frame_time", u32, (u64,)),
            ("jack_get_sample_rate", u32, (u64,)),
            ("jack_get_buffer_size", u32, (u64,)),
            ("jack_midi_clear_buffer", None, (u64,)),
            ("jack_midi_event_write", i32, (u64, u32, u64, ctypes.c_size_t)),
            ("jack_get_cycle_times", i32, (u64, u64, u64, u64, u64)),
            ("jack_on_shutdown", None, (u64, u64, u64)),
            ("jack_get_time", u64, ()),
            ("jack_port_connected_to", i32, (u64, ctypes.c_char_p))):
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    memcpy = libc.memcpy
    memcpy.restype, memcpy.argtypes = u64, (u64, u64, ctypes.c_size_t)
    lib.memcpy_ = memcpy
    policy = libc.sched_getscheduler
    policy.restype, policy.argtypes = i32, (i32,)
    lib.sched_getscheduler_ = policy
    gettime = libc.clock_gettime
    gettime.restype, gettime.argtypes = i32, (i32, u64)
    lib.clock_gettime_ = gettime
    _lib = lib
    return lib


def clock_offset(lib):
    """A nopython function: ``time.monotonic_ns()`` minus JACK's clock, in ns, now.

    jack2 keeps its time (``jack_get_time``, the cycle times) on CLOCK_MONOTONIC_RAW
    where the kernel has it, which is not Python's monotonic clock: NTP slews
    CLOCK_MONOTONIC, and on this machine the two were 253 ms apart.  So each cycle
    measures the difference afresh (the slew is at most 500 ppm, i.e. 2.7 us in a
    5.3 ms period): JACK's clock read between two readings of CLOCK_MONOTONIC, retried
    when the two are more than 2 us apart (the thread was preempted in between), to
    about 1 us (jack_get_time's unit).  ``hdr[i:i + 4]``: four words of scratch for two
    timespecs, at address ``base + 8 * i``.
    """
    gettime, jack_time = lib.clock_gettime_, lib.jack_get_time

    @njit(nogil=True)
    def mono_minus_jack(hdr, base, i):
        for _ in range(8):
            gettime(np.int32(1), np.uint64(base + 8 * i))  # CLOCK_MONOTONIC
            j = np.int64(jack_time())
            gettime(np.int32(1), np.uint64(base + 8 * (i + 2)))
            a = hdr[i] * 1_000_000_000 + hdr[i + 1]
            b = hdr[i + 2] * 1_000_000_000 + hdr[i + 3]
            if b - a <= 2000:
                break
        # jack_get_time truncates to the microsecond: its true value is half a us more
        return (a + b) // 2 - j * 1000 - 500

    return mono_minus_jack


def shutdown_callback(header_words, down):
    """JACK's shutdown callback for a client whose state array has ``header_words``
    header words: it sets word ``down`` (the server went away)."""
    @cfunc(types.void(types.voidptr), nopython=True)
    def shutdown(arg):
        hdr = carray(arg, header_words, np.int64)
        hdr[down] = 1

    return shutdown


def close_client(client, down):
    """Deactivate and close a client, unless its server went away: then leave it be.

    jack2 (1.9.21 here) can crash the process when a client whose server died is
    closed: ``jack_client_close`` unmaps the client's shared synchronisation memory while
    one of libjack's own threads for that client may still wait on it.  Seen here as
    segfaults inside libjack, in the thread of a client whose server had just stopped.
    What a dead client holds (a few threads that end, a few mappings) is left behind
    instead; a reopened client is a new one.
    """
    if down:
        log.warning("JACK went away: its old client is left unclosed (closing one whose "
                    "server died can crash libjack)")
        return
    lib = load_libjack()
    lib.jack_deactivate(client)
    lib.jack_client_close(client)


def port_names(lib, client, flags):
    """Names of the MIDI ports with JACK port ``flags`` (0x1 inputs, 0x2 outputs)."""
    arr = lib.jack_get_ports(client, None, b"midi", flags)
    names = []
    if arr:
        i = 0
        while arr[i]:
            names.append(arr[i].decode(errors="replace"))
            i += 1
        lib.jack_free(ctypes.cast(arr, ctypes.c_void_p))
    return names
