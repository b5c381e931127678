"""The lang-painless module, assembled from Maven jars where the distribution lacks it.

The k-NN plugin extends lang-painless, so OpenSearch rejects its install
without that module. The integ-test-zip ships lang-painless from OpenSearch
3.5.0 on, but older ones (such as 2.19.1) contain only transport-netty4. The
module is a folder of jars with a descriptor, and Maven serves every jar, so
`install_painless_module` builds the same folder that the full distribution
has under `modules/lang-painless`.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from xml.etree import ElementTree

from os_mlt.errors import NodeError
from os_mlt.node.artifacts import Artifact, fetch
from os_mlt.node.jdk import required_java_major
from os_mlt.node.layout import NodeLayout
from os_mlt.node.steps import StepLog, report

logger = logging.getLogger(__name__)

PAINLESS_MODULE = "lang-painless"

_GROUP = "org.opensearch.plugin"
_POM_NAMESPACE = {"m": "http://maven.apache.org/POM/4.0.0"}
# OpenSearch 3.x renamed the plugin class from PainlessPlugin to
# PainlessModulePlugin, so the descriptor names the one the jar contains.
_PLUGIN_CLASSES = (
    "org.opensearch.painless.PainlessModulePlugin",
    "org.opensearch.painless.PainlessPlugin",
)
# The permissions of the distribution module's plugin-security.policy, which
# Painless needs because it compiles scripts into classes of its own loader.
_SECURITY_POLICY = """\
grant {
  // needed to generate runtime classes
  permission java.lang.RuntimePermission "createClassLoader";

  // needed to find the classloader to load allowlisted classes from
  permission java.lang.RuntimePermission "getClassLoader";
};
"""


def has_painless_module(layout: NodeLayout) -> bool:
    """Return True when the install contains a lang-painless module with a descriptor."""
    module = layout.install_dir / "modules" / PAINLESS_MODULE
    return (module / "plugin-descriptor.properties").is_file()


def install_painless_module(
    layout: NodeLayout,
    *,
    repository_url: str,
    directory: Path | None = None,
    log: StepLog | None = None,
) -> None:
    """Build `modules/lang-painless` from Maven unless the install has it.

    Fetches `org.opensearch.plugin:lang-painless:{version}` and the jars its
    POM lists as compile and runtime dependencies, then writes them with a descriptor and
    the module's security policy. The folder is filled under a temporary name
    and renamed when complete.

    Args:
        layout: The install that lacks the module.
        repository_url: Maven repository for downloads without `mvn`.
        directory: Download cache. None means the default cache.
        log: Callback for one line per step.

    Raises:
        NodeError: A download failed, or the POM or jar is not what the module
            needs.
    """
    if has_painless_module(layout):
        return
    version = layout.version
    report(logger, log, f"Assembling the {PAINLESS_MODULE} module {version} from Maven")
    main = Artifact(_GROUP, PAINLESS_MODULE, version, "jar")
    pom = fetch(
        Artifact(_GROUP, PAINLESS_MODULE, version, "pom"),
        repository_url=repository_url,
        directory=directory,
        log=log,
    )
    jars = [
        fetch(artifact, repository_url=repository_url, directory=directory, log=log)
        for artifact in [main, *compile_dependencies(pom)]
    ]
    descriptor = _descriptor(version, _plugin_class(jars[0]))

    modules = layout.install_dir / "modules"
    modules.mkdir(exist_ok=True)
    # The scratch folder lies outside modules/, where OpenSearch would try to
    # load it as a module if an interrupted run left it behind.
    scratch = Path(tempfile.mkdtemp(dir=layout.home, prefix=".painless-"))
    try:
        for jar in jars:
            shutil.copyfile(jar, scratch / jar.name)
        (scratch / "plugin-descriptor.properties").write_text(
            descriptor, encoding="utf-8"
        )
        (scratch / "plugin-security.policy").write_text(
            _SECURITY_POLICY, encoding="utf-8"
        )
        scratch.chmod(0o755)
        target = modules / PAINLESS_MODULE
        # A folder without a descriptor, left by an interrupted copy, is replaced.
        shutil.rmtree(target, ignore_errors=True)
        os.replace(scratch, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def compile_dependencies(pom: Path) -> list[Artifact]:
    """Return the jars that a POM lists as compile or runtime dependencies.

    Raises:
        NodeError: The POM is not valid XML, or a dependency's version is a
            property reference or missing.
    """
    try:
        root = ElementTree.parse(pom).getroot()
    except ElementTree.ParseError as error:
        raise NodeError(
            f"{pom} is not a valid POM ({error}). Delete it from the cache and start "
            "again."
        ) from error
    artifacts = []
    for dependency in root.iterfind("m:dependencies/m:dependency", _POM_NAMESPACE):
        group = dependency.findtext("m:groupId", "", _POM_NAMESPACE).strip()
        artifact = dependency.findtext("m:artifactId", "", _POM_NAMESPACE).strip()
        version = dependency.findtext("m:version", "", _POM_NAMESPACE).strip()
        scope = dependency.findtext("m:scope", "compile", _POM_NAMESPACE).strip()
        optional = dependency.findtext("m:optional", "false", _POM_NAMESPACE).strip()
        if scope not in ("compile", "runtime") or optional == "true":
            continue
        if not version or "${" in version:
            raise NodeError(
                f"{pom} gives dependency {group}:{artifact} the version "
                f"{version or '(none)'!r}, which os-mlt cannot resolve without "
                "Maven's model builder."
            )
        artifacts.append(Artifact(group, artifact, version, "jar"))
    return artifacts


def _plugin_class(jar: Path) -> str:
    try:
        with zipfile.ZipFile(jar) as archive:
            names = set(archive.namelist())
    except zipfile.BadZipFile as error:
        raise NodeError(
            f"{jar} is not a valid jar ({error}). Delete it from the cache and start "
            "again."
        ) from error
    for class_name in _PLUGIN_CLASSES:
        if class_name.replace(".", "/") + ".class" in names:
            return class_name
    raise NodeError(
        f"{jar} contains none of the plugin classes {', '.join(_PLUGIN_CLASSES)}, so "
        "os-mlt cannot write the module's descriptor."
    )


def _descriptor(version: str, class_name: str) -> str:
    return (
        "description=An easy, safe and fast scripting language for OpenSearch\n"
        f"version={version}\n"
        f"name={PAINLESS_MODULE}\n"
        f"classname={class_name}\n"
        f"java.version={required_java_major(version)}\n"
        f"opensearch.version={version}\n"
        "custom.foldername=\n"
        "extended.plugins=\n"
        "has.native.controller=false\n"
    )
