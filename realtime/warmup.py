"""Compiling the kernels in a child process, so that the server's own never holds the
compiler's garbage.

On a machine whose numba cache is cold, the first start compiles every kernel: tens of
seconds, millions of short-lived Python objects, and full garbage collections of up to
a second each, every one holding the GIL.  A ``listen_first`` server (``ostinato serve``)
answers its control socket all that time, so it has the compiling done by a child
process instead: the child (``python -m realtime.precompile CONFIG_JSON``) builds the
same server (``realtime.server.Server`` with the same ``ServerConfig``, no outputs, no
control socket), whose ``Sessions.warm`` compiles exactly the kernels the server will
call, with the signatures it will call them with, and numba writes them to its on-disk
cache (``cache=True``: ``__pycache__`` or ``NUMBA_CACHE_DIR``, which the child
inherits).  The server waits for the child in ``subprocess``'s wait, without the GIL,
then loads the kernels from that cache.

Where the cache is warm already (every start after the first, or after ``make setup``)
the child would only cost its own start: so the server first loads in-process under
``compiles_refused``, which stops the load at the first kernel numba would compile
(``CacheCold``, raised before any compiling begins), and runs the child only then.

``compile_apart`` runs the child; ``kernel_counts`` says how many kernels a process has
loaded from the cache and how many it compiled.
"""
import contextlib
import dataclasses
import json
import subprocess
import sys
import threading
import time

# what the child's report line begins with (its other output is numba's and logging's)
REPORT = "ostinato-precompile "


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What the child did: ``ok`` (exit status 0 and its report), ``why`` it failed,
    the kernels it ``compiled`` and ``loaded`` from the cache, and its wall ``seconds``."""
    ok: bool
    seconds: float
    why: str = ""
    compiled: int = 0
    loaded: int = 0


def compile_apart(cfg, python=sys.executable):
    """Compile the kernels a server of ``cfg`` (a ``ServerConfig``) calls in a child
    process, into numba's cache; wait for it (the wait holds no GIL).  Never raises for
    the child's failure: returns an ``Outcome`` whose ``why`` says what went wrong."""
    # the keys are not the child's business: it opens no socket
    fields = dict(dataclasses.asdict(cfg), server_key=None, client_keys=None)
    t0 = time.monotonic()
    try:
        proc = subprocess.Popen([python, "-m", "realtime.precompile", json.dumps(fields)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, text=True)
    except OSError as exc:
        return Outcome(False, time.monotonic() - t0, f"the child could not start: {exc}")
    try:
        out, err = proc.communicate()
    finally:
        if proc.poll() is None:  # the wait was interrupted: the child goes too
            proc.kill()
            proc.wait()
    seconds = time.monotonic() - t0
    report = [line for line in out.splitlines() if line.startswith(REPORT)]
    if proc.returncode != 0 or not report:
        tail = " / ".join(err.strip().splitlines()[-4:]) or "no output"
        return Outcome(False, seconds, f"the child exited with status {proc.returncode}: {tail}")
    counts = json.loads(report[-1][len(REPORT):])
    return Outcome(True, seconds, compiled=counts["compiled"], loaded=counts["loaded"])


class CacheCold(BaseException):
    """A kernel was about to compile under ``compiles_refused``: numba's cache lacks it.
    A BaseException, so that no ``except Exception`` on the way swallows it."""


@contextlib.contextmanager
def compiles_refused():
    """Within: a cached kernel (``cache=True``) that numba would compile on this thread,
    because its cache lacks it, raises ``CacheCold`` instead, before compiling begins
    (numba's ``numba:compile`` event comes after the cache was looked up, on a miss)."""
    from numba.core import event

    thread = threading.get_ident()

    class Refuse(event.Listener):
        def on_start(self, ev):
            dispatcher = ev.data["dispatcher"]
            if threading.get_ident() == thread and dispatcher.stats.cache_path is not None:
                raise CacheCold(f"{dispatcher.py_func.__qualname__} is not in numba's cache")

        def on_end(self, ev):
            pass

    listener = Refuse()
    event.register("numba:compile", listener)
    try:
        yield
    finally:
        event.unregister("numba:compile", listener)


def kernel_counts():
    """(kernels loaded from numba's cache, kernels compiled) by this process so far: the
    signatures of every numba dispatcher in the ``engine`` and ``realtime`` modules that
    caches (``cache=True``; the few that do not compile in a moment, in every process)."""
    from numba.core.dispatcher import Dispatcher

    seen, loaded, compiled = set(), 0, 0
    for name, module in list(sys.modules.items()):
        if module is None or name.split(".")[0] not in ("engine", "realtime"):
            continue
        for value in list(vars(module).values()):
            if isinstance(value, Dispatcher) and id(value) not in seen:
                seen.add(id(value))
                stats = value.stats
                if stats.cache_path is None:
                    continue
                loaded += len(stats.cache_hits)
                compiled += len(stats.cache_misses)
    return loaded, compiled
