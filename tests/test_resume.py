"""A backfill killed with SIGKILL part way through, then run again, on real Debian documents."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import numpy as np
import pytest
from opensearchpy import OpenSearch

from os_mlt import Encoder, Settings, backfill, document_text
from os_mlt.corpus import load_corpus, sample_jsonl

from .conftest import DEBIAN_CORPUS

pytestmark = pytest.mark.integration

DOCUMENTS = 600


@pytest.fixture
def debian_sample(client: OpenSearch) -> Iterator[tuple[str, list[dict[str, object]]]]:
    records = sample_jsonl(DEBIAN_CORPUS, limit=DOCUMENTS, seed=7)
    index = f"os-mlt-test-{uuid.uuid4().hex[:12]}"
    load_corpus(client, records, alias=index, text_fields=["title", "body"], knn=True)
    yield index, records
    client.indices.delete(index=f"{index}*", ignore_unavailable=True)


def _embedded_count(client: OpenSearch, index: str) -> int:
    client.indices.refresh(index=index)
    return int(
        client.count(
            index=index, body={"query": {"exists": {"field": "embedding_meta"}}}
        )["count"]
    )


def test_killed_backfill_resumes(
    client: OpenSearch,
    encoder: Encoder,
    opensearch_url: str,
    debian_sample: tuple[str, list[dict[str, object]]],
) -> None:
    index, records = debian_sample
    environment = {
        **os.environ,
        "OS_MLT_HOSTS": opensearch_url,
        "OS_MLT_INDEX": index,
        "OS_MLT_BULK_BATCH_SIZE": "50",
        "OS_MLT_SCAN_BATCH_SIZE": "100",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "os_mlt.cli", "backfill"],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while _embedded_count(client, index) < 100:
            assert process.poll() is None, (
                "the backfill ended before it could be killed"
            )
            assert time.monotonic() < deadline, (
                "the backfill wrote nothing within 300 s"
            )
            time.sleep(0.2)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    done_before = _embedded_count(client, index)
    assert 100 <= done_before < DOCUMENTS

    report = backfill(
        Settings(hosts=[opensearch_url], index=index), client=client, encoder=encoder
    )

    assert report.failed == 0
    assert report.unchanged == done_before
    assert report.embedded + report.unchanged + report.skipped == DOCUMENTS
    # The final index equals that of an uninterrupted run: every vector is the
    # encoding of its document's text.
    client.indices.refresh(index=index)
    texts = {
        str(record["id"]): document_text(record, ["title", "body"])
        for record in records
    }
    with_text = {doc_id: text for doc_id, text in texts.items() if text}
    expected = dict(
        zip(with_text, encoder.encode(list(with_text.values())), strict=True)
    )
    for hit in client.search(
        index=index, body={"size": DOCUMENTS, "_source": ["embedding"]}
    )["hits"]["hits"]:
        if not texts[hit["_id"]]:
            assert "embedding" not in hit["_source"]
            continue
        stored = np.array(hit["_source"]["embedding"], dtype=np.float32)
        assert np.allclose(stored, expected[hit["_id"]], atol=1e-4), hit["_id"]
