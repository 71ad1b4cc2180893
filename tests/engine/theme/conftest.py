"""Fixtures of the theme tests: one torch thread, a tiny plain model file, a 4-step run."""
import pytest
import torch

from engine.training.model import save_model
from engine.theme.train import train_theme

from .tiny import TINY, TINY_TRAIN, tiny_plain


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="package")
def base_file(data, tmp_path_factory):
    path = tmp_path_factory.mktemp("base") / "plain.npz"
    save_model(path, tiny_plain(data), data.vocab, data.spec,
               info=dict(mean_register=70.0, key_relative=True))
    return path


@pytest.fixture(scope="package")
def run(data_file, base_file, tmp_path_factory):
    """A 4-step run of the tiny config: its folder."""
    out = tmp_path_factory.mktemp("run")
    train_theme(data_file, base_file, out, TINY, TINY_TRAIN, progress=False)
    return out
