"""Reciprocal rank fusion."""

from __future__ import annotations

import math

import pytest

from os_mlt import reciprocal_rank_fusion
from os_mlt.query.fusion import normalize_scores, score_fusion


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
        pytest.param("min_max", [4.0, 2.0, 1.0], [1.0, 1 / 3, 0.0], id="min-max"),
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
    # knn normalized: a 1, b 0.5, c 0; bm25: c 1, d 0; missing counts as the floor 0.
    assert scores["a"] == pytest.approx(3 * 1.0 / 4)
    assert scores["b"] == pytest.approx(3 * 0.5 / 4)
    assert scores["c"] == pytest.approx((3 * 0.0 + 1.0) / 4)
    assert scores["d"] == pytest.approx(0.0)
    assert [item.id for item in fused] == ["a", "b", "c", "d"]
    assert fused[2].normalized == {"knn": 0.0, "bm25": 1.0}
    assert fused[2].ranks == {"knn": 3, "bm25": 1}


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
