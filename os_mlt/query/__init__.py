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
    SimilarHit,
    SimilarResult,
    hybrid_similar,
    similar_to_text,
)
from .requests import SearchRequest
from .rerank import Boost, NumericBoost, Recency, SharedValues
from .server import Execution, build_hybrid_search, build_search_pipeline

__all__ = [
    "DEFAULT_MLT_PARAMS",
    "DEFAULT_RANK_CONSTANT",
    "Boost",
    "Execution",
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
    "build_hybrid_search",
    "build_knn_search",
    "build_lookup",
    "build_mlt_search",
    "build_search_pipeline",
    "hybrid_similar",
    "parse_filter",
    "reciprocal_rank_fusion",
    "similar_to_text",
]
