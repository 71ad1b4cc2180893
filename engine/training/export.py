"""Export: a training checkpoint (``last.pt``) or model file to the server's ``.npz``.

The server's runtime (``engine.sampler.generator``) reads that file without torch.
"""
from pathlib import Path

from engine import DEFAULT_MODEL
from engine.errors import ModelError
from engine.training.data import Dataset
from engine.training.model import ModelConfig, MusicLSTM, load_model, save_model
from engine.training.runs import read_checkpoint


def export(src, dst, data=None):
    """Write the model in ``src`` (run folder, ``.pt`` checkpoint or ``.npz``) to ``dst``."""
    src = Path(src)
    if src.is_dir():
        src = src / "best.npz" if (src / "best.npz").exists() else src / "last.pt"
    if src.suffix == ".npz":
        model, vocab, spec, meta = load_model(src)
        save_model(dst, model, vocab, spec, info=meta.get("info"))
        return dst
    if data is None:
        raise ModelError("exporting a .pt checkpoint needs --data for its vocabulary and controls")
    # the checkpoint before the dataset: the file named first is checked first
    st = read_checkpoint(src, needs=("config", "model", "step", "best"))
    ds = Dataset.load(data)
    try:
        model = MusicLSTM(ModelConfig(**st["config"]))
        model.load_state_dict(st["model"])
    except (KeyError, TypeError, RuntimeError) as exc:
        # RuntimeError is torch's word for weights that do not fit the config
        raise ModelError(f"{src}: not a training checkpoint of this Ostinato "
                         f"({type(exc).__name__}: {exc})") from None
    save_model(dst, model, ds.vocab, ds.spec, info=dict(step=st["step"], valid_nll=st["best"]))
    return dst


def add_arguments(p):
    p.add_argument("source", help="run folder, last.pt checkpoint or model .npz")
    p.add_argument("-o", "--output", default=str(DEFAULT_MODEL), help="model .npz to write")
    p.add_argument("--data", default="data/dataset.npz",
                   help="dataset the checkpoint was trained on (for a .pt source)")


def run(args):
    dst = export(args.source, args.output, args.data)
    print(f"wrote {dst}")
    return 0
