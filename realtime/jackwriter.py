"""A JACK MIDI writer whose process callback is native code: each queued message is
written at the frame of its time, and nothing waits for Python's GIL.

The player queues ``(t_ns, message)`` into a single-producer / single-consumer ring
(a preallocated int64 array); the callback, a numba ``cfunc`` registered through
ctypes (``realtime.libjack``), turns each time into a frame offset by JACK's own
clock model of the cycle (``jack_get_cycle_times``).  ``realtime.outputs.JackMidiPort``
is the output port built on it.
"""
import ctypes
import functools

import numpy as np
from numba import carray, cfunc, types

from engine.errors import PortError

from realtime.libjack import clock_offset, close_client, load_libjack, port_names, shutdown_callback

# header words of the writer's state array; events follow from _WH on, 3 words each:
# [t_ns (monotonic), size, up to 8 data bytes little-endian]
(_W_PORT, _W_CLIENT, _W_BASE, _W_CAP, _W_W, _W_R, _W_WRITTEN, _W_LATE, _W_LATE_MAX,
 _W_FULL, _W_CYCLES, _W_NFR, _W_DOWN, _W_CF, _W_CU, _W_NU, _W_PU, _W_BADCLOCK,
 _W_TS, _W_TSN, _W_TS2, _W_TSN2, _W_PEND, _W_RATE, _W_DROP) = range(25)
_WH = 32
_WSLOT = 3


@functools.cache
def _writer_callbacks():
    lib = load_libjack()
    get_buffer, clear, write = lib.jack_port_get_buffer, lib.jack_midi_clear_buffer, \
        lib.jack_midi_event_write
    cycle_times, frame_time = lib.jack_get_cycle_times, lib.jack_frame_time
    mono_minus_jack, gettime = clock_offset(lib), lib.clock_gettime_

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

    return process, shutdown_callback(_WH, _W_DOWN)


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
        lib = load_libjack()
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
        return port_names(load_libjack(), self._client, 0x1) if not self.down else []

    def connected_to(self, destination):
        return not self.down and bool(load_libjack().jack_port_connected_to(
            int(self._state[_W_PORT]), destination.encode()))

    def connect(self, destination):
        """Connect the port to the JACK MIDI input ``destination``; raises PortError."""
        lib = load_libjack()
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
            close_client(client, bool(self._state[_W_DOWN]))
