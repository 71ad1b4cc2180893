"""A JACK audio capture whose process callback is native code: it records what an audio
interface would, for the audio benchmark, without a PortAudio capture stream.

The callback, a numba ``cfunc`` registered through ctypes (``realtime.libjack``),
copies each cycle's frames of its input port into one preallocated float32 buffer.
"""
import ctypes
import functools

import numpy as np
from numba import carray, cfunc, types

from engine.errors import PortError

from realtime.libjack import close_client, load_libjack, shutdown_callback

# header words of the capture's state array: the samples go to a buffer of their own
(_A_PORT, _A_CLIENT, _A_BUF, _A_CAP, _A_N, _A_DOWN) = range(6)
_AH = 8


@functools.cache
def _capture_callbacks():
    lib = load_libjack()
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

    return process, shutdown_callback(_AH, _A_DOWN)


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
        lib = load_libjack()
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
            close_client(self._client, bool(self._hdr[_A_DOWN]))
            self._client = 0

    def __exit__(self, *exc):
        self._close()
        return False
