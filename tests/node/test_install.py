"""Tests of unpacking and configuration, on small zips made in tmp_path."""

from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path

import pytest

from os_mlt.errors import NodeError
from os_mlt.node import NodeSettings
from os_mlt.node.install import (
    CLUSTER_NAME,
    installed_plugin_version,
    unpack,
    write_config,
)
from os_mlt.node.layout import NodeLayout
from os_mlt.node.painless import has_painless_module


def make_distribution(
    path: Path, version: str, *, painless: bool = True, top: str | None = None
) -> Path:
    """Write a zip shaped like an OpenSearch distribution, with an executable script."""
    top = top if top is not None else f"opensearch-{version}"
    with zipfile.ZipFile(path, "w") as archive:
        script = zipfile.ZipInfo(f"{top}/bin/opensearch")
        script.external_attr = (stat.S_IFREG | 0o755) << 16
        archive.writestr(script, "#!/bin/sh\nexit 0\n")
        config = zipfile.ZipInfo(f"{top}/config/opensearch.yml")
        config.external_attr = (stat.S_IFREG | 0o644) << 16
        archive.writestr(config, "cluster.name: from-zip\n")
        if painless:
            archive.writestr(
                f"{top}/modules/lang-painless/plugin-descriptor.properties", ""
            )
    return path


def test_unpack_keeps_executable_bit(tmp_path: Path) -> None:
    archive = make_distribution(tmp_path / "opensearch-9.9.9.zip", "9.9.9")
    layout = NodeLayout(tmp_path / "home", "9.9.9")
    lines: list[str] = []

    unpack(archive, layout, log=lines.append)

    script = layout.install_dir / "bin" / "opensearch"
    assert os.access(script, os.X_OK)
    assert stat.S_IMODE((layout.config_dir / "opensearch.yml").stat().st_mode) == 0o644
    assert [p.name for p in layout.home.iterdir()] == ["opensearch-9.9.9"]
    assert lines == [f"Unpacking opensearch-9.9.9.zip into {layout.home}"]


def test_unpack_twice_skips_second(tmp_path: Path) -> None:
    archive = make_distribution(tmp_path / "opensearch-9.9.9.zip", "9.9.9")
    layout = NodeLayout(tmp_path / "home", "9.9.9")
    unpack(archive, layout)
    lines: list[str] = []

    unpack(archive, layout, log=lines.append)

    assert lines == []


def test_unpack_without_painless_module(tmp_path: Path) -> None:
    archive = make_distribution(tmp_path / "o.zip", "2.19.1", painless=False)
    layout = NodeLayout(tmp_path / "home", "2.19.1")

    unpack(archive, layout)

    assert (layout.install_dir / "bin" / "opensearch").is_file()
    assert not has_painless_module(layout)


def test_unpack_wrong_top_folder(tmp_path: Path) -> None:
    archive = make_distribution(tmp_path / "o.zip", "9.9.9", top="elasticsearch-9.9.9")
    layout = NodeLayout(tmp_path / "home", "9.9.9")

    with pytest.raises(NodeError, match=r"opensearch-9\.9\.9/bin/opensearch"):
        unpack(archive, layout)
    assert list(layout.home.iterdir()) == []


def test_unpack_rejects_parent_paths(tmp_path: Path) -> None:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as output:
        output.writestr("opensearch-9.9.9/../../escaped.txt", "x")
    layout = NodeLayout(tmp_path / "home", "9.9.9")

    with pytest.raises(NodeError, match="unsafe path"):
        unpack(archive, layout)
    assert not (tmp_path / "escaped.txt").exists()


def test_unpack_damaged_zip(tmp_path: Path) -> None:
    archive = tmp_path / "damaged.zip"
    archive.write_bytes(b"PK\x03\x04 not really a zip")
    layout = NodeLayout(tmp_path / "home", "9.9.9")

    with pytest.raises(NodeError, match="not a valid zip"):
        unpack(archive, layout)


def test_write_config_rewrites_whole_file(tmp_path: Path) -> None:
    layout = NodeLayout(tmp_path / "my home", "3.5.0")
    (layout.config_dir / "jvm.options.d").mkdir(parents=True)
    (layout.config_dir / "opensearch.yml").write_text("stale: true\n", encoding="utf-8")
    settings = NodeSettings(http_port=9276, heap="768m", home=layout.home)

    write_config(layout, settings)

    config = (layout.config_dir / "opensearch.yml").read_text(encoding="utf-8")
    assert "stale" not in config
    assert f"cluster.name: {CLUSTER_NAME}\n" in config
    assert "network.host: 127.0.0.1\n" in config
    assert "http.port: 9276\n" in config
    assert "transport.port: 9376\n" in config
    assert "discovery.type: single-node\n" in config
    assert f'path.data: "{layout.data_dir}"\n' in config
    assert "cluster.routing.allocation.disk.threshold_enabled: false\n" in config
    assert 'node.attr.knn_native_libraries: "false"\n' in config
    assert "plugins.security" not in config
    options = layout.config_dir / "jvm.options.d" / "os-mlt.options"
    assert options.read_text(encoding="utf-8") == "-Xms768m\n-Xmx768m\n"
    assert layout.data_dir.is_dir()
    assert layout.logs_dir.is_dir()


def test_installed_plugin_version(tmp_path: Path) -> None:
    layout = NodeLayout(tmp_path, "3.5.0")
    plugin = layout.install_dir / "plugins" / "opensearch-knn"
    plugin.mkdir(parents=True)
    (plugin / "plugin-descriptor.properties").write_text(
        "name=opensearch-knn\nversion=3.5.0.0\nopensearch.version=3.5.0\n",
        encoding="utf-8",
    )

    assert installed_plugin_version(layout, "opensearch-knn") == "3.5.0.0"
    assert installed_plugin_version(layout, "opensearch-ml") is None
