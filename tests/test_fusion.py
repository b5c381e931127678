"""Reciprocal rank fusion and score fusion, with the edge cases of neural-search."""

from __future__ import annotations

import math

import pytest

from os_mlt import reciprocal_rank_fusion
from os_mlt.query.fusion import MIN_MAX_FLOOR, normalize_scores, score_fusion


def test_rrf_scores_and_order() -> None:
    fused = reciprocal_rank_fusion(
        {"knn": ["a", "b", "c"], "bm25": ["c", "a", "d"]}, rank_constant=60
    )

    scores = {item.id: item.score for item in fused}
    assert math.isclose(scores["a"], 1 / 61 + 1 / 62)
    assert math.isclose(scores["c"], 1 / 63 + 1 / 61)
    assert math.isclose(scores["b"], 1 / 62)
    assert math.isclose(scores["d"], 1 / 63)
    assert [item.id for item in fused] == ["a", "c", "b", "d"]
    assert fused[0].ranks == {"knn": 1, "bm25": 2}
    assert fused[3].ranks == {"bm25": 3}


def test_rrf_ties_break_by_best_rank_then_id() -> None:
    # "x" is 1st in one list, "y" 1st in the other: equal scores and best ranks.
    fused = reciprocal_rank_fusion({"one": ["y", "z"], "two": ["x", "w"]})
    assert [item.id for item in fused] == ["x", "y", "w", "z"]


def test_rrf_counts_a_repeated_id_once() -> None:
    fused = reciprocal_rank_fusion({"one": ["a", "a", "b"]}, rank_constant=1)
    assert [(item.id, item.ranks["one"]) for item in fused] == [("a", 1), ("b", 3)]
    assert math.isclose(fused[0].score, 1 / 2)


def test_rrf_single_hit_and_empty_lists() -> None:
    assert reciprocal_rank_fusion({"one": [], "two": []}) == []
    fused = reciprocal_rank_fusion({"one": ["only"], "two": []})
    assert len(fused) == 1
    assert math.isfinite(fused[0].score)


def test_rrf_rank_constant_changes_weight_of_top_ranks() -> None:
    sharp = reciprocal_rank_fusion(
        {"one": ["a", "b"], "two": ["b", "c"]}, rank_constant=1
    )
    assert [item.id for item in sharp] == ["b", "a", "c"]


def test_rrf_rejects_rank_constant_below_one() -> None:
    with pytest.raises(ValueError, match="rank_constant must be >= 1"):
        reciprocal_rank_fusion({"one": ["a"]}, rank_constant=0)


@pytest.mark.parametrize(
    ("method", "scores", "expected"),
    [
        pytest.param(
            "min_max", [4.0, 2.0, 1.0], [1.0, 1 / 3, MIN_MAX_FLOOR], id="min-max"
        ),
        pytest.param(
            "min_max", [2.0, 1.0, 1.0], [1.0, 0.001, 0.001], id="min-max-tied-lowest"
        ),
        pytest.param("min_max", [3.0, 3.0], [1.0, 1.0], id="min-max-ties"),
        pytest.param("min_max", [7.5], [1.0], id="min-max-one-hit"),
        pytest.param("z_score", [3.0, 1.0], [1.0, -1.0], id="z-score"),
        pytest.param("z_score", [2.0, 2.0, 2.0], [0.0, 0.0, 0.0], id="z-score-ties"),
        pytest.param("l2", [3.0, 4.0], [0.6, 0.8], id="l2"),
        pytest.param("l2", [0.0, 0.0], [0.0, 0.0], id="l2-zeros"),
    ],
)
def test_normalize_scores(
    method: str, scores: list[float], expected: list[float]
) -> None:
    result = normalize_scores(scores, method)  # type: ignore[arg-type]
    assert result == pytest.approx(expected)
    assert all(math.isfinite(value) for value in result)


def test_normalize_scores_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="not one of"):
        normalize_scores([1.0], "max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite"):
        normalize_scores([1.0, float("nan")], "min_max")


def test_score_fusion_weighted_mean() -> None:
    fused = score_fusion(
        {
            "knn": [("a", 0.9), ("b", 0.7), ("c", 0.5)],
            "bm25": [("c", 20.0), ("d", 10.0)],
        },
        normalization="min_max",
        weights={"knn": 3.0, "bm25": 1.0},
    )
    scores = {item.id: item.score for item in fused}
    # knn normalized: a 1, b 0.5, c 0.001; bm25: c 1, d 0.001; missing counts 0.
    assert scores["a"] == pytest.approx(3 * 1.0 / 4)
    assert scores["b"] == pytest.approx(3 * 0.5 / 4)
    assert scores["c"] == pytest.approx((3 * 0.001 + 1.0) / 4)
    assert scores["d"] == pytest.approx(0.001 / 4)
    assert [item.id for item in fused] == ["a", "b", "c", "d"]
    assert fused[2].normalized == {"knn": 0.001, "bm25": 1.0}
    assert fused[2].ranks == {"knn": 3, "bm25": 1}


def test_min_max_one_sided_hits_match_plugin() -> None:
    # With equal weights and no BM25 hits, a neural-search 2.19 node scored
    # the top k-NN hit 0.5 and the last one 0.0005.
    fused = score_fusion(
        {"knn": [("a", 0.9896152), ("b", 0.98931086), ("c", 0.9)], "bm25": []},
        normalization="min_max",
        weights={"knn": 0.5, "bm25": 0.5},
    )
    assert [item.id for item in fused] == ["a", "b", "c"]
    assert fused[0].score == pytest.approx(0.5)
    assert fused[2].score == pytest.approx(0.0005)


def test_l2_missing_document_scores_zero() -> None:
    fused = score_fusion(
        {"knn": [("a", 3.0), ("b", 4.0)], "bm25": [("b", 1.0), ("c", 1.0)]},
        normalization="l2",
    )
    scores = {item.id: item.score for item in fused}
    # knn: a 0.6, b 0.8; bm25: b and c 1 / sqrt(2).
    assert scores["a"] == pytest.approx(0.6 / 2)
    assert scores["b"] == pytest.approx((0.8 + 2**-0.5) / 2)
    assert scores["c"] == pytest.approx(2**-0.5 / 2)
    assert fused[-1].id == "a"


def test_z_score_missing_document_takes_lowest() -> None:
    fused = score_fusion(
        {"knn": [("a", 3.0), ("b", 1.0)], "bm25": [("b", 5.0)]},
        normalization="z_score",
    )
    scores = {item.id: item.score for item in fused}
    # knn: a 1, b -1; bm25: b 0, so a takes bm25's lowest value, 0.
    assert scores["a"] == pytest.approx((1.0 + 0.0) / 2)
    assert scores["b"] == pytest.approx((-1.0 + 0.0) / 2)


def test_zero_weight_drops_component() -> None:
    fused = score_fusion(
        {"knn": [("a", 2.0), ("b", 1.0)], "bm25": [("c", 7.0)]},
        normalization="min_max",
        weights={"knn": 1.0, "bm25": 0.0},
    )
    scores = {item.id: item.score for item in fused}
    assert scores == pytest.approx({"a": 1.0, "b": 0.001, "c": 0.0})
    assert all(math.isfinite(value) for value in scores.values())


def test_score_fusion_one_hit_and_ties_stay_finite() -> None:
    for method in ("min_max", "z_score", "l2"):
        fused = score_fusion(
            {"knn": [("a", 1.0)], "bm25": [("b", 5.0), ("c", 5.0)]},
            normalization=method,
        )  # type: ignore[arg-type]
        assert all(math.isfinite(item.score) for item in fused)
        assert len(fused) == 3


def test_score_fusion_rejects_bad_weights() -> None:
    with pytest.raises(ValueError, match="add up to 0"):
        score_fusion({"knn": [("a", 1.0)]}, weights={"knn": 0.0})
    with pytest.raises(ValueError, match=">= 0"):
        score_fusion({"knn": [("a", 1.0)]}, weights={"knn": -1.0})
