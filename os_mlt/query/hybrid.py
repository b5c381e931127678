"""`hybrid_similar` and `similar_to_text`: documents like an example, by k-NN and BM25 fused."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from opensearchpy import OpenSearch, TransportError

from ..client import resolve_client
from ..encoder import Encoder, document_text, field_value
from ..errors import (
    ConfigurationError,
    DocumentNotFoundError,
    OsMltError,
    SearchPipelineError,
    VectorMissingError,
)
from ..settings import Settings
from .builders import build_knn_search, build_lookup, build_mlt_search
from .filters import FilterInput, build_filter_clauses
from .fusion import DEFAULT_RANK_CONSTANT, reciprocal_rank_fusion, score_fusion
from .requests import SearchRequest
from .server import (
    Execution,
    build_hybrid_search,
    build_search_pipeline,
    search_with_pipeline,
    use_server_fusion,
)

logger = logging.getLogger(__name__)

# Hits each component contributes to the fusion. A document ranked below 100
# by one component adds at most 1/160 to its fused score with the default rank
# constant, so deeper lists change little and cost latency.
DEFAULT_NUM_CANDIDATES = 100

# The k-NN plugin rejects a `knn` query with k above 10,000.
MAX_NUM_CANDIDATES = 10_000

Fusion = Literal["rrf", "min_max", "z_score", "l2"]
FUSIONS: tuple[Fusion, ...] = ("rrf", "min_max", "z_score", "l2")

KNN = "knn"
BM25 = "bm25"


@dataclass(frozen=True)
class SimilarHit:
    """One result of `hybrid_similar`.

    Attributes:
        id: The document `_id`.
        index: The concrete index that contains it.
        score: The fused score: RRF, or the weighted mean of normalized scores.
        knn_rank: 1-based rank in the k-NN candidates, None if absent.
        knn_score: The k-NN `_score` (for cosine: (1 + cosine) / 2), None if absent.
        bm25_rank: 1-based rank in the `more_like_this` candidates, None if absent.
        bm25_score: The BM25 `_score`, None if absent.
        source: The requested `_source` fields.
        knn_normalized: The normalized k-NN score under score fusion, else None.
        bm25_normalized: The normalized BM25 score under score fusion, else None.
    """

    id: str
    index: str
    score: float
    knn_rank: int | None
    knn_score: float | None
    bm25_rank: int | None
    bm25_score: float | None
    source: dict[str, Any] = field(default_factory=dict)
    knn_normalized: float | None = None
    bm25_normalized: float | None = None


@dataclass(frozen=True)
class SimilarResult:
    """Hits of `hybrid_similar` and the searches that produced them."""

    doc_id: str
    hits: list[SimilarHit]
    requests: list[SearchRequest]

    def to_dev_tools(self) -> str:
        """Return every search that was sent, ready to paste into Dev Tools."""
        return "\n\n".join(request.to_dev_tools() for request in self.requests)


def hybrid_similar(
    doc_id: str,
    k: int = 10,
    *,
    filters: Iterable[FilterInput] | None = None,
    settings: Settings | None = None,
    client: OpenSearch | None = None,
    index: str | None = None,
    num_candidates: int | None = None,
    offset: int = 0,
    id_field: str | None = None,
    fusion: Fusion = "rrf",
    rank_constant: int = DEFAULT_RANK_CONSTANT,
    weights: Mapping[str, float] | None = None,
    source_fields: Sequence[str] | None = None,
    mlt_params: Mapping[str, Any] | None = None,
    encoder: Encoder | None = None,
    exclude_same: Sequence[str] = (),
    max_similarity: float | None = None,
    execution: Execution = "auto",
) -> SimilarResult:
    """Find the `k` documents most like `doc_id` by meaning and by shared words.

    Reads the document's vector, then sends one `_msearch` with a k-NN search
    on that vector and a BM25 `more_like_this` search on the document. Both
    searches apply the same filters and leave out the document itself. The two
    rankings are fused with reciprocal rank fusion, or with score fusion when
    `fusion` names a normalization.

    With `execution` "auto" or "server" and the neural-search plugin (2.19 or
    later) on every node, the two searches go instead as the sub-queries of
    one `hybrid` query, and a search pipeline fuses them on the server by the
    same formulas. Its hits carry
    only the fused score: `knn_rank`, `knn_score`, `bm25_rank`, `bm25_score`
    and the normalized scores are None, because the hybrid query returns them
    only through `explain`. On an index with several shards each sub-query
    contributes `num_candidates` hits per shard there, so the pool is larger
    than on the client.

    Args:
        doc_id: `_id` of the example document.
        k: Hits to return.
        filters: Term, Terms, Range, Exists or Not objects, compact strings such
            as `"section=python"`, or raw Query DSL clauses; every hit matches all.
        settings: Connection, index and field settings; defaults read `OS_MLT_*`.
        client: An existing client to use instead of one built from `settings`.
        index: Index or alias, overriding `settings.index`.
        offset: Fused hits to skip, for paging. The pool is the union of both
            components' `num_candidates` hits, so pages taken with the same
            `num_candidates` do not overlap or reorder. The last page may be short.
        id_field: Field that contains `doc_id` as a business key, such as `sku`;
            None looks `doc_id` up as the `_id`.
        num_candidates: Hits each component returns for the fusion, from half of
            `offset + k` to
            10,000 (the k-NN plugin's maximum); None means the larger of 100 and `k`.
        fusion: `rrf` fuses ranks; `min_max`, `z_score` and `l2` normalize each
            component's scores that way and take their weighted mean.
        rank_constant: The RRF constant.
        weights: Score fusion weights by component, `knn` and `bm25`; 1.0 each
            when not given. RRF ignores them.
        source_fields: `_source` fields returned per hit; None returns all but
            the vector and its meta object.
        mlt_params: Overrides of the `more_like_this` parameters.
        exclude_same: Fields whose values the example shares with documents to
            leave out, such as a parent or source package field.
        max_similarity: Leave out near-duplicates: k-NN candidates whose cosine
            similarity to the example reaches this value (for example 0.98).
            The page is filled from the rest of the candidate pool.
        encoder: Model used only when the stored vector cannot be read and the
            document's text must be encoded again; loaded on demand otherwise.
        execution: Where to fuse. `auto` fuses on the server when the cluster
            can, but keeps `z_score` and `max_similarity` on the client, because
            they need it. `server` raises when the cluster cannot fuse this
            search, and `client` always sends the `_msearch`.

    Raises:
        DocumentNotFoundError: No document has `doc_id`.
        VectorMissingError: The document has no vector; run the backfill.
        ConfigurationError: `k` or `num_candidates` is out of range, or
            `execution="server"` and the cluster cannot fuse this search.
        SearchPipelineError: The cluster rejected the search pipeline. Under
            `auto` a rejection for lack of permission falls back to the
            client instead, with a warning.
    """
    settings = settings or Settings()
    name = index or settings.require_index()
    num_candidates = _check_window(k, offset, num_candidates)
    _check_fusion(fusion, weights)
    client = resolve_client(client, settings)
    positive, negative = build_filter_clauses(filters)
    source = _source_option(settings, source_fields)

    if max_similarity is not None and not -1.0 <= max_similarity <= 1.0:
        raise ConfigurationError(
            f"max_similarity must be a cosine similarity from -1 to 1, got {max_similarity}"
        )
    lookup_fields = [
        settings.vector_field,
        settings.meta_field,
        *settings.text_fields,
        *exclude_same,
    ]
    lookup_body = build_lookup(doc_id, lookup_fields, id_field=id_field)
    try:
        example = _fetch_example(client, name, doc_id, lookup_body)
    except TransportError as error:
        if not isinstance(error.status_code, int) or error.status_code < 500:
            raise
        # NOTE: k-NN 3.5 rebuilds vectors for _source from the vector files
        # (derived source), and after some segment merges that read fails with
        # AlreadyClosedException. The document's text, encoded again, gives the
        # same vector as long as the text has not changed since the backfill.
        logger.warning(
            "Reading the vector of %s from %s failed (%s); encoding its text instead",
            doc_id,
            name,
            error.error,
        )
        lookup_body = build_lookup(doc_id, lookup_fields[1:], id_field=id_field)
        example = _fetch_example(client, name, doc_id, lookup_body)
    vector = example["_source"].get(settings.vector_field)
    if not vector:
        # The vector is unreadable, or the mapping leaves it out of _source.
        vector = _encode_example(example, settings, encoder)

    example_id = str(example["_id"])
    negative = negative + _same_value_clauses(example["_source"], exclude_same)
    hits, searches = _search_and_fuse(
        client,
        name,
        settings,
        vector=vector,
        like=[{"_index": example["_index"], "_id": example_id}],
        exclude_ids=[example_id],
        filters=(positive, negative),
        source=source,
        window=_Window(k, offset, num_candidates, max_similarity),
        mlt_params=mlt_params,
        fusion=(fusion, rank_constant, weights),
        labels=(
            f"k-NN: nearest neighbours of {doc_id}'s vector",
            f"BM25: more_like_this {doc_id}",
        ),
        execution=execution,
    )
    requests = [
        SearchRequest(f"Look up {doc_id}: its vector and text", name, lookup_body),
        *searches,
    ]
    return SimilarResult(doc_id=example_id, hits=hits, requests=requests)


@dataclass(frozen=True)
class _Window:
    """The page of fused hits to return: `k` hits after `offset`, from `num_candidates` per component."""

    k: int
    offset: int
    num_candidates: int
    max_similarity: float | None = None


def _search_and_fuse(
    client: OpenSearch,
    name: str,
    settings: Settings,
    *,
    vector: Sequence[float],
    like: list[Any],
    exclude_ids: list[str],
    filters: tuple[list[dict[str, Any]], list[dict[str, Any]]],
    source: Any,
    window: _Window,
    mlt_params: Mapping[str, Any] | None,
    fusion: tuple[Fusion, int, Mapping[str, float] | None],
    labels: tuple[str, str],
    execution: Execution = "auto",
) -> tuple[list[SimilarHit], list[SearchRequest]]:
    positive, negative = filters
    knn_body = build_knn_search(
        settings.vector_field,
        vector,
        k=window.num_candidates,
        filters=positive,
        must_not=negative,
        exclude_ids=exclude_ids,
        source=source,
    )
    mlt_body = build_mlt_search(
        settings.text_fields,
        like,
        size=window.num_candidates,
        filters=positive,
        must_not=negative,
        exclude_ids=exclude_ids,
        source=source,
        mlt_params=mlt_params,
    )
    method, rank_constant, weights = fusion
    if use_server_fusion(
        client,
        execution,
        fusion=method,
        rank_constant=rank_constant,
        max_similarity=window.max_similarity,
    ):
        try:
            return _fuse_on_server(client, name, knn_body, mlt_body, window, fusion)
        except SearchPipelineError as error:
            if execution == "server" or not error.forbidden:
                raise
            logger.warning("%s; fusing client-side instead", error)

    knn_hits, mlt_hits = _msearch(client, name, [knn_body, mlt_body])
    fused = _fuse(
        knn_hits,
        mlt_hits,
        k=2 * window.num_candidates,
        fusion=method,
        rank_constant=rank_constant,
        weights=weights,
    )
    if window.max_similarity is not None:
        fused = [
            hit for hit in fused if not _near_duplicate(hit, window.max_similarity)
        ]
    requests = [
        SearchRequest(labels[0], name, knn_body),
        SearchRequest(labels[1], name, mlt_body),
    ]
    return fused[window.offset : window.offset + window.k], requests


def _fuse_on_server(
    client: OpenSearch,
    name: str,
    knn_body: dict[str, Any],
    mlt_body: dict[str, Any],
    window: _Window,
    fusion: tuple[Fusion, int, Mapping[str, float] | None],
) -> tuple[list[SimilarHit], list[SearchRequest]]:
    """Send the two searches as one hybrid query that a search pipeline fuses."""
    method, rank_constant, weights = fusion
    body = build_hybrid_search(
        knn_body["query"],
        mlt_body["query"],
        size=window.k,
        from_=window.offset,
        pagination_depth=window.num_candidates,
        source=knn_body["_source"],
    )
    pipeline = build_search_pipeline(
        method, weights=weights, rank_constant=rank_constant
    )
    hits, requests = search_with_pipeline(client, name, body, pipeline)
    fused = [
        SimilarHit(
            id=hit["_id"],
            index=hit["_index"],
            score=float(hit["_score"]),
            knn_rank=None,
            knn_score=None,
            bm25_rank=None,
            bm25_score=None,
            source=hit.get("_source", {}),
        )
        for hit in hits
    ]
    return fused, requests


def _near_duplicate(hit: SimilarHit, max_similarity: float) -> bool:
    # For cosinesimil the k-NN plugin scores (1 + cosine) / 2.
    if hit.knn_score is None:
        return False
    return 2.0 * hit.knn_score - 1.0 >= max_similarity


def _same_value_clauses(
    source: Mapping[str, Any], fields: Sequence[str]
) -> list[dict[str, Any]]:
    """Return `terms` clauses matching documents that share a field value with `source`."""
    clauses: list[dict[str, Any]] = []
    for name in fields:
        value = field_value(source, name)
        values = value if isinstance(value, list) else [value]
        scalars = [item for item in values if isinstance(item, (str, int, float, bool))]
        if scalars:
            clauses.append({"terms": {name: scalars}})
    return clauses


def _check_window(k: int, offset: int, num_candidates: int | None) -> int:
    """Validate the page; return the candidates per component."""
    if k < 1:
        raise ConfigurationError(f"k must be at least 1, got {k}")
    if offset < 0:
        raise ConfigurationError(f"offset must be 0 or more, got {offset}")
    if num_candidates is None:
        num_candidates = max(DEFAULT_NUM_CANDIDATES, k)
    if 2 * num_candidates < offset + k:
        raise ConfigurationError(
            f"offset + k ({offset + k}) is beyond the candidate pool, at most twice "
            f"num_candidates ({num_candidates}) when the two components share no hit; "
            "raise num_candidates (CLI: --num-candidates) and keep it the same for every page"
        )
    if num_candidates > MAX_NUM_CANDIDATES:
        raise ConfigurationError(
            f"num_candidates ({num_candidates}) is above {MAX_NUM_CANDIDATES}, the largest k "
            "the k-NN plugin accepts; lower num_candidates or k"
        )
    return num_candidates


def _check_fusion(fusion: str, weights: Mapping[str, float] | None) -> None:
    if fusion not in FUSIONS:
        raise ConfigurationError(
            f"fusion {fusion!r} is not one of {', '.join(FUSIONS)}"
        )
    unknown = set(weights or {}) - {KNN, BM25}
    if unknown:
        raise ConfigurationError(
            f"weights name unknown components {sorted(unknown)}; use {KNN!r} and {BM25!r}"
        )


def similar_to_text(
    text: str,
    k: int = 10,
    *,
    filters: Iterable[FilterInput] | None = None,
    settings: Settings | None = None,
    client: OpenSearch | None = None,
    index: str | None = None,
    encoder: Encoder | None = None,
    offset: int = 0,
    num_candidates: int | None = None,
    fusion: Fusion = "rrf",
    rank_constant: int = DEFAULT_RANK_CONSTANT,
    weights: Mapping[str, float] | None = None,
    source_fields: Sequence[str] | None = None,
    mlt_params: Mapping[str, Any] | None = None,
    execution: Execution = "auto",
) -> SimilarResult:
    """Find the `k` documents most like a free text, by k-NN and BM25 fused.

    The text is encoded with the configured model (loaded on first use) and
    given to `more_like_this` as `like` text. Arguments as in `hybrid_similar`.

    Raises:
        ConfigurationError: The text is empty, or an argument is out of range.
    """
    settings = settings or Settings()
    name = index or settings.require_index()
    if not text.strip():
        raise ConfigurationError(
            "the text is empty; give some words to find similar documents"
        )
    num_candidates = _check_window(k, offset, num_candidates)
    _check_fusion(fusion, weights)
    client = resolve_client(client, settings)
    encoder = encoder or Encoder(settings.model, device=settings.device)
    vector = encoder.encode([text])[0].tolist()
    hits, requests = _search_and_fuse(
        client,
        name,
        settings,
        vector=vector,
        like=[text],
        exclude_ids=[],
        filters=build_filter_clauses(filters),
        source=_source_option(settings, source_fields),
        window=_Window(k, offset, num_candidates),
        mlt_params=mlt_params,
        fusion=(fusion, rank_constant, weights),
        labels=(
            "k-NN: nearest neighbours of the text's vector",
            "BM25: more_like_this the text",
        ),
        execution=execution,
    )
    return SimilarResult(doc_id="", hits=hits, requests=requests)


def _source_option(settings: Settings, source_fields: Sequence[str] | None) -> Any:
    if source_fields is not None:
        return list(source_fields)
    return {"excludes": [settings.vector_field, settings.meta_field]}


def _fetch_example(
    client: OpenSearch, index: str, doc_id: str, body: dict[str, Any]
) -> dict[str, Any]:
    response = client.search(index=index, body=body)
    hits = response["hits"]["hits"]
    if not hits:
        raise DocumentNotFoundError(
            f"document {doc_id!r} not found in {index!r}; check the id "
            f"(GET {index}/_doc/{doc_id}) and the index name"
        )
    if len(hits) > 1:
        holders = ", ".join(hit["_index"] for hit in hits)
        raise ConfigurationError(
            f"id {doc_id!r} exists in several indices behind {index!r} ({holders}); "
            "name one concrete index with --index"
        )
    hit: dict[str, Any] = hits[0]
    return hit


def _encode_example(
    example: dict[str, Any], settings: Settings, encoder: Encoder | None
) -> list[float]:
    """Encode the example's text when its stored vector cannot be read.

    Raises:
        VectorMissingError: The backfill has not embedded the document, or
            embedded it with another model.
    """
    meta = example["_source"].get(settings.meta_field) or {}
    if not meta:
        raise VectorMissingError(
            f"document {example['_id']!r} in {example['_index']!r} has no vector in "
            f"{settings.vector_field!r}; run `os-mlt backfill` on the index first"
        )
    encoder = encoder or Encoder(settings.model, device=settings.device)
    if meta.get("model") != encoder.identity:
        raise VectorMissingError(
            f"the vector of {example['_id']!r} cannot be read, and it was made by "
            f"{meta.get('model')!r}, not by the configured model {encoder.identity!r}; "
            "run `os-mlt backfill` with the configured model"
        )
    text = document_text(example["_source"], settings.text_fields)
    vector: list[float] = encoder.encode([text])[0].tolist()
    return vector


def _msearch(
    client: OpenSearch, index: str, bodies: Sequence[dict[str, Any]]
) -> list[list[dict[str, Any]]]:
    lines: list[dict[str, Any]] = []
    for body in bodies:
        lines.append({"index": index})
        lines.append(body)
    response = client.msearch(body=lines)
    results: list[list[dict[str, Any]]] = []
    for item in response["responses"]:
        if "error" in item:
            error = item["error"]
            reason = (
                error.get("root_cause", [error])[0].get("reason", error)
                if isinstance(error, dict)
                else error
            )
            raise OsMltError(f"search on {index!r} failed: {reason}")
        results.append(item["hits"]["hits"])
    return results


def _fuse(
    knn_hits: list[dict[str, Any]],
    mlt_hits: list[dict[str, Any]],
    *,
    k: int,
    fusion: Fusion,
    rank_constant: int,
    weights: Mapping[str, float] | None,
) -> list[SimilarHit]:
    by_id: dict[str, dict[str, Any]] = {}
    scores: dict[str, dict[str, float]] = {}
    for name, hits in ((KNN, knn_hits), (BM25, mlt_hits)):
        for hit in hits:
            by_id.setdefault(hit["_id"], hit)
            scores.setdefault(hit["_id"], {})[name] = float(hit["_score"])
    if fusion == "rrf":
        fused = reciprocal_rank_fusion(
            {
                KNN: [hit["_id"] for hit in knn_hits],
                BM25: [hit["_id"] for hit in mlt_hits],
            },
            rank_constant=rank_constant,
        )
    else:
        fused = score_fusion(
            {
                KNN: [(hit["_id"], float(hit["_score"])) for hit in knn_hits],
                BM25: [(hit["_id"], float(hit["_score"])) for hit in mlt_hits],
            },
            normalization=fusion,
            weights=weights,
        )
    results: list[SimilarHit] = []
    for item in fused[:k]:
        hit = by_id[item.id]
        results.append(
            SimilarHit(
                id=item.id,
                index=hit["_index"],
                score=item.score,
                knn_rank=item.ranks.get(KNN),
                knn_score=scores[item.id].get(KNN),
                bm25_rank=item.ranks.get(BM25),
                bm25_score=scores[item.id].get(BM25),
                source=hit.get("_source", {}),
                knn_normalized=item.normalized.get(KNN),
                bm25_normalized=item.normalized.get(BM25),
            )
        )
    return results
