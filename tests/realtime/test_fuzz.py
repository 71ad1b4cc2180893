"""10,000 generated requests (8,000 over ZeroMQ, 2,000 over OSC) against a real Server.

The cases come from ``realtime.fuzz``, whose strategies are derived from the protocol
table, and so does the oracle: each request gets exactly one reply carrying its id, ``ok``
for a valid message (or a session-state refusal), else the error code and field the table
gives.  Afterwards the music still plays and ``ping`` still answers.

Hypothesis draws the messages in batches (one ``@given`` example is one batch of 10, so no
example outgrows Hypothesis' data budget); the batches go to one long-lived server.
"""
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from realtime import fuzz
from realtime.osc import OscServer
from realtime.server import Server, ServerConfig

BATCH = 10
ZMQ_MESSAGES, OSC_MESSAGES = 8000, 2000
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
