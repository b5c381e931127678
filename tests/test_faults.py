"""Backfill under faults on a node of its own: a tiny write queue, and a restart mid-run."""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from opensearchpy import OpenSearch, TransportError

from os_mlt import BackfillReport, Encoder, Settings, backfill, document_text, node
from os_mlt.client import make_client
from os_mlt.corpus import load_corpus, sample_jsonl

from .conftest import DEBIAN_CORPUS

pytestmark = pytest.mark.integration

FAULT_PORT = 9276


@pytest.fixture(scope="module")
def fault_node() -> Iterator[node.NodeSettings]:
    """A node whose write thread pool takes one task and queues one more."""
    home = Path(tempfile.mkdtemp(prefix="os-mlt-fault-node-"))
    home.chmod(
        0o755
    )  # the unprivileged account must reach it when root starts the node
    settings = node.NodeSettings(
        http_port=FAULT_PORT,
        home=home,
        extra_config={"thread_pool.write.size": 1, "thread_pool.write.queue_size": 1},
    )
    node.start(settings)
    try:
        yield settings
    finally:
        node.stop(settings)
        shutil.rmtree(home, ignore_errors=True)


def _load(
    client: OpenSearch, documents: int, seed: int
) -> tuple[str, list[dict[str, object]]]:
    records = sample_jsonl(DEBIAN_CORPUS, limit=documents, seed=seed)
    index = f"os-mlt-test-{uuid.uuid4().hex[:12]}"
    load_corpus(client, records, alias=index, text_fields=["title", "body"], knn=True)
    return index, records


def _assert_vectors_match(
    client: OpenSearch, index: str, records: list[dict[str, object]], encoder: Encoder
) -> None:
    client.indices.refresh(index=index)
    texts = {str(r["id"]): document_text(r, ["title", "body"]) for r in records}
    with_text = {doc_id: text for doc_id, text in texts.items() if text}
    expected = dict(
        zip(with_text, encoder.encode(list(with_text.values())), strict=True)
    )
    body = {"size": len(records), "_source": ["embedding"]}
    for hit in client.search(index=index, body=body)["hits"]["hits"]:
        if hit["_id"] in expected:
            stored = np.array(hit["_source"]["embedding"], dtype=np.float32)
            assert np.allclose(stored, expected[hit["_id"]], atol=1e-4), hit["_id"]


def test_rejected_bulk_items_are_retried(
    fault_node: node.NodeSettings, encoder: Encoder, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(Settings(hosts=[fault_node.url]))
    index, records = _load(client, 400, seed=3)
    stop = threading.Event()

    def neighbour() -> None:
        """Another application writing to its own index as fast as it can."""
        other = f"{index}-neighbour"
        lines = "".join(
            f'{{"index": {{"_index": "{other}"}}}}\n{{"n": {n}}}\n' for n in range(200)
        )
        while not stop.is_set():
            try:
                client.bulk(body=lines)
            except TransportError:
                pass

    rejected = threading.Event()

    class SeesRejection(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "rejected with 429" in record.getMessage():
                rejected.set()

    def end_burst() -> None:
        # The neighbour's burst ends a few seconds after the first rejection,
        # as load spikes do, so the retries can succeed.
        rejected.wait(timeout=120)
        time.sleep(3)
        stop.set()

    watcher = SeesRejection()
    logging.getLogger("os_mlt").addHandler(watcher)
    threads = [threading.Thread(target=neighbour, daemon=True) for _ in range(4)]
    threads.append(threading.Thread(target=end_burst, daemon=True))
    for thread in threads:
        thread.start()
    try:
        with caplog.at_level(logging.WARNING, logger="os_mlt"):
            report = backfill(
                Settings(hosts=[fault_node.url], index=index, bulk_batch_size=20),
                client=client,
                encoder=encoder,
            )
    finally:
        stop.set()
        rejected.set()
        logging.getLogger("os_mlt").removeHandler(watcher)
        for thread in threads:
            thread.join(timeout=30)

    assert any("rejected with 429" in record.message for record in caplog.records)
    assert report.failed == 0
    assert report.embedded + report.skipped == len(records)
    _assert_vectors_match(client, index, records, encoder)
    client.indices.delete(index=f"{index}*")


def test_backfill_survives_node_restart(
    fault_node: node.NodeSettings, encoder: Encoder
) -> None:
    client = make_client(Settings(hosts=[fault_node.url]))
    index, records = _load(client, 600, seed=5)
    settings = Settings(
        hosts=[fault_node.url], index=index, bulk_batch_size=50, scan_batch_size=100
    )
    outcome: list[BackfillReport | BaseException] = []

    def run() -> None:
        try:
            outcome.append(backfill(settings, encoder=encoder))
        except BaseException as error:  # noqa: BLE001 - handed to the test thread
            outcome.append(error)

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 300
    while True:
        client.indices.refresh(index=index)
        query = {"query": {"exists": {"field": "embedding_meta"}}}
        if client.count(index=index, body=query)["count"] >= 100:
            break
        assert worker.is_alive(), f"the backfill ended before the restart: {outcome}"
        assert time.monotonic() < deadline
        time.sleep(0.2)
    node.stop(fault_node)
    node.start(fault_node)
    worker.join(timeout=600)

    assert len(outcome) == 1
    report = outcome[0]
    assert isinstance(report, BackfillReport), report
    assert report.failed == 0
    # Every document with text has the vector of its text (a missing one fails here).
    _assert_vectors_match(client, index, records, encoder)
    client.indices.delete(index=f"{index}*")
