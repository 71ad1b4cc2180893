"""Ensemble datasets (``ostinato data --ensemble``) on real multi-part music: Bach
chorales read with music21, each part a voice (soprano the melody, bass the bass, alto and
tenor the harmony), and a Freedoom song from its WAD, whose drums stay drums.

The chorales and the song are read by the few lines below (the multi-part readers,
``engine.training.multipart``, have tests of their own) and handed to ``data.build`` as
sources; one test builds through the readers from the command line.
"""
import io
import struct
from pathlib import Path

import mido
import numpy as np
import pytest

from engine.controls import find_key, key_shift, pitched
from engine.ensemble import BASS, DRUMS, HARMONY, MELODY, VOICES
from engine.modelfile import read_model_file
from engine.notes import DRUM_CHANNEL, NOTE_DTYPE, read_midi
from engine.sampler.weights import Weights
from engine.training import corpus, data
from engine.training.data import BuildConfig, Dataset
from engine.training.model import load_model
from engine.training.train import mean_register
from engine.vocab import NOTE_OFF, NOTE_ON, VOICE, Vocab
from realtime import cli

TPB = 12
SATB = {"Soprano": MELODY, "Alto": HARMONY, "Tenor": HARMONY, "Bass": BASS}
FREEDOOM = Path("/usr/share/games/doom/freedoom2.wad")


def chorale(path):
    """A chorale's four sung parts as one ensemble piece (channel = voice id)."""
    from music21 import converter
    score = converter.parse(path)
    parts = {p.partName: p for p in score.parts}
    assert set(SATB) <= set(parts), f"{path}: parts {sorted(parts)}"
    rows = []
    for name, voice in SATB.items():
        for el in parts[name].stripTies().flatten().notes:
            ql = float(el.quarterLength)
            if ql > 0:
                s = float(el.offset) * TPB
                rows += [(round(s), round(s + ql * TPB), p.midi, 80, voice) for p in el.pitches]
    return np.array(rows, NOTE_DTYPE)


def chorales(n_train, n_valid, n_test):
    """The first chorales (.mxl) of each split, by the split their group hashes to."""
    want, out = [n_train, n_valid, n_test], []
    for task in corpus.source_tasks("bach"):
        sp = data.split_of(task.group or task.piece_id)
        if task.payload.endswith(".mxl") and want[sp] > 0:
            want[sp] -= 1
            out.append(corpus.Piece(task.piece_id, task.group, chorale(task.payload)))
        if not any(want):
            return out
    raise AssertionError(f"the bach collection has too few chorales for {want}")


def wad_lump(path, name):
    """One lump of a WAD: a 12-byte header (magic, count, directory offset) and a
    directory of 16-byte entries (offset, size, name)."""
    with open(path, "rb") as f:
        _, count, where = struct.unpack("<4sii", f.read(12))
        f.seek(where)
        table = f.read(16 * count)
        for i in range(count):
            offset, size, raw = struct.unpack_from("<ii8s", table, 16 * i)
            if raw.rstrip(b"\0").decode() == name:
                f.seek(offset)
                return f.read(size)
    raise AssertionError(f"{path} has no lump {name}")


def freedoom_song(name="D_READ_M"):
    """A Freedoom song with its drums as the drums voice and every other note as the
    harmony (a crude role: telling melody from bass is the multi-part readers' job)."""
    mid = mido.MidiFile(file=io.BytesIO(wad_lump(FREEDOOM, name)), clip=True)
    notes = read_midi(mid, TPB, keep_drums=True)
    notes["channel"] = np.where(notes["channel"] == DRUM_CHANNEL, DRUMS, HARMONY)
    return notes


def piece_notes(ds, pid):
    i = list(map(str, ds.ids)).index(pid)
    return ds.vocab.decode(ds.tokens[ds.offsets[i]:ds.offsets[i + 1]])


def info(n):
    return {"cached": False, "parsed": n, "cache": ""}


@pytest.fixture(scope="module")
def pieces():
    return chorales(8, 2, 1)


@pytest.fixture(scope="module")
def built(tmp_path_factory, pieces):
    """Chorales, a Freedoom song (when installed) and a piece with a bad voice id, the
    training pieces also in the parallel mode."""
    tmp = tmp_path_factory.mktemp("ensemble")
    extra = []
    if FREEDOOM.exists():
        group = next(g for g in (f"freedoom:D_READ_M{i}" for i in range(64))
                     if data.split_of(g) == 0)  # a training piece: it gets a parallel copy
        extra.append(corpus.Piece("freedoom2.wad/D_READ_M", group, freedoom_song()))
    bad = pieces[0].notes.copy()
    bad["channel"][::7] = DRUM_CHANNEL  # a MIDI channel where a voice id belongs
    extra.append(corpus.Piece("bad-voices", "", bad))
    cfg = BuildConfig(out=str(tmp / "ens.npz"), ensemble=True, mode_augment=1.0, progress=False)
    summary = data.build(cfg, sources=[("bach-parts", pieces, [], info(len(pieces))),
                                       ("more", extra, [], info(len(extra)))])
    return tmp, summary, Dataset.load(tmp / "ens.npz")


def test_the_dataset_carries_the_vocabulary_with_voices(built, pieces):
    tmp, summary, ds = built
    assert ds.vocab == Vocab(n_voices=len(VOICES)) and ds.vocab.size == 305 + 4
    assert summary["ensemble"] and ds.key_relative
    assert summary["skipped"] == {"bad voice": 1}
    assert "bad-voices: bad voice: channel 9 is not a voice id 0..3" in \
        (tmp / "ens.npz.skipped.txt").read_text().splitlines()
    voices = {v: sum(by.values()) for v, by in summary["voices"].items()}
    assert sum(voices.values()) == sum(summary["notes"].values())
    assert all(voices[v] > 0 for v in ("melody", "bass", "harmony"))
    assert voices["drums"] > 0 or not FREEDOOM.exists()
    kinds, _ = ds.vocab.tables()
    assert (kinds[ds.tokens] == VOICE).any() and ds.tokens.max() < ds.vocab.size
    assert "notes per voice" in data.format_summary(summary)


def test_each_chorale_moves_to_c_as_its_parts_in_their_voices(built, pieces):
    ds = built[2]
    for pid, _, notes in pieces:
        k = -key_shift(find_key(notes)[0])
        assert -5 <= k <= 6
        want = ds.vocab.normalise(notes)
        want["pitch"] += k
        back = piece_notes(ds, pid)
        fields = ["start", "end", "pitch", "channel"]
        assert back[fields].tolist() == want[fields].tolist(), pid
        # the stored controls are the ones the spec measures (pitched voices only)
        i = list(map(str, ds.ids)).index(pid)
        tokens = ds.tokens[ds.offsets[i]:ds.offsets[i + 1]]
        np.testing.assert_allclose(ds.controls[ds.offsets[i]:ds.offsets[i + 1]],
                                   ds.spec.compute(tokens, ds.vocab), atol=2e-3)


@pytest.mark.skipif(not FREEDOOM.exists(), reason="Freedoom (Debian package freedoom) missing")
def test_the_drums_keep_their_pitches_and_the_key_is_the_pitched_voices(built):
    ds = built[2]
    orig = Vocab(n_voices=4).normalise(freedoom_song())
    back = piece_notes(ds, "freedoom2.wad/D_READ_M")
    drums = orig["channel"] == DRUMS
    assert drums.sum() > 300
    fields = ["start", "end", "pitch", "channel"]
    assert back[back["channel"] == DRUMS][fields].tolist() == orig[drums][fields].tolist()
    k = -key_shift(find_key(pitched(orig, True))[0])  # the key of the pitched voices
    assert k != 0
    tune = orig[~drums].copy()
    tune["pitch"] += k
    tune = tune[np.lexsort((tune["channel"], tune["pitch"], tune["start"]))]
    assert back[back["channel"] != DRUMS][fields].tolist() == tune[fields].tolist()
    # the parallel-mode copy maps the pitched voices, never the drums
    copy = piece_notes(ds, "freedoom2.wad/D_READ_M#parallel")
    assert copy[copy["channel"] == DRUMS].tolist() == back[back["channel"] == DRUMS].tolist()
    assert not np.array_equal(copy["pitch"], back["pitch"])


def test_transpose_tokens_moves_the_pitched_voices_only():
    v = Vocab(n_voices=4)
    notes = np.array([(0, 12, 60, 80, MELODY), (0, 3, 127, 80, DRUMS), (0, 6, 35, 80, DRUMS),
                      (6, 12, 40, 80, BASS)], NOTE_DTYPE)
    tokens = v.encode(notes)
    up = data.transpose_tokens(tokens, 10, v)  # a drum at 127 does not block it
    moved = v.decode(up)
    assert moved[["start", "pitch", "channel"]].tolist() == [
        (0, 35, DRUMS), (0, 70, MELODY), (0, 127, DRUMS), (6, 50, BASS)]
    assert data.transpose_tokens(tokens, 68, v) is None  # the melody would pass 127
    assert np.array_equal(data.transpose_tokens(tokens, 67, v)[v.voices_of(tokens) == DRUMS],
                          tokens[v.voices_of(tokens) == DRUMS])
    # the same stream read as one line moves every note token, and 10 is too far
    one = Vocab()
    assert data.transpose_tokens(one.encode(notes), 10, one) is None


def test_windows_and_batches_leave_drum_notes_even_mid_run(built):
    """The voice in force comes from the whole stream (``voices_of``, checked against a
    plain walk in tests/engine/test_vocab.py), so a window that begins inside a drum run,
    with the voice token before it, still leaves its drum notes."""
    ds = built[2]
    tokens, controls = ds.stream("train")
    voices = ds.stream_voices("train")
    kinds, _ = ds.vocab.tables()
    note = np.isin(kinds[tokens], (NOTE_ON, NOTE_OFF))
    drum = note & (voices == DRUMS)
    # windows beginning at a note whose voice token came before the window
    inside = 1 + np.flatnonzero(note[1:] & (voices[:-1] == voices[1:]) &
                                (kinds[tokens[1:]] != VOICE))
    inside = inside[inside < len(tokens) - 65]
    starts = np.concatenate([inside[drum[inside]][:3], inside[~drum[inside]][:3]])
    idx = starts[:, None] + np.arange(64)
    assert drum[idx].any() or not FREEDOOM.exists()
    ks = np.full(len(starts), 2)
    x0, _, _, _ = data.windows(tokens, controls, starts, 64, 0 * ks, ds.vocab, ds.spec)
    for given in (voices, None):
        x, _, _, applied = data.windows(tokens, controls, starts, 64, ks, ds.vocab, ds.spec,
                                        given)
        assert np.array_equal(applied, ks)
        assert np.array_equal(x - x0, 2 * (note[idx] & ~drum[idx]))
    # batches, transposed or not, differ only on the pitched voices' notes
    xa, _, _ = next(ds.batches("train", 32, 64, np.random.default_rng(3), transpose=None))
    xb, _, _ = next(ds.batches("train", 32, 64, np.random.default_rng(3), transpose=(3, 4)))
    idx = np.random.default_rng(3).integers(0, len(tokens) - 64, size=32)[:, None] + \
        np.arange(64)
    assert np.array_equal(xa, tokens[idx])
    moved = note[idx] & ~drum[idx]
    d = xb - xa
    assert set(np.unique(d).tolist()) <= {0, 3} and (d[moved] == 3).mean() > 0.9
    assert not d[~moved].any()


def test_the_default_register_is_the_pitched_voices(built):
    ds = built[2]
    notes = np.concatenate([ds.vocab.decode(t) for t, _ in ds.pieces("train")])
    tune = notes[notes["channel"] != DRUMS]
    assert mean_register(ds) == pytest.approx(tune["pitch"].mean())
    if FREEDOOM.exists():
        assert abs(mean_register(ds) - notes["pitch"].mean()) > 0.5


def test_a_short_run_on_chorales_makes_a_model_with_four_voices(tmp_path, pieces):
    """End to end: an ensemble dataset from chorales, `ostinato train` for a few steps with
    --export, and the model file read back (model file reader, torch loader, sampler)."""
    path = tmp_path / "chorales.npz"
    data.build(BuildConfig(out=str(path), ensemble=True, progress=False),
               sources=[("bach-parts", pieces, [], info(len(pieces)))])
    model = tmp_path / "model.npz"
    assert cli.main(["train", "--data", str(path), "--out", str(tmp_path / "run"),
                     "--embed", "8", "--hidden", "16", "--layers", "1", "--steps", "4",
                     "--batch-size", "4", "--seq-len", "32", "--eval-every", "2",
                     "--device", "cpu", "--threads", "1", "--export", str(model)]) == 0
    meta, _ = read_model_file(model)
    assert meta["vocab"]["n_voices"] == 4 and meta["config"]["vocab_size"] == 309
    _, vocab, _, _ = load_model(model)
    assert vocab == Dataset.load(path).vocab and vocab.n_voices == 4
    assert Weights(model).vocab.n_voices == 4


def test_cli_builds_an_ensemble_dataset_through_the_multipart_readers(tmp_path, capsys):
    out = tmp_path / "x.npz"
    assert cli.main(["data", "--ensemble", "--collections", "bach", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "collections" in err and "bach-parts" in err and not out.exists()
    assert cli.main(["data", "--ensemble", "--collections", "bach-parts", "--max-pieces", "6",
                     "--workers", "1", "--out", str(out)]) == 0
    assert "notes per voice" in capsys.readouterr().out
    ds = Dataset.load(out)
    assert ds.vocab.n_voices == 4 and ds.summary["ensemble"]
    assert all(sum(ds.summary["voices"][v].values()) > 0 for v in ("melody", "bass", "harmony"))
    assert [p.name.split("-")[0] for p in (tmp_path / "cache").iterdir()] == ["ensemble"]
