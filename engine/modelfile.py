"""The model file format, readable without torch: one ``.npz`` of float32 weights
under their state-dict names plus a JSON string ``meta`` (format version, config,
vocabulary, control spec, training info).  ``allow_pickle=False``: loading runs no code.

``read_model_file`` checks everything a loader relies on before handing it over, so a
broken file is one ``ModelError`` naming the file and what is wrong (not a zip, cut
short, members missing, another format version, weights that do not fit the config),
never a ``KeyError`` or a shape error deep in a loader.

A theme model (``engine.theme.model``) is a generator file whose meta also has ``theme`` (its
``ThemeConfig``) and which carries the arrays that config implies under ``theme.``
(``theme_shapes``).  They are checked like the rest, but handed over only to a reader
that asks (``read_model_file(path, theme=True)``): every other reader sees the plain
generator the file also is.
"""
import json
import os
import zipfile
import zlib

import numpy as np

from engine.controls import ControlSpec
from engine.errors import ModelError
from engine.vocab import Vocab

FORMAT_PREFIX = "ostinato-model-"
FORMAT_VERSION = 1
FORMAT = f"{FORMAT_PREFIX}{FORMAT_VERSION}"  # written by engine.training.model.save_model
ROLES = ("generator", "critic")  # engine.training.model.MusicLSTM, engine.training.adversarial.Critic
CONFIG_INTS = ("vocab_size", "n_controls", "embed", "hidden", "layers")
THEME_INTS = ("z_dim", "enc_embed", "enc_hidden")  # the sizes of engine.theme.model.ThemeConfig
THEME_PREFIX = "theme."
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a member first, or an empty archive


def read_model_file(path, theme=False):
    """(meta dict, {name: float32 array}) of a model file; ModelError if it is not one.
    A theme model's ``theme.`` arrays are left out unless ``theme`` is true."""
    name = os.fspath(path)
    try:
        with open(path, "rb") as f:
            if f.read(4) not in _ZIP_MAGIC:
                raise ModelError(f"{name}: not an Ostinato model: the file is not an .npz "
                                 "(zip) archive")
            f.seek(0)
            with np.load(f, allow_pickle=False) as z:
                if "meta" not in z.files:
                    raise ModelError(f"{name}: not an Ostinato model: no 'meta' member (it "
                                     f"holds {_listed(z.files)})")
                meta = json.loads(str(z["meta"]))
                arrays = {k: z[k] for k in z.files if k != "meta"}
    except ModelError:
        raise
    except OSError as exc:  # missing, a directory, no permission
        raise ModelError(f"{name}: cannot read the model file: {exc.strerror or exc}") from None
    except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
        # it began as a zip, so "not a zip file" here means the directory at its end is gone
        why = "its zip directory, at the end, is missing" if "not a zip file" in str(exc) else exc
        raise ModelError(f"{name}: the model file is truncated or corrupt ({why})") from None
    except ValueError as exc:  # a member that is no .npy array, or 'meta' that is no JSON
        raise ModelError(f"{name}: the model file is corrupt ({exc})") from None
    _check_format(name, meta)
    _check_layout(name, meta, arrays)
    if not theme:
        arrays = {k: v for k, v in arrays.items() if not k.startswith(THEME_PREFIX)}
    return meta, arrays


def _check_format(name, meta):
    fmt = meta.get("format") if isinstance(meta, dict) else None
    if fmt == FORMAT:
        return
    version = fmt[len(FORMAT_PREFIX):] if isinstance(fmt, str) and fmt.startswith(FORMAT_PREFIX) \
        else None
    if version is None:
        raise ModelError(f"{name}: not an Ostinato model: its metadata has format {fmt!r}, "
                         f"expected {FORMAT!r}")
    newer = version.isdigit() and int(version) > FORMAT_VERSION
    raise ModelError(f"{name}: model format {fmt!r} {'is newer than' if newer else 'is not'} "
                     f"the {FORMAT!r} this Ostinato reads; "
                     + ("upgrade Ostinato" if newer else "export it again from its training run "
                                                       "(`ostinato export RUN`)"))


def _check_layout(name, meta, arrays):
    """The config is complete and every weight is there, float, in the shape it implies."""
    cfg = meta.get("config")
    bad = [k for k in CONFIG_INTS if not isinstance((cfg or {}).get(k), int) or cfg[k] < 1]
    if not isinstance(cfg, dict) or bad:
        raise ModelError(f"{name}: the model's config lacks a positive integer "
                         f"{', '.join(bad) or 'config'}")
    for key, cls, size in (("vocab", Vocab, "vocab_size"), ("controls", ControlSpec, "n_controls")):
        try:
            got = cls.from_dict(meta[key]).size
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{name}: the model's '{key}' metadata is missing or invalid "
                             f"({type(exc).__name__}: {exc})") from None
        if got != cfg[size]:
            raise ModelError(f"{name}: the model's {key} has {got} entries but its config says "
                             f"{size} = {cfg[size]}")
    V, C, E, H = cfg["vocab_size"], cfg["n_controls"], cfg["embed"], cfg["hidden"]
    role = meta.get("role", "generator")  # files before the critic have no role
    if role not in ROLES:
        raise ModelError(f"{name}: the model's role {role!r} is not one of {', '.join(ROLES)}")
    out = V if role == "generator" else 1  # next-token logits, or one logit of P(real)
    want = {"embed.weight": (V, E), "head.weight": (out, H), "head.bias": (out,)}
    for layer in range(cfg["layers"]):
        want[f"lstm.weight_ih_l{layer}"] = (4 * H, E + C if layer == 0 else H)
        want[f"lstm.weight_hh_l{layer}"] = (4 * H, H)
        want[f"lstm.bias_ih_l{layer}"] = want[f"lstm.bias_hh_l{layer}"] = (4 * H,)
    if "theme" in meta:
        theme = meta["theme"] if isinstance(meta["theme"], dict) else {}
        bad = [k for k in THEME_INTS if not isinstance(theme.get(k), int) or theme[k] < 1]
        if bad:
            raise ModelError(f"{name}: the model's theme config lacks a positive integer "
                             f"{', '.join(bad)}")
        bad = [k for k, lo in (("positions_per_bar", 0), ("max_bars", 1)) if k in theme and (
            not isinstance(theme[k], int) or theme[k] < lo)]
        if bad:
            raise ModelError(f"{name}: the model's theme config has a bad {', '.join(bad)} "
                             "(positions_per_bar: an integer >= 0, max_bars: >= 1)")
        want.update(theme_shapes(theme, cfg))
    missing = [k for k in want if k not in arrays]
    extra = [k for k in arrays if k not in want]
    if missing or extra:
        raise ModelError(f"{name}: the weights do not match the config (layers={cfg['layers']}): "
                         + "; ".join(f"{what} {_listed(keys)}" for what, keys in
                                     (("missing", missing), ("unexpected", extra)) if keys))
    for key, shape in want.items():
        a = arrays[key]
        if a.shape != shape or a.dtype.kind != "f":
            raise ModelError(f"{name}: weight '{key}' is {a.dtype} {a.shape}; the config needs "
                             f"float {shape}")


def theme_shapes(theme, cfg):
    """{name: shape} of the arrays a theme model carries beside the generator's: the phrase
    encoder (embedding, one bidirectional LSTM layer, the linear map to mu and log sigma^2)
    and, per generator layer k, ``theme.gates_l{k}`` (W_z: the latent's per-gate bias is
    W_z z) and ``theme.h0_l{k}`` / ``theme.c0_l{k}`` (the initial state tanh(W_h z), W_c z);
    with ``positions_per_bar`` > 0, the conductor ``theme.conductor`` (A_p, one per
    position of ``max_bars``) and per layer ``theme.codes_l{k}`` (W_u)."""
    V, H, Z = cfg["vocab_size"], cfg["hidden"], theme["z_dim"]
    E, K = theme["enc_embed"], theme["enc_hidden"]
    enc = "theme.encoder."
    want = {enc + "embed.weight": (V, E), enc + "out.weight": (2 * Z, 2 * K),
            enc + "out.bias": (2 * Z,)}
    for d in ("", "_reverse"):
        want[f"{enc}lstm.weight_ih_l0{d}"] = (4 * K, E)
        want[f"{enc}lstm.weight_hh_l0{d}"] = (4 * K, K)
        want[f"{enc}lstm.bias_ih_l0{d}"] = want[f"{enc}lstm.bias_hh_l0{d}"] = (4 * K,)
    for layer in range(cfg["layers"]):
        want[f"theme.gates_l{layer}"] = (4 * H, Z)
        want[f"theme.h0_l{layer}"] = want[f"theme.c0_l{layer}"] = (H, Z)
    positions = theme.get("positions_per_bar", 0) * theme.get("max_bars", 8)
    if positions:
        want["theme.conductor"] = (positions, Z, Z)
        for layer in range(cfg["layers"]):
            want[f"theme.codes_l{layer}"] = (4 * H, Z)
    return want


def _listed(names, most=6):
    names = sorted(names)
    shown = ", ".join(repr(n) for n in names[:most])
    return (shown + f" and {len(names) - most} more" if len(names) > most else shown) or "nothing"
