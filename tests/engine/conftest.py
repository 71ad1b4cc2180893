"""Fixtures of the engine tests: a small real dataset, built once per test session."""
import pytest

from engine.training.data import BuildConfig, Dataset, build


@pytest.fixture(scope="session")
def data_file(tmp_path_factory):
    """40 of Ryan's Mammoth tunes from music21's corpus, key-relative, as `ostinato data`
    builds them (the training, adversarial, theme and variation tests share it)."""
    path = tmp_path_factory.mktemp("ryans40") / "dataset.npz"
    build(BuildConfig(collections=("ryansMammoth",), max_pieces=40, out=str(path), workers=1,
                      progress=False))
    return path


@pytest.fixture(scope="session")
def data(data_file):
    return Dataset.load(data_file)
