"""The dataset build (real corpus tunes and MIDI files written with mido), splits, cache, batches."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from engine.training import corpus

from engine.training import data
from realtime import cli
from engine.controls import STYLES, ControlSpec, find_key, key_shift, style_of
from engine.training.data import BuildConfig, Dataset
from engine.errors import InvalidMessage, OstinatoError
from engine.notes import NOTE_DTYPE, read_midi, write_midi
from engine.vocab import NOTE_OFF, NOTE_ON, START, Vocab


def corpus_tune(i):
    """Notes of the i-th tune of Aird's Airs, book 1: real music to write as MIDI."""
    return corpus.read_abc(corpus.source_tasks("airdsAirs")[i].payload)


def make_midi_folder(root, tunes):
    """Two real tunes, a copy of one, a five-note scrap and a corrupt file."""
    root.mkdir(parents=True)
    write_midi(corpus_tune(tunes[0]), root / "first.mid")
    write_midi(corpus_tune(tunes[1]), root / "second.mid")
    shutil.copy(root / "first.mid", root / "first-copy.mid")
    write_midi(corpus_tune(tunes[0])[:5], root / "scrap.mid")
    (root / "broken.mid").write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x01\xe0MTrk\xff")
    return root


def config(tmp, midi_dirs, **kw):
    return BuildConfig(collections=("airdsAirs",), midi_dirs=tuple(map(str, midi_dirs)),
                       out=str(tmp / "ds.npz"), max_pieces=8, progress=False, **kw)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("build")
    folder = make_midi_folder(tmp / "midi", (20, 21))
    summary = data.build(config(tmp, [folder]))
    return tmp, folder, summary, Dataset.load(tmp / "ds.npz")


# -- splits ------------------------------------------------------------------------------
def test_split_shares_are_about_90_5_5():
    codes = np.array([data.split_of(f"collection/file.abc/{i}") for i in range(20000)])
    shares = np.bincount(codes, minlength=3) / len(codes)
    assert abs(shares[0] - 0.90) < 0.01 and abs(shares[1] - 0.05) < 0.006 \
        and abs(shares[2] - 0.05) < 0.006


def test_split_is_the_same_in_another_process():
    ids = [f"oneills1850/0001-0050.abc/{i}" for i in range(200)] + ["sub/type1.MID"]
    code = ("import sys, json; from engine.training.data import split_of; "
            "print(json.dumps([split_of(i) for i in json.load(sys.stdin)]))")
    env = dict(os.environ, PYTHONHASHSEED="12345")  # Python's own hash() would change
    out = subprocess.run([sys.executable, "-c", code], input=json.dumps(ids), env=env,
                         capture_output=True, text=True, check=True, timeout=60).stdout
    assert json.loads(out) == [data.split_of(i) for i in ids]
    assert set(json.loads(out)) == {0, 1, 2}


# -- build -------------------------------------------------------------------------------
def test_build_summary_counts_and_skip_reasons(built):
    tmp, folder, summary, ds = built
    midi = summary["sources"][f"midi:{folder.resolve()}"]
    assert sum(midi["pieces"].values()) == 2
    assert midi["skipped"] == {"unreadable": 1, "too short": 1, "duplicate": 1}
    airds = summary["sources"]["airdsAirs"]
    assert sum(airds["pieces"].values()) + sum(airds["skipped"].values()) == 8
    assert summary["pieces"] == {s: sum(v["pieces"][s] for v in summary["sources"].values())
                                 for s in data.SPLITS}
    assert sum(summary["tokens"].values()) == len(ds.tokens)
    lines = (tmp / "ds.npz.skipped.txt").read_text().splitlines()
    assert "scrap.mid: too short: 5 notes < 16" in lines
    assert "first.mid: duplicate: same notes as first-copy.mid" in lines
    assert any(line.startswith("broken.mid: unreadable: ") for line in lines)


def test_dataset_file_contents(built):
    tmp, folder, summary, ds = built
    with np.load(tmp / "ds.npz", allow_pickle=False) as z:
        assert z["tokens"].dtype == np.int16 and z["controls"].dtype == np.float16
        assert z["split"].dtype == np.int8
    assert ds.vocab == Vocab() and ds.spec == ControlSpec() and ds.summary == summary
    assert ds.controls.shape == (len(ds.tokens), ds.spec.size)
    assert ds.tokens.min() >= 0 and ds.tokens.max() < ds.vocab.size
    assert (ds.tokens[ds.offsets[:-1]] == ds.vocab.token(START)).all()
    assert sorted(map(str, ds.sources)) == sorted(["airdsAirs"] * (len(ds) - 2) +
                                                  [f"midi:{folder.resolve()}"] * 2)
    # a MIDI piece decodes back to the notes of its file
    i = list(ds.ids).index("second.mid")
    tokens = ds.tokens[ds.offsets[i]:ds.offsets[i + 1]]
    back, orig = ds.vocab.decode(tokens), read_midi(folder / "second.mid")
    assert back[["start", "end"]].tolist() == orig[["start", "end"]].tolist()
    # moved to C from its measured key (a MIDI file names none), by at most a tritone
    k = -key_shift(find_key(orig)[0])
    assert -5 <= k <= 6 and (back["pitch"] == orig["pitch"] + k).all()
    # the stored controls are the ones the spec measures
    np.testing.assert_allclose(ds.controls[ds.offsets[i]:ds.offsets[i + 1]],
                               ds.spec.compute(tokens, ds.vocab), atol=2e-3)


def test_pieces_and_stream_agree(built):
    ds = built[3]
    for split in data.SPLITS:
        pieces = ds.pieces(split)
        tokens, controls = ds.stream(split)
        assert len(pieces) == int((ds.split == data.SPLITS.index(split)).sum())
        if pieces:
            assert np.array_equal(np.concatenate([t for t, _ in pieces]), tokens)
            assert np.array_equal(np.concatenate([c for _, c in pieces]), controls)


def test_rebuild_uses_caches_and_keeps_splits(tmp_path):
    folder = make_midi_folder(tmp_path / "midi", (30, 31))
    first = data.build(config(tmp_path, [folder]))
    assert not any(s["cached"] for s in first["sources"].values())
    caches = sorted((tmp_path / "cache").iterdir())
    assert len(caches) == 2
    mtimes = [c.stat().st_mtime_ns for c in caches]
    ds1 = Dataset.load(tmp_path / "ds.npz")

    second = data.build(config(tmp_path, [folder]))
    assert all(s["cached"] and s["parsed"] == 0 for s in second["sources"].values())
    assert [c.stat().st_mtime_ns for c in caches] == mtimes
    ds2 = Dataset.load(tmp_path / "ds.npz")
    assert list(ds1.ids) == list(ds2.ids) and np.array_equal(ds1.split, ds2.split)
    assert np.array_equal(ds1.tokens, ds2.tokens)

    # a new MIDI folder is read; the corpus and the old folder come from their caches
    extra = tmp_path / "extra"
    extra.mkdir()
    write_midi(corpus_tune(32), extra / "third.mid")
    third = data.build(config(tmp_path, [folder, extra]))
    parsed = {k: v["parsed"] for k, v in third["sources"].items()}
    assert parsed == {"airdsAirs": 0, f"midi:{folder.resolve()}": 0,
                      f"midi:{extra.resolve()}": 1}
    ds3 = Dataset.load(tmp_path / "ds.npz")
    old = dict(zip(ds1.ids, ds1.split))
    assert all(old[i] == s for i, s in zip(ds3.ids, ds3.split) if i in old)

    # a changed file makes its folder stale, and only that one
    write_midi(corpus_tune(33), folder / "second.mid")
    fourth = data.build(config(tmp_path, [folder, extra]))
    assert {k: v["parsed"] for k, v in fourth["sources"].items()} == {
        "airdsAirs": 0, f"midi:{folder.resolve()}": 5, f"midi:{extra.resolve()}": 0}
    rebuilt = data.build(config(tmp_path, [folder, extra], rebuild=True))
    assert not any(s["cached"] for s in rebuilt["sources"].values())


def test_tune_versions_share_a_split(tmp_path):
    """O'Neill's 0732-0758 comes in two transcriptions: each tune's two versions agree."""
    files = [corpus.corpus_dir() / f"oneills1850/0732-0758_{v}.abc" for v in ("bs", "mh")]
    tasks = corpus.source_tasks("oneills1850", files)
    by_group = {}
    for t in tasks:
        by_group.setdefault(t.group, set()).add(data.split_of(t.group or t.piece_id))
    assert sum(len(g) > 0 for g in by_group) >= 20
    assert all(len(s) == 1 for s in by_group.values())
    groups = {t.piece_id: t.group for t in corpus.source_tasks("bach")}
    assert groups["bach/bwv248.64-6.mxl"] == groups["bach/bwv248.64-s.mxl"] == "bach:bwv248.64"
    assert groups["bach/bwv277.krn"] == groups["bach/bwv277.mxl"]


# -- transposition and batches -----------------------------------------------------------
def test_transpose_tokens(built):
    ds = built[3]
    tokens = ds.pieces("train")[0][0]
    notes = ds.vocab.decode(tokens)
    up = data.transpose_tokens(tokens, 5, ds.vocab)
    assert up.dtype == tokens.dtype
    assert (ds.vocab.decode(up)["pitch"] == notes["pitch"] + 5).all()
    assert data.transpose_tokens(tokens, 127 - int(notes["pitch"].max()) + 1, ds.vocab) is None
    assert data.transpose_tokens(tokens, -int(notes["pitch"].min()) - 1, ds.vocab) is None
    assert np.array_equal(data.transpose_tokens(tokens, 0, ds.vocab), tokens)


def test_windows_transpose_tokens_and_rotate_key(built):
    ds = built[3]
    tokens, controls = ds.stream("train")
    starts = np.array([0, 100, 700, 1500])
    ks = np.array([0, 3, -4, 6])
    x0, c0, y0, _ = data.windows(tokens, controls, starts, 64, np.zeros(4), ds.vocab, ds.spec)
    x, c, y, applied = data.windows(tokens, controls, starts, 64, ks, ds.vocab, ds.spec)
    assert np.array_equal(applied, ks)
    kinds, _ = ds.vocab.tables()
    note = np.isin(kinds[x0], (NOTE_ON, NOTE_OFF))
    assert note.any(axis=1).all()
    assert np.array_equal(x - x0, note * ks[:, None])
    key = ds.spec.slices()["key"]
    assert np.array_equal(c[..., key].argmax(-1), (c0[..., key].argmax(-1) + ks[:, None]) % 12)
    reg = ds.spec.slices()["register"]
    np.testing.assert_allclose(c[..., reg] - c0[..., reg],
                               np.broadcast_to(ks[:, None, None] / 12, c0[..., reg].shape),
                               atol=1e-5)
    others = np.ones(ds.spec.size, bool)
    others[key], others[reg] = False, False
    assert np.array_equal(c[..., others], c0[..., others])


def test_windows_leave_out_of_range_transpositions_at_zero():
    vocab, spec = Vocab(), ControlSpec()
    notes = corpus.read_abc("X:1\nT:high\nM:4/4\nL:1/8\nK:C\nc'' d'' e'' f'' g'' a'' b'' c''' |]")
    notes["pitch"] += 127 - notes["pitch"].max()  # the top note is 127
    tokens = vocab.encode(notes)
    controls = spec.compute(tokens, vocab)
    t = len(tokens) - 1  # the windows hold the whole tune, top note included
    x, c, y, applied = data.windows(tokens, controls, np.array([0, 0, 0]), t,
                                    np.array([1, -3, 0]), vocab, spec)
    assert applied.tolist() == [0, -3, 0]
    assert np.array_equal(x[0], tokens[:t]) and np.array_equal(c[0], controls[:t])
    assert np.array_equal(y[0], tokens[1:])
    assert x.max() < vocab.size


def test_batches_shapes_shift_and_range(built):
    ds = built[3]
    rng = np.random.default_rng(7)
    batches = ds.batches("train", 8, 32, rng)
    for _ in range(5):
        x, c, y = next(batches)
        assert x.shape == y.shape == (8, 32) and c.shape == (8, 32, ds.spec.size)
        assert x.dtype == y.dtype == np.int64 and c.dtype == np.float32
        assert np.array_equal(x[:, 1:], y[:, :-1])
        assert x.min() >= 0 and max(x.max(), y.max()) < ds.vocab.size
    # same seed: the same windows, transposed by 3 where the range allows
    x0, _, _ = next(ds.batches("train", 64, 32, np.random.default_rng(1), transpose=None))
    x3, _, _ = next(ds.batches("train", 64, 32, np.random.default_rng(1), transpose=(3, 4)))
    kinds, _ = ds.vocab.tables()
    note = np.isin(kinds[x0], (NOTE_ON, NOTE_OFF))
    d = (x3 - x0)[note]
    assert set(np.unique(d).tolist()) <= {0, 3} and (d == 3).mean() > 0.9
    assert np.array_equal((x3 - x0)[~note], np.zeros((~note).sum()))


def test_eval_windows_deterministic_and_contiguous(built):
    ds = built[3]
    tokens, controls = ds.stream("train")
    x, c, y = ds.eval_windows("train", 50)
    x2, c2, y2 = ds.eval_windows("train", 50)
    assert np.array_equal(x, x2) and np.array_equal(c, c2) and np.array_equal(y, y2)
    n = len(x)
    assert n == (len(tokens) - 1) // 50
    assert np.array_equal(x.reshape(-1), tokens[:n * 50])
    assert np.array_equal(y.reshape(-1), tokens[1:n * 50 + 1])
    assert np.array_equal(c.reshape(-1, ds.spec.size), controls[:n * 50].astype(np.float32))


def test_bad_arguments_name_the_field(built):
    ds = built[3]
    rng = np.random.default_rng(0)
    cases = [(lambda: ds.pieces("training"), "split"),
             (lambda: ds.eval_windows("train", 10 ** 9), "seq_len"),
             (lambda: ds.eval_windows("train", 0), "seq_len"),
             (lambda: next(ds.batches("train", 0, 16, rng)), "batch_size"),
             (lambda: next(ds.batches("train", 4, 16, rng, transpose=(2, 2))), "transpose")]
    for call, name in cases:
        with pytest.raises(InvalidMessage) as err:
            call()
        assert err.value.field == name and err.value.allowed


def test_load_missing_or_corrupt_dataset(tmp_path):
    with pytest.raises(OstinatoError, match="does not exist"):
        Dataset.load(tmp_path / "nope.npz")
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(OstinatoError, match="not a readable dataset"):
        Dataset.load(tmp_path / "bad.npz")


# -- command line ------------------------------------------------------------------------
def test_cli_rejects_bad_arguments(tmp_path, capsys):
    assert cli.main(["data", "--collections", "oneills,bach", "--out",
                     str(tmp_path / "x.npz")]) == 1
    assert "collections" in capsys.readouterr().err
    assert cli.main(["data", "--max-pieces", "-1"]) == 1
    assert cli.main(["data", "--collections", "none"]) == 1
    assert cli.main(["data", "--collections", "none", "--midi", str(tmp_path / "no")]) == 1
    assert not (tmp_path / "x.npz").exists()


def test_cli_builds_from_a_midi_folder(tmp_path, capsys):
    folder = make_midi_folder(tmp_path / "midi", (40, 41))
    out = tmp_path / "ds.npz"
    assert cli.main(["data", "--collections", "none", "--midi", str(folder),
                     "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "total" in text and "duplicate 1" in text and "unreadable 1" in text
    assert len(Dataset.load(out)) == 2


# -- keys and modes ----------------------------------------------------------------------
@pytest.mark.parametrize("field, key", [
    ("K:G", (7, 0)), ("K:Ador", (9, 1)), ("K:F#m", (6, 1)), ("K:Bb Mixolydian", (10, 0)),
    ("K:Emin % a comment", (4, 1)), ("K:Eb Dorian", (3, 1)), ("K:HP", None), ("K:none", None)])
def test_abc_key_reads_the_tune_header(field, key):
    assert corpus.abc_key(f"X:1\nT:t\nM:4/4\n{field}\nabc|def|\nK:D\n") == key


def test_the_tune_header_key_wins_over_the_file_header_and_later_changes():
    tune = corpus.split_abc("K:D\nL:1/8\n\nX:1\nT:t\nK:Gm\nabc|\nK:A\nabc|\n")[0]
    assert corpus.abc_key(tune) == (7, 1)


def test_every_piece_is_moved_to_c_from_its_annotated_key(built):
    tmp, folder, summary, ds = built
    annotated = corpus.annotated_keys("airdsAirs")
    assert summary["key_relative"] and ds.key_relative
    airds = sum(summary["sources"]["airdsAirs"]["pieces"].values())
    assert summary["keys"] == {"annotated": airds, "measured": 2}  # ABC K: fields; 2 MIDI files
    for i, pid in enumerate(ds.ids):
        if str(pid) not in annotated:
            continue
        task = next(t for t in corpus.source_tasks("airdsAirs") if t.piece_id == pid)
        orig = corpus.read_abc(task.payload)
        back = ds.vocab.decode(ds.tokens[ds.offsets[i]:ds.offsets[i + 1]])
        k = int(back["pitch"][0]) - int(orig["pitch"][0])
        assert (back["pitch"] - orig["pitch"] == k).all()
        assert (annotated[pid][0] + k) % 12 == 0 and -6 <= k <= 5


def test_parallel_mode_maps_scale_degrees():
    notes = np.zeros(12, dtype=NOTE_DTYPE)
    notes["pitch"] = 60 + np.arange(12)
    assert (data.parallel_mode(notes, 0)["pitch"] % 12).tolist() == \
        [0, 1, 2, 3, 3, 5, 6, 7, 8, 8, 10, 11]   # C major -> C harmonic minor
    assert (data.parallel_mode(notes, 1)["pitch"] % 12).tolist() == \
        [0, 1, 2, 4, 4, 5, 6, 7, 9, 9, 11, 11]   # C minor -> C major
    assert (data.parallel_mode(notes, 1)["pitch"] // 12 == 5).all()  # same octave


def test_mode_augmentation_adds_parallel_copies_to_training_only(tmp_path):
    summary = data.build(config(tmp_path, [], mode_augment=1.0))
    ds = Dataset.load(tmp_path / "ds.npz")
    ids = list(map(str, ds.ids))
    copies = [i for i, pid in enumerate(ids) if pid.endswith("#parallel")]
    assert copies and all(ds.split[i] == 0 for i in copies)
    assert all(pid[:-len("#parallel")] in ids for pid in (ids[i] for i in copies))
    before, after = summary["modes"]["before"], summary["modes"]["after"]
    assert sum(after[m]["train"] for m in after) == sum(before[m]["train"] for m in before) \
        + len(copies)
    # each copy is in the other mode: a major tune's copy has no E or A (C harmonic minor)
    annotated = corpus.annotated_keys("airdsAirs")
    from_major = [i for i in copies if annotated[ids[i][:-len("#parallel")]][1] == 0]
    assert after["minor"]["train"] - before["minor"]["train"] == len(from_major)
    assert after["major"]["train"] - before["major"]["train"] == len(copies) - len(from_major)
    for i in from_major:
        pcs = set((ds.vocab.decode(ds.tokens[ds.offsets[i]:ds.offsets[i + 1]])["pitch"] % 12).tolist())
        assert not pcs & {4, 9}, pcs


# -- styles ------------------------------------------------------------------------------
def styled_sources(ds, names=("freedoom", "bach-parts", "quartets", "midi:mine")):
    """The built dataset's pieces as if from the ensemble collections (in turn)."""
    return Dataset(ds.tokens, ds.controls, ds.offsets, ds.ids,
                   np.array([names[i % len(names)] for i in range(len(ds))]), ds.split, ds.vocab, ds.spec,
                   ds.summary)


def test_with_styles_adds_each_pieces_style_after_its_controls(built):
    ds = styled_sources(built[3])
    st = ds.with_styles(STYLES, 0.2)
    assert st.spec.styles == tuple(STYLES) and st.spec.size == ds.spec.size + len(STYLES)
    assert np.array_equal(st.controls[:, :ds.spec.size], ds.controls)
    block = st.controls[:, ds.spec.size:]
    for i, source in enumerate(ds.sources):
        rows = block[ds.offsets[i]:ds.offsets[i + 1]]
        want = np.zeros(len(STYLES))
        if style_of(source) is not None:
            want[list(STYLES).index(style_of(source))] = 1
        assert (rows == want).all(), source
    with pytest.raises(OstinatoError):
        st.with_styles(STYLES, 0.2)
    for bad in (-0.1, 1.5, float("nan"), "0.2"):
        with pytest.raises(InvalidMessage) as e:
            ds.with_styles(STYLES, bad)
        assert e.value.field == "style_dropout"


def test_style_dropout_blanks_a_share_of_training_windows_only(built):
    ds = styled_sources(built[3], ("freedoom", "monteverdi"))
    cut = ds.spec.size

    def told(dropout, n=400):
        st = ds.with_styles(STYLES, dropout)
        x, c, _ = next(st.batches("train", n, 16, np.random.default_rng(3), transpose=None))
        return c[:, :, cut:].max(axis=(1, 2)) > 0, st

    # every window is told its piece's style unless dropped, whole
    kept, _ = told(0.0)
    kept_half, st = told(0.5)
    assert kept.all() and 0.35 < kept_half.mean() < 0.65
    _, c, _ = st.eval_windows("train", 16)
    assert (c[:, :, cut:].max(axis=(1, 2)) > 0).all()  # evaluation windows are never blanked


# -- the voices' densities -----------------------------------------------------------------
def test_with_parts_adds_each_voices_density_after_its_controls_and_drops_a_share(built):
    ds = built[3]
    told = ds.with_parts(0.0)
    cut = ds.spec.size
    assert told.spec.parts and told.spec.size == cut + 4
    assert np.array_equal(told.controls[:, :cut], ds.controls)
    o = ds.offsets
    for i in (0, len(ds) - 1):  # measured piece by piece, as ControlSpec.part_densities
        want = told.spec.part_densities(ds.tokens[o[i]:o[i + 1]], ds.vocab)
        assert np.allclose(told.controls[o[i]:o[i + 1], cut:], want, atol=2e-3)
    # one line: the melody carries the whole density
    dens = ds.spec.slices()["density"].start
    assert np.allclose(told.controls[:, cut + 1], ds.controls[:, dens], atol=2e-3)
    with pytest.raises(OstinatoError):
        told.with_parts(0.2)
    with pytest.raises(OstinatoError):  # the style block comes first
        told.with_styles(STYLES, 0.2)
    for bad in (-0.1, 1.5, float("nan"), "0.2", True):
        with pytest.raises(InvalidMessage) as e:
            ds.with_parts(bad)
        assert e.value.field == "parts_dropout"

    def given(st, n=400):
        _, c, _ = next(st.batches("train", n, 16, np.random.default_rng(3), transpose=None))
        return c[:, :, cut].max(axis=1) > 0
    assert given(told).all() and 0.35 < given(ds.with_parts(0.5)).mean() < 0.65
    _, c, _ = ds.with_parts(1.0).eval_windows("train", 16)
    assert (c[:, :, cut] == 1).all()  # evaluation windows are never blanked
