"""Steps after fusion: boosts by recency or by a numeric field, and MMR diversity.

Both work on the fused candidate pool, before the page is cut from it, so
paging still walks one fixed order. They read each candidate's relevance as
its fused score scaled to (0, 1] over the pool. Fused scores are on a
different scale for each fusion method, and z-score fusion can make them
negative, which a multiplicative boost would turn the wrong way.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from ..encoder import field_value
from ..errors import ConfigurationError

# The lowest relevance a pool candidate gets, so that a boost can still lift
# the last candidate of the pool.
MIN_RELEVANCE = 0.001

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(h|d|w|M|y)\s*$")
_DURATION_DAYS = {"h": 1 / 24, "d": 1.0, "w": 7.0, "M": 30.4375, "y": 365.25}


def parse_duration(text: str) -> timedelta:
    """Read a duration such as `12h`, `30d`, `2w`, `6M` or `1y` (M is months)."""
    match = _DURATION.match(text)
    if not match or float(match.group(1)) <= 0:
        raise ConfigurationError(
            f"duration {text!r} is not a positive number followed by h, d, w, M or y, "
            "for example 180d or 1y"
        )
    return timedelta(days=float(match.group(1)) * _DURATION_DAYS[match.group(2)])


def parse_date(value: Any) -> datetime | None:
    """Read a date field value: ISO 8601 text (`2024`, `2024-05`, `2024-05-17T10:00Z`)
    or epoch milliseconds. Return None for a value that is no date."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value / 1000, tz=timezone.utc)
    if not isinstance(value, str):
        return None
    text = value.strip()
    if re.fullmatch(r"\d{4}", text):
        text += "-01-01"
    elif re.fullmatch(r"\d{4}-\d{2}", text):
        text += "-01"
    text = text.replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class Recency:
    """Halve a candidate's relevance for every `half_life` of age.

    Attributes:
        field: Date field, read from each hit's `_source`.
        half_life: Age that halves relevance, such as `180d` or `1y`.
        origin: The date ages count from; None means now.
        missing: Factor for a candidate without a readable date.
    """

    field: str
    half_life: str = "365d"
    origin: datetime | None = None
    missing: float = 1.0

    def __post_init__(self) -> None:
        parse_duration(self.half_life)
        _check_factor(self.missing, "missing")

    @property
    def source_fields(self) -> tuple[str, ...]:
        """The `_source` fields the boost reads."""
        return (self.field,)

    def readable(self, sources: Sequence[Mapping[str, Any]]) -> int:
        """Return how many candidates have a date the boost can read."""
        return sum(
            parse_date(_first(field_value(source, self.field))) is not None
            for source in sources
        )

    def factors(self, sources: Sequence[Mapping[str, Any]]) -> list[float]:
        """Return one factor in (0, 1] per candidate."""
        half_life = parse_duration(self.half_life).total_seconds()
        origin = self.origin or datetime.now(timezone.utc)
        if origin.tzinfo is None:
            origin = origin.replace(tzinfo=timezone.utc)
        result = []
        for source in sources:
            date = parse_date(_first(field_value(source, self.field)))
            if date is None:
                result.append(self.missing)
                continue
            age = max(0.0, (origin - date).total_seconds())
            result.append(0.5 ** (age / half_life))
        return result


@dataclass(frozen=True)
class NumericBoost:
    """Raise or lower relevance with a numeric field, relative to the pool.

    The factor is `1 + weight * x`, where `x` is the candidate's value after
    `modifier`, divided by the largest such value in the pool, so in [0, 1].
    A negative weight (above -1) favours small values, such as a rank.

    Attributes:
        field: Numeric field, read from each hit's `_source`.
        weight: Strength of the boost; the factor stays in [1, 1 + weight].
        modifier: `log1p` damps large values; `linear` uses them as they are.
        missing: Factor for a candidate without a number in the field.
    """

    field: str
    weight: float = 0.5
    modifier: Literal["log1p", "linear"] = "log1p"
    missing: float = 1.0

    def __post_init__(self) -> None:
        if not math.isfinite(self.weight) or self.weight <= -1:
            raise ConfigurationError(
                f"NumericBoost weight for {self.field!r} must be a number above -1, "
                f"got {self.weight}"
            )
        if self.modifier not in ("log1p", "linear"):
            raise ConfigurationError(
                f"NumericBoost modifier {self.modifier!r} is not log1p or linear"
            )
        _check_factor(self.missing, "missing")

    @property
    def source_fields(self) -> tuple[str, ...]:
        """The `_source` fields the boost reads."""
        return (self.field,)

    def readable(self, sources: Sequence[Mapping[str, Any]]) -> int:
        """Return how many candidates have a number the boost can read."""
        return sum(_number(source, self.field) is not None for source in sources)

    def factors(self, sources: Sequence[Mapping[str, Any]]) -> list[float]:
        """Return one factor per candidate."""
        values: list[float | None] = []
        for source in sources:
            number = _number(source, self.field)
            if number is None:
                values.append(None)
                continue
            number = max(0.0, number)
            values.append(math.log1p(number) if self.modifier == "log1p" else number)
        largest = max((value for value in values if value is not None), default=0.0)
        return [
            self.missing
            if value is None
            else 1.0 + self.weight * (value / largest if largest > 0 else 0.0)
            for value in values
        ]


@dataclass(frozen=True)
class SharedValues:
    """Raise relevance with the categorical values a candidate shares with the examples.

    The factor is `1 + weight * overlap`, where `overlap` is the Jaccard
    overlap of the candidate's values with the examples' values, averaged
    over the fields. A field that neither side has counts as no overlap.

    Attributes:
        fields: Keyword fields, such as a section or a tag list.
        weight: Strength of the boost; the factor stays in [1, 1 + weight].
        values: The examples' values, one set per field.
    """

    fields: tuple[str, ...]
    weight: float
    values: tuple[frozenset[str], ...]

    @classmethod
    def of_examples(
        cls,
        fields: Sequence[str],
        weight: float,
        examples: Sequence[Mapping[str, Any]],
    ) -> SharedValues:
        """Collect the values of `fields` over the examples' `_source`."""
        _check_factor(weight, "categorical weight")
        values = tuple(
            frozenset(
                value
                for source in examples
                for value in _values(field_value(source, name))
            )
            for name in fields
        )
        return cls(tuple(fields), weight, values)

    @property
    def source_fields(self) -> tuple[str, ...]:
        """The `_source` fields the boost reads."""
        return self.fields

    def factors(self, sources: Sequence[Mapping[str, Any]]) -> list[float]:
        """Return one factor in [1, 1 + weight] per candidate."""
        result = []
        for source in sources:
            overlaps = []
            for name, wanted in zip(self.fields, self.values, strict=True):
                have = set(_values(field_value(source, name)))
                union = wanted | have
                overlaps.append(len(wanted & have) / len(union) if union else 0.0)
            result.append(1.0 + self.weight * sum(overlaps) / len(overlaps))
        return result


Boost = Recency | NumericBoost | SharedValues


def relevance(scores: Sequence[float]) -> list[float]:
    """Scale fused scores to (0, 1] over the pool: the best is 1, the worst `MIN_RELEVANCE`."""
    if not scores:
        return []
    low, high = min(scores), max(scores)
    if high == low:
        return [1.0] * len(scores)
    return [max(MIN_RELEVANCE, (score - low) / (high - low)) for score in scores]


def boost_factors(
    boosts: Sequence[Boost], sources: Sequence[Mapping[str, Any]]
) -> list[float]:
    """Return the product of every boost's factor, per candidate."""
    product = [1.0] * len(sources)
    for boost in boosts:
        for position, factor in enumerate(boost.factors(sources)):
            product[position] *= factor
    return product


def mmr_order(
    relevances: Sequence[float],
    vectors: NDArray[np.float32],
    *,
    diversity: float,
    count: int,
) -> list[tuple[int, float]]:
    """Pick `count` candidates by maximal marginal relevance.

    Each step takes the candidate with the highest
    `(1 - diversity) * relevance - diversity * max cosine to those picked`.
    With diversity 0 the order is by relevance alone.

    Returns:
        (candidate position, MMR value when picked) pairs, in pick order.
    """
    if not 0.0 <= diversity <= 1.0:
        raise ConfigurationError(f"diversity must be from 0 to 1, got {diversity}")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = vectors / np.where(norms == 0, 1.0, norms)
    similarity = unit @ unit.T
    remaining = list(range(len(relevances)))
    closest = np.full(len(relevances), -np.inf)
    picked: list[tuple[int, float]] = []
    while remaining and len(picked) < count:
        best, best_value = remaining[0], -math.inf
        for position in remaining:
            penalty = closest[position] if picked else 0.0
            value = (1 - diversity) * relevances[position] - diversity * penalty
            if value > best_value:
                best, best_value = position, value
        picked.append((best, float(best_value)))
        remaining.remove(best)
        closest = np.maximum(closest, similarity[best])
    return picked


def _values(value: Any) -> list[str]:
    """Return a field's scalar values as strings; lists give one per item."""
    items = value if isinstance(value, list) else [value]
    return [str(item) for item in items if isinstance(item, (str, int, float, bool))]


def _number(source: Mapping[str, Any], name: str) -> float | None:
    value = _first(field_value(source, name))
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _first(value: Any) -> Any:
    if isinstance(value, list):
        return value[0] if value else None
    return value


def _check_factor(value: float, name: str) -> None:
    if not math.isfinite(value) or value < 0:
        raise ConfigurationError(f"{name} must be a finite number >= 0, got {value}")
