"""CurveZMQ keys: who may send the server commands and hear its events (``ostinato keys``).

Off the loopback interface anyone who can reach a port could steer the music, so the
control ROUTER and the event PUB bind a non-loopback address only with keys: the server's
key pair and a folder of the public keys of the clients it lets in.  ZeroMQ's ZAP
authenticator (``zmq.auth.thread.ThreadAuthenticator``) checks each connecting client's key
against that folder; a client without a key, or with one not in the folder, never completes
the handshake, so it gets no reply and no event (ZeroMQ keeps it waiting, it is not told).

``ostinato keys --out keys --client game`` writes::

    keys/server.key           the server's public key: give it to every client
    keys/server.key_secret    the server's key pair: stays with the server (mode 0600)
    keys/clients/game.key     client "game"'s public key: the folder the server reads
    keys/game.key_secret      client "game"'s key pair: give it to that game only (0600)

The files are ZeroMQ's certificate format; each key is the quoted 40-character Z85
string after ``public-key =`` / ``secret-key =``, which the C and C# bindings take as is.
Run it again with a new ``--client`` name to add a client (the server pair is kept), then
restart the server: it reads the folder when it starts.
"""
import ipaddress
import logging
import os
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from engine.errors import AuthError

log = logging.getLogger("ostinato.keys")

# The ZAP domain of Ostinato's sockets; the authenticator answers for this domain only.
ZAP_DOMAIN = "ostinato"
FIX = ("make them with `ostinato keys --out keys` and start with "
       "`--server-key keys/server.key_secret --client-keys keys/clients`")
CLIENT_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def is_loopback_host(host):
    """True for ``localhost``, 127.x.x.x and ::1 (brackets allowed): a host only this machine reaches."""
    host = host.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # an interface name, '*', a host name: may face the network


def is_loopback(address):
    """True if the ZeroMQ endpoint ``address`` cannot be reached from another machine.

    ``ipc://`` and ``inproc://`` are local; ``tcp://HOST:PORT`` is when HOST is loopback
    (a ``src;dest`` form is judged by its bind part, after the ``;``).  Every other
    transport (``udp``, ``pgm``, ``ws``...) counts as remote.
    """
    scheme, sep, rest = address.partition("://")
    if not sep:
        return False
    if scheme in ("ipc", "inproc"):
        return True
    if scheme != "tcp":
        return False
    host = rest.rpartition(";")[2].rpartition(":")[0]
    return bool(host) and is_loopback_host(host)


@dataclass(frozen=True)
class ServerKeys:
    """The server's CURVE key pair (Z85 bytes) and the folder of authorised client keys."""

    public: bytes
    secret: bytes
    clients: Path

    @classmethod
    def load(cls, server_key, client_keys):
        """Read ``server_key`` (a ``.key_secret`` file) and check ``client_keys`` (a folder
        of ``.key`` files); both None: no keys (None).  Bad files raise AuthError."""
        if server_key is None and client_keys is None:
            return None
        if server_key is None or client_keys is None:
            given, missing = (("--client-keys", "--server-key") if server_key is None
                              else ("--server-key", "--client-keys"))
            raise AuthError(f"{given} needs {missing} too: the server's secret key and the folder "
                            f"of client public keys go together; {FIX}")
        public, secret = _read_pair(Path(server_key), "server key")
        folder = Path(client_keys)
        if not folder.is_dir():
            raise AuthError(f"client keys folder {folder} does not exist; {FIX}")
        found = sorted(folder.glob("*.key"))
        for path in found:
            _read_public(path)
        if not found:
            raise AuthError(f"client keys folder {folder} holds no .key file, so no client could "
                            f"connect; add one with `ostinato keys --out {folder.parent} --client NAME`")
        return cls(public, secret, folder)


def _read_public(path):
    try:
        public, _ = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise AuthError(f"cannot read the key file {path}: {exc}") from None
    if public is None or len(public) != 40:
        raise AuthError(f"key file {path} has no 40-character public-key line; "
                        "write it with `ostinato keys`")
    return public


def _read_pair(path, what):
    if not path.is_file():
        raise AuthError(f"{what} file {path} does not exist; {FIX}")
    public = _read_public(path)
    _, secret = zmq.auth.load_certificate(path)
    if secret is None or len(secret) != 40:
        raise AuthError(f"{what} file {path} has no secret-key line: give the .key_secret file, "
                        "not the public .key")
    return public, secret


def require_keys(address, keys, what):
    """Refuse (AuthError) to bind ``what`` on a non-loopback ``address`` without keys."""
    if keys is None and not is_loopback(address):
        who = "remote control needs" if what == "control" else f"a remote {what} needs"
        raise AuthError(f"{what} address {address} is not loopback: {who} CurveZMQ keys; {FIX}")


def require_local_osc(host, port, allow_remote):
    """Refuse (AuthError) an OSC ``host`` that is not loopback unless ``allow_remote``;
    allowed, it is logged as a warning: OSC has no authentication at all."""
    if is_loopback_host(host):
        return
    if not allow_remote:
        raise AuthError(f"OSC host {host} is not loopback, and OSC has no authentication: anyone "
                        "who reaches the port could steer the music; keep the default 127.0.0.1, "
                        "or on a trusted network pass --osc-allow-remote")
    log.warning("OSC on %s:%s takes commands from anyone who reaches it: OSC has no "
                "authentication", host, port)


def check_serve(args):
    """``ostinato serve``'s keys (None without), after refusing, before anything opens, a
    remote bind that would be unauthenticated (AuthError)."""
    keys = ServerKeys.load(args.server_key, args.client_keys)
    require_keys(args.control, keys, "control")
    if args.events and args.events != "none":
        require_keys(args.events, keys, "event stream")
    if args.osc:
        require_local_osc(args.osc_host, args.osc, args.osc_allow_remote)
    return keys


class _Shared:
    """One ZAP authenticator per ZeroMQ context (ZAP's endpoint is one per context),
    counted so that the last socket to go stops it."""

    lock = threading.Lock()
    running = {}  # context -> [ThreadAuthenticator, clients folder, users]


class Guard:
    """A context's ZAP authenticator, started for ``keys``, that ``secure`` puts sockets under.

    Start it before the socket binds and close it after the socket is closed (and before the
    context is terminated: its thread holds a socket there).  Use as a context manager.
    """

    def __init__(self, context, keys):
        self.context, self.keys = context, keys
        with _Shared.lock:
            entry = _Shared.running.get(context)
            if entry is None:
                auth = ThreadAuthenticator(context)
                auth.start()
                auth.configure_curve(domain=ZAP_DOMAIN, location=str(keys.clients))
                entry = _Shared.running[context] = [auth, keys.clients, 0]
            elif entry[1] != keys.clients:
                raise AuthError(f"this ZeroMQ context already authenticates clients from {entry[1]}; "
                                f"give the sockets for {keys.clients} a context of their own")
            entry[2] += 1
        self._open = True

    def secure(self, socket):
        """Make ``socket`` a CURVE server that only the authorised clients can talk to."""
        socket.setsockopt(zmq.CURVE_SERVER, 1)
        socket.setsockopt(zmq.CURVE_PUBLICKEY, self.keys.public)
        socket.setsockopt(zmq.CURVE_SECRETKEY, self.keys.secret)
        socket.setsockopt_string(zmq.ZAP_DOMAIN, ZAP_DOMAIN)
        # fail closed: without a ZAP handler libzmq would let any CURVE client in
        socket.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)
        return socket

    def close(self):
        if not self._open:
            return
        self._open = False
        with _Shared.lock:
            entry = _Shared.running[self.context]
            entry[2] -= 1
            if entry[2] == 0:
                del _Shared.running[self.context]
                entry[0].stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def guard_for(context, keys):
    """A started Guard for ``keys`` on ``context``, or None when there are no keys."""
    return None if keys is None else Guard(context, keys)


# -- the command line ----------------------------------------------------------------
def make_keys(out, clients=("client",)):
    """Write the server pair (unless ``out`` has one) and one pair per client name.
    Returns the paths written.  An existing client pair is an AuthError, before anything
    is written: a key a game already uses is never replaced."""
    out = Path(out)
    for name in clients:
        if not CLIENT_NAME.fullmatch(name) or name == "server":
            raise AuthError(f"client name {name!r} is not allowed; allowed: letters, digits, "
                            "'-' and '_' (not 'server')")
        for path in (out / f"{name}.key_secret", out / "clients" / f"{name}.key"):
            if path.exists():
                raise AuthError(f"{path} already exists; pick another --client name, or delete "
                                "that client's files first")
    (out / "clients").mkdir(parents=True, exist_ok=True)
    pairs = [(name, out / "clients") for name in clients]
    if not (out / "server.key_secret").exists():  # else kept: its clients know the public key
        pairs.insert(0, ("server", out))
    written = []
    for name, public_dir in pairs:
        with tempfile.TemporaryDirectory(dir=out) as tmp:  # mode 0700 until moved
            public, secret = zmq.auth.create_certificates(tmp, name)
            os.chmod(secret, 0o600)
            written += [Path(shutil.move(public, public_dir / f"{name}.key")),
                        Path(shutil.move(secret, out / f"{name}.key_secret"))]
    return written


def add_arguments(p):
    p.add_argument("--out", default="keys", help="folder to write the keys to (default keys)")
    p.add_argument("--client", action="append", dest="clients", metavar="NAME",
                   help="a client key pair to make (repeatable; default: one named 'client')")


def run(args):
    out = Path(args.out)
    written = make_keys(out, args.clients or ["client"])
    for path in written:
        print(f"  wrote {path}")
    public, _ = zmq.auth.load_certificate(out / "server.key")
    print(f"ostinato keys: server public key {public.decode()} ({out / 'server.key'})")
    print(f"  serve:  ostinato serve --control tcp://0.0.0.0:5555 --events tcp://0.0.0.0:5556 "
          f"--server-key {out / 'server.key_secret'} --client-keys {out / 'clients'}")
    print(f"  client: Client(address, server_key='{out / 'server.key'}', "
          f"client_key='{out / (args.clients or ['client'])[0]}.key_secret')")
    return 0
