"""`hybrid_similar` and `similar_to_text`: documents like an example, by k-NN and BM25 fused."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
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
from ..settings import FUSIONS, Fusion, Settings
from .builders import build_knn_search, build_lookup, build_mlt_search
from .filters import FilterInput, build_filter_clauses
from .fusion import reciprocal_rank_fusion, score_fusion
from .requests import SearchRequest
from .rerank import (
    Boost,
    NumericBoost,
    Recency,
    SharedValues,
    boost_factors,
    mmr_order,
    relevance,
)
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
# constant, so deeper lists change little and cost latency. On the Debian
# protocol the window `os-mlt tune` chose on other queries (50) scored lower
# on held-out ones than 100 (docs/benchmarks.md).
DEFAULT_NUM_CANDIDATES = 100

# The k-NN plugin rejects a `knn` query with k above 10,000.
MAX_NUM_CANDIDATES = 10_000

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
        boost: The product of the boosts' factors; 1.0 without boosts.
        final_score: The value the final order follows when boosts or
            diversity reorder the pool (relevance times boost, or the MMR
            value); None when the fused score alone orders the hits.
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
    boost: float = 1.0
    final_score: float | None = None


@dataclass(frozen=True)
class SimilarResult:
    """Hits of `hybrid_similar` and the searches that produced them.

    `doc_id` names the examples' `_id`s, comma-separated, or is empty for a text.
    """

    doc_id: str
    hits: list[SimilarHit]
    requests: list[SearchRequest]

    def to_dev_tools(self) -> str:
        """Return every search that was sent, ready to paste into Dev Tools."""
        return "\n\n".join(request.to_dev_tools() for request in self.requests)


ExampleVectors = Literal["average", "best"]

# Weight of the negative examples' mean vector, subtracted from the positive
# query vector as in Rocchio feedback. A quarter of the positives' weight is an
# estimate that moves the query away from the negatives without leaving the
# positives' neighbourhood; it was not measured.
UNLIKE_WEIGHT = 0.25


def hybrid_similar(
    doc_id: str | Sequence[str],
    k: int = 10,
    *,
    unlike: str | Sequence[str] = (),
    example_vectors: ExampleVectors = "average",
    filters: Iterable[FilterInput] | None = None,
    settings: Settings | None = None,
    client: OpenSearch | None = None,
    index: str | None = None,
    num_candidates: int | None = None,
    offset: int = 0,
    id_field: str | None = None,
    fusion: Fusion | None = None,
    rank_constant: int | None = None,
    weights: Mapping[str, float] | None = None,
    source_fields: Sequence[str] | None = None,
    mlt_params: Mapping[str, Any] | None = None,
    encoder: Encoder | None = None,
    exclude_same: Sequence[str] = (),
    max_similarity: float | None = None,
    boosts: Sequence[Boost] = (),
    diversity: float | None = None,
    categorical_fields: Sequence[str] | None = None,
    categorical_weight: float | None = None,
    execution: Execution = "auto",
) -> SimilarResult:
    """Find the `k` documents most like one or more examples, by meaning and by shared words.

    Reads the examples' vectors, then sends one `_msearch` with a k-NN search
    and a BM25 `more_like_this` search. Both searches apply the same filters
    and leave out the examples themselves. The two rankings are fused with
    reciprocal rank fusion, or with score fusion when `fusion` names a
    normalization. Boosts and MMR diversity then reorder the fused pool.

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
        doc_id: `_id` of the example document, or a list of several examples.
        k: Hits to return.
        unlike: Ids of negative examples: k-NN moves its query vector away
            from them (Rocchio, weight `UNLIKE_WEIGHT`) and `more_like_this`
            gets them as `unlike`. They are never returned.
        example_vectors: With several examples, `average` searches k-NN once
            with the mean of their vectors; `best` searches once per example
            and scores each candidate by its closest example.
        filters: Term, Terms, Range, Exists or Not objects, compact strings such
            as `"section=python"`, or raw Query DSL clauses; every hit matches all.
        settings: Connection, index and field settings; defaults read `OS_MLT_*`.
        client: An existing client to use instead of one built from `settings`.
        index: Index or alias, overriding `settings.index`.
        offset: Fused hits to skip, for paging. The pool is the union of both
            components' `num_candidates` hits, so pages taken with the same
            `num_candidates` do not overlap or reorder. The last page may be short.
        id_field: Field that contains the ids as a business key, such as `sku`;
            None looks them up as `_id`.
        num_candidates: Hits each component returns for the fusion, from half of
            `offset + k` to
            10,000 (the k-NN plugin's maximum); None means the larger of
            `settings.num_candidates` (100 when unset) and `k`.
        fusion: `rrf` fuses ranks; `min_max`, `z_score` and `l2` normalize each
            component's scores that way and take their weighted mean. None
            means `settings.fusion`.
        rank_constant: The RRF constant; None means `settings.rank_constant`.
        weights: Score fusion weights by component, `knn` and `bm25`; a
            component left out weighs 1.0. None means `settings.weights`. RRF
            ignores them.
        source_fields: `_source` fields returned per hit; None returns all but
            the vector and its meta object.
        mlt_params: Overrides of the `more_like_this` parameters.
        exclude_same: Fields whose values an example shares with documents to
            leave out, such as a parent or source package field.
        max_similarity: Leave out near-duplicates: k-NN candidates whose cosine
            similarity to the example reaches this value (for example 0.98).
            The page is filled from the rest of the candidate pool.
        boosts: `Recency` and `NumericBoost` factors that multiply each
            candidate's relevance (its fused score scaled to (0, 1] over the pool).
        categorical_fields: Keyword fields, such as a section or tags, whose
            values shared with the examples raise a candidate (a `SharedValues`
            boost); None takes `settings.categorical_fields`.
        categorical_weight: Strength of that boost; None takes
            `settings.categorical_weight`.
        diversity: Reorder the first `num_candidates` of the pool by maximal
            marginal relevance: 0 keeps the order, 1 only avoids repeating
            what is already picked; 0.3 is a common choice.
        encoder: Model used only when a stored vector cannot be read and the
            document's text must be encoded again; loaded on demand otherwise.
        execution: Where to fuse. `auto` fuses on the server when the cluster
            can, but keeps `z_score` and `max_similarity` on the client, because
            they need it. `server` raises when the cluster cannot fuse this
            search, and `client` always sends the `_msearch`.

    Raises:
        DocumentNotFoundError: No document has one of the ids.
        VectorMissingError: An example has no vector; run the backfill.
        ConfigurationError: `k` or `num_candidates` is out of range, or the
            same id is both a positive and a negative example.
        ConfigurationError: `execution="server"` and the cluster cannot fuse
            this search.
        SearchPipelineError: The cluster rejected the search pipeline. Under
            `auto` a rejection for lack of permission falls back to the
            client instead, with a warning.
    """
    settings = settings or Settings()
    name = index or settings.require_index()
    positives = [doc_id] if isinstance(doc_id, str) else list(doc_id)
    negatives = [unlike] if isinstance(unlike, str) else list(unlike)
    _check_examples(positives, negatives, example_vectors)
    fusion, rank_constant, weights, num_candidates = _fill_from_settings(
        settings, k, fusion, rank_constant, weights, num_candidates
    )
    num_candidates = _check_window(k, offset, num_candidates)
    _check_fusion(fusion, weights, rank_constant)
    _check_rerank(max_similarity, diversity)
    client = resolve_client(client, settings)
    positive, negative = build_filter_clauses(filters)
    if categorical_fields is None:
        categorical_fields = settings.categorical_fields
    if categorical_weight is None:
        categorical_weight = settings.categorical_weight

    lookup_fields = [
        settings.vector_field,
        settings.meta_field,
        *settings.text_fields,
        *exclude_same,
        *categorical_fields,
        *([id_field] if id_field else []),
    ]
    examples, lookup = _fetch_examples(
        client, name, positives + negatives, lookup_fields, id_field
    )
    vectors = [_example_vector(example, settings, encoder) for example in examples]
    query_vectors = _query_vectors(
        vectors[: len(positives)], vectors[len(positives) :], example_vectors
    )
    liked = examples[: len(positives)]
    label = ", ".join(positives)
    if categorical_fields and categorical_weight > 0:
        shared = SharedValues.of_examples(
            categorical_fields, categorical_weight, [hit["_source"] for hit in liked]
        )
        for field_name, values in zip(shared.fields, shared.values, strict=True):
            if not values:
                logger.warning(
                    "Categorical field %r has no value in %s; check the field name "
                    "(GET %s/_mapping), it raises no candidate",
                    field_name,
                    label,
                    name,
                )
        boosts = [*boosts, shared]
    source = _source_option(settings, source_fields, boosts)
    negative = negative + [
        clause
        for example in liked
        for clause in _same_value_clauses(example["_source"], exclude_same)
    ]
    hits, searches = _search_and_fuse(
        client,
        name,
        settings,
        vectors=query_vectors,
        like=[_document_reference(hit) for hit in liked],
        unlike=[_document_reference(hit) for hit in examples[len(positives) :]],
        exclude_ids=[str(example["_id"]) for example in examples],
        filters=(positive, negative),
        source=source,
        window=_Window(k, offset, num_candidates, max_similarity),
        mlt_params=mlt_params,
        fusion=(fusion, rank_constant, weights),
        rerank=_Rerank(tuple(boosts), diversity, encoder),
        labels=(
            f"k-NN: nearest neighbours of {label}",
            f"BM25: more_like_this {label}",
        ),
        execution=execution,
    )
    requests = [
        replace(lookup, label=f"Look up {label}: vectors and text"),
        *searches,
    ]
    example_ids = ", ".join(str(hit["_id"]) for hit in liked)
    return SimilarResult(doc_id=example_ids, hits=hits, requests=requests)


@dataclass(frozen=True)
class _Window:
    """The page of fused hits to return: `k` hits after `offset`, from `num_candidates` per component."""

    k: int
    offset: int
    num_candidates: int
    max_similarity: float | None = None


@dataclass(frozen=True)
class _Rerank:
    """Boosts and diversity, which reorder the fused pool before the page is cut."""

    boosts: tuple[Boost, ...] = ()
    diversity: float | None = None
    encoder: Encoder | None = None


def _search_and_fuse(
    client: OpenSearch,
    name: str,
    settings: Settings,
    *,
    vectors: Sequence[Sequence[float]],
    like: list[Any],
    exclude_ids: list[str],
    filters: tuple[list[dict[str, Any]], list[dict[str, Any]]],
    source: Any,
    window: _Window,
    mlt_params: Mapping[str, Any] | None,
    fusion: tuple[Fusion, int, Mapping[str, float] | None],
    rerank: _Rerank,
    labels: tuple[str, str],
    unlike: Sequence[Any] = (),
    execution: Execution = "auto",
) -> tuple[list[SimilarHit], list[SearchRequest]]:
    positive, negative = filters
    # The candidates come without _source, which would cost more than the
    # searches themselves; only the fields boosts read are fetched. The page
    # that is returned gets its _source in one more small search.
    candidate_source: Any = _boost_fields(rerank.boosts) or False
    knn_bodies = [
        build_knn_search(
            settings.vector_field,
            vector,
            k=window.num_candidates,
            filters=positive,
            must_not=negative,
            exclude_ids=exclude_ids,
            source=candidate_source,
        )
        for vector in vectors
    ]
    mlt_body = build_mlt_search(
        settings.text_fields,
        like,
        size=window.num_candidates,
        filters=positive,
        must_not=negative,
        exclude_ids=exclude_ids,
        source=candidate_source,
        mlt_params=mlt_params,
        unlike=unlike,
    )
    method, rank_constant, weights = fusion
    reranking = bool(rerank.boosts) or rerank.diversity is not None
    fused: list[SimilarHit] | None = None
    paged = False
    if len(knn_bodies) > 1 and execution == "server":
        raise ConfigurationError(
            "example_vectors='best' with several examples sends one k-NN search per "
            "example, which only client-side fusion can merge; use execution='client' "
            "or example_vectors='average'"
        )
    if len(knn_bodies) == 1 and use_server_fusion(
        client,
        execution,
        fusion=method,
        rank_constant=rank_constant,
        max_similarity=window.max_similarity,
    ):
        # Boosts and diversity reorder the whole pool, so the server returns
        # all of it; otherwise it returns the page, with its _source.
        if reranking:
            wanted: tuple[int, int, Any] = (
                0,
                2 * window.num_candidates,
                candidate_source,
            )
        else:
            wanted = (window.offset, window.k, source)
        try:
            fused, requests = _fuse_on_server(
                client,
                name,
                (knn_bodies[0], mlt_body),
                page=wanted,
                num_candidates=window.num_candidates,
                fusion=fusion,
            )
            paged = not reranking
        except SearchPipelineError as error:
            if execution == "server" or not error.forbidden:
                raise
            logger.warning("%s; fusing client-side instead", error)

    if fused is None:
        *knn_lists, mlt_hits = _msearch(
            client, name, [*knn_bodies, mlt_body], filters=[*positive, *negative]
        )
        knn_hits = _closest_example(knn_lists, window.num_candidates)
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
        requests = [SearchRequest(labels[0], name, body) for body in knn_bodies]
        requests.append(SearchRequest(labels[1], name, mlt_body))
    if paged:
        return fused, requests

    if reranking:
        fused = _rerank(client, name, settings, fused, rerank, window.num_candidates)
    page = fused[window.offset : window.offset + window.k]
    page, page_request = _fetch_page_sources(client, name, page, source)
    if page_request:
        requests.append(page_request)
    return page, requests


def _document_reference(hit: Mapping[str, Any]) -> dict[str, Any]:
    """Return the `more_like_this` item for a fetched document, with its custom routing."""
    reference = {"_index": hit["_index"], "_id": hit["_id"]}
    if hit.get("_routing") is not None:
        reference["routing"] = hit["_routing"]
    return reference


def _fetch_page_sources(
    client: OpenSearch, name: str, page: list[SimilarHit], source: Any
) -> tuple[list[SimilarHit], SearchRequest | None]:
    """Give the page's hits their `_source` with one `_mget`; none when no field is asked for."""
    if not page or source == []:
        return page, None
    body: dict[str, Any] = {
        "docs": [
            {"_index": hit.index, "_id": hit.id, "_source": source} for hit in page
        ]
    }
    request = SearchRequest("_source of the page's hits", name, body, path="_mget")
    docs = client.mget(body=body)["docs"]
    if not all(doc.get("found") for doc in docs):
        # Some k-NN versions fail a realtime get of a document whose vector
        # comes from derived source, and `_mget` misses a document indexed with
        # custom routing. A search reads the same fields from every shard.
        body = {
            "size": 2 * len(page),
            "_source": source,
            "query": {"ids": {"values": sorted({hit.id for hit in page})}},
        }
        request = SearchRequest(request.label, name, body)
        docs = client.search(index=name, body=body)["hits"]["hits"]
    sources = {
        (doc["_index"], doc["_id"]): doc.get("_source", {})
        for doc in docs
        if doc.get("found", True)
    }
    filled = [
        replace(hit, source={**hit.source, **sources.get((hit.index, hit.id), {})})
        for hit in page
    ]
    return filled, request


def _closest_example(
    knn_lists: Sequence[list[dict[str, Any]]], size: int
) -> list[dict[str, Any]]:
    """Merge one k-NN list per example: each candidate keeps its best score."""
    if len(knn_lists) == 1:
        return knn_lists[0]
    best: dict[str, dict[str, Any]] = {}
    for hits in knn_lists:
        for hit in hits:
            kept = best.get(hit["_id"])
            if kept is None or hit["_score"] > kept["_score"]:
                best[hit["_id"]] = hit
    merged = sorted(best.values(), key=lambda hit: (-hit["_score"], hit["_id"]))
    return merged[:size]


def _rerank(
    client: OpenSearch,
    name: str,
    settings: Settings,
    fused: list[SimilarHit],
    rerank: _Rerank,
    num_candidates: int,
) -> list[SimilarHit]:
    """Apply boosts to the whole pool, then MMR to its first `num_candidates`."""
    values = relevance([hit.score for hit in fused])
    sources = [hit.source for hit in fused]
    for boost in rerank.boosts:
        if isinstance(boost, (Recency, NumericBoost)) and not boost.readable(sources):
            kind = "date" if isinstance(boost, Recency) else "number"
            logger.warning(
                "No candidate has a %s in field %r, so its boost changes nothing; "
                "check the field name and type (GET %s/_mapping)",
                kind,
                boost.field,
                name,
            )
    factors = boost_factors(rerank.boosts, sources)
    adjusted = [
        replace(hit, boost=factor, final_score=value * factor)
        for hit, value, factor in zip(fused, values, factors, strict=True)
    ]
    adjusted.sort(key=lambda hit: -(hit.final_score or 0.0))
    if rerank.diversity is None or len(adjusted) < 2:
        return adjusted
    head, tail = adjusted[:num_candidates], adjusted[num_candidates:]
    vectors = _candidate_vectors(client, name, settings, head, rerank.encoder)
    best = max(hit.final_score or 0.0 for hit in head) or 1.0
    picks = mmr_order(
        [(hit.final_score or 0.0) / best for hit in head],
        vectors,
        diversity=rerank.diversity,
        count=len(head),
    )
    return [
        replace(head[position], final_score=value) for position, value in picks
    ] + tail


def _candidate_vectors(
    client: OpenSearch,
    name: str,
    settings: Settings,
    hits: Sequence[SimilarHit],
    encoder: Encoder | None,
) -> NDArray[np.float32]:
    """Read the candidates' vectors; encode the text of those that cannot be read."""
    ids = [hit.id for hit in hits]
    body = {
        "size": len(ids),
        "_source": [settings.vector_field, *settings.text_fields],
        "query": {"ids": {"values": ids}},
    }
    try:
        response = client.search(index=name, body=body)
    except TransportError as error:
        if not isinstance(error.status_code, int) or error.status_code < 500:
            raise
        # See the NOTE in hybrid_similar on reading vectors from k-NN 3.5.
        body["_source"] = list(settings.text_fields)
        response = client.search(index=name, body=body)
    sources = {hit["_id"]: hit["_source"] for hit in response["hits"]["hits"]}
    vectors: dict[str, list[float]] = {}
    missing: list[str] = []
    for doc_id in ids:
        vector = sources.get(doc_id, {}).get(settings.vector_field)
        if vector:
            vectors[doc_id] = vector
        else:
            missing.append(doc_id)
    if missing:
        encoder = encoder or Encoder(settings.model, device=settings.device)
        texts = [
            document_text(sources.get(doc_id, {}), settings.text_fields)
            for doc_id in missing
        ]
        for doc_id, vector in zip(missing, encoder.encode(texts), strict=True):
            vectors[doc_id] = vector.tolist()
    return np.asarray([vectors[doc_id] for doc_id in ids], dtype=np.float32)


def _fuse_on_server(
    client: OpenSearch,
    name: str,
    bodies: tuple[dict[str, Any], dict[str, Any]],
    *,
    page: tuple[int, int, Any],
    num_candidates: int,
    fusion: tuple[Fusion, int, Mapping[str, float] | None],
) -> tuple[list[SimilarHit], list[SearchRequest]]:
    """Send the two searches as one hybrid query that a search pipeline fuses.

    `page` is the (from, size, _source) of the hits to return.
    """
    method, rank_constant, weights = fusion
    knn_body, mlt_body = bodies
    from_, size, source = page
    body = build_hybrid_search(
        knn_body["query"],
        mlt_body["query"],
        size=size,
        from_=from_,
        pagination_depth=num_candidates,
        source=source,
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
    if num_candidates is not None and num_candidates < 1:
        raise ConfigurationError(
            f"num_candidates must be at least 1, got {num_candidates}"
        )
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
            f"num_candidates ({num_candidates}, at least k) is above {MAX_NUM_CANDIDATES}, "
            "the largest k the k-NN plugin accepts; lower num_candidates or k"
        )
    return num_candidates


def _fill_from_settings(
    settings: Settings,
    k: int,
    fusion: Fusion | None,
    rank_constant: int | None,
    weights: Mapping[str, float] | None,
    num_candidates: int | None,
) -> tuple[Fusion, int, Mapping[str, float], int | None]:
    """Take each fusion option the caller left as None from `settings`."""
    if num_candidates is None and settings.num_candidates is not None:
        num_candidates = max(settings.num_candidates, k)
    return (
        settings.fusion if fusion is None else fusion,
        settings.rank_constant if rank_constant is None else rank_constant,
        settings.weights if weights is None else weights,
        num_candidates,
    )


def _check_fusion(
    fusion: str, weights: Mapping[str, float] | None, rank_constant: int
) -> None:
    if fusion not in FUSIONS:
        raise ConfigurationError(
            f"fusion {fusion!r} is not one of {', '.join(FUSIONS)}"
        )
    if rank_constant < 1:
        raise ConfigurationError(
            f"rank_constant must be at least 1 (as in OpenSearch), got {rank_constant}"
        )
    unknown = set(weights or {}) - {KNN, BM25}
    if unknown:
        raise ConfigurationError(
            f"weights name unknown components {sorted(unknown)}; use {KNN!r} and {BM25!r}"
        )
    values = dict(weights or {})
    bad = {
        name: value
        for name, value in values.items()
        if not math.isfinite(value) or value < 0
    }
    if bad:
        raise ConfigurationError(
            f"weights must be finite numbers >= 0, got {bad}; for example knn=0.7,bm25=0.3"
        )
    if values and not any({KNN: 1.0, BM25: 1.0, **values}.values()):
        raise ConfigurationError(
            f"the weights {values} are all 0; give at least one component a positive weight"
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
    fusion: Fusion | None = None,
    rank_constant: int | None = None,
    weights: Mapping[str, float] | None = None,
    source_fields: Sequence[str] | None = None,
    mlt_params: Mapping[str, Any] | None = None,
    boosts: Sequence[Boost] = (),
    diversity: float | None = None,
    execution: Execution = "auto",
) -> SimilarResult:
    """Find the `k` documents most like a free text, by k-NN and BM25 fused.

    The text is encoded with the configured model (loaded on first use) and
    given to `more_like_this` as `like` text. Arguments as in `hybrid_similar`,
    including the fusion options that default to the values in `settings`.

    Raises:
        ConfigurationError: The text is empty, or an argument is out of range.
    """
    settings = settings or Settings()
    name = index or settings.require_index()
    if not text.strip():
        raise ConfigurationError(
            "the text is empty; give some words to find similar documents"
        )
    fusion, rank_constant, weights, num_candidates = _fill_from_settings(
        settings, k, fusion, rank_constant, weights, num_candidates
    )
    num_candidates = _check_window(k, offset, num_candidates)
    _check_fusion(fusion, weights, rank_constant)
    _check_rerank(None, diversity)
    client = resolve_client(client, settings)
    encoder = encoder or Encoder(settings.model, device=settings.device)
    vector = encoder.encode([text])[0].tolist()
    hits, requests = _search_and_fuse(
        client,
        name,
        settings,
        vectors=[vector],
        like=[text],
        exclude_ids=[],
        filters=build_filter_clauses(filters),
        source=_source_option(settings, source_fields, boosts),
        window=_Window(k, offset, num_candidates),
        mlt_params=mlt_params,
        fusion=(fusion, rank_constant, weights),
        rerank=_Rerank(tuple(boosts), diversity, encoder),
        labels=(
            "k-NN: nearest neighbours of the text's vector",
            "BM25: more_like_this the text",
        ),
        execution=execution,
    )
    return SimilarResult(doc_id="", hits=hits, requests=requests)


def _source_option(
    settings: Settings, source_fields: Sequence[str] | None, boosts: Sequence[Boost]
) -> Any:
    if source_fields is not None:
        # Boosts read their fields from each hit's _source.
        extra = [name for name in _boost_fields(boosts) if name not in source_fields]
        return [*source_fields, *extra]
    return {"excludes": [settings.vector_field, settings.meta_field]}


def _boost_fields(boosts: Sequence[Boost]) -> list[str]:
    """Return the `_source` fields the boosts read, sorted."""
    return sorted({name for boost in boosts for name in boost.source_fields})


def _check_examples(
    positives: Sequence[str], negatives: Sequence[str], example_vectors: str
) -> None:
    if not positives or not all(isinstance(item, str) and item for item in positives):
        raise ConfigurationError(
            f"give at least one example document id, got {list(positives)!r}"
        )
    both = sorted(set(positives) & set(negatives))
    if both:
        raise ConfigurationError(
            f"ids {both} are both examples and negative examples (unlike); "
            "give each id once"
        )
    if example_vectors not in ("average", "best"):
        raise ConfigurationError(
            f"example_vectors {example_vectors!r} is not 'average' or 'best'"
        )


def _check_rerank(max_similarity: float | None, diversity: float | None) -> None:
    if max_similarity is not None and not -1.0 <= max_similarity <= 1.0:
        raise ConfigurationError(
            f"max_similarity must be a cosine similarity from -1 to 1, got {max_similarity}"
        )
    if diversity is not None and not 0.0 <= diversity <= 1.0:
        raise ConfigurationError(
            f"diversity must be from 0 (relevance only) to 1, got {diversity}"
        )


def _fetch_examples(
    client: OpenSearch,
    name: str,
    ids: Sequence[str],
    fields: list[str],
    id_field: str | None,
) -> tuple[list[dict[str, Any]], SearchRequest]:
    """Return the example hits in the order of `ids`, and the lookup request sent.

    `_id`s are read with one `_mget`, the cheapest read there is. An `id_field`,
    or a name `_mget` does not take (an alias over several indices, a
    pattern), is looked up with a search instead, which also finds an id that
    two indices share.
    """
    if id_field is None:
        hits, request = _mget_examples(client, name, ids, fields)
        if hits is not None:
            return hits, request
    body = build_lookup(ids, fields, id_field=id_field)
    hits = _search_examples(client, name, body, last_try=False)
    if hits is None:
        # NOTE: k-NN 3.5 rebuilds vectors for _source from the vector files
        # (derived source), and after some segment merges that read fails with
        # AlreadyClosedException, as an error status or as failed shards. The
        # document's text, encoded again, gives the same vector as long as the
        # text has not changed since the backfill.
        logger.warning(
            "Reading the vectors of %s from %s failed; encoding their text instead",
            ", ".join(ids),
            name,
        )
        body = build_lookup(ids, fields[1:], id_field=id_field)
        hits = _search_examples(client, name, body, last_try=True)
    assert hits is not None

    found: dict[str, list[dict[str, Any]]] = {}
    for hit in hits:
        key = field_value(hit["_source"], id_field) if id_field else hit["_id"]
        for value in key if isinstance(key, list) else [key]:
            found.setdefault(str(value), []).append(hit)
    missing = [doc_id for doc_id in ids if doc_id not in found]
    if missing:
        where = f"field {id_field!r}" if id_field else "_id"
        if id_field:
            check = (
                f'GET {name}/_search?q={id_field}:"{missing[0]}" finds it, '
                f"and GET {name}/_mapping shows the field"
            )
        else:
            check = f"GET {name}/_doc/{missing[0]} reads it"
        raise DocumentNotFoundError(
            f"no document has {where} {', '.join(map(repr, missing))} in {name!r}; "
            f"check the id ({check}) and the index name"
        )
    for doc_id in ids:
        if len(found[doc_id]) > 1:
            holders = ", ".join(
                f"{hit['_index']}/{hit['_id']}" for hit in found[doc_id]
            )
            if len({hit["_index"] for hit in found[doc_id]}) > 1:
                fix = "name one concrete index with --index, or use a unique id field"
            else:
                fix = (
                    f"field {id_field!r} is not unique in that index; look the "
                    "document up by _id, or use a field with one value per document"
                )
            raise ConfigurationError(
                f"id {doc_id!r} matches several documents behind {name!r} ({holders}); "
                f"{fix}"
            )
    return [found[doc_id][0] for doc_id in ids], SearchRequest("", name, body)


def _search_examples(
    client: OpenSearch, name: str, body: dict[str, Any], *, last_try: bool
) -> list[dict[str, Any]] | None:
    """Return the hits of the example lookup; None when a shard failed to read.

    On the last try a failure raises instead, naming the shards' reason.
    """
    try:
        response = client.search(index=name, body=body)
    except TransportError as error:
        if (
            last_try
            or not isinstance(error.status_code, int)
            or error.status_code < 500
        ):
            raise
        logger.debug("Example lookup in %s failed: %s", name, error)
        return None
    shards = response.get("_shards", {})
    if not shards.get("failed"):
        hits: list[dict[str, Any]] = response["hits"]["hits"]
        return hits
    failures = shards.get("failures") or [{}]
    reason = failures[0].get("reason", {})
    detail = f"{reason.get('type', 'unknown')}: {reason.get('reason', '')}".strip()
    if not last_try:
        logger.debug("Example lookup in %s failed on some shards: %s", name, detail)
        return None
    raise OsMltError(
        f"reading the example documents from {name!r} failed on {shards['failed']} "
        f"of {shards.get('total', '?')} shards ({detail}); GET _cat/shards/{name} "
        "shows their state"
    )


def _mget_examples(
    client: OpenSearch, name: str, ids: Sequence[str], fields: list[str]
) -> tuple[list[dict[str, Any]] | None, SearchRequest]:
    """Read the examples by `_id` with `_mget`; None when a search must do it."""
    body = {"docs": [{"_id": doc_id, "_source": fields} for doc_id in ids]}
    request = SearchRequest("", name, body, path=f"{name}/_mget")
    try:
        docs = client.mget(index=name, body=body)["docs"]
    except TransportError as error:
        if error.status_code in (400, 404) or (
            isinstance(error.status_code, int) and error.status_code >= 500
        ):
            return None, request
        raise
    if any("error" in doc for doc in docs):
        # For example a vector that derived source cannot rebuild.
        return None, request
    if not all(doc.get("found") for doc in docs):
        # `_mget` finds a document by its `_id` routing only, so one indexed
        # with custom routing is looked up with a search, which reads every shard.
        return None, request
    return docs, request


def _example_vector(
    example: dict[str, Any], settings: Settings, encoder: Encoder | None
) -> NDArray[np.float32]:
    vector = example["_source"].get(settings.vector_field)
    if not vector:
        # The vector is unreadable, or the mapping leaves it out of _source.
        vector = _encode_example(example, settings, encoder)
    return np.asarray(vector, dtype=np.float32)


def _query_vectors(
    positives: Sequence[NDArray[np.float32]],
    negatives: Sequence[NDArray[np.float32]],
    example_vectors: ExampleVectors,
) -> list[list[float]]:
    """Return the k-NN query vectors: one for `average`, one per example for `best`."""

    def unit(vector: NDArray[np.float32]) -> NDArray[np.float32]:
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm > 0 else vector

    away: Any = 0.0
    if negatives:
        away = UNLIKE_WEIGHT * np.mean([unit(vector) for vector in negatives], axis=0)
    if example_vectors == "average" or len(positives) == 1:
        bases = [np.mean([unit(vector) for vector in positives], axis=0)]
    else:
        bases = [unit(vector) for vector in positives]
    queries = []
    for base in bases:
        query = unit(np.asarray(base - away, dtype=np.float32))
        if not np.any(query):
            raise ConfigurationError(
                "the examples' vectors cancel out to zero; give different examples"
            )
        queries.append([float(value) for value in query])
    return queries


def _encode_example(
    example: dict[str, Any], settings: Settings, encoder: Encoder | None
) -> list[float]:
    """Encode the example's text when its stored vector cannot be read.

    Raises:
        VectorMissingError: The backfill has not embedded the document, or
            embedded it with another model.
    """
    meta = example["_source"].get(settings.meta_field) or {}
    if not meta and not document_text(example["_source"], settings.text_fields):
        raise VectorMissingError(
            f"document {example['_id']!r} in {example['_index']!r} has no text in "
            f"{', '.join(settings.text_fields)}, so the backfill gives it no vector; "
            "choose an example with text, or set the text fields that it uses"
        )
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


# Reasons of a 400 that a filter value of the wrong type for its field causes,
# such as a number range on text or an unparsable date (OpenSearch 2.19, 3.5).
_BAD_FILTER_VALUE_REASONS = ("failed to create query", "failed to parse date field")


def _msearch(
    client: OpenSearch,
    index: str,
    bodies: Sequence[dict[str, Any]],
    *,
    filters: Sequence[dict[str, Any]] = (),
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
            hint = ""
            if "not knn_vector type" in str(reason):
                hint = (
                    "; the index has no vector field yet, so run `os-mlt backfill` on "
                    "it first (on an index created without index.knn, through an "
                    "alias with --migrate)"
                )
            elif filters and any(
                text in str(reason) for text in _BAD_FILTER_VALUE_REASONS
            ):
                hint = (
                    f"; check that each filter value fits its field's type "
                    f"(GET {index}/_mapping shows the types). Filters sent: "
                    f"{json.dumps(list(filters))[:500]}"
                )
            raise OsMltError(f"search on {index!r} failed: {reason}{hint}")
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
