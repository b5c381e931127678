"""Unprivileged account that runs the node when os-mlt itself runs as root.

OpenSearch refuses to start as root, so a root caller creates a system account
and hands the node's files and process to it.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from os_mlt.errors import ConfigurationError, NodeError
from os_mlt.node.steps import StepLog, report

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Account:
    """A Unix account and its primary group."""

    name: str
    uid: int
    gid: int
    home: Path


def running_as_root() -> bool:
    """Return True when the effective user is root."""
    return os.geteuid() == 0


def ensure_account(name: str, *, log: StepLog | None = None) -> Account:
    """Return the account `name`, creating it as a system account if it is missing.

    The account gets a group of the same name, no home directory and no login
    shell. Creating it needs root.

    Raises:
        NodeError: `useradd` is missing or failed.
    """
    try:
        return _lookup(name)
    except KeyError:
        pass

    useradd = shutil.which("useradd")
    if useradd is None:
        raise NodeError(
            f"Account {name!r} does not exist and the useradd command is not on "
            "PATH. Create the account by hand or set OS_MLT_NODE_USER to an "
            "existing account."
        )
    command = [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin"]
    if _group_exists(name):
        command += ["--gid", name]
    else:
        command += ["--user-group"]
    command.append(name)

    report(logger, log, f"Creating system account {name}")
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise NodeError(
            f"Creating account {name!r} with useradd failed (exit "
            f"{result.returncode}): {result.stderr.strip()}. Create it by hand or set "
            "OS_MLT_NODE_USER to an existing account."
        )
    return _lookup(name)


def _lookup(name: str) -> Account:
    entry = pwd.getpwnam(name)
    return Account(
        name=entry.pw_name, uid=entry.pw_uid, gid=entry.pw_gid, home=Path(entry.pw_dir)
    )


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def untraversable_parent(path: Path, account: Account) -> Path | None:
    """Return the first directory from `/` down to `path` that `account` cannot enter.

    A directory can be entered when its execute bit is set for the account as
    owner, as member of the owning group (primary group only) or as other.
    Parts of `path` that do not exist yet are skipped, because os-mlt creates
    them with mode 0755. Returns None when every directory can be entered.
    """
    resolved = path.resolve()
    for directory in [*reversed(resolved.parents), resolved]:
        try:
            info = directory.stat()
        except FileNotFoundError:
            break
        if not _can_enter(info, account):
            return directory
    return None


def _can_enter(info: os.stat_result, account: Account) -> bool:
    if info.st_uid == account.uid:
        return bool(info.st_mode & stat.S_IXUSR)
    if info.st_gid == account.gid:
        return bool(info.st_mode & stat.S_IXGRP)
    return bool(info.st_mode & stat.S_IXOTH)


def check_home_reachable(home: Path, account: Account) -> None:
    """Raise ConfigurationError when `account` cannot reach the node home `home`.

    Raises:
        ConfigurationError: a directory above `home` lacks the execute bit for
            the account, as `/root` and pytest's `/tmp/pytest-of-root` do.
    """
    blocked = untraversable_parent(home, account)
    if blocked is not None:
        raise ConfigurationError(
            f"Node home {home} is not reachable by account {account.name!r}, because "
            f"{blocked} is not searchable (execute bit) for that account. Set "
            "OS_MLT_NODE_HOME to a directory under a world-searchable path such as "
            "/var/lib/os-mlt/nodes."
        )


def chown_tree(root: Path, account: Account) -> None:
    """Give `root` and everything below it to `account`, without following symlinks."""
    _chown(root, account)
    for directory, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            _chown(Path(directory, name), account)


def _chown(path: Path, account: Account) -> None:
    info = path.lstat()
    if info.st_uid != account.uid or info.st_gid != account.gid:
        os.lchown(path, account.uid, account.gid)
