"""Ostinato's engine: data, tokenizer, model, training, evaluation and export.

Importing this package does not import torch; only ``engine.training.model``,
``engine.training.train`` and the modules that need them do.
"""
from pathlib import Path

from engine.errors import OstinatoError  # noqa: F401

#: The shipped default model, loaded when no model is named.
DEFAULT_MODEL = Path(__file__).parent / "models" / "default.npz"
DEFAULT_THEME = DEFAULT_MODEL.with_name("theme.npz")  # the theme VAE (engine.theme.model)
#: The shipped ensemble (melody, bass, harmony, drums): what `ostinato serve` and the demo play.
DEFAULT_ENSEMBLE = DEFAULT_MODEL.with_name("ensemble.npz")
