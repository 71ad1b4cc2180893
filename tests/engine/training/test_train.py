"""Training on a small real subset, checkpoints, resume, and offline generation."""
import mido
import numpy as np
import pytest
import torch

from realtime.cli import main
from engine.training.data import BuildConfig, Dataset, build
from engine.controls import STYLES
from engine.errors import InvalidMessage, ModelError
from engine.generate import generate
from engine.training.model import ModelConfig, MusicLSTM, load_model, save_model
from engine.training.train import train
from engine.sampler.weights import Weights


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """60 of Ryan's Mammoth tunes from music21's corpus."""
    path = tmp_path_factory.mktemp("train") / "dataset.npz"
    build(BuildConfig(collections=("ryansMammoth",), max_pieces=60, out=str(path), workers=1,
                      progress=False))
    return Dataset.load(path)


def small(ds):
    return ModelConfig(vocab_size=ds.vocab.size, n_controls=ds.spec.size, embed=16, hidden=32,
                       layers=1, dropout=0.0)


def test_a_short_run_lowers_validation_loss_and_resumes(data, tmp_path):
    cfg = small(data)
    first = train(data, tmp_path, cfg, steps=1, batch_size=8, seq_len=64, eval_every=1,
                  progress=False)
    best = train(data, tmp_path, cfg, steps=120, batch_size=8, seq_len=64, eval_every=60,
                 resume=True, progress=False)
    assert best < first - 0.5, (first, best)
    log = (tmp_path / "log.jsonl").read_text().splitlines()
    assert len(log) == 3  # one validation at step 1, resumed: steps 60 and 120
    model, vocab, spec, meta = load_model(tmp_path / "best.npz")
    assert meta["info"]["step"] == 120 and meta["info"]["valid_nll"] == pytest.approx(best)
    assert vocab == data.vocab and spec == data.spec


def test_a_stage_starts_from_the_model_the_stage_before_exported(data, tmp_path):
    """--init: a second stage in a fresh run folder starts where the first one's best
    model stands (its first validation equals that model's), and refuses another size."""
    cfg = small(data)
    first = train(data, tmp_path / "one", cfg, steps=60, batch_size=8, seq_len=64,
                  eval_every=60, progress=False)
    again = train(data, tmp_path / "two", cfg, steps=1, batch_size=8, seq_len=64, eval_every=1,
                  lr=1e-9, progress=False, init=tmp_path / "one" / "best.npz")
    fresh = train(data, tmp_path / "three", cfg, steps=1, batch_size=8, seq_len=64,
                  eval_every=1, lr=1e-9, progress=False)
    assert again == pytest.approx(first, abs=1e-3) and fresh > first + 0.3, (first, again, fresh)
    bigger = ModelConfig(**dict(vars(cfg), hidden=48))
    with pytest.raises(ModelError, match="--init"):
        train(data, tmp_path / "four", bigger, steps=1, batch_size=8, seq_len=64, eval_every=1,
              progress=False, init=tmp_path / "one" / "best.npz")


def test_a_model_told_no_styles_starts_a_stage_told_them_and_plays_as_before(data, tmp_path):
    """--init with --styles: the style block's input weights start at zero, so the first
    validation of the new stage equals the old model's (every piece told a style)."""
    cfg = small(data)
    first = train(data, tmp_path / "one", cfg, steps=60, batch_size=8, seq_len=64,
                  eval_every=60, progress=False)
    named = Dataset(data.tokens, data.controls, data.offsets, data.ids,
                    np.array(["freedoom", "quartets"] * len(data))[:len(data)], data.split,
                    data.vocab, data.spec, data.summary).with_styles(STYLES, 0.2)
    told = ModelConfig(**dict(vars(cfg), n_controls=named.spec.size))
    again = train(named, tmp_path / "two", told, steps=1, batch_size=8, seq_len=64,
                  eval_every=1, lr=1e-9, progress=False, init=tmp_path / "one" / "best.npz")
    assert again == pytest.approx(first, abs=1e-3)
    model, _, spec, _ = load_model(tmp_path / "two" / "best.npz")
    assert spec.styles == tuple(STYLES) and spec.size == data.spec.size + len(STYLES)
    assert model.lstm.weight_ih_l0.shape[1] == cfg.embed + spec.size


def test_a_model_told_no_voice_densities_starts_a_stage_told_them_and_plays_as_before(
        data, tmp_path):
    """--init with --parts: the block's input weights start at zero, so the first
    validation of the new stage equals the old model's (every window told them); a model
    told them does not start one told fewer blocks."""
    cfg = small(data)
    first = train(data, tmp_path / "one", cfg, steps=60, batch_size=8, seq_len=64,
                  eval_every=60, progress=False)
    told_data = data.with_parts(0.2)
    told = ModelConfig(**dict(vars(cfg), n_controls=told_data.spec.size))
    again = train(told_data, tmp_path / "two", told, steps=1, batch_size=8, seq_len=64,
                  eval_every=1, lr=1e-9, progress=False, init=tmp_path / "one" / "best.npz")
    assert again == pytest.approx(first, abs=1e-3)
    model, _, spec, _ = load_model(tmp_path / "two" / "best.npz")
    assert spec.parts and model.lstm.weight_ih_l0.shape[1] == cfg.embed + spec.size
    assert model.lstm.weight_ih_l0[:, -4:].abs().max() < 1e-6  # zero, and one step of lr 1e-9
    with pytest.raises(ModelError, match="--init"):
        train(data, tmp_path / "three", cfg, steps=1, batch_size=8, seq_len=64, eval_every=1,
              progress=False, init=tmp_path / "two" / "best.npz")


def test_only_new_trains_the_new_blocks_input_weights_and_nothing_else(data, tmp_path):
    """--only-new: the model it grew from stays as it was, the new block learns (and lowers
    the validation loss it is told them on); without new blocks it names the field."""
    cfg = small(data)
    train(data, tmp_path / "one", cfg, steps=60, batch_size=8, seq_len=64, eval_every=60,
          progress=False)
    told_data = data.with_parts(0.0)
    told = ModelConfig(**dict(vars(cfg), n_controls=told_data.spec.size))
    first = train(told_data, tmp_path / "two", told, steps=1, batch_size=8, seq_len=64,
                  eval_every=1, lr=1e-9, progress=False, init=tmp_path / "one" / "best.npz",
                  new_only=True)
    best = train(told_data, tmp_path / "three", told, steps=80, batch_size=8, seq_len=64,
                 eval_every=80, lr=1e-2, progress=False, init=tmp_path / "one" / "best.npz",
                 new_only=True)
    assert best < first - 0.01, (first, best)
    before = load_model(tmp_path / "one" / "best.npz")[0].state_dict()
    after = load_model(tmp_path / "three" / "best.npz")[0].state_dict()
    for name, w in before.items():
        grown = after[name][:, :w.shape[1]] if name == "lstm.weight_ih_l0" else after[name]
        assert torch.equal(grown, w), name
    assert after["lstm.weight_ih_l0"][:, -4:].abs().max() > 1e-3
    with pytest.raises(InvalidMessage) as e:
        train(data, tmp_path / "four", cfg, steps=1, batch_size=8, seq_len=64, eval_every=1,
              progress=False, init=tmp_path / "one" / "best.npz", new_only=True)
    assert e.value.field == "only_new"


def test_model_file_save_load_is_exact(data, tmp_path):
    torch.manual_seed(1)
    model = MusicLSTM(small(data)).eval()
    save_model(tmp_path / "m.npz", model, data.vocab, data.spec)
    loaded, vocab, spec, meta = load_model(tmp_path / "m.npz")
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    x = torch.randint(0, vocab.size, (2, 10))
    c = torch.rand(2, 10, spec.size)
    assert torch.equal(model(x, c)[0], loaded(x, c)[0])
    assert meta["config"]["hidden"] == 32


def test_generate_is_reproducible_and_writes_midi(data, tmp_path):
    torch.manual_seed(2)
    path = tmp_path / "m.npz"
    save_model(path, MusicLSTM(small(data)), data.vocab, data.spec)
    weights = Weights(path)  # generation runs in the numba runtime the server plays
    vocab = weights.vocab
    a = generate(weights, 2, 1, 2.0, bars=2, seed=5)
    b = generate(path, 2, 1, 2.0, bars=2, seed=5)
    np.testing.assert_array_equal(a, b)
    assert len(a) and a["end"].max() <= 2 * 4 * vocab.ticks_per_beat
    out = tmp_path / "out.mid"
    assert main(["generate", "--model", str(path), "--key", "Eb", "--mode", "minor",
                 "--density", "2.5", "--bars", "2", "--seed", "0", "-o", str(out)]) == 0
    mid = mido.MidiFile(out)
    assert sum(1 for t in mid.tracks for m in t if m.type == "note_on") > 0
