"""Reciprocal rank fusion."""

from __future__ import annotations

import math

import pytest

from os_mlt import reciprocal_rank_fusion


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
