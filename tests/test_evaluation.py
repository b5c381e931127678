"""Ranking metrics and judgments built from tag overlap."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from os_mlt import ConfigurationError
from os_mlt.evaluation import (
    Judgment,
    build_tag_judgments,
    dcg,
    read_judgments,
    score_ranking,
    write_judgments,
)


def test_dcg() -> None:
    assert dcg([1.0, 1.0, 0.0, 1.0]) == pytest.approx(
        1 + 1 / math.log2(3) + 1 / math.log2(5)
    )


def test_score_ranking() -> None:
    judgment = Judgment(
        query="q",
        gains={"a": 1.0, "b": 0.5, "c": 0.3},
        ideal_dcg=dcg([1.0, 0.5, 0.3]),
        relevant=3,
        exclude=("q", "sibling"),
    )
    perfect = score_ranking(["q", "sibling", "a", "b", "c"], judgment)
    assert perfect["ndcg@10"] == pytest.approx(1.0)
    assert perfect["p@10"] == pytest.approx(
        0.2
    )  # a and b reach the relevance threshold 0.5
    assert perfect["r@100"] == pytest.approx(2 / 3)
    worse = score_ranking(["x", "c", "b", "a"], judgment)
    assert worse["ndcg@10"] < 1.0
    assert worse["ndcg@10"] == pytest.approx(
        dcg([0.0, 0.3, 0.5, 1.0]) / dcg([1.0, 0.5, 0.3])
    )


RECORDS = [
    {"id": "q", "tags": ["a", "b", "c"], "source": "s1"},
    {"id": "sibling", "tags": ["a", "b", "c"], "source": "s1"},
    {"id": "close", "tags": ["a", "b", "c", "d"], "source": "s2"},
    {"id": "half", "tags": ["a", "x"], "source": "s3"},
    {"id": "far", "tags": ["y", "z", "w"], "source": "s4"},
]


def test_tag_judgments_exclude_siblings_and_grade_by_jaccard() -> None:
    # Four documents have 3+ tags, so asking for four queries takes them all.
    judgments = {j.query: j for j in build_tag_judgments(RECORDS, queries=4, seed=13)}
    assert set(judgments) == {"q", "sibling", "close", "far"}

    q = judgments["q"]
    assert q.exclude == ("q", "sibling")
    assert q.gains == {"close": 0.75, "half": 0.25}
    assert q.relevant == 1
    assert q.ideal_dcg == pytest.approx(dcg([0.75, 0.25]))
    assert judgments["far"].gains == {}
    assert judgments["far"].ideal_dcg == 0.0


def test_tag_judgments_query_sample_is_seeded() -> None:
    first = [j.query for j in build_tag_judgments(RECORDS, queries=2, seed=13)]
    again = [j.query for j in build_tag_judgments(RECORDS, queries=2, seed=13)]
    assert first == again


def test_too_few_queries_raise() -> None:
    with pytest.raises(ConfigurationError, match="fewer than the 10 queries"):
        build_tag_judgments(RECORDS, queries=10)


def test_judgments_round_trip(tmp_path: Path) -> None:
    judgments = build_tag_judgments(RECORDS, queries=2, seed=1)
    path = tmp_path / "judgments.jsonl"
    write_judgments(path, judgments)
    assert read_judgments(path) == judgments
    path.write_text('{"query": "q"}\n', encoding="utf-8")
    with pytest.raises(
        ConfigurationError, match="judgment 1 in judgments.jsonl is invalid"
    ):
        read_judgments(path)
