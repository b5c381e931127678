"""Pure builders and decisions of server-side fusion, without a cluster."""

from __future__ import annotations

import pytest

from os_mlt import ConfigurationError
from os_mlt.query import SearchRequest, build_hybrid_search, build_search_pipeline
from os_mlt.query.server import (
    _lowest_plugin_version,
    pipeline_name,
    server_fusion_problem,
)


def test_rrf_pipeline_uses_score_ranker() -> None:
    pipeline = build_search_pipeline("rrf", rank_constant=40, weights={"knn": 3})

    assert pipeline["phase_results_processors"] == [
        {
            "score-ranker-processor": {
                "combination": {"technique": "rrf", "parameters": {"rank_constant": 40}}
            }
        }
    ]


@pytest.mark.parametrize("fusion", ["min_max", "l2", "z_score"])
def test_normalization_pipeline_without_weights(fusion: str) -> None:
    pipeline = build_search_pipeline(fusion)

    assert pipeline["phase_results_processors"] == [
        {
            "normalization-processor": {
                "normalization": {"technique": fusion},
                "combination": {"technique": "arithmetic_mean"},
            }
        }
    ]


def test_weights_scaled_to_sum_one() -> None:
    pipeline = build_search_pipeline("min_max", weights={"bm25": 1.0, "knn": 3.0})

    processor = pipeline["phase_results_processors"][0]["normalization-processor"]
    assert processor["combination"]["parameters"]["weights"] == [0.75, 0.25]


def test_missing_weight_counts_one() -> None:
    pipeline = build_search_pipeline("l2", weights={"knn": 3.0})

    processor = pipeline["phase_results_processors"][0]["normalization-processor"]
    assert processor["combination"]["parameters"]["weights"] == [0.75, 0.25]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param({"weights": {"knn": 0.0, "bm25": 0.0}}, "add up to 0", id="zero"),
        pytest.param({"weights": {"knn": -1.0}}, ">= 0", id="negative"),
        pytest.param({"weights": {"bm25": float("inf")}}, ">= 0", id="infinite"),
    ],
)
def test_invalid_weights_raise(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        build_search_pipeline("min_max", **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("rank_constant", [0, 10_001])
def test_rank_constant_outside_processor_range_raises(rank_constant: int) -> None:
    with pytest.raises(ConfigurationError, match="1 to 10000"):
        build_search_pipeline("rrf", rank_constant=rank_constant)


def test_unknown_fusion_raises() -> None:
    with pytest.raises(ConfigurationError, match="fusion 'max'"):
        build_search_pipeline("max")


def test_pipeline_name_follows_parameters() -> None:
    equal = pipeline_name(build_search_pipeline("min_max", weights={"knn": 2.0}))
    scaled = pipeline_name(
        build_search_pipeline("min_max", weights={"knn": 4.0, "bm25": 2.0})
    )
    other = pipeline_name(build_search_pipeline("min_max", weights={"knn": 3.0}))
    rrf = pipeline_name(build_search_pipeline("rrf"))

    assert equal == scaled
    assert equal != other
    assert equal.startswith("os-mlt-norm-")
    assert rrf.startswith("os-mlt-rrf-")
    assert rrf != pipeline_name(build_search_pipeline("rrf", rank_constant=61))


def test_hybrid_search_holds_both_sub_queries() -> None:
    knn = {"knn": {"embedding": {"vector": [0.1, 0.2], "k": 50}}}
    mlt = {"bool": {"must": [{"more_like_this": {"like": ["text"]}}]}}

    body = build_hybrid_search(
        knn, mlt, size=10, from_=20, pagination_depth=50, source=["title"]
    )

    assert body == {
        "size": 10,
        "from": 20,
        "_source": ["title"],
        "query": {"hybrid": {"pagination_depth": 50, "queries": [knn, mlt]}},
    }


@pytest.mark.parametrize(
    ("version", "execution", "options", "reason"),
    [
        pytest.param(None, "auto", {}, "not installed on every node", id="no-plugin"),
        pytest.param((2, 19, 1, 0), "auto", {}, None, id="rrf-on-2.19"),
        pytest.param(
            (2, 18, 0, 0), "auto", {}, "needs opensearch-neural-search 2.19", id="old"
        ),
        pytest.param(
            (2, 19, 1, 0),
            "auto",
            {"max_similarity": 0.98},
            "max_similarity",
            id="near-duplicates",
        ),
        pytest.param(
            (2, 19, 1, 0),
            "server",
            {"fusion": "z_score"},
            "needs opensearch-neural-search 3.0",
            id="z-score-on-2.19",
        ),
        pytest.param(
            (3, 0, 0, 0),
            "auto",
            {"fusion": "z_score"},
            "z_score is fused on the client",
            id="z-score-auto",
        ),
        pytest.param(
            (3, 0, 0, 0), "server", {"fusion": "z_score"}, None, id="z-score-server"
        ),
        pytest.param(
            (2, 19, 1, 0),
            "auto",
            {"rank_constant": 20_000},
            "rank_constant from 1 to 10000",
            id="rank-constant",
        ),
    ],
)
def test_server_fusion_problem(
    version: tuple[int, ...] | None,
    execution: str,
    options: dict[str, object],
    reason: str | None,
) -> None:
    arguments: dict[str, object] = {
        "fusion": "rrf",
        "rank_constant": 60,
        "max_similarity": None,
    }
    arguments.update(options)

    problem = server_fusion_problem(version, execution=execution, **arguments)  # type: ignore[arg-type]

    if reason is None:
        assert problem is None
    else:
        assert problem is not None
        assert reason in problem


def test_plugin_version_needs_every_node() -> None:
    both = {
        "nodes": {
            "a": {
                "plugins": [{"name": "opensearch-neural-search", "version": "3.1.0.0"}]
            },
            "b": {
                "plugins": [{"name": "opensearch-neural-search", "version": "2.19.1.0"}]
            },
        }
    }
    partial = {
        "nodes": {
            "a": {
                "plugins": [{"name": "opensearch-neural-search", "version": "3.1.0.0"}]
            },
            "b": {"plugins": [{"name": "opensearch-knn", "version": "3.1.0.0"}]},
        }
    }

    assert _lowest_plugin_version(both) == (2, 19, 1, 0)
    assert _lowest_plugin_version(partial) is None
    assert _lowest_plugin_version({"nodes": {}}) is None


def test_request_with_method_and_path_for_dev_tools() -> None:
    put = SearchRequest(
        "Pipeline", "docs", {"a": 1}, method="PUT", path="_search/pipeline/p"
    )
    search = SearchRequest("Search", "docs", {"size": 1})

    assert put.to_dev_tools() == '# Pipeline\nPUT _search/pipeline/p\n{\n  "a": 1\n}'
    assert search.to_dev_tools().splitlines()[1] == "GET docs/_search"
