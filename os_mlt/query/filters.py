"""Metadata filters: term, terms, range, exists and their negation.

Each filter turns into a Query DSL clause with `to_dsl()`. `parse_filter`
reads the compact form the CLI takes:

    section=python              term
    tags=field::biology,use::viewing   terms (any of the comma-separated values)
    installed_size_kb>=1000     range (>, >=, <, <=; numbers or dates such as 2024-01-01 or now-1y)
    depends=*                   exists
    section!=libs               must_not term (also != with several values, or !=* for missing)
    not:installed_size_kb>5000  must_not of any other form
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigurationError

Scalar = str | int | float | bool


@dataclass(frozen=True)
class Term:
    """Documents whose `field` has exactly `value` (a `term` query)."""

    field: str
    value: Scalar

    def to_dsl(self) -> dict[str, Any]:
        return {"term": {self.field: self.value}}


@dataclass(frozen=True)
class Terms:
    """Documents whose `field` has any of `values` (a `terms` query)."""

    field: str
    values: tuple[Scalar, ...]

    def __post_init__(self) -> None:
        if not self.values:
            raise ConfigurationError(f"Terms filter on {self.field!r} has no values")

    def to_dsl(self) -> dict[str, Any]:
        return {"terms": {self.field: list(self.values)}}


@dataclass(frozen=True)
class Range:
    """Documents whose numeric or date `field` lies within the given bounds.

    Date bounds accept what the field's mapping parses, plus date math such as
    `now-30d/d`; `format` overrides the mapping's date format.
    """

    field: str
    gte: Scalar | None = None
    gt: Scalar | None = None
    lte: Scalar | None = None
    lt: Scalar | None = None
    format: str | None = None

    def __post_init__(self) -> None:
        if (
            self.gte is None
            and self.gt is None
            and self.lte is None
            and self.lt is None
        ):
            raise ConfigurationError(
                f"Range filter on {self.field!r} has no bound; set gte, gt, lte or lt"
            )
        if self.gte is not None and self.gt is not None:
            raise ConfigurationError(
                f"Range filter on {self.field!r} sets both gte and gt"
            )
        if self.lte is not None and self.lt is not None:
            raise ConfigurationError(
                f"Range filter on {self.field!r} sets both lte and lt"
            )

    def to_dsl(self) -> dict[str, Any]:
        bounds: dict[str, Any] = {
            name: value
            for name, value in (
                ("gte", self.gte),
                ("gt", self.gt),
                ("lte", self.lte),
                ("lt", self.lt),
            )
            if value is not None
        }
        if self.format is not None:
            bounds["format"] = self.format
        return {"range": {self.field: bounds}}


@dataclass(frozen=True)
class Exists:
    """Documents that have a non-null value in `field`."""

    field: str

    def to_dsl(self) -> dict[str, Any]:
        return {"exists": {"field": self.field}}


@dataclass(frozen=True)
class Not:
    """Documents that do not match `filter` (placed under `must_not`)."""

    filter: Term | Terms | Range | Exists

    def to_dsl(self) -> dict[str, Any]:
        return self.filter.to_dsl()


Filter = Term | Terms | Range | Exists | Not
FilterInput = Filter | str | Mapping[str, Any]
"""A filter object, its compact string form, or a raw Query DSL clause."""

_OPERATOR = re.compile(r"(!=|>=|<=|=|>|<)")
_EXAMPLES = (
    "write FIELD=VALUE, FIELD=V1,V2, FIELD>=N, FIELD<DATE, FIELD=* (exists), "
    "FIELD!=VALUE or not:FILTER"
)


def _split_values(text: str) -> list[str]:
    """Split on commas that are not escaped as `\\,`."""
    parts = re.split(r"(?<!\\),", text)
    return [part.replace("\\,", ",").strip() for part in parts]


def parse_filter(text: str) -> Filter:
    """Parse the compact filter form described in the module docstring.

    Raises:
        ConfigurationError: The text has no operator, no field or no value.
            The message quotes the whole filter, `not:` included.
    """
    return _parse(text, text)


def _parse(part: str, text: str) -> Filter:
    """Parse `part`, the filter `text` or what follows one of its `not:` prefixes.

    Errors quote `text`, the filter as typed.
    """
    raw = part.strip()
    if raw.startswith("not:"):
        if not raw[4:].strip():
            raise ConfigurationError(
                f"filter {text!r} has nothing after 'not:'; {_EXAMPLES}"
            )
        inner = _parse(raw[4:], text)
        if isinstance(inner, Not):
            return inner.filter
        return Not(inner)

    match = _OPERATOR.search(raw)
    if match is None:
        raise ConfigurationError(f"filter {text!r} has no operator; {_EXAMPLES}")
    field = raw[: match.start()].strip()
    operator = match.group(1)
    value = raw[match.end() :].strip()
    if not field:
        raise ConfigurationError(f"filter {text!r} names no field; {_EXAMPLES}")
    if not value:
        raise ConfigurationError(
            f"filter {text!r} has no value after {operator!r}; {_EXAMPLES}"
        )

    if value[0] in "=<>!":
        raise ConfigurationError(
            f"filter {text!r} has a second operator before its value; write one "
            f"operator, as in {field}={value.lstrip('=<>!')}; {_EXAMPLES}"
        )
    if operator in ("=", "!="):
        positive = _equality(field, value, text)
        return Not(positive) if operator == "!=" else positive
    # Values stay strings: OpenSearch parses them with the field's mapping, so
    # "2024" is a year on a date field and a number on a numeric one.
    bounds = {">=": "gte", ">": "gt", "<=": "lte", "<": "lt"}
    return Range(field, **{bounds[operator]: value})


def _equality(field: str, value: str, text: str) -> Term | Terms | Exists:
    if value == "*":
        return Exists(field)
    values = _split_values(value)
    if any(not item for item in values):
        raise ConfigurationError(
            f"filter {text!r} has an empty value in its list; {_EXAMPLES}"
        )
    if len(values) == 1:
        return Term(field, values[0])
    return Terms(field, tuple(values))


def build_filter_clauses(
    filters: Iterable[FilterInput] | None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split filters into `filter` and `must_not` clauses of a `bool` query.

    Raw Query DSL dicts go to `filter` unchanged.

    Raises:
        ConfigurationError: A filter is of an unsupported type.
    """
    positive: list[dict[str, Any]] = []
    negative: list[dict[str, Any]] = []
    for item in filters or ():
        parsed: Filter | Mapping[str, Any]
        parsed = parse_filter(item) if isinstance(item, str) else item
        if isinstance(parsed, Not):
            negative.append(parsed.to_dsl())
        elif isinstance(parsed, (Term, Terms, Range, Exists)):
            positive.append(parsed.to_dsl())
        elif isinstance(parsed, Mapping):
            positive.append(dict(parsed))
        else:
            raise ConfigurationError(
                f"filter {item!r} is a {type(item).__name__}; pass Term, Terms, Range, "
                "Exists, Not, a filter string or a Query DSL dict"
            )
    return positive, negative


def parse_filters(texts: Sequence[str]) -> list[Filter]:
    """Parse several compact filters, as given to the CLI's repeated --filter option."""
    return [parse_filter(text) for text in texts]
