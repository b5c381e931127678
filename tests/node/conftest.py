"""Fixtures shared by the tests of `os_mlt.node`."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _clear_node_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the caller's OS_MLT_NODE_* variables out of the settings under test."""
    for name in list(os.environ):
        if name.startswith("OS_MLT_NODE_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def node_home() -> Iterator[Path]:
    """Return an empty directory that an unprivileged account can reach.

    pytest's `tmp_path` lies under `/tmp/pytest-of-<user>`, which has mode
    0700. Root's node runs as another account, which could not enter it, so
    node homes are made directly in the system temporary directory instead.
    """
    home = Path(tempfile.mkdtemp(prefix="os-mlt-node-test-"))
    home.chmod(0o755)
    try:
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)
