"""A model file's weights in the layout the numba kernels step (``engine.sampler.lstm``).

No torch here.  The weights are rearranged once at load time so one step of one
layer is one GEMV over ``[input, h]``; the token embedding and the first layer's
input weights are folded into a table (``tok_table[token]`` is a row copy instead
of a multiply).  The generator and the critic (``role``) load the same way.
"""
import numpy as np

from engine.controls import ControlSpec
from engine.errors import ModelError
from engine.modelfile import read_model_file
from engine.vocab import Vocab


class Weights:
    """Model weights in the layout the numba kernels want (float32, C-contiguous)."""

    def __init__(self, path, role="generator"):
        meta, a = read_model_file(path)
        if meta.get("role", "generator") != role:
            raise ModelError(f"{path}: a {meta.get('role', 'generator')} file where a {role} "
                             "is needed")
        cfg = meta["config"]
        self.meta = meta
        self.vocab = Vocab.from_dict(meta["vocab"])
        self.spec = ControlSpec.from_dict(meta["controls"])
        self.hidden = H = cfg["hidden"]
        self.layers = L = cfg["layers"]
        self.n_controls = cfg["n_controls"]
        E = cfg["embed"]
        f32 = lambda x: np.ascontiguousarray(x, dtype=np.float32)
        w_ih0 = a["lstm.weight_ih_l0"].astype(np.float64)
        b0 = a["lstm.bias_ih_l0"].astype(np.float64) + a["lstm.bias_hh_l0"]
        self.tok_table = f32(a["embed.weight"].astype(np.float64) @ w_ih0[:, :E].T + b0)
        self.w0 = f32(np.hstack([w_ih0[:, E:], a["lstm.weight_hh_l0"]]))  # [4H, C+H]
        n = max(L - 1, 1)
        self.w_rest = np.zeros((n, 4 * H, 2 * H), np.float32)
        self.b_rest = np.zeros((n, 4 * H), np.float32)
        for l in range(1, L):
            self.w_rest[l - 1] = np.hstack([a[f"lstm.weight_ih_l{l}"], a[f"lstm.weight_hh_l{l}"]])
            self.b_rest[l - 1] = a[f"lstm.bias_ih_l{l}"] + a[f"lstm.bias_hh_l{l}"]
        self.w_out = f32(a["head.weight"])
        self.b_out = f32(a["head.bias"])
        self.kinds, self.values = self.vocab.tables()
        info = meta.get("info", {})
        self.mean_register = float(info.get("mean_register", 67.0))
        # trained on pieces moved to C (engine.training.data, key-relative datasets): the sequencer
        # transposes to the key asked for (engine.controls.model_key)
        self.key_relative = bool(info.get("key_relative", False))

    @property
    def nbytes(self):
        """Bytes of weights one step reads (the memory-bandwidth bound's numerator)."""
        H = self.hidden
        return (4 * H * 4 + self.w0.nbytes + (self.layers - 1) * (self.w_rest[0].nbytes
                + self.b_rest[0].nbytes) + self.w_out.nbytes + self.b_out.nbytes)
