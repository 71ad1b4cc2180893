"""Memory of the sharded dataset against the size of the corpus: peak RSS of a reader.

For each corpus size, a synthetic corpus of that many tiny pieces is written as shards
(``engine.training.shards.synthetic``), then a fresh process opens it and streams a fixed
number of training batches through ``ShardedDataset.batch`` (crossing shards), and its
peak resident memory (``ru_maxrss``) is read.  A reader that held the corpus would grow
with it; the sharded one holds the index and one shard.

    .venv/bin/python -m benchmarks.shards --pieces 10000 1000000
"""
import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from engine.training.shards import Schedule, ShardedDataset, synthetic


def read(folder, batches, global_batch=32, seq_len=16, steps_per_shard=4):
    """In this process: stream ``batches`` batches; its peak RSS in MiB (Linux: KiB)."""
    data = ShardedDataset(folder)
    schedule = Schedule(global_batch, seq_len, seed=0)
    shards = set()
    for step in range(batches):
        shards.add(data.shard_of(step, schedule, per=steps_per_shard))
        x, c, y = data.batch(step, schedule)
        assert x.shape == (global_batch, seq_len)
    return dict(peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                shards_read=len(shards))


def measure(pieces, batches, folder, piece_len=16, pieces_per_shard=1000):
    """Write a corpus of ``pieces`` pieces into ``folder``, then measure a fresh reader."""
    t0 = time.monotonic()
    synthetic(folder, pieces, piece_len=piece_len, pieces_per_shard=pieces_per_shard)
    written = time.monotonic() - t0
    disk = sum(f.stat().st_size for f in Path(folder).iterdir())
    out = subprocess.run([sys.executable, "-m", "benchmarks.shards", "--read", str(folder),
                          "--batches", str(batches)], capture_output=True, text=True,
                         check=True)
    return dict(pieces=pieces, shards=len(json.loads((Path(folder) / "index.json").read_text())
                                         ["splits"]["train"]),
                disk_mib=round(disk / 2**20, 1), write_seconds=round(written, 1),
                **json.loads(out.stdout))


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.shards", description=__doc__)
    p.add_argument("--pieces", type=int, nargs="+", default=[10000, 1000000])
    p.add_argument("--batches", type=int, default=200)
    p.add_argument("--piece-len", type=int, default=16)
    p.add_argument("--read", default=None, help=argparse.SUPPRESS)  # the measured process
    a = p.parse_args(argv)
    if a.read:
        print(json.dumps(read(a.read, a.batches)))
        return 0
    rows = []
    for n in a.pieces:
        folder = Path(tempfile.mkdtemp(prefix="ostinato-shards-"))
        try:
            rows.append(measure(n, a.batches, folder, a.piece_len))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        print(json.dumps(rows[-1]), flush=True)
    print(f"peak RSS {rows[-1]['pieces']} / {rows[0]['pieces']} pieces: "
          f"{rows[-1]['peak_rss_mib'] / rows[0]['peak_rss_mib']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
