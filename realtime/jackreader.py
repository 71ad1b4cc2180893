"""A JACK MIDI reader whose process callback is native code: nothing it receives is lost
while Python holds the GIL.

rtmidi's JACK input runs C++ in JACK's process thread too, but a reader that polls it
still shares the fate of every Python client.  Here the process callback is a numba
``@cfunc(int32(uint32, voidptr))`` registered through ctypes (``realtime.libjack``): each
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

The callback allocates nothing, touches no Python object and raises nothing.  Events
longer than 8 bytes (SysEx) keep their first 8 bytes and are counted in ``truncated``.
"""
import ctypes
import functools
import threading
import time

import numpy as np
from numba import carray, cfunc, types

from engine.errors import PortError

from realtime.libjack import clock_offset, close_client, load_libjack, port_names, shutdown_callback

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


@functools.cache  # compiled once a process, when the first client opens
def _callbacks():
    lib = load_libjack()
    get_buffer, count = lib.jack_port_get_buffer, lib.jack_midi_get_event_count
    event_get, lost = lib.jack_midi_event_get, lib.jack_midi_get_lost_event_count
    last_frame, frame_time, memcpy = lib.jack_last_frame_time, lib.jack_frame_time, lib.memcpy_
    policy = lib.sched_getscheduler_
    cycle_times, mono_minus_jack = lib.jack_get_cycle_times, clock_offset(lib)

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

    return process, xrun, shutdown_callback(_H, _DOWN)


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
        lib = load_libjack()
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
        return port_names(lib, self._client, flags)

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
            close_client(self._client, bool(self._state[_DOWN]))
            self._client = 0

    def __exit__(self, *exc):
        self._quit.set()
        if self._thread is not None:
            self._thread.join()
        self._close()
        self._drain()
        return False
