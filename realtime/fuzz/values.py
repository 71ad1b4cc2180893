"""Hypothesis strategies for one field's value, from the protocol's table: values each
field accepts (``valid_value``) and values it refuses with the error code the table gives
each (``invalid_value``), theme notes among them (``valid_notes``, ``invalid_notes``) and
the ensemble's voices (``valid_voices``, ``invalid_voices``).
"""
import json
import math
import re
import struct

from hypothesis import strategies as st

from engine.ensemble import DRUMS, VOICES
from realtime import protocol

ID_LIMIT = 2**63
_NAME_RE = re.compile(protocol.NAME_PATTERN)
_LOWER_KEYS = {k.lower() for k in protocol.KEYS}
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)


def nested(depth):
    """A JSON array or object nested exactly ``depth`` deep."""
    def build(seed):  # the seed's base-3 digits pick each level's shape
        value = []
        for _ in range(depth - 1):
            seed, shape = divmod(seed, 3)
            value = ([value], {"k": value}, [1, value])[shape]
        return value
    return st.integers(0, 3**depth).map(build)


def _float32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def _choices(field, names):
    return tuple(names.get(field.choices, field.choices))


def unicode_text(ascii_only=False, **kw):
    """Text of any code point, lone surrogates and NUL included (OSC strings can carry
    neither, so ``ascii_only`` keeps to printable ASCII for those)."""
    if ascii_only:
        return st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), **kw)
    return st.text(st.characters(codec=None, exclude_categories=()), **kw)


# ---- theme notes: [[pitch, start_beat, duration_beats], ...]

GRID, BEATS_PER_BAR = 12, 4  # engine.motif's ticks per beat (the grid a note rounds to), bar
MAX_TICKS = protocol.MAX_THEME_BARS * BEATS_PER_BAR * GRID  # how long a theme may last
FUZZ_NOTES = 36  # the longest valid theme drawn ("a few dozen" notes; the table allows more)
# engine.controls.to_tonic_c cannot move a theme whose pitches span more than 116 semitones into
# 0..127 for every key: on a theme model such a theme is a server_error (pinned in test_fuzz).
# Valid themes keep to a window that wide, which itself moves over all of 0..127.
THEME_SPAN = 127 - 11


def _beats(ticks, whole_as_int):
    return ticks // GRID if whole_as_int and ticks % GRID == 0 else ticks / GRID


def _theme(drawn):
    """Notes the table accepts, from drawn (pitch above ``low``, start tick, duration ticks)
    with no two of one (pitch, start): each note ends by the next of its pitch and by
    MAX_TICKS, and all start ``offset`` ticks later."""
    raw, low, offset, whole_as_int = drawn
    raw = [(low + pitch, start, dur) for pitch, start, dur in raw]
    starts = {}
    for pitch, start, _ in raw:
        starts.setdefault(pitch, []).append(start)
    rows = []
    for pitch, start, dur in raw:
        end = min([start + dur, MAX_TICKS] + [s for s in starts[pitch] if s > start])
        rows.append([pitch, _beats(start + offset, whole_as_int), _beats(end - start, whole_as_int)])
    return rows


def valid_notes(max_notes=FUZZ_NOTES):
    """Themes the table accepts: 3..``max_notes`` notes, pitches 0..127 (within
    THEME_SPAN of each other), starts and durations on the grid (so no duration rounds to
    0; whole beats sometimes as integers), no two notes of one pitch overlapping, within
    MAX_THEME_BARS bars of the first note (which may start anywhere: a theme is measured
    from it)."""
    raw = st.lists(st.tuples(st.integers(0, THEME_SPAN), st.integers(0, MAX_TICKS - 1),
                             st.integers(1, 2 * BEATS_PER_BAR * GRID)),
                   min_size=protocol.MIN_NOTES, max_size=max_notes,
                   unique_by=lambda note: note[:2])
    return st.tuples(raw, st.integers(0, 127 - THEME_SPAN), st.integers(0, 64 * GRID),
                     st.booleans()).map(_theme)


def _ticks(beats):
    return round(beats * GRID)


def _replace(rows, i, column, value):
    """``rows`` with note ``i`` (modulo their number) given ``value`` in ``column``."""
    rows = [list(r) for r in rows]
    rows[i % len(rows)][column] = value
    return rows


def _swap(t):
    """``rows`` with note ``i`` (modulo their number) replaced by ``note``."""
    rows, i, note = t
    i %= len(rows)
    return rows[:i] + [note] + rows[i + 1:]


def _rows(value):
    """Whether ``value`` has the shape the validator reads further (a list of lists)."""
    return isinstance(value, list) and all(isinstance(r, list) for r in value)


def _text_of_no_rows(text):
    """Whether ``text`` is not JSON, or JSON of something other than a list of lists."""
    try:
        return not _rows(json.loads(text))
    except ValueError:
        return True
    except RecursionError:  # deep brackets: see test_fuzz's pinned protocol bug
        return False


def invalid_notes(osc=False):
    """(value, code) pairs the ``notes`` field refuses, every one on field ``notes``:
    ``bad_type`` for a value that is no list of lists (JSON text that is not one, over
    OSC: any other OSC type), ``out_of_range`` for a list of lists that is no theme.  Over
    OSC the lists go as JSON text.  Numbers that reach engine.motif's tick arithmetic stay
    small (see test_fuzz's pinned engine bugs): only the value refused is extreme."""
    theme = valid_notes()
    pick = st.integers(0, FUZZ_NOTES)
    not_a_pitch = st.integers(-2**63, -1) | st.integers(128, 2**63) | \
        st.floats().filter(lambda x: not (math.isfinite(x) and x == int(x) and 0 <= x <= 127)) | \
        st.none() | st.booleans() | st.text(max_size=4)
    negative = st.floats(max_value=-5e-324) | st.integers(-2**63, -1) | st.just(math.nan)
    # not above 0, or so short that start_beat + duration_beats rounds to the start's tick
    no_length = st.floats(max_value=1 / (2.5 * GRID)) | st.integers(-2**63, 0) | \
        st.sampled_from([math.inf, math.nan])

    def too_long(t):  # a note from a bar past the last: the theme lasts too many bars
        rows, pitch, gap, dur = t
        first = min(_ticks(r[1]) for r in rows)
        return rows + [[pitch, (first + MAX_TICKS + gap) / GRID, dur / GRID]]

    def overlap(t):  # a note of the same pitch starting before another one ends
        rows, i, into, dur = t
        pitch, start, length = rows[i % len(rows)]
        start, length = _ticks(start), _ticks(length)
        return rows + [[pitch, (start + into % length) / GRID, dur / GRID]]

    not_three = st.lists(st.integers(0, 127), max_size=2) | \
        st.lists(st.integers(0, 127), min_size=4, max_size=6)
    too_many = st.tuples(theme, st.integers(1, 64)).map(  # the theme again and again
        lambda t: (t[0] * (protocol.MAX_THEME_NOTES // len(t[0]) + 1))[:protocol.MAX_THEME_NOTES + t[1]])
    out = st.one_of(
        st.tuples(theme, st.integers(0, protocol.MIN_NOTES - 1)).map(lambda t: t[0][:t[1]]),
        st.tuples(theme, pick, st.just(0), not_a_pitch).map(lambda t: _replace(*t)),
        st.tuples(theme, pick, st.just(1), negative).map(lambda t: _replace(*t)),
        st.tuples(theme, pick, st.just(2), no_length).map(lambda t: _replace(*t)),
        st.tuples(theme, st.integers(0, 127), st.integers(0, 10**6), st.integers(1, 4 * GRID)).map(too_long),
        st.tuples(theme, pick, st.integers(0, 10**6), st.integers(1, 4 * GRID)).map(overlap),
        too_many,
        st.tuples(theme, pick, not_three).map(_swap))
    not_a_list = SCALARS | st.dictionaries(st.text(max_size=4), SCALARS, max_size=2)
    # a theme with one note that is not a list: [60, 0, 1], "[60, 0, 1]", {"pitch": 60}, ...
    stray = st.tuples(theme, pick, not_a_list).map(_swap)
    text = unicode_text(osc).filter(_text_of_no_rows) | not_a_list.map(json.dumps)
    if osc:  # OSC carries no arrays: notes are JSON text, anything else is the wrong type
        native = st.integers(-2**31, 2**31 - 1) | st.floats(width=32) | st.binary(min_size=1) | \
            st.booleans()
        wrong = native | text | stray.map(json.dumps)
        return st.tuples(out.map(json.dumps), st.just("out_of_range")) | \
            st.tuples(wrong, st.just("bad_type"))
    wrong_json = st.one_of(SCALARS, *[nested(d) for d in (1, 3, protocol.MAX_DEPTH - 1)])
    wrong = wrong_json.filter(lambda v: not isinstance(v, str) and not _rows(v)) | stray | text
    return st.tuples(out, st.just("out_of_range")) | st.tuples(wrong, st.just("bad_type"))


# ---- voices: {voice name: true | false | "auto" | {play, program, channel, octave}}

def _ranges(voice):
    """The integer settings of ``voice`` and their ranges (drums are never transposed)."""
    ranges = dict(protocol.VOICE_RANGES)
    if voice == VOICES[DRUMS]:
        ranges["octave"] = (0, 0)
    return ranges


def _setting(voice):
    play = st.sampled_from(protocol.PLAY)
    keys = {"play": play, **{k: st.integers(lo, hi) for k, (lo, hi) in _ranges(voice).items()}}
    return play | st.fixed_dictionaries({}, optional=keys).filter(bool)


def _playable(value):
    """``value`` made one the table accepts as a whole: a channel given twice is dropped
    from the later voice (which then plays "auto" if nothing is left of it), and a value
    that turns every voice off lets the last one play "auto"."""
    out, taken = {}, set()
    for voice, setting in value.items():
        if isinstance(setting, dict) and "channel" in setting:
            if setting["channel"] in taken:
                setting = {k: v for k, v in setting.items() if k != "channel"} or "auto"
            else:
                taken.add(setting["channel"])
        out[voice] = setting
    if len(out) == len(VOICES) and all(s is False or (isinstance(s, dict) and s.get("play") is False)
                                       for s in out.values()):
        out[voice] = "auto"
    return out


def valid_voices(osc=False):
    """``voices`` values the table accepts: 1..4 voices, each true, false, "auto" or an
    object of some of play, program, channel, octave within their ranges (drums at octave
    0), no channel given twice, not every voice false.  Over OSC as JSON text.  The server
    may still refuse one for its session (a channel another voice has, a one-line model)."""
    value = st.fixed_dictionaries({}, optional={v: _setting(v) for v in VOICES}).filter(bool) \
        .map(_playable)
    return value.map(json.dumps) if osc else value


def _json_object_text(text):
    """Whether ``text`` is JSON of an object (which the validator would read as voices)."""
    try:
        return isinstance(json.loads(text), dict)
    except (ValueError, RecursionError):
        return False


def invalid_voices(osc=False):
    """(value, code, field) triples ``voices`` refuses, ``field`` naming the part the error
    names: the whole (``voices``: not an object, empty, an unknown voice, every voice off, a
    channel given to two voices), a voice's setting (``voices.bass``: no setting, an empty
    or unknown-keyed object) or one of its keys (``voices.bass.program``: out of range or
    not an integer; ``voices.bass.play``).  The part refused comes after valid voices, which
    the validator reads first.  Over OSC objects go as JSON text, and any other OSC type is
    ``bad_type`` on ``voices``."""
    base = valid_voices()
    voice = st.sampled_from(VOICES)

    def put(t):  # base with voice's setting replaced, last
        value, name, setting, code, part = t
        value = {k: v for k, v in value.items() if k != name}
        value[name] = setting
        return value, code, f"voices.{name}{part}"

    def key_refused(name):
        ranges = _ranges(name)
        outside = st.sampled_from(list(ranges)).flatmap(lambda k: st.tuples(
            st.just(k), st.integers(max_value=ranges[k][0] - 1) | st.integers(min_value=ranges[k][1] + 1),
            st.just("out_of_range")))
        not_int = st.sampled_from(list(ranges)).flatmap(lambda k: st.tuples(
            st.just(k), SCALARS.filter(lambda x: not isinstance(x, int) or isinstance(x, bool)) |
            nested(2), st.just("bad_type")))
        play = st.tuples(st.just("play"), st.text(max_size=8).filter(lambda x: x != "auto"),
                         st.just("bad_choice")) | \
            st.tuples(st.just("play"), (st.integers() | st.floats() | st.none() | nested(2)),
                      st.just("bad_type"))
        return st.one_of(outside, not_int, play).map(
            lambda t: (name, {t[0]: t[1]}, t[2], f".{t[0]}"))

    not_setting = st.text(max_size=8).filter(lambda x: x != "auto").map(lambda x: (x, "bad_choice")) | \
        (st.integers() | st.floats() | st.none() | nested(2).filter(lambda x: isinstance(x, list))) \
        .map(lambda x: (x, "bad_type")) | \
        st.just(({}, "out_of_range"))
    unknown_key = st.dictionaries(unicode_text(osc, max_size=8).filter(
        lambda k: k not in protocol.VOICE_KEYS), SCALARS, min_size=1, max_size=1)
    whole_setting = st.tuples(voice, not_setting).map(lambda t: (t[0], t[1][0], t[1][1], "")) | \
        st.tuples(voice, unknown_key).map(lambda t: (t[0], t[1], "bad_choice", ""))
    in_a_setting = st.tuples(base, whole_setting | voice.flatmap(key_refused)).map(
        lambda t: put((t[0], *t[1])))
    unknown_voice = st.tuples(base, unicode_text(osc, max_size=12).filter(lambda n: n not in VOICES),
                              SCALARS).map(lambda t: ({**t[0], t[1]: t[2]}, "bad_choice", "voices"))
    all_off = st.permutations(VOICES).map(lambda order: (dict.fromkeys(order, False), "out_of_range", "voices"))
    clash = st.tuples(st.lists(voice, min_size=2, max_size=2, unique=True), st.integers(0, 15)).map(
        lambda t: ({t[0][0]: {"channel": t[1]}, t[0][1]: {"channel": t[1]}}, "out_of_range", "voices"))
    empty = st.just(({}, "out_of_range", "voices"))
    objects = st.one_of(in_a_setting, unknown_voice, all_off, clash, empty)
    text = unicode_text(osc).filter(lambda t: not _json_object_text(t))
    if osc:
        native = st.integers(-2**31, 2**31 - 1) | st.floats(width=32) | st.binary(min_size=1) | st.booleans()
        wrong = native | text | SCALARS.filter(lambda v: not isinstance(v, str)).map(json.dumps)
        return objects.map(lambda t: (json.dumps(t[0]),) + t[1:]) | \
            st.tuples(wrong, st.just("bad_type"), st.just("voices"))
    wrong_json = st.one_of(SCALARS, *[nested(d) for d in (1, 3, protocol.MAX_DEPTH - 1)])
    wrong = wrong_json.filter(lambda v: not isinstance(v, (str, dict))) | text
    return objects | st.tuples(wrong, st.just("bad_type"), st.just("voices"))


def valid_value(field, names, sessions=None, osc=False):
    """Values ``field`` accepts.  ``sessions``: the session names to use for the envelope's
    ``session`` (a small pool keeps the server's state in bounds)."""
    if field.kind == "notes":
        return valid_notes().map(json.dumps) if osc else valid_notes()
    if field.kind == "voices":
        return valid_voices(osc)
    if field.kind == "float":
        floats = st.floats(field.lo, field.hi, width=32 if osc else 64)
        return floats | st.integers(math.ceil(field.lo), math.floor(field.hi))
    if field.kind == "int":
        return st.integers(field.lo, field.hi)
    if field.kind == "choice":
        return st.sampled_from(_choices(field, names))
    if field.kind == "when":  # a cue must be placed first: the grids only
        lo, hi = protocol.GRID_BARS
        return st.sampled_from(protocol.TRANSITIONS) | st.integers(lo, hi).map("bars:{}".format)
    if field.kind == "key":
        return st.sampled_from(protocol.KEYS).flatmap(lambda k: st.sampled_from([k, k.lower(), k.upper()]))
    if field.kind == "name":  # the pool is for the envelope's session; other names (a theme's) any
        pooled = sessions and field in protocol.ENVELOPE
        names_ok = st.sampled_from(sessions) if pooled else st.from_regex(_NAME_RE, fullmatch=True)
        # OSC reads "session"/"id" as keywords, so no session can be called that there
        return names_ok.filter(lambda n: n not in protocol.RESERVED_NAMES) if osc else names_ok
    if osc:
        return st.integers(-2**31, 2**31 - 1) | unicode_text(True, min_size=1, max_size=128)
    return st.integers(-ID_LIMIT, ID_LIMIT - 1) | unicode_text(min_size=1, max_size=128)


def invalid_value(field, names, osc=False):
    """(value, error code, field named) triples ``field`` refuses, with the code the table
    gives each and the field its error names (``field``'s own name, but for a part of a
    ``voices`` value: ``voices.bass.program``)."""
    if field.kind == "voices":
        return invalid_voices(osc)
    return _invalid(field, names, osc).map(lambda vc: (*vc, field.name))


def _invalid(field, names, osc):
    """(value, error code) pairs ``field`` (not voices) refuses."""
    if field.kind == "notes":
        return invalid_notes(osc)
    wrong_json = st.one_of(SCALARS, *[nested(d) for d in (1, 3, protocol.MAX_DEPTH - 1)])
    if field.kind in ("float", "int"):
        lo, hi = field.lo, field.hi
        if osc:  # OSC carries float32, float64, int32, int64, strings, blobs, booleans, nil
            # float32, rounded to 7 digits by the server: keep clear of the bounds
            margin = 1e-3 * max(1.0, abs(lo), abs(hi))
            outside = st.floats(max_value=_float32(lo - margin), width=32) | \
                st.floats(min_value=_float32(hi + margin), width=32) | \
                st.integers(-2**31, math.ceil(lo) - 1) | st.integers(math.floor(hi) + 1, 2**31 - 1)
            out = outside | st.sampled_from([math.nan, math.inf, -math.inf, 1e308, 2**40])
            wrong = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E)) | st.binary(min_size=1) | \
                st.booleans()
            if field.kind == "int":
                out, wrong = st.integers(-2**31, lo - 1) | st.integers(hi + 1, 2**31 - 1), wrong | st.floats()
        else:
            out = st.floats(max_value=lo, exclude_max=True) | st.floats(min_value=hi, exclude_min=True) | \
                st.integers(max_value=math.ceil(lo) - 1) | st.integers(min_value=math.floor(hi) + 1) | \
                st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308, 10**400, -10**400])
            wrong = wrong_json.filter(lambda v: not isinstance(v, (int, float)) or isinstance(v, bool))
            if field.kind == "int":
                out = st.integers(max_value=lo - 1) | st.integers(min_value=hi + 1)
                wrong = wrong | st.floats()  # 1.0 is a number, not an integer
        return st.tuples(out, st.just("out_of_range")) | st.tuples(wrong, st.just("bad_type"))
    if field.kind == "id":
        if osc:
            bad = st.binary(min_size=1) | st.booleans() | st.floats() | st.just("") | \
                unicode_text(True, min_size=129, max_size=300)
        else:
            bad = SCALARS.filter(lambda v: not isinstance(v, (int, str)) or isinstance(v, bool)) | \
                st.just("") | unicode_text(min_size=129, max_size=300) | \
                st.integers(min_value=ID_LIMIT) | st.integers(max_value=-ID_LIMIT - 1) | nested(2)
        return st.tuples(bad, st.just("bad_type"))
    text = unicode_text(osc)
    if osc:
        wrong = st.integers(-2**31, 2**31 - 1) | st.floats(width=32) | st.binary(min_size=1) | st.booleans()
    else:
        wrong = wrong_json.filter(lambda v: not isinstance(v, str))
    if field.kind == "name":
        return st.tuples(text.filter(lambda s: not _NAME_RE.fullmatch(s)), st.just("out_of_range")) | \
            st.tuples(wrong, st.just("bad_type"))
    if field.kind == "when":
        lo, hi = protocol.GRID_BARS
        grids = (st.integers(max_value=lo - 1) | st.integers(hi + 1, 999)).map("bars:{}".format)
        off = text.filter(lambda s: not s.startswith(("bars:", "cue:")) and
                          s not in protocol.TRANSITIONS)
        return st.tuples(grids, st.just("out_of_range")) | st.tuples(off, st.just("bad_choice")) | \
            st.tuples(wrong, st.just("bad_type"))
    if field.kind == "key":
        off = text.filter(lambda s: s.lower() not in _LOWER_KEYS)
    else:
        choices = _choices(field, names)
        off = text.filter(lambda s: s not in choices)
    return st.tuples(off, st.just("bad_choice")) | st.tuples(wrong, st.just("bad_type"))
