"""Bad files get one clear line naming the file and what is wrong, never a traceback.

Each broken file is made in ``tmp_path`` from real parts (the shipped model cut short
or re-saved with a changed field, a real MIDI file cut short, a states.toml with a
typo) and read through the Python API (the error class and its text) and through the
real ``ostinato`` command in a subprocess (exit code 1, stderr one line that names the
file, no "Traceback").
"""
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from engine.training import corpus
from realtime.cli import FILE_DECODING_ERRORS, file_error
from engine.training.corpus import ReadConfig, Task
from engine.errors import InvalidMessage, InvalidMidi, ModelError
from engine.training.export import export
from engine.modelfile import FORMAT, read_model_file
from engine.notes import make_notes, read_midi, write_midi
from realtime import protocol
from engine.sampler.weights import Weights
from realtime.render import midi_events

ROOT = Path(__file__).resolve().parents[3]
STATES = ROOT / "realtime" / "states.toml"


# ------------------------------------------------------------------ the bad files
RANDOM = np.random.default_rng(10).bytes(4096)  # seeded: the same "random" file every run


def _write(path, data):
    path.write_bytes(data)
    return path


def _resave(model_path, path, meta_change=None, arrays_change=None):
    """The shipped model written again with its metadata or weights changed."""
    meta, arrays = read_model_file(model_path)
    meta = dict(meta, **(meta_change or {}))
    arrays = dict(arrays)
    (arrays_change or (lambda a: None))(arrays)
    with open(path, "wb") as f:
        np.savez(f, meta=np.array(json.dumps(meta)), **arrays)
    return path


def _flip_middle_byte(data):
    data = bytearray(data)
    data[len(data) // 2] ^= 0xFF
    return bytes(data)


def _wrong_members(path):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("weights.npy", b"\x93NUMPY not really")
    return path


# name -> (make the file in tmp_path from the shipped model, a regex the message must match)
BAD_MODELS = {
    "random": (lambda m, p: _write(p, RANDOM), "not an .npz \\(zip\\) archive"),
    "truncated": (lambda m, p: _write(p, m.read_bytes()[:m.stat().st_size // 2]),
                  "truncated or corrupt"),
    "flipped-byte": (lambda m, p: _write(p, _flip_middle_byte(m.read_bytes())),
                     "truncated or corrupt \\(Bad CRC-32"),
    "empty": (lambda m, p: _write(p, b""), "not an .npz"),
    "wrong-members": (lambda m, p: _wrong_members(p), "no 'meta' member \\(it holds 'weights'\\)"),
    "old-version": (lambda m, p: _resave(m, p, {"format": "ostinato-model-0"}),
                    f"model format 'ostinato-model-0' is not the '{FORMAT}' this Ostinato reads"),
    "newer-version": (lambda m, p: _resave(m, p, {"format": "ostinato-model-7"}),
                      "'ostinato-model-7' is newer than .*upgrade Ostinato"),
    "not-ostinato": (lambda m, p: _resave(m, p, {"format": None}),
                     f"not an Ostinato model: its metadata has format None, expected '{FORMAT}'"),
    "missing-weight": (lambda m, p: _resave(m, p, arrays_change=lambda a: a.pop("head.bias")),
                       "missing 'head.bias'"),
    "wrong-shape": (lambda m, p: _resave(m, p, arrays_change=lambda a: a.update(
        {"head.bias": np.zeros(3, np.float32)})), "weight 'head.bias' is float32 \\(3,\\); the config"),
    "unknown-role": (lambda m, p: _resave(m, p, {"role": "judge"}),
                     "role 'judge' is not one of generator, critic"),
    "critic-shaped-head": (lambda m, p: _resave(m, p, {"role": "critic"}),
                           "weight 'head.weight' is float32 \\(305, 256\\); the config needs float \\(1, 256\\)"),
    "config-without-hidden": (lambda m, p: _resave(m, p, {"config": {"layers": 2}}),
                              "config lacks a positive integer vocab_size, n_controls, embed, hidden"),
}


@pytest.fixture(params=sorted(BAD_MODELS))
def bad_model(request, model_path, tmp_path):
    make, pattern = BAD_MODELS[request.param]
    return make(Path(model_path), tmp_path / f"{request.param}.npz"), pattern


def _midi_bytes(tmp_path):
    good = tmp_path / "good.mid"
    write_midi(make_notes([(i * 6, i * 6 + 5, 60 + i % 12) for i in range(64)]), good)
    return good.read_bytes()


# name -> (make the path in tmp_path, a regex the message must match)
BAD_MIDI = {
    "random": (lambda t, p: _write(p, RANDOM[:300]), "not a MIDI file or corrupt"),
    "truncated": (lambda t, p: _write(p, _midi_bytes(t)[:100]), "cut short \\(truncated\\)"),
    "empty": (lambda t, p: _write(p, b""), "the file is empty"),
    "directory": (lambda t, p: p.mkdir() or p, "cannot read the MIDI file: Is a directory"),
    "missing": (lambda t, p: p, "cannot read the MIDI file: No such file or directory"),
}


@pytest.fixture(params=sorted(BAD_MIDI))
def bad_midi(request, tmp_path):
    make, pattern = BAD_MIDI[request.param]
    return make(tmp_path, tmp_path / f"{request.param}.mid"), pattern


def _states_with(old, new):
    text = STATES.read_text()
    assert text.count(old) == 1
    return text.replace(old, new)


def _line_of(text, needle):
    return text.splitlines().index(needle) + 1


# ------------------------------------------------------------------ the CLI
def ostinato(*args, cwd):
    """The real ``ostinato`` command: (exit code, stderr)."""
    res = subprocess.run([sys.executable, "-m", "realtime.cli", *map(str, args)], cwd=cwd,
                         capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    return res.returncode, res.stderr


def assert_one_line(rc, err, path, pattern=None):
    assert rc == 1, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert str(path) in lines[0]
    if pattern:
        assert re.search(pattern, lines[0]), lines[0]
    return lines[0]


SERVE = ("serve", "--osc", "0", "--midi", "none", "--events", "none",
         "--control", "tcp://127.0.0.1:0", "--seconds", "5")


# ------------------------------------------------------------------ models
def test_bad_model_files_are_one_model_error_naming_the_file(bad_model):
    path, pattern = bad_model
    with pytest.raises(ModelError, match=pattern) as err:
        Weights(path)
    assert str(err.value).startswith(f"{path}: ")
    assert "\n" not in str(err.value)


def test_the_shipped_model_still_loads(model_path):
    w = Weights(model_path)
    assert w.hidden == 256 and w.vocab.size == 305


def test_a_missing_or_directory_model_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="cannot read the model file: No such file"):
        Weights(tmp_path / "nope.npz")
    with pytest.raises(ModelError, match="cannot read the model file: Is a directory"):
        Weights(tmp_path)


@pytest.mark.parametrize("kind", ["random", "truncated", "wrong-members", "old-version"])
def test_serve_with_a_bad_model_prints_one_line(kind, model_path, tmp_path):
    make, pattern = BAD_MODELS[kind]
    path = make(Path(model_path), tmp_path / f"{kind}.npz")
    line = assert_one_line(*ostinato(*SERVE, "--model", path, cwd=tmp_path), path, pattern)
    assert line.startswith("ostinato serve: ")


def test_export_of_bad_checkpoints_and_models_prints_one_line(model_path, tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ModelError, match="junk.pt: not a torch checkpoint"):
        export(junk, tmp_path / "out.npz", data=tmp_path / "dataset.npz")
    cut = tmp_path / "cut.pt"
    cut.write_bytes(b"")
    with pytest.raises(ModelError, match="cut.pt: the checkpoint is empty or cut short"):
        export(cut, tmp_path / "out.npz", data=tmp_path / "dataset.npz")
    old = BAD_MODELS["old-version"][0](Path(model_path), tmp_path / "old.npz")
    assert_one_line(*ostinato("export", old, "-o", tmp_path / "out.npz", cwd=tmp_path), old,
                    "model format 'ostinato-model-0'")
    assert not (tmp_path / "out.npz").exists()


# ------------------------------------------------------------------ states.toml
def test_a_toml_syntax_error_names_the_file_line_and_column(tmp_path):
    path = tmp_path / "states.toml"
    path.write_text(_states_with("arousal = 0.85\n", "arousal = 0.85 0.9\n"))
    line = _line_of(path.read_text(), "arousal = 0.85 0.9")
    with pytest.raises(InvalidMessage) as err:
        protocol.load_states(path)
    assert str(err.value).startswith(f"{path}, line {line}, column 16: not valid TOML: ")


def test_an_unknown_field_names_the_entry_and_its_line(tmp_path):
    path = tmp_path / "states.toml"
    path.write_text(_states_with("bpm = 140\n", "bmp = 140\n"))  # combat's tempo, misspelt
    line = _line_of(path.read_text(), "bmp = 140")
    with pytest.raises(InvalidMessage) as err:
        protocol.load_states(path)
    assert err.value.field == "presets.combat.bmp"
    assert str(err.value).startswith(f"{path}, line {line}: presets.combat.bmp: unknown field; "
                                     "allowed: valence, arousal, intensity, bpm")


def test_a_bad_value_and_a_missing_field_name_their_lines(tmp_path):
    path = tmp_path / "states.toml"
    path.write_text(_states_with('bpm = 156\nmode = "minor"\n', 'bpm = 156\nmode = "lydian"\n'))
    line = _line_of(path.read_text(), 'mode = "lydian"')
    with pytest.raises(InvalidMessage, match=f"line {line}: presets.boss.mode: 'lydian' is not "
                                             "accepted; allowed: major, minor"):
        protocol.load_states(path)
    # a field left out has no line of its own: its table's header line is named
    path.write_text(_states_with("[presets.calm]\nvalence = 0.5\n", "[presets.calm]\n"))
    line = _line_of(path.read_text(), "[presets.calm]")
    with pytest.raises(InvalidMessage, match=f"line {line}: presets.calm.valence: missing field"):
        protocol.load_states(path)


def test_a_states_file_that_is_not_text_is_a_clear_error(tmp_path):
    path = tmp_path / "states.toml"
    path.write_bytes(b"[presets.menu]\nvalence = 0.3 \xff\n")  # \xff is never UTF-8
    with pytest.raises(InvalidMessage) as err:
        protocol.load_states(path)
    assert str(err.value).startswith(f"{path}: ")


@pytest.mark.parametrize("typo", ["syntax", "field"])
def test_serve_with_a_bad_states_file_prints_one_line_with_its_line_number(typo, tmp_path):
    path = tmp_path / "states.toml"
    old, new = ("[presets.menu]\n", "[presets.menu\n") if typo == "syntax" else \
        ("\nbpm = 84\n", "\nbpm = 'fast'\n")  # menu's tempo
    path.write_text(_states_with(old, new))
    line = _line_of(path.read_text(), new.splitlines()[-1])
    assert_one_line(*ostinato(*SERVE, "--states", path, cwd=tmp_path), path, f", line {line}")


# ------------------------------------------------------------------ MIDI
def test_unreadable_midi_files_are_one_invalid_midi_naming_the_file(bad_midi, tmp_path):
    path, pattern = bad_midi
    for read in (read_midi, midi_events):
        with pytest.raises(InvalidMidi, match=pattern) as err:
            read(path)
        assert str(err.value).startswith(f"{path}: ")


def test_a_folder_import_skips_an_unreadable_midi_file_and_names_it(bad_midi):
    path, pattern = bad_midi
    notes, why = corpus.read_task(Task(path.name, "midi", str(path)), ReadConfig())
    assert notes is None and why.startswith(f"unreadable: {path}: ")


@pytest.mark.parametrize("kind", sorted(BAD_MIDI))
def test_render_of_an_unreadable_midi_file_prints_one_line(kind, tmp_path):
    make, pattern = BAD_MIDI[kind]
    path = make(tmp_path, tmp_path / f"{kind}.mid")
    out = tmp_path / "out.wav"
    assert_one_line(*ostinato("render", path, "-o", out, cwd=tmp_path), path, pattern)
    assert not out.exists()


def test_an_unwrapped_file_error_prints_one_line_naming_the_file(tmp_path):
    # the WAV path's folder does not exist: OSError from wave.open, not wrapped by render
    good = tmp_path / "good.mid"
    good.write_bytes(_midi_bytes(tmp_path))
    out = tmp_path / "no" / "such" / "dir" / "out.wav"
    assert_one_line(*ostinato("render", good, "-o", out, cwd=tmp_path), out,
                    "No such file or directory")


def test_decoding_errors_no_reader_wrapped_read_as_one_line(tmp_path):
    # main() prints these like OSError; real ones, from reading a real bad file
    junk = _write(tmp_path / "junk.zip", RANDOM)
    with pytest.raises(zipfile.BadZipFile) as err:
        zipfile.ZipFile(junk)
    assert file_error(err.value) == "cannot read a file: BadZipFile: File is not a zip file"
    with pytest.raises(FileNotFoundError) as err:
        open(tmp_path / "gone.txt")
    assert file_error(err.value) == f"{tmp_path / 'gone.txt'}: No such file or directory"
    # the rule: a bare ValueError/KeyError/TypeError is a bug and keeps its traceback
    for bug in (ValueError, KeyError, TypeError):
        assert not issubclass(bug, FILE_DECODING_ERRORS + (OSError,))
