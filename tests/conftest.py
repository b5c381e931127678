"""Fixtures around a real OpenSearch node with the k-NN plugin.

The node comes from, in order:
- `OS_MLT_TEST_HOSTS`: an already running cluster, used as it is;
- `OS_MLT_TEST_DOCKER=1`: a container started with testcontainers;
- otherwise a local node started by `os_mlt.node` on port 9250 (or
  `OS_MLT_TEST_PORT`), stopped at the end unless it was already running.

Tests create indices named `os-mlt-test-<uuid>` and delete them afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from opensearchpy import OpenSearch

from os_mlt import Encoder, Settings
from os_mlt.client import make_client
from os_mlt.node import NodeSettings

CORPORA = Path(__file__).resolve().parents[1].parent / "shared" / "corpora"
DEBIAN_CORPUS = CORPORA / "debian-packages.jsonl.gz"

# NOTE: the Docker path is written for users with a Docker engine and is not
# exercised where no engine runs; the local node path is.
DOCKER_IMAGE = "opensearchproject/opensearch:3.5.0"


@pytest.fixture(scope="session", autouse=True)
def _empty_working_directory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[None]:
    """Keep a settings file of the caller's out of every test, module fixtures too.

    `Settings` reads `os-mlt.json` in the working directory or the file named
    by OS_MLT_CONFIG_FILE. Tests of that file change into their own folder.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path_factory.mktemp("working-directory"))
        patch.delenv("OS_MLT_CONFIG_FILE", raising=False)
        yield


@pytest.fixture(autouse=True)
def _clear_os_mlt_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the caller's OS_MLT_* variables out of the tests' settings."""
    for name in list(os.environ):
        if name.startswith("OS_MLT_") and not name.startswith(
            ("OS_MLT_TEST_", "OS_MLT_NODE_")
        ):
            monkeypatch.delenv(name)


def _docker_url() -> Iterator[str]:
    from testcontainers.opensearch import OpenSearchContainer

    with OpenSearchContainer(DOCKER_IMAGE, security_enabled=False) as container:
        config = container.get_config()
        yield f"http://{config['host']}:{config['port']}"


def local_node_url(settings: NodeSettings) -> Iterator[str]:
    """Start the local node of `settings`, yield its URL, and stop it unless it already ran."""
    from os_mlt import node

    was_running = node.status(settings).running
    status = node.start(settings)
    try:
        yield status.url
    finally:
        if not was_running:
            node.stop(settings)


def _local_node_url() -> Iterator[str]:
    settings = NodeSettings(http_port=int(os.environ.get("OS_MLT_TEST_PORT", "9250")))
    yield from local_node_url(settings)


@pytest.fixture(scope="session")
def opensearch_url() -> Iterator[str]:
    hosts = os.environ.get("OS_MLT_TEST_HOSTS")
    if hosts:
        yield hosts.split(",")[0]
    elif os.environ.get("OS_MLT_TEST_DOCKER") == "1":
        yield from _docker_url()
    else:
        yield from _local_node_url()


@pytest.fixture(scope="session")
def client(opensearch_url: str) -> OpenSearch:
    return make_client(Settings(hosts=[opensearch_url]))


@pytest.fixture(scope="session")
def encoder() -> Encoder:
    """The default model, loaded once per session."""
    return Encoder()


@pytest.fixture
def index_name(client: OpenSearch) -> Iterator[str]:
    """A unique index or alias name; every index starting with it is deleted afterwards."""
    name = f"os-mlt-test-{uuid.uuid4().hex[:12]}"
    yield name
    client.indices.delete(
        index=f"{name}*", ignore_unavailable=True, expand_wildcards="all"
    )


@pytest.fixture
def make_settings(opensearch_url: str, index_name: str) -> Callable[..., Settings]:
    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {"hosts": [opensearch_url], "index": index_name}
        values.update(overrides)
        return Settings(**values)

    return build


def create_index(
    client: OpenSearch,
    name: str,
    documents: dict[str, dict[str, Any]],
    *,
    knn: bool = True,
    mappings: dict[str, Any] | None = None,
    routing: dict[str, str] | None = None,
) -> None:
    """Create an index with one shard and index `documents` (id -> source) into it."""
    body: dict[str, Any] = {
        "settings": {"index": {"number_of_shards": 1, "number_of_replicas": 0}},
        "mappings": mappings
        or {
            "properties": {
                "title": {"type": "text"},
                "body": {"type": "text"},
                "section": {"type": "keyword"},
                "tags": {"type": "keyword"},
                "size": {"type": "integer"},
                "released": {"type": "date"},
            }
        },
    }
    if knn:
        body["settings"]["index"]["knn"] = True
    client.indices.create(index=name, body=body)
    for doc_id, source in documents.items():
        extra = {"routing": routing[doc_id]} if routing and doc_id in routing else {}
        client.index(index=name, id=doc_id, body=source, **extra)
    client.indices.refresh(index=name)
