"""Start-up: from spawning ``ostinato serve`` to the first note on its event stream.

Cold: numba compiles every kernel (a fresh, empty NUMBA_CACHE_DIR).  Warm: the same
directory again, now filled, so the kernels load from the cache.  The listener
connects before the process starts and retries every 5 ms until the server binds.
The figure includes the music's own lead-in (the first note is placed 0.1 beat after
the engine starts, ~60 ms at the default preset) — reported separately.
"""
import tempfile

import zmq

from .serve import EventStream, ServeProcess
from .stats import summary

FIRST_NOTE_TIMEOUT_S = 300.0


def once(model, context, env=None):
    """Seconds from spawn to 'ready' and to the first note_on, and the lead-in."""
    with ServeProcess(model, sessions=1, env=env, ready_timeout_s=FIRST_NOTE_TIMEOUT_S) as srv:
        stream = EventStream(srv.events, context)
        try:
            deadline = srv.t_start_ns + int(FIRST_NOTE_TIMEOUT_S * 1e9)
            while True:
                got = stream.next(deadline)
                if got is None:
                    srv.wait_ready()  # raises with the server's output if it failed
                    raise TimeoutError(f"no note within {FIRST_NOTE_TIMEOUT_S} s of start")
                if got[1]["type"] == "note_on":
                    break
            srv.wait_ready()
        finally:
            stream.close()
        rx, ev = got
        return {"first_note_s": (rx - srv.t_start_ns) / 1e9,
                "ready_s": (srv.t_ready_ns - srv.t_start_ns) / 1e9,
                "lead_in_s": (ev["t_ns"] - srv.t_ready_ns) / 1e9}


def run(model, cold=1, warm=3, log=print):
    ctx = zmq.Context()
    out = {"cold": [], "warm": []}
    try:
        with tempfile.TemporaryDirectory(prefix="ostinato-numba-") as cache:
            for i in range(cold):
                log(f"start-up: cold numba cache ({i + 1}/{cold})")
                if i == cold - 1:  # the last cold run fills the cache the warm runs load
                    out["cold"].append(once(model, ctx, {"NUMBA_CACHE_DIR": cache}))
                    continue
                with tempfile.TemporaryDirectory(prefix="ostinato-numba-") as fresh:
                    out["cold"].append(once(model, ctx, {"NUMBA_CACHE_DIR": fresh}))
            for i in range(warm):
                log(f"start-up: warm numba cache ({i + 1}/{warm})")
                out["warm"].append(once(model, ctx, {"NUMBA_CACHE_DIR": cache} if cold else None))
    finally:
        ctx.term()
    for key in ("cold", "warm"):
        runs = out[key]
        out[key + "_first_note_s"] = summary([r["first_note_s"] for r in runs])
        out[key + "_ready_s"] = summary([r["ready_s"] for r in runs])
    return out
