"""Remote control is authenticated: the refusal to bind off loopback without keys, `ostinato
keys`, and CurveZMQ enforced on real sockets (control ROUTER, event PUB) for keyed and
unkeyed Python clients.  The OSC endpoint stays on loopback unless told otherwise."""
import logging
import os
import stat
import time

import pytest
import zmq

from bindings import Client, EventListener
from realtime import cli
from bindings.client import ServerUnavailable
from engine.errors import AuthError
from realtime.control import ControlServer
from realtime.keys import ServerKeys, is_loopback, make_keys
from realtime.osc import OscServer
from realtime.outputs import ZmqPubPort
from realtime.server import Server, ServerConfig

pytestmark = pytest.mark.skipif(not zmq.has("curve"), reason="this libzmq has no CURVE")


@pytest.fixture(scope="module")
def key_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("keys")
    make_keys(out, ["game"])
    return out


@pytest.fixture(scope="module")
def keys(key_dir):
    return ServerKeys.load(key_dir / "server.key_secret", key_dir / "clients")


@pytest.fixture
def game(key_dir):
    """The authorised client's keyword arguments for Client/EventListener."""
    return dict(server_key=key_dir / "server.key", client_key=key_dir / "game.key_secret")


@pytest.fixture
def stranger(key_dir):
    """A well-formed key pair the server was never told about."""
    public, secret = zmq.curve_keypair()
    return dict(server_key=key_dir / "server.key", client_key=(public, secret))


class Recorder:
    """A control handler that keeps what reached it (the transport is what is under test)."""

    def __init__(self):
        self.messages = []

    def __call__(self, msg):
        self.messages.append(msg)
        return {}


@pytest.mark.parametrize("address", [
    "tcp://127.0.0.1:5555", "tcp://127.3.2.1:*", "tcp://localhost:5555", "tcp://[::1]:5555",
    "ipc:///tmp/ostinato.sock", "inproc://ostinato", "tcp://0.0.0.0:6000;127.0.0.1:5555"])
def test_loopback_addresses(address):
    assert is_loopback(address)


@pytest.mark.parametrize("address", [
    "tcp://0.0.0.0:5555", "tcp://*:5555", "tcp://192.168.1.20:5555", "tcp://[::]:5555",
    "tcp://eth0:5555", "tcp://example.org:5555", "udp://127.0.0.1:5555", "ws://127.0.0.1:5555",
    "127.0.0.1:5555", "tcp://127.0.0.1:6000;0.0.0.0:5555"])
def test_addresses_other_machines_reach(address):
    assert not is_loopback(address)


@pytest.mark.parametrize("address", ["tcp://0.0.0.0:0", "tcp://*:0", "tcp://10.1.2.3:0"])
def test_control_and_events_refuse_a_remote_bind_without_keys(address):
    for make, what in ((lambda: ControlServer(Recorder(), address), "control"),
                       (lambda: ZmqPubPort(address), "event stream")):
        with pytest.raises(AuthError) as info:
            make()
        message = str(info.value)
        assert message.startswith(f"{what} address {address} is not loopback")
        assert "ostinato keys --out keys" in message and "--server-key keys/server.key_secret" in message
        assert "\n" not in message
    with pytest.raises(PermissionError):  # the built-in it also is
        Server(ServerConfig(control=address))


def test_serve_refuses_in_one_line_naming_the_fix(capsys, tmp_path):
    assert cli.main(["serve", "--control", "tcp://0.0.0.0:5555", "--midi", "none"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("ostinato serve: control address tcp://0.0.0.0:5555 is not loopback")
    assert "ostinato keys" in err and "--client-keys keys/clients" in err
    assert cli.main(["serve", "--events", "tcp://*:5556", "--midi", "none"]) == 1
    assert "event stream address tcp://*:5556 is not loopback" in capsys.readouterr().err
    # one of the pair alone, or the public key where the secret belongs, is named
    make_keys(tmp_path)
    assert cli.main(["serve", "--server-key", str(tmp_path / "server.key_secret"), "--midi", "none"]) == 1
    assert "--server-key needs --client-keys too" in capsys.readouterr().err
    assert cli.main(["serve", "--server-key", str(tmp_path / "server.key"),
                     "--client-keys", str(tmp_path / "clients"), "--midi", "none"]) == 1
    assert "has no secret-key line: give the .key_secret file" in capsys.readouterr().err


def test_keys_command_writes_the_layout(tmp_path, capsys):
    out = tmp_path / "keys"
    assert cli.main(["keys", "--out", str(out), "--client", "game", "--client", "editor"]) == 0
    names = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert names == ["clients/editor.key", "clients/game.key", "editor.key_secret",
                     "game.key_secret", "server.key", "server.key_secret"]
    for secret in ("server.key_secret", "game.key_secret", "editor.key_secret"):
        assert stat.S_IMODE(os.stat(out / secret).st_mode) == 0o600
    server_public = (out / "server.key").read_text()
    loaded = ServerKeys.load(out / "server.key_secret", out / "clients")
    assert loaded.public.decode() in server_public and loaded.public.decode() in capsys.readouterr().out
    # a second run adds a client and keeps the server's pair; an existing client is refused
    assert cli.main(["keys", "--out", str(out), "--client", "tool"]) == 0
    assert (out / "server.key").read_text() == server_public and (out / "clients/tool.key").exists()
    before = (out / "game.key_secret").read_text()
    assert cli.main(["keys", "--out", str(out), "--client", "new", "--client", "game"]) == 1
    err = capsys.readouterr().err
    assert "game.key_secret already exists" in err
    assert (out / "game.key_secret").read_text() == before and not (out / "new.key_secret").exists()
    assert cli.main(["keys", "--out", str(out), "--client", "../up"]) == 1
    assert "client name '../up' is not allowed" in capsys.readouterr().err


def test_client_keys_folder_must_hold_keys(tmp_path):
    make_keys(tmp_path)
    (tmp_path / "clients" / "client.key").unlink()
    with pytest.raises(AuthError, match="holds no .key file"):
        ServerKeys.load(tmp_path / "server.key_secret", tmp_path / "clients")
    with pytest.raises(AuthError, match="does not exist"):
        ServerKeys.load(tmp_path / "server.key_secret", tmp_path / "nowhere")
    (tmp_path / "clients" / "junk.key").write_text("not a certificate\n")
    with pytest.raises(AuthError, match="cannot read the key file .*junk.key: No public key found"):
        ServerKeys.load(tmp_path / "server.key_secret", tmp_path / "clients")


def test_only_the_keyed_client_is_answered(keys, game, stranger):
    recorder = Recorder()
    with ControlServer(recorder, "tcp://127.0.0.1:*", keys=keys) as server:
        address = server.bound_address
        with Client(address, timeout=1.0) as nobody, pytest.raises(ServerUnavailable):
            nobody.hello()
        with Client(address, timeout=1.0, **stranger) as intruder, pytest.raises(ServerUnavailable):
            intruder.mood(arousal=1.0)
        wrong_server = dict(game, server_key=zmq.curve_keypair()[0])
        with Client(address, timeout=1.0, **wrong_server) as misled, pytest.raises(ServerUnavailable):
            misled.hello()
        assert recorder.messages == []  # none of them reached the handler
        with Client(address, timeout=10.0, **game) as client:
            assert client.hello()["protocol"] == 1
            assert client.mood(arousal=0.25, transition="now")["for"] == "mood"
        assert [(m["type"], m.get("arousal")) for m in recorder.messages] == [("hello", None), ("mood", 0.25)]


def test_keys_allow_a_bind_on_every_interface(keys, game):
    """0.0.0.0 with keys starts; reached through loopback, it still wants the key."""
    recorder = Recorder()
    with ControlServer(recorder, "tcp://0.0.0.0:*", keys=keys) as server:
        port = server.bound_address.rpartition(":")[2]
        with Client(f"tcp://127.0.0.1:{port}", timeout=10.0, **game) as client:
            assert client.ping()["type"] == "pong"
        with Client(f"tcp://127.0.0.1:{port}", timeout=1.0) as nobody, pytest.raises(ServerUnavailable):
            nobody.ping()
    assert [m["type"] for m in recorder.messages] == ["ping"]


def test_a_keyed_server_plays_to_keyed_listeners_only(key_dir, keys, game, stranger):
    """The real engine behind keyed control and event sockets: notes reach the keyed
    subscriber, not the others."""
    pub = ZmqPubPort("tcp://127.0.0.1:*", keys=keys)
    cfg = ServerConfig(control="tcp://127.0.0.1:*", server_key=str(key_dir / "server.key_secret"),
                       client_keys=str(keys.clients))
    with EventListener(pub.bound_address, types=["note_on"], **game) as heard, \
            EventListener(pub.bound_address) as nobody, \
            EventListener(pub.bound_address, **stranger) as intruder, \
            Server(cfg, [pub]) as srv:
        with Client(srv.control_address, timeout=10.0, **game) as client:
            assert client.hello()["server"] == "ostinato"
            client.state("combat", transition="now")
        deadline = time.monotonic() + 30
        note = None
        while note is None and time.monotonic() < deadline:
            note = heard.recv(timeout=0.5)
        assert note is not None and note["type"] == "note_on" and 0 <= note["pitch"] <= 127
        # the music kept playing meanwhile: the others had every chance to hear it (the
        # count grows after each batch is sent, so it may trail the note just heard)
        while srv.events_sent == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert srv.events_sent > 0
        assert nobody.recv(timeout=0.5) is None
        assert intruder.recv(timeout=0.5) is None


def test_osc_stays_on_loopback_unless_allowed(caplog):
    with pytest.raises(AuthError) as info:
        OscServer(Recorder(), host="0.0.0.0", port=0)
    assert "OSC has no authentication" in str(info.value) and "--osc-allow-remote" in str(info.value)
    with caplog.at_level(logging.WARNING, logger="ostinato.keys"):
        with OscServer(Recorder(), host="0.0.0.0", port=0, allow_remote=True) as server:
            assert server.port > 0
    assert any("no authentication" in r.getMessage() for r in caplog.records)
    with OscServer(Recorder(), host="127.0.0.1", port=0) as server:  # the default: no warning
        assert server.port > 0


def test_serve_refuses_remote_osc_without_the_flag(capsys):
    assert cli.main(["serve", "--osc-host", "0.0.0.0", "--midi", "none"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "OSC host 0.0.0.0 is not loopback" in err
