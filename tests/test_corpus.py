"""JSON-lines reading and corpus loading checks that run before any write."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from opensearchpy import OpenSearch

from os_mlt import ConfigurationError
from os_mlt.corpus import _check_ids, read_jsonl, sample_jsonl


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_read_jsonl_plain_and_gzip(tmp_path: Path) -> None:
    records = [{"id": "a", "title": "x"}, {"id": "b", "title": "y"}]
    plain = _write(tmp_path / "c.jsonl", [json.dumps(record) for record in records])
    packed = tmp_path / "c.jsonl.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert list(read_jsonl(plain)) == records
    assert list(read_jsonl(packed)) == records


def test_not_gzip_is_reported(tmp_path: Path) -> None:
    fake = _write(tmp_path / "fake.jsonl.gz", ['{"id": "a"}'])
    with pytest.raises(ConfigurationError, match="cannot read fake.jsonl.gz"):
        list(read_jsonl(fake))


def test_bad_lines_are_reported(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigurationError, match="line 2 of bad.jsonl is not valid JSON"
    ):
        list(read_jsonl(_write(tmp_path / "bad.jsonl", ['{"id": 1}', "{oops"])))
    with pytest.raises(ConfigurationError, match="is a JSON list, not an object"):
        list(read_jsonl(_write(tmp_path / "list.jsonl", ["[1, 2]"])))


def test_sample_is_seeded_and_includes_ids(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "c.jsonl", [json.dumps({"id": str(n)}) for n in range(100)]
    )
    first = sample_jsonl(path, limit=10, seed=3, include_ids=["77"])
    second = sample_jsonl(path, limit=10, seed=3, include_ids=["77"])
    assert first == second
    assert len(first) == 11
    assert first[0]["id"] == "77"
    with pytest.raises(ConfigurationError, match="ids nope not found"):
        sample_jsonl(path, limit=10, include_ids=["nope"])
    with pytest.raises(ConfigurationError, match="limit must be 0 or more"):
        sample_jsonl(path, limit=-5)


@pytest.mark.parametrize(
    ("records", "message"),
    [
        pytest.param(
            [{"id": "a"}, {"title": "no id"}], "record 2 has no value", id="missing"
        ),
        pytest.param([{"id": ""}], "record 1 has no value", id="empty"),
        pytest.param([{"id": "a"}, {"id": "a"}], "'a' appears twice", id="duplicate"),
    ],
)
def test_ids_are_checked(records: list[dict[str, object]], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        _check_ids(records, "id")


@pytest.mark.integration
def test_load_rejects_another_sample(
    client: OpenSearch, caplog: pytest.LogCaptureFixture
) -> None:
    import uuid

    from os_mlt.corpus import load_corpus

    first = [
        {"id": f"doc-{n}", "title": f"title {n}", "body": "body"} for n in range(5)
    ]
    other = [
        {"id": f"doc-{n}", "title": f"title {n}", "body": "body"} for n in range(3, 8)
    ]
    alias = f"os-mlt-test-{uuid.uuid4().hex[:12]}"
    try:
        index = load_corpus(client, first, alias=alias, text_fields=["title", "body"])
        # The same records again: nothing is loaded, and a warning is logged.
        assert (
            load_corpus(client, first[:3], alias=alias, text_fields=["title"]) == index
        )
        assert "already contains these 3 documents" in caplog.text
        with pytest.raises(ConfigurationError, match="no records to load"):
            load_corpus(client, [], alias=alias, text_fields=["title"])
        with pytest.raises(ConfigurationError, match="lacks 3 of the 5 to load"):
            load_corpus(client, other, alias=alias, text_fields=["title", "body"])
        assert client.count(index=alias)["count"] == 5
    finally:
        client.indices.delete(index=f"{alias}*", ignore_unavailable=True)
