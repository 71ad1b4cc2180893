"""Fixtures for the real-time tests: the shipped model and a running server."""
import os
from pathlib import Path

import pytest

from engine import DEFAULT_MODEL


@pytest.fixture(scope="session")
def model_path():
    """The shipped default model (OSTINATO_TEST_MODEL overrides it while developing)."""
    path = Path(os.environ.get("OSTINATO_TEST_MODEL") or DEFAULT_MODEL)
    if not path.exists():
        pytest.fail(f"{path} is missing: the repository ships it (git lfs is not used)")
    return path
