"""The model file format, readable without torch: one ``.npz`` of float32 weights
under their state-dict names plus a JSON string ``meta`` (config, vocabulary,
control spec, training info).  ``allow_pickle=False``: loading runs no code.
"""
import json

import numpy as np

from .errors import ModelError

FORMAT = "ostinato-model-1"


def read_model_file(path):
    """(meta dict, {name: float32 array}) of a model file."""
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            arrays = {k: z[k] for k in z.files if k != "meta"}
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"{path}: not a readable Ostinato model ({exc})") from exc
    if meta.get("format") != FORMAT:
        raise ModelError(f"{path}: format {meta.get('format')!r}, expected {FORMAT!r}")
    return meta, arrays
