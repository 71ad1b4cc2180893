"""Percentiles and the facts about the machine that every figure is reported with."""
import datetime
import importlib.metadata
import os
import platform
import socket
import sys

import numpy as np


def summary(values_us):
    """n, min, p50, p90, p99, max and mean of a sample in microseconds (n=0 if empty)."""
    a = np.asarray(values_us, dtype=np.float64)
    if a.size == 0:
        return {"n": 0}
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {"n": int(a.size), "min": float(a.min()), "p50": float(p50), "p90": float(p90),
            "p99": float(p99), "max": float(a.max()), "mean": float(a.mean())}


def us(ns):
    """Nanoseconds (a sequence) to microseconds (a float array)."""
    return np.asarray(ns, dtype=np.float64) / 1e3


def _version(dist):
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _loadavg():
    try:
        with open("/proc/loadavg") as f:
            return [float(x) for x in f.read().split()[:3]]
    except OSError:
        return None


def machine(argv=None):
    """What the figures were measured on: CPU, cores, load, versions, date, command."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "loadavg_at_start": _loadavg(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "numba": _version("numba"),
        "torch": _version("torch"),
        "pyzmq": _version("pyzmq"),
        "python-rtmidi": _version("python-rtmidi"),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "ostinato " + " ".join(sys.argv[1:] if argv is None else argv),
    }


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
