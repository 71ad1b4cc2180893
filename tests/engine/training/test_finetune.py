"""Fine-tuning the shipped models on a folder of real MIDI files (``ostinato train --init
MODEL --midi DIR``): what it prints, what it skips, the hold-out, the guard, the result."""
import mido
import numpy as np
import pytest
import torch

from engine import DEFAULT_MODEL as _DEFAULT

DEFAULT_MODEL = str(_DEFAULT)
from engine.errors import ModelError, OstinatoError
from engine.modelfile import read_model_file
from engine.sampler.weights import Weights
from engine.training.finetune import (FinetuneConfig, folder_data, holdout, l2sp_penalty,
                                      with_replay)
from engine.training.model import load_model
from engine.training.train import fine_tune
from realtime.cli import main

ENSEMBLE_MODEL = "engine/models/ensemble.npz"
D_MAJOR = (62, 64, 66, 67, 69, 71, 73, 74)


def write_midi(path, lines, tpq=480, seed=0):
    """A real MIDI file: one track per line, each a seeded walk over ``lines``' scale
    (pitches), quavers and crotchets, 16 bars of 4/4."""
    rng = np.random.default_rng(seed)
    mid = mido.MidiFile(ticks_per_beat=tpq)
    for k, (scale, octave) in enumerate(lines):
        track = mido.MidiTrack()
        mid.tracks.append(track)
        track.append(mido.Message("program_change", program=0, channel=k, time=0))
        i, t = 0, 0
        while t < 64 * tpq:
            i = int(np.clip(i + rng.integers(-2, 3), 0, len(scale) - 1))
            d = tpq // 2 if rng.random() < 0.5 else tpq
            p = scale[i] + 12 * octave
            track.append(mido.Message("note_on", note=p, velocity=80, channel=k, time=0))
            track.append(mido.Message("note_off", note=p, velocity=0, channel=k, time=d))
            t += d
    mid.save(path)


@pytest.fixture
def folder(tmp_path):
    """Five one-line tunes in D major, a file that is no MIDI and one with no notes."""
    d = tmp_path / "tunes"
    d.mkdir()
    for i in range(5):
        write_midi(d / f"tune{i}.mid", [(D_MAJOR, 0)], seed=i)
    (d / "broken.mid").write_bytes(b"this is not a MIDI file")
    empty = mido.MidiFile()
    empty.tracks.append(mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500000)]))
    empty.save(d / "silent.mid")
    return d


def test_train_init_midi_fine_tunes_the_generator_and_reports_what_it_read(folder, tmp_path,
                                                                            capsys):
    (tmp_path / "nothing").mkdir()
    out, model = tmp_path / "run", tmp_path / "mine.npz"
    assert main(["train", "--init", DEFAULT_MODEL, "--midi", str(folder),
                 str(tmp_path / "nothing"), str(tmp_path / "missing"), "--out", str(out),
                 "--steps", "4", "--eval-every", "2", "--threads", "1",
                 "--export", str(model)]) == 0
    text = capsys.readouterr().out
    assert f"skipped folder {tmp_path / 'nothing'}: empty: no MIDI file" in text
    assert f"skipped folder {tmp_path / 'missing'}: no such folder" in text
    assert "broken.mid: unreadable:" in text
    assert "silent.mid: no notes" in text
    assert "learning from 5 pieces of 7 files (4 to train on, 1 held out" in text
    assert "voices: one line" in text
    keys = next(l for l in text.splitlines() if l.startswith("keys (each piece moved to C): "))
    counts = [part.rsplit(" ", 1) for part in keys.split(": ", 1)[1].split(", ")]
    assert counts[0][0] == "D major" and sum(int(n) for _, n in counts) == 5, keys
    # the result is a model file the server and `generate` read as they are
    meta, _ = read_model_file(model)
    ft = meta["info"]["finetune"]
    assert ft["init"] == DEFAULT_MODEL and ft["guard"] == "l2sp" and ft["pieces"] == \
        {"train": 4, "valid": 1}
    assert meta["config"] == read_model_file(DEFAULT_MODEL)[0]["config"]
    assert Weights(model).vocab.size == 305
    assert main(["generate", "--model", str(model), "--key", "D", "--bars", "2",
                 "-o", str(tmp_path / "out.mid")]) == 0
    assert sum(m.type == "note_on" for t in mido.MidiFile(tmp_path / "out.mid").tracks
               for m in t) > 0


def test_the_ensemble_reads_a_folder_with_voices(tmp_path, capsys):
    d = tmp_path / "band"
    d.mkdir()
    for i in range(3):  # a tune over a bass line two octaves down
        write_midi(d / f"song{i}.mid", [(D_MAJOR, 0), (D_MAJOR, -2)], seed=10 + i)
    out = tmp_path / "run"
    assert main(["train", "--init", ENSEMBLE_MODEL, "--midi", str(d), "--out", str(out),
                 "--steps", "2", "--eval-every", "1", "--guard", "none", "--threads", "1"]) == 0
    text = capsys.readouterr().out
    line = next(l for l in text.splitlines() if l.startswith("voices found:"))
    counts = dict(part.rsplit(" ", 2)[:2] for part in line[len("voices found: "):].split(", "))
    assert int(counts["melody"]) > 0 and int(counts["bass"]) > 0 and counts["drums"] == "0"
    assert read_model_file(out / "best.npz")[0]["vocab"]["n_voices"] == 4


def test_nothing_to_learn_from_names_every_folder(tmp_path, capsys):
    (tmp_path / "a").mkdir()
    assert main(["train", "--init", DEFAULT_MODEL, "--midi", str(tmp_path / "a"),
                 str(tmp_path / "b"), "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert "no piece to learn from" in err and f"{tmp_path / 'a'}: empty" in err \
        and f"{tmp_path / 'b'}: no such folder" in err


def test_a_model_of_another_vocabulary_is_refused_with_what_differs(data_file, tmp_path):
    """--init an ensemble model on a one-line dataset: the vocabularies differ."""
    with pytest.raises(ModelError, match="vocabulary"):
        main_raise(["train", "--init", ENSEMBLE_MODEL, "--data", str(data_file), "--finetune",
                    "--out", str(tmp_path / "run"), "--steps", "1"])


def main_raise(argv):
    """Run ``ostinato`` ARGV's command and let its error through (``main`` prints it)."""
    from realtime.cli import build_parser
    args = build_parser(argv[0]).parse_args(argv)
    return args.func(args)


def test_fine_tuning_a_dataset_file_holds_its_own_pieces_out(data_file, tmp_path, capsys):
    assert main(["train", "--init", DEFAULT_MODEL, "--data", str(data_file), "--finetune",
                 "--valid-pieces", "3", "--out", str(tmp_path / "run"), "--steps", "2",
                 "--eval-every", "1", "--threads", "1"]) == 0
    text = capsys.readouterr().out
    assert "3 held out for validation" in text
    assert read_model_file(tmp_path / "run" / "best.npz")[0]["info"]["finetune"]["pieces"][
        "valid"] == 3


def test_holdout_is_fixed_by_the_ids_and_leaves_no_parallel_copy(data):
    a = holdout(data, 4)
    assert len(a.piece_rows("valid")) == 4
    held = set(a.summary["held_out"])
    train_ids = {str(i).split("#")[0] for i in a.ids[a.piece_rows("train")]}
    assert held.isdisjoint(train_ids)
    # the same pieces whatever the order of the dataset
    order = np.random.default_rng(0).permutation(len(data))
    o = data.offsets
    from engine.training.data import Dataset
    shuffled = Dataset(np.concatenate([data.tokens[o[i]:o[i + 1]] for i in order]),
                       np.concatenate([data.controls[o[i]:o[i + 1]] for i in order]),
                       np.cumsum([0] + [int(o[i + 1] - o[i]) for i in order]),
                       data.ids[order], data.sources[order], data.split[order], data.vocab,
                       data.spec, data.summary)
    assert set(holdout(shuffled, 4).summary["held_out"]) == held
    assert holdout(data).summary["pieces"]["valid"] >= 1
    with pytest.raises(OstinatoError, match="valid_pieces"):
        holdout(data, len(data))


def test_the_l2sp_guard_keeps_the_weights_near_the_start(folder, tmp_path):
    """The penalty is 0 at the starting weights; fine-tuned with it, the weights end nearer
    the starting ones than without it (same steps, seed and data)."""
    model, vocab, _, _ = load_model(DEFAULT_MODEL)
    pen = l2sp_penalty(DEFAULT_MODEL, 1.0)
    assert pen(model).item() == 0.0
    with torch.no_grad():
        model.head.bias += 0.5
    assert pen(model).item() == pytest.approx(0.25 * vocab.size, rel=1e-4)
    ds, _ = folder_data([folder], vocab, True)
    start = {k: torch.as_tensor(v) for k, v in read_model_file(DEFAULT_MODEL)[1].items()}
    dist = {}
    for guard in ("l2sp", "none"):
        cfg = FinetuneConfig(guard=guard, l2sp=1.0, steps=6, lr=1e-2, eval_every=1,
                             patience=100, seq_len=64)
        fine_tune(ds, DEFAULT_MODEL, tmp_path / guard, cfg, progress=False)
        end = read_model_file(tmp_path / guard / "best.npz")[1]
        dist[guard] = sum(float(((torch.as_tensor(end[k]) - w) ** 2).sum())
                          for k, w in start.items())
    assert 0 < dist["l2sp"] < dist["none"], dist


def test_a_bad_guard_is_refused():
    with pytest.raises(OstinatoError, match="guard"):
        FinetuneConfig(guard="ewc")


def test_a_folder_keeps_no_test_split(data):
    """A user's folder is all to learn from: no piece is left in "test"."""
    every = holdout(data, 2, keep_test=False)
    assert len(every.piece_rows("test")) == 0
    assert every.summary["pieces"]["train"] + 2 == sum(
        1 for i in data.ids if not str(i).endswith("#parallel"))


def test_rehearsal_mixes_the_model_s_own_training_pieces_in_at_the_share_asked(
        folder, data_file, data, tmp_path, capsys):
    """``with_replay``: the own data's "train" pieces make the share asked of the training
    events (at most one piece over it), the composer's validation pieces stay alone; and
    ``ostinato train --replay`` trains with it, the model file saying so."""
    vocab = load_model(DEFAULT_MODEL)[1]
    ds, _ = folder_data([folder], vocab, True)
    mixed = with_replay(ds, data_file, 0.4, seed=1)
    own_rows = set(range(len(ds), len(mixed)))
    assert own_rows and own_rows <= set(mixed.piece_rows("train"))
    own_ids = {str(i) for i in data.ids[data.piece_rows("train")]}
    assert {str(mixed.ids[i]) for i in own_rows} <= own_ids
    train = len(mixed.stream("train")[0])
    added = train - len(ds.stream("train")[0])
    longest = max(int(data.offsets[i + 1] - data.offsets[i]) for i in data.piece_rows("train"))
    assert 0.4 * train <= added < 0.4 * train + longest
    assert np.array_equal(mixed.stream("valid")[0], ds.stream("valid")[0])
    assert mixed.summary["replay"]["pieces"] == len(own_rows)
    with pytest.raises(OstinatoError, match="replay"):
        FinetuneConfig(replay=1.0, replay_data=str(data_file))
    with pytest.raises(OstinatoError, match="replay_data"):
        FinetuneConfig(replay=0.3)
    out = tmp_path / "run"
    assert main(["train", "--init", DEFAULT_MODEL, "--midi", str(folder), "--out", str(out),
                 "--steps", "2", "--eval-every", "1", "--threads", "1", "--replay", "0.3",
                 "--replay-data", str(data_file)]) == 0
    info = read_model_file(out / "best.npz")[0]["info"]["finetune"]
    assert (info["replay"], info["replay_data"]) == (0.3, str(data_file))
