"""The JSON settings file: a settings source for reading it, and a safe writer.

`Settings` reads `os-mlt.json` in the working directory when it exists, or
the file named by the `OS_MLT_CONFIG_FILE` environment variable. The file is
one JSON object whose keys are `Settings` field names:

    {"index": "products", "fusion": "min_max", "weights": {"knn": 0.7, "bm25": 0.3}}

Keyword arguments and `OS_MLT_*` variables override the file's values.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from pydantic import BaseModel, SecretBytes, SecretStr, ValidationError
from pydantic_settings import JsonConfigSettingsSource

from .errors import ConfigurationError

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails
    from pydantic_settings import BaseSettings

SETTINGS_FILE = "os-mlt.json"
"""Settings file read from the working directory when `OS_MLT_CONFIG_FILE` is unset."""

CONFIG_FILE_VARIABLE = "OS_MLT_CONFIG_FILE"
"""Environment variable naming the settings file to read in place of `os-mlt.json`."""


def settings_file_path() -> Path:
    """Return the settings file that `Settings` reads, whether or not it exists."""
    named = os.environ.get(CONFIG_FILE_VARIABLE)
    if named:
        return Path(named).expanduser()
    return Path(SETTINGS_FILE)


def _existing_settings_file() -> Path | None:
    """Return the settings file to read, or None when there is none.

    Raises:
        ConfigurationError: `OS_MLT_CONFIG_FILE` names a file that does not
            exist, or the settings file's path is a folder.
    """
    path = settings_file_path()
    if path.is_file():
        return path
    if path.is_dir() and os.environ.get(CONFIG_FILE_VARIABLE):
        raise ConfigurationError(
            f"settings file {str(path)!r} is a folder; {CONFIG_FILE_VARIABLE} names "
            f"it, so point {CONFIG_FILE_VARIABLE} at a JSON file, or unset it to read "
            f"{SETTINGS_FILE} in the working directory"
        )
    if path.is_dir():
        raise ConfigurationError(
            f"settings file {str(path)!r} is a folder; settings are read from a JSON "
            f"file there, so remove or rename the folder, or set {CONFIG_FILE_VARIABLE} "
            "to a file"
        )
    if os.environ.get(CONFIG_FILE_VARIABLE):
        raise ConfigurationError(
            f"settings file {str(path)!r} named by {CONFIG_FILE_VARIABLE} not found; "
            f"create it or unset {CONFIG_FILE_VARIABLE}"
        )
    return None


BOOLEAN_VALUES = "true/false, 1/0, yes/no or on/off"
"""Strings that pydantic reads as a boolean, in any letter case."""

# Error types raised by the settings' own validators, whose messages quote the
# rejected value themselves.
_VALIDATOR_ERRORS = ("value_error", "assertion_error")

# Longest rejected value quoted in full in an error message, in characters.
_MAX_QUOTED_VALUE = 80


def describe_error(error: ErrorDetails) -> str:
    """Return the message of one pydantic error, listing the accepted booleans."""
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] in ("bool_parsing", "bool_type"):
        message += f"; use {BOOLEAN_VALUES}"
    return message


def rejected_value(model: type[BaseModel], error: ErrorDetails) -> str | None:
    """Return the rejected input of one pydantic error, quoted, or None to leave it out.

    The input is left out for a secret field such as the password. It is also
    left out for an error of the whole model, because that input contains
    every field, the password too, and for an error from a validator of ours,
    because its message quotes the value.
    """
    location = error["loc"]
    if not location or error["type"] in _VALIDATOR_ERRORS:
        return None
    field = model.model_fields.get(str(location[0]))
    if field is None or _is_secret(field.annotation):
        return None
    text = repr(error["input"])
    if len(text) > _MAX_QUOTED_VALUE:
        text = text[: _MAX_QUOTED_VALUE - 3] + "..."
    return text


def _is_secret(annotation: Any) -> bool:
    """Return whether a field type is, or contains, a pydantic secret type."""
    if isinstance(annotation, type) and issubclass(
        annotation, (SecretStr, SecretBytes)
    ):
        return True
    return any(_is_secret(argument) for argument in get_args(annotation))


# JSON names of the values `json.loads` returns.
_JSON_TYPES: dict[type, str] = {
    list: "list",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


def read_settings_file(path: Path) -> dict[str, Any]:
    """Read a settings file's JSON object.

    Raises:
        ConfigurationError: The file cannot be read, is not valid JSON, or is
            not a JSON object. The message names the file.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigurationError(
            f"cannot read settings file {str(path)!r}: {error}"
        ) from error
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigurationError(
            f"settings file {str(path)!r} is not valid JSON: {error.msg} "
            f"at line {error.lineno}, column {error.colno}"
        ) from error
    if not isinstance(data, dict):
        raise ConfigurationError(
            f"settings file {str(path)!r} contains a JSON {_JSON_TYPES.get(type(data), 'value')}; "
            'it must contain one object such as {"fusion": "rrf"}'
        )
    return data


def validate_settings_values(
    settings_cls: type[BaseSettings], values: Mapping[str, Any], path: Path
) -> None:
    """Check each key of a settings file on its own.

    Raises:
        ConfigurationError: A key is not a field of `settings_cls`, or its value
            is invalid for that field. The message names the file and the key.
    """
    fields = settings_cls.model_fields
    for key, value in values.items():
        if key not in fields:
            raise ConfigurationError(
                f"settings file {str(path)!r} has the unknown key {key!r}; "
                f"valid keys are {', '.join(sorted(fields))}"
            )
        # Validating an assignment on a default instance runs this field's
        # type checks and validators alone. Checks across fields, such as
        # username with password, wait for the full settings, because another
        # source may provide the other field.
        instance = settings_cls.model_construct()
        try:
            settings_cls.__pydantic_validator__.validate_assignment(
                instance, key, value
            )
        except ValidationError as error:
            problems = [
                _describe_file_error(settings_cls, item)
                for item in error.errors()
                if item["loc"] and item["loc"][0] == key
            ]
            if problems:
                raise ConfigurationError(
                    f"settings file {str(path)!r} has " + "; ".join(problems)
                ) from error


def _describe_file_error(settings_cls: type[BaseSettings], error: ErrorDetails) -> str:
    """Describe one invalid value of a settings file: its key, the value and why."""
    key = ".".join(str(part) for part in error["loc"])
    value = rejected_value(settings_cls, error)
    value_text = f" value {value}" if value is not None else ""
    return f"an invalid {key!r}{value_text}: {describe_error(error)}"


class JsonSettingsFileSource(JsonConfigSettingsSource):
    """`Settings` values from the JSON settings file, checked key by key.

    Unlike the plain `JsonConfigSettingsSource`, errors name the file and the
    key, and a file named by `OS_MLT_CONFIG_FILE` must exist.
    """

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        # The parent's constructor reads the file, before it stores settings_cls.
        self._settings_class = settings_cls
        self.settings_path = _existing_settings_file()
        super().__init__(settings_cls, json_file=self.settings_path)

    # NOTE: _read_file is the private per-file hook of pydantic-settings' file
    # sources; this override was checked against pydantic-settings 2.16.
    def _read_file(self, file_path: Any) -> dict[str, Any]:
        path = Path(file_path)
        data = read_settings_file(path)
        validate_settings_values(self._settings_class, data, path)
        return data


def update_settings_file(
    path: Path, values: Mapping[str, Any], *, settings_cls: type[BaseSettings]
) -> None:
    """Merge `values` into a settings file, keeping its other keys.

    The merged object goes to a temporary file in the same folder, which then
    replaces the old file in one rename, so a reader sees the old or the new
    file and never a partial one. The file keeps its permission bits.

    Raises:
        ConfigurationError: The existing file is not a valid settings file
            (it is left as it is), or a new value is invalid.
    """
    current = read_settings_file(path) if path.exists() else {}
    merged = {**current, **values}
    validate_settings_values(settings_cls, merged, path)
    text = json.dumps(merged, indent=2, allow_nan=False) + "\n"

    mode = path.stat().st_mode & 0o7777 if path.exists() else 0o644
    descriptor, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
