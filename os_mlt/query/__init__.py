"""Query building and hybrid search."""

from .builders import (
    DEFAULT_MLT_PARAMS,
    build_knn_search,
    build_lookup,
    build_mlt_search,
)
from .filters import (
    Exists,
    Filter,
    FilterInput,
    Not,
    Range,
    Term,
    Terms,
    build_filter_clauses,
    parse_filter,
)
from .fusion import DEFAULT_RANK_CONSTANT, FusedItem, reciprocal_rank_fusion
from .hybrid import (
    SearchRequest,
    SimilarHit,
    SimilarResult,
    hybrid_similar,
    similar_to_text,
)
from .rerank import Boost, NumericBoost, Recency, SharedValues

__all__ = [
    "DEFAULT_MLT_PARAMS",
    "DEFAULT_RANK_CONSTANT",
    "Boost",
    "Exists",
    "Filter",
    "FilterInput",
    "FusedItem",
    "Not",
    "NumericBoost",
    "Range",
    "Recency",
    "SearchRequest",
    "SharedValues",
    "SimilarHit",
    "SimilarResult",
    "Term",
    "Terms",
    "build_filter_clauses",
    "build_knn_search",
    "build_lookup",
    "build_mlt_search",
    "hybrid_similar",
    "parse_filter",
    "reciprocal_rank_fusion",
    "similar_to_text",
]
