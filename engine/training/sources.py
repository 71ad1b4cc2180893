"""Where a dataset's pieces come from: each source read once, then from its cache.

A source is a corpus collection or a MIDI folder (``engine.training.corpus``), or, for an
ensemble dataset, a multi-part source (``ensemble_readers``: the one place where the
multi-part readers plug in).  The notes of each source are cached per source in one
``.npz`` (``save_notes``), keyed by a hash of its files, the reader settings and the
readers' code version, so adding a MIDI folder does not read the corpus again.
"""
import hashlib
import json
import os
import zipfile
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from engine.notes import NOTE_DTYPE
from engine.training import corpus

# Bump when a reader (corpus, or the multi-part readers) changes the notes it produces:
# every cache is then stale.
CODE_VERSION = "corpus-3"


# -- per-source cache --------------------------------------------------------------------
def source_key(source, files, config):
    """Hash of a source's file names, sizes and mtimes, the reader settings and code version."""
    h = hashlib.sha1()
    h.update(json.dumps([CODE_VERSION, source, asdict(config.read), config.max_pieces]).encode())
    for p in files:
        st = os.stat(p)
        h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def cache_path(source, files, config, prefix=""):
    """Where a source's notes are cached: ``<cache>/<prefix><name>-<key>.npz``, the key
    from its ``files`` (``source_key``)."""
    root = Path(config.cache_dir) if config.cache_dir else Path(config.out).parent / "cache"
    name = source if not source.startswith("midi:") else "midi-" + Path(source[5:]).name
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return root / f"{prefix}{safe}-{source_key(source, files, config)}.npz"


def save_notes(path, pieces, skipped):
    """Write one source's reading results: notes concatenated, offsets, ids, skip reasons."""
    path.parent.mkdir(parents=True, exist_ok=True)
    notes = np.concatenate([p.notes for p in pieces]) if pieces else np.zeros(0, NOTE_DTYPE)
    offsets = np.cumsum([0] + [len(p.notes) for p in pieces]).astype(np.int64)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, notes=notes, offsets=offsets,
             ids=np.array([p.piece_id for p in pieces], dtype=str),
             groups=np.array([p.group for p in pieces], dtype=str),
             skipped_ids=np.array([i for i, _ in skipped], dtype=str),
             skipped_reasons=np.array([r for _, r in skipped], dtype=str))
    os.replace(tmp, path)  # a crash mid-write never leaves a half cache


def load_notes(path):
    with np.load(path, allow_pickle=False) as z:
        notes, off = z["notes"], z["offsets"]
        pieces = [corpus.Piece(str(i), str(g), notes[off[k]:off[k + 1]])
                  for k, (i, g) in enumerate(zip(z["ids"], z["groups"]))]
        skipped = list(zip(map(str, z["skipped_ids"]), map(str, z["skipped_reasons"])))
    return pieces, skipped


def read_source(source, config):
    """(pieces, skipped, info) of one source, from its cache when the cache is current."""
    if config.ensemble:
        return _read_ensemble_source(source, config)
    if not source.startswith("midi:"):  # --keep-drums is for MIDI folders only
        config = replace(config, read=replace(config.read, keep_drums=False))
    files = corpus.source_files(source)
    return _read_cached(source, cache_path(source, files, config), config,
                        lambda: corpus.source_tasks(source, files))


def _read_cached(source, path, config, tasks):
    """(pieces, skipped, info) from the cache at ``path``, or read from ``tasks()`` (at
    most ``max_pieces`` of them) and cached there."""
    if path.exists() and not config.rebuild:
        try:
            pieces, skipped = load_notes(path)
            return pieces, skipped, {"cached": True, "parsed": 0, "cache": str(path)}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            pass  # a damaged cache is read again from the source
    tasks = tasks()
    if config.max_pieces:
        tasks = tasks[:config.max_pieces]
    pieces, skipped = corpus.read_all(tasks, config.read, config.workers, config.progress,
                                      desc=source)
    save_notes(path, pieces, skipped)
    return pieces, skipped, {"cached": False, "parsed": len(tasks), "cache": str(path)}


# -- ensemble sources --------------------------------------------------------------------
def ensemble_readers():
    """The multi-part readers: the ONE place where ensemble sources plug in.

    ``engine.training.multipart`` names the sources (``SOURCES``; ``midi:<folder>`` is one
    too), lists the files each reads (``ensemble_files``, for the cache key) and its pieces
    as ``corpus.Task`` objects (``ensemble_tasks``), which ``corpus.read_all`` reads into
    ``corpus.Piece`` whose notes carry channel = voice id.
    """
    from engine.training import multipart  # music21 and symusic only when asked for
    return multipart


def _read_ensemble_source(source, config):
    """``read_source`` for a multi-part source: drums kept (they are a voice), cached under
    a name of its own (``ensemble-``) beside the one-line caches of the same files."""
    config = replace(config, read=replace(config.read, keep_drums=True))
    multipart = ensemble_readers()
    files = multipart.ensemble_files(source)
    path = cache_path(source, files, config, prefix="ensemble-")
    return _read_cached(source, path, config, lambda: multipart.ensemble_tasks(source, files))


def source_names(config):
    """The sources a config reads: its collections, then its MIDI folders as ``midi:<path>``."""
    return [s for s in config.collections] + \
        [f"midi:{Path(d).resolve()}" for d in config.midi_dirs]


def read_sources(config):
    """(source, pieces, skipped, info) of each source of a config, in order."""
    for source in source_names(config):
        yield (source, *read_source(source, config))
