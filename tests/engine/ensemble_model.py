"""A small random ensemble model for the sampler and generation tests."""
import torch

from engine.controls import ControlSpec
from engine.training.model import ModelConfig, MusicLSTM, save_model
from engine.vocab import VOICE, Vocab


def random_ensemble_model(folder):
    """(path, model, vocab, spec): a key-relative model with four voices, its weights three
    times the default init (so numerical errors would show, as in test_generator) and the
    voice tokens' bias raised, so that a random model changes voice often enough for every
    voice to play."""
    torch.manual_seed(0)
    vocab, spec = Vocab(n_voices=4), ControlSpec()
    model = MusicLSTM(ModelConfig(vocab_size=vocab.size, n_controls=spec.size, embed=32,
                                  hidden=64, layers=2, dropout=0.0))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
        model.head.bias[vocab.offsets[VOICE]:vocab.offsets[VOICE] + 4] += 3.0
    path = folder / "ensemble.npz"
    save_model(path, model, vocab, spec, info=dict(key_relative=True))
    return path, model.eval(), vocab, spec
