"""Held-out and generated music as the evaluations read it: a dataset from its path,
notes cut to a length, notes encoded with their controls, and notes cut into windows.
"""
import numpy as np

from engine.training.data import Dataset


def load_data(data):
    """A dataset object (with .vocab, .spec, .pieces) as is, or ``Dataset.load`` of a path."""
    if hasattr(data, "pieces"):
        return data
    return Dataset.load(data)


def crop(notes, window):
    """The notes that start before tick ``window``, each ended by it at the latest."""
    n = notes[notes["start"] < window].copy()
    n["end"] = np.minimum(n["end"], window)
    return n


def encode(ds, notes):
    """(tokens, controls) of notes in the dataset's vocabulary, as a dataset stores them."""
    tokens = ds.vocab.encode(notes)
    return tokens, ds.spec.compute(tokens, ds.vocab)


def windows(ds, notes, window, length=None):
    """(tokens, controls) of each whole ``window``-tick window, holding 2+ notes, of a
    piece ``length`` ticks long (default: to its last note's end)."""
    out = []
    length = (int(notes["end"].max()) if len(notes) else 0) if length is None else length
    for a in range(0, length - window + 1, window):
        w = notes[(notes["start"] >= a) & (notes["start"] < a + window)].copy()
        w["start"] -= a
        w["end"] = np.minimum(w["end"] - a, window)
        if len(w) >= 2:
            out.append(encode(ds, w))
    return out
