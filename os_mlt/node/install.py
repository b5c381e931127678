"""Unpacking of OpenSearch, installation of plugins and node configuration."""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import subprocess
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from os_mlt.errors import NodeError
from os_mlt.node.jdk import Jdk
from os_mlt.node.layout import NodeLayout, command_environment
from os_mlt.node.settings import NodeSettings
from os_mlt.node.steps import StepLog, report

logger = logging.getLogger(__name__)

CLUSTER_NAME = "os-mlt-local"

# Node attribute set to "false" on nodes whose k-NN plugin lacks its native
# libraries, read by the backfill's mapping check.
KNN_NATIVE_LIBRARIES_ATTRIBUTE = "knn_native_libraries"
"""Cluster and node name, which also identifies an os-mlt node on a port."""

KNN_PLUGIN = "opensearch-knn"

_PLUGIN_TIMEOUT_S = 300


def unpack(zip_path: Path, layout: NodeLayout, *, log: StepLog | None = None) -> None:
    """Unpack the OpenSearch zip into `layout.install_dir` unless it is already there.

    The zip is extracted next to the target and renamed when complete, so an
    interrupted extraction leaves no half-filled install behind. File modes
    stored in the zip are kept, so the scripts under `bin/` stay executable.

    Raises:
        NodeError: The zip is damaged or has an unexpected top folder.
    """
    if (layout.install_dir / "bin" / "opensearch").is_file():
        logger.debug("OpenSearch already unpacked in %s", layout.install_dir)
    elif layout.install_dir.exists():
        raise NodeError(
            f"{layout.install_dir} exists but contains no bin/opensearch, so it is not "
            "a complete install. Delete that directory and start again."
        )
    else:
        report(logger, log, f"Unpacking {zip_path.name} into {layout.home}")
        layout.home.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=layout.home, prefix=".unpack-") as scratch:
            _extract(zip_path, Path(scratch))
            top = Path(scratch, layout.install_dir.name)
            if not (top / "bin" / "opensearch").is_file():
                raise NodeError(
                    f"{zip_path} has no {layout.install_dir.name}/bin/opensearch, so "
                    f"it is not the OpenSearch {layout.version} distribution. Delete "
                    "it from the cache and start again."
                )
            os.replace(top, layout.install_dir)


def _extract(zip_path: Path, destination: Path) -> None:
    try:
        with zipfile.ZipFile(zip_path) as archive:
            for member in archive.infolist():
                _extract_member(archive, member, destination)
    except (zipfile.BadZipFile, EOFError) as error:
        raise NodeError(
            f"{zip_path} is not a valid zip ({error}). Delete it from the cache and "
            "start again."
        ) from error


def _extract_member(
    archive: zipfile.ZipFile, member: zipfile.ZipInfo, destination: Path
) -> None:
    name = PurePosixPath(member.filename)
    if name.is_absolute() or ".." in name.parts:
        raise NodeError(
            f"{archive.filename} contains the unsafe path {member.filename!r}, so it "
            "was not unpacked. Delete it from the cache and start again."
        )
    target = destination.joinpath(*name.parts)
    mode = member.external_attr >> 16

    if member.is_dir():
        target.mkdir(parents=True, exist_ok=True)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    if stat.S_ISLNK(mode):
        link = archive.read(member).decode("utf-8")
        if PurePosixPath(link).is_absolute() or ".." in PurePosixPath(link).parts:
            raise NodeError(
                f"{archive.filename} contains a symlink {member.filename!r} that "
                "points outside the install, so it was not unpacked. Delete it from "
                "the cache and start again."
            )
        target.symlink_to(link)
        return
    with archive.open(member) as source, target.open("wb") as output:
        shutil.copyfileobj(source, output, length=1024 * 1024)
    if mode & 0o777:
        target.chmod(mode & 0o777)


def installed_plugin_version(layout: NodeLayout, name: str) -> str | None:
    """Return the version of plugin `name`, or None when it is not installed."""
    descriptor = layout.install_dir / "plugins" / name / "plugin-descriptor.properties"
    try:
        lines = descriptor.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return None
    for line in lines:
        key, separator, value = line.partition("=")
        if separator and key.strip() == "version":
            return value.strip()
    return None


def install_knn(
    layout: NodeLayout,
    knn_zip: Path,
    knn_version: str,
    jdk: Jdk,
    *,
    log: StepLog | None = None,
) -> None:
    """Install the k-NN plugin from `knn_zip` unless that version is already installed.

    Another installed version of the plugin is removed first.

    Raises:
        NodeError: `bin/opensearch-plugin` failed, for example because the
            plugin was built for another OpenSearch version.
    """
    install_plugin(layout, KNN_PLUGIN, knn_zip, knn_version, jdk, log=log)


def install_plugin(
    layout: NodeLayout,
    name: str,
    plugin_zip: Path,
    version: str,
    jdk: Jdk,
    *,
    log: StepLog | None = None,
) -> None:
    """Install plugin `name` from `plugin_zip` unless that version is already installed.

    Another installed version of the plugin is removed first. A plugin that
    extends others must be installed after them.

    Raises:
        NodeError: `bin/opensearch-plugin` failed, for example because the
            plugin was built for another OpenSearch version or a plugin it
            extends is missing.
    """
    installed = installed_plugin_version(layout, name)
    if installed == version:
        logger.debug("%s %s already installed", name, version)
        return
    if installed is not None:
        remove_plugin(layout, name, installed, jdk, log=log)

    report(logger, log, f"Installing plugin {name} {version}")
    _run_plugin_cli(layout, jdk, ["install", "--batch", plugin_zip.absolute().as_uri()])


def remove_plugin(
    layout: NodeLayout,
    name: str,
    version: str,
    jdk: Jdk,
    *,
    log: StepLog | None = None,
) -> None:
    """Remove the installed plugin `name`, whose installed version is `version`.

    Raises:
        NodeError: `bin/opensearch-plugin remove` failed, for example because
            another installed plugin extends this one.
    """
    report(logger, log, f"Removing plugin {name} {version}")
    _run_plugin_cli(layout, jdk, ["remove", name])


def _run_plugin_cli(layout: NodeLayout, jdk: Jdk, arguments: list[str]) -> None:
    command = [str(layout.install_dir / "bin" / "opensearch-plugin"), *arguments]
    try:
        result = subprocess.run(
            command,
            env=command_environment(layout, jdk),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=_PLUGIN_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise NodeError(
            f"opensearch-plugin {' '.join(arguments)} did not finish within "
            f"{_PLUGIN_TIMEOUT_S} s."
        ) from error
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()[-2000:]
        raise NodeError(
            f"opensearch-plugin {' '.join(arguments)} failed (exit "
            f"{result.returncode}) in {layout.install_dir}. Check that the plugin "
            f"versions match OpenSearch {layout.version} (for k-NN, "
            "OS_MLT_NODE_KNN_VERSION). Output:\n"
            f"{output}"
        )


def write_config(layout: NodeLayout, settings: NodeSettings) -> None:
    """Write `opensearch.yml` and the heap options for a single node on 127.0.0.1.

    Both files are rewritten whole on every call, so they always match
    `settings`.
    """
    layout.data_dir.mkdir(parents=True, exist_ok=True)
    layout.logs_dir.mkdir(parents=True, exist_ok=True)

    # json.dumps yields a double-quoted string that is also valid YAML, so
    # paths with spaces, colons or '#' stay intact.
    config = f"""\
# Written by os-mlt on every start, so edits here are lost.
cluster.name: {CLUSTER_NAME}
node.name: {CLUSTER_NAME}
network.host: 127.0.0.1
http.port: {settings.http_port}
transport.port: {settings.resolved_transport_port}
discovery.type: single-node
path.data: {json.dumps(str(layout.data_dir))}
path.logs: {json.dumps(str(layout.logs_dir))}
# The disk watermarks make every index read-only once the disk is 95% full,
# which a small development disk reaches easily, so disk usage is ignored.
cluster.routing.allocation.disk.threshold_enabled: false
# The k-NN plugin zip on Maven Central has no native libraries, so a faiss or
# nmslib field stops this node at its first refresh. The backfill reads this
# attribute and rejects such a field before writing a vector.
node.attr.{KNN_NATIVE_LIBRARIES_ATTRIBUTE}: "false"
"""
    for key, value in sorted(settings.extra_config.items()):
        config += f"{key}: {json.dumps(value)}\n"
    (layout.config_dir / "opensearch.yml").write_text(config, encoding="utf-8")

    options_dir = layout.config_dir / "jvm.options.d"
    options_dir.mkdir(exist_ok=True)
    (options_dir / "os-mlt.options").write_text(
        f"-Xms{settings.heap}\n-Xmx{settings.heap}\n", encoding="utf-8"
    )
