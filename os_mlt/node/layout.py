"""Paths inside a node home, and the environment for OpenSearch's scripts."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from os_mlt.node.account import Account
from os_mlt.node.jdk import Jdk


@dataclass(frozen=True)
class NodeLayout:
    """Paths of one node's install, data, logs and pid file under its home.

    Attributes:
        home: Node home directory.
        version: OpenSearch version installed in it.
    """

    home: Path
    version: str

    @property
    def install_dir(self) -> Path:
        """Unpacked distribution, named like the zip's top folder."""
        return self.home / f"opensearch-{self.version}"

    @property
    def config_dir(self) -> Path:
        """Directory of opensearch.yml and jvm.options.d."""
        return self.install_dir / "config"

    @property
    def data_dir(self) -> Path:
        """Directory of `path.data`, outside the install so reinstalls keep indices."""
        return self.home / "data"

    @property
    def logs_dir(self) -> Path:
        """Directory of `path.logs` and of the console log."""
        return self.home / "logs"

    @property
    def console_log(self) -> Path:
        """File that receives the node's stdout and stderr."""
        return self.logs_dir / "console.log"

    @property
    def pid_file(self) -> Path:
        """File that OpenSearch writes its pid to and deletes on a clean exit."""
        return self.home / "opensearch.pid"


def command_environment(
    layout: NodeLayout, jdk: Jdk, account: Account | None = None
) -> dict[str, str]:
    """Return the environment for running the install's `bin/` scripts.

    The scripts find Java through `OPENSEARCH_JAVA_HOME` and the configuration
    through `OPENSEARCH_PATH_CONF`, so both are set to this install. When the
    scripts run as `account`, HOME, USER and LOGNAME name that account and its
    node home in place of the caller's.
    """
    environment = dict(os.environ)
    environment["OPENSEARCH_JAVA_HOME"] = str(jdk.home)
    environment["OPENSEARCH_PATH_CONF"] = str(layout.config_dir)
    if account is not None:
        environment["HOME"] = str(layout.home)
        environment["USER"] = account.name
        environment["LOGNAME"] = account.name
    return environment
