"""Tests of artifact download and caching, against a Maven folder served locally."""

from __future__ import annotations

import functools
import hashlib
import http.server
import shutil
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from os_mlt.errors import NodeError
from os_mlt.node.artifacts import (
    Artifact,
    downloads_dir,
    fetch,
    knn_artifact,
    opensearch_artifact,
)

DEMO = Artifact("org.example.tools", "demo", "1.0.0")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        """Keep request lines out of the test output."""


@dataclass(frozen=True)
class MavenRepository:
    """A Maven repository folder served over HTTP on 127.0.0.1."""

    url: str
    root: Path

    def path(self, artifact: Artifact) -> Path:
        """Return where `artifact`'s zip lies in the repository folder."""
        group = artifact.group_id.replace(".", "/")
        folder = self.root / group / artifact.artifact_id / artifact.version
        return folder / artifact.file_name

    def publish(self, artifact: Artifact, *, sha1: str | None = None) -> bytes:
        """Write a small zip for `artifact` and its .sha1 file, and return the zip."""
        target = self.path(artifact)
        target.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(target, "w") as archive:
            archive.writestr("demo/README.txt", "demo artifact\n" * 100)
        data = target.read_bytes()
        digest = sha1 if sha1 is not None else hashlib.sha1(data).hexdigest()
        Path(f"{target}.sha1").write_text(digest, encoding="ascii")
        return data


@pytest.fixture
def maven_repository(tmp_path: Path) -> Iterator[MavenRepository]:
    document_root = tmp_path / "www"
    root = document_root / "maven2"
    root.mkdir(parents=True)
    handler = functools.partial(_QuietHandler, directory=str(document_root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/maven2"
        yield MavenRepository(url=url, root=root)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def without_mvn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hide `mvn` by pointing PATH at an empty folder, so fetch uses HTTP."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert shutil.which("mvn") is None


def test_maven_layout_urls() -> None:
    base = "https://repo1.maven.org/maven2"

    assert knn_artifact("3.5.0.0").url(base) == (
        f"{base}/org/opensearch/plugin/opensearch-knn/3.5.0.0/opensearch-knn-3.5.0.0.zip"
    )
    assert opensearch_artifact("3.5.0").url(base + "/") == (
        f"{base}/org/opensearch/distribution/integ-test-zip/opensearch/3.5.0/"
        "opensearch-3.5.0.zip"
    )


def test_jar_and_pom_coordinates() -> None:
    jar = Artifact("org.antlr", "antlr4-runtime", "4.13.1", "jar")
    pom = Artifact("org.opensearch.plugin", "lang-painless", "2.19.1", "pom")

    assert jar.file_name == "antlr4-runtime-4.13.1.jar"
    assert jar.coordinates == "org.antlr:antlr4-runtime:4.13.1:jar"
    assert pom.url("https://repo1.maven.org/maven2") == (
        "https://repo1.maven.org/maven2/org/opensearch/plugin/lang-painless/2.19.1/"
        "lang-painless-2.19.1.pom"
    )


def test_downloads_dir_follows_xdg_cache_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))

    assert downloads_dir() == tmp_path / "os-mlt" / "downloads"


@pytest.mark.usefixtures("without_mvn")
def test_http_download_verified(
    tmp_path: Path, maven_repository: MavenRepository
) -> None:
    data = maven_repository.publish(DEMO)
    cache = tmp_path / "cache"
    lines: list[str] = []

    path = fetch(
        DEMO, repository_url=maven_repository.url, directory=cache, log=lines.append
    )

    assert path == cache / "demo-1.0.0.zip"
    assert path.read_bytes() == data
    assert sorted(p.name for p in cache.iterdir()) == ["demo-1.0.0.zip"]
    assert lines[0].startswith("Downloading demo-1.0.0.zip from http://127.0.0.1:")


@pytest.mark.usefixtures("without_mvn")
def test_http_download_sha1_with_file_name(
    tmp_path: Path, maven_repository: MavenRepository
) -> None:
    data = maven_repository.publish(DEMO)
    sha1_file = Path(f"{maven_repository.path(DEMO)}.sha1")
    sha1_file.write_text(
        f"{hashlib.sha1(data).hexdigest()}  demo-1.0.0.zip\n", encoding="ascii"
    )

    path = fetch(
        DEMO, repository_url=maven_repository.url, directory=tmp_path / "cache"
    )

    assert path.read_bytes() == data


@pytest.mark.usefixtures("without_mvn")
def test_wrong_sha1_raises_and_caches_nothing(
    tmp_path: Path, maven_repository: MavenRepository
) -> None:
    maven_repository.publish(DEMO, sha1="0" * 40)
    cache = tmp_path / "cache"

    with pytest.raises(NodeError) as caught:
        fetch(DEMO, repository_url=maven_repository.url, directory=cache)

    assert "SHA-1 mismatch" in str(caught.value)
    assert "0" * 40 in str(caught.value)
    assert list(cache.iterdir()) == []


@pytest.mark.usefixtures("without_mvn")
def test_invalid_sha1_file_raises(
    tmp_path: Path, maven_repository: MavenRepository
) -> None:
    maven_repository.publish(DEMO, sha1="<html>not a checksum</html>")
    cache = tmp_path / "cache"

    with pytest.raises(NodeError, match="Invalid checksum file"):
        fetch(DEMO, repository_url=maven_repository.url, directory=cache)
    assert list(cache.iterdir()) == []


@pytest.mark.usefixtures("without_mvn")
def test_missing_artifact_raises_http_404(
    tmp_path: Path, maven_repository: MavenRepository
) -> None:
    with pytest.raises(NodeError) as caught:
        fetch(DEMO, repository_url=maven_repository.url, directory=tmp_path / "cache")

    assert "HTTP 404" in str(caught.value)
    assert "demo-1.0.0.zip.sha1" in str(caught.value)


@pytest.mark.usefixtures("without_mvn")
def test_unreachable_repository_raises(tmp_path: Path) -> None:
    # Port 9 (discard) on 127.0.0.1 has no listener on a normal machine.
    with pytest.raises(NodeError, match="OS_MLT_NODE_MAVEN_REPOSITORY_URL"):
        fetch(DEMO, repository_url="http://127.0.0.1:9/maven2", directory=tmp_path)


@pytest.mark.usefixtures("without_mvn")
def test_cached_zip_is_reused(
    tmp_path: Path, maven_repository: MavenRepository
) -> None:
    maven_repository.publish(DEMO)
    cache = tmp_path / "cache"
    first = fetch(DEMO, repository_url=maven_repository.url, directory=cache)
    shutil.rmtree(maven_repository.root)
    lines: list[str] = []

    second = fetch(
        DEMO, repository_url=maven_repository.url, directory=cache, log=lines.append
    )

    assert second == first
    assert lines == []


@pytest.mark.skipif(shutil.which("mvn") is None, reason="needs the mvn command")
def test_mvn_copies_knn_zip(tmp_path: Path) -> None:
    lines: list[str] = []

    path = fetch(
        knn_artifact("3.5.0.0"),
        repository_url="https://unused.invalid",
        directory=tmp_path,
        log=lines.append,
    )

    assert path == tmp_path / "opensearch-knn-3.5.0.0.zip"
    assert zipfile.is_zipfile(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["opensearch-knn-3.5.0.0.zip"]
    assert lines == ["Fetching opensearch-knn-3.5.0.0.zip with Maven"]
