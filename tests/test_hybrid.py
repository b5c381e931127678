"""hybrid_similar and the `similar` command against a real node."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from opensearchpy import OpenSearch, TransportError

from os_mlt import (
    ConfigurationError,
    DocumentNotFoundError,
    Encoder,
    Exists,
    Not,
    OsMltError,
    Range,
    Settings,
    Term,
    Terms,
    VectorMissingError,
    backfill,
    hybrid_similar,
)
from os_mlt.cli import main

from .conftest import create_index

pytestmark = pytest.mark.integration

DOCUMENTS: dict[str, dict[str, Any]] = {
    "scipy": {
        "title": "scientific tools for Python",
        "body": "Numerical integration, optimization and linear algebra.",
        "section": "python",
        "tags": ["field::mathematics", "devel::lang:python"],
        "size": 60000,
        "released": "2023-01-10",
    },
    "numpy": {
        "title": "fast array computing for Python",
        "body": "N-dimensional arrays and numerical routines.",
        "section": "python",
        "tags": ["field::mathematics", "devel::lang:python"],
        "size": 20000,
        "released": "2022-12-01",
    },
    "sympy": {
        "title": "symbolic mathematics for Python",
        "body": "Computer algebra system in pure Python.",
        "section": "python",
        "tags": ["field::mathematics"],
        "size": 45000,
        "released": "2023-03-01",
    },
    "octave": {
        "title": "numerical computation language",
        "body": "MATLAB compatible numerical linear algebra and optimization.",
        "section": "math",
        "tags": ["field::mathematics"],
        "size": 9000,
        "released": "2023-02-01",
    },
    "r-base": {
        "title": "statistical computing environment",
        "body": "Statistics, numerical analysis and graphics.",
        "section": "gnu-r",
        "tags": ["field::statistics"],
        "size": 150,
        "released": "2021-06-15",
    },
    "gimp": {
        "title": "GNU Image Manipulation Program",
        "body": "Paint, retouch photographs and edit raster images.",
        "section": "graphics",
        "tags": ["use::editing", "works-with::image"],
        "size": 20000,
        "released": "2023-05-05",
    },
    "inkscape": {
        "title": "vector graphics editor",
        "body": "Draw and edit scalable vector graphics images.",
        "section": "graphics",
        "tags": ["use::editing", "works-with::image:vector"],
        "size": 80000,
        "released": "2023-04-01",
    },
    "vlc": {
        "title": "multimedia player and streamer",
        "body": "Plays video and audio files and network streams.",
        "section": "video",
        "tags": ["works-with::video"],
        "size": 300,
        "released": "2023-06-01",
    },
    "mpv": {
        "title": "video player based on MPlayer",
        "body": "A command line video player.",
        "section": "video",
        "tags": ["works-with::video"],
        "size": 4000,
        "released": "2022-11-20",
    },
    "nginx": {
        "title": "small, powerful, scalable web server",
        "body": "HTTP server and reverse proxy.",
        "section": "httpd",
        "tags": ["network::server"],
        "size": 1500,
        "released": "2023-07-01",
    },
    "apache2": {
        "title": "Apache HTTP Server",
        "body": "A web server for serving HTTP content.",
        "section": "httpd",
        "tags": ["network::server"],
        "size": 600,
        "released": "2023-01-30",
    },
    "samtools": {
        "title": "processing sequence alignments in SAM and BAM formats",
        "body": "Utilities for DNA sequence alignment data.",
        "section": "science",
        "tags": ["field::biology"],
        "size": 1200,
        "released": "2023-02-20",
    },
}
ALL_OTHERS = len(DOCUMENTS) - 1


@pytest.fixture(scope="module")
def hybrid_index(
    client: OpenSearch, encoder: Encoder, opensearch_url: str
) -> Iterator[Settings]:
    name = f"os-mlt-test-{uuid.uuid4().hex[:12]}"
    create_index(client, name, DOCUMENTS)
    settings = Settings(hosts=[opensearch_url], index=name)
    report = backfill(settings, client=client, encoder=encoder)
    assert report.embedded == len(DOCUMENTS)
    yield settings
    client.indices.delete(index=f"{name}*", ignore_unavailable=True)


def _ids(result: Any) -> list[str]:
    return [hit.id for hit in result.hits]


def test_excludes_the_document_and_returns_k(
    hybrid_index: Settings, client: OpenSearch
) -> None:
    result = hybrid_similar("scipy", k=5, settings=hybrid_index, client=client)

    assert len(result.hits) == 5
    assert "scipy" not in _ids(result)
    assert len(set(_ids(result))) == 5
    scores = [hit.score for hit in result.hits]
    assert scores == sorted(scores, reverse=True)


def test_neighbours_are_related(hybrid_index: Settings, client: OpenSearch) -> None:
    result = hybrid_similar("scipy", k=3, settings=hybrid_index, client=client)
    assert set(_ids(result)) <= {"numpy", "sympy", "octave", "r-base"}

    result = hybrid_similar("vlc", k=1, settings=hybrid_index, client=client)
    assert _ids(result) == ["mpv"]


def test_hits_carry_component_ranks_and_scores(
    hybrid_index: Settings, client: OpenSearch
) -> None:
    result = hybrid_similar("nginx", k=ALL_OTHERS, settings=hybrid_index, client=client)

    assert len(result.hits) == ALL_OTHERS
    knn_ranks = sorted(hit.knn_rank for hit in result.hits if hit.knn_rank is not None)
    assert knn_ranks == list(
        range(1, ALL_OTHERS + 1)
    )  # every other document is a k-NN candidate
    for hit in result.hits:
        assert hit.knn_score is not None and 0.0 < hit.knn_score <= 1.0
        expected = 1 / (60 + hit.knn_rank)
        if hit.bm25_rank is not None:
            assert hit.bm25_score is not None and hit.bm25_score > 0
            expected += 1 / (60 + hit.bm25_rank)
        assert hit.score == pytest.approx(expected)
    apache = next(hit for hit in result.hits if hit.id == "apache2")
    assert apache.bm25_rank == 1  # shares "web server" and "HTTP"


def test_source_fields(hybrid_index: Settings, client: OpenSearch) -> None:
    result = hybrid_similar(
        "gimp",
        k=2,
        settings=hybrid_index,
        client=client,
        source_fields=["title", "section"],
    )
    for hit in result.hits:
        assert set(hit.source) == {"title", "section"}

    result = hybrid_similar("gimp", k=2, settings=hybrid_index, client=client)
    for hit in result.hits:
        assert "embedding" not in hit.source
        assert "embedding_meta" not in hit.source
        assert "title" in hit.source


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        pytest.param([Term("section", "python")], {"numpy", "sympy"}, id="term"),
        pytest.param(["section=python"], {"numpy", "sympy"}, id="term-string"),
        pytest.param(
            [Terms("section", ("video", "graphics"))],
            {"gimp", "inkscape", "vlc", "mpv"},
            id="terms",
        ),
        pytest.param(
            [Range("size", gte=10000)],
            {"numpy", "sympy", "gimp", "inkscape"},
            id="numeric-range",
        ),
        pytest.param(
            ["size<1000"], {"r-base", "vlc", "apache2"}, id="numeric-range-string"
        ),
        pytest.param(
            [Range("released", gte="2023-01-01", lt="2023-03-01")],
            {"octave", "apache2", "samtools"},
            id="date-range",
        ),
        pytest.param(
            ["released<2023"], {"numpy", "r-base", "mpv"}, id="date-range-year"
        ),
        pytest.param(
            [Not(Term("section", "python")), Term("tags", "field::mathematics")],
            {"octave"},
            id="must-not",
        ),
        pytest.param(
            [{"prefix": {"section": "gr"}}], {"gimp", "inkscape"}, id="raw-dsl"
        ),
    ],
)
def test_filters(
    hybrid_index: Settings, client: OpenSearch, filters: list[Any], expected: set[str]
) -> None:
    result = hybrid_similar(
        "scipy", k=10, filters=filters, settings=hybrid_index, client=client
    )
    assert set(_ids(result)) == expected


def test_exists_filter(hybrid_index: Settings, client: OpenSearch) -> None:
    client.index(
        index=hybrid_index.index,
        id="with-homepage",
        body={"title": "x", "homepage": "https://example.org"},
        refresh=True,
    )
    try:
        backfill(hybrid_index, client=client)
        result = hybrid_similar(
            "scipy",
            k=10,
            filters=[Exists("homepage")],
            settings=hybrid_index,
            client=client,
        )
        assert _ids(result) == ["with-homepage"]
        result = hybrid_similar(
            "scipy", k=20, filters=["homepage!=*"], settings=hybrid_index, client=client
        )
        assert "with-homepage" not in _ids(result)
        assert len(result.hits) == ALL_OTHERS
    finally:
        client.delete(index=hybrid_index.index, id="with-homepage", refresh=True)


def test_filter_matching_nothing_returns_no_hits(
    hybrid_index: Settings, client: OpenSearch
) -> None:
    result = hybrid_similar(
        "scipy",
        filters=["section=no-such-section"],
        settings=hybrid_index,
        client=client,
    )
    assert result.hits == []


def test_missing_document_raises(hybrid_index: Settings, client: OpenSearch) -> None:
    with pytest.raises(DocumentNotFoundError, match="no document has _id 'no-such-id'"):
        hybrid_similar("no-such-id", settings=hybrid_index, client=client)


def test_custom_routing_finds_examples_and_sources(
    client: OpenSearch, encoder: Encoder, opensearch_url: str
) -> None:
    name = f"os-mlt-test-{uuid.uuid4().hex[:12]}"
    client.indices.create(
        index=name,
        body={
            "settings": {"index": {"number_of_shards": 3, "knn": True}},
            "mappings": {
                "_routing": {"required": True},
                "properties": {"title": {"type": "text"}, "body": {"type": "text"}},
            },
        },
    )
    try:
        for doc_id, source in DOCUMENTS.items():
            client.index(index=name, id=doc_id, body=source, routing=f"team-{doc_id}")
        client.indices.refresh(index=name)
        settings = Settings(hosts=[opensearch_url], index=name)
        assert backfill(settings, client=client, encoder=encoder).ok

        result = hybrid_similar("scipy", k=3, settings=settings, client=client)

        assert len(result.hits) == 3
        assert "scipy" not in _ids(result)
        assert all(hit.source.get("title") for hit in result.hits)
        with pytest.raises(DocumentNotFoundError, match="no document has _id 'nope'"):
            hybrid_similar("nope", settings=settings, client=client)
    finally:
        client.indices.delete(index=name, ignore_unavailable=True)


def test_document_without_vector_raises(
    hybrid_index: Settings, client: OpenSearch
) -> None:
    client.index(
        index=hybrid_index.index,
        id="fresh",
        body={"title": "new package"},
        refresh=True,
    )
    try:
        with pytest.raises(VectorMissingError, match="os-mlt backfill"):
            hybrid_similar("fresh", settings=hybrid_index, client=client)
    finally:
        client.delete(index=hybrid_index.index, id="fresh", refresh=True)


def test_document_without_text_raises(
    hybrid_index: Settings, client: OpenSearch
) -> None:
    client.index(
        index=hybrid_index.index, id="no-text", body={"title": ""}, refresh=True
    )
    try:
        with pytest.raises(VectorMissingError, match="has no text in title, body"):
            hybrid_similar("no-text", settings=hybrid_index, client=client)
    finally:
        client.delete(index=hybrid_index.index, id="no-text", refresh=True)


def test_invalid_arguments_raise(hybrid_index: Settings, client: OpenSearch) -> None:
    with pytest.raises(ConfigurationError, match="k must be at least 1"):
        hybrid_similar("scipy", k=0, settings=hybrid_index, client=client)
    with pytest.raises(ConfigurationError, match="num_candidates"):
        hybrid_similar(
            "scipy", k=30, num_candidates=10, settings=hybrid_index, client=client
        )


def _dev_tools_blocks(text: str) -> list[tuple[str, dict[str, Any]]]:
    """Split Dev Tools text into (request line, body) pairs."""
    blocks = []
    for match in re.finditer(
        r"^GET (\S+)\n(\{.*?^\})", text, flags=re.MULTILINE | re.DOTALL
    ):
        blocks.append((match.group(1), json.loads(match.group(2))))
    return blocks


def test_cli_dsl_runs_as_printed(
    hybrid_index: Settings, client: OpenSearch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert hybrid_index.index is not None
    status = main(
        [
            "similar",
            "scipy",
            "--hosts",
            hybrid_index.hosts[0],
            "--index",
            hybrid_index.index,
            "-k",
            "3",
            "--filter",
            "section=python",
            "--filter",
            "size>=100",
            "--dsl",
            "--json",
        ]
    )
    captured = capsys.readouterr()

    assert status == 0
    blocks = _dev_tools_blocks(captured.err)
    paths = [path for path, _ in blocks]
    # The lookup reads by _id with _mget, or searches when _mget cannot read
    # the vector (see the NOTE on derived source in hybrid.py).
    assert paths[0] in (f"{hybrid_index.index}/_mget", f"{hybrid_index.index}/_search")
    assert paths[1:3] == [f"{hybrid_index.index}/_search"] * 2
    assert paths[3] in ("_mget", f"{hybrid_index.index}/_search")
    lookup, knn, mlt, page = (body for _, body in blocks)
    page_ids = (
        [doc["_id"] for doc in page["docs"]]
        if "docs" in page
        else (page["query"]["ids"]["values"])
    )
    assert sorted(page_ids) == ["numpy", "sympy"]
    assert (
        lookup.get("query") == {"ids": {"values": ["scipy"]}}
        or lookup["docs"][0]["_id"] == "scipy"
    )
    assert knn["query"]["knn"]["embedding"]["filter"]["bool"]["filter"] == [
        {"term": {"section": "python"}},
        {"range": {"size": {"gte": "100"}}},
    ]
    # The printed bodies run as they are and find the documents the command fused.
    knn_ids = {
        hit["_id"]
        for hit in client.search(index=hybrid_index.index, body=knn)["hits"]["hits"]
    }
    mlt_ids = {
        hit["_id"]
        for hit in client.search(index=hybrid_index.index, body=mlt)["hits"]["hits"]
    }
    hits = json.loads(captured.out)  # stdout holds only the JSON hits
    assert {hit["id"] for hit in hits} <= knn_ids | mlt_ids
    assert {hit["id"] for hit in hits} == {"numpy", "sympy"}


def test_cli_reports_missing_document(
    hybrid_index: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert hybrid_index.index is not None
    status = main(
        [
            "similar",
            "nope",
            "--hosts",
            hybrid_index.hosts[0],
            "--index",
            hybrid_index.index,
        ]
    )
    assert status == 1
    assert "no document has _id 'nope'" in capsys.readouterr().err


def test_cli_names_closed_index(
    client: OpenSearch,
    encoder: Encoder,
    index_name: str,
    opensearch_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    create_index(client, index_name, {"vlc": DOCUMENTS["vlc"]})
    client.indices.close(index=index_name)

    status = main(["similar", "vlc", "--hosts", opensearch_url, "--index", index_name])

    assert status == 1
    assert f"POST {index_name}/_open" in capsys.readouterr().err


def test_cli_rejects_bad_filter(
    hybrid_index: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert hybrid_index.index is not None
    status = main(
        [
            "similar",
            "scipy",
            "--hosts",
            hybrid_index.hosts[0],
            "--index",
            hybrid_index.index,
            "--filter",
            "section",
        ]
    )
    assert status == 2
    assert "filter 'section' has no operator" in capsys.readouterr().err


def test_unreadable_vector_falls_back_to_text(
    hybrid_index: Settings, client: OpenSearch, encoder: Encoder
) -> None:
    class VectorReadFails(OpenSearch):
        """The real client, except that reading a stored vector fails as in k-NN 3.5's derived source."""

        def mget(self, *args: Any, body: Any = None, **kwargs: Any) -> Any:
            if any("embedding" in (doc.get("_source") or []) for doc in body["docs"]):
                raise TransportError(503, "search_phase_execution_exception", {})
            return super().mget(*args, body=body, **kwargs)

        def search(self, *args: Any, body: Any = None, **kwargs: Any) -> Any:
            if body and "embedding" in (body.get("_source") or []):
                raise TransportError(503, "search_phase_execution_exception", {})
            return super().search(*args, body=body, **kwargs)

    failing = VectorReadFails(hosts=hybrid_index.hosts)
    expected = hybrid_similar("scipy", k=5, settings=hybrid_index, client=client)

    result = hybrid_similar(
        "scipy", k=5, settings=hybrid_index, client=failing, encoder=encoder
    )

    assert _ids(result) == _ids(expected)
    assert "embedding_meta" in result.requests[0].body["_source"]


def _fail_one_shard(response: dict[str, Any]) -> None:
    """Turn a search response into one whose only shard failed to read."""
    response["_shards"]["failed"] = 1
    response["_shards"]["failures"] = [
        {"reason": {"type": "already_closed_exception", "reason": "closed"}}
    ]
    response["hits"]["hits"] = []


def test_vector_read_failing_on_shards_falls_back(
    hybrid_index: Settings, client: OpenSearch, encoder: Encoder
) -> None:
    class ShardReadFails(OpenSearch):
        """The real client, except that derived source fails as k-NN 3.5's can.

        `_mget` returns an error per document, and a search that reads the
        vector returns status 200 with a failed shard and no hits.
        """

        def mget(self, *args: Any, body: Any = None, **kwargs: Any) -> Any:
            response = super().mget(*args, body=body, **kwargs)
            if any("embedding" in (doc.get("_source") or []) for doc in body["docs"]):
                for doc in response["docs"]:
                    doc.pop("_source", None)
                    doc["error"] = {"type": "already_closed_exception"}
            return response

        def search(self, *args: Any, body: Any = None, **kwargs: Any) -> Any:
            response = super().search(*args, body=body, **kwargs)
            if body and "embedding" in (body.get("_source") or []):
                _fail_one_shard(response)
            return response

    failing = ShardReadFails(hosts=hybrid_index.hosts)
    expected = hybrid_similar("scipy", k=5, settings=hybrid_index, client=client)

    result = hybrid_similar(
        "scipy", k=5, settings=hybrid_index, client=failing, encoder=encoder
    )

    assert _ids(result) == _ids(expected)
    assert "embedding" not in result.requests[0].body["_source"]


def test_example_lookup_failing_on_shards_raises(
    hybrid_index: Settings, encoder: Encoder
) -> None:
    class EveryLookupFails(OpenSearch):
        def mget(self, *args: Any, **kwargs: Any) -> Any:
            raise TransportError(500, "already_closed_exception", {})

        def search(self, *args: Any, **kwargs: Any) -> Any:
            response = super().search(*args, **kwargs)
            _fail_one_shard(response)
            return response

    failing = EveryLookupFails(hosts=hybrid_index.hosts)

    with pytest.raises(OsMltError, match="failed on 1 of 1 shards") as raised:
        hybrid_similar(
            "scipy", k=5, settings=hybrid_index, client=failing, encoder=encoder
        )
    assert "already_closed_exception: closed" in str(raised.value)
    assert not isinstance(raised.value, DocumentNotFoundError)


@pytest.mark.parametrize(
    "bad_range", [Range("size", gte="abc"), Range("released", gte="not-a-date")]
)
def test_filter_value_of_wrong_type_is_named(
    hybrid_index: Settings, client: OpenSearch, bad_range: Range
) -> None:
    with pytest.raises(OsMltError, match="check that each filter value fits") as raised:
        hybrid_similar(
            "scipy",
            k=5,
            filters=[bad_range],
            execution="client",
            settings=hybrid_index,
            client=client,
        )
    assert f'"{bad_range.field}"' in str(raised.value)


def test_num_candidates_above_knn_limit_raises(
    hybrid_index: Settings, client: OpenSearch
) -> None:
    with pytest.raises(ConfigurationError, match="above 10000"):
        hybrid_similar(
            "scipy", num_candidates=20_000, settings=hybrid_index, client=client
        )


def test_large_k_raises_candidates(hybrid_index: Settings, client: OpenSearch) -> None:
    result = hybrid_similar("scipy", k=200, settings=hybrid_index, client=client)
    assert len(result.hits) == ALL_OTHERS
    assert result.requests[1].body["query"]["knn"]["embedding"]["k"] == 200


def test_alias_over_two_indices(
    client: OpenSearch, encoder: Encoder, index_name: str, opensearch_url: str
) -> None:
    first = {key: DOCUMENTS[key] for key in ("scipy", "numpy", "gimp")}
    second = {key: DOCUMENTS[key] for key in ("sympy", "inkscape", "vlc")}
    create_index(client, f"{index_name}-a", first)
    create_index(client, f"{index_name}-b", second)
    client.indices.put_alias(index=f"{index_name}-a,{index_name}-b", name=index_name)
    settings = Settings(hosts=[opensearch_url], index=index_name)

    report = backfill(settings, client=client, encoder=encoder)
    result = hybrid_similar("scipy", k=5, settings=settings, client=client)

    assert report.embedded == 6
    assert {hit.index for hit in result.hits} == {f"{index_name}-a", f"{index_name}-b"}
    assert _ids(result)[0] in {"numpy", "sympy"}


@pytest.mark.parametrize("fusion", ["min_max", "z_score", "l2"])
def test_score_fusion_breakdown(
    hybrid_index: Settings, client: OpenSearch, fusion: str
) -> None:
    result = hybrid_similar(
        "nginx",
        k=5,
        fusion=fusion,
        weights={"knn": 2.0, "bm25": 1.0},  # type: ignore[arg-type]
        settings=hybrid_index,
        client=client,
    )
    assert len(result.hits) == 5
    assert result.hits[0].id == "apache2"
    for hit in result.hits:
        assert (
            hit.knn_normalized is not None
        )  # every other document is a k-NN candidate
        if hit.bm25_normalized is not None:
            expected = (2.0 * hit.knn_normalized + hit.bm25_normalized) / 3
            assert hit.score == pytest.approx(expected)
    scores = [hit.score for hit in result.hits]
    assert scores == sorted(scores, reverse=True)


def test_unknown_fusion_and_weights_raise(
    hybrid_index: Settings, client: OpenSearch
) -> None:
    with pytest.raises(ConfigurationError, match="fusion 'max'"):
        hybrid_similar("scipy", fusion="max", settings=hybrid_index, client=client)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="unknown components"):
        hybrid_similar(
            "scipy",
            fusion="min_max",
            weights={"vector": 1.0},
            settings=hybrid_index,
            client=client,
        )


def test_pages_come_from_one_pool(hybrid_index: Settings, client: OpenSearch) -> None:
    whole = hybrid_similar(
        "scipy", k=8, num_candidates=20, settings=hybrid_index, client=client
    )
    first = hybrid_similar(
        "scipy", k=4, num_candidates=20, settings=hybrid_index, client=client
    )
    second = hybrid_similar(
        "scipy", k=4, offset=4, num_candidates=20, settings=hybrid_index, client=client
    )
    assert _ids(first) + _ids(second) == _ids(whole)
    with pytest.raises(ConfigurationError, match="beyond the candidate pool"):
        hybrid_similar(
            "scipy",
            k=4,
            offset=38,
            num_candidates=20,
            settings=hybrid_index,
            client=client,
        )


def test_lookup_by_business_key(
    client: OpenSearch, encoder: Encoder, index_name: str, opensearch_url: str
) -> None:
    docs = {
        f"doc-{n}": {**DOCUMENTS[key], "sku": f"SKU-{key}"}
        for n, key in enumerate(DOCUMENTS)
    }
    mappings = {
        "properties": {
            "title": {"type": "text"},
            "body": {"type": "text"},
            "sku": {"type": "keyword"},
        }
    }
    create_index(client, index_name, docs, mappings=mappings)
    settings = Settings(hosts=[opensearch_url], index=index_name)
    backfill(settings, client=client, encoder=encoder)

    result = hybrid_similar(
        "SKU-vlc", k=1, id_field="sku", settings=settings, client=client
    )

    assert result.hits[0].source["sku"] == "SKU-mpv"
    assert result.doc_id == f"doc-{list(DOCUMENTS).index('vlc')}"
    with pytest.raises(DocumentNotFoundError, match='q=sku:"SKU-none"'):
        hybrid_similar("SKU-none", id_field="sku", settings=settings, client=client)
    client.index(
        index=index_name,
        id="second-vlc",
        body={**DOCUMENTS["vlc"], "sku": "SKU-vlc"},
        refresh=True,
    )
    with pytest.raises(ConfigurationError, match="field 'sku' is not unique"):
        hybrid_similar("SKU-vlc", id_field="sku", settings=settings, client=client)


def test_similar_to_text(
    hybrid_index: Settings, client: OpenSearch, encoder: Encoder
) -> None:
    from os_mlt import similar_to_text

    result = similar_to_text(
        "web server for HTTP",
        k=2,
        settings=hybrid_index,
        client=client,
        encoder=encoder,
    )
    assert set(_ids(result)) == {"nginx", "apache2"}
    assert result.requests[1].body["query"]["bool"]["must"][0]["more_like_this"][
        "like"
    ] == ["web server for HTTP"]
    with pytest.raises(ConfigurationError, match="the text is empty"):
        similar_to_text("  ", settings=hybrid_index, client=client, encoder=encoder)


def test_exclude_same_field_value_keeps_page_full(
    hybrid_index: Settings, client: OpenSearch
) -> None:
    result = hybrid_similar(
        "scipy",
        k=5,
        exclude_same=["section"],
        settings=hybrid_index,
        client=client,
        source_fields=["section"],
    )
    assert len(result.hits) == 5
    assert all(hit.source["section"] != "python" for hit in result.hits)
    assert {"terms": {"section": ["python"]}} in result.requests[1].body["query"][
        "knn"
    ]["embedding"]["filter"]["bool"]["must_not"]


def test_near_duplicates_are_dropped(
    hybrid_index: Settings, client: OpenSearch
) -> None:
    plain = hybrid_similar("vlc", k=3, settings=hybrid_index, client=client)
    top = plain.hits[0]
    assert top.knn_score is not None
    cosine = 2 * top.knn_score - 1

    result = hybrid_similar(
        "vlc", k=3, max_similarity=cosine - 1e-4, settings=hybrid_index, client=client
    )

    assert top.id not in _ids(result)
    assert len(result.hits) == 3
    with pytest.raises(ConfigurationError, match="from -1 to 1"):
        hybrid_similar("vlc", max_similarity=2.0, settings=hybrid_index, client=client)


def test_cli_reports_a_missing_index_in_one_line(
    hybrid_index: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(
        ["similar", "vlc", "--hosts", hybrid_index.hosts[0], "--index", "no-such-index"]
    )
    assert status == 1
    err = capsys.readouterr().err.strip()
    assert "404 index_not_found_exception" in err
    assert "check the index name" in err
    # One message (the console may wrap it), not the cluster's JSON.
    assert "{" not in err
    assert "Traceback" not in err
    assert err.count("error:") == 1


def test_text_search_before_backfill_names_the_fix(
    client: OpenSearch, encoder: Encoder, opensearch_url: str
) -> None:
    from os_mlt import similar_to_text
    from os_mlt.errors import OsMltError

    name = f"os-mlt-test-{uuid.uuid4().hex[:12]}"
    create_index(client, name, {"scipy": DOCUMENTS["scipy"]})
    try:
        with pytest.raises(OsMltError, match="run `os-mlt backfill` on it first"):
            similar_to_text(
                "numerical tools",
                settings=Settings(hosts=[opensearch_url], index=name),
                client=client,
                encoder=encoder,
            )
    finally:
        client.indices.delete(index=name)
