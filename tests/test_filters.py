"""Filter objects and the compact filter syntax."""

from __future__ import annotations

import pytest

from os_mlt import ConfigurationError, Exists, Not, Range, Term, Terms, parse_filter
from os_mlt.query import build_filter_clauses


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("section=python", Term("section", "python"), id="term"),
        pytest.param(
            "tags=field::biology", Term("tags", "field::biology"), id="term-with-colons"
        ),
        pytest.param("tags=a,b , c", Terms("tags", ("a", "b", "c")), id="terms"),
        pytest.param(r"name=a\,b", Term("name", "a,b"), id="escaped-comma"),
        pytest.param("size>=100", Range("size", gte="100"), id="gte"),
        pytest.param("size>100", Range("size", gt="100"), id="gt"),
        pytest.param(
            "released<=2024-06-30", Range("released", lte="2024-06-30"), id="lte-date"
        ),
        pytest.param(
            "released<now-1y", Range("released", lt="now-1y"), id="lt-date-math"
        ),
        pytest.param("depends=*", Exists("depends"), id="exists"),
        pytest.param("depends!=*", Not(Exists("depends")), id="missing"),
        pytest.param("section!=libs", Not(Term("section", "libs")), id="not-term"),
        pytest.param("not:size>=5", Not(Range("size", gte="5")), id="not-prefix"),
        pytest.param(
            "not:section!=libs", Term("section", "libs"), id="double-negation"
        ),
    ],
)
def test_parse_filter(text: str, expected: object) -> None:
    assert parse_filter(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("section", "no operator", id="no-operator"),
        pytest.param("=python", "names no field", id="no-field"),
        pytest.param("section=", "no value", id="no-value"),
        pytest.param("tags=a,,b", "empty value", id="empty-list-item"),
        pytest.param("section==video", "as in section=video", id="double-equals"),
        pytest.param("size>=>5", "second operator", id="two-operators"),
        pytest.param("not:", "nothing after 'not:'", id="not-empty"),
        pytest.param("not: ", "nothing after 'not:'", id="not-blank"),
        pytest.param("not:section", "no operator", id="not-no-operator"),
        pytest.param("not:size>=", "no value", id="not-no-value"),
        pytest.param("not:not:=python", "names no field", id="not-not-no-field"),
    ],
)
def test_parse_filter_rejects(text: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as raised:
        parse_filter(text)
    assert repr(text) in str(raised.value)


def test_range_needs_a_bound() -> None:
    with pytest.raises(ConfigurationError, match="no bound"):
        Range("size")


def test_range_rejects_two_lower_bounds() -> None:
    with pytest.raises(ConfigurationError, match="both gte and gt"):
        Range("size", gte=1, gt=2)


def test_terms_needs_values() -> None:
    with pytest.raises(ConfigurationError, match="no values"):
        Terms("tags", ())


def test_filter_dsl() -> None:
    assert Term("section", "python").to_dsl() == {"term": {"section": "python"}}
    assert Terms("tags", ("a", "b")).to_dsl() == {"terms": {"tags": ["a", "b"]}}
    assert Range(
        "released", gte="2020-01-01", lt="now", format="yyyy-MM-dd"
    ).to_dsl() == {
        "range": {
            "released": {"gte": "2020-01-01", "lt": "now", "format": "yyyy-MM-dd"}
        }
    }
    assert Exists("depends").to_dsl() == {"exists": {"field": "depends"}}


def test_build_filter_clauses_splits_negations() -> None:
    raw = {"prefix": {"title": "lib"}}
    positive, negative = build_filter_clauses(
        [
            Term("section", "python"),
            "size>=10",
            Not(Exists("depends")),
            "tags!=x,y",
            raw,
        ]
    )
    assert positive == [
        {"term": {"section": "python"}},
        {"range": {"size": {"gte": "10"}}},
        {"prefix": {"title": "lib"}},
    ]
    assert negative == [
        {"exists": {"field": "depends"}},
        {"terms": {"tags": ["x", "y"]}},
    ]


def test_build_filter_clauses_rejects_other_types() -> None:
    with pytest.raises(ConfigurationError, match="is a int"):
        build_filter_clauses([42])  # type: ignore[list-item]
