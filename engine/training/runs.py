"""A training run's folder, shared by every training loop (``engine.training.train``,
``engine.training.adversarial``, ``engine.theme.train``).

A run folder holds ``last.pt``, the checkpoint a run saves at every validation and
``--resume`` continues from (each loop decides what it holds and checks its configs),
and ``log.jsonl``, one JSON line per validation, appended to across resumes.  While it
trains, a ``Run`` also keeps the progress bar (tqdm, on stderr) and the wall-time
budget, measured on the monotonic clock from the run's first step: the time a resumed
run had already taken (``elapsed``) counts against it.
"""
import json
import pickle
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from engine.errors import ModelError

CHECKPOINT = "last.pt"
LOG = "log.jsonl"


def read_checkpoint(path, map_location="cpu", needs=()):
    """The dict in a ``.pt`` checkpoint; ModelError naming the file if it cannot be read,
    or is not a dict with the keys ``needs``."""
    try:
        st = torch.load(path, map_location=map_location, weights_only=True)
    except OSError as exc:
        raise ModelError(f"{path}: cannot read the checkpoint: {exc.strerror or exc}") from None
    except EOFError:
        raise ModelError(f"{path}: the checkpoint is empty or cut short (truncated)") from None
    except pickle.UnpicklingError:
        # torch's own text here suggests weights_only=False, which would run the file's code
        raise ModelError(f"{path}: not a torch checkpoint, or corrupt") from None
    except RuntimeError as exc:  # torch's zip reader: a damaged archive
        first = (str(exc).strip().splitlines() or ["unreadable"])[0]
        raise ModelError(f"{path}: the checkpoint is corrupt ({first})") from None
    if not isinstance(st, dict) or not set(needs) <= set(st):
        keys = ", ".join(needs[:-1]) + " and " + needs[-1] if len(needs) > 1 else "".join(needs)
        raise ModelError(f"{path}: not a training checkpoint of this Ostinato"
                         + (f" (it needs {keys})" if needs else ""))
    return st


class Run:
    """One run folder: open it (``Run(out)``), read what a resume continues from
    (``resumed``), then train inside ``with run.start(total, step, elapsed, ...)``:
    ``advance`` the bar each step, ``out_of_time`` for the budget, ``log`` a line and
    ``save`` the checkpoint at each validation, ``write`` a message under the bar."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.checkpoint = self.folder / CHECKPOINT
        self.max_minutes = None
        self._bar = self._log = None
        self._t0 = time.monotonic()

    def resumed(self, resume, map_location="cpu"):
        """The saved checkpoint's dict when ``resume`` is asked and ``last.pt`` exists,
        else None (a fresh run)."""
        if not (resume and self.checkpoint.exists()):
            return None
        return read_checkpoint(self.checkpoint, map_location)

    def start(self, total, step=0, elapsed=0.0, *, desc, progress=True, max_minutes=None):
        """Open the progress bar (``step`` of ``total`` done) and ``log.jsonl`` (appended
        to); the clock counts on from ``elapsed`` seconds.  ``max_minutes`` (None or 0:
        none) is the wall-time budget.  Returns the run, to use in a ``with``."""
        self.max_minutes = max_minutes
        self._bar = tqdm(total=total, initial=step, disable=not progress, desc=desc,
                         unit="step", file=sys.stderr, dynamic_ncols=True)
        self._log = open(self.folder / LOG, "a")
        self._t0 = time.monotonic() - elapsed
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        """Close the bar and the log (the ``with`` does it)."""
        if self._bar is not None:
            self._bar.close()
        if self._log is not None:
            self._log.close()
        self._bar = self._log = None

    def elapsed(self):
        """Seconds of training so far, a resumed run's earlier ones included."""
        return time.monotonic() - self._t0

    def out_of_time(self):
        """Whether the wall-time budget is spent (never without one)."""
        return bool(self.max_minutes) and self.elapsed() > self.max_minutes * 60

    def advance(self, **postfix):
        """One step done; ``postfix`` (name=text) is shown after the bar."""
        self._bar.update(1)
        if postfix:
            self._bar.set_postfix(**postfix)

    def postfix(self, **postfix):
        """Show ``postfix`` (name=text) after the bar."""
        self._bar.set_postfix(**postfix)

    def write(self, message):
        """A line of text under the progress bar."""
        self._bar.write(message)

    def log(self, row):
        """Append one JSON line to ``log.jsonl``, flushed at once (a run may be killed)."""
        self._log.write(json.dumps(row) + "\n")
        self._log.flush()

    def save(self, state):
        """Write ``last.pt``: what ``resumed`` gives back."""
        torch.save(state, self.checkpoint)
