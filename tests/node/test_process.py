"""Tests of pid files and process checks, with real short-lived processes."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from os_mlt import node
from os_mlt.node.layout import NodeLayout
from os_mlt.node.process import is_alive, is_node_process, read_pid, read_tail

# No server listens on this port, so status() finds no node over HTTP.
FREE_PORT = 9277


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """Run a process that is alive but is not OpenSearch."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        yield process
    finally:
        process.kill()
        process.wait()


@pytest.mark.parametrize(
    ("content", "pid"),
    [
        pytest.param("4242\n", 4242, id="with-newline"),
        pytest.param("4242", 4242, id="bare"),
        pytest.param("", None, id="empty"),
        pytest.param("0", None, id="zero"),
        pytest.param("-5", None, id="negative"),
        pytest.param("pid", None, id="text"),
    ],
)
def test_read_pid(tmp_path: Path, content: str, pid: int | None) -> None:
    pid_file = tmp_path / "opensearch.pid"
    pid_file.write_text(content, encoding="ascii")

    assert read_pid(pid_file) == pid


def test_read_pid_missing_file(tmp_path: Path) -> None:
    assert read_pid(tmp_path / "opensearch.pid") is None


def test_zombie_counts_as_exited() -> None:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    # Without wait() the exited child stays a zombie until reaped.
    while is_alive(process.pid) and time.monotonic() < deadline:
        time.sleep(0.05)

    assert not is_alive(process.pid)
    assert process.wait() == 0


def test_other_process_is_not_node(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    layout = NodeLayout(tmp_path, "3.5.0")

    assert is_alive(sleeper.pid)
    assert not is_node_process(sleeper.pid, layout)


def test_stop_without_pid_file(tmp_path: Path) -> None:
    settings = node.NodeSettings(http_port=FREE_PORT, home=tmp_path)

    assert node.stop(settings) is False


def test_stop_leaves_unrelated_process_alone(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    settings = node.NodeSettings(http_port=FREE_PORT, home=tmp_path)
    pid_file = tmp_path / "opensearch.pid"
    pid_file.write_text(f"{sleeper.pid}\n", encoding="ascii")

    assert node.stop(settings, timeout_s=1) is False
    assert not pid_file.exists()
    assert sleeper.poll() is None


def test_stop_removes_pid_of_exited_process(tmp_path: Path) -> None:
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    settings = node.NodeSettings(http_port=FREE_PORT, home=tmp_path)
    pid_file = tmp_path / "opensearch.pid"
    pid_file.write_text(finished.stdout, encoding="ascii")

    assert node.stop(settings) is False
    assert not pid_file.exists()


def test_status_ignores_stale_pid_file(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    settings = node.NodeSettings(http_port=FREE_PORT, home=tmp_path)
    (tmp_path / "opensearch.pid").write_text(f"{sleeper.pid}\n", encoding="ascii")

    result = node.status(settings)

    assert result.running is False
    assert result.pid is None
    assert result.health is None
    assert result.home == tmp_path
    assert result.url == f"http://127.0.0.1:{FREE_PORT}"


def test_read_tail(tmp_path: Path) -> None:
    log = tmp_path / "console.log"
    log.write_text("".join(f"line {n}\n" for n in range(100)), encoding="utf-8")

    tail = read_tail(log, 3)

    assert tail == "line 97\nline 98\nline 99\n"
    assert read_tail(tmp_path / "missing.log") == ""
