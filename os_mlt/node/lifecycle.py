"""Start, stop and status of the local node, built from the other node modules."""

from __future__ import annotations

import logging
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from os_mlt.errors import NodeError
from os_mlt.node import account as accounts
from os_mlt.node.artifacts import fetch, knn_artifact, opensearch_artifact
from os_mlt.node.install import CLUSTER_NAME, install_knn, unpack, write_config
from os_mlt.node.jdk import find_jdk
from os_mlt.node.layout import NodeLayout
from os_mlt.node.painless import install_painless_module
from os_mlt.node.plugins import (
    fetch_plugins,
    install_plugins,
    remove_stale_plugins,
    resolve_plugins,
)
from os_mlt.node.probe import get_json, port_in_use
from os_mlt.node.process import (
    is_alive,
    launch,
    read_pid,
    read_tail,
    running_pid,
    terminate,
)
from os_mlt.node.settings import NodeSettings
from os_mlt.node.steps import StepLog, report

logger = logging.getLogger(__name__)

_HEALTHY = ("green", "yellow")
# How long a starting node may stay red with no shard recovering before the
# start fails: a primary that cannot be assigned keeps it red for good.
_RED_GRACE_S = 30.0
_STATUS_TIMEOUT_S = 5.0
_TAIL_LINES = 30


@dataclass(frozen=True)
class NodeStatus:
    """State of a local node.

    Attributes:
        running: True when the node's process is alive or an os-mlt node
            responds on its HTTP port.
        url: Base URL of the node's REST API.
        pid: Process id from the pid file, or None when no live node process
            is recorded there.
        version: OpenSearch version reported by the node, or None when it does
            not respond.
        health: Cluster health ("green", "yellow" or "red"), or None when the
            node does not respond.
        home: Node home directory.
    """

    running: bool
    url: str
    pid: int | None
    version: str | None
    health: str | None
    home: Path


def status(settings: NodeSettings | None = None) -> NodeStatus:
    """Return the state of the node described by `settings`, without changing it."""
    settings = settings if settings is not None else NodeSettings()
    layout = NodeLayout(settings.resolved_home, settings.version)
    pid = running_pid(layout)

    info = _os_mlt_node_info(settings)
    version = _version_number(info) if info is not None else None
    health = _cluster_health(settings) if info is not None else None
    running = info is not None or pid is not None
    return NodeStatus(
        running=running,
        url=settings.url,
        pid=pid,
        version=version,
        health=health,
        home=layout.home,
    )


def start(
    settings: NodeSettings | None = None, *, log: StepLog | None = None
) -> NodeStatus:
    """Install if needed and start a single-node OpenSearch with the k-NN plugin.

    Blocks until the cluster health is yellow or green. When the node is
    already running and healthy, returns its status without changing anything.
    The optional plugins of `settings.plugins` are installed after k-NN. An
    integ-test-zip without the lang-painless module, which k-NN extends, gets
    one assembled from Maven jars.
    Downloads go to `$XDG_CACHE_HOME/os-mlt/downloads`, and the install, data
    and logs to `settings.home`. As root, the node runs as the unprivileged
    account `settings.user`, which is created if it is missing.

    Args:
        settings: Node settings. None means read them from `OS_MLT_NODE_*`.
        log: Callback that receives one short line per step.

    Raises:
        NodeError: A port is taken by another program, a download or the
            install failed, the node exited or stayed unhealthy for
            `settings.startup_timeout_s`, or a node that is already running
            on the port runs another version or lacks a plugin of `settings.plugins`.
        ConfigurationError: No suitable JDK was found, or the account cannot
            reach the node home.
    """
    settings = settings if settings is not None else NodeSettings()
    layout = NodeLayout(settings.resolved_home, settings.version)

    current = status(settings)
    if current.version is not None and current.version != settings.version:
        raise NodeError(
            f"The node at {current.url} runs OpenSearch {current.version}, not the "
            f"requested {settings.version}. Stop it with `os-mlt node stop --port "
            f"{settings.http_port} --version {current.version}`, or start "
            f"{settings.version} on another port (--port)."
        )
    if current.running and current.health in _HEALTHY:
        _check_running_plugins(settings)
        report(
            logger,
            log,
            f"Node already running at {current.url} (health {current.health})",
        )
        return current

    if current.running:
        # Either this home's process is still starting, or an os-mlt node from
        # another home serves the port. Both only need time.
        report(logger, log, f"Node at {current.url} is running but not healthy yet")
        _wait_for_health(settings, layout, pid=current.pid, process=None, log=log)
        _check_running_plugins(settings)
        return status(settings)
    _check_ports_free(settings)

    account = None
    if accounts.running_as_root():
        account = accounts.ensure_account(settings.user, log=log)
        _make_home(layout.home)
        accounts.check_home_reachable(layout.home, account)
    jdk = find_jdk(
        settings.version, java_home=settings.java_home, account=account, log=log
    )

    opensearch_zip = fetch(
        opensearch_artifact(settings.version),
        repository_url=settings.maven_repository_url,
        log=log,
    )
    knn_zip = fetch(
        knn_artifact(settings.resolved_knn_version),
        repository_url=settings.maven_repository_url,
        log=log,
    )
    plugins = fetch_plugins(
        settings.plugins,
        settings.version,
        repository_url=settings.maven_repository_url,
        log=log,
    )

    _make_home(layout.home)
    unpack(opensearch_zip, layout, log=log)
    install_painless_module(
        layout, repository_url=settings.maven_repository_url, log=log
    )
    remove_stale_plugins(
        layout,
        jdk,
        requested=plugins,
        knn_version=settings.resolved_knn_version,
        log=log,
    )
    install_knn(layout, knn_zip, settings.resolved_knn_version, jdk, log=log)
    install_plugins(layout, jdk, plugins, log=log)
    write_config(layout, settings)
    if account is not None:
        report(logger, log, f"Giving {layout.home} to account {account.name}")
        accounts.chown_tree(layout.home, account)

    report(logger, log, f"Starting OpenSearch {settings.version} on {settings.url}")
    process = launch(layout, jdk, account)
    _wait_for_health(settings, layout, pid=process.pid, process=process, log=log)
    result = status(settings)
    report(
        logger,
        log,
        f"Node running at {result.url} (pid {result.pid}, health {result.health})",
    )
    return result


def stop(settings: NodeSettings | None = None, *, timeout_s: float = 60) -> bool:
    """Stop the node of `settings.home` and remove its pid file.

    Sends SIGTERM, then SIGKILL if the node is still running after
    `timeout_s` seconds. A pid file whose process is gone, or now belongs to
    another program, is removed without signalling anything.

    Returns:
        True when a node was stopped, False when none was running.

    Raises:
        NodeError: The caller may not signal the node's process, or it
            survived SIGKILL.
    """
    settings = settings if settings is not None else NodeSettings()
    layout = NodeLayout(settings.resolved_home, settings.version)

    pid = read_pid(layout.pid_file)
    if pid is None:
        logger.info("No node to stop: %s does not exist", layout.pid_file)
        return False
    if running_pid(layout) is None:
        logger.info(
            "Removing stale pid file %s: process %d is not this node",
            layout.pid_file,
            pid,
        )
        layout.pid_file.unlink(missing_ok=True)
        return False

    terminate(pid, timeout_s=timeout_s)
    layout.pid_file.unlink(missing_ok=True)
    logger.info("Stopped OpenSearch process %d of %s", pid, layout.home)
    return True


def _make_home(home: Path) -> None:
    # The account that runs the node must be able to enter every new parent,
    # whatever the umask, so each missing directory is created with mode 0755.
    for directory in [*reversed(home.parents), home]:
        if not directory.exists():
            directory.mkdir(exist_ok=True)
            directory.chmod(0o755)


def _os_mlt_node_info(settings: NodeSettings) -> dict[str, object] | None:
    """Return the body of `GET /` when an os-mlt node responds on the HTTP port."""
    reply = get_json(f"{settings.url}/", timeout_s=_STATUS_TIMEOUT_S)
    if (
        reply is None
        or reply.body is None
        or reply.body.get("cluster_name") != CLUSTER_NAME
    ):
        return None
    return reply.body


def _check_running_plugins(settings: NodeSettings) -> None:
    """Raise NodeError when the running node lacks a plugin of `settings.plugins`."""
    expected = [spec.plugin_name for spec in resolve_plugins(settings.plugins)]
    if not expected:
        return
    reply = get_json(f"{settings.url}/_nodes/plugins", timeout_s=_STATUS_TIMEOUT_S)
    nodes = reply.body.get("nodes") if reply is not None and reply.body else None
    installed: set[str] = set()
    if isinstance(nodes, dict):
        for info in nodes.values():
            if not isinstance(info, dict):
                continue
            for plugin in info.get("plugins", []):
                installed.add(str(plugin.get("name")))
    missing = [name for name in expected if name not in installed]
    if missing:
        raise NodeError(
            f"The node at {settings.url} is running without the plugins "
            f"{', '.join(missing)}, which the settings request. Stop it with "
            f"`os-mlt node stop --port {settings.http_port}` and start it again to "
            "install them."
        )


def _version_number(info: dict[str, object]) -> str | None:
    version = info.get("version")
    number = version.get("number") if isinstance(version, dict) else None
    return number if isinstance(number, str) else None


def _cluster_health(settings: NodeSettings, query: str = "") -> str | None:
    reply = get_json(
        f"{settings.url}/_cluster/health{query}", timeout_s=_STATUS_TIMEOUT_S
    )
    if reply is None or reply.body is None:
        return None
    health = reply.body.get("status")
    return health if isinstance(health, str) else None


def _check_ports_free(settings: NodeSettings) -> None:
    if port_in_use(settings.http_port):
        reply = get_json(f"{settings.url}/", timeout_s=_STATUS_TIMEOUT_S)
        found = "an HTTP server" if reply is not None else "a program"
        raise NodeError(
            f"Port {settings.http_port} on 127.0.0.1 is already used by {found} that "
            "is not an os-mlt node. Stop it, or set OS_MLT_NODE_HTTP_PORT to a free "
            "port."
        )
    if port_in_use(settings.resolved_transport_port):
        raise NodeError(
            f"Transport port {settings.resolved_transport_port} on 127.0.0.1 is "
            "already in use. Stop the program that uses it, or set "
            "OS_MLT_NODE_TRANSPORT_PORT to a free port."
        )


def _wait_for_health(
    settings: NodeSettings,
    layout: NodeLayout,
    *,
    pid: int | None,
    process: subprocess.Popen[bytes] | None,
    log: StepLog | None,
) -> None:
    """Poll the cluster health until it is yellow or green.

    Raises:
        NodeError: The process exited, or `settings.startup_timeout_s` passed,
            and a process launched by this call is stopped before raising. Or
            the cluster stayed red with no shard recovering, and the node is
            left running for inspection.
    """
    report(logger, log, "Waiting for cluster health")
    deadline = time.monotonic() + settings.startup_timeout_s
    red_since: float | None = None
    while True:
        if process is not None and process.poll() is not None:
            raise NodeError(
                f"OpenSearch exited with code {process.returncode} during startup.\n"
                f"{_console_excerpt(layout)}"
            )
        if process is None and pid is not None and not is_alive(pid):
            raise NodeError(
                f"OpenSearch process {pid} exited during startup.\n"
                f"{_console_excerpt(layout)}"
            )

        # The server delays the response up to 1 s while the cluster is not yellow.
        health = _cluster_health(settings, "?wait_for_status=yellow&timeout=1s")
        if health in _HEALTHY:
            return
        if health == "red" and not _shards_initializing(settings):
            red_since = red_since if red_since is not None else time.monotonic()
            if time.monotonic() - red_since >= _RED_GRACE_S:
                raise NodeError(_red_message(settings))
        else:
            red_since = None

        if time.monotonic() >= deadline:
            stopped = ""
            if process is not None:
                terminate(process.pid, timeout_s=30)
                layout.pid_file.unlink(missing_ok=True)
                stopped = "The process was stopped. "
            raise NodeError(
                f"OpenSearch on {settings.url} did not reach yellow health within "
                f"{settings.startup_timeout_s:g} s (last health: {health}). "
                f"{stopped}Raise OS_MLT_NODE_STARTUP_TIMEOUT_S if the machine is "
                "slow.\n"
                f"{_console_excerpt(layout)}"
            )
        if health is None:
            time.sleep(0.5)


def _shards_initializing(settings: NodeSettings) -> bool:
    """Return whether shards are still recovering, as after an unclean stop."""
    reply = get_json(f"{settings.url}/_cluster/health", timeout_s=_STATUS_TIMEOUT_S)
    if reply is None or reply.body is None:
        return True
    count = reply.body.get("initializing_shards")
    return not isinstance(count, int) or count > 0


def _red_message(settings: NodeSettings) -> str:
    """Describe a node that runs but stays red, naming the first unassigned shard."""
    explain = get_json(
        f"{settings.url}/_cluster/allocation/explain", timeout_s=_STATUS_TIMEOUT_S
    )
    shard = ""
    if explain is not None and isinstance(explain.body, dict):
        body = explain.body
        unassigned = body.get("unassigned_info")
        reason = (
            unassigned.get("reason", "unknown reason")
            if isinstance(unassigned, dict)
            else "unknown reason"
        )
        explanation = body.get("allocate_explanation")
        shard = (
            f" Shard {body.get('shard')} of index {body.get('index')!r} is "
            f"unassigned ({reason})" + (f": {explanation}." if explanation else ".")
        )
    return (
        f"OpenSearch on {settings.url} runs, but its health stayed red for "
        f"{_RED_GRACE_S:g} s: a primary shard cannot be assigned.{shard} The node is "
        f"left running so you can inspect it: GET _cluster/allocation/explain gives "
        "the cause, and deleting or restoring the red index (GET _cat/indices?health=red "
        f"lists them) makes it yellow. Stop it with os-mlt node stop --port "
        f"{settings.http_port}."
    )


def _console_excerpt(layout: NodeLayout) -> str:
    tail = read_tail(layout.console_log, _TAIL_LINES)
    if not tail:
        return f"{layout.console_log} is empty."
    return f"Last lines of {layout.console_log}:\n{tail}"
