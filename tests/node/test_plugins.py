"""Tests of the optional plugin catalog and of the assembled lang-painless module.

The plugins themselves are installed and listed on a real node in
`tests/test_server_hybrid.py`.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from pydantic import ValidationError

from os_mlt.errors import NodeError
from os_mlt.node import NodeSettings
from os_mlt.node.layout import NodeLayout
from os_mlt.node.painless import (
    compile_dependencies,
    has_painless_module,
    install_painless_module,
)
from os_mlt.node.plugins import resolve_plugins

POM = """\
<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>org.opensearch.plugin</groupId>
  <artifactId>lang-painless</artifactId>
  <version>9.9.9</version>
  <dependencies>
    <dependency>
      <groupId>org.antlr</groupId>
      <artifactId>antlr4-runtime</artifactId>
      <version>4.13.1</version>
      <scope>compile</scope>
    </dependency>
    <dependency>
      <groupId>org.opensearch.plugin</groupId>
      <artifactId>opensearch-scripting-painless-spi</artifactId>
      <version>9.9.9</version>
    </dependency>
    <dependency>
      <groupId>junit</groupId>
      <artifactId>junit</artifactId>
      <version>4.13.2</version>
      <scope>test</scope>
    </dependency>
    <dependency>
      <groupId>org.example</groupId>
      <artifactId>extra</artifactId>
      <version>1.0</version>
      <optional>true</optional>
    </dependency>
  </dependencies>
</project>
"""


def test_neural_search_requirements_come_first() -> None:
    names = [spec.name for spec in resolve_plugins(["neural-search"])]

    assert names == ["job-scheduler", "ml-commons", "neural-search"]


def test_requirements_listed_once() -> None:
    specs = resolve_plugins(["ml-commons", "neural-search", "job-scheduler"])

    assert [spec.plugin_name for spec in specs] == [
        "opensearch-job-scheduler",
        "opensearch-ml",
        "opensearch-neural-search",
    ]


def test_unknown_plugin_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown plugin 'sql'") as caught:
        resolve_plugins(["sql"])

    assert "job-scheduler, ml-commons, neural-search" in str(caught.value)


def test_settings_plugins_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OS_MLT_NODE_PLUGINS", '["neural-search", "neural-search"]')

    assert NodeSettings().plugins == ["neural-search"]


def test_settings_reject_unknown_plugin() -> None:
    with pytest.raises(ValidationError, match="unknown plugin 'knn'"):
        NodeSettings(plugins=["knn"])


def test_default_settings_have_no_plugins() -> None:
    assert NodeSettings().plugins == []


def test_compile_dependencies_skip_test_and_optional(tmp_path: Path) -> None:
    pom = tmp_path / "lang-painless-9.9.9.pom"
    pom.write_text(POM, encoding="utf-8")

    artifacts = compile_dependencies(pom)

    assert [artifact.coordinates for artifact in artifacts] == [
        "org.antlr:antlr4-runtime:4.13.1:jar",
        "org.opensearch.plugin:opensearch-scripting-painless-spi:9.9.9:jar",
    ]


def test_compile_dependencies_reject_property_versions(tmp_path: Path) -> None:
    pom = tmp_path / "lang-painless-9.9.9.pom"
    pom.write_text(POM.replace("4.13.1", "${antlr.version}"), encoding="utf-8")

    with pytest.raises(NodeError, match=r"org\.antlr:antlr4-runtime"):
        compile_dependencies(pom)


def _jar(path: Path, *entries: str) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for entry in entries or ("META-INF/MANIFEST.MF",):
            archive.writestr(entry, "")


def _cache_for_painless(cache: Path, plugin_class: str) -> None:
    """Fill a download cache with the files the module needs, so nothing is fetched."""
    cache.mkdir()
    (cache / "lang-painless-9.9.9.pom").write_text(POM, encoding="utf-8")
    _jar(cache / "lang-painless-9.9.9.jar", plugin_class)
    _jar(cache / "antlr4-runtime-4.13.1.jar")
    _jar(cache / "opensearch-scripting-painless-spi-9.9.9.jar")


def test_painless_module_assembled_from_cache(tmp_path: Path) -> None:
    layout = NodeLayout(tmp_path / "home", "9.9.9")
    layout.install_dir.mkdir(parents=True)
    cache = tmp_path / "cache"
    _cache_for_painless(cache, "org/opensearch/painless/PainlessPlugin.class")
    lines: list[str] = []

    install_painless_module(
        layout,
        repository_url="http://127.0.0.1:9/unused",
        directory=cache,
        log=lines.append,
    )

    module = layout.install_dir / "modules" / "lang-painless"
    assert has_painless_module(layout)
    assert sorted(path.name for path in module.iterdir()) == [
        "antlr4-runtime-4.13.1.jar",
        "lang-painless-9.9.9.jar",
        "opensearch-scripting-painless-spi-9.9.9.jar",
        "plugin-descriptor.properties",
        "plugin-security.policy",
    ]
    descriptor = (module / "plugin-descriptor.properties").read_text(encoding="utf-8")
    assert "classname=org.opensearch.painless.PainlessPlugin\n" in descriptor
    assert "opensearch.version=9.9.9\n" in descriptor
    assert "java.version=21\n" in descriptor
    assert "name=lang-painless\n" in descriptor
    policy = (module / "plugin-security.policy").read_text(encoding="utf-8")
    assert '"createClassLoader"' in policy
    assert sorted(path.name for path in layout.home.iterdir()) == ["opensearch-9.9.9"]
    assert lines == ["Assembling the lang-painless module 9.9.9 from Maven"]


def test_painless_module_kept_when_present(tmp_path: Path) -> None:
    layout = NodeLayout(tmp_path / "home", "2.19.1")
    module = layout.install_dir / "modules" / "lang-painless"
    module.mkdir(parents=True)
    (module / "plugin-descriptor.properties").write_text("", encoding="utf-8")
    lines: list[str] = []

    install_painless_module(
        layout, repository_url="http://127.0.0.1:9/unused", log=lines.append
    )

    assert lines == []
    assert [path.name for path in module.iterdir()] == ["plugin-descriptor.properties"]


def test_painless_jar_without_plugin_class_raises(tmp_path: Path) -> None:
    layout = NodeLayout(tmp_path / "home", "9.9.9")
    layout.install_dir.mkdir(parents=True)
    cache = tmp_path / "cache"
    _cache_for_painless(cache, "org/opensearch/painless/Other.class")

    with pytest.raises(NodeError, match="none of the plugin classes"):
        install_painless_module(
            layout, repository_url="http://127.0.0.1:9/unused", directory=cache
        )

    assert not has_painless_module(layout)
