"""The control protocol's table: every message type and field, and the limits they use.

``MESSAGES`` and ``ENVELOPE`` are the one place a message or a field is defined: parsing
(``realtime.protocol.requests``), the preset loader (``realtime.protocol.states``), OSC
(``realtime.osc``), the fuzzer (``realtime.fuzz``) and PROTOCOL.md (``realtime.protocoldoc``)
all derive from them.  Values the composer needs (keys, modes, the tonality and critic
ranges, a theme's limits) come from ``engine``; this table only shows them to clients.
"""
import re
from dataclasses import dataclass

from engine.controls import KEY_SPELLINGS, MODES, STYLES, TONALITY_RANGE
from engine.ensemble import VOICES
from engine.form import LETTERS, MAX_PHRASE_BARS, REPETITION_RANGE, Form
from engine.motif import MAX_BARS as MAX_THEME_BARS, MIN_NOTES, VARIATION_RANGE
from engine.sampler.critic import MAX_CANDIDATES

PROTOCOL_VERSION = 1
MAX_MESSAGE_BYTES = 65536
# Requests up to this size are read and answered too_large; beyond it libzmq drops the
# connection (the socket's MAXMSGSIZE), so nobody can make the server buffer gigabytes.
MAX_REQUEST_BYTES = 16 * 2**20
# Arrays/objects nested deeper than this are refused before json.loads (whose recursion
# would otherwise end in RecursionError); no valid message nests at all.
MAX_DEPTH = 32
CONTROL_ADDRESS = "tcp://127.0.0.1:5555"
EVENT_ADDRESS = "tcp://127.0.0.1:5556"
OSC_PORT = 9000

# When a change takes effect: a grid name, ``bars:N`` (the next line of an N-bar grid
# counted from the session's bar 0) or ``cue:NAME`` (a cue the session placed, ``cue``).
TRANSITIONS = ("now", "beat", "bar", "phrase")
GRID_BARS = (1, 64)  # N of ``bars:N``
MAX_CUES = 64        # cues pending per session
KEYS = KEY_SPELLINGS  # every spelling the key field takes (its choices)
NAME_PATTERN = r"[A-Za-z0-9_.-]{1,64}"
NAME_RE = re.compile(NAME_PATTERN)
RESERVED_NAMES = ("session", "id")  # OSC keyword arguments: no preset, stinger or session name
# Dynamic choice lists: filled from states.toml at parse time.
PRESETS, STINGERS = "<presets>", "<stingers>"
# A voice's setting in a ``voices`` value: play (forced on, forced off, or layered by the
# mood), and the integer settings with their ranges (channels 0-based: 9 = MIDI channel 10).
PLAY = (True, False, "auto")
VOICE_RANGES = {"program": (0, 127), "channel": (0, 15), "octave": (-3, 3)}
VOICE_KEYS = ("play",) + tuple(VOICE_RANGES)
ERROR_CODES = ("invalid_json", "unknown_type", "missing_field", "bad_type", "out_of_range",
               "bad_choice", "unknown_field", "too_large", "server_error")


@dataclass(frozen=True)
class Field:
    """One field of a message: kind is "float", "int", "choice", "key", "name", "id",
    "when" (a transition point: ``TRANSITIONS``, ``bars:N`` or ``cue:NAME``, ``parse_when``),
    "notes" (a theme: ``[[pitch, start_beat, duration_beats], ...]``, ``engine.motif``),
    "voices" (``{voice name: setting}``, ``engine.ensemble.VOICES``) or "form" (a preset's
    only: ``{shape, bars, bass_loop, drums_loop, bass_share, drums_share}``,
    ``engine.form.Form``)."""

    name: str
    kind: str
    doc: str
    required: bool = False
    default: object = None
    lo: float = None
    hi: float = None
    choices: object = None  # a tuple, or PRESETS / STINGERS
    example: object = None

    def allowed(self, presets=(), stingers=()):
        """What this field accepts, as shown in errors and docs."""
        if self.kind in ("float", "int"):
            return f"{self.lo!r}..{self.hi!r}" if self.kind == "float" else f"{self.lo}..{self.hi}"
        if self.kind in ("choice", "key"):
            return list({PRESETS: presets, STINGERS: stingers}.get(self.choices, self.choices))
        if self.kind == "name":
            return f"string matching {NAME_PATTERN}"
        if self.kind == "when":
            return when_allowed()
        if self.kind == "notes":
            return (f"{MIN_NOTES}..{MAX_THEME_NOTES} [pitch 0..127, start_beat >= 0, "
                    f"duration_beats > 0], at most {MAX_THEME_BARS} bars of 4 beats")
        if self.kind == "voices":
            return voices_allowed()
        if self.kind == "form":
            return form_allowed()
        return "string (1..128 chars) or integer"


@dataclass(frozen=True)
class Message:
    """One message type: its fields (in OSC positional order) and what it does."""

    name: str
    doc: str
    fields: tuple = ()
    reply: str = "ack"
    one_of: tuple = ()          # at least one of these fields must be present
    session_required: bool = False
    osc_order: tuple = None     # positional OSC args, when not simply ``fields``

    def positional(self):
        return self.osc_order or tuple(f.name for f in self.fields)


def when_allowed():
    """What a transition point may be, as errors and PROTOCOL.md show it."""
    lo, hi = GRID_BARS
    return (f"{' | '.join(TRANSITIONS)} | bars:N (N {lo}..{hi}: the next line of an N-bar grid "
            "from the session's bar 0) | cue:NAME (a cue placed with `cue`)")


def parse_when(text):
    """A transition point as (unit, n): ("now"|"beat"|"bar"|"phrase", 0), ("bars", N) or
    ("cue", NAME); ValueError, saying what is wrong, for anything else."""
    if text in TRANSITIONS:
        return text, 0
    kind, sep, rest = text.partition(":")
    if sep and kind == "bars":
        if not re.fullmatch(r"[0-9]{1,3}", rest) or not GRID_BARS[0] <= int(rest) <= GRID_BARS[1]:
            raise ValueError(f"bars:N needs N {GRID_BARS[0]}..{GRID_BARS[1]}, got {rest[:16]!r}")
        return "bars", int(rest)
    if sep and kind == "cue":
        if not NAME_RE.fullmatch(rest):
            raise ValueError(f"cue:NAME needs a name matching {NAME_PATTERN}")
        return "cue", rest
    raise ValueError("is not a transition point")


def voices_allowed():
    """What a ``voices`` value may be, as errors and PROTOCOL.md show it."""
    ranges = ", ".join(f"{k} {lo}..{hi}" for k, (lo, hi) in VOICE_RANGES.items())
    return (f"object {{{' | '.join(VOICES)}: true | false | \"auto\" | {{play: true | false | "
            f"\"auto\", {ranges}}}}}, naming at least one voice, not every voice false, no "
            "channel given to two voices, drums at octave 0")


def form_allowed():
    """What a preset's ``form`` may be, as errors and states.toml's readers see it."""
    return (f"table {{shape = letters {LETTERS[0]}..{LETTERS[-1]} (e.g. \"AABA\"), bars = 1.."
            f"{MAX_PHRASE_BARS} (a multiple of the shape's length), bass_loop = 0..bars, "
            "drums_loop = 0..bars, bass_share = 0..1, drums_share = 0..1}, every key optional")


def _voices(what):
    return Field("voices", "voices", "the ensemble's voices: object {voice name: true | false | "
                 "\"auto\" | {play, program, channel, octave}}; forced on (true), forced off "
                 "(false) or layering by intensity and arousal (\"auto\": a voice plays from "
                 "its `enter` level on); program (General MIDI, 0-based), channel (0-based: 9 = "
                 f"MIDI channel 10) and octave set its instrument; {what}; changes take effect "
                 "at the next bar line (\"now\": every voice re-enters at once); needs an "
                 "ensemble model; over OSC a JSON string")


def _transition(default, rule=False):
    left_out = (f"the states.toml rule for this pair of presets (`[[transitions]]`), else "
                f"{default}" if rule else default)
    return Field("transition", "when", "when the change takes effect: now (at once), the "
                 "next beat, bar or phrase (the end of the session's form phrase), bars:N "
                 "(the next line of an N-bar grid from bar 0), or cue:NAME (a cue placed with "
                 f"`cue`); left out: {left_out}", default=None if rule else default,
                 example=default)


def _tonality(example=None, preset=False):
    lo, hi = TONALITY_RANGE
    left_out = ("the preset's, else the server's default (`serve --tonality`)" if preset else
                "the session's stays (until one is set: the server's default, `serve --tonality`)")
    return Field("tonality", "float", "prior over the mode's scale at sampling: 0 free (the model's "
                 f"own pitches) .. 1 strict (scale notes only); left out: {left_out}",
                 lo=lo, hi=hi, example=example)


def _repetition(example=None, preset=False, opening=False):
    lo, hi = REPETITION_RANGE
    if opening:
        left_out = "the preset's, else the server's default (`serve --repetition`); open only"
    elif preset:
        left_out = "the preset's, else the server's default (`serve --repetition`)"
    else:
        left_out = ("the session's stays (until one is set: the preset's, else the server's "
                    "default, `serve --repetition`)")
    form = Form()
    return Field("repetition", "float", "how much the music repeats itself along the session's "
                 f"form (its preset's `form`, else {form.shape} in {form.bars} bars, the bass "
                 f"looping {form.bass_loop} bars, the drums {form.drums_loop}): 0 "
                 "through-composed (the model alone) .. 1 a loop (every recall the form allows, "
                 "exact); takes effect at the next bar line; left out: " + left_out,
                 lo=lo, hi=hi, example=example)


def _style(example=None, preset=False):
    left_out = ("the preset's, else none" if preset else
                "the session's stays (until one is set: its preset's, else none)")
    return Field("style", "choice", "the collection whose texture the model is asked for: "
                 "game (the Freedoom soundtracks), baroque (Bach), classical (string quartets), "
                 "renaissance (Monteverdi's madrigals); none: the mix of them all; needs a model "
                 "told styles (`ostinato train --styles`; the hello reply's "
                 "`capabilities.styles`; the shipped models are told none); takes effect at the "
                 "transition; left out: " + left_out, choices=tuple(STYLES), example=example)


CRITIC_RANGE = (0, MAX_CANDIDATES)


def _critic(preset=False):
    lo, hi = CRITIC_RANGE
    left_out = ("the preset's, else the server's default (`serve --critic-k`)" if preset else
                "the session's stays (until one is set: the server's default, `serve --critic-k`)")
    return Field("critic", "int", "drafts of each beat the discriminator judges, one of which "
                 "plays (0: off, the generator alone); above 0 needs a server started with a "
                 f"critic (`serve --critic PATH`); takes effect at once; left out: {left_out}",
                 lo=lo, hi=hi)


BLEND_RANGE = (0.0, 64.0)
MAX_THEME_NOTES = 512  # an 8-bar theme of sixteenth-note chords fits; the message limit holds

ENVELOPE = (
    Field("id", "id", "any string or integer; echoed in the reply", example=7),
    Field("session", "name", "which session (music stream) the message is for", default="main",
          example="main"),
    Field("v", "int", "protocol version the client speaks (optional)", lo=PROTOCOL_VERSION,
          hi=PROTOCOL_VERSION),
)

MESSAGES = (
    Message("hello", "Handshake: the reply lists protocol version, server, message types, "
                     "states, stingers and capabilities.", reply="hello"),
    Message("mood", "Move the music along the mood axes; missing axes keep their current value.", (
        Field("valence", "float", "negative/sad/minor .. positive/happy/major", lo=-1.0, hi=1.0,
              example=0.5),
        Field("arousal", "float", "calm/slow/sparse .. excited/fast/dense", lo=0.0, hi=1.0, example=0.8),
        Field("intensity", "float", "soft/thin .. loud/full", lo=0.0, hi=1.0, example=0.3),
        _transition("bar"),
        _tonality(0.6),
        _critic(),
        _voices("voices not named keep their settings"),
        _repetition(0.5),
        _style(),
    ), one_of=("valence", "arousal", "intensity", "tonality", "critic", "voices", "repetition",
               "style")),
    Message("state", "Switch to a named preset from states.toml (a `tonality`, `repetition` "
            "or `style` given here wins over the preset's).", (
        Field("name", "choice", "preset name", required=True, choices=PRESETS, example="combat"),
        _transition("bar", rule=True),
        _tonality(0.8, preset=True),
        _critic(preset=True),
        _voices("on top of the preset's `voices` (the session's earlier ones do not carry over)"),
        _repetition(0.75, preset=True),
        _style(preset=True),
    )),
    Message("tempo", "Change the tempo, at once or ramped over some beats; a change not yet "
            "reached is replaced by a newer one.", (
        Field("bpm", "float", "beats per minute", required=True, lo=30.0, hi=300.0, example=140.0),
        Field("ramp_beats", "float", "beats to ramp over; 0 jumps at the transition point",
              default=0.0, lo=0.0, hi=64.0, example=4.0),
        _transition("beat"),
    )),
    Message("key", "Change key and optionally mode (missing mode keeps the current one).", (
        Field("key", "key", "tonic; lower case accepted", required=True, choices=KEYS, example="D"),
        Field("mode", "choice", "scale mode", choices=MODES, example="minor"),
        _transition("bar"),
        _tonality(0.8),
        _critic(),
    )),
    Message("stinger", "Play a one-shot motif in the current key over the current harmony, on "
            "the grid: one of states.toml's by name, or notes sent with it.  A stinger "
            "played again within its `min_interval_beats` (states.toml) is dropped or "
            "queued to the next grid point after it, as its `queue` says: the reply says "
            "which (`played`, `beat`).  A stop or pause drops the stingers not yet begun "
            "(they hold no cooldown); while the music is stopped a stinger is not played.", (
        Field("name", "choice", "stinger name (states.toml's [stingers])", choices=STINGERS,
              example="hit"),
        Field("notes", "notes", "a stinger of your own instead of a name: [pitch (MIDI), "
              "start_beat, duration_beats] per note, in any key (its key is measured and "
              "moved to the session's), checked as a theme's notes are; over OSC a JSON "
              "string"),
        _transition("beat"),
        Field("min_interval_beats", "float", "notes only (a named stinger's is states.toml's): "
              "beats before this `notes` stinger may play again", default=0.0, lo=0.0,
              hi=64.0),
        Field("queue", "choice", "notes only: a stinger within its interval is dropped, or "
              "queued to the first grid point after it", default="drop",
              choices=("drop", "queue")),
    ), one_of=("name", "notes"), osc_order=("name", "transition", "min_interval_beats", "queue",
                                            "notes")),
    Message("cue", "Place a named marker (a cue) at a musical position of the session: the "
            "event stream announces it (`cue` event) when that position plays, and a "
            "transition `cue:NAME` takes effect there.  Placing a name again moves it; a cue "
            "is forgotten once it has played.", (
        Field("name", "name", "the cue's name", required=True, example="door"),
        Field("at", "when", "where: the next beat, bar, phrase or bars:N line from now "
              "(ignored when `beat` is given)", default="bar", example="bar"),
        Field("beat", "float", "where, as a beat of the session (ahead of the playhead; "
              "`position` says where it is)", lo=0.0, hi=1e9, example=16.0),
    ), osc_order=("name", "at", "beat")),
    Message("position", "Where the session's music is now: its beat, bar, beat in the bar, "
            "phrase and bar in the phrase, tempo, key, mode and preset, the beat and `t_ns` "
            "(the server's monotonic clock, as events carry) of the next downbeat and the "
            "next phrase, and the cues waiting.", reply="position"),
    Message("theme", "Compose from a theme (a leitmotif): its variations follow the mood, in "
            "the session's key and mode.  Needs a server whose model is a theme model "
            "(`serve --model theme.npz`); `action` \"free\" goes back to free composition "
            "(on any server).", (
        Field("notes", "notes", "the theme: [pitch (MIDI), start_beat, duration_beats] per note, "
              "in any key (its key is measured); over OSC a JSON string"),
        Field("name", "name", "a theme named in states.toml's [themes] instead of notes"),
        Field("variation", "float", "0 stays close to the theme .. 1 composes freely from it",
              default=0.3, lo=VARIATION_RANGE[0], hi=VARIATION_RANGE[1], example=0.3),
        _transition("bar"),
        Field("blend_beats", "float", "beats over which the latent moves from the current theme "
              "to this one (spherical interpolation); 0: the theme's phrase starts at the "
              "transition", default=0.0, lo=BLEND_RANGE[0], hi=BLEND_RANGE[1], example=0.0),
        Field("action", "choice", "set: compose from this theme; free: back to free "
              "composition (no notes or name)", default="set", choices=("set", "free"),
              example="free"),
    ), osc_order=("name", "variation", "transition", "blend_beats", "action", "notes")),
    Message("start", "Start playing, or resume after pause."),
    Message("stop", "Stop playing; every sounding note is released."),
    Message("pause", "Pause; sounding notes are released, position is kept."),
    Message("session", "Open or close a session (an independent music stream).", (
        Field("action", "choice", "open or close the envelope's session", required=True,
              choices=("open", "close"), example="open"),
        Field("state", "choice", "preset to start in (open only)", choices=PRESETS, example="explore"),
        _voices("open only, over the preset's `voices`"),
        _repetition(0.25, opening=True),
    ), session_required=True, osc_order=("action", "session", "state", "voices", "repetition")),
    Message("ping", "Latency probe; the reply carries the server's monotonic clock.", reply="pong"),
)
# A session message's fields that only its action "open" may carry.
OPEN_ONLY = ("state", "voices", "repetition")
MESSAGE_TYPES = tuple(m.name for m in MESSAGES)
BY_NAME = {m.name: m for m in MESSAGES}


def message_spec(name):
    """The ``Message`` for a type name (KeyError if unknown)."""
    return BY_NAME[name]


def example(name):
    """An example request of a message type, built from the table's examples."""
    spec = BY_NAME[name]
    msg = {"type": name, "id": 1}
    msg.update({f.name: f.example for f in spec.fields if f.example is not None})
    if spec.session_required:
        msg["session"] = "player2"
    return msg
