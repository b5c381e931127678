"""Fusion of several rankings: reciprocal rank fusion, or normalized score fusion."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

Normalization = Literal["min_max", "z_score", "l2"]
NORMALIZATIONS: tuple[Normalization, ...] = ("min_max", "z_score", "l2")

# The same default as the rank_constant of OpenSearch's score-ranker-processor
# (neural-search 2.19+), so client-side and server-side fusion agree.
DEFAULT_RANK_CONSTANT = 60

# The normalization-processor of neural-search (2.19) gives the lowest score
# of a sub-query this value instead of 0, so it still counts as found. A
# document the sub-query did not return scores 0.
MIN_MAX_FLOOR = 0.001


@dataclass(frozen=True)
class FusedItem:
    """One document after fusion.

    Attributes:
        id: The document id.
        score: The fused score: for RRF the sum over rankings of
            1 / (rank_constant + rank), for score fusion the weighted mean of
            the normalized scores.
        ranks: The 1-based rank in each ranking that contains the document.
        normalized: For score fusion, the normalized score in each ranking.
    """

    id: str
    score: float
    ranks: dict[str, int] = field(default_factory=dict)
    normalized: dict[str, float] = field(default_factory=dict)


def reciprocal_rank_fusion(
    rankings: Mapping[str, Sequence[str]], *, rank_constant: int = DEFAULT_RANK_CONSTANT
) -> list[FusedItem]:
    """Fuse rankings of document ids by reciprocal rank.

    A document missing from a ranking adds nothing for it. Ties in the fused
    score go to the document with the better best rank, then to the smaller
    id, so the order is deterministic.

    Args:
        rankings: Ranking name to ids, best first. An id repeated within one
            ranking counts at its first position.
        rank_constant: The k in 1 / (k + rank); larger values flatten the
            advantage of top ranks.

    Raises:
        ValueError: `rank_constant` is below 1.
    """
    if rank_constant < 1:
        raise ValueError(
            f"rank_constant must be >= 1 (as in OpenSearch), got {rank_constant}"
        )
    scores: dict[str, float] = {}
    ranks: dict[str, dict[str, int]] = {}
    for name, ids in rankings.items():
        seen: set[str] = set()
        for position, doc_id in enumerate(ids, start=1):
            if doc_id in seen:
                continue
            seen.add(doc_id)
            scores[doc_id] = scores.get(doc_id, 0.0) + 1.0 / (rank_constant + position)
            ranks.setdefault(doc_id, {})[name] = position
    fused = [
        FusedItem(doc_id, score, ranks[doc_id]) for doc_id, score in scores.items()
    ]
    fused.sort(key=lambda item: (-item.score, min(item.ranks.values()), item.id))
    return fused


def normalize_scores(scores: Sequence[float], method: Normalization) -> list[float]:
    """Normalize one ranking's raw scores into values that are never NaN or infinite.

    `min_max` and `l2` follow the normalization-processor of OpenSearch's
    neural-search plugin (2.19), so client-side and server-side fusion rank alike:

    - `min_max`: (s - min) / (max - min), in (0, 1]. The lowest score gets
      `MIN_MAX_FLOOR` instead of 0, and every score gets 1.0 when all are equal.
    - `l2`: s / sqrt(sum of s squared); all 0.0 when every score is 0.
    - `z_score`: (s - mean) / population standard deviation; all 0.0 when
      every score is equal. The plugin's z_score (3.0+) differs: it uses the
      sample standard deviation and raises scores at or below the mean to 0.001.

    Raises:
        ValueError: `method` is not one of `NORMALIZATIONS`, or a score is not finite.
    """
    if method not in NORMALIZATIONS:
        raise ValueError(
            f"normalization {method!r} is not one of {', '.join(NORMALIZATIONS)}"
        )
    values = [float(score) for score in scores]
    if not all(math.isfinite(value) for value in values):
        raise ValueError(f"scores must be finite numbers, got {values}")
    if not values:
        return []
    if method == "min_max":
        low, high = min(values), max(values)
        if high == low:
            return [1.0] * len(values)
        scaled = [(value - low) / (high - low) for value in values]
        return [value if value > 0.0 else MIN_MAX_FLOOR for value in scaled]
    if method == "z_score":
        mean = sum(values) / len(values)
        deviation = math.sqrt(
            sum((value - mean) ** 2 for value in values) / len(values)
        )
        if deviation == 0:
            return [0.0] * len(values)
        return [(value - mean) / deviation for value in values]
    length = math.sqrt(sum(value * value for value in values))
    if length == 0:
        return [0.0] * len(values)
    return [value / length for value in values]


def score_fusion(
    rankings: Mapping[str, Sequence[tuple[str, float]]],
    *,
    normalization: Normalization = "min_max",
    weights: Mapping[str, float] | None = None,
) -> list[FusedItem]:
    """Fuse rankings by the weighted arithmetic mean of their normalized scores.

    Under `min_max` and `l2` a document missing from a ranking scores 0.0 there
    and that ranking's weight still counts, as in the neural-search plugin's
    arithmetic_mean. Under `z_score`, whose values go below 0, it takes that
    ranking's lowest normalized score instead: it did no better than the last
    candidate that ranking returned. Ties go to the better best rank, then to
    the smaller id.

    Args:
        rankings: Ranking name to (id, raw score) pairs, best first.
        normalization: How each ranking's scores are made comparable.
        weights: Weight per ranking name; missing names weigh 1.0. The mean
            divides by their sum, so only their ratios matter.

    Raises:
        ValueError: A weight is negative, or all weights are zero.
    """
    weights = dict(weights or {})
    for name, weight in weights.items():
        if weight < 0 or not math.isfinite(weight):
            raise ValueError(
                f"weight of {name!r} must be a finite number >= 0, got {weight}"
            )
    used = {name: weights.get(name, 1.0) for name in rankings}
    total_weight = sum(used.values())
    if total_weight <= 0:
        raise ValueError(
            f"the weights {used} add up to 0; give at least one a positive weight"
        )

    normalized: dict[str, dict[str, float]] = {}
    ranks: dict[str, dict[str, int]] = {}
    missing: dict[str, float] = {}
    for name, hits in rankings.items():
        firsts: dict[str, float] = {}
        for doc_id, score in hits:
            firsts.setdefault(doc_id, score)
        values = normalize_scores(list(firsts.values()), normalization)
        missing[name] = min(values) if values and normalization == "z_score" else 0.0
        for position, (doc_id, value) in enumerate(
            zip(firsts, values, strict=True), start=1
        ):
            normalized.setdefault(doc_id, {})[name] = value
            ranks.setdefault(doc_id, {})[name] = position

    fused = []
    for doc_id, parts in normalized.items():
        score = sum(used[name] * parts.get(name, missing[name]) for name in rankings)
        fused.append(FusedItem(doc_id, score / total_weight, ranks[doc_id], parts))
    fused.sort(key=lambda item: (-item.score, min(item.ranks.values()), item.id))
    return fused
