"""A JACK server and its ports, for tests, the benchmark and the CLI.

JACK runs without a sound card (``jackd -d dummy``), so the MIDI path can be checked
for real: our port shows up in ``jack_lsp``, and ``realtime.jackreader.NativeJackReader``
is a second client that hears it, frame by frame, as a DAW would.  The command-line tools used here
(``jackd``, ``jack_lsp``, ``jack_connect``) come with Debian's ``jackd2``.

Which server a client talks to is libjack's choice: $JACK_DEFAULT_SERVER, else
"default".  These helpers never let libjack start a server as a side effect.
"""
import difflib
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass


from engine.errors import PortError


@dataclass(frozen=True)
class JackConfig:
    """How to start a JACK server when none is running."""

    server: str = None          # server name (jackd -n); None: $JACK_DEFAULT_SERVER or "default"
    rate: int = 48000
    period: int = 256           # frames a period: 5.3 ms at 48 kHz
    start_timeout_s: float = 10.0
    # True: start ``jackd -R`` (SCHED_FIFO process threads for jackd and every client,
    # which libjack gives them) and fall back to ``--no-realtime`` if that fails; False:
    # the other way round.  On a loaded machine a non-realtime graph misses cycles (xruns)
    # and JACK MIDI messages are lost there; ``JackServer.realtime`` says what was got.
    realtime: bool = False


@dataclass(frozen=True)
class JackPort:
    """One port as ``jack_lsp -t -p`` shows it."""

    name: str                   # "client:port"
    type: str                   # "8 bit raw midi", "32 bit float mono audio"
    flags: tuple                # ("output", "physical", ...)

    @property
    def is_midi(self):
        return "midi" in self.type

    @property
    def is_output(self):
        return "output" in self.flags


def _tool(name):
    path = shutil.which(name)
    if path is None:
        raise PortError(f"{name} is not installed (Debian package jackd2)")
    return path


def _runs_realtime(pid):
    """Whether any thread of process ``pid`` runs under SCHED_FIFO or SCHED_RR."""
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return None
    policies = set()
    for tid in tids:
        try:
            policies.add(os.sched_getscheduler(tid))
        except OSError:
            pass
    return bool(policies & {os.SCHED_FIFO, os.SCHED_RR})


def _env(server=None):
    env = dict(os.environ, JACK_NO_START_SERVER="1")
    if server:
        env["JACK_DEFAULT_SERVER"] = server
    return env


def _lsp(args, server=None, timeout=10.0):
    return subprocess.run([_tool("jack_lsp"), *args], env=_env(server), capture_output=True,
                          text=True, timeout=timeout)


def server_running(server=None):
    """Whether a JACK server answers (``jack_lsp`` exits 0)."""
    return _lsp([], server).returncode == 0


def jack_ports(server=None):
    """Every port of the server, parsed from ``jack_lsp -t -p``; PortError if none answers."""
    done = _lsp(["-t", "-p"], server)
    if done.returncode != 0:
        raise PortError(f"no JACK server {server or os.environ.get('JACK_DEFAULT_SERVER', 'default')!r}"
                        f" answers: {done.stderr.strip() or done.stdout.strip()}")
    ports, name, info = [], None, {}
    for line in done.stdout.splitlines() + [""]:
        if line.startswith("\t"):
            text = line.strip()
            if text.startswith("properties:"):
                info["flags"] = tuple(f for f in text[11:].strip().split(",") if f)
            else:
                info["type"] = text
            continue
        if name is not None:
            ports.append(JackPort(name, info.get("type", ""), info.get("flags", ())))
        name, info = (line or None), {}
    return ports


def jack_connect(source, destination, server=None):
    """Connect two ports by full name ("client:port")."""
    done = subprocess.run([_tool("jack_connect"), source, destination], env=_env(server),
                          capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        raise PortError(f"jack_connect {source} {destination} failed: "
                        f"{done.stderr.strip() or done.stdout.strip()}")


class JackServer:
    """A JACK server for the length of a ``with`` block.

    Reuses a server that already answers (and leaves it running); otherwise starts
    ``jackd --no-realtime -d dummy`` (then, if that fails, with realtime scheduling; the
    other way round with ``JackConfig(realtime=True)``) and stops it on exit.  ``owned``
    says which happened; ``realtime`` whether the jackd started runs a SCHED_FIFO/RR
    thread (None for a server reused); ``xruns()`` counts the xruns jackd printed.
    """

    def __init__(self, config=JackConfig()):
        self.config = config
        self.owned = False
        self.realtime = None
        self._proc = None
        self._log = None

    def __enter__(self):
        if server_running(self.config.server):
            return self
        jackd = _tool("jackd")
        reasons = []
        tries = (["-R"], ["--no-realtime"]) if self.config.realtime else (["--no-realtime"], ["-R"])
        for realtime in tries:
            if self._start(jackd, realtime, reasons):
                if self.owned:
                    self.realtime = _runs_realtime(self._proc.pid)
                return self
        raise PortError("could not start jackd: " + " | ".join(reasons))

    def log(self):
        """Everything the jackd started has printed so far ("" for a server reused)."""
        if self._log is None:
            return ""
        # pread: jackd shares this file's offset, which a seek would move under it
        fd = self._log.fileno()
        return os.pread(fd, os.fstat(fd).st_size, 0).decode(errors="replace")

    def xruns(self):
        """The xruns jackd has printed: {"driver": ``...Driver::Process XRun`` lines,
        client name: its ``JackEngine::XRun: client = NAME was not finished`` lines}."""
        counts = {"driver": 0}
        for line in self.log().splitlines():
            if "Driver::Process XRun" in line:
                counts["driver"] += 1
            elif "was not finished" in line and "client = " in line:
                name = line.split("client = ", 1)[1].split(" was not finished", 1)[0]
                counts[name] = counts.get(name, 0) + 1
        return counts

    def _start(self, jackd, realtime, reasons):
        cfg = self.config
        name = ["-n", cfg.server] if cfg.server else []
        cmd = [jackd, *name, *realtime, "-d", "dummy", "-r", str(cfg.rate), "-p", str(cfg.period)]
        self._log = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, env=_env(), start_new_session=True)
        next_poll = time.monotonic()
        deadline = next_poll + cfg.start_timeout_s
        while time.monotonic() < deadline:
            if server_running(cfg.server):
                if self._proc.poll() is None:
                    self.owned = True
                    return True
                break  # another process started the server first: use theirs
            if self._proc.poll() is not None:
                break
            next_poll += 0.05
            time.sleep(max(0.0, next_poll - time.monotonic()))
        self._stop()
        reasons.append(f"{' '.join(cmd)}: {self._output()}")
        self._log.close()
        self._log = None
        return server_running(cfg.server)

    def _output(self):
        self._log.seek(0)
        lines = self._log.read().decode(errors="replace").strip().splitlines()
        return " / ".join(lines[-3:]) or "no output"

    def _stop(self):
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        self._proc = None

    def __exit__(self, *exc):
        if self.owned:
            self._stop()
            self.owned = False
        if self._log is not None:
            self._log.close()
            self._log = None
        return False


def align(sent, received):
    """Pair what a JACK client received with what was sent, by content and order.

    ``sent`` and ``received`` are sequences of message byte tuples.  JACK keeps the
    order of one port's messages but may drop some (a cycle a client missed), so the
    pairing is the longest common subsequence of the two, as difflib finds it (a greedy
    "next equal message" pairing runs ahead after a loss and then pairs nothing).
    Returns ``(pairs, lost, unmatched)``: ``pairs`` maps received index -> sent index,
    ``lost`` lists the sent indices nothing arrived for, ``unmatched`` the received
    indices that pair with nothing sent (bytes nobody wrote, or out of order).
    """
    sent = [tuple(m) for m in sent]
    received = [tuple(m) for m in received]
    blocks = difflib.SequenceMatcher(None, sent, received, autojunk=False).get_matching_blocks()
    pairs = {b + k: a + k for a, b, n in blocks for k in range(n)}
    matched = set(pairs.values())
    lost = [k for k in range(len(sent)) if k not in matched]
    unmatched = [i for i in range(len(received)) if i not in pairs]
    return pairs, lost, unmatched
