"""Compiling in a child process (``realtime.warmup``): the refusal to compile in the
server's own process, and the child's failures as the server is told them."""
import importlib
import sys

import pytest

from realtime.server import ServerConfig
from realtime.warmup import CacheCold, compile_apart, compiles_refused, kernel_counts

KERNEL = '''
from numba import njit


@njit(cache=True)
def plus_one(x):
    return x + 1
'''


@pytest.fixture
def kernel_module(tmp_path, monkeypatch):
    """A module of one cached kernel, new to numba (its cache goes next to it, or to
    NUMBA_CACHE_DIR where that is set: a kernel of that name and file is new there too)."""
    folder = tmp_path / "kernels"
    folder.mkdir()
    name = f"warmup_kernel_{tmp_path.name.replace('-', '_')}"
    (folder / f"{name}.py").write_text(KERNEL)
    monkeypatch.syspath_prepend(str(folder))
    yield name
    sys.modules.pop(name, None)


def test_a_kernel_missing_from_the_cache_is_refused_before_it_compiles(kernel_module):
    module = importlib.import_module(kernel_module)
    with pytest.raises(CacheCold, match="plus_one is not in numba's cache"):
        with compiles_refused():
            module.plus_one(1)
    assert not module.plus_one.overloads  # nothing was compiled
    assert module.plus_one(1) == 2  # outside: it compiles, into the cache

    del sys.modules[kernel_module]  # a fresh dispatcher, as a new process has
    module = importlib.import_module(kernel_module)
    loaded, compiled = kernel_counts()
    with compiles_refused():  # in the cache now: loaded, not refused
        assert module.plus_one(41) == 42
    assert kernel_counts() == (loaded, compiled)  # not an engine or realtime module
    assert len(module.plus_one.stats.cache_hits) == 1 and not module.plus_one.stats.cache_misses


def test_a_child_that_fails_says_why():
    missing = compile_apart(ServerConfig(model="/nonexistent/model.npz"))
    assert not missing.ok and "status 1" in missing.why
    assert "/nonexistent/model.npz" in missing.why
    no_python = compile_apart(ServerConfig(), python="/nonexistent/python")
    assert not no_python.ok and "could not start" in no_python.why
