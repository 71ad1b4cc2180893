"""``ostinato bench``: latency and jitter of the real-time path, with baselines, in one run.

A thin front over the other modules of ``benchmarks/`` (one per measurement, see its
README): it checks the arguments, starts (or reuses) a JACK server for the MIDI figures,
runs the chosen sections, prints the table and writes JSON, raw samples and PNGs.  The
ensemble model (``--ensemble``, default the shipped one) is measured in the same run
beside the one-line model: in ``sessions`` its batched step, event rate and engine
capacity with every voice playing, in ``mood`` the first note of each of its voices.
"""
import os
import subprocess
import time
import uuid
from pathlib import Path

from engine import DEFAULT_ENSEMBLE, DEFAULT_MODEL
from engine.errors import InvalidMessage, ModelError, PortError
from realtime.jack import JackConfig, JackServer

from benchmarks import breakdown, jitter, latency, report, sessions, startup, stats, step
from benchmarks.serve import is_ensemble

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("step", "sessions", "mood", "jitter", "breakdown", "startup")
DEFAULT_OUT = ROOT / "benchmarks" / "results"
README = ROOT / "benchmarks" / "README.md"

# full run, and --quick (the smoke test's counts)
FULL = dict(step_iters=20000, torch_iters=2000, dram_mb=256, step_seconds=1.5,
            step_counts=(1, 8, 64, 256), server_seconds=8.0,
            server_counts=(1, 8, 16, 32, 64, 128, 256), changes=1000, seconds=20.0, load=63,
            cold=1, warm=3, engine_seconds=10.0, engine_changes=200, transport_count=500)
QUICK = dict(step_iters=300, torch_iters=30, dram_mb=32, step_seconds=0.1, step_counts=(1, 8),
             server_seconds=1.0, server_counts=(1, 2), changes=6, seconds=1.0, load=2,
             cold=0, warm=1, engine_seconds=1.0, engine_changes=4, transport_count=10)


def _counts(text):
    try:
        counts = tuple(int(x) for x in str(text).split(","))
    except ValueError:
        raise InvalidMessage(f"--session-counts {text!r} is not a list of integers",
                             field="--session-counts", allowed="e.g. 1,8,16,32,64") from None
    if not counts or any(not 1 <= c <= 1024 for c in counts) or list(counts) != sorted(set(counts)):
        raise InvalidMessage(f"--session-counts {text!r}: each count 1..1024, ascending, no repeats",
                             field="--session-counts", allowed="ascending integers 1..1024")
    return counts


def _check(name, value, lo, hi):
    if value is not None and not lo <= value <= hi:
        raise InvalidMessage(f"--{name} is {value}; allowed {lo}..{hi}", field="--" + name,
                             allowed=f"{lo}..{hi}")


def add_arguments(p):
    p.add_argument("--model", default=str(DEFAULT_MODEL), help="model .npz (default: shipped)")
    p.add_argument("--ensemble", default=str(DEFAULT_ENSEMBLE), metavar="MODEL",
                   help="ensemble model .npz measured beside --model in the sessions and mood "
                        "sections (default: the shipped one); 'none' skips it")
    p.add_argument("--out", default=str(DEFAULT_OUT), help=f"output folder (default {DEFAULT_OUT})")
    p.add_argument("--quick", action="store_true", help="tiny counts: checks that it runs, in ~1 min")
    p.add_argument("--only", default=",".join(SECTIONS),
                   help="comma-separated sections to run (default all): " + ", ".join(SECTIONS))
    p.add_argument("--changes", type=int, default=None, help="mood changes per path (default 1000)")
    p.add_argument("--seconds", type=float, default=None,
                   help="seconds of music per jitter run (default 20)")
    p.add_argument("--load", type=int, default=None,
                   help="extra sessions for the loaded jitter run (default 63)")
    p.add_argument("--session-counts", default=None,
                   help="session counts tried by `serve` (default 1,8,16,32,64,128,256)")
    p.add_argument("--cold", type=int, default=None, help="cold-cache start-ups (default 1)")
    p.add_argument("--warm", type=int, default=None, help="warm-cache start-ups (default 3)")
    p.add_argument("--no-jack", action="store_true", help="skip the JACK MIDI measurements")
    p.add_argument("--jack-period", type=int, default=256,
                   help="frames a period when bench starts jackd itself (default 256: 5.3 ms at "
                        "48 kHz); a running server keeps its own")
    p.add_argument("--update-readme", action="store_true",
                   help="write the table into benchmarks/README.md")


def settings(args):
    """The counts this run uses: --quick or full, overridden by explicit flags."""
    s = dict(QUICK if args.quick else FULL)
    for key in ("changes", "seconds", "load", "cold", "warm"):
        if getattr(args, key) is not None:
            s[key] = getattr(args, key)
    if args.session_counts is not None:
        s["server_counts"] = _counts(args.session_counts)
    _check("changes", s["changes"], 1, 100000)
    _check("seconds", s["seconds"], 0.5, 600)
    _check("load", s["load"], 0, 1023)
    _check("cold", s["cold"], 0, 10)
    _check("warm", s["warm"], 0, 20)
    _check("jack-period", args.jack_period, 16, 4096)
    only = tuple(x.strip() for x in args.only.split(",") if x.strip())
    bad = [x for x in only if x not in SECTIONS]
    if bad or not only:
        raise InvalidMessage(f"--only {args.only!r}: unknown section(s) {bad}", field="--only",
                             allowed=list(SECTIONS))
    s["only"] = only
    return s


def run(args):
    s = settings(args)
    model = Path(args.model)
    if not model.exists():
        raise ModelError(f"model {model} not found; pass --model FILE.npz")
    ensemble = _ensemble(args.ensemble)
    log = lambda text: print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)
    res = {"machine": stats.machine(), "model": _shown(model), "settings": {
        k: v for k, v in s.items()}, "quick": bool(args.quick)}
    if ensemble is not None:
        res["ensemble_model"] = _shown(ensemble)
    jack_port = None
    with _Jack(args, s, res, log) as jack_ok:
        if jack_ok:
            jack_port = f"ostinato-bench-{uuid.uuid4().hex[:6]}"
        if "step" in s["only"]:
            res["step"] = step.run(model, s["step_iters"], s["torch_iters"],
                                        dram_bytes=s["dram_mb"] << 20, log=log)
        if "sessions" in s["only"]:
            res["sessions"] = sessions.run(model, s["step_seconds"], s["server_seconds"],
                                                s["step_counts"], s["server_counts"], log=log)
            if ensemble is not None:
                res["sessions"]["ensemble"] = sessions.ensemble(
                    ensemble, s["step_seconds"], s["server_seconds"], s["step_counts"],
                    s["server_counts"], log=log, line=model)
        if "mood" in s["only"]:
            res["mood"] = latency.run(model, s["changes"], jack_port, log=log, ensemble=ensemble)
            if not jack_ok:
                res["mood"]["jack"] = res["jack"]
        if "jitter" in s["only"]:
            res["jitter"] = jitter.run(model, s["seconds"], s["load"], jack_port, log=log)
        if "breakdown" in s["only"]:
            res["breakdown"] = breakdown.run(model, s["engine_seconds"], s["load"],
                                                  s["engine_changes"], s["transport_count"], log=log)
        if "startup" in s["only"]:
            res["startup"] = startup.run(model, s["cold"], s["warm"], log=log)
    print()
    print(report.text_table(res))
    paths = report.write(res, args.out)
    if args.update_readme:
        report.update_readme(res, README)
        paths.append(README)
    print("\nwrote " + ", ".join(str(p) for p in paths))
    return 0


def _shown(path):
    """A model's path as the results show it: the repository's own files by their place
    in it."""
    shown = Path(path).resolve()
    return str(shown.relative_to(ROOT) if shown.is_relative_to(ROOT) else shown)


def _ensemble(arg):
    """The --ensemble model's path, or None for 'none'; a missing file or a one-line model
    is refused naming the option."""
    if arg == "none":
        return None
    path = Path(arg)
    if not path.exists():
        raise ModelError(f"--ensemble {path} not found; pass --ensemble FILE.npz or none")
    if not is_ensemble(path):
        raise InvalidMessage(f"--ensemble {path} is a one-line model: it has no voices; allowed: "
                             "an ensemble model .npz, or none",
                             field="--ensemble", allowed="an ensemble model .npz, or none")
    return path


def _jack_number(tool, server):
    """What ``jack_samplerate``/``jack_bufsize`` print for the server (None if unknown)."""
    env = dict(os.environ, JACK_NO_START_SERVER="1")
    if server:
        env["JACK_DEFAULT_SERVER"] = server
    try:
        done = subprocess.run([tool], env=env, capture_output=True, text=True, timeout=10)
        return int(done.stdout.split()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


class _Jack:
    """A JACK server for the MIDI figures: the running one, else ``jackd -d dummy``
    started and stopped here.  Yields whether JACK can be used; the reason if not
    lands in ``res["jack"]``."""

    def __init__(self, args, s, res, log):
        self.args, self.s, self.res, self.log = args, s, res, log
        self.server = None

    def __enter__(self):
        if self.args.no_jack or not {"mood", "jitter"} & set(self.s["only"]):
            self.res["jack"] = "not measured (--no-jack)" if self.args.no_jack else "not needed"
            return False
        name = os.environ.get("JACK_DEFAULT_SERVER")
        try:
            # jackd -R, as the tests and the storm run it: without realtime scheduling the
            # dummy driver misses cycles here at -p 64
            config = JackConfig(server=name, period=self.args.jack_period, realtime=True)
            self.server = JackServer(config).__enter__()
        except PortError as exc:
            self.res["jack"] = f"unavailable: {exc}"
            self.log(f"JACK: {self.res['jack']}")
            return False
        self.res["jack"] = {"server": name or "default", "started_here": self.server.owned,
                            "rate": _jack_number("jack_samplerate", name),
                            "period": _jack_number("jack_bufsize", name)}
        return True

    def __exit__(self, *exc):
        if self.server is not None:
            self.server.__exit__(*exc)
        return False
