"""Fuzzing the control protocol: Hypothesis strategies derived from ``protocol``'s table,
and the senders that fire them at a running server over ZeroMQ and OSC.

Every strategy walks ``protocol.MESSAGES`` and ``protocol.ENVELOPE`` (nothing here lists
message types or fields by hand) and draws a ``Case``: what to send, and what the server
must answer, worked out from the table alone.  Kinds of case:

- ``valid``: a well-formed message of each type (numbers from their ranges, choices from
  their lists, keys in any letter case, ids of either kind, unicode ids with surrogates).
- ``out_of_range``/``bad_type``/``bad_choice``: one field of a valid message replaced by a
  value outside its range (NaN, +-infinity, 1e308, 10**400 among them), of the wrong JSON
  type (nested up to the depth limit), or not among its choices (unicode, NUL).
- ``missing_field``, ``unknown_field``, ``unknown_type``: a required field dropped, unknown
  fields added, the type replaced.
- ``invalid_json``: not UTF-8, truncated JSON, not an object, random bytes, an empty frame,
  a multipart request; ``too_large``: nested deeper than ``MAX_DEPTH`` or longer than
  ``MAX_MESSAGE_BYTES``.
- OSC: the same messages in OSC's positional and one-field forms, bundles (timetags far in
  the future), malformed packets and datagrams that are not OSC at all.

A valid message may still be refused for the state of the server, never for its form: its
session is not open (or already open, or all are in use), ``critic`` above 0 on a server
without a critic, a ``style`` on a model told none, a ``theme`` longer than its session's form (``out_of_range`` on ``notes``
or ``name``) or by a name states.toml does not have (``bad_choice`` on ``name``).
``problem`` allows exactly those (``SEMANTIC``), and only from the server: a refusal whose
``allowed`` is what the table gives the field came from the validator, which must not refuse
a message the table accepts.

Voices: ``voices`` values are drawn as the table allows them (1..4 voices, each true, false,
"auto" or an object of play, program, channel, octave in range, no channel twice, not every
voice off; over OSC as JSON text), refused ones with the part each error names
(``voices``, ``voices.bass``, ``voices.bass.program``).  A server may refuse a valid one for
its session (``out_of_range`` on ``voices``: a channel another voice has, a one-line model).

Repetition: ``repetition`` (mood, state, session open) is a number field like the others,
drawn from its range 0..1 (as float32 over OSC, after ``voices`` in the positional form) and
refused outside it (NaN, infinities, 1e308) or as another JSON type, naming ``repetition``;
a session ``close`` carries it no more than ``state`` or ``voices``.  A valid theme may be
refused by the server for lasting longer than its session's form (``out_of_range`` on
``notes`` or ``name``).

Themes: ``notes`` values are drawn as the table allows them (3 to a few dozen notes on a
twelfth-of-a-beat grid, no two notes of one pitch overlapping, within ``MAX_THEME_BARS`` bars;
pitches within ``THEME_SPAN`` of each other, for an engine bug; over OSC as JSON text), refused ones as the error each gets (a wrong JSON type or a list of
non-lists ``bad_type``; too few or too many notes, a bad pitch, a negative start, a duration
of 0 or one that rounds to 0, too long, an overlap ``out_of_range``).  The table's
cross-field rule for themes (action ``set`` takes exactly one of ``notes``/``name``,
``free`` neither) is special-cased, as ``session``'s state-only-with-open rule is.

``NaN``/``Infinity`` literals: Python's json reads them, and they reach the range check as
floats that no range holds: a number field holding one is ``out_of_range``; an integer field
(``v``), like ``id``, is ``bad_type``.  Integers of more than 4,300 digits are not read by
Python's json at all (``invalid_json``); the cases here stay at 401 digits.

The package's modules: ``oracle`` (cases and the answers they must get), ``values`` (one
field's values), ``messages`` (JSON requests), ``osc`` (OSC datagrams), ``senders`` (the
fuzzers and the checks after a storm).
"""
from realtime.fuzz.messages import requests
from realtime.fuzz.oracle import Case, Expect, problem
from realtime.fuzz.osc import datagrams, osc_bundles, osc_garbage, osc_reply
from realtime.fuzz.senders import NoteCounter, OscFuzzer, Tally, ZmqFuzzer, diagnose, music_plays
from realtime.fuzz.values import (invalid_notes, invalid_value, invalid_voices, valid_notes, valid_value,
                                  valid_voices)

__all__ = ["Case", "Expect", "NoteCounter", "OscFuzzer", "Tally", "ZmqFuzzer", "datagrams", "diagnose",
           "invalid_notes", "invalid_value", "invalid_voices", "music_plays", "osc_bundles", "osc_garbage",
           "osc_reply", "problem", "requests", "valid_notes", "valid_value", "valid_voices"]
