"""Pure builders of the search bodies `hybrid_similar` sends.

Each function returns plain Query DSL, the same dict that is sent and that
`--dsl` prints for Dev Tools.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# more_like_this parameters fitted to short texts such as titles and package
# descriptions. OpenSearch's defaults (min_term_freq 2, min_doc_freq 5) drop
# nearly every term of a two-line description, because few words repeat in it.
# The selected terms are the rarest ones, so the default minimum_should_match
# of 30% found no document at all for 44 of 150 Debian packages in a 5,000
# document sample. With "1" every query has BM25 candidates, ranked by score.
DEFAULT_MLT_PARAMS: dict[str, Any] = {
    "min_term_freq": 1,
    "min_doc_freq": 2,
    "max_query_terms": 50,
    "minimum_should_match": "1",
}


def _bool_filter(
    filters: Sequence[Mapping[str, Any]],
    must_not: Sequence[Mapping[str, Any]],
    exclude_ids: Sequence[str],
) -> dict[str, Any]:
    clauses: dict[str, Any] = {}
    if filters:
        clauses["filter"] = [dict(clause) for clause in filters]
    negative = [dict(clause) for clause in must_not]
    if exclude_ids:
        negative.append({"ids": {"values": list(exclude_ids)}})
    if negative:
        clauses["must_not"] = negative
    return clauses


def build_lookup(
    doc_ids: str | Sequence[str],
    fields: Sequence[str],
    *,
    id_field: str | None = None,
) -> dict[str, Any]:
    """Return the search that fetches example documents' vectors and text.

    The documents are found by `_id`, or by a `terms` query on `id_field`.
    One more hit than ids is requested, so that an id matching two documents
    can be reported.
    """
    ids = [doc_ids] if isinstance(doc_ids, str) else list(doc_ids)
    query = {"terms": {id_field: ids}} if id_field else {"ids": {"values": ids}}
    return {"size": len(ids) + 1, "_source": list(fields), "query": query}


def build_knn_search(
    vector_field: str,
    vector: Sequence[float],
    *,
    k: int,
    filters: Sequence[Mapping[str, Any]] = (),
    must_not: Sequence[Mapping[str, Any]] = (),
    exclude_ids: Sequence[str] = (),
    source: Any = True,
) -> dict[str, Any]:
    """Return a k-NN search for the `k` nearest neighbours of `vector`.

    The filters sit inside the `knn` query, so the Lucene engine searches only
    the matching documents and still returns `k` hits, instead of filtering
    `k` hits afterwards and returning fewer.
    """
    knn: dict[str, Any] = {"vector": [float(value) for value in vector], "k": k}
    clauses = _bool_filter(filters, must_not, exclude_ids)
    if clauses:
        knn["filter"] = {"bool": clauses}
    return {
        "size": k,
        "_source": source,
        "track_total_hits": False,
        "query": {"knn": {vector_field: knn}},
    }


def build_mlt_search(
    text_fields: Sequence[str],
    like: Sequence[Mapping[str, Any] | str],
    *,
    size: int,
    filters: Sequence[Mapping[str, Any]] = (),
    must_not: Sequence[Mapping[str, Any]] = (),
    exclude_ids: Sequence[str] = (),
    source: Any = True,
    mlt_params: Mapping[str, Any] | None = None,
    unlike: Sequence[Mapping[str, Any] | str] = (),
) -> dict[str, Any]:
    """Return a BM25 `more_like_this` search for documents like `like`.

    Args:
        text_fields: Fields whose terms are compared.
        like: Documents given as `{"_index": ..., "_id": ...}` or `{"doc": {...}}`,
            or free texts.
        size: Hits to return.
        filters: Clauses every hit must match.
        must_not: Clauses no hit may match.
        exclude_ids: Document ids to leave out, such as the example itself.
        source: The `_source` option of the hits.
        mlt_params: Overrides of `DEFAULT_MLT_PARAMS`.
        unlike: Documents or texts whose terms are not selected, as in `like`.
    """
    mlt: dict[str, Any] = {
        "fields": list(text_fields),
        "like": [item if isinstance(item, str) else dict(item) for item in like],
    }
    if unlike:
        mlt["unlike"] = [
            item if isinstance(item, str) else dict(item) for item in unlike
        ]
    mlt.update({**DEFAULT_MLT_PARAMS, **(mlt_params or {})})
    query: dict[str, Any] = {"bool": {"must": [{"more_like_this": mlt}]}}
    query["bool"].update(_bool_filter(filters, must_not, exclude_ids))
    # No hit count: it would make the node score every matching document,
    # where it can otherwise skip those that cannot reach the top `size`.
    return {"size": size, "_source": source, "track_total_hits": False, "query": query}
