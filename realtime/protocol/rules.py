"""states.toml's ``[[transitions]]``: how the music changes from one preset to another.

A game composer writes combat -> victory differently from combat -> stealth: the first
lands on the next bar with a fanfare, the second waits for the phrase to end.  Each rule
names a (from, to) pair of presets, either of which may be ``"*"`` (any preset), and says
when the change takes effect, over how many beats the tempo moves to the new preset's,
which stinger bridges the two and how many beats of pickup (anacrusis) the new section
starts before its downbeat.  ``Rules.rule`` finds the most specific rule for a pair.

The loader (``realtime.protocol.states``) reads the file; ``parse_rules`` checks the
``transitions`` array against the file's presets and stingers and refuses a bad rule with
``bad(where, what, allowed)``, which names the file, the line and the rule.
"""
from dataclasses import dataclass, field

from engine.errors import InvalidMessage

from realtime.protocol.spec import GRID_BARS, MESSAGES, TRANSITIONS, Field, parse_when
from realtime.protocol.values import check_value

ANY = "*"  # a rule's from or to that matches every preset
# A rule's numbers: its tempo ramp is the `tempo` message's ramp_beats; its pickup, the
# beats of anacrusis before the new section's downbeat, at most a bar of 4.
RULE_FIELDS = {
    "ramp_beats": next(f for m in MESSAGES if m.name == "tempo" for f in m.fields if f.name == "ramp_beats"),
    "pickup_beats": Field("pickup_beats", "float", "beats the new section's pickup starts before "
                          "the transition point", default=0.0, lo=0.0, hi=4.0),
}
RULE_KEYS = ("from", "to", "when", "ramp_beats", "stinger", "pickup_beats")
RULE_REQUIRED = ("from", "to", "when")
# A rule's when: a grid or bars:N.  Not cue:NAME: a cue is placed by a session at run time
# (the `cue` message), so a name in this file refers to nothing at start-up, and a rule
# waiting for a cue the game never places would hold every change of that pair forever.
RULE_WHEN = f"{' | '.join(TRANSITIONS)} | bars:N (N {GRID_BARS[0]}..{GRID_BARS[1]})"


@dataclass(frozen=True)
class Rule:
    """One ``[[transitions]]`` entry: the change from preset ``from_state`` to
    ``to_state`` (either may be ``ANY``) takes effect at ``when`` (``parse_when``'s text:
    a grid or ``bars:N``), the tempo ramps to the new preset's bpm over ``ramp_beats``
    from that point (0: at once), ``stinger`` (a [stingers] name, or None) plays at that
    point, and the new section's pickup starts ``pickup_beats`` before it.  ``index`` is
    the rule's place in the file (``transitions[index]``)."""
    from_state: str
    to_state: str
    when: str
    ramp_beats: float = 0.0
    stinger: str | None = None
    pickup_beats: float = 0.0
    index: int = 0

    @property
    def point(self):
        """``when`` as ``parse_when``'s (unit, n)."""
        return parse_when(self.when)

    @property
    def where(self):
        """The rule as its errors name it: ``transitions[index]``."""
        return f"transitions[{self.index}]"


@dataclass(frozen=True)
class Rules:
    """The rules of a states file, in file order, at most one per (from, to) pair."""
    rules: tuple = ()
    _by_pair: dict = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        by_pair = {}
        for r in self.rules:
            other = by_pair.setdefault((r.from_state, r.to_state), r)
            if other is not r:
                raise ValueError(f"{r.where} and {other.where} are both "
                                 f"{r.from_state} -> {r.to_state}")
        object.__setattr__(self, "_by_pair", by_pair)

    def rule(self, from_state, to_state):
        """The most specific rule for a change from preset ``from_state`` to preset
        ``to_state``: the exact pair, else (``*``, to), else (from, ``*``), else
        (``*``, ``*``); None if none matches.  ``from_state`` None (the session plays no
        preset yet, or a mood set by `mood`) matches only rules from ``*``."""
        pairs = ((from_state, to_state), (ANY, to_state), (from_state, ANY), (ANY, ANY))
        for pair in pairs:
            if None not in pair and pair in self._by_pair:
                return self._by_pair[pair]
        return None

    def __iter__(self):
        return iter(self.rules)

    def __len__(self):
        return len(self.rules)


def parse_rules(table, presets, stingers, bad):
    """``Rules`` from a states file's ``transitions`` value (``[[transitions]]`` tables;
    None or missing: no rules), checked against the file's ``presets`` and ``stingers``
    names.  A rule that is not a table, lacks or misspells a key, names an unknown preset
    or stinger, has a bad ``when`` or a value out of range, or repeats another's pair is
    ``bad(where, what, allowed)`` (``where``: ``transitions[i]`` or ``transitions[i].KEY``)."""
    if table is None:
        return Rules()
    if not isinstance(table, list):
        raise bad("transitions", "must be an array of [[transitions]] tables",
                  f"[[transitions]] tables of {', '.join(RULE_KEYS)}")
    rules, seen = [], {}
    for i, entry in enumerate(table):
        where = f"transitions[{i}]"
        if not isinstance(entry, dict):
            raise bad(where, "must be a table", list(RULE_KEYS))
        for key in entry:
            if key not in RULE_KEYS:
                raise bad(f"{where}.{key}", "unknown key", list(RULE_KEYS))
        for key in RULE_REQUIRED:
            if key not in entry:
                raise bad(f"{where}.{key}", "missing key",
                          RULE_WHEN if key == "when" else [ANY, *presets])
        ends = []
        for key in ("from", "to"):
            value = entry[key]
            if not isinstance(value, str) or (value != ANY and value not in presets):
                raise bad(f"{where}.{key}", f"{value!r} is not a preset of this file", [ANY, *presets])
            ends.append(value)
        when = entry["when"]
        if not isinstance(when, str):
            raise bad(f"{where}.when", f"{when!r} is not a string", RULE_WHEN)
        try:
            unit, _ = parse_when(when)
        except ValueError as exc:
            raise bad(f"{where}.when", f"{when!r} is not accepted ({exc})", RULE_WHEN) from None
        if unit == "cue":
            raise bad(f"{where}.when", f"{when!r}: a cue is placed by a session at run time "
                      "(`cue`), so a rule cannot wait for one", RULE_WHEN)
        numbers = {}
        for key, f in RULE_FIELDS.items():
            try:
                numbers[key] = check_value("transitions", f, entry.get(key, f.default), {})
            except InvalidMessage as exc:
                raise bad(f"{where}.{key}", f"{entry[key]!r} is not accepted", exc.allowed) from None
        if unit == "now" and numbers["pickup_beats"]:
            raise bad(f"{where}.pickup_beats", "a pickup starts before the transition point, "
                      "and `now` has none ahead", f'0 with when = "now", else '
                      f"{RULE_FIELDS['pickup_beats'].allowed()}")
        stinger = entry.get("stinger")
        if stinger is not None and (not isinstance(stinger, str) or stinger not in stingers):
            raise bad(f"{where}.stinger", f"{stinger!r} is not a stinger of this file", list(stingers))
        pair = tuple(ends)
        if pair in seen:
            raise bad(where, f"a second rule for {pair[0]} -> {pair[1]} (the first is "
                      f"transitions[{seen[pair]}])", "one rule per (from, to) pair")
        seen[pair] = i
        rules.append(Rule(*ends, when, numbers["ramp_beats"], stinger, numbers["pickup_beats"], i))
    return Rules(tuple(rules))
