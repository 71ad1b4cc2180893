"""A JACK MIDI reader whose process callback is native code: nothing it receives is lost
while Python holds the GIL.

rtmidi's JACK input runs C++ in JACK's process thread too, but a reader that polls it
still shares the fate of every Python client.  Here the process callback is a numba
``@cfunc(int32(uint32, voidptr))`` registered through ctypes on ``libjack.so.0``: each
cycle it copies every event of the input port, with its absolute frame, into one
preallocated int64 array (a single-producer / single-consumer ring), and counts what
lets a test tell *where* a message was lost:

- ``cycles`` and ``skipped_frames``: the frame time seen by consecutive callbacks; a
  jump of more than one period means this client missed cycles (an xrun);
- ``xruns``: JACK's xrun callback (any client late, anywhere in the graph); it comes on
  a notification thread, so the frame logged for it (``xrun_frames_at``) is when it was
  delivered, at or after the xrun (much after, on a loaded non-realtime machine);
- ``writer_lost``: ``jack_midi_get_lost_event_count`` of the buffer read, i.e. events
  the *writer* could not put into its port buffer;
- ``overflow``: events this reader dropped because its ring was full (never, at the
  default size, unless nobody drains it for minutes);
- ``realtime``: whether JACK runs this client's process thread under SCHED_FIFO/RR
  (it does when jackd runs with ``-R`` and may).

The callback allocates nothing, touches no Python object and raises nothing.  Pointers
are passed to libjack as ``c_uint64`` (numba calls such ctypes functions in nopython
mode).  Events longer than 8 bytes (SysEx) keep their first 8 bytes and are counted in
``truncated``.
"""
import ctypes
import ctypes.util
import functools
import logging
import threading
import time

import numpy as np
from numba import carray, cfunc, njit, types

from engine.errors import PortError

log = logging.getLogger("ostinato.jackmidi")

_lib = None

# header words of the state array; events follow from _H on, 4 words each:
# [absolute frame, time (monotonic ns), size, up to 8 data bytes little-endian]
(_PORT, _CLIENT, _BASE, _CAP, _W, _R, _OVERFLOW, _CYCLES, _PREV, _SKIPPED, _SKIPS,
 _XRUNS, _WLOST, _TRUNC, _EV0, _EV1, _EV2, _LOGW, _NFR, _POLICY,
 _CF, _CU, _NU, _PU, _TS, _TSN, _TS2, _TSN2, _DOWN) = range(29)  # _CF.._PU: jack_get_cycle_times'
# outputs; _DOWN: set by JACK's shutdown callback (the server went away)
_SLOT = 4
_LOG0 = 32          # a ring of _LOGN frames at which a skip or an xrun was seen
_LOGN = 1024
_H = _LOG0 + _LOGN


def _libjack():
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


def _clock_offset(lib):
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


def _shutdown_callback(header_words, down):
    """JACK's shutdown callback for a client whose state array has ``header_words``
    header words: it sets word ``down`` (the server went away)."""
    @cfunc(types.void(types.voidptr), nopython=True)
    def shutdown(arg):
        hdr = carray(arg, header_words, np.int64)
        hdr[down] = 1

    return shutdown


@functools.cache  # compiled once a process, when the first client opens
def _callbacks():
    lib = _libjack()
    get_buffer, count = lib.jack_port_get_buffer, lib.jack_midi_get_event_count
    event_get, lost = lib.jack_midi_event_get, lib.jack_midi_get_lost_event_count
    last_frame, frame_time, memcpy = lib.jack_last_frame_time, lib.jack_frame_time, lib.memcpy_
    policy = lib.sched_getscheduler_
    cycle_times, mono_minus_jack = lib.jack_get_cycle_times, _clock_offset(lib)

    @cfunc(types.int32(types.uint32, types.voidptr), nopython=True)
    def process(nframes, arg):
        hdr = carray(arg, _H, np.int64)
        now = np.int64(last_frame(np.uint64(hdr[_CLIENT])))
        prev = hdr[_PREV]
        if hdr[_CYCLES] == 0:
            hdr[_POLICY] = policy(np.int32(0))  # this (process) thread's scheduling policy
        elif now - prev != nframes:
            hdr[_SKIPPED] += now - prev - nframes
            hdr[_SKIPS] += 1
            hdr[_LOG0 + hdr[_LOGW] % _LOGN] = now
            hdr[_LOGW] += 1
        hdr[_PREV] = now
        hdr[_CYCLES] += 1
        hdr[_NFR] = nframes
        buf = get_buffer(np.uint64(hdr[_PORT]), nframes)
        hdr[_WLOST] += lost(buf)
        n = count(buf)
        cap = hdr[_CAP]
        base = hdr[_BASE]
        ring = carray(arg, _H + _SLOT * cap, np.int64)
        # the cycle's start in monotonic time and its length, by JACK's own clock model:
        # an event at offset o sounds at start + o * length / nframes
        hdr[_CF] = 0
        if cycle_times(np.uint64(hdr[_CLIENT]), np.uint64(base + 8 * _CF), np.uint64(base + 8 * _CU),
                       np.uint64(base + 8 * _NU), np.uint64(base + 8 * _PU)) != 0:
            hdr[_CU] = 0
            hdr[_NU] = 0
        start_ns = hdr[_CU] * 1000 + mono_minus_jack(hdr, base, _TS)
        span_ns = (hdr[_NU] - hdr[_CU]) * 1000
        w = hdr[_W]
        ev = np.uint64(base + 8 * _EV0)
        for j in range(n):
            if event_get(ev, buf, np.uint32(j)) != 0:
                continue
            if w - hdr[_R] >= cap:
                hdr[_OVERFLOW] += 1
                continue
            size = hdr[_EV1]
            offset = hdr[_EV0] & 0xFFFFFFFF
            slot = _H + _SLOT * (w % cap)
            ring[slot] = now + offset
            ring[slot + 1] = start_ns + offset * span_ns // nframes if span_ns > 0 else 0
            ring[slot + 2] = size
            ring[slot + 3] = 0
            if size > 8:
                hdr[_TRUNC] += 1
                size = 8
            memcpy(np.uint64(base + 8 * (slot + 3)), np.uint64(hdr[_EV2]), size)
            w += 1
        # an opaque call between the event stores and the index store keeps them in order
        frame_time(np.uint64(hdr[_CLIENT]))
        hdr[_W] = w
        return 0

    @cfunc(types.int32(types.voidptr), nopython=True)
    def xrun(arg):
        hdr = carray(arg, _H, np.int64)
        hdr[_XRUNS] += 1
        hdr[_LOG0 + hdr[_LOGW] % _LOGN] = -np.int64(frame_time(np.uint64(hdr[_CLIENT])))
        hdr[_LOGW] += 1
        return 0

    return process, xrun, _shutdown_callback(_H, _DOWN)


def _close_client(client, down):
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
    lib = _libjack()
    lib.jack_deactivate(client)
    lib.jack_client_close(client)


def _port_names(lib, client, flags):
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


class NativeJackReader:
    """A second JACK client on the MIDI output port whose name contains ``source``
    (with ``source=None``, an input ``input_name`` that others connect to).

    ``messages``: [(absolute frame, bytes tuple)] in arrival order, drained from the ring
    by a Python thread; ``stamped``: [(absolute frame, t_ns, bytes tuple)], where t_ns is
    when the frame sounds in ``time.monotonic_ns()`` time, by JACK's clock model of the
    cycle (``jack_get_cycle_times``: jack2 keeps it on CLOCK_MONOTONIC), so that a DAW's
    view of an event's time can be set against the time it was scheduled for;
    ``stats()``: the counters above.  Use as a ``with`` block.
    """

    def __init__(self, source, client_name="ostinato-native-reader", capacity=1 << 18,
                 timeout_s=10.0, poll_s=0.005):
        self.source, self.client_name = source, client_name
        self.capacity, self.timeout_s, self.poll_s = capacity, timeout_s, poll_s
        self._state = np.zeros(_H + _SLOT * capacity, dtype=np.int64)
        self._messages = []
        self._probe = None      # after sync(): bytes that are counted, not recorded
        self._probes_seen = 0
        self._lock = threading.Lock()
        self._quit = threading.Event()
        self._client = 0
        self._thread = None
        self.port = None
        self.rate = 0

    def __enter__(self):
        lib = _libjack()
        process, xrun, shutdown = _callbacks()
        status = ctypes.c_int(0)
        client = lib.jack_client_open(self.client_name.encode(), 1, ctypes.byref(status))  # JackNoStartServer
        if not client:
            raise PortError(f"cannot open JACK client {self.client_name!r} (status {status.value:#x})")
        self._client = client
        try:
            port = lib.jack_port_register(client, b"in", b"8 bit raw midi", 0x1, 0)  # JackPortIsInput
            if not port:
                raise PortError("cannot register a JACK MIDI input port")
            st = self._state
            st[_PORT], st[_CLIENT], st[_CAP] = port, client, self.capacity
            st[_BASE] = st.ctypes.data
            arg = st.ctypes.data
            lib.jack_on_shutdown(client, shutdown.address, arg)
            if lib.jack_set_process_callback(client, process.address, arg) or \
                    lib.jack_set_xrun_callback(client, xrun.address, arg) or lib.jack_activate(client):
                raise PortError("cannot set up the native JACK reader")
            self.rate = lib.jack_get_sample_rate(client)
            mine = lib.jack_port_name(port)
            self.input_name = mine.decode()
            deadline = time.monotonic() + self.timeout_s
            while self.source is not None:  # the writer may have just registered its port
                names = self._ports(lib, 0x2)  # JackPortIsOutput
                matches = [n for n in names if self.source in n]
                if len(matches) == 1:
                    self.port = matches[0]
                    if lib.jack_connect(client, self.port.encode(), mine):
                        raise PortError(f"cannot connect {self.port} to {mine.decode()}")
                    break
                if time.monotonic() > deadline:
                    raise PortError(f"JACK MIDI output {self.source!r} "
                                    f"{'is ambiguous' if matches else 'did not appear'}: {names}")
                time.sleep(0.02)
        except BaseException:
            self._close()
            raise
        self._thread = threading.Thread(target=self._drain_loop, name="jack-native-reader",
                                        daemon=True)
        self._thread.start()
        return self

    def _ports(self, lib, flags):
        return _port_names(lib, self._client, flags)

    def _drain(self):
        st, cap = self._state, self.capacity
        w, r = int(st[_W]), int(st[_R])
        if w == r:
            return 0
        out = []
        for k in range(r, w):
            slot = _H + _SLOT * (k % cap)
            frame, t_ns, size, data = (int(v) for v in st[slot:slot + 4])
            out.append((frame, t_ns,
                        tuple(data.to_bytes(8, "little", signed=True)[:min(size, 8)])))
        st[_R] = w
        with self._lock:
            if self._probe is not None:
                kept = [m for m in out if m[2] != self._probe]
                self._probes_seen += len(out) - len(kept)
                out = kept
            self._messages.extend(out)
        return w - r

    def _drain_loop(self):
        while not self._quit.is_set():
            if not self._drain():
                time.sleep(self.poll_s)
        self._drain()

    @property
    def messages(self):
        with self._lock:
            return [(frame, data) for frame, _, data in self._messages]

    @property
    def stamped(self):
        with self._lock:
            return list(self._messages)

    def clear(self):
        """Forget what was received so far."""
        self._drain()
        with self._lock:
            self._messages.clear()

    def wait_for(self, count, timeout_s=5.0):
        """``messages`` once ``count`` have arrived, or when ``timeout_s`` is up (a guard
        against a test hanging, not a timing claim)."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                if len(self._messages) >= count or time.monotonic() >= deadline:
                    return [(frame, data) for frame, _, data in self._messages]
            time.sleep(self.poll_s)

    def sync(self, send_probe, probe=(0xFE,)):
        """Call ``send_probe()`` (which writes ``probe`` to the watched port) every 20 ms
        until one arrives: the connection is then live end to end.  Probes are never
        recorded, so pick bytes not otherwise sent (default: Active Sensing)."""
        with self._lock:
            self._probe = tuple(probe)
        deadline = time.monotonic() + self.timeout_s
        while True:
            send_probe()
            until = time.monotonic() + 0.02
            while time.monotonic() < until:
                with self._lock:
                    if self._probes_seen:
                        return
                time.sleep(self.poll_s / 5)
            if time.monotonic() >= deadline:
                raise PortError(f"no probe from {self.port!r} arrived within {self.timeout_s} s")

    def stats(self):
        st = self._state
        log = [int(st[_LOG0 + k % _LOGN]) for k in range(max(0, int(st[_LOGW]) - _LOGN), int(st[_LOGW]))]
        return {"cycles": int(st[_CYCLES]), "skips": int(st[_SKIPS]),
                "skipped_frames": int(st[_SKIPPED]), "xruns": int(st[_XRUNS]),
                "writer_lost": int(st[_WLOST]), "overflow": int(st[_OVERFLOW]),
                "truncated": int(st[_TRUNC]), "period": int(st[_NFR]), "rate": self.rate,
                "realtime": (int(st[_POLICY]) & 0xFF) in (1, 2),  # SCHED_FIFO, SCHED_RR
                "skip_frames_at": [f for f in log if f >= 0],
                "xrun_frames_at": [-f for f in log if f < 0]}

    def _close(self):
        if self._client:
            _close_client(self._client, bool(self._state[_DOWN]))
            self._client = 0

    def __exit__(self, *exc):
        self._quit.set()
        if self._thread is not None:
            self._thread.join()
        self._close()
        self._drain()
        return False


# ---------------------------------------------------------------- the writer

# header words of the writer's state array; events follow from _WH on, 3 words each:
# [t_ns (monotonic), size, up to 8 data bytes little-endian]
(_W_PORT, _W_CLIENT, _W_BASE, _W_CAP, _W_W, _W_R, _W_WRITTEN, _W_LATE, _W_LATE_MAX,
 _W_FULL, _W_CYCLES, _W_NFR, _W_DOWN, _W_CF, _W_CU, _W_NU, _W_PU, _W_BADCLOCK,
 _W_TS, _W_TSN, _W_TS2, _W_TSN2, _W_PEND, _W_RATE, _W_DROP) = range(25)
_WH = 32
_WSLOT = 3


@functools.cache
def _writer_callbacks():
    lib = _libjack()
    get_buffer, clear, write = lib.jack_port_get_buffer, lib.jack_midi_clear_buffer, \
        lib.jack_midi_event_write
    cycle_times, frame_time = lib.jack_get_cycle_times, lib.jack_frame_time
    mono_minus_jack, gettime = _clock_offset(lib), lib.clock_gettime_

    @cfunc(types.int32(types.uint32, types.voidptr), nopython=True)
    def process(nframes, arg):
        hdr = carray(arg, _WH, np.int64)
        base, cap = hdr[_W_BASE], hdr[_W_CAP]
        ring = carray(arg, _WH + _WSLOT * cap, np.int64)
        hdr[_W_CYCLES] += 1
        hdr[_W_NFR] = nframes
        buf = get_buffer(np.uint64(hdr[_W_PORT]), nframes)
        clear(buf)
        client = np.uint64(hdr[_W_CLIENT])
        if hdr[_W_DROP] > 0 and hdr[_W_CYCLES] % hdr[_W_DROP] == 0:
            got = np.int32(-1)  # fault injection (tests): as if JACK had no model now
        else:
            got = cycle_times(client, np.uint64(base + 8 * _W_CF), np.uint64(base + 8 * _W_CU),
                              np.uint64(base + 8 * _W_NU), np.uint64(base + 8 * _W_PU))
        if got != 0 and hdr[_W_RATE] > 0:
            # No clock model this cycle.  It lasts nframes at the rate, and it began at
            # most a period before now (its callback runs within its period): where the
            # last cycle's window ended, if that is so, else a period ago.  A start taken
            # too late would write messages early; this one is right after a cycle with
            # a model and at worst a period early, so messages go late, never early.
            hdr[_W_BADCLOCK] += 1
            gettime(np.int32(1), np.uint64(base + 8 * _W_TS))  # CLOCK_MONOTONIC
            now_ns = hdr[_W_TS] * 1_000_000_000 + hdr[_W_TSN]
            span_ns = np.int64(nframes) * 1_000_000_000 // hdr[_W_RATE]
            start_ns = hdr[_W_PEND]
            if not now_ns - span_ns < start_ns <= now_ns:
                start_ns = now_ns - span_ns
        elif got != 0:  # no rate either (cannot be after open): what is queued, at 0
            hdr[_W_BADCLOCK] += 1
            start_ns, span_ns = np.int64(0), np.int64(0)
        else:
            start_ns = hdr[_W_CU] * 1000 + mono_minus_jack(hdr, base, _W_TS)
            span_ns = (hdr[_W_NU] - hdr[_W_CU]) * 1000
        end_ns = start_ns + span_ns
        w = hdr[_W_W]
        r = hdr[_W_R]
        last = np.int64(0)
        while r < w:
            slot = _WH + _WSLOT * (r % cap)
            t = ring[slot]
            if span_ns > 0 and t >= end_ns:
                break  # a later cycle's
            if span_ns <= 0 or t < start_ns:
                offset = np.int64(0)
                # late only if it was due in the last cycle's window: the windows of two
                # cycles, each by its own clock reading, can leave a gap of a microsecond
                if t < hdr[_W_PEND]:
                    hdr[_W_LATE] += 1
                    late = start_ns - t
                    if late > hdr[_W_LATE_MAX]:
                        hdr[_W_LATE_MAX] = late
            else:  # the nearest frame
                offset = (2 * (t - start_ns) * nframes + span_ns) // (2 * span_ns)
            if offset < last:
                offset = last  # JACK wants offsets in order; stamps never go back anyway
            if offset >= nframes:
                offset = np.int64(nframes - 1)
            if write(buf, np.uint32(offset), np.uint64(base + 8 * (slot + 2)), ring[slot + 1]) != 0:
                hdr[_W_FULL] += 1  # the port buffer is full: the rest waits a cycle
                break
            last = offset
            hdr[_W_WRITTEN] += 1
            r += 1
        hdr[_W_PEND] = end_ns
        # an opaque call between the reads of the events and the index store
        frame_time(client)
        hdr[_W_R] = r
        return 0

    return process, _shutdown_callback(_WH, _W_DOWN)


class NativeJackWriter:
    """A JACK client with one MIDI output port whose process callback is native code: it
    writes each queued message at the frame of its time.

    ``push(t_ns, message)`` queues a message (1 to 3 bytes) for monotonic time ``t_ns``
    in a single-producer / single-consumer ring; the callback converts ``t_ns`` to a
    frame offset with ``jack_get_cycle_times`` and writes it there (in a cycle JACK gives
    no clock model for, counted in ``no_clock``, by the cycle following the last one, or
    starting a period before its callback runs: late then, never early).  A message whose
    time has passed when its cycle runs goes at offset 0 and is counted in ``late``.  So
    that none is late, push each message at least one period plus a margin before its
    time (``period_ns``); the player does (``BasePort.lead_ns``).

    When the JACK server goes away, ``down`` turns True (JACK's shutdown callback) and
    messages pushed are dropped and counted; ``reopen()`` tries to come back.
    """

    def __init__(self, client_name="Ostinato", port_name="out", capacity=1 << 14,
                 _drop_clock_every=0):
        self.client_name, self.port_name, self.capacity = client_name, port_name, capacity
        # fault injection for tests: every Nth cycle behaves as if JACK had no clock model
        # for it (jack_get_cycle_times failing), which no JACK server does on demand
        self._drop_clock_every = int(_drop_clock_every)
        self._state = np.zeros(_WH + _WSLOT * capacity, dtype=np.int64)
        self._client = 0
        self.rate = self.period = 0
        self.full_name = None
        self.dropped = 0

    def open(self):
        """Open the client, register the port and activate; raises PortError."""
        lib = _libjack()
        process, shutdown = _writer_callbacks()
        status = ctypes.c_int(0)
        client = lib.jack_client_open(self.client_name.encode(), 1 | 2, ctypes.byref(status))
        # 1 JackNoStartServer; 2 JackUseExactName: a DAW finds us under our own name
        if not client:
            why = " (the name is taken)" if status.value & 0x04 else ""  # JackNameNotUnique
            raise PortError(f"cannot open JACK client {self.client_name!r}{why} (status "
                            f"{status.value:#x}; is a JACK server running? start one with "
                            "`jackd -d dummy -r 48000 -p 256`)")
        try:
            port = lib.jack_port_register(client, self.port_name.encode(), b"8 bit raw midi",
                                          0x2 | 0x10, 0)  # JackPortIsOutput | JackPortIsTerminal
            if not port:
                raise PortError(f"cannot register JACK MIDI port {self.port_name!r}")
            st = self._state
            st[:_WH] = 0
            st[_W_PORT], st[_W_CLIENT], st[_W_CAP] = port, client, self.capacity
            st[_W_BASE] = st.ctypes.data
            st[_W_RATE] = lib.jack_get_sample_rate(client)  # before the first cycle runs
            st[_W_DROP] = self._drop_clock_every
            lib.jack_on_shutdown(client, shutdown.address, st.ctypes.data)
            if lib.jack_set_process_callback(client, process.address, st.ctypes.data) or \
                    lib.jack_activate(client):
                raise PortError("cannot activate the JACK MIDI output")
            self.rate = lib.jack_get_sample_rate(client)
            self.period = lib.jack_get_buffer_size(client)
            self.full_name = lib.jack_port_name(port).decode()
        except BaseException:
            lib.jack_client_close(client)
            raise
        self._client = client
        return self

    @property
    def period_ns(self):
        return self.period * 1_000_000_000 // max(1, self.rate)

    @property
    def down(self):
        """True once JACK has shut this client down (its server stopped or threw it out)."""
        return not self._client or bool(self._state[_W_DOWN])

    def push(self, t_ns, message):
        """Queue ``message`` (a tuple of 1-3 bytes) for time ``t_ns``; False when it
        was dropped (no JACK, or a full ring)."""
        st = self._state
        w = int(st[_W_W])
        if self.down or w - int(st[_W_R]) >= self.capacity:
            self.dropped += 1
            return False
        slot = _WH + _WSLOT * (w % self.capacity)
        st[slot] = t_ns
        st[slot + 1] = len(message)
        st[slot + 2] = int.from_bytes(bytes(message), "little")
        st[_W_W] = w + 1  # after the event's words: the callback reads up to here
        return True

    @property
    def queued(self):
        """Messages pushed that the callback has not written yet."""
        return int(self._state[_W_W] - self._state[_W_R])

    def inputs(self):
        """The JACK MIDI input ports there are now."""
        return _port_names(_libjack(), self._client, 0x1) if not self.down else []

    def connected_to(self, destination):
        return not self.down and bool(_libjack().jack_port_connected_to(
            int(self._state[_W_PORT]), destination.encode()))

    def connect(self, destination):
        """Connect the port to the JACK MIDI input ``destination``; raises PortError."""
        lib = _libjack()
        err = lib.jack_connect(self._client, self.full_name.encode(), destination.encode())
        if err and err != 17:  # EEXIST: connected already
            raise PortError(f"cannot connect {self.full_name} to {destination!r} (error {err})")

    def stats(self):
        st = self._state
        return {"written": int(st[_W_WRITTEN]), "late": int(st[_W_LATE]),
                "late_max_us": int(st[_W_LATE_MAX]) / 1000, "port_full": int(st[_W_FULL]),
                "dropped": self.dropped, "cycles": int(st[_W_CYCLES]),
                "no_clock": int(st[_W_BADCLOCK]), "rate": self.rate, "period": self.period}

    def close(self):
        """Deactivate and close the client (what is still queued is not written)."""
        if self._client:
            client, self._client = self._client, 0
            _close_client(client, bool(self._state[_W_DOWN]))


# ---------------------------------------------------------------- audio capture

(_A_PORT, _A_CLIENT, _A_BUF, _A_CAP, _A_N, _A_DOWN) = range(6)
_AH = 8


@functools.cache
def _capture_callbacks():
    lib = _libjack()
    get_buffer, memcpy = lib.jack_port_get_buffer, lib.memcpy_

    @cfunc(types.int32(types.uint32, types.voidptr), nopython=True)
    def process(nframes, arg):
        hdr = carray(arg, _AH, np.int64)
        n = hdr[_A_N]
        k = min(np.int64(nframes), hdr[_A_CAP] - n)
        if k > 0:
            src = get_buffer(np.uint64(hdr[_A_PORT]), nframes)
            memcpy(np.uint64(hdr[_A_BUF] + 4 * n), src, np.uint64(4 * k))
            hdr[_A_N] = n + k
        return 0

    return process, _shutdown_callback(_AH, _A_DOWN)


class NativeJackCapture:
    """A JACK client with one audio input, ``port``, whose native process callback copies
    what arrives into ``buf`` (float32, ``frames`` long) from the moment it activates:
    ``n`` frames so far.  It records what an audio interface would; connect a source to
    ``port``.  A ``with`` block."""

    def __init__(self, frames, client_name="ostinato-capture"):
        self.client_name = client_name
        self.buf = np.zeros(frames, np.float32)
        self._hdr = np.zeros(_AH, np.int64)
        self._client = 0
        self.port = None

    @property
    def n(self):
        return int(self._hdr[_A_N])

    def __enter__(self):
        lib = _libjack()
        process, shutdown = _capture_callbacks()
        status = ctypes.c_int(0)
        client = lib.jack_client_open(self.client_name.encode(), 1, ctypes.byref(status))
        if not client:
            raise PortError(f"cannot open JACK client {self.client_name!r} (status {status.value:#x})")
        self._client = client
        try:
            port = lib.jack_port_register(client, b"in", b"32 bit float mono audio", 0x1, 0)
            if not port:
                raise PortError("cannot register a JACK audio input port")
            hdr = self._hdr
            hdr[_A_PORT], hdr[_A_CLIENT] = port, client
            hdr[_A_BUF], hdr[_A_CAP] = self.buf.ctypes.data, len(self.buf)
            lib.jack_on_shutdown(client, shutdown.address, hdr.ctypes.data)
            if lib.jack_set_process_callback(client, process.address, hdr.ctypes.data) or \
                    lib.jack_activate(client):
                raise PortError("cannot activate the JACK audio capture")
            self.port = lib.jack_port_name(port).decode()
        except BaseException:
            self._close()
            raise
        return self

    def _close(self):
        if self._client:
            _close_client(self._client, bool(self._hdr[_A_DOWN]))
            self._client = 0

    def __exit__(self, *exc):
        self._close()
        return False
