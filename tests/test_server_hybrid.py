"""Server-side fusion against client-side fusion on a node with neural-search.

A second local node runs OpenSearch 2.19.1 with k-NN, job-scheduler,
ml-commons and neural-search 2.19.1.0 on port 9280 (or
`OS_MLT_TEST_NEURAL_PORT`). It is started for this module and stopped
afterwards unless it was already running. Both fusion paths then search the
same 2,000 real Debian packages. They must return the same hits in the same
order, with the same fused scores, except that hits with equal fused scores
may swap.
"""

from __future__ import annotations

import json
import os
import random
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from opensearchpy import AuthorizationException, OpenSearch

from os_mlt import (
    ConfigurationError,
    Encoder,
    NodeError,
    Not,
    SearchPipelineError,
    Settings,
    SimilarHit,
    Term,
    backfill,
    hybrid_similar,
    node,
    similar_to_text,
)
from os_mlt.cli import main
from os_mlt.client import make_client
from os_mlt.corpus import load_corpus, sample_jsonl
from os_mlt.query.server import neural_search_version

from .conftest import DEBIAN_CORPUS, local_node_url

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

NEURAL_VERSION = "2.19.1"
SAMPLE_SIZE = 2000
QUERY_COUNT = 12
# Both paths compute the same formulas, the server in float32 and the client
# in float64, so fused scores differ at float32 precision, around 1e-7. Scores closer than this
# count as ties, whose order the two paths break differently.
SCORE_TOLERANCE = 1e-5


@dataclass(frozen=True)
class NeuralSample:
    settings: Settings
    client: OpenSearch
    queries: list[str]


@pytest.fixture(scope="module")
def neural_url() -> Iterator[str]:
    """Start the OpenSearch 2.19.1 node with neural-search, and stop it afterwards."""
    settings = node.NodeSettings(
        version=NEURAL_VERSION,
        http_port=int(os.environ.get("OS_MLT_TEST_NEURAL_PORT", "9280")),
        plugins=["neural-search"],
    )
    yield from local_node_url(settings)


@pytest.fixture(scope="module")
def neural(neural_url: str, encoder: Encoder) -> Iterator[NeuralSample]:
    """2,000 Debian packages, loaded into a k-NN index on the neural node and backfilled."""
    if not DEBIAN_CORPUS.is_file():
        pytest.fail(
            f"corpus {DEBIAN_CORPUS.name} not found next to the repository, in shared/corpora"
        )
    client = make_client(Settings(hosts=[neural_url]))
    records = sample_jsonl(DEBIAN_CORPUS, limit=SAMPLE_SIZE, seed=29)
    alias = f"os-mlt-test-{uuid.uuid4().hex[:12]}"
    load_corpus(client, records, alias=alias, text_fields=["title", "body"], knn=True)
    settings = Settings(hosts=[neural_url], index=alias)
    report = backfill(settings, client=client, encoder=encoder)
    assert report.failed == 0
    # k-NN search is approximate and its candidates depend on the segments. A
    # background merge between the two searches of a comparison could change
    # them, so the index is merged into one segment first.
    client.indices.forcemerge(index=alias, max_num_segments=1)
    client.indices.refresh(index=alias)
    ids = sorted(str(record["id"]) for record in records)
    queries = random.Random(7).sample(ids, QUERY_COUNT)
    yield NeuralSample(settings, client, queries)
    client.indices.delete(index=f"{alias}*", ignore_unavailable=True)


def assert_same_ranking(
    server: Sequence[SimilarHit], client: Sequence[SimilarHit]
) -> None:
    """Assert two pages hold the same hits in the same order, up to tied scores."""
    assert len(server) == len(client)
    server_scores = {hit.id: hit.score for hit in server}
    client_scores = {hit.id: hit.score for hit in client}
    # Equal scores position by position: a swap can only be between ties.
    for position, (ours, theirs) in enumerate(zip(server, client, strict=True)):
        assert ours.score == pytest.approx(theirs.score, abs=SCORE_TOLERANCE), position
    # Each hit both pages hold has the same fused score on both.
    for hit_id in server_scores.keys() & client_scores.keys():
        assert server_scores[hit_id] == pytest.approx(
            client_scores[hit_id], abs=SCORE_TOLERANCE
        ), hit_id
    # A hit on one page only ties with the last hit, and lost the tie-break.
    for hit_id in server_scores.keys() ^ client_scores.keys():
        score = server_scores.get(hit_id, client_scores.get(hit_id))
        assert score == pytest.approx(server[-1].score, abs=SCORE_TOLERANCE), hit_id
    # Where a score ties with no other, the hit must be the same.
    scores = [hit.score for hit in server] + [hit.score for hit in client]
    for position, (ours, theirs) in enumerate(zip(server, client, strict=True)):
        near = [score for score in scores if abs(score - ours.score) <= SCORE_TOLERANCE]
        if len(near) == 2:
            assert ours.id == theirs.id, position


def on_server(result: Any) -> bool:
    """Return whether a search pipeline fused `result`."""
    return any(
        "search_pipeline=" in (request.path or "") for request in result.requests
    )


def _both(doc_id: str, neural: NeuralSample, **options: Any) -> tuple[Any, Any]:
    """Run hybrid_similar once fused on the server and once on the client."""
    common: dict[str, Any] = {"settings": neural.settings, "client": neural.client}
    server = hybrid_similar(doc_id, execution="server", **common, **options)
    client = hybrid_similar(doc_id, execution="client", **common, **options)
    return server, client


def test_node_lists_neural_search_plugins(neural_url: str) -> None:
    client = make_client(Settings(hosts=[neural_url]))

    plugins = {
        row["component"]: row["version"] for row in client.cat.plugins(format="json")
    }
    modules = {
        module["name"]
        for info in client.nodes.info(metric="plugins")["nodes"].values()
        for module in info["modules"]
    }

    assert plugins == {
        "opensearch-knn": "2.19.1.0",
        "opensearch-job-scheduler": "2.19.1.0",
        "opensearch-ml": "2.19.1.0",
        "opensearch-neural-search": "2.19.1.0",
    }
    # os-mlt assembles it for k-NN, because the integ-test-zip of 2.19.1 lacks it.
    assert "lang-painless" in modules
    assert neural_search_version(client) == (2, 19, 1, 0)


@pytest.mark.parametrize(
    ("fusion", "weights"),
    [
        pytest.param("rrf", None, id="rrf"),
        pytest.param("min_max", None, id="min-max"),
        pytest.param("min_max", {"knn": 0.7, "bm25": 0.3}, id="min-max-weighted"),
        pytest.param("l2", None, id="l2"),
        pytest.param("l2", {"knn": 1.0, "bm25": 3.0}, id="l2-weighted"),
    ],
)
def test_server_and_client_rank_alike(
    neural: NeuralSample, fusion: str, weights: dict[str, float] | None
) -> None:
    for doc_id in neural.queries:
        server, client = _both(doc_id, neural, k=10, fusion=fusion, weights=weights)

        assert len(server.hits) == 10, doc_id
        assert doc_id not in [hit.id for hit in server.hits]
        assert_same_ranking(server.hits, client.hits)


def test_server_hits_carry_only_fused_score(neural: NeuralSample) -> None:
    server, client = _both(neural.queries[0], neural, k=5)

    for hit in server.hits:
        assert hit.knn_rank is None
        assert hit.knn_score is None
        assert hit.bm25_rank is None
        assert hit.bm25_score is None
        assert "title" in hit.source
        assert "embedding" not in hit.source
    assert any(hit.knn_rank is not None for hit in client.hits)


def test_filters_and_exclusions_apply_on_server(neural: NeuralSample) -> None:
    options: dict[str, Any] = {
        "k": 10,
        "fusion": "min_max",
        "filters": [Not(Term("section", "libs")), "installed_size_kb<20000"],
        "exclude_same": ["source"],
        "source_fields": ["section", "installed_size_kb", "source"],
    }
    for doc_id in neural.queries[:6]:
        example = neural.client.get(index=neural.settings.index, id=doc_id)
        server, client = _both(doc_id, neural, **options)

        assert server.hits, doc_id
        assert_same_ranking(server.hits, client.hits)
        for hit in server.hits:
            assert hit.source["section"] != "libs"
            assert hit.source["installed_size_kb"] < 20000
            assert hit.source["source"] != example["_source"]["source"]


# The whole pool includes each component's lowest hit, where min_max gives
# 0.001 instead of 0.
@pytest.mark.parametrize("fusion", ["rrf", "min_max", "l2"])
def test_pages_walk_one_pool(neural: NeuralSample, fusion: str) -> None:
    doc_id = neural.queries[1]
    options: dict[str, Any] = {"fusion": fusion, "num_candidates": 20}

    whole_server, whole_client = _both(doc_id, neural, k=40, **options)
    pages = [
        hybrid_similar(
            doc_id,
            k=8,
            offset=offset,
            execution="server",
            settings=neural.settings,
            client=neural.client,
            **options,
        )
        for offset in range(0, 40, 8)
    ]

    pool = len(whole_client.hits)
    assert 20 <= pool <= 40
    assert_same_ranking(whole_server.hits, whole_client.hits)
    assert [hit.id for page in pages for hit in page.hits] == [
        hit.id for hit in whole_server.hits
    ]


def test_page_after_pool_is_empty(neural: NeuralSample) -> None:
    common: dict[str, Any] = {
        "num_candidates": 10,
        "settings": neural.settings,
        "client": neural.client,
    }
    # A query whose two components share candidates, so the pool is smaller
    # than the 20 hits the paging check allows.
    pools = {
        doc_id: len(hybrid_similar(doc_id, k=20, execution="client", **common).hits)
        for doc_id in neural.queries
    }
    doc_id, pool = min(pools.items(), key=lambda item: item[1])
    assert pool <= 18

    for offset in (pool - 1, pool, pool + 1):
        server = hybrid_similar(
            doc_id, k=1, offset=offset, execution="server", **common
        )
        assert len(server.hits) == (1 if offset < pool else 0), offset


def test_text_search_ranks_alike(neural: NeuralSample) -> None:
    text = "command line tool to edit audio files"
    common: dict[str, Any] = {
        "settings": neural.settings,
        "client": neural.client,
        "k": 10,
        "fusion": "min_max",
    }
    server = similar_to_text(text, execution="server", **common)
    client = similar_to_text(text, execution="client", **common)

    assert len(server.hits) == 10
    assert_same_ranking(server.hits, client.hits)


def test_auto_fuses_on_server_when_it_can(neural: NeuralSample) -> None:
    doc_id = neural.queries[3]
    common: dict[str, Any] = {"settings": neural.settings, "client": neural.client}

    plain = hybrid_similar(doc_id, k=5, **common)
    near_duplicates = hybrid_similar(doc_id, k=5, max_similarity=0.99, **common)
    z_score = hybrid_similar(doc_id, k=5, fusion="z_score", **common)

    assert [request.method for request in plain.requests] == ["GET", "PUT", "GET"]
    for result in (near_duplicates, z_score):
        assert not on_server(result)
        assert result.hits[0].knn_rank is not None


def test_server_rejects_what_it_cannot_fuse(neural: NeuralSample) -> None:
    common: dict[str, Any] = {
        "settings": neural.settings,
        "client": neural.client,
        "execution": "server",
    }
    with pytest.raises(ConfigurationError, match="max_similarity"):
        hybrid_similar(neural.queries[0], max_similarity=0.99, **common)
    with pytest.raises(ConfigurationError, match="needs opensearch-neural-search 3.0"):
        hybrid_similar(neural.queries[0], fusion="z_score", **common)


def test_server_execution_needs_plugin(client: OpenSearch, encoder: Encoder) -> None:
    # The default test node (OpenSearch 3.5.0) has k-NN but not neural-search.
    if neural_search_version(client) is not None:
        pytest.skip("the cluster of OS_MLT_TEST_HOSTS has neural-search")
    with pytest.raises(ConfigurationError) as caught:
        similar_to_text(
            "video player",
            index="os-mlt-test-unused",
            client=client,
            encoder=encoder,
            execution="server",
        )

    message = str(caught.value)
    assert "opensearch-neural-search" in message
    assert "--plugin neural-search" in message


def test_running_node_without_plugin_raises(opensearch_url: str) -> None:
    if os.environ.get("OS_MLT_TEST_HOSTS") or os.environ.get("OS_MLT_TEST_DOCKER"):
        pytest.skip("needs the local test node that os_mlt.node started")
    port = int(opensearch_url.rsplit(":", 1)[1])
    settings = node.NodeSettings(http_port=port, plugins=["neural-search"])

    with pytest.raises(NodeError) as caught:
        node.start(settings)

    message = str(caught.value)
    assert "opensearch-ml, opensearch-neural-search" in message
    assert f"os-mlt node stop --port {port}" in message


def test_dev_tools_requests_run_as_printed(neural: NeuralSample) -> None:
    doc_id = neural.queries[4]
    result = hybrid_similar(
        doc_id,
        k=8,
        fusion="min_max",
        weights={"knn": 2.0, "bm25": 1.0},
        execution="server",
        settings=neural.settings,
        client=neural.client,
    )
    _lookup, put, search = result.requests
    text = result.to_dev_tools()

    assert put.method == "PUT"
    assert put.path is not None
    assert f"PUT {put.path}\n" in text
    assert f"GET {search.path}\n" in text
    name = put.path.rsplit("/", 1)[1]
    assert search.path == f"{neural.settings.index}/_search?search_pipeline={name}"
    processor = put.body["phase_results_processors"][0]["normalization-processor"]
    assert processor["combination"]["parameters"]["weights"] == pytest.approx(
        [2 / 3, 1 / 3]
    )
    stored = neural.client.transport.perform_request("GET", f"/_search/pipeline/{name}")
    assert (
        stored[name]["phase_results_processors"] == put.body["phase_results_processors"]
    )
    # The printed search, sent as it is, returns the same page.
    again = neural.client.search(
        index=neural.settings.index,
        body=search.body,
        params={"search_pipeline": name},
    )
    assert [hit["_id"] for hit in again["hits"]["hits"]] == [
        hit.id for hit in result.hits
    ]


def test_cli_prints_pipeline_and_search(
    neural: NeuralSample, capsys: pytest.CaptureFixture[str]
) -> None:
    assert neural.settings.index is not None
    status = main(
        [
            "similar",
            neural.queries[6],
            "--hosts",
            neural.settings.hosts[0],
            "--index",
            neural.settings.index,
            "-k",
            "3",
            "--fusion",
            "l2",
            "--execution",
            "server",
            "--dsl",
            "--json",
        ]
    )
    captured = capsys.readouterr()

    assert status == 0
    assert "# The hybrid search below ran under the search pipeline" in captured.err
    assert "PUT _search/pipeline/os-mlt-norm-" in captured.err
    assert f"GET {neural.settings.index}/_search?search_pipeline=" in captured.err
    hits = json.loads(captured.out)
    assert len(hits) == 3
    assert all(hit["knn_rank"] is None for hit in hits)


class _PipelineDenyingTransport:
    """Wrap a real client's transport and deny every search pipeline PUT with 403."""

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        self.denied = 0

    def perform_request(self, method: str, url: str, **kwargs: Any) -> Any:
        if method == "PUT" and url.startswith("/_search/pipeline/"):
            self.denied += 1
            raise AuthorizationException(
                403, "security_exception", {"error": {"reason": "no permission"}}
            )
        return self._transport.perform_request(method, url, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def test_denied_pipeline_falls_back_under_auto(neural: NeuralSample) -> None:
    limited = make_client(neural.settings)
    transport = _PipelineDenyingTransport(limited.transport)
    limited.transport = transport  # type: ignore[assignment]
    common: dict[str, Any] = {"settings": neural.settings, "client": limited, "k": 5}

    first = hybrid_similar(neural.queries[7], **common)
    second = hybrid_similar(neural.queries[8], **common)
    with pytest.raises(SearchPipelineError) as caught:
        hybrid_similar(neural.queries[7], execution="server", **common)

    assert first.hits[0].knn_rank is not None
    assert not on_server(first)
    assert len(second.hits) == 5
    assert caught.value.forbidden
    # auto sends the PUT once per client, and execution="server" sends it again.
    assert transport.denied == 2


def test_deleted_pipeline_is_created_again(neural: NeuralSample) -> None:
    doc_id = neural.queries[5]
    common: dict[str, Any] = {
        "settings": neural.settings,
        "client": neural.client,
        "execution": "server",
        "fusion": "l2",
        "k": 5,
    }
    first = hybrid_similar(doc_id, **common)
    put = first.requests[1]
    assert put.path is not None
    neural.client.transport.perform_request("DELETE", f"/{put.path}")

    second = hybrid_similar(doc_id, **common)

    assert [hit.id for hit in second.hits] == [hit.id for hit in first.hits]


@pytest.mark.parametrize("fusion", ["rrf", "min_max"])
def test_boosts_rerank_the_server_pool_as_the_client(
    neural: NeuralSample, fusion: str
) -> None:
    for doc_id in neural.queries[:3]:
        server, client = _both(
            doc_id,
            neural,
            k=10,
            fusion=fusion,
            categorical_fields=["section"],
            categorical_weight=2.0,
            source_fields=["section"],
        )
        assert on_server(server)
        assert not on_server(client)
        # The server returns the fused pool, which the categorical boost reorders.
        for ours, theirs in zip(server.hits, client.hits, strict=True):
            assert ours.final_score == pytest.approx(
                theirs.final_score, abs=SCORE_TOLERANCE
            )
            assert ours.boost == pytest.approx(theirs.boost)
        assert [hit.source["section"] for hit in server.hits] == [
            hit.source["section"] for hit in client.hits
        ]
