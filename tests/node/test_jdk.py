"""Tests of the JDK search, on this machine's JDKs and on fake JDKs in tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest

from os_mlt.errors import ConfigurationError
from os_mlt.node.account import Account
from os_mlt.node.jdk import (
    find_jdk,
    max_java_major,
    parse_java_version,
    read_java_major,
    required_java_major,
)


def make_jdk(parent: Path, name: str, java_version: str) -> Path:
    """Create a directory that looks like a JDK to the finder: bin/java and release."""
    home = parent / name
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "java").write_text("#!/bin/sh\n", encoding="ascii")
    (home / "bin" / "java").chmod(0o755)
    (home / "release").write_text(
        f'IMPLEMENTOR="Test"\nJAVA_VERSION="{java_version}"\nOS_NAME="Linux"\n',
        encoding="ascii",
    )
    return home


@pytest.fixture
def no_java_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove the JDK variables of the caller's shell."""
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.delenv("OPENSEARCH_JAVA_HOME", raising=False)


@pytest.mark.parametrize(
    ("version", "major"),
    [
        pytest.param("25.0.1", 25, id="current-scheme"),
        pytest.param("17.0.15", 17, id="lts-17"),
        pytest.param("1.8.0_392", 8, id="legacy-1.x-scheme"),
        pytest.param("21", 21, id="feature-only"),
        pytest.param("21-ea", 21, id="early-access"),
    ],
)
def test_release_file_versions(tmp_path: Path, version: str, major: int) -> None:
    home = make_jdk(tmp_path, "jdk", version)

    assert read_java_major(home) == major


def test_release_file_unquoted_version(tmp_path: Path) -> None:
    home = make_jdk(tmp_path, "jdk", "11")
    (home / "release").write_text("JAVA_VERSION=11.0.2\n", encoding="ascii")

    assert read_java_major(home) == 11


def test_release_file_missing_version_line(tmp_path: Path) -> None:
    home = make_jdk(tmp_path, "jdk", "21")
    (home / "release").write_text('IMPLEMENTOR="Test"\n', encoding="ascii")

    assert read_java_major(home) is None


def test_directory_without_java_is_no_jdk(tmp_path: Path) -> None:
    home = make_jdk(tmp_path, "jdk", "21")
    (home / "bin" / "java").unlink()

    assert read_java_major(home) is None


def test_parse_invalid_java_version() -> None:
    with pytest.raises(ValueError, match="invalid Java version"):
        parse_java_version("openjdk")


@pytest.mark.parametrize(
    ("opensearch_version", "required"),
    [("3.5.0", 21), ("3.0.0", 21), ("2.19.1", 11), ("1.3.20", 11)],
)
def test_required_java_major(opensearch_version: str, required: int) -> None:
    assert required_java_major(opensearch_version) == required


@pytest.mark.parametrize(
    ("opensearch_version", "maximum"),
    [("3.5.0", None), ("2.19.1", 23), ("1.3.20", 23)],
)
def test_max_java_major(opensearch_version: str, maximum: int | None) -> None:
    assert max_java_major(opensearch_version) == maximum


@pytest.mark.usefixtures("no_java_env")
def test_finder_skips_too_new_java_for_2x(tmp_path: Path) -> None:
    jvm = tmp_path / "jvm"
    newest = make_jdk(jvm, "jdk-25", "25.0.1")
    chosen = make_jdk(jvm, "jdk-21", "21.0.5")
    make_jdk(jvm, "jdk-17", "17.0.15")
    lines: list[str] = []

    jdk = find_jdk("2.19.1", search_dirs=[jvm], log=lines.append)

    assert jdk.home == chosen
    skipped = [line for line in lines if str(newest) in line]
    assert len(skipped) == 1
    assert "Java 23 or older" in skipped[0]
    assert "security manager" in skipped[0]


@pytest.mark.usefixtures("no_java_env")
def test_explicit_java_home_too_new_for_2x(tmp_path: Path) -> None:
    new = make_jdk(tmp_path, "jdk-25", "25.0.1")

    with pytest.raises(ConfigurationError) as caught:
        find_jdk("2.19.1", java_home=new)

    message = str(caught.value)
    assert "Java 25" in message
    assert "Java 11 to 23" in message


@pytest.mark.usefixtures("no_java_env")
def test_finder_picks_java_21_or_later_here() -> None:
    jdk = find_jdk("3.5.0")

    assert jdk.major >= 21
    assert (jdk.home / "bin" / "java").is_file()


@pytest.mark.usefixtures("no_java_env")
def test_explicit_java_home_too_old(tmp_path: Path) -> None:
    old = make_jdk(tmp_path, "jdk-17", "17.0.15")

    with pytest.raises(ConfigurationError) as caught:
        find_jdk("3.5.0", java_home=old)

    message = str(caught.value)
    assert str(old) in message
    assert "Java 17" in message
    assert "Java 21 or later" in message


@pytest.mark.usefixtures("no_java_env")
def test_explicit_java_home_not_a_jdk(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="not a JDK"):
        find_jdk("3.5.0", java_home=tmp_path)


def test_opensearch_java_home_too_old(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = make_jdk(tmp_path, "jdk-17", "17.0.15")
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("OPENSEARCH_JAVA_HOME", str(old))

    with pytest.raises(ConfigurationError, match="OPENSEARCH_JAVA_HOME"):
        find_jdk("3.5.0")


def test_explicit_java_home_wins_over_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chosen = make_jdk(tmp_path, "chosen", "21.0.5")
    other = make_jdk(tmp_path, "other", "25.0.1")
    monkeypatch.setenv("OPENSEARCH_JAVA_HOME", str(other))

    assert find_jdk("3.5.0", java_home=chosen).home == chosen


def test_too_old_java_home_env_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = make_jdk(tmp_path / "env", "jdk-17", "17.0.15")
    jvm = tmp_path / "jvm"
    make_jdk(jvm, "jdk-21", "21.0.5")
    newest = make_jdk(jvm, "jdk-25", "25.0.1")
    make_jdk(jvm, "jdk-8", "1.8.0_392")
    monkeypatch.delenv("OPENSEARCH_JAVA_HOME", raising=False)
    monkeypatch.setenv("JAVA_HOME", str(old))
    lines: list[str] = []

    jdk = find_jdk("3.5.0", search_dirs=[jvm], log=lines.append)

    assert jdk.home == newest
    assert jdk.major == 25
    assert any(str(old) in line and line.startswith("Skipping") for line in lines)


def test_suitable_java_home_env_comes_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from_env = make_jdk(tmp_path / "env", "jdk-21", "21.0.5")
    jvm = tmp_path / "jvm"
    make_jdk(jvm, "jdk-25", "25.0.1")
    monkeypatch.delenv("OPENSEARCH_JAVA_HOME", raising=False)
    monkeypatch.setenv("JAVA_HOME", str(from_env))

    jdk = find_jdk("3.5.0", search_dirs=[jvm])

    assert jdk.home == from_env
    assert jdk.source == "JAVA_HOME"


@pytest.mark.usefixtures("no_java_env")
def test_unreachable_jdk_is_skipped_for_account(tmp_path: Path) -> None:
    jvm = tmp_path / "jvm"
    hidden = make_jdk(jvm / "private", "jdk-25", "25.0.1")
    (jvm / "private").chmod(0o700)
    # No real account is needed: the check compares modes with uid and gid.
    stranger = Account(name="stranger", uid=65533, gid=65533, home=Path("/nonexistent"))
    lines: list[str] = []

    jdk = find_jdk(
        "3.5.0", account=stranger, search_dirs=[jvm / "private"], log=lines.append
    )

    assert jdk.home != hidden
    assert any(str(hidden) in line and "cannot enter" in line for line in lines)


@pytest.mark.usefixtures("no_java_env")
def test_unreachable_explicit_java_home_raises(tmp_path: Path) -> None:
    private = tmp_path / "private"
    hidden = make_jdk(private, "jdk-25", "25.0.1")
    private.chmod(0o700)
    stranger = Account(name="stranger", uid=65533, gid=65533, home=Path("/nonexistent"))

    with pytest.raises(ConfigurationError, match="cannot enter"):
        find_jdk("3.5.0", java_home=hidden, account=stranger)
