"""states.toml: the named presets over the mood axes, the stingers, the themes, the
ensemble's voices and the transition rules a server offers, read and checked against the
protocol's table.

A preset's fields are the messages' fields (``PRESET_FIELDS``, checked by the same
``check_value``), so a preset takes exactly what a message may say.  A bad file is an
InvalidMessage naming the file, the line, the entry and the field: the server reports it
at start-up.
"""
import os
import re
import tomllib
from dataclasses import replace
from pathlib import Path

from engine.ensemble import DEFAULTS, DRUMS, VOICES
from engine.errors import InvalidMessage, InvalidMidi
from engine.form import Form, check_form
from engine.generate import MAX_NOTE_BEATS
from engine.motif import from_midi, from_notes

from realtime.protocol.rules import parse_rules
from realtime.protocol.spec import (MAX_THEME_BARS, MESSAGES, NAME_PATTERN, NAME_RE, RESERVED_NAMES,
                                    VOICE_RANGES, Field)
from realtime.protocol.values import check_value, show

DEFAULT_STATES = Path(__file__).resolve().parents[1] / "states.toml"
_FIELD = {f.name: f for m in MESSAGES for f in m.fields}
PRESET_FIELDS = {
    "valence": _FIELD["valence"], "arousal": _FIELD["arousal"], "intensity": _FIELD["intensity"],
    "bpm": _FIELD["bpm"], "key": _FIELD["key"], "mode": _FIELD["mode"],
    "register": Field("register", "int", "register offset in semitones", lo=-24, hi=24),
    "tonality": _FIELD["tonality"],
    "critic": _FIELD["critic"],
    "voices": _FIELD["voices"],
    "repetition": _FIELD["repetition"],
    "style": _FIELD["style"],
    "form": Field("form", "form", "the session's form (engine.form.Form; keys left out keep "
                  "its defaults)"),
    "max_note_beats": Field("max_note_beats", "float", "longest a note may sound, in beats "
                            "(a guard against runaway notes, not how lengths are made)",
                            lo=0.25, hi=MAX_NOTE_BEATS),
}
PRESET_REQUIRED = ("valence", "arousal", "intensity")
DEGREE_RANGE, DURATION_RANGE, VELOCITY_RANGE, MAX_MOTIF = (-13, 21), (0.0, 8.0), (1, 127), 64
# [voices.NAME]: the settings a server gives each voice (engine.ensemble.Voice's), with the
# ranges a states file may set; enter is a level of the mood, presence a log-odds bias.
VOICE_FIELDS = {**VOICE_RANGES, "enter": (0.0, 1.0), "presence": (0.0, 8.0)}
# A stinger's cooldown, the `stinger` message's fields: it starts at least
# min_interval_beats after its last start in the session (0: no cooldown); one asked for
# sooner is dropped, or queued to the first point of its grid after the cooldown
# (realtime.stingers.Cooldown).
COOLDOWN_FIELDS = {f.name: f for m in MESSAGES if m.name == "stinger" for f in m.fields
                   if f.name in ("min_interval_beats", "queue")}
STINGER_KEYS = ("degrees", "durations", "velocity", *COOLDOWN_FIELDS)
SECTIONS = ("presets", "stingers", "themes", "voices", "transitions")
_LOADED = {}


def _read(path):
    """(path, text, document) of a states file: ``path``, $OSTINATO_STATES or the shipped
    one.  A file that cannot be read, is not UTF-8 or not TOML is an InvalidMessage saying so."""
    path = Path(path or os.environ.get("OSTINATO_STATES") or DEFAULT_STATES)
    try:
        text = path.read_bytes().decode("utf-8")
        return path, text, tomllib.loads(text)
    except OSError as exc:
        raise InvalidMessage(f"{path}: cannot read states file: {exc.strerror}", None, "a readable file")
    except UnicodeDecodeError as exc:
        raise InvalidMessage(f"{path}: not UTF-8 text (byte {exc.start}): a states file is TOML",
                             None, "UTF-8 TOML") from None
    except tomllib.TOMLDecodeError as exc:
        # tomllib ends its message "(at line N, column M)": put the place first, as for the rest
        msg, at = re.fullmatch(r"(.*?)(?: \(at (line \d+, column \d+)\))?", str(exc), re.S).groups()
        raise InvalidMessage(f"{path}{', ' + at if at else ''}: not valid TOML: {msg}",
                             None, "TOML") from None


def _refuser(path, text):
    """``bad(where, what, allowed)``: the InvalidMessage for dotted path ``where`` of the
    file, naming the file, the line that defines it, the entry and what is allowed."""
    def bad(where, what, allowed):
        line = _toml_line(text, where)
        return InvalidMessage(f"{path}{f', line {line}' if line else ''}: {where}: {what}; "
                              f"allowed: {show(allowed)}", where, allowed)
    return bad


def load_states(path=None):
    """Read presets and stingers from ``path``, $OSTINATO_STATES or the shipped states.toml.

    Returns ``(presets, stingers)``: presets map name -> {valence, arousal, intensity and
    optionally bpm, key, mode, register, tonality, critic, voices, repetition, style, form,
    max_note_beats}; stingers map name -> {degrees, durations, velocity (default 100),
    min_interval_beats (0..64, default 0: no cooldown), queue ("drop" (default) or
    "queue")}.  A preset's ``voices`` is normalised as the
    message field's (``{voice: {play, program, channel, octave}}``) and checked against the
    file's ``[voices]`` (``load_voices``): no channel taken twice.  A preset's ``form`` is an
    ``engine.form.Form`` (``_form``).  The file's ``[[transitions]]`` are checked too
    (``load_rules``), so a bad rule stops whatever reads the file.
    Raises InvalidMessage naming the file, the entry and the field.
    """
    presets, stingers, _ = _load(path)
    return presets, stingers


def load_rules(path=None):
    """The ``[[transitions]]`` of a states file (the one ``load_states`` reads) as a
    frozen ``realtime.protocol.rules.Rules``: ``.rule(from_state, to_state)`` is the most
    specific ``Rule`` for a change of preset, or None.  Each rule has ``from`` and ``to``
    (a preset of the file or "*"), ``when`` (``now``, ``beat``, ``bar``, ``phrase`` or
    ``bars:N``) and optionally ``ramp_beats`` (0..64), ``stinger`` (a stinger of the file)
    and ``pickup_beats`` (0..4).  A bad rule, or two for one pair, is an InvalidMessage
    naming the file, the line, the rule (``transitions[2].from``) and what is allowed."""
    return _load(path)[2]


def _load(path):
    """(presets, stingers, rules) of a states file, every section checked."""
    path, text, doc = _read(path)
    bad = _refuser(path, text)
    extra = set(doc) - set(SECTIONS)
    if extra:
        raise bad(sorted(extra)[0], "unknown section", list(SECTIONS))
    voices = _voices(doc, bad)
    presets, stingers = {}, {}
    for section, out in (("presets", presets), ("stingers", stingers)):
        table = doc.get(section)
        if not isinstance(table, dict) or not table:
            raise bad(section, "missing or empty section", f"a [{section}.NAME] table")
        for name, entry in table.items():
            where = f"{section}.{name}"
            if not NAME_RE.fullmatch(name) or name in RESERVED_NAMES:
                raise bad(where, "bad name", f"{NAME_PATTERN}, not {' or '.join(RESERVED_NAMES)}")
            if not isinstance(entry, dict):
                raise bad(where, "must be a table", "a table of fields")
            out[name] = (_preset if section == "presets" else _stinger)(entry, where, bad)
            if section == "presets" and "voices" in out[name]:
                _channels_once(voices, out[name]["voices"], f"{where}.voices", bad)
    return presets, stingers, parse_rules(doc.get("transitions"), tuple(presets), tuple(stingers), bad)


def load_voices(path=None):
    """The server's voices from the ``[voices.NAME]`` tables of a states file (the one
    ``load_states`` reads): a tuple of ``engine.ensemble.Voice`` by voice id, each
    ``engine.ensemble.DEFAULTS``' with the keys its table sets (program 0..127, channel
    0..15, octave -3..3 (drums: 0), enter 0..1, presence 0..8).  An unknown voice or key,
    a value out of range or two voices on one channel is an InvalidMessage naming the file,
    the line, the key and what is allowed."""
    path, text, doc = _read(path)
    return _voices(doc, _refuser(path, text))


def _voices(doc, bad):
    table = doc.get("voices", {})
    if not isinstance(table, dict):
        raise bad("voices", "must be a table of [voices.NAME] tables", list(VOICES))
    voices = list(DEFAULTS)
    for name, entry in table.items():
        where = f"voices.{name}"
        if name not in VOICES:
            raise bad(where, "unknown voice", list(VOICES))
        if not isinstance(entry, dict):
            raise bad(where, "must be a table", list(VOICE_FIELDS))
        v = VOICES.index(name)
        for key, value in entry.items():
            if key not in VOICE_FIELDS:
                raise bad(f"{where}.{key}", "unknown key", list(VOICE_FIELDS))
            lo, hi = (0, 0) if (v, key) == (DRUMS, "octave") else VOICE_FIELDS[key]
            number = isinstance(value, int) or (isinstance(lo, float) and isinstance(value, float))
            if isinstance(value, bool) or not number or not lo <= value <= hi:
                shown = f"{lo}..{hi}" if lo != hi else f"{lo} (drums are never transposed)"
                raise bad(f"{where}.{key}", f"{value!r} is not accepted", shown)
        voices[v] = replace(voices[v], **{k: type(VOICE_FIELDS[k][0])(x) for k, x in entry.items()})
    taken = {}
    for v, voice in enumerate(voices):
        other = taken.setdefault(voice.channel, voice)
        if other is not voice:  # name the key the file set (of the later voice, if both)
            named = voice if "channel" in table.get(voice.name, {}) else other
            raise bad(f"voices.{named.name}.channel", f"channel {voice.channel} is taken twice "
                      f"({other.name} and {voice.name})", "a channel 0..15 no other voice has")
    return tuple(voices)


def _channels_once(voices, settings, where, bad):
    """A preset's ``voices`` ``settings`` give no voice a channel another already has (from
    ``voices``, the file's [voices] over the defaults); else the refusal names the key."""
    channel = {v.name: settings.get(v.name, {}).get("channel", v.channel) for v in voices}
    taken = {}
    for name in VOICES:
        other = taken.setdefault(channel[name], name)
        if other != name:
            named = name if "channel" in settings.get(name, {}) else other
            raise bad(f"{where}.{named}.channel", f"channel {channel[name]} is taken twice ("
                      f"{other} and {name})", "a channel 0..15 no other voice has")


def load_themes(path=None):
    """The ``[themes.NAME]`` of a states file (the one ``load_states`` reads): name ->
    ``engine.motif.Motif``, each given as ``notes = [[pitch, start_beat, duration_beats],
    ...]`` or ``midi = "file.mid"`` (relative to the states file).  A theme that is not one,
    or a .mid that is missing or unreadable, is an InvalidMessage naming the file, the
    theme and why: the server reports it at start-up."""
    path, _, doc = _read(path)
    out = {}
    for name, entry in (doc.get("themes") or {}).items():
        where = f"{path}: themes.{name}"
        if not NAME_RE.fullmatch(name) or not isinstance(entry, dict) or \
                len(set(entry) & {"notes", "midi"}) != 1 or set(entry) - {"notes", "midi"}:
            raise InvalidMessage(f"{where}: a theme is a table with notes = [[pitch, start_beat, "
                                 "duration_beats], ...] or midi = \"file.mid\"", f"themes.{name}",
                                 "notes or midi")
        try:
            if "notes" in entry:
                out[name] = from_notes(entry["notes"], field=f"themes.{name}.notes",
                                       max_bars=MAX_THEME_BARS, source=f"themes.{name}")
            else:
                midi = path.parent / str(entry["midi"])
                out[name] = from_midi(midi, max_bars=MAX_THEME_BARS)
        except (InvalidMessage, InvalidMidi) as exc:
            raise InvalidMessage(f"{where}: {exc}", f"themes.{name}", "a theme") from None
    return out


def _toml_line(text, where):
    """Line number (1-based) in TOML ``text`` that defines the dotted path ``where``
    (``presets.menu.bmp``, ``transitions[2].from``), else of the nearest enclosing table or
    inline table that does; None if no line does.  tomllib keeps no positions, so the text
    is scanned: each ``[table]`` header and ``key =`` line gives a path (the k-th
    ``[[name]]`` header of an array of tables gives ``name[k]``, counted from 0), and the
    line whose path is the longest prefix of ``where`` wins (the first, where several are as
    long); an array written inline (``name = [...]``) stands for each of its elements.
    Good for hand-written files; a key inside a multi-line value may fall back to its table."""
    target = where.split(".")
    unquote = lambda parts: [p.strip().strip("\"'") for p in parts]  # noqa: E731
    table, best, best_len, arrays = [], None, 0, {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line.startswith("["):
            table = unquote(line.strip("[]").split("#")[0].strip().rstrip("]").split("."))
            if line.startswith("[["):
                k = arrays[tuple(table)] = arrays.get(tuple(table), -1) + 1
                table = table[:-1] + [f"{table[-1]}[{k}]"]
            path = table
        elif "=" in line and not line.startswith("#"):
            path = table + unquote(line.split("=", 1)[0].split("."))
        else:
            continue
        if len(path) > best_len and len(path) <= len(target) and all(
                p == t or (t.startswith(f"{p}[") and "[" not in p) for p, t in zip(path, target)):
            best, best_len = number, len(path)
    return best


def _preset(entry, where, bad):
    out = {}
    for key, value in entry.items():
        field = PRESET_FIELDS.get(key)
        if field is None:
            raise bad(f"{where}.{key}", "unknown field", list(PRESET_FIELDS))
        if key == "form":
            out[key] = _form(value, f"{where}.form", bad)
            continue
        try:
            out[key] = check_value("preset", field, value, {})
        except InvalidMessage as exc:
            if key == "voices":  # the error names the part: voices.harmony.program
                raise bad(f"{where}.{exc.field}", getattr(exc, "reason", f"{value!r} is not accepted"),
                          exc.allowed) from None
            raise bad(f"{where}.{key}", f"{value!r} is not accepted", exc.allowed) from None
    for key in PRESET_REQUIRED:
        if key not in out:
            raise bad(f"{where}.{key}", "missing field", PRESET_FIELDS[key].allowed())
    return out


FORM_KEYS = tuple(Form.__dataclass_fields__)  # shape, bars, loops and shares


def _form(value, where, bad):
    """A preset's ``form`` table as an ``engine.form.Form``: keys left out keep Form's
    defaults; what ``engine.form.check_form`` refuses is refused naming the key."""
    if not isinstance(value, dict):
        raise bad(where, f"{value!r} is not a table", PRESET_FIELDS["form"].allowed())
    for key in value:
        if key not in FORM_KEYS:
            raise bad(f"{where}.{key}", "unknown key", list(FORM_KEYS))
    fields = {**{k: getattr(Form(), k) for k in FORM_KEYS}, **value}
    try:
        check_form(**fields, field=where)
    except InvalidMessage as exc:
        # check_form names form.bars, the loops and the shares, and the form itself
        # for its shape
        named = exc.field if exc.field != where else f"{where}.shape"
        what = str(exc).removeprefix(f"{where}: ")
        raise bad(named, what, exc.allowed) from None
    return Form(**fields)


def _stinger(entry, where, bad):
    extra = set(entry) - set(STINGER_KEYS)
    if extra:
        raise bad(f"{where}.{sorted(extra)[0]}", "unknown field", list(STINGER_KEYS))
    degrees, durations = entry.get("degrees"), entry.get("durations")
    lo, hi = DEGREE_RANGE
    if not isinstance(degrees, list) or not 1 <= len(degrees) <= MAX_MOTIF or not all(
            isinstance(d, int) and not isinstance(d, bool) and lo <= d <= hi for d in degrees):
        raise bad(f"{where}.degrees", "must be a list of scale degrees (1 = tonic, 8 = octave up)",
                  f"1..{MAX_MOTIF} integers in {lo}..{hi}")
    dlo, dhi = DURATION_RANGE
    if not isinstance(durations, list) or len(durations) != len(degrees) or not all(
            isinstance(d, (int, float)) and not isinstance(d, bool) and dlo < d <= dhi for d in durations):
        raise bad(f"{where}.durations", "must give one duration in beats per degree",
                  f"{len(degrees)} numbers in ({dlo}, {dhi}]")
    velocity = entry.get("velocity", 100)
    if not isinstance(velocity, int) or isinstance(velocity, bool) or \
            not VELOCITY_RANGE[0] <= velocity <= VELOCITY_RANGE[1]:
        raise bad(f"{where}.velocity", f"{velocity!r} is not accepted",
                  f"{VELOCITY_RANGE[0]}..{VELOCITY_RANGE[1]}")
    out = {"degrees": list(degrees), "durations": [float(d) for d in durations], "velocity": velocity}
    for key, field in COOLDOWN_FIELDS.items():
        try:
            out[key] = check_value("stinger", field, entry.get(key, field.default), {})
        except InvalidMessage as exc:
            raise bad(f"{where}.{key}", f"{entry[key]!r} is not accepted", exc.allowed) from None
    return out


def state_names(presets=None, stingers=None):
    """(preset names, stinger names) as tuples; None takes the default states file's."""
    if presets is None or stingers is None:
        loaded = default_names()
        presets = loaded[0] if presets is None else presets
        stingers = loaded[1] if stingers is None else stingers
    return tuple(presets), tuple(stingers)


def default_names():
    """Preset and stinger names of the default states file, loaded once per path."""
    path = os.environ.get("OSTINATO_STATES") or str(DEFAULT_STATES)
    if path not in _LOADED:
        presets, stingers = load_states(path)
        _LOADED[path] = (tuple(presets), tuple(stingers))
    return _LOADED[path]


def degree_to_semitones(degree, mode):
    """Semitones above the tonic for a 1-based scale degree (8 = octave, 0 = 7th below)."""
    steps = (0, 2, 4, 5, 7, 9, 11) if mode == "major" else (0, 2, 3, 5, 7, 8, 10)
    octave, step = divmod(degree - 1, 7)
    return 12 * octave + steps[step]
