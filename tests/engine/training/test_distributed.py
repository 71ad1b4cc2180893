"""Training on shards, on one process and on two (a real gloo process group on CPU, started
by torchrun): the same global batch gives the same parameters, and a run checkpointed on
two processes resumes on one as if never interrupted."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.shards import measure
from engine.errors import OstinatoError
from engine.modelfile import read_model_file
from engine.training.shards import Schedule, ShardedDataset, ShardWriter, synthetic
from engine.vocab import Vocab
from engine.controls import ControlSpec

ROOT = Path(__file__).resolve().parents[3]
TORCHRUN = Path(sys.executable).parent / "torchrun"
TINY = ["--steps", "8", "--batch-size", "8", "--seq-len", "16", "--eval-every", "4",
        "--hidden", "16", "--layers", "1", "--embed", "8", "--dropout", "0", "--threads", "1",
        "--valid-windows", "16", "--device", "cpu"]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shards")
    synthetic(folder, 200, piece_len=64, pieces_per_shard=50)
    return folder


def train(shards, out, processes=1, *extra):
    cmd = ([str(TORCHRUN), "--standalone", "--nproc_per_node", str(processes)]
           if processes > 1 else [sys.executable])
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(cmd + ["-m", "engine.training.distributed", "--shards", str(shards),
                                 "--out", str(out), *TINY, *extra], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return torch.load(Path(out) / "last.pt", weights_only=True)


def max_difference(a, b):
    return max((a["model"][k] - b["model"][k]).abs().max().item() for k in a["model"])


def test_two_processes_train_as_one_and_resume_on_one(shards, tmp_path):
    one = train(shards, tmp_path / "one")
    two = train(shards, tmp_path / "two", 2)
    assert one["step"] == two["step"] == 8
    assert max_difference(one, two) < 1e-5
    # a job in parts: 2 processes stop at step 4, one process resumes to step 8
    part = train(shards, tmp_path / "part", 2, "--until", "4")
    assert part["step"] == 4
    assert max_difference(part, one) > 1e-4  # not yet where the whole run ended
    resumed = train(shards, tmp_path / "part", 1, "--resume")
    assert resumed["step"] == 8
    assert max_difference(resumed, one) < 1e-5
    log = [json.loads(line) for line in (tmp_path / "part" / "log.jsonl").read_text().splitlines()]
    assert [(r["step"], r["processes"]) for r in log] == [(4, 2), (8, 1)]


def test_a_two_process_fine_tune_with_the_guard_is_the_one_process_one(shards, tmp_path):
    """--init MODEL --l2sp ALPHA under torchrun: the guard's gradient is the same on every
    process, so 2 processes still take the very steps of one; and the guard does pull."""
    start = tmp_path / "start"
    train(shards, start)  # the model to fine-tune: a run of this size
    init = ["--init", str(start / "best.npz"), "--seed", "1"]
    one = train(shards, tmp_path / "one", 1, *init, "--l2sp", "1.0")
    two = train(shards, tmp_path / "two", 2, *init, "--l2sp", "1.0")
    assert max_difference(one, two) < 1e-5
    free = train(shards, tmp_path / "free", 1, *init)
    w0 = read_model_file(start / "best.npz")[1]
    dist = lambda run: sum(float(((run["model"][k] - torch.as_tensor(w)) ** 2).sum())
                           for k, w in w0.items())
    assert 0 < dist(one) < dist(free)
    meta = read_model_file(tmp_path / "two" / "best.npz")[0]
    assert meta["info"]["finetune"]["l2sp"] == 1.0 and meta["info"]["processes"] == 2


def test_the_guard_needs_a_model_to_pull_towards(shards, tmp_path):
    cmd = [sys.executable, "-m", "engine.training.distributed", "--shards", str(shards),
           "--out", str(tmp_path / "run"), *TINY, "--l2sp", "1.0"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "l2sp: the guard pulls towards --init" in done.stderr


def test_resume_refuses_another_schedule(shards, tmp_path):
    train(shards, tmp_path / "run", 1, "--until", "4")
    cmd = [sys.executable, "-m", "engine.training.distributed", "--shards", str(shards),
           "--out", str(tmp_path / "run"), *TINY, "--seed", "3", "--resume"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "schedule" in done.stderr and "'seed': 3" in done.stderr


def test_slices_of_the_global_batch_are_the_one_process_batch(shards):
    data = ShardedDataset(shards)
    schedule = Schedule(global_batch=8, seq_len=16, seed=5)
    for step in (0, 7, 123):
        x, c, y = data.batch(step, schedule)
        parts = [data.batch(step, schedule, r, 4) for r in range(4)]
        np.testing.assert_array_equal(x, np.concatenate([p[0] for p in parts]))
        np.testing.assert_array_equal(c, np.concatenate([p[1] for p in parts]))
        np.testing.assert_array_equal(y, np.concatenate([p[2] for p in parts]))
        np.testing.assert_array_equal(x[:, 1:], y[:, :-1])
    other = data.batch(0, Schedule(global_batch=8, seq_len=16, seed=6))[0]
    assert not np.array_equal(other, data.batch(0, schedule)[0])
    with pytest.raises(OstinatoError, match="global_batch: 8 is not a multiple of the 3"):
        data.batch(0, schedule, 0, 3)


def test_every_shard_is_visited_and_one_is_held(shards):
    data = ShardedDataset(shards)
    schedule = Schedule(global_batch=4, seq_len=16, seed=0)
    n = len(data.shards["train"])
    seen = [data.shard_of(s, schedule, per=2) for s in range(2 * n)]
    assert sorted(set(seen)) == list(range(n))
    data.batch(0, schedule)
    assert data._cached[0] == data.shards["train"][data.shard_of(0, schedule)]["file"]


def test_shards_keep_the_pieces(tmp_path):
    vocab, spec = Vocab(), ControlSpec()
    rng = np.random.default_rng(0)
    pieces = [(np.r_[0, rng.integers(1, 257, size=n)], rng.random((n + 1, spec.size)))
              for n in (5, 9, 3, 7, 4)]
    with ShardWriter(tmp_path, vocab, spec, pieces_per_shard=2) as w:
        for t, c in pieces:
            w.add("train", t, c)
    data = ShardedDataset(tmp_path)
    assert [s["pieces"] for s in data.shards["train"]] == [2, 2, 1] and data.pieces("train") == 5
    tokens = np.concatenate([data.shard("train", i)[0] for i in range(3)])
    np.testing.assert_array_equal(tokens, np.concatenate([t for t, _ in pieces]))
    with pytest.raises(OstinatoError, match="controls: shape"):
        ShardWriter(tmp_path / "b", vocab, spec).add("train", [0, 1], np.zeros((3, spec.size)))
    with pytest.raises(OstinatoError, match="no index.json"):
        ShardedDataset(tmp_path / "nothing")


def test_reader_memory_does_not_grow_with_the_corpus(tmp_path):
    small = measure(1000, 60, tmp_path / "small", pieces_per_shard=100)
    large = measure(30000, 60, tmp_path / "large", pieces_per_shard=100)
    assert large["shards"] >= 25 * small["shards"] and large["shards_read"] > small["shards_read"]
    assert large["peak_rss_mib"] <= 1.10 * small["peak_rss_mib"]
