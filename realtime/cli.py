"""The ``ostinato`` command line: one subcommand per job.

Each subcommand lives in its own module, which defines ``add_arguments(parser)``
and ``run(args)``; only the chosen one is imported, so ``ostinato serve`` never
imports torch and ``ostinato --help`` answers at once.
"""
import argparse
import importlib
import importlib.util
import json
import sys
import tomllib
import zipfile
from pathlib import Path

from engine.errors import OstinatoError

# name, module, one-line help.  The order is the order a newcomer meets them.
COMMANDS = (
    ("demo", "realtime.demo", "start the server and a scripted game client; write demo.mid/.wav/.png"),
    ("serve", "realtime.serve", "run the real-time music server (ZeroMQ control, MIDI/ZeroMQ out)"),
    ("keys", "realtime.keys", "make CurveZMQ key pairs so remote games can control the server"),
    ("ports", "realtime.outputs", "list MIDI APIs and ports, as mido-ports does"),
    ("render", "realtime.render", "render a MIDI file to WAV with the built-in synthesiser"),
    ("generate", "engine.generate", "compose a MIDI file offline for a key, mode and density"),
    ("data", "engine.training.data", "build the tokenised training set from music21's corpus and .mid folders"),
    ("train", "engine.training.train", "train the conditioned LSTM (checkpoints, resume, early stop)"),
    ("adversarial", "engine.training.adversarial", "fine-tune the generator against a discriminator (policy gradient)"),
    ("theme", "engine.theme.cli", "themes and variations: train a VAE latent the game can steer, and its figures"),
    ("eval", "engine.evaluation.evaluate", "evaluate a model on held-out music against a 5-gram baseline"),
    ("quality", "engine.evaluation.quality", "compare generation methods: LM score, reverse LM, Self-BLEU, fresh-critic AUC"),
    ("export", "engine.training.export", "export a checkpoint to the torch-free .npz the server loads"),
    ("bench", "benchmarks.bench", "measure step time, mood-to-note latency and jitter"),
)


def _command_module(module):
    """The module of a command; ``benchmarks`` sits in the source checkout above the
    installed packages (it is not installed), so its folder joins the path when needed."""
    if module.startswith("benchmarks.") and importlib.util.find_spec("benchmarks") is None:
        root = Path(__file__).resolve().parents[1]
        if not (root / "benchmarks" / "__init__.py").exists():
            raise OstinatoError(f"ostinato {module.split('.')[-1]} needs the benchmarks/ folder "
                                "of a source checkout next to realtime/")
        sys.path.insert(0, str(root))
    return importlib.import_module(module)


def build_parser(chosen=None):
    parser = argparse.ArgumentParser(
        prog="ostinato",
        description="Ostinato: real-time adaptive game music. "
                    "Start with `ostinato demo`, then `ostinato serve` and send it moods.",
    )
    subs = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module, help_ in COMMANDS:
        sub = subs.add_parser(name, help=help_, description=help_)
        if name == chosen:
            mod = _command_module(module)
            mod.add_arguments(sub)
            sub.set_defaults(func=mod.run)
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    names = {c[0] for c in COMMANDS}
    chosen = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(chosen if chosen in names else None)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    try:
        return args.func(args) or 0
    except OstinatoError as exc:
        print(f"ostinato {args.command}: {exc}", file=sys.stderr)
        return 1
    except (OSError, *FILE_DECODING_ERRORS) as exc:
        print(f"ostinato {args.command}: {file_error(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


# Errors of reading a file the user named that no reader has wrapped yet.  They print as
# one line, like OstinatoError; any other exception (a bare ValueError, KeyError,
# TypeError, ...) is a bug in Ostinato and keeps its traceback, so it gets reported.
FILE_DECODING_ERRORS = (zipfile.BadZipFile, EOFError, UnicodeDecodeError, json.JSONDecodeError,
                        tomllib.TOMLDecodeError)


def file_error(exc):
    """One line for an OSError or a decoding error: the file, then what is wrong."""
    if isinstance(exc, OSError) and exc.strerror:
        where = exc.filename if exc.filename is not None else "a file"
        return f"{where}: {exc.strerror}"
    return f"cannot read a file: {type(exc).__name__}: {str(exc) or 'it ends too soon'}"


if __name__ == "__main__":
    sys.exit(main())
