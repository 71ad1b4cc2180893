"""Export: a training checkpoint (``last.pt``) or model file to the server's ``.npz``.

The server's runtime (``engine.sampler.generator``) reads that file without torch.
"""
import pickle
from pathlib import Path

from engine import DEFAULT_MODEL
from engine.errors import ModelError


def export(src, dst, data=None):
    """Write the model in ``src`` (run folder, ``.pt`` checkpoint or ``.npz``) to ``dst``."""
    from engine.training.model import ModelConfig, MusicLSTM, load_model, save_model

    src = Path(src)
    if src.is_dir():
        src = src / "best.npz" if (src / "best.npz").exists() else src / "last.pt"
    if src.suffix == ".npz":
        model, vocab, spec, meta = load_model(src)
        save_model(dst, model, vocab, spec, info=meta.get("info"))
        return dst
    from engine.training.data import Dataset

    if data is None:
        raise ModelError("exporting a .pt checkpoint needs --data for its vocabulary and controls")
    st = _read_checkpoint(src)  # before the dataset: the file named first is checked first
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


def _read_checkpoint(src):
    """The dict in a ``.pt`` checkpoint; ModelError naming the file if it cannot be read."""
    import torch

    try:
        st = torch.load(src, map_location="cpu", weights_only=True)
    except OSError as exc:
        raise ModelError(f"{src}: cannot read the checkpoint: {exc.strerror or exc}") from None
    except EOFError:
        raise ModelError(f"{src}: the checkpoint is empty or cut short (truncated)") from None
    except pickle.UnpicklingError:
        # torch's own text here suggests weights_only=False, which would run the file's code
        raise ModelError(f"{src}: not a torch checkpoint, or corrupt") from None
    except RuntimeError as exc:  # torch's zip reader: a damaged archive
        first = (str(exc).strip().splitlines() or ["unreadable"])[0]
        raise ModelError(f"{src}: the checkpoint is corrupt ({first})") from None
    if not isinstance(st, dict) or not {"config", "model", "step", "best"} <= set(st):
        raise ModelError(f"{src}: not a training checkpoint of this Ostinato (it needs config, "
                         "model, step and best)")
    return st


def add_arguments(p):
    p.add_argument("source", help="run folder, last.pt checkpoint or model .npz")
    p.add_argument("-o", "--output", default=str(DEFAULT_MODEL), help="model .npz to write")
    p.add_argument("--data", default="data/dataset.npz",
                   help="dataset the checkpoint was trained on (for a .pt source)")


def run(args):
    dst = export(args.source, args.output, args.data)
    print(f"wrote {dst}")
    return 0
