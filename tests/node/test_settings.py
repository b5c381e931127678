"""Tests of NodeSettings defaults, environment variables and validation."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from os_mlt.node import NodeSettings


def test_defaults_derived_from_version_and_port() -> None:
    settings = NodeSettings(http_port=9271)

    assert settings.resolved_knn_version == "3.5.0.0"
    assert settings.resolved_transport_port == 9371
    assert settings.url == "http://127.0.0.1:9271"


def test_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OS_MLT_NODE_HTTP_PORT", "9275")
    monkeypatch.setenv("OS_MLT_NODE_HEAP", "512m")
    monkeypatch.setenv("OS_MLT_NODE_KNN_VERSION", "3.5.0.1")

    settings = NodeSettings()

    assert settings.http_port == 9275
    assert settings.heap == "512m"
    assert settings.resolved_knn_version == "3.5.0.1"


def test_default_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))

    home = NodeSettings(http_port=9271).resolved_home

    if os.geteuid() == 0:
        assert home == Path("/var/lib/os-mlt/nodes/3.5.0-9271")
    else:
        assert home == tmp_path / "os-mlt" / "nodes" / "3.5.0-9271"


def test_explicit_home_is_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    assert NodeSettings(home=Path("node")).resolved_home == tmp_path / "node"


@pytest.mark.parametrize("heap", ["512m", "2g", "1G", "786432k"])
def test_valid_heap(heap: str) -> None:
    assert NodeSettings(heap=heap).heap == heap


@pytest.mark.parametrize("heap", ["1gb", "g", "0m", "-1g", "1.5g", ""])
def test_invalid_heap(heap: str) -> None:
    with pytest.raises(ValidationError, match="invalid heap size"):
        NodeSettings(heap=heap)


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"http_port": 0}, id="http-port-zero"),
        pytest.param({"http_port": 70000}, id="http-port-too-high"),
        pytest.param({"http_port": 9200, "transport_port": 9200}, id="same-ports"),
        pytest.param({"http_port": 65500}, id="no-room-for-transport"),
        pytest.param({"version": "latest"}, id="version-word"),
        pytest.param({"knn_version": "3.5"}, id="short-knn-version"),
        pytest.param({"maven_repository_url": "ftp://example"}, id="ftp-url"),
        pytest.param({"startup_timeout_s": 0}, id="zero-timeout"),
        pytest.param({"user": "Root Admin"}, id="bad-account"),
    ],
)
def test_invalid_settings(changes: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        NodeSettings.model_validate(changes)


def test_repository_url_trailing_slash_removed() -> None:
    settings = NodeSettings(maven_repository_url="https://mirror.example/maven2/")

    assert settings.maven_repository_url == "https://mirror.example/maven2"


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        pytest.param(
            "OS_MLT_NODE_HTTP_PORT",
            "abc",
            "error: invalid http_port value 'abc' from OS_MLT_NODE_HTTP_PORT: "
            "Input should be a valid integer",
            id="integer",
        ),
        pytest.param(
            "OS_MLT_NODE_PLUGINS",
            "neural-search",
            "error: invalid plugins from OS_MLT_NODE_PLUGINS: 'neural-search' is "
            "not valid JSON",
            id="json-list",
        ),
        pytest.param(
            "OS_MLT_NODE_EXTRA_CONFIG",
            "a=1",
            "error: invalid extra_config from OS_MLT_NODE_EXTRA_CONFIG: 'a=1' is "
            "not valid JSON",
            id="json-object",
        ),
    ],
)
def test_cli_node_error_names_value_and_variable(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    variable: str,
    value: str,
    expected: str,
) -> None:
    from os_mlt.cli import main

    monkeypatch.setenv(variable, value)
    assert main(["node", "status"]) == 2
    assert expected in " ".join(capsys.readouterr().err.split())


def test_plugins_from_json_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OS_MLT_NODE_PLUGINS", '["neural-search"]')
    monkeypatch.setenv("OS_MLT_NODE_EXTRA_CONFIG", '{"node.attr.zone": "a"}')

    settings = NodeSettings()

    assert settings.plugins == ["neural-search"]
    assert settings.extra_config == {"node.attr.zone": "a"}
