"""The discriminator at play time (issue 12, item 3): D in numba against torch, drafts
of K candidates and the pick, the rules of normal generation in what is committed,
``critic`` on the wire, offline composition, and the errors of bad values."""
import json
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import zmq

from engine.training.adversarial import Critic, CriticConfig, save_critic
from engine.controls import ControlSpec
from engine.errors import InvalidMessage
from engine.generate import Request, generate_many
from engine.training.model import ModelConfig, MusicLSTM, save_model
from engine.vocab import NOTE_OFF, NOTE_ON, START, TIME_SHIFT, Vocab
from realtime import protocol
from engine.sampler.critic import MAX_CANDIDATES, CriticRuntime, Drafter
from engine.sampler.generator import Runtime
from engine.sampler.weights import Weights
from realtime.outputs import ZmqPubPort
from realtime.server import Server, ServerConfig

from .test_server import Listener, balance, request

PREFIX = 8
INFO = {"adversarial": {"prefix": PREFIX, "window": 16}}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A small generator and a random 2-layer critic over the same tokens (weights
    scaled up, as in test_generator, so that errors would show)."""
    torch.manual_seed(0)
    vocab, spec = Vocab(), ControlSpec()
    folder = tmp_path_factory.mktemp("critic")
    g = MusicLSTM(ModelConfig(vocab_size=vocab.size, n_controls=spec.size, embed=16, hidden=32,
                              layers=2, dropout=0.0))
    d = Critic(CriticConfig(vocab_size=vocab.size, n_controls=spec.size, embed=12, hidden=24,
                            layers=2, dropout=0.0))
    with torch.no_grad():
        for p in list(g.parameters()) + list(d.parameters()):
            p.mul_(3.0)
    save_model(folder / "g.npz", g, vocab, spec)
    save_critic(folder / "d.npz", d, vocab, spec, info=INFO)
    return folder, Weights(folder / "g.npz"), d.eval(), vocab, spec


def counting_critic(vocab, spec, scale, lowest=72):
    """A D whose logit grows with the number of note-ons of pitch >= ``lowest`` it has
    read: embedding 1 for those, 0 else; one LSTM unit whose gates are held open, so the
    cell adds 0.01 per such note; logit = scale * tanh(cell).  scale 0: a flat D."""
    d = Critic(CriticConfig(vocab_size=vocab.size, n_controls=spec.size, embed=1, hidden=1,
                            layers=1, dropout=0.0))
    on = vocab.offsets[NOTE_ON]
    with torch.no_grad():
        for p in d.parameters():
            p.zero_()
        d.embed.weight[on + lowest:on + 128, 0] = 1.0
        d.lstm.weight_ih_l0[2, 0] = 0.01            # g = tanh(0.01 x): the increment
        d.lstm.bias_ih_l0[[0, 1, 3]] = 20.0         # input, forget and output gates open
        d.head.weight[0, 0] = scale
    return d


def high_notes(tokens, vocab, lowest=72):
    on = vocab.offsets[NOTE_ON]
    return int(((tokens >= on + lowest) & (tokens < on + 128)).sum())


def _open(rt, spec, n, k, seed=0):
    for s in range(n):
        rt.open(s, spec.vector(s % 12, s % 2, 2.0, 64), seed=seed + s)
        rt.candidates[s] = k


def _draft_round(dr, rt, target):
    """Drive the drafter (``Drafter.drive``'s steps, one at a time) and feed (and play)
    the sessions until a draft is committed; returns the sessions committed to, stopping right there,
    before a new draft can reuse the committed one's slots."""
    n = dr.counts[0]
    dr.last_pick[:] = -1
    for _ in range(10000):
        dr._settle()
        if dr.counts[0] == n:
            dr._start(target)
            if dr.inflight:
                dr.d.advance(dr.dtarget, 1)
                dr._settle()
        if dr.counts[0] > n:
            return np.flatnonzero(dr.last_pick >= 0)
        rt.advance(target, 1)
        rt.head[:] = rt.tail  # played: the ring has room again
    raise AssertionError("no draft was committed")


def _candidates(dr, s):
    """Each candidate of session s's last draft: (tokens, ticks after each)."""
    out = []
    for k in range(int((~np.isnan(dr.last_scores[s])).sum())):
        r = dr.rows[s, k]
        n = int(dr.d.tail[r])
        out.append((dr.d.ev_tok[r, :n].copy(), dr.d.ev_tick[r, :n].copy()))
    return out


def _controls(spec, base, ticks):
    """D's control vectors: the request at the draft's start, each event's beat phase."""
    ph = spec.slices()["phase"]
    c = np.repeat(base[None].astype(np.float32), len(ticks), 0)
    c[:, ph] = 0
    c[np.arange(len(ticks)), ph.start + ticks % spec.ticks_per_beat] = 1
    return c


def test_numba_d_equals_torch_d_streamed_and_in_score(tiny):
    folder, w, d, vocab, spec = tiny
    # score(): K candidates from a shared state (D's state after a prefix, from torch)
    rng = np.random.default_rng(0)
    cr = CriticRuntime(folder / "d.npz", slots=5)
    assert cr.prefix == PREFIX
    prefix = torch.as_tensor(rng.integers(0, vocab.size, (1, 9)))
    cp = torch.as_tensor(rng.random((1, 9, spec.size), np.float32))
    x = rng.integers(0, vocab.size, (5, 30))
    c = rng.random((5, 30, spec.size), np.float32)
    lengths = np.array([30, 1, 17, 5, 29])
    with torch.no_grad():
        _, (h0, c0) = d(prefix, cp)
        want = d(torch.as_tensor(x), torch.as_tensor(c), (h0.repeat(1, 5, 1),
                                                          c0.repeat(1, 5, 1)))[0].numpy()
    got = cr.score(h0[:, 0].numpy(), c0[:, 0].numpy(), x, c, lengths, np.zeros(5, np.float32))
    np.testing.assert_allclose(got, want[np.arange(5), lengths - 1], atol=1e-4)
    # streamed in the drafter: each draft judged after the session's last PREFIX events,
    # with the request at the draft's start and each event's own beat phase
    rt = Runtime(w, max_sessions=3)
    _open(rt, spec, 3, 4)
    dr = Drafter(rt, folder / "d.npz", pick="best")
    target = np.full(3, 1 << 40, np.int64)
    checked = 0
    while checked < 12:
        for s in _draft_round(dr, rt, target):
            n = min(PREFIX, int(rt.tail[s]))
            idx = np.arange(rt.tail[s] - n, rt.tail[s]) % rt.ring
            p_tok, p_tick = rt.ev_tok[s, idx], rt.ev_tick[s, idx]
            scores = []
            for toks, ticks in _candidates(dr, s):
                seq = np.concatenate([p_tok, toks])
                ctl = _controls(spec, rt.ctl_base[s], np.concatenate([p_tick, ticks]))
                with torch.no_grad():
                    scores.append(float(d(torch.as_tensor(seq)[None],
                                          torch.as_tensor(ctl)[None])[0][0, -1]))
            np.testing.assert_allclose(dr.last_scores[s, :len(scores)], scores, atol=1e-4)
            # "best": the committed continuation is the one torch's D scores highest
            best = _candidates(dr, s)[int(np.argmax(scores))][0]
            np.testing.assert_array_equal(rt.force[s, :rt.force_n[s]], best)
            checked += 1
    assert dr.counts[1] == 0  # nothing changed under a draft here: none was thrown away


@pytest.mark.parametrize("pick, scale", [("best", 10.0), ("sample", 3000.0)])
def test_the_committed_draft_is_the_one_d_prefers(tiny, tmp_path, pick, scale):
    """A D that counts high notes: every committed draft has the most of them among its
    K candidates (sampling with weights exp(logit) too, where a note more is e^30)."""
    _, w, _, vocab, spec = tiny
    path = tmp_path / "count.npz"
    save_critic(path, counting_critic(vocab, spec, scale), vocab, spec, info=INFO)
    rt = Runtime(w, max_sessions=2)
    _open(rt, spec, 2, 6, seed=3)
    dr = Drafter(rt, path, pick=pick)
    target = np.full(2, 1 << 40, np.int64)
    differed = 0
    for _ in range(25):
        for s in _draft_round(dr, rt, target):
            counts = [high_notes(t, vocab) for t, _ in _candidates(dr, s)]
            committed = rt.force[s, :rt.force_n[s]]
            assert high_notes(committed, vocab) == max(counts), (counts, dr.last_scores[s])
            differed += len(set(counts)) > 1
    assert differed >= 3  # the choice mattered, so the test could fail


def test_a_flat_d_samples_among_drafts_and_best_takes_the_first(tiny, tmp_path):
    _, w, _, vocab, spec = tiny
    path = tmp_path / "flat.npz"
    save_critic(path, counting_critic(vocab, spec, 0.0), vocab, spec, info=INFO)
    picks = {}
    for pick in ("sample", "best"):
        rt = Runtime(w, max_sessions=1)
        _open(rt, spec, 1, 4, seed=9)
        dr = Drafter(rt, path, pick=pick)
        target = np.full(1, 1 << 40, np.int64)
        picks[pick] = [int(dr.last_pick[_draft_round(dr, rt, target)[0]]) for _ in range(30)]
    assert set(picks["best"]) == {0}  # ties: the first
    assert len(set(picks["sample"])) >= 3  # equal weights: any of the four


def _check_rules(rt, s, vocab, events, max_note_ticks):
    """No note-on of a sounding pitch, no note-off of a silent one, the opening is a
    note, no note held past the guard (events: (tick, token) in order)."""
    kinds, values = vocab.tables()
    on = {}
    first = next(tok for _, tok in events if kinds[tok] != TIME_SHIFT)
    assert kinds[first] == NOTE_ON  # the entry rule: a session starts with a note
    for tick, tok in events:
        assert kinds[tok] != START
        if kinds[tok] == NOTE_ON:
            assert values[tok] not in on
            on[values[tok]] = tick
        elif kinds[tok] == NOTE_OFF:
            assert values[tok] in on
            assert tick - on.pop(values[tok]) <= max_note_ticks
        for p, t0 in on.items():
            assert tick - t0 <= max_note_ticks, (p, t0, tick)


def test_critic_sessions_keep_every_rule_and_are_reproducible(tiny):
    folder, w, _, vocab, spec = tiny
    runs = []
    for _ in range(2):
        rt = Runtime(w, max_sessions=3, max_note_beats=1)
        _open(rt, spec, 3, 3)
        rt.candidates[2] = 0  # one session samples itself beside the critic ones
        dr = Drafter(rt, folder / "d.npz")
        target = np.full(3, 16 * 12, np.int64)
        events = [[] for _ in range(3)]
        while (rt.gen_tick < target).any():
            dr.drive(target, 1)
            rt.advance(target, 1)
            for s in range(3):
                for i in range(rt.head[s], rt.tail[s]):
                    events[s].append((int(rt.ev_tick[s, i % rt.ring]), int(rt.ev_tok[s, i % rt.ring])))
                rt.head[s] = rt.tail[s]
        for s in range(3):
            _check_rules(rt, s, vocab, events[s], 12)
        runs.append(events)
    assert runs[0] == runs[1]  # same seeds, same music, critic or not
    # the critic changes what plays: session 0 again, alone and without it
    rt = Runtime(w, max_sessions=1, max_note_beats=1)
    _open(rt, spec, 1, 0)
    rt.advance(np.full(1, 16 * 12, np.int64))
    plain = [(int(rt.ev_tick[0, i]), int(rt.ev_tok[0, i])) for i in range(1, rt.tail[0])]
    assert plain != runs[0][0]


def test_a_draft_is_dropped_when_its_session_changes_and_rewinds_drop_the_queue(tiny):
    folder, w, _, vocab, spec = tiny
    rt = Runtime(w, max_sessions=1)
    _open(rt, spec, 1, 4)
    dr = Drafter(rt, folder / "d.npz")
    far = np.full(1, 1 << 40, np.int64)
    _draft_round(dr, rt, far)  # the opening
    rt.advance(far, 200)  # fed; a critic session then waits for its next draft
    assert rt.force_n[0] == 0 and not dr.inflight and rt.advance(far, 1) == 0
    dr._start(far)  # a draft in progress ...
    assert dr.inflight == 1
    rt.next_ctl[0] = spec.vector(5, 1, 3.0, 70)  # ... when a transition is set
    rt.switch_tick[0] = int(rt.gen_tick[0]) + 6
    _draft_round(dr, rt, far)
    assert dr.counts == pytest.approx([2, 1])  # thrown away; the next one is committed
    assert dr.base[9][0] == rt.switch_tick[0]  # ... drafted from the state with the switch
    assert rt.drafted[0] and rt.force_n[0] > 0
    # the drafted continuation lands on the pending switch, as sampling does
    kinds, values = vocab.tables()
    q = rt.force[0, :rt.force_n[0]]
    ticks = rt.gen_tick[0] + np.cumsum(np.where(kinds[q] == TIME_SHIFT, values[q], 0))
    assert rt.switch_tick[0] in ticks or ticks[-1] < rt.switch_tick[0]
    rt.advance(far, 1)  # one event of it is fed, then the music is cut at the playhead
    rt.rewind(0, int(rt.ev_tick[0, (rt.tail[0] - 1) % rt.ring]))
    assert rt.force_n[0] == 0 and not rt.drafted[0]  # the rest of the draft is gone
    rt.queue(0, rt.shifts_to(0, int(rt.gen_tick[0]) + 3))
    rt.drop_draft(0)  # only a drafted continuation is dropped: forced shifts stay
    assert rt.force_n[0] == 1 and not rt.drafted[0]
    assert rt.advance(far, 1) == 1
    _draft_round(dr, rt, far)  # and drafting goes on from wherever the session is


def test_offline_generation_uses_the_critic(tiny, tmp_path):
    folder, w, _, vocab, spec = tiny
    reqs = [Request(k, k % 2, 2.0, seed=k) for k in range(3)]
    plain = generate_many(w, reqs, 2)
    judged = generate_many(w, reqs, 2, critic=folder / "d.npz", critic_k=4)
    again = generate_many(w, reqs, 2, critic=CriticRuntime(folder / "d.npz"), critic_k=4)
    assert all(len(n) for n in judged)
    for a, b in zip(judged, again):
        np.testing.assert_array_equal(a, b)
    assert any(len(a) != len(b) or not np.array_equal(a, b) for a, b in zip(plain, judged))
    best = generate_many(w, reqs, 2, critic=folder / "d.npz", critic_k=4, critic_pick="best")
    assert any(len(a) != len(b) or not np.array_equal(a, b) for a, b in zip(best, judged))
    for kwargs, field in [(dict(critic_k=4), "critic"), (dict(critic_k=17), "critic_k"),
                          (dict(critic_k=-1), "critic_k"), (dict(critic_k=2.5), "critic_k"),
                          (dict(critic_k=True), "critic_k"),
                          (dict(critic_k=2, critic=folder / "d.npz", critic_pick="top"), "critic_pick"),
                          (dict(critic_k=2, critic=folder / "d.npz", critic_beats=5), "critic_beats")]:
        with pytest.raises(InvalidMessage) as e:
            generate_many(w, reqs, 2, **kwargs)
        assert e.value.field == field and e.value.allowed, kwargs


def test_the_cli_composes_with_a_critic_and_refuses_bad_values(tiny, tmp_path):
    folder, *_ = tiny
    base = [sys.executable, "-m", "realtime.cli", "generate", "--model", str(folder / "g.npz"),
            "--bars", "2", "-o", str(tmp_path / "x.mid")]
    done = subprocess.run(base + ["--critic", str(folder / "d.npz"), "--critic-k", "3"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "critic 3 drafts a beat (sample)" in done.stdout and (tmp_path / "x.mid").exists()
    for extra, words in ((["--critic-k", "3", "--critic", "none"], "--critic"),
                         (["--critic-k", "99"], "0..16")):
        bad = subprocess.run(base + extra, capture_output=True, text=True, timeout=600)
        assert bad.returncode == 1 and words in bad.stderr, bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr


# -- the protocol ----------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["mood", "state", "key"])
def test_critic_is_an_integer_0_to_16_on_mood_state_and_key(kind):
    msg = protocol.example(kind)
    for value, code in ((-1, "out_of_range"), (17, "out_of_range"), (2.5, "bad_type"),
                        ("4", "bad_type"), (True, "bad_type"), (None, "bad_type")):
        with pytest.raises(InvalidMessage) as e:
            protocol.parse(json.dumps(dict(msg, critic=value)))
        assert (e.value.code, e.value.field, e.value.allowed) == (code, "critic", "0..16")
        assert "critic" in str(e.value) and "0..16" in str(e.value)
    assert protocol.parse(json.dumps(dict(msg, critic=MAX_CANDIDATES)))["critic"] == 16
    assert protocol.parse(json.dumps(msg))["critic"] is None  # left out: keep (or the preset's)


def test_presets_may_set_critic_and_a_bad_one_names_its_line(tmp_path):
    head = "[presets.a]\nvalence = 0\narousal = 0\nintensity = 0\n"
    st = '[stingers.s]\ndegrees = [1]\ndurations = [1.0]\n'
    (tmp_path / "ok.toml").write_text(head + "critic = 4\n" + st)
    assert protocol.load_states(tmp_path / "ok.toml")[0]["a"]["critic"] == 4
    (tmp_path / "bad.toml").write_text(head + "critic = 40\n" + st)
    with pytest.raises(InvalidMessage) as e:
        protocol.load_states(tmp_path / "bad.toml")
    assert "line 5" in str(e.value) and "presets.a.critic" in str(e.value)
    assert e.value.allowed == "0..16"


# -- the server --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def wire_critic(model_path, tmp_path_factory):
    """A random critic for the shipped model's tokens."""
    w = Weights(model_path)
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("wire") / "critic.npz"
    d = Critic(CriticConfig(vocab_size=w.vocab.size, n_controls=w.spec.size, embed=16, hidden=32))
    save_critic(path, d, w.vocab, w.spec, info=INFO)
    return path


class Wire:
    """A server on 127.0.0.1 with its event stream read by a Listener."""

    def __init__(self, model_path, **cfg):
        self.pub = ZmqPubPort("tcp://127.0.0.1:*")
        self.srv = Server(ServerConfig(model=str(model_path), control="tcp://127.0.0.1:*",
                                       **cfg), [self.pub])
        self.listener = Listener(self.pub.bound_address)
        self.req = zmq.Context.instance().socket(zmq.REQ)
        self.req.setsockopt(zmq.LINGER, 0)
        self.listener.join(self.pub)
        self.srv.start()
        self.req.connect(self.srv.control_address)

    def ask(self, **msg):
        return request(self.req, msg)

    def notes(self, n, timeout_s=60.0, session="main"):
        deadline = time.monotonic() + timeout_s
        while True:
            ons = [e["pitch"] for e in self.listener.events
                   if e["type"] == "note_on" and e["session"] == session]
            if len(ons) >= n:
                return ons[:n]
            assert time.monotonic() < deadline, "too few notes"
            self.listener.pump(0.1)

    def close(self):
        self.req.close()
        self.srv.close()
        self.listener.pump(0.5)
        self.listener.close()
        return self.listener.events


def test_critic_on_a_session_changes_what_plays_at_the_wire(model_path, wire_critic):
    pitches = {}
    for name, k in (("off", 0), ("off again", 0), ("on", 4)):
        wire = Wire(model_path, critic=str(wire_critic), critic_k=k, seed=3)
        try:
            assert wire.ask(type="hello")["critic"] == k
            pitches[name] = wire.notes(8)
        finally:
            assert balance(wire.close()) == set()
    assert pitches["off"] == pitches["off again"]  # the same seed plays the same notes
    assert pitches["on"] != pitches["off"]


def test_critic_sessions_leave_no_note_hanging_through_transitions(model_path, wire_critic):
    wire = Wire(model_path, critic=str(wire_critic), max_sessions=4)
    srv = wire.srv
    try:
        hello = wire.ask(type="hello")
        assert hello["critic"] == 0 and hello["capabilities"]["critic"]["loaded"]
        assert hello["capabilities"]["critic"]["prefix"] == PREFIX
        r = wire.ask(type="mood", arousal=0.9, intensity=0.7, transition="now", critic=4)
        assert r["ok"] and r["critic"] == 4
        assert wire.ask(type="session", action="open", session="b", state="combat")["ok"]
        assert wire.ask(type="state", name="stealth", transition="beat", critic=8,
                        session="b")["critic"] == 8
        for i, unit in enumerate(["now", "beat", "bar", "now", "now", "beat"]):
            wire.listener.pump(0.35)
            msg = dict(type="mood", valence=(-0.8, 0.6)[i % 2], transition=unit)
            if i == 2:
                msg["critic"] = 2
            assert wire.ask(**msg)["ok"]
            assert wire.ask(type="key", key="D" if i % 2 else "F", transition=unit,
                            session="b", critic=(0, 8)[i % 2])["ok"]
        assert wire.ask(type="state", name="explore", transition="now")["critic"] == 0
        assert wire.ask(type="mood", intensity=0.5, critic=3, transition="now")["critic"] == 3
        assert wire.ask(type="pause")["ok"]
        wire.listener.pump(0.3)
        assert wire.ask(type="start")["ok"]
        wire.listener.pump(0.6)
        assert wire.ask(type="stop")["ok"]
        assert balance(wire.listener.pump(0.5)) == set()
        assert wire.ask(type="start")["ok"]
        wire.listener.pump(0.8)
        assert wire.ask(type="session", action="close", session="b")["ok"]
        wire.listener.pump(0.5)
        committed = int(srv.drafter.counts[0])
    finally:
        events = wire.close()
    assert committed >= 5  # the critic sessions played drafted music
    assert {e["session"] for e in events if e["type"] == "note_on"} >= {"main", "b"}
    for session in ("main", "b"):
        assert balance([e for e in events if e.get("session") == session]) == set()


def test_critic_without_a_critic_file_is_refused_naming_the_field(model_path, tmp_path):
    wire = Wire(model_path)
    try:
        assert not wire.ask(type="hello")["capabilities"]["critic"]["loaded"]
        for msg in (dict(type="mood", intensity=0.4, critic=4),
                    dict(type="state", name="combat", critic=1),
                    dict(type="key", key="E", critic=16)):
            reply = wire.ask(**msg)
            assert not reply["ok"] and (reply["code"], reply["field"]) == ("out_of_range", "critic")
            assert "serve --critic PATH" in reply["message"] and reply["allowed"]
        reply = wire.ask(type="mood", intensity=0.4, critic=99)
        assert (reply["code"], reply["field"], reply["allowed"]) == ("out_of_range", "critic", "0..16")
        assert wire.ask(type="mood", intensity=0.4, critic=0)["critic"] == 0
    finally:
        wire.close()
    for cfg, field in ((dict(critic_k=4), "critic"), (dict(critic_k=17), "critic_k")):
        with pytest.raises(InvalidMessage) as e:
            Server(ServerConfig(model=str(model_path), **cfg), [], control=False)
        assert e.value.field == field
    states = tmp_path / "states.toml"
    states.write_text("[presets.a]\nvalence = 0\narousal = 0\nintensity = 0\ncritic = 2\n"
                      "[stingers.s]\ndegrees = [1]\ndurations = [1.0]\n")
    with pytest.raises(InvalidMessage, match="presets.a.critic|'a' sets critic"):
        Server(ServerConfig(model=str(model_path), states=str(states), initial_state="a"), [],
               control=False)


def test_a_transition_drops_a_drafted_continuation_not_yet_fed(model_path, wire_critic):
    """A bar transition beyond the look-ahead sets a switch; the continuation drafted
    before it (queued, composed without the switch) must not play past it: it is
    dropped, and the next draft lands on the switch tick as sampling would."""
    srv = Server(ServerConfig(model=str(model_path), critic=str(wire_critic), critic_k=4), [],
                 control=False)
    try:
        sess, rt = srv.sessions["main"], srv.rt
        s = sess.slot
        srv.restart(time.monotonic_ns())  # as start() does, without the threads
        deadline = time.monotonic() + 60
        # a draft queued, and the playhead past bar 0's line, so that the next bar line
        # is bar 1's, ahead of what was composed (at bar 0's the change would rewind)
        while not (rt.drafted[s] and rt.force_n[s] > rt.force_i[s] and rt.gen_tick[s] > srv.tpb
                   and srv.seq.ns_tick(s, time.monotonic_ns()) > 0):
            assert time.monotonic() < deadline, "no draft was queued"
            srv.compose(time.monotonic_ns())
        reply = srv.call("mood", arousal=0.9, transition="bar")
        tick = round(reply["beat"] * srv.tpb)
        assert rt.gen_tick[s] < tick == rt.switch_tick[s]  # no rewind: a switch ahead
        assert rt.force_n[s] == 0 and not rt.drafted[s]
        far = np.full(srv.cfg.max_sessions, -1, np.int64)
        far[s] = tick + 1
        while rt.gen_tick[s] <= tick:
            srv.drafter.drive(far, 1)
            rt.advance(far, 1)
        ticks = rt.ev_tick[s, np.arange(rt.head[s], rt.tail[s]) % rt.ring]
        assert tick in ticks and rt.switch_tick[s] == -1
    finally:
        srv.close()
