"""Reciprocal rank fusion of several rankings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

# The same default as the rank_constant of OpenSearch's score-ranker-processor
# (neural-search 2.19+), so client-side and server-side fusion agree.
DEFAULT_RANK_CONSTANT = 60


@dataclass(frozen=True)
class FusedItem:
    """One document after fusion.

    Attributes:
        id: The document id.
        score: Sum over rankings of 1 / (rank_constant + rank).
        ranks: The 1-based rank in each ranking that contains the document.
    """

    id: str
    score: float
    ranks: dict[str, int] = field(default_factory=dict)


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
