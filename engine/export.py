"""Export: a training checkpoint (``last.pt``) or model file to the server's ``.npz``.

The server's runtime (``realtime.generator``) reads that file without torch.
"""
from pathlib import Path

from . import DEFAULT_MODEL


def export(src, dst, data=None):
    """Write the model in ``src`` (run folder, ``.pt`` checkpoint or ``.npz``) to ``dst``."""
    import torch

    from .model import ModelConfig, MusicLSTM, load_model, save_model

    src = Path(src)
    if src.is_dir():
        src = src / "best.npz" if (src / "best.npz").exists() else src / "last.pt"
    if src.suffix == ".npz":
        model, vocab, spec, meta = load_model(src)
        save_model(dst, model, vocab, spec, info=meta.get("info"))
        return dst
    from .data import Dataset

    if data is None:
        raise ValueError("exporting a .pt checkpoint needs --data for its vocabulary and controls")
    ds = Dataset.load(data)
    st = torch.load(src, map_location="cpu", weights_only=True)
    model = MusicLSTM(ModelConfig(**st["config"]))
    model.load_state_dict(st["model"])
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
