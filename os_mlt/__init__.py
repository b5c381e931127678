"""Semantic "more like this" for existing OpenSearch indices.

`backfill` embeds the text fields of an index's documents and writes the
vectors into a `knn_vector` field; `hybrid_similar` then finds documents like
a given one by fusing k-NN and BM25 `more_like_this` rankings.
"""

from .client import make_client
from .encoder import Encoder, document_text
from .errors import (
    ConfigurationError,
    DocumentNotFoundError,
    IndexNotFoundError,
    MappingError,
    NodeError,
    OsMltError,
    SearchPipelineError,
    VectorMissingError,
)
from .indexer import BackfillReport, IndexBlockedError, ItemIssue, Progress, backfill
from .query import (
    Exists,
    Not,
    NumericBoost,
    Range,
    Recency,
    SimilarHit,
    SimilarResult,
    Term,
    Terms,
    hybrid_similar,
    parse_filter,
    reciprocal_rank_fusion,
    similar_to_text,
)
from .settings import Settings

__version__ = "0.1.0"

__all__ = [
    "BackfillReport",
    "ConfigurationError",
    "DocumentNotFoundError",
    "Encoder",
    "Exists",
    "IndexBlockedError",
    "IndexNotFoundError",
    "ItemIssue",
    "MappingError",
    "NodeError",
    "Not",
    "NumericBoost",
    "OsMltError",
    "Progress",
    "Range",
    "Recency",
    "SearchPipelineError",
    "Settings",
    "SimilarHit",
    "SimilarResult",
    "Term",
    "Terms",
    "VectorMissingError",
    "backfill",
    "document_text",
    "hybrid_similar",
    "make_client",
    "parse_filter",
    "reciprocal_rank_fusion",
    "similar_to_text",
]
