"""Download and cache of the OpenSearch zip, plugin zips and module jars from Maven."""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from os_mlt.errors import NodeError
from os_mlt.node.settings import cache_dir
from os_mlt.node.steps import StepLog, report

logger = logging.getLogger(__name__)

_CHUNK_BYTES = 1024 * 1024
_HTTP_TIMEOUT_S = 60


@dataclass(frozen=True)
class Artifact:
    """A file in a Maven repository, named by its coordinates.

    Attributes:
        group_id: Maven group, such as "org.opensearch.plugin".
        artifact_id: Maven artifact, such as "opensearch-knn".
        version: Artifact version.
        extension: File type: "zip" for distributions and plugins, "jar" or
            "pom" for the parts of a module.
    """

    group_id: str
    artifact_id: str
    version: str
    extension: str = "zip"

    @property
    def file_name(self) -> str:
        """File name, `{artifact_id}-{version}.{extension}`."""
        return f"{self.artifact_id}-{self.version}.{self.extension}"

    @property
    def coordinates(self) -> str:
        """Coordinates in the form `mvn dependency:copy -Dartifact=` takes."""
        return f"{self.group_id}:{self.artifact_id}:{self.version}:{self.extension}"

    def url(self, repository_url: str) -> str:
        """Return the URL of the file in the standard Maven repository layout."""
        group_path = self.group_id.replace(".", "/")
        base = repository_url.rstrip("/")
        return f"{base}/{group_path}/{self.artifact_id}/{self.version}/{self.file_name}"


def opensearch_artifact(version: str) -> Artifact:
    """Return the OpenSearch distribution zip that bundles the core modules.

    This is the integ-test-zip, which has no security plugin. Its `modules/`
    folder contains lang-painless, which the k-NN plugin extends.
    """
    return Artifact("org.opensearch.distribution.integ-test-zip", "opensearch", version)


def knn_artifact(version: str) -> Artifact:
    """Return the opensearch-knn plugin zip."""
    return plugin_artifact("opensearch-knn", version)


def plugin_artifact(artifact_id: str, version: str) -> Artifact:
    """Return the zip of an OpenSearch plugin published under org.opensearch.plugin."""
    return Artifact("org.opensearch.plugin", artifact_id, version)


def downloads_dir() -> Path:
    """Return the cache directory of downloaded zips."""
    return cache_dir() / "downloads"


def fetch(
    artifact: Artifact,
    *,
    repository_url: str,
    directory: Path | None = None,
    log: StepLog | None = None,
) -> Path:
    """Return the path of `artifact` in the cache, downloading it first if needed.

    With `mvn` on PATH, Maven copies the artifact from its own configured
    repositories. Otherwise the file is downloaded from `repository_url` and
    checked against the `.sha1` file next to it. Either way the file is written
    under a temporary name and renamed when complete, so an interrupted
    download never leaves a partial file under the cached name.

    Args:
        artifact: File to fetch.
        repository_url: Base URL of a Maven repository, used without `mvn`.
        directory: Cache directory. None means `downloads_dir()`.
        log: Callback for one line per download.

    Raises:
        NodeError: The download failed, or its SHA-1 does not match.
    """
    target_dir = directory if directory is not None else downloads_dir()
    target = target_dir / artifact.file_name
    if target.is_file():
        logger.debug("Using cached %s", target)
        return target
    target_dir.mkdir(parents=True, exist_ok=True)

    mvn = shutil.which("mvn")
    if mvn is not None:
        report(logger, log, f"Fetching {artifact.file_name} with Maven")
        _copy_with_maven(mvn, artifact, target)
    else:
        url = artifact.url(repository_url)
        report(logger, log, f"Downloading {artifact.file_name} from {url}")
        _download_verified(url, target)
    return target


def _copy_with_maven(mvn: str, artifact: Artifact, target: Path) -> None:
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".mvn-") as scratch:
        command = [
            mvn,
            "--batch-mode",
            "-q",
            "dependency:copy",
            f"-Dartifact={artifact.coordinates}",
            f"-DoutputDirectory={scratch}",
        ]
        # Maven needs a working directory without a pom.xml, or it would try to
        # build the project it finds there.
        result = subprocess.run(
            command, cwd=scratch, capture_output=True, text=True, check=False
        )
        copied = Path(scratch, artifact.file_name)
        if result.returncode != 0 or not copied.is_file():
            output = (result.stdout + result.stderr).strip()[-2000:]
            raise NodeError(
                f"mvn dependency:copy of {artifact.coordinates} failed (exit "
                f"{result.returncode}). Check the version and Maven's repository "
                "settings. Maven output:\n"
                f"{output}"
            )
        os.replace(copied, target)


def _download_verified(url: str, target: Path) -> None:
    expected = _read_sha1(url + ".sha1")
    descriptor, partial_name = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=".part"
    )
    partial = Path(partial_name)
    try:
        with os.fdopen(descriptor, "wb") as output:
            actual = _stream(url, output)
        if actual != expected:
            raise NodeError(
                f"SHA-1 mismatch for {url}: the download has {actual} but the .sha1 "
                f"file says {expected}. The repository or a proxy served a damaged "
                "file. Retry, or set OS_MLT_NODE_MAVEN_REPOSITORY_URL to another "
                "mirror."
            )
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def _stream(url: str, output: BinaryIO) -> str:
    """Copy the body of `url` to `output` and return its SHA-1 hex digest."""
    digest = hashlib.sha1()
    with _open(url) as response:
        while True:
            try:
                chunk = response.read(_CHUNK_BYTES)
            except (OSError, http.client.HTTPException) as error:
                raise NodeError(
                    f"Download of {url} was interrupted: {error!r}. Retry the command."
                ) from error
            if not chunk:
                break
            digest.update(chunk)
            output.write(chunk)
    return digest.hexdigest()


def _read_sha1(url: str) -> str:
    with _open(url) as response:
        text = response.read(4096).decode("ascii", errors="replace")
    # The file contains the hex digest, sometimes followed by the file name.
    fields = text.split()
    digest = fields[0].lower() if fields else ""
    if len(digest) != 40 or any(char not in "0123456789abcdef" for char in digest):
        raise NodeError(
            f"Invalid checksum file {url}: expected a 40-digit hex SHA-1, got "
            f"{text[:80]!r}."
        )
    return digest


def _open(url: str) -> http.client.HTTPResponse:
    try:
        response: http.client.HTTPResponse = urllib.request.urlopen(
            url, timeout=_HTTP_TIMEOUT_S
        )
        return response
    except urllib.error.HTTPError as error:
        error.close()
        raise NodeError(
            f"Download of {url} failed with HTTP {error.code} {error.reason}. Check "
            "the OpenSearch and k-NN versions (OS_MLT_NODE_VERSION, "
            "OS_MLT_NODE_KNN_VERSION) and OS_MLT_NODE_MAVEN_REPOSITORY_URL."
        ) from error
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise NodeError(
            f"Download of {url} failed: {reason}. Check the network, or set "
            "OS_MLT_NODE_MAVEN_REPOSITORY_URL to a reachable Maven repository."
        ) from error
