"""Offline composition: sample a piece for a key, mode and density into a MIDI file.

The sampling loop feeds one token at a time and carries the LSTM state, exactly as
the server does; nothing is re-fed.  The same seed gives the same piece.
"""
import numpy as np
import torch

from . import DEFAULT_MODEL
from .controls import MODES, parse_key
from .errors import InvalidMessage
from .notes import write_midi
from .vocab import NOTE_OFF, NOTE_ON, START, TIME_SHIFT


@torch.no_grad()
def generate(model, vocab, spec, key, mode, density, bars, seed=0, register=None,
             beats_per_bar=4, temperature=1.0, max_tokens=None, max_note_beats=8):
    """Notes (NOTE_DTYPE) of ``bars`` bars sampled under constant controls.

    key: pitch class 0-11; mode: 0 major, 1 minor; density: onsets per beat;
    register: mean MIDI pitch (default: the training data's, else 67).
    The sampling rules are the server's (``realtime.generator.sample``): no note-off of
    a silent pitch, no note-on of a sounding one, and a note held longer than
    ``max_note_beats`` is released.
    """
    if register is None:
        register = float(getattr(model, "default_register", 67.0))
    model.eval()
    rng = np.random.default_rng(seed)
    kinds, values = vocab.tables()
    tpb = vocab.ticks_per_beat
    end = bars * beats_per_bar * tpb
    max_tokens = max_tokens or end * 8
    ctl = np.zeros(spec.size, np.float32)
    token, pos, state = vocab.offsets[START], 0, None
    tokens = [token]
    sounding = np.full(128, -1)
    on0, off0 = vocab.offsets[NOTE_ON], vocab.offsets[NOTE_OFF]
    max_note = max_note_beats * tpb
    x = torch.zeros((1, 1), dtype=torch.long)
    c = torch.zeros((1, 1, spec.size))
    while pos < end and len(tokens) < max_tokens:
        spec.vector(key, mode, density, register, phase=pos % tpb, out=ctl)
        x[0, 0] = token
        c[0, 0] = torch.from_numpy(ctl)
        logits, state = model(x, c, state)
        z = logits[0, 0].double().numpy() / temperature
        z[vocab.offsets[START]] = -np.inf
        z[on0:on0 + 128][sounding >= 0] = -np.inf
        z[off0:off0 + 128][sounding < 0] = -np.inf
        held = np.nonzero((sounding >= 0) & (pos - sounding >= max_note))[0]
        if len(held):
            token = off0 + int(held[0])
        else:
            p = np.exp(z - z.max())
            token = int(rng.choice(len(p), p=p / p.sum()))
        if kinds[token] == TIME_SHIFT:
            pos += int(values[token])
        elif kinds[token] == NOTE_ON:
            sounding[values[token]] = pos
        elif kinds[token] == NOTE_OFF:
            sounding[values[token]] = -1
        tokens.append(token)
    notes = vocab.decode(np.asarray(tokens))
    notes = notes[notes["start"] < end]
    notes["end"] = np.minimum(notes["end"], end)
    return notes


def add_arguments(p):
    p.add_argument("--key", default="C", help="tonic: C, C#, Db, D, ..., Bb, B (default C)")
    p.add_argument("--mode", default="major", choices=MODES)
    p.add_argument("--density", type=float, default=2.0, help="note onsets per beat (default 2)")
    p.add_argument("--register", type=float, default=None,
                   help="mean MIDI pitch (default: the model's training average)")
    p.add_argument("--bars", type=int, default=16)
    p.add_argument("--beats-per-bar", type=int, default=4)
    p.add_argument("--tempo", type=float, default=110.0, help="tempo written to the file, BPM")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default=str(DEFAULT_MODEL), help="model .npz (default: shipped)")
    p.add_argument("-o", "--output", default="out.mid", help="MIDI file to write")


def run(args):
    from .model import load_model

    if not 0 < args.density <= 16:
        raise InvalidMessage("density must be in (0, 16] onsets per beat", field="density",
                             allowed="0..16")
    model, vocab, spec, meta = load_model(args.model)
    model.default_register = meta.get("info", {}).get("mean_register", 67.0)
    notes = generate(model, vocab, spec, parse_key(args.key), MODES.index(args.mode),
                     args.density, args.bars, seed=args.seed, register=args.register,
                     beats_per_bar=args.beats_per_bar, temperature=args.temperature)
    write_midi(notes, args.output, ticks_per_beat=vocab.ticks_per_beat, bpm=args.tempo)
    print(f"wrote {args.output}: {len(notes)} notes, {args.bars} bars, "
          f"{args.key} {args.mode}, density {args.density}")
    return 0
