"""Crash-safe recordings: a real ``ostinato serve --record`` stopped by SIGTERM, SIGINT and
SIGKILL, with clients killed under it, and an exception in the engine thread; each
``.mid`` is read back with mido and must be balanced in every track."""
import logging
import multiprocessing
import os
import signal
import threading

import mido
import pytest
import zmq

from benchmarks.observers import StreamReader, midi_file_beats, midi_file_tally, stream_notes, tally
from benchmarks.storm import RecordingServe
from realtime.outputs import MidiFilePort, MultiPort, ZmqPubPort
from realtime.server import Server, ServerConfig

TIMEOUT_S = 60  # guards against a hang only


class _Game:
    """A game's REQ socket: the sessions it opens are its own until it disconnects."""

    def __init__(self, ctx, address):
        self.sock = ctx.socket(zmq.REQ)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(address)

    def __call__(self, **msg):
        self.sock.send_json(msg)
        assert self.sock.poll(TIMEOUT_S * 1000), f"no reply to {msg}"
        return self.sock.recv_json()


def _note_ons(stream, n, start=0):
    """Index of the n-th note-on of the stream from ``start``, waiting for it."""
    count = [0]

    def nth(event):
        count[0] += event["type"] == "note_on"
        return count[0] >= n

    index = stream.wait_for(nth, start, timeout_s=TIMEOUT_S)
    assert index is not None, f"fewer than {n} notes on the event stream"
    return index


@pytest.fixture
def serve(model_path, tmp_path):
    """A started ``ostinato serve`` recording to tmp_path/take.mid, and a stream reader."""
    ctx = zmq.Context()
    srv = RecordingServe(model_path, tmp_path / "take.mid")
    with srv:
        srv.wait_ready()
        stream = StreamReader(srv.events, ctx)
        game = _Game(ctx, srv.control)
        try:
            yield srv, stream, game
        finally:
            stream.close()
            game.sock.close()
    ctx.term()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sigterm_and_sigint_write_a_balanced_recording(serve, sig):
    srv, stream, game = serve
    _note_ons(stream, 5)
    for name in ("a", "b"):  # more sessions, and a transition that plays at once
        assert game(type="session", action="open", session=name)["ok"]
        assert game(type="mood", session=name, arousal=1.0, transition="now")["ok"]
    _note_ons(stream, 20)
    assert srv.stop(sig) == 0
    stream.settle()
    assert tally(stream_notes(stream.events))["stuck"] == 0
    counts = midi_file_tally(srv.record)
    assert counts["notes"] >= 20 and (counts["stuck"], counts["orphan_offs"]) == (0, 0), counts
    names = [t.name for t in mido.MidiFile(srv.record).tracks]
    assert names[:2] == ["tempo", "main"] and {"a", "b"} <= set(names)


def test_sigkill_loses_at_most_two_seconds_of_music(serve):
    srv, stream, game = serve
    bpm = 150.0
    assert game(type="tempo", bpm=bpm, transition="now")["ok"]
    # past the first checkpoints, then killed at once
    index = _note_ons(stream, 15, len(stream.events))
    main = [e for e in stream.events[:index + 1] if e["session"] == "main"]
    last_beat = max(e["beat"] for e in main if e["type"] in ("note_on", "note_off"))
    os.kill(srv.pid, signal.SIGKILL)
    srv._proc.wait(TIMEOUT_S)
    counts = midi_file_tally(srv.record)  # the last checkpoint: whole and balanced
    assert counts["notes"] > 0 and (counts["stuck"], counts["orphan_offs"]) == (0, 0), counts
    recorded = midi_file_beats(srv.record, "main")
    assert recorded[-1][0] >= last_beat - 2.0 * bpm / 60, (recorded[-1], last_beat, bpm)


def _client(control, name, opened):
    """A game process that opens a session, plays it loud at once, then waits to die."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.REQ)
    sock.connect(control)
    for msg in ({"type": "session", "action": "open", "session": name},
                {"type": "mood", "session": name, "arousal": 1.0, "transition": "now"}):
        sock.send_json(msg)
        sock.recv_json()
    opened.release()
    threading.Event().wait()


def test_clients_killed_with_sessions_open_leave_a_balanced_recording(serve):
    srv, stream, game = serve
    mp = multiprocessing.get_context("spawn")
    opened = mp.Semaphore(0)
    names = [f"player{i}" for i in range(6)]
    procs = [mp.Process(target=_client, args=(srv.control, n, opened), daemon=True)
             for n in names]
    for p in procs:
        p.start()
    for _ in procs:
        assert opened.acquire(timeout=TIMEOUT_S)
    start = len(stream.events)
    _note_ons(stream, 30, start)  # their music plays
    for p in procs:
        os.kill(p.pid, signal.SIGKILL)
        p.join()
    # their sessions close as the connections go (poll the server until they have)
    for _ in range(TIMEOUT_S * 10):
        if game(type="hello")["sessions"] == ["main"]:
            break
        threading.Event().wait(0.1)
    else:
        pytest.fail("the killed clients' sessions stayed open")
    assert srv.stop(signal.SIGTERM) == 0
    stream.settle()
    ours = [e for e in stream.events if e["session"] in names]
    assert tally(stream_notes(ours))["notes"] > 0
    counts = midi_file_tally(srv.record)
    assert (counts["stuck"], counts["orphan_offs"]) == (0, 0), counts
    tracks = {t.name for t in mido.MidiFile(srv.record).tracks}
    assert set(names) <= tracks


class _FailsOnce(MultiPort):
    """Real outputs behind a fan-out whose send raises once, after ``after`` sends, in the
    engine thread: what an output bug or a bad message would do mid-batch."""

    def __init__(self, ports, after):
        super().__init__(ports)
        self.after, self.sends, self.failed = after, 0, threading.Event()

    def _send(self, *args):
        self.sends += 1
        if self.sends == self.after:
            self.failed.set()
            raise RuntimeError("injected failure")
        super()._send(*args)


def test_an_exception_in_the_engine_thread_is_logged_notes_end_and_music_goes_on(
        model_path, tmp_path, caplog):
    pub = ZmqPubPort("tcp://127.0.0.1:*")
    rec = MidiFilePort(tmp_path / "fault.mid")
    port = _FailsOnce([pub, rec], after=15)
    ctx = zmq.Context()
    stream = StreamReader(pub.bound_address, ctx)
    try:
        srv = Server(ServerConfig(model=str(model_path)), port, control=False)
        with caplog.at_level(logging.ERROR, logger="ostinato.server"):
            with srv:
                assert port.failed.wait(TIMEOUT_S)
                after = port.sends
                for _ in range(TIMEOUT_S * 10):  # the music goes on after the failure
                    if port.sends >= after + 20:
                        break
                    threading.Event().wait(0.1)
                assert srv.engine.playing and port.sends >= after + 20
        stream.settle()
    finally:
        stream.close()
        ctx.term()
    assert any("engine thread failed" in r.getMessage() and r.exc_info for r in caplog.records)
    counts = tally(stream_notes(stream.events))
    assert (counts["stuck"], counts["orphan_offs"]) == (0, 0), counts
    counts = midi_file_tally(tmp_path / "fault.mid")
    assert counts["notes"] > 0 and (counts["stuck"], counts["orphan_offs"]) == (0, 0), counts
