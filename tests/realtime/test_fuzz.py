"""10,000 generated requests (8,000 over ZeroMQ, 2,000 over OSC) against a real Server.

The cases come from ``realtime.fuzz``, whose strategies are derived from the protocol
table, and so does the oracle: each request gets exactly one reply carrying its id, ``ok``
for a valid message (or a session-state refusal), else the error code and field the table
gives.  Afterwards the music still plays and ``ping`` still answers.

Hypothesis draws the messages in batches (one ``@given`` example is one batch of 10, so no
example outgrows Hypothesis' data budget); the batches go to one long-lived server.

The shipped model is no theme model; it takes a valid theme all the same (its melody states
it), unless the server refuses it (a name states.toml does not have, a theme longer than
the session's form: the oracle tells those from validation); a second, smaller storm of
``theme`` messages goes to a server with a theme model, where the valid ones must be
accepted.  The edges of a theme the storms draw rarely (JSON text nested deep, numbers past
float or int64 range, the longest theme the table allows, one spanning nearly every pitch)
are tested on their own at the end, the last two on both servers.
"""
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from bindings import Client
from bindings.client import ServerError
from engine.errors import InvalidMessage
from realtime import fuzz, protocol
from realtime.osc import OscServer
from realtime.server import Server, ServerConfig


BATCH = 10
ZMQ_MESSAGES, OSC_MESSAGES = 8000, 2000
THEME_ZMQ, THEME_OSC = 1500, 500  # the theme-model storm: theme messages only
SESSIONS = ("main", "fz1", "fz2")  # a small pool keeps the number of open sessions bounded
FUZZ = settings(deadline=None, database=None, phases=(Phase.generate, Phase.shrink),
                suppress_health_check=list(HealthCheck), print_blob=False)


def storm(fuzzer, cases, count, always=()):
    """Send ``count`` cases drawn by Hypothesis, BATCH at a time; each batch's replies
    are checked against the oracle as they come (a failure shrinks to a small batch).
    ``always``: strategies drawn once in every batch, so that a rare kind is in every run
    (Hypothesis does not draw the branches of ``one_of`` evenly)."""
    batches = st.tuples(st.lists(cases, min_size=BATCH - len(always), max_size=BATCH - len(always)),
                        st.tuples(*always)).map(lambda t: t[0] + list(t[1]))

    @settings(FUZZ, max_examples=count // BATCH)
    @given(batches)
    def run(batch):
        before = len(fuzzer.tally.problems)
        fuzzer.send(batch)
        assert len(fuzzer.tally.problems) == before, fuzzer.tally.problems[before:]

    run()


@pytest.fixture(scope="module")
def server(model_path):
    notes = fuzz.NoteCounter()
    cfg = ServerConfig(model=str(model_path), control="tcp://127.0.0.1:0", max_sessions=4)
    with Server(cfg, [notes], control=True) as srv:
        with OscServer(srv.handle, port=0, presets=srv.presets, stingers=srv.stingers) as osc:
            yield srv, osc, notes


def test_zmq_fuzz_every_request_answered_once_and_correctly(server):
    srv, _, notes = server
    with fuzz.ZmqFuzzer(srv.control_address, n=4) as fuzzer:
        storm(fuzzer, fuzz.requests(srv.presets, srv.stingers, SESSIONS), ZMQ_MESSAGES)
        tally = fuzzer.tally.as_dict()
        assert tally["sent"] >= ZMQ_MESSAGES, tally
        assert tally["unanswered"] == 0 and tally["server_errors"] == 0, tally
        assert fuzzer.settle(), "a request was answered more than once"
        assert tally["cases_by_kind"].keys() >= {"valid", "out_of_range", "bad_type", "bad_choice",
                                                 "missing_field", "unknown_field", "unknown_type",
                                                 "invalid_json", "too_deep", "multipart", "empty_frame"}
        # a free theme is accepted on any server (sent here: the storm may draw none), or
        # refused only for its session's state (the storm may have closed "main")
        reply = fuzzer.request({"type": "theme", "id": "free", "action": "free"})
        assert fuzz.problem(fuzz.Expect(None, None, "free", "theme"), reply) is None, reply
        played, replies = fuzz.music_plays(notes, fuzzer)
        assert played >= 5, f"the music stopped after the storm: {replies}; {fuzz.diagnose(srv)}"
        assert fuzzer.request({"type": "ping", "id": "after"})["type"] == "pong"


def test_osc_fuzz_every_message_answered_and_garbage_dropped(server):
    srv, osc, notes = server
    with fuzz.OscFuzzer(osc.port) as fuzzer, fuzz.ZmqFuzzer(srv.control_address, n=1) as control:
        storm(fuzzer, fuzz.datagrams(srv.presets, srv.stingers, SESSIONS), OSC_MESSAGES,
              always=(fuzz.osc_garbage(), fuzz.osc_bundles(srv.presets, srv.stingers, SESSIONS)))
        tally = fuzzer.tally.as_dict()
        assert tally["sent"] >= OSC_MESSAGES, tally
        assert tally["unanswered"] == 0 and tally["server_errors"] == 0, tally
        assert fuzzer.settle(), "an OSC message was answered twice, or garbage was answered"
        assert tally["cases_by_kind"].keys() >= {"osc_valid", "osc_bad_type", "osc_not_osc",
                                                 "osc_malformed", "osc_bundle"}
        played, replies = fuzz.music_plays(notes, control)
        assert played >= 5, f"the music stopped after the storm: {replies}; {fuzz.diagnose(srv)}"


# ---------------------------------------------------------------- themes on a theme model

@pytest.fixture(scope="module")
def theme_server(theme_model):
    notes = fuzz.NoteCounter()
    cfg = ServerConfig(model=str(theme_model), control="tcp://127.0.0.1:0", max_sessions=4)
    with Server(cfg, [notes], control=True) as srv:
        with OscServer(srv.handle, port=0, presets=srv.presets, stingers=srv.stingers) as osc:
            yield srv, osc, notes


def test_theme_fuzz_on_a_theme_model_accepts_every_valid_theme(theme_server):
    """Only theme messages, every kind of case, over ZeroMQ then OSC: a valid theme is
    accepted (or, named, refused bad_choice on name: the name is drawn, not taken from
    states.toml), every other case gets the table's error, and the music plays on."""
    srv, osc, notes = theme_server
    with fuzz.ZmqFuzzer(srv.control_address, n=4) as fuzzer:
        storm(fuzzer, fuzz.requests(srv.presets, srv.stingers, SESSIONS, types=("theme",)), THEME_ZMQ)
        tally = fuzzer.tally.as_dict()
        assert tally["unanswered"] == 0 and tally["server_errors"] == 0, tally
        assert fuzzer.settle(), "a request was answered more than once"
        assert tally["cases_by_kind"].keys() >= {"valid", "out_of_range", "bad_type", "missing_field"}
        # valid themes were drawn, and accepted (the oracle checks each: none refused by validation)
        assert tally["accepted_by_type"].get("theme", 0) >= THEME_ZMQ // 20, tally
        played, replies = fuzz.music_plays(notes, fuzzer)
        assert played >= 5, f"the music stopped after the storm: {replies}; {fuzz.diagnose(srv)}"
    with fuzz.OscFuzzer(osc.port) as fuzzer, fuzz.ZmqFuzzer(srv.control_address, n=1) as control:
        storm(fuzzer, fuzz.datagrams(srv.presets, srv.stingers, SESSIONS, types=("theme",)), THEME_OSC,
              always=(fuzz.osc_bundles(srv.presets, srv.stingers, SESSIONS, types=("theme",)),))
        tally = fuzzer.tally.as_dict()
        assert tally["unanswered"] == 0 and tally["server_errors"] == 0, tally
        assert fuzzer.settle(), "an OSC message was answered twice, or garbage was answered"
        assert tally["cases_by_kind"].keys() >= {"osc_valid", "osc_one_field", "osc_out_of_range",
                                                 "osc_bad_type", "osc_bundle"}
        assert tally["accepted_by_type"].get("theme", 0) >= THEME_OSC // 20, tally
        played, replies = fuzz.music_plays(notes, control)
        assert played >= 5, f"the music stopped after the storm: {replies}; {fuzz.diagnose(srv)}"


def test_the_oracle_tells_the_servers_refusals_from_validations():
    """problem() lets a valid theme be refused only by the server (longer than its session's
    form, an unknown name), never by validation; and an error validation must give is not
    one the server gave."""
    valid = fuzz.Expect(None, None, 1, "theme")
    by_server = {"ok": False, "id": 1, "code": "out_of_range", "field": "notes",
                 "allowed": "a theme of at most 8 bars (the session's form)"}
    notes = next(f for f in protocol.message_spec("theme").fields if f.name == "notes")
    by_validation = dict(by_server, allowed=notes.allowed())
    unknown_name = {"ok": False, "id": 1, "code": "bad_choice", "field": "name", "allowed": ["hero"]}
    assert fuzz.problem(valid, by_server) is None and fuzz.problem(valid, unknown_name) is None
    assert "refused" in fuzz.problem(valid, by_validation)
    assert "refused" in fuzz.problem(fuzz.Expect(None, None, 1, "state"), unknown_name)
    invalid = fuzz.Expect("out_of_range", "notes", 1, "theme")
    assert fuzz.problem(invalid, by_validation) is None
    assert "server refused" in fuzz.problem(invalid, by_server)


# ---------------------------------------------------------------- the edges of a theme

NOTES = [[62, 0, 1], [65, 1, 1], [69, 2, 1]]


def refused_as(notes):
    """The (code, field) a theme with ``notes`` is refused with by validation."""
    with pytest.raises(InvalidMessage) as info:
        protocol.validate({"type": "theme", "notes": notes})
    return protocol.error_code(info.value), info.value.field


def test_notes_text_nested_deep_is_refused_as_notes():
    assert refused_as("[" * 5000 + "]" * 5000) in (("bad_type", "notes"), ("too_large", "notes"))


def test_notes_with_an_integer_past_float_range_are_out_of_range():
    assert refused_as([[10**400, 0, 1]] + NOTES) == ("out_of_range", "notes")


@pytest.mark.parametrize("note", [[60, 1e18, 1e18], [60, 0, 1e300], [60, 2**62, 1], [60, 1e308, 1]])
def test_notes_past_int64_ticks_are_out_of_range(note):
    assert refused_as(NOTES + [note]) == ("out_of_range", "notes")


@pytest.mark.parametrize("on", ["server", "theme_server"])
def test_the_longest_theme_the_table_allows_is_not_a_server_error(on, request):
    srv, _, _ = request.getfixturevalue(on)
    chords = [[p, i / 4, 0.25] for i in range(128) for p in (60, 64, 67, 71)]
    assert len(chords) == protocol.MAX_THEME_NOTES
    with Client(srv.control_address, timeout=10, session="long") as client:
        client.open_session("long")  # its own: a storm before may have closed "main"
        try:
            reply = client.request("theme", notes=chords, transition="now")
        except ServerError as exc:
            reply = {"ok": False, "code": exc.code, "field": exc.field}
        finally:
            client.close_session("long")
    assert reply["ok"] or (reply["code"], reply["field"]) == ("out_of_range", "notes"), reply


@pytest.mark.parametrize("on", ["server", "theme_server"])
def test_a_theme_spanning_nearly_every_pitch_is_not_a_server_error(on, request):
    srv, _, _ = request.getfixturevalue(on)
    wide = [[86, 59.0, 3.5], [124, 57.0, 4.75], [2, 40.0, 0.5]]  # E minor, 2..124
    replies = []
    with Client(srv.control_address, timeout=10, session="wide") as client:
        client.open_session("wide")
        try:
            for mode in ("major", "minor"):  # (a key change encodes a theme in effect again)
                for ask in (lambda: client.key("C", mode, transition="now"),
                            lambda: client.theme(wide, transition="now")):
                    try:
                        replies.append(ask())
                    except ServerError as exc:
                        replies.append({"ok": False, "code": exc.code, "field": exc.field})
        finally:
            client.close_session("wide")
    assert all(r["ok"] or (r["code"], r["field"]) == ("out_of_range", "notes") for r in replies), replies
