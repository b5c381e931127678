"""Launching, finding and stopping the OpenSearch process of a node home."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections import deque
from pathlib import Path

from os_mlt.errors import NodeError
from os_mlt.node.account import Account
from os_mlt.node.jdk import Jdk
from os_mlt.node.layout import NodeLayout, command_environment

logger = logging.getLogger(__name__)

_MAIN_CLASS = "org.opensearch.bootstrap.OpenSearch"
_POLL_INTERVAL_S = 0.2
_KILL_WAIT_S = 10.0

# Processes launched by this interpreter, by pid. Keeping the Popen objects
# lets `is_alive` reap an exited node instead of seeing a zombie as alive, and
# keeps Python from warning that a running subprocess was garbage-collected.
_launched: dict[int, subprocess.Popen[bytes]] = {}


def launch(
    layout: NodeLayout, jdk: Jdk, account: Account | None
) -> subprocess.Popen[bytes]:
    """Start `bin/opensearch` in the background, as `account` when one is given.

    The process gets its own session, so it keeps running after the caller
    exits, and its stdout and stderr go to `layout.console_log`, which is
    truncated first. OpenSearch writes its pid to `layout.pid_file`.
    """
    layout.pid_file.unlink(missing_ok=True)
    command = [
        str(layout.install_dir / "bin" / "opensearch"),
        "-p",
        str(layout.pid_file),
    ]
    environment = command_environment(layout, jdk, account)

    with layout.console_log.open("wb") as console:
        if account is not None:
            os.chown(layout.console_log, account.uid, account.gid)
        process = subprocess.Popen(
            command,
            cwd=layout.install_dir,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            user=account.uid if account is not None else None,
            group=account.gid if account is not None else None,
            # An empty list drops root's supplementary groups.
            extra_groups=[] if account is not None else None,
        )
    _launched[process.pid] = process
    return process


def read_pid(pid_file: Path) -> int | None:
    """Return the pid in `pid_file`, or None when the file is missing or invalid."""
    try:
        text = pid_file.read_text(encoding="ascii").strip()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def is_alive(pid: int) -> bool:
    """Return True when process `pid` exists and has not exited.

    A zombie, a process that has exited but was not reaped yet, counts as exited.
    """
    process = _launched.get(pid)
    if process is not None:
        if process.poll() is None:
            return True
        del _launched[pid]
        return False

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        # The process exists but belongs to another user.
        pass
    return _proc_state(pid) not in {"Z", "X"}


def _proc_state(pid: int) -> str | None:
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text(
            encoding="ascii", errors="replace"
        )
    except OSError:
        return None
    # The command name in brackets may contain spaces, so the state is the first
    # field after the last ')'.
    fields = stat_line.rpartition(")")[2].split()
    return fields[0] if fields else None


def is_node_process(pid: int, layout: NodeLayout) -> bool:
    """Return True when process `pid` is the OpenSearch JVM of `layout`'s install.

    The check reads `/proc/{pid}/cmdline`, which must run OpenSearch's main
    class with `-Dopensearch.path.home` set to this install. This distinguishes a
    live node from an unrelated process that reuses the pid of a stale pid file.
    Where `/proc` is unavailable, every live process counts as the node.
    """
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        # With /proc mounted, a missing entry means the process is gone.
        return not Path("/proc/self").exists()
    except PermissionError:
        return True
    arguments = raw.decode("utf-8", errors="replace").split("\0")
    homes = {
        f"-Dopensearch.path.home={layout.install_dir}",
        f"-Dopensearch.path.home={layout.install_dir.resolve()}",
    }
    return _MAIN_CLASS in arguments and any(argument in homes for argument in arguments)


def running_pid(layout: NodeLayout) -> int | None:
    """Return the pid of `layout`'s node when its pid file names a live node process."""
    pid = read_pid(layout.pid_file)
    if pid is None or not is_alive(pid) or not is_node_process(pid, layout):
        return None
    return pid


def terminate(pid: int, *, timeout_s: float) -> None:
    """Stop process `pid` with SIGTERM, and with SIGKILL if it outlives `timeout_s`.

    When `pid` leads a process group, the whole group gets the signals.

    Raises:
        NodeError: The process belongs to another user, or survived SIGKILL.
    """
    logger.info("Sending SIGTERM to OpenSearch process %d", pid)
    _signal(pid, signal.SIGTERM)
    if _wait_for_exit(pid, timeout_s):
        return

    logger.warning(
        "OpenSearch process %d still running after %.0f s; sending SIGKILL",
        pid,
        timeout_s,
    )
    _signal(pid, signal.SIGKILL)
    if not _wait_for_exit(pid, _KILL_WAIT_S):
        raise NodeError(
            f"OpenSearch process {pid} is still running {_KILL_WAIT_S:.0f} s after "
            "SIGKILL."
        )


def _signal(pid: int, signal_number: signal.Signals) -> None:
    # A node leads its own process group, so the signal also reaches a
    # launcher-stage helper JVM that bin/opensearch may still be running.
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal_number)
        else:
            os.kill(pid, signal_number)
    except ProcessLookupError:
        pass
    except PermissionError as error:
        raise NodeError(
            f"Not allowed to signal OpenSearch process {pid}. Stop the node as root or "
            "as the account that runs it."
        ) from error


def _wait_for_exit(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while is_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_INTERVAL_S)
    return True


def read_tail(path: Path, lines: int = 30) -> str:
    """Return the last `lines` lines of the text file `path`, or "" if it is missing."""
    try:
        with path.open(encoding="utf-8", errors="replace") as file:
            return "".join(deque(file, maxlen=lines))
    except FileNotFoundError:
        return ""
