"""Pure Query DSL builders."""

from __future__ import annotations

from os_mlt.query import (
    DEFAULT_MLT_PARAMS,
    build_knn_search,
    build_lookup,
    build_mlt_search,
)


def test_knn_search_puts_filters_inside_the_knn_query() -> None:
    body = build_knn_search(
        "embedding",
        [0.5, -0.25],
        k=50,
        filters=[{"term": {"section": "python"}}],
        must_not=[{"exists": {"field": "obsolete"}}],
        exclude_ids=["doc-1"],
        source=["title"],
    )

    assert body == {
        "size": 50,
        "_source": ["title"],
        "track_total_hits": False,
        "query": {
            "knn": {
                "embedding": {
                    "vector": [0.5, -0.25],
                    "k": 50,
                    "filter": {
                        "bool": {
                            "filter": [{"term": {"section": "python"}}],
                            "must_not": [
                                {"exists": {"field": "obsolete"}},
                                {"ids": {"values": ["doc-1"]}},
                            ],
                        }
                    },
                }
            }
        },
    }


def test_knn_search_without_filters_has_no_filter_key() -> None:
    body = build_knn_search("embedding", [1.0], k=3)
    assert "filter" not in body["query"]["knn"]["embedding"]


def test_mlt_search_excludes_the_example_and_applies_filters() -> None:
    body = build_mlt_search(
        ["title", "body"],
        [{"_index": "packages-knn", "_id": "doc-1"}],
        size=20,
        filters=[{"range": {"size": {"gte": 10}}}],
        exclude_ids=["doc-1"],
        mlt_params={"max_query_terms": 40},
    )

    mlt = body["query"]["bool"]["must"][0]["more_like_this"]
    assert mlt["fields"] == ["title", "body"]
    assert mlt["like"] == [{"_index": "packages-knn", "_id": "doc-1"}]
    assert mlt["max_query_terms"] == 40
    assert mlt["min_term_freq"] == DEFAULT_MLT_PARAMS["min_term_freq"]
    assert body["query"]["bool"]["filter"] == [{"range": {"size": {"gte": 10}}}]
    assert body["query"]["bool"]["must_not"] == [{"ids": {"values": ["doc-1"]}}]
    assert body["size"] == 20


def test_lookup_fetches_by_id() -> None:
    body = build_lookup("doc-1", ["embedding", "title"])
    assert body["query"] == {"ids": {"values": ["doc-1"]}}
    assert body["_source"] == ["embedding", "title"]


def test_component_searches_count_no_hits() -> None:
    knn = build_knn_search("embedding", [1.0], k=5)
    mlt = build_mlt_search(["title"], ["text"], size=5)
    assert knn["track_total_hits"] is False
    assert mlt["track_total_hits"] is False
