"""The child process that compiles a server's kernels into numba's cache
(``python -m realtime.precompile CONFIG_JSON``; ``realtime.warmup.compile_apart`` runs it).

It builds the server of the config (a ``ServerConfig``'s fields as JSON), with no outputs
and no control socket: its load compiles, with the signatures the server calls them
with, every kernel the server will call, and numba writes them to its cache.  Its last
line of output reports how many it compiled and how many it found cached.
"""
import json
import sys

from realtime.server import Server, ServerConfig
from realtime.warmup import REPORT, kernel_counts


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m realtime.precompile CONFIG_JSON (a ServerConfig's fields)",
              file=sys.stderr)
        return 2
    Server(ServerConfig(**json.loads(argv[0])), (), control=False)  # loads: compiles
    loaded, compiled = kernel_counts()
    print(REPORT + json.dumps({"compiled": compiled, "loaded": loaded}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
