"""Tests that install, start and stop real OpenSearch nodes on 127.0.0.1.

Each node home starts empty, so the first start in it unpacks OpenSearch and
installs the k-NN plugin from the cached zips. As root, the nodes run as the
unprivileged account of `NodeSettings.user`.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import pwd
import socket
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from os_mlt import node
from os_mlt.errors import NodeError

pytestmark = pytest.mark.integration

NODE_PORT = 9271
HTTP_SQUATTER_PORT = 9272
TRANSPORT_TEST_HTTP_PORT = 9273
TRANSPORT_SQUATTER_PORT = 9274
FAILING_NODE_PORT = 9275


@pytest.fixture(scope="module")
def settings(node_home: Path) -> Iterator[node.NodeSettings]:
    """Return the settings of the test node, and stop the node after the module."""
    settings = node.NodeSettings(
        http_port=NODE_PORT, home=node_home / "node", heap="512m"
    )
    try:
        yield settings
    finally:
        node.stop(settings)


@pytest.fixture
def running(settings: node.NodeSettings) -> node.NodeStatus:
    """Start the test node unless it is already running, and return its status."""
    return node.start(settings)


def get_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def test_start_reports_healthy_node(
    running: node.NodeStatus, settings: node.NodeSettings
) -> None:
    assert running.running is True
    assert running.url == f"http://127.0.0.1:{NODE_PORT}"
    assert running.version == "3.5.0"
    assert running.health in {"green", "yellow"}
    assert running.pid is not None
    assert running.home == settings.home


def test_knn_plugin_listed(running: node.NodeStatus) -> None:
    plugins = get_json(f"{running.url}/_cat/plugins?format=json")

    assert isinstance(plugins, list)
    components = {entry["component"]: entry["version"] for entry in plugins}
    assert components.get("opensearch-knn") == "3.5.0.0"


def test_start_again_is_idempotent(
    running: node.NodeStatus, settings: node.NodeSettings
) -> None:
    lines: list[str] = []

    again = node.start(settings, log=lines.append)

    assert again.pid == running.pid
    assert again.health in {"green", "yellow"}
    assert len(lines) == 1
    assert lines[0].startswith("Node already running")


def test_start_other_version_on_busy_port(
    running: node.NodeStatus, settings: node.NodeSettings
) -> None:
    other = settings.model_copy(update={"version": "2.19.1"})

    with pytest.raises(
        NodeError, match=r"runs OpenSearch 3\.5\.0, not the requested 2\.19\.1"
    ):
        node.start(other)

    assert node.status(settings).pid == running.pid


def test_cli_start_names_hosts_for_other_port(
    running: node.NodeStatus,
    settings: node.NodeSettings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from os_mlt.cli import main

    monkeypatch.setenv("OS_MLT_NODE_HOME", str(settings.home))
    monkeypatch.delenv("OS_MLT_HOSTS", raising=False)

    status = main(["node", "start", "--port", str(NODE_PORT)])

    assert status == 0
    output = " ".join(capsys.readouterr().out.split())
    assert f"--hosts {running.url} or OS_MLT_HOSTS={running.url}" in output


def test_status_reports_running(
    running: node.NodeStatus, settings: node.NodeSettings
) -> None:
    result = node.status(settings)

    assert result.running is True
    assert result.pid == running.pid
    assert result.version == "3.5.0"
    assert result.health in {"green", "yellow"}


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the node to an account")
def test_node_runs_as_unprivileged_account(
    running: node.NodeStatus, settings: node.NodeSettings
) -> None:
    assert running.pid is not None
    status_lines = Path(f"/proc/{running.pid}/status").read_text(encoding="ascii")
    real_uid = next(
        line for line in status_lines.splitlines() if line.startswith("Uid:")
    )
    account = pwd.getpwnam(settings.user)

    assert int(real_uid.split()[1]) == account.pw_uid
    assert account.pw_uid != 0


def send(method: str, url: str, body: object | None = None) -> object:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def test_start_with_red_index_leaves_node_running(
    running: node.NodeStatus, settings: node.NodeSettings
) -> None:
    # An allocation filter that no node matches keeps the primary unassigned.
    red_index = "os-mlt-test-red"
    send(
        "PUT",
        f"{running.url}/{red_index}?wait_for_active_shards=0",
        {
            "settings": {
                "index.number_of_replicas": 0,
                "index.routing.allocation.require._name": "no-such-node",
            }
        },
    )
    node.stop(settings)
    try:
        with pytest.raises(NodeError) as caught:
            node.start(settings)

        message = str(caught.value)
        assert "health stayed red" in message
        assert f"index {red_index!r} is unassigned" in message
        assert f"os-mlt node stop --port {NODE_PORT}" in message
        assert node.status(settings).running is True
    finally:
        send("DELETE", f"{running.url}/{red_index}")
    assert node.start(settings).health in {"green", "yellow"}


def test_stop_stops_node(running: node.NodeStatus, settings: node.NodeSettings) -> None:
    assert running.pid is not None
    pid_file = running.home / "opensearch.pid"

    assert node.stop(settings) is True

    after = node.status(settings)
    assert after.running is False
    assert after.pid is None
    assert after.health is None
    assert not pid_file.exists()
    assert not Path(f"/proc/{running.pid}").exists()
    assert node.stop(settings) is False


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        """Keep request lines out of the test output."""


@pytest.fixture
def http_squatter(tmp_path: Path) -> Iterator[int]:
    """Serve files with http.server on the port the next test node wants."""
    handler = functools.partial(_QuietHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", HTTP_SQUATTER_PORT), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield HTTP_SQUATTER_PORT
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_port_taken_by_other_server(http_squatter: int, tmp_path: Path) -> None:
    settings = node.NodeSettings(http_port=http_squatter, home=tmp_path / "node")

    with pytest.raises(NodeError) as caught:
        node.start(settings)

    message = str(caught.value)
    assert f"Port {http_squatter}" in message
    assert "OS_MLT_NODE_HTTP_PORT" in message
    assert not (tmp_path / "node").exists()


def test_transport_port_taken(tmp_path: Path) -> None:
    settings = node.NodeSettings(
        http_port=TRANSPORT_TEST_HTTP_PORT,
        transport_port=TRANSPORT_SQUATTER_PORT,
        home=tmp_path / "node",
    )

    with (
        socket.create_server(("127.0.0.1", TRANSPORT_SQUATTER_PORT)),
        pytest.raises(NodeError) as caught,
    ):
        node.start(settings)

    message = str(caught.value)
    assert f"Transport port {TRANSPORT_SQUATTER_PORT}" in message
    assert "OS_MLT_NODE_TRANSPORT_PORT" in message


@pytest.fixture(scope="module")
def failing_home(node_home: Path) -> Path:
    """Return the home shared by the start-failure tests, so they install once."""
    return node_home / "failing"


def test_start_failure_shows_console_log(failing_home: Path) -> None:
    # The JVM rejects an initial heap of 1 KiB and exits during startup.
    settings = node.NodeSettings(
        http_port=FAILING_NODE_PORT, home=failing_home, heap="1k"
    )

    with pytest.raises(NodeError) as caught:
        node.start(settings)

    message = str(caught.value)
    assert "exited with code" in message
    assert str(failing_home / "logs" / "console.log") in message
    assert "heap" in message.lower()
    assert node.status(settings).running is False


def test_start_timeout_stops_process(failing_home: Path) -> None:
    settings = node.NodeSettings(
        http_port=FAILING_NODE_PORT, home=failing_home, startup_timeout_s=0.5
    )

    with pytest.raises(NodeError) as caught:
        node.start(settings)

    message = str(caught.value)
    assert "did not reach yellow health within" in message
    assert "The process was stopped" in message
    assert "OS_MLT_NODE_STARTUP_TIMEOUT_S" in message
    assert node.status(settings).running is False
    assert not (failing_home / "opensearch.pid").exists()
