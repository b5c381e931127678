"""Optional plugins that os-mlt installs next to k-NN, and the order they need."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from os_mlt.errors import NodeError
from os_mlt.node.artifacts import fetch, plugin_artifact
from os_mlt.node.install import (
    KNN_PLUGIN,
    install_plugin,
    installed_plugin_version,
    remove_plugin,
)
from os_mlt.node.jdk import Jdk
from os_mlt.node.layout import NodeLayout
from os_mlt.node.steps import StepLog

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PluginSpec:
    """An optional plugin os-mlt can install.

    Attributes:
        name: The name `NodeSettings.plugins` and `--plugin` take.
        artifact_id: Maven artifact id under org.opensearch.plugin.
        plugin_name: The name in the plugin's descriptor, which is also its
            folder under `plugins/` and its name in `_cat/plugins`.
        requires: Other optional plugins installed with this one, first.
    """

    name: str
    artifact_id: str
    plugin_name: str
    requires: tuple[str, ...] = ()


# Each plugin comes after those it requires, so this order installs them and
# its reverse removes them. neural-search extends opensearch-knn, which is
# always installed. Its descriptor names no other plugin, but it calls
# ml-commons for model inference, and the OpenSearch distribution ships it
# with ml-commons, which extends job-scheduler. The node gets the same set.
PLUGINS: dict[str, PluginSpec] = {
    spec.name: spec
    for spec in (
        PluginSpec(
            "job-scheduler", "opensearch-job-scheduler", "opensearch-job-scheduler"
        ),
        PluginSpec(
            "ml-commons", "opensearch-ml-plugin", "opensearch-ml", ("job-scheduler",)
        ),
        PluginSpec(
            "neural-search",
            "neural-search",
            "opensearch-neural-search",
            ("ml-commons",),
        ),
    )
}


@dataclass(frozen=True)
class FetchedPlugin:
    """A plugin zip in the download cache, ready to install."""

    spec: PluginSpec
    version: str
    path: Path


def resolve_plugins(names: Iterable[str]) -> list[PluginSpec]:
    """Return the plugins named in `names` and the ones they require, in install order.

    Raises:
        ValueError: A name is not in `PLUGINS`.
    """
    ordered: list[PluginSpec] = []

    def add(name: str) -> None:
        spec = PLUGINS.get(name)
        if spec is None:
            raise ValueError(
                f"unknown plugin {name!r}; os-mlt can install {', '.join(sorted(PLUGINS))}"
            )
        if spec in ordered:
            return
        for required in spec.requires:
            add(required)
        ordered.append(spec)

    for name in names:
        add(name)
    return ordered


def fetch_plugins(
    names: Sequence[str],
    opensearch_version: str,
    *,
    repository_url: str,
    log: StepLog | None = None,
) -> list[FetchedPlugin]:
    """Download the zips of `names` and their requirements, in install order.

    Each plugin release is built for one OpenSearch release, so the version is
    `{opensearch_version}.0`, as for the k-NN plugin.

    Raises:
        NodeError: A zip could not be fetched, which names the plugin and
            the OpenSearch version.
    """
    version = f"{opensearch_version}.0"
    fetched = []
    for spec in resolve_plugins(names):
        artifact = plugin_artifact(spec.artifact_id, version)
        try:
            path = fetch(artifact, repository_url=repository_url, log=log)
        except NodeError as error:
            raise NodeError(
                f"Plugin {spec.name} {version} ({artifact.coordinates}) for OpenSearch "
                f"{opensearch_version} could not be fetched. Each plugin release is "
                "built for one OpenSearch release, so set OS_MLT_NODE_VERSION to a "
                f"version for which your Maven repository serves {spec.artifact_id}.\n"
                f"{error}"
            ) from error
        fetched.append(FetchedPlugin(spec, version, path))
    return fetched


def remove_stale_plugins(
    layout: NodeLayout,
    jdk: Jdk,
    *,
    requested: Sequence[FetchedPlugin],
    knn_version: str,
    log: StepLog | None = None,
) -> None:
    """Remove optional plugins that are no longer requested or have another version.

    Plugins are removed in reverse install order, because OpenSearch rejects
    the removal of a plugin that another installed plugin extends. When the k-NN
    plugin is about to be replaced by another version, every optional plugin
    goes, since neural-search extends it; they are installed again afterwards.
    """
    versions = {plugin.spec.plugin_name: plugin.version for plugin in requested}
    knn_changes = installed_plugin_version(layout, KNN_PLUGIN) not in (
        None,
        knn_version,
    )
    for spec in reversed(list(PLUGINS.values())):
        installed = installed_plugin_version(layout, spec.plugin_name)
        if installed is None:
            continue
        if knn_changes or versions.get(spec.plugin_name) != installed:
            remove_plugin(layout, spec.plugin_name, installed, jdk, log=log)


def install_plugins(
    layout: NodeLayout,
    jdk: Jdk,
    plugins: Sequence[FetchedPlugin],
    *,
    log: StepLog | None = None,
) -> None:
    """Install `plugins` in order, skipping each one already installed in its version.

    Raises:
        NodeError: `bin/opensearch-plugin` failed.
    """
    for plugin in plugins:
        install_plugin(
            layout,
            plugin.spec.plugin_name,
            plugin.path,
            plugin.version,
            jdk,
            log=log,
        )
