"""The C and C# bindings with CurveZMQ keys against a live keyed server: the keyed example
runs its whole script; without keys, or with a pair the server does not know, it gets no
reply and says the server is unavailable.  (The Python client: tests/realtime/test_auth.py.)"""
import shutil
import subprocess

import pytest
import zmq
import zmq.auth

from realtime.control import ControlServer
from realtime.keys import ServerKeys, make_keys
from tests.bindings.conftest import Recorder
from tests.bindings.test_c import COMPILERS, compile_example
from tests.bindings.test_csharp import build_example

pytestmark = pytest.mark.skipif(not zmq.has("curve"), reason="this libzmq has no CURVE")

# What the examples print when every request of their script was answered.
ANSWERED = ("mood ok", "state ok", "start ok", "bad-tempo error out_of_range bpm", "close ok", "stop ok")


@pytest.fixture(scope="module")
def key_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("keys")
    make_keys(out, ["game", "stranger"])
    # the stranger's pair is well formed, but the server is not told about it
    (out / "clients" / "stranger.key").unlink()
    return out


@pytest.fixture
def keyed_server(live_server, key_dir):
    engine = Recorder(live_server)
    keys = ServerKeys.load(key_dir / "server.key_secret", key_dir / "clients")
    with ControlServer(engine, "tcp://127.0.0.1:*", keys=keys,
                       on_client_lost=live_server.client_lost) as server:
        yield server.bound_address, engine.messages


@pytest.fixture(scope="module")
def c_example(tmp_path_factory):
    argv = COMPILERS["c89"]
    if shutil.which(argv[0]) is None:
        pytest.skip(f"{argv[0]} not installed: cannot compile the C example")
    return compile_example(argv, tmp_path_factory.mktemp("c") / "example")


@pytest.fixture(scope="module")
def csharp_example(tmp_path_factory):
    for tool in ("mcs", "mono"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (Debian mono-mcs, mono-runtime): C# binding not tested")
    return build_example(tmp_path_factory.mktemp("csharp"), unity=False)


def run_c(exe, address, *key_files):
    return subprocess.run([str(exe), address, *map(str, key_files)], capture_output=True,
                          text=True, timeout=60)


def run_csharp(exe, address, *key_files):
    return run_c("mono", str(exe), address, *key_files)


RUNNERS = {"c": ("c_example", run_c), "csharp": ("csharp_example", run_csharp)}


@pytest.mark.parametrize("binding", list(RUNNERS))
def test_keyed_example_runs_its_script(binding, request, keyed_server, key_dir):
    fixture, runner = RUNNERS[binding]
    example = request.getfixturevalue(fixture)
    address, recorded = keyed_server
    done = runner(example, address, key_dir / "server.key", key_dir / "game.key_secret")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    server_public = zmq.auth.load_certificate(key_dir / "server.key")[0].decode()
    assert f"keys {server_public[:8]}..." in lines
    for expected in ANSWERED:
        assert expected in lines, (expected, lines)
    assert [m["type"] for m in recorded][:3] == ["hello", "mood", "state"]
    assert recorded[-1]["type"] == "stop"


@pytest.mark.parametrize("binding", list(RUNNERS))
@pytest.mark.parametrize("client_key", [None, "stranger.key_secret"])
def test_example_without_the_right_keys_gets_nothing(binding, client_key, request, keyed_server,
                                                     key_dir):
    fixture, runner = RUNNERS[binding]
    example = request.getfixturevalue(fixture)
    address, recorded = keyed_server
    key_files = () if client_key is None else (key_dir / "server.key", key_dir / client_key)
    done = runner(example, address, *key_files)
    assert done.returncode == 2 and "unavailable" in done.stderr, done.stdout + done.stderr
    assert recorded == []
