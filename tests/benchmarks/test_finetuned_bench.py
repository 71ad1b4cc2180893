"""benchmarks.finetuned: a model fine-tuned here on real MIDI files, timed beside the shipped
model it started from."""
import pytest

from engine import DEFAULT_ENSEMBLE, DEFAULT_MODEL
from engine.errors import OstinatoError
from engine.training.finetune import FinetuneConfig, folder_data
from engine.training.model import load_model
from engine.training.train import fine_tune

from benchmarks.finetuned import MEASURES, MODELS, run
from tests.engine.training.test_finetune import D_MAJOR, write_midi


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tuned")
    (tmp / "tunes").mkdir()
    for i in range(4):
        write_midi(tmp / "tunes" / f"tune{i}.mid", [(D_MAJOR, 0)], seed=i)
    _, vocab, _, _ = load_model(DEFAULT_MODEL)
    ds, _ = folder_data([tmp / "tunes"], vocab, True)
    fine_tune(ds, DEFAULT_MODEL, tmp / "run", FinetuneConfig(steps=2, eval_every=1, seq_len=64),
              progress=False)
    return tmp / "run" / "best.npz"


def test_every_model_and_measure_is_timed_beside_the_floor(tuned):
    r = run(tuned, rounds=3, block=10, warmup=1)
    for name in MODELS:
        for m in MEASURES:
            assert r["models"][name][m]["n"] == 3 and r["models"][name][m]["p50"] > 0
    for name in MODELS[1:]:
        for m in MEASURES:
            lo, hi = r["vs_shipped"][name][m]["ci95"]
            assert lo <= r["vs_shipped"][name][m]["median"] <= hi
    assert r["floor"]["bound_us_weights_size"] > 0


def test_a_model_of_another_size_is_refused():
    with pytest.raises(OstinatoError, match="finetuned: .* is not the size of"):
        run(DEFAULT_ENSEMBLE, rounds=1)
