"""Several examples, negative examples, boosts and MMR diversity on a real node."""

from __future__ import annotations

import math
from datetime import datetime, timezone

import numpy as np
import pytest
from opensearchpy import OpenSearch

from os_mlt import (
    ConfigurationError,
    DocumentNotFoundError,
    Encoder,
    NumericBoost,
    Recency,
    Settings,
    hybrid_similar,
    similar_to_text,
)
from os_mlt.query.rerank import mmr_order, parse_date, parse_duration, relevance

from . import test_hybrid
from .test_hybrid import DOCUMENTS

pytestmark = pytest.mark.integration

# The twelve packages of test_hybrid, loaded and embedded once for this module.
hybrid_index = test_hybrid.hybrid_index


def _vectors(client: OpenSearch, settings: Settings, ids: list[str]) -> np.ndarray:
    response = client.search(
        index=settings.index,
        body={
            "size": len(ids),
            "_source": [settings.vector_field],
            "query": {"ids": {"values": ids}},
        },
    )
    by_id = {
        hit["_id"]: hit["_source"]["embedding"] for hit in response["hits"]["hits"]
    }
    return np.asarray([by_id[doc_id] for doc_id in ids], dtype=np.float32)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_several_examples_average_their_vectors(
    hybrid_index: Settings, client: OpenSearch, encoder: Encoder
) -> None:
    result = hybrid_similar(
        ["vlc", "gimp"],
        k=6,
        settings=hybrid_index,
        client=client,
        source_fields=["section"],
    )

    ids = [hit.id for hit in result.hits]
    assert "vlc" not in ids
    assert "gimp" not in ids
    # Both examples pull their own neighbours into the first hits.
    assert {"mpv", "inkscape"} <= set(ids[:4])
    assert result.doc_id == "vlc, gimp"
    knn = result.requests[1].body["query"]["knn"]["embedding"]
    vlc, gimp = _vectors(client, hybrid_index, ["vlc", "gimp"])
    expected = vlc / np.linalg.norm(vlc) + gimp / np.linalg.norm(gimp)
    assert _cosine(np.asarray(knn["vector"]), expected) == pytest.approx(1.0, abs=1e-5)
    mlt = result.requests[2].body["query"]["bool"]["must"][0]["more_like_this"]
    assert [item["_id"] for item in mlt["like"]] == ["vlc", "gimp"]


def test_best_example_searches_once_per_example(
    hybrid_index: Settings, client: OpenSearch
) -> None:
    result = hybrid_similar(
        ["vlc", "gimp"],
        k=6,
        example_vectors="best",
        settings=hybrid_index,
        client=client,
    )

    knn_requests = [request for request in result.requests if "k-NN" in request.label]
    assert len(knn_requests) == 2
    # Each candidate keeps the score of its closer example.
    mpv = next(hit for hit in result.hits if hit.id == "mpv")
    single = hybrid_similar("vlc", k=11, settings=hybrid_index, client=client)
    assert mpv.knn_score == pytest.approx(
        next(hit.knn_score for hit in single.hits if hit.id == "mpv")
    )


def test_unlike_moves_away_and_is_never_returned(
    hybrid_index: Settings, client: OpenSearch
) -> None:
    plain = hybrid_similar("scipy", k=11, settings=hybrid_index, client=client)
    result = hybrid_similar(
        "scipy", k=10, unlike=["numpy"], settings=hybrid_index, client=client
    )

    assert "numpy" not in [hit.id for hit in result.hits]
    assert "numpy" in [hit.id for hit in plain.hits]
    scipy, numpy_vector = _vectors(client, hybrid_index, ["scipy", "numpy"])
    query = np.asarray(
        result.requests[1].body["query"]["knn"]["embedding"]["vector"], np.float32
    )
    assert _cosine(query, numpy_vector) < _cosine(scipy, numpy_vector)
    mlt = result.requests[2].body["query"]["bool"]["must"][0]["more_like_this"]
    assert mlt["unlike"] == [{"_index": mlt["like"][0]["_index"], "_id": "numpy"}]


def test_bad_examples_raise(hybrid_index: Settings, client: OpenSearch) -> None:
    with pytest.raises(ConfigurationError, match=r"\['vlc'\] are both"):
        hybrid_similar("vlc", unlike=["vlc"], settings=hybrid_index, client=client)
    with pytest.raises(DocumentNotFoundError, match="'nope'"):
        hybrid_similar(["vlc", "nope"], settings=hybrid_index, client=client)
    with pytest.raises(ConfigurationError, match="at least one example"):
        hybrid_similar([], settings=hybrid_index, client=client)
    with pytest.raises(ConfigurationError, match="'closest' is not"):
        hybrid_similar(
            "vlc",
            example_vectors="closest",  # type: ignore[arg-type]
            settings=hybrid_index,
            client=client,
        )


def test_recency_boost_multiplies_relevance(
    hybrid_index: Settings, client: OpenSearch
) -> None:
    origin = datetime(2023, 7, 1, tzinfo=timezone.utc)
    boost = Recency("released", half_life="30d", origin=origin)
    result = hybrid_similar(
        "scipy",
        k=11,
        boosts=[boost],
        settings=hybrid_index,
        client=client,
        source_fields=["released"],
    )

    finals = [hit.final_score for hit in result.hits]
    assert finals == sorted(finals, reverse=True)
    plain = hybrid_similar("scipy", k=11, settings=hybrid_index, client=client)
    scores = relevance([hit.score for hit in plain.hits])
    expected_relevance = dict(zip([hit.id for hit in plain.hits], scores, strict=True))
    for hit in result.hits:
        released = datetime.fromisoformat(hit.source["released"]).replace(
            tzinfo=timezone.utc
        )
        age_days = (origin - released).days
        assert hit.boost == pytest.approx(0.5 ** (age_days / 30))
        assert hit.final_score == pytest.approx(expected_relevance[hit.id] * hit.boost)
    # nginx (released on the origin day) climbs above older, closer matches.
    assert [hit.id for hit in result.hits].index("nginx") < [
        hit.id for hit in plain.hits
    ].index("nginx")


def test_numeric_boost_favours_large_values(
    hybrid_index: Settings, client: OpenSearch
) -> None:
    result = hybrid_similar(
        "vlc",
        k=11,
        boosts=[NumericBoost("size", weight=20.0, modifier="linear")],
        settings=hybrid_index,
        client=client,
        source_fields=[],
    )

    largest = max(DOCUMENTS[hit.id]["size"] for hit in result.hits)
    assert result.hits[0].source["size"] == largest
    assert result.hits[0].boost == pytest.approx(21.0)
    for hit in result.hits:
        assert hit.boost == pytest.approx(1 + 20.0 * hit.source["size"] / largest)
    with pytest.raises(ConfigurationError, match="above -1"):
        NumericBoost("size", weight=-1.5)


def test_diversity_zero_keeps_order(hybrid_index: Settings, client: OpenSearch) -> None:
    plain = hybrid_similar("scipy", k=8, settings=hybrid_index, client=client)
    kept = hybrid_similar(
        "scipy", k=8, diversity=0.0, settings=hybrid_index, client=client
    )

    assert [hit.id for hit in kept.hits] == [hit.id for hit in plain.hits]


def test_diversity_spreads_the_first_hits(
    hybrid_index: Settings, client: OpenSearch
) -> None:
    plain = hybrid_similar("scipy", k=4, settings=hybrid_index, client=client)
    diverse = hybrid_similar(
        "scipy", k=4, diversity=0.8, settings=hybrid_index, client=client
    )

    def closeness(ids: list[str]) -> float:
        vectors = _vectors(client, hybrid_index, ids)
        unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        similarity = unit @ unit.T
        return float(similarity[np.triu_indices(len(ids), 1)].mean())

    assert diverse.hits[0].id == plain.hits[0].id
    assert closeness([hit.id for hit in diverse.hits]) < closeness(
        [hit.id for hit in plain.hits]
    )
    # Pages cut one fixed MMR order.
    whole = hybrid_similar(
        "scipy", k=6, diversity=0.8, settings=hybrid_index, client=client
    )
    second = hybrid_similar(
        "scipy", k=3, offset=3, diversity=0.8, settings=hybrid_index, client=client
    )
    assert [hit.id for hit in second.hits] == [hit.id for hit in whole.hits[3:]]


def test_text_search_takes_boosts_and_diversity(
    hybrid_index: Settings, client: OpenSearch, encoder: Encoder
) -> None:
    result = similar_to_text(
        "video player",
        k=3,
        diversity=0.5,
        boosts=[NumericBoost("size")],
        settings=hybrid_index,
        client=client,
        encoder=encoder,
    )
    assert len(result.hits) == 3
    assert all(hit.final_score is not None for hit in result.hits)
    with pytest.raises(ConfigurationError, match="diversity must be"):
        similar_to_text(
            "video",
            diversity=1.5,
            settings=hybrid_index,
            client=client,
            encoder=encoder,
        )


def test_mmr_prefers_a_new_direction_over_a_duplicate() -> None:
    vectors = np.asarray([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0]], dtype=np.float32)
    picks = mmr_order([1.0, 0.95, 0.6], vectors, diversity=0.5, count=3)
    assert [position for position, _ in picks] == [0, 2, 1]
    assert [
        p for p, _ in mmr_order([0.2, 0.9, 0.5], vectors, diversity=0, count=3)
    ] == [
        1,
        2,
        0,
    ]


def test_dates_durations_and_relevance() -> None:
    assert parse_date("2024") == datetime(2024, 1, 1, tzinfo=timezone.utc)
    assert parse_date("2024-05") == datetime(2024, 5, 1, tzinfo=timezone.utc)
    assert parse_date("2024-05-17T10:00:00Z") == datetime(
        2024, 5, 17, 10, tzinfo=timezone.utc
    )
    assert parse_date(0) == datetime(1970, 1, 1, tzinfo=timezone.utc)
    assert parse_date("soon") is None
    assert parse_duration("2w").days == 14
    with pytest.raises(ConfigurationError, match="'10 years'"):
        parse_duration("10 years")
    assert relevance([3.0, 3.0]) == [1.0, 1.0]
    values = relevance([-2.0, 0.0, 2.0])
    assert values[0] > 0
    assert values[2] == 1.0
    assert all(math.isfinite(value) for value in values)


def test_shared_categorical_values_raise_hits(
    hybrid_index: Settings, client: OpenSearch
) -> None:
    result = hybrid_similar(
        "scipy",
        k=11,
        categorical_fields=["section", "tags"],
        categorical_weight=4.0,
        settings=hybrid_index,
        client=client,
        source_fields=[],
    )

    wanted = {"section": {"python"}, "tags": set(DOCUMENTS["scipy"]["tags"])}
    for hit in result.hits:
        overlaps = []
        for name, values in wanted.items():
            value = DOCUMENTS[hit.id][name]
            have = set(value if isinstance(value, list) else [value])
            overlaps.append(len(values & have) / len(values | have))
        assert hit.boost == pytest.approx(1 + 4.0 * sum(overlaps) / 2)
        assert hit.source["section"] == DOCUMENTS[hit.id]["section"]
    # numpy shares the section and both tags; it leads whatever the fusion.
    assert result.hits[0].id == "numpy"
    assert [hit.id for hit in result.hits][:2] == ["numpy", "sympy"]


def test_categorical_fields_come_from_settings(
    hybrid_index: Settings, client: OpenSearch, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OS_MLT_CATEGORICAL_FIELDS", "section")
    monkeypatch.setenv("OS_MLT_CATEGORICAL_WEIGHT", "3")
    settings = Settings(hosts=hybrid_index.hosts, index=hybrid_index.index)
    assert settings.categorical_fields == ["section"]

    result = hybrid_similar("vlc", k=3, settings=settings, client=client)
    assert result.hits[0].id == "mpv"
    assert result.hits[0].boost == pytest.approx(4.0)
    plain = hybrid_similar(
        "vlc", k=3, categorical_fields=[], settings=settings, client=client
    )
    assert all(hit.boost == 1.0 and hit.final_score is None for hit in plain.hits)
    monkeypatch.setenv("OS_MLT_CATEGORICAL_FIELDS", "bad field")
    with pytest.raises(ValueError, match="'bad field'"):
        Settings()


def test_categorical_field_without_values_is_reported(
    hybrid_index: Settings, client: OpenSearch, caplog: pytest.LogCaptureFixture
) -> None:
    result = hybrid_similar(
        "vlc",
        k=3,
        categorical_fields=["sectoin"],
        settings=hybrid_index,
        client=client,
    )
    assert all(hit.boost == 1.0 for hit in result.hits)
    assert "Categorical field 'sectoin' has no value in vlc" in caplog.text


def test_boost_on_a_field_without_values_is_reported(
    hybrid_index: Settings, client: OpenSearch, caplog: pytest.LogCaptureFixture
) -> None:
    result = hybrid_similar(
        "vlc",
        k=3,
        boosts=[Recency("title"), NumericBoost("nosuchfield")],
        settings=hybrid_index,
        client=client,
    )
    assert all(hit.boost == 1.0 for hit in result.hits)
    assert "No candidate has a date in field 'title'" in caplog.text
    assert "No candidate has a number in field 'nosuchfield'" in caplog.text
