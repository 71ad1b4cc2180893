"""Paired held-out NLL of two models (engine/evaluation/compare.py) on a small real dataset."""
import json

import numpy as np
import pytest

from engine.evaluation import compare
from engine.training.data import BuildConfig, build
from engine.modelfile import read_model_file


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("cmp") / "ds.npz"
    build(BuildConfig(collections=("airdsAirs",), max_pieces=80, out=str(out), workers=1,
                      progress=False))
    return out


def test_a_model_against_itself_differs_by_nothing(small_data, model_path):
    r = compare.compare(small_data, model_path, model_path, resamples=200)
    assert r["pieces"] > 0 and r["tokens"] > 0
    assert r["first_minus_second"] == 0.0 and r["ci95"] == [0.0, 0.0]


def test_a_damaged_model_is_worse_and_the_interval_says_so(small_data, model_path, tmp_path,
                                                          capsys):
    meta, arrays = read_model_file(model_path)
    rng = np.random.default_rng(0)
    arrays["head.bias"] = arrays["head.bias"] + rng.normal(0, 3, arrays["head.bias"].shape).astype(np.float32)
    bad = tmp_path / "bad.npz"
    np.savez(bad, meta=np.array(json.dumps(meta)), **arrays)
    assert compare.main([str(small_data), str(bad), str(model_path), "--resamples", "200"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["first_nats"] > r["second_nats"]
    lo, hi = r["ci95"]
    assert 0 < lo <= r["first_minus_second"] <= hi
