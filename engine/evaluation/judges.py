"""Key judges: which key and mode does a piece sound in, by two independent analyses.

- ``detect_key``: the project's Krumhansl-Kessler key finding (``engine.controls.find_key``),
  the analysis the model's key control is measured with.
- ``music21_key``: music21's own ``analyze("key")`` (Aarden-Essen profiles), an
  implementation the project did not write, so a model cannot be tuned to its judge.

``adherence`` and ``key_table`` score heard keys against requested ones; ``confusion``
says what each judge heard instead when it missed; ``real_music`` runs both judges on
held-out real music against its annotated key, the ceiling a judge allows: a judge that
disagrees with a tune's own key signature on real music will also "miss" some generated
pieces that are as tonal as real ones.
"""
import sys
import time
from collections import Counter

import numpy as np
from tqdm import tqdm

from engine.controls import KEY_NAMES, MODES, find_key
from engine.errors import InvalidMessage

JUDGES = ("kk", "music21")
JUDGE_NAMES = dict(kk="Krumhansl-Kessler (find_key)", music21='music21 analyze("key")')


def detect_key(notes):
    """(tonic, mode) heard by ``find_key``, or None for a piece without notes."""
    if len(notes) == 0 or (notes["end"] - notes["start"]).sum() <= 0:
        return None
    tonic, mode, _ = find_key(notes)
    return tonic, mode


def music21_stream(notes, ticks_per_beat=12):
    """A music21 Stream of the notes (offsets and lengths in quarter notes = beats)."""
    from music21 import note, stream  # music21 takes seconds to import: only when it judges
    s = stream.Stream()
    for a, b, p in zip(notes["start"].tolist(), notes["end"].tolist(), notes["pitch"].tolist()):
        s.coreInsert(a / ticks_per_beat, note.Note(p, quarterLength=(b - a) / ticks_per_beat))
    s.coreElementsChanged()
    return s


def music21_key(notes, ticks_per_beat=12, exact=False):
    """(tonic, mode) heard by music21's key analysis, or None for a piece without notes.

    ``stream.analyze("key")`` is ``analysisClassFromMethodName("key")().getSolution``:
    ``process`` finds the key, then ``getSolution`` builds 23 alternative Key objects,
    two thirds of its time.  By default only ``process`` is run, which gives the same
    key (tests check it against ``analyze("key")``); ``exact=True`` calls ``analyze``."""
    if len(notes) == 0 or (notes["end"] - notes["start"]).sum() <= 0:
        return None
    s = music21_stream(notes, ticks_per_beat)
    if exact:
        k = s.analyze("key")
        return k.tonic.pitchClass, MODES.index(k.mode)
    from music21.analysis.discrete import analysisClassFromMethodName  # as above: only here
    (tonic, mode, _), _ = analysisClassFromMethodName("key")().process(s.flatten())
    return tonic.pitchClass, MODES.index(mode)


def judge_keys(pieces, ticks_per_beat=12, progress=False, desc="judge", clock=None):
    """{judge: [(tonic, mode) or None per piece]} for both judges; ``clock`` (a dict)
    gathers each judge's seconds and pieces."""
    it = tqdm(pieces, desc=desc, unit="piece", disable=not progress, file=sys.stderr,
              dynamic_ncols=True)
    t0 = time.monotonic()
    kk = [detect_key(n) for n in pieces]
    t1 = time.monotonic()
    m21 = [music21_key(n, ticks_per_beat) for n in it]
    t2 = time.monotonic()
    if clock is not None:
        for name, dt in (("kk", t1 - t0), ("music21", t2 - t1)):
            clock[f"judge_{name}"] = clock.get(f"judge_{name}", 0.0) + dt
        clock["judged_pieces"] = clock.get("judged_pieces", 0) + len(pieces)
    return dict(kk=kk, music21=m21)


def adherence(requests, found):
    """Shares of pieces whose heard (tonic, mode) (None: silence) matches the request:
    both, the mode only, the tonic only."""
    if len(requests) != len(found) or not requests:
        raise InvalidMessage(f"{len(requests)} requests for {len(found)} pieces",
                             field="requests", allowed="one (tonic, mode) per piece, at least one")
    tonic = np.array([f is not None and f[0] == r[0] % 12 for r, f in zip(requests, found)])
    mode = np.array([f is not None and f[1] == r[1] for r, f in zip(requests, found)])
    return dict(key_and_mode=float((tonic & mode).mean()), mode=float(mode.mean()),
                tonic=float(tonic.mean()))


def key_adherence(requests, pieces):
    """Fractions of pieces whose detected key (``detect_key``) matches the requested
    (tonic, mode): both, the mode only, the tonic only.  A piece without notes matches
    nothing."""
    return adherence(requests, [detect_key(n) for n in pieces])


def key_table(requests, found, densities=None, worst=5):
    """One judge's figures: overall shares, per key (``"D minor"`` -> shares), per
    density (when ``densities`` gives each piece's), and the ``worst`` keys."""
    out = adherence(requests, found)
    names = [f"{KEY_NAMES[k % 12]} {MODES[m]}" for k, m in requests]
    per_key = {}
    for name in dict.fromkeys(names):
        sel = [i for i, n in enumerate(names) if n == name]
        per_key[name] = adherence([requests[i] for i in sel], [found[i] for i in sel])
    out["per_key"] = per_key
    if densities is not None:
        out["per_density"] = {f"{d:g}": adherence(
            [r for r, x in zip(requests, densities) if x == d],
            [f for f, x in zip(found, densities) if x == d])["key_and_mode"]
            for d in dict.fromkeys(densities)}
    order = sorted(per_key, key=lambda k: (per_key[k]["key_and_mode"], names.index(k)))
    out["worst"] = [dict(key=k, **per_key[k]) for k in order[:worst]]
    return out


def key_name(key):
    """"D minor" for (2, 1); "nothing" for None (a silent piece)."""
    return f"{KEY_NAMES[key[0] % 12]} {MODES[key[1]]}" if key is not None else "nothing"


def confusion(requests, found, most=8):
    """What a judge heard instead, over its misses: the ``most`` commonest
    (asked, heard, count, share of the asked key's pieces), and how the misses split
    into a neighbour on the circle of fifths with the same mode, the relative key (same
    scale, other mode), the parallel key (same tonic, other mode), and anything else."""
    asked = Counter(key_name(r) for r in requests)
    pairs = Counter((key_name(r), key_name(f)) for r, f in zip(requests, found)
                    if f is None or f != (r[0] % 12, r[1]))
    kinds = Counter()
    for r, f in zip(requests, found):
        tonic, mode = r[0] % 12, r[1]
        if f is not None and f == (tonic, mode):
            continue
        if f is None:
            kinds["silent"] += 1
        elif f[1] == mode and (f[0] - tonic) % 12 in (5, 7):
            kinds["fifth"] += 1
        elif f[1] != mode and (f[0] - tonic) % 12 == (9 if mode == 0 else 3):
            kinds["relative"] += 1
        elif f[1] != mode and f[0] == tonic:
            kinds["parallel"] += 1
        else:
            kinds["other"] += 1
    misses = sum(pairs.values())
    top = [dict(asked=a, heard=h, count=n, share_of_asked=n / asked[a])
           for (a, h), n in pairs.most_common(most)]
    return dict(pieces=len(requests), misses=misses, kinds=dict(kinds), top=top)


def real_music(pieces, keys, ticks_per_beat=12, progress=False):
    """Both judges on real pieces (notes arrays) against their annotated (tonic, mode):
    ``{judge: adherence}``, ``confusion`` per judge, and how many pieces were judged."""
    heard = judge_keys(pieces, ticks_per_beat, progress, "judge real")
    out = {j: adherence(keys, heard[j]) for j in JUDGES}
    out["confusion"] = {j: confusion(keys, heard[j]) for j in JUDGES}
    out["pieces"] = len(pieces)
    out["modes"] = {MODES[m]: sum(k[1] == m for k in keys) for m in range(2)}
    return out
