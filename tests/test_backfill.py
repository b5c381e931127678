"""Backfill against a real node."""

from __future__ import annotations

import itertools
import logging
import re
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from opensearchpy import OpenSearch

from os_mlt import Encoder, MappingError, Settings, backfill, document_text
from os_mlt.corpus import load_corpus, read_jsonl
from os_mlt.errors import IndexNotFoundError
from os_mlt.indexer import IndexBlockedError
from os_mlt.indexer.report import MAX_REASON_CHARS
from os_mlt.node.install import KNN_NATIVE_LIBRARIES_ATTRIBUTE

from .conftest import DEBIAN_CORPUS, create_index

pytestmark = pytest.mark.integration

DOCUMENTS: dict[str, dict[str, Any]] = {
    "scipy": {
        "title": "scientific tools for Python",
        "body": "Numerical integration and optimization.",
    },
    "gimp": {
        "title": "GNU Image Manipulation Program",
        "body": "Paint and retouch photographs.",
    },
    "title-only": {"title": "a command-line JSON processor"},
    "list-body": {"title": "bioinformatics", "body": ["sequence alignment", "", 42]},
    "empty": {"title": "", "body": "   "},
    "numbers": {"title": 12, "body": None},
}
EMBEDDABLE = {"scipy", "gimp", "title-only", "list-body"}


def _vector(
    client: OpenSearch, index: str, doc_id: str, field: str = "embedding"
) -> Any:
    return client.get(index=index, id=doc_id)["_source"].get(field)


def test_backfill_writes_vectors_and_reports(
    client: OpenSearch,
    encoder: Encoder,
    index_name: str,
    make_settings: Callable[..., Settings],
) -> None:
    create_index(client, index_name, DOCUMENTS)

    report = backfill(make_settings(), client=client, encoder=encoder)

    assert report.total == len(DOCUMENTS)
    assert report.scanned == len(DOCUMENTS)
    assert report.embedded == len(EMBEDDABLE)
    assert report.skipped == 2
    assert {issue.id for issue in report.skipped_items} == {"empty", "numbers"}
    assert all(
        "no text in title, body" in issue.reason for issue in report.skipped_items
    )
    assert report.failed == 0
    assert report.ok

    mapping = client.indices.get_mapping(index=index_name)[index_name]["mappings"][
        "properties"
    ]
    assert mapping["embedding"]["type"] == "knn_vector"
    assert mapping["embedding"]["dimension"] == 384

    for doc_id in EMBEDDABLE:
        stored = np.array(_vector(client, index_name, doc_id), dtype=np.float32)
        text = document_text(DOCUMENTS[doc_id], ["title", "body"])
        expected = encoder.encode([text])[0]
        assert stored.shape == (384,)
        assert np.allclose(stored, expected, atol=1e-5), doc_id
    for doc_id in ("empty", "numbers"):
        assert _vector(client, index_name, doc_id) is None


def test_backfill_keeps_user_fields(
    client: OpenSearch,
    encoder: Encoder,
    index_name: str,
    make_settings: Callable[..., Settings],
) -> None:
    create_index(client, index_name, DOCUMENTS)

    backfill(make_settings(), client=client, encoder=encoder)

    for doc_id, source in DOCUMENTS.items():
        stored = client.get(index=index_name, id=doc_id)["_source"]
        for field, value in source.items():
            assert stored[field] == value, (doc_id, field)


def test_second_run_embeds_nothing(
    client: OpenSearch,
    encoder: Encoder,
    index_name: str,
    make_settings: Callable[..., Settings],
) -> None:
    create_index(client, index_name, DOCUMENTS)
    backfill(make_settings(), client=client, encoder=encoder)
    versions = {
        doc_id: client.get(index=index_name, id=doc_id)["_version"]
        for doc_id in DOCUMENTS
    }

    fresh = Encoder()
    second = backfill(make_settings(), client=client, encoder=fresh)

    assert second.embedded == 0
    assert not fresh.loaded
    assert second.unchanged == len(EMBEDDABLE)
    assert second.skipped == 2
    for doc_id, version in versions.items():
        assert client.get(index=index_name, id=doc_id)["_version"] == version, doc_id


def test_changed_text_is_embedded_again(
    client: OpenSearch,
    encoder: Encoder,
    index_name: str,
    make_settings: Callable[..., Settings],
) -> None:
    create_index(client, index_name, DOCUMENTS)
    backfill(make_settings(), client=client, encoder=encoder)
    client.update(
        index=index_name,
        id="gimp",
        body={"doc": {"title": "raster graphics editor"}},
        refresh=True,
    )

    report = backfill(make_settings(), client=client, encoder=encoder)

    assert report.embedded == 1
    text = document_text(
        {**DOCUMENTS["gimp"], "title": "raster graphics editor"}, ["title", "body"]
    )
    stored = np.array(_vector(client, index_name, "gimp"), dtype=np.float32)
    assert np.allclose(stored, encoder.encode([text])[0], atol=1e-5)


def test_routed_documents_are_updated(
    client: OpenSearch,
    encoder: Encoder,
    index_name: str,
    make_settings: Callable[..., Settings],
) -> None:
    docs = {"a": {"title": "first"}, "b": {"title": "second"}}
    create_index(client, index_name, docs, routing={"a": "tenant-1", "b": "tenant-2"})

    report = backfill(make_settings(), client=client, encoder=encoder)

    assert report.embedded == 2
    assert report.failed == 0
    stored = client.get(index=index_name, id="a", routing="tenant-1")["_source"]
    assert len(stored["embedding"]) == 384


def test_failed_item_is_reported_with_reason(
    client: OpenSearch,
    encoder: Encoder,
    index_name: str,
    make_settings: Callable[..., Settings],
) -> None:
    # "abc" is accepted while ignore_malformed is on; once it is off, every
    # update of that document fails to parse, a real per-item failure.
    mappings = {
        "properties": {
            "title": {"type": "text"},
            "n": {"type": "integer", "ignore_malformed": True},
        }
    }
    create_index(
        client,
        index_name,
        {"good": {"title": "fine", "n": 1}, "bad": {"title": "broken", "n": "abc"}},
        mappings=mappings,
    )
    client.indices.put_mapping(
        index=index_name,
        body={"properties": {"n": {"type": "integer", "ignore_malformed": False}}},
    )

    report = backfill(
        make_settings(text_fields=["title"]), client=client, encoder=encoder
    )

    assert report.embedded == 1
    assert report.failed == 1
    assert not report.ok
    issue = report.failed_items[0]
    assert issue.id == "bad"
    assert issue.status == 400
    assert "mapper_parsing_exception" in issue.reason
    assert "embedding" not in issue.reason  # no vector in the report


def test_derived_source_failure_names_the_fix(
    client: OpenSearch,
    encoder: Encoder,
    index_name: str,
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # k-NN 3.5's derived source can fail an update with this error after
    # segment merges; the first item of the first _bulk response gets it.
    create_index(client, index_name, DOCUMENTS)
    real_bulk = client.bulk
    calls: list[int] = []

    def bulk(*args: Any, **kwargs: Any) -> Any:
        response = real_bulk(*args, **kwargs)
        if not calls:
            response["items"][0] = {
                "update": {
                    "status": 500,
                    "error": {
                        "type": "already_closed_exception",
                        "reason": "Already closed: MemorySegmentIndexInput",
                    },
                }
            }
        calls.append(1)
        return response

    monkeypatch.setattr(client, "bulk", bulk)
    report = backfill(make_settings(), client=client, encoder=encoder)

    assert report.failed == 1
    issue = report.failed_items[0]
    assert issue.status == 500
    assert issue.reason.startswith("already_closed_exception: Already closed")
    assert "index.knn.derived_source.enabled: false" in issue.reason
    assert len(issue.reason) <= MAX_REASON_CHARS


def test_concurrent_update_is_embedded_with_final_text(
    client: OpenSearch,
    encoder: Encoder,
    index_name: str,
    make_settings: Callable[..., Settings],
) -> None:
    create_index(client, index_name, DOCUMENTS)

    class WritesBeforeFirstBulk(OpenSearch):
        """The real client; an application changes a document just before the first bulk."""

        changed = False

        def bulk(self, *args: Any, **kwargs: Any) -> Any:
            if not self.changed:
                self.changed = True
                client.update(
                    index=index_name,
                    id="scipy",
                    body={"doc": {"title": "changed meanwhile"}},
                )
            return super().bulk(*args, **kwargs)

    racing = WritesBeforeFirstBulk(hosts=make_settings().hosts)
    report = backfill(make_settings(), client=racing, encoder=encoder)

    assert racing.changed
    assert report.failed == 0
    assert report.embedded == len(EMBEDDABLE)
    final = client.get(index=index_name, id="scipy")["_source"]
    assert final["title"] == "changed meanwhile"
    expected = encoder.encode([document_text(final, ["title", "body"])])[0]
    assert np.allclose(
        np.array(final["embedding"], dtype=np.float32), expected, atol=1e-5
    )


def test_concurrent_delete_is_not_a_failure(
    client: OpenSearch,
    encoder: Encoder,
    index_name: str,
    make_settings: Callable[..., Settings],
) -> None:
    create_index(client, index_name, DOCUMENTS)

    class DeletesBeforeFirstBulk(OpenSearch):
        """The real client; an application deletes a document just before the first bulk."""

        deleted = False

        def bulk(self, *args: Any, **kwargs: Any) -> Any:
            if not self.deleted:
                self.deleted = True
                client.delete(index=index_name, id="gimp")
            return super().bulk(*args, **kwargs)

    racing = DeletesBeforeFirstBulk(hosts=make_settings().hosts)
    report = backfill(make_settings(), client=racing, encoder=encoder)

    assert racing.deleted
    assert report.ok, report.failed_items
    assert report.deleted_meanwhile == 1
    assert report.embedded == len(EMBEDDABLE) - 1
    assert "1 deleted by others during the run" in report.summary()
    assert not client.exists(index=index_name, id="gimp")


def test_concrete_index_without_knn_raises(
    client: OpenSearch,
    encoder: Encoder,
    index_name: str,
    make_settings: Callable[..., Settings],
) -> None:
    create_index(client, index_name, DOCUMENTS, knn=False)

    with pytest.raises(MappingError, match="index.knn") as raised:
        backfill(make_settings(), client=client, encoder=encoder, migrate=True)

    assert index_name in str(raised.value)
    assert "alias" in str(raised.value)
    mapping = client.indices.get_mapping(index=index_name)[index_name]["mappings"][
        "properties"
    ]
    assert "embedding" not in mapping


def test_alias_without_knn_needs_migrate(
    client: OpenSearch,
    encoder: Encoder,
    index_name: str,
    make_settings: Callable[..., Settings],
) -> None:
    concrete = f"{index_name}-000001"
    create_index(client, concrete, DOCUMENTS, knn=False)
    client.indices.put_alias(index=concrete, name=index_name)

    with pytest.raises(MappingError, match="--migrate"):
        backfill(make_settings(), client=client, encoder=encoder)


def test_migrate_copies_embeds_and_moves_alias(
    client: OpenSearch,
    encoder: Encoder,
    index_name: str,
    make_settings: Callable[..., Settings],
) -> None:
    concrete = f"{index_name}-000001"
    create_index(client, concrete, DOCUMENTS, knn=False, routing={"gimp": "r1"})
    client.indices.put_settings(
        index=concrete, body={"index": {"refresh_interval": "7s"}}
    )
    client.indices.put_alias(
        index=concrete, name=index_name, body={"is_write_index": True}
    )

    report = backfill(make_settings(), client=client, encoder=encoder, migrate=True)

    assert report.migration is not None
    new_index = report.migration.new_index
    assert new_index == f"{concrete}-knn"
    assert report.embedded == len(EMBEDDABLE)
    aliases = client.indices.get_alias(name=index_name)
    assert list(aliases) == [new_index]
    assert aliases[new_index]["aliases"][index_name].get("is_write_index") is True
    # The old index is kept, untouched.
    assert client.count(index=concrete)["count"] == len(DOCUMENTS)
    assert (
        "embedding"
        not in client.indices.get_mapping(index=concrete)[concrete]["mappings"][
            "properties"
        ]
    )
    # The copy keeps the user's settings and routing, and has k-NN on.
    settings = client.indices.get_settings(index=new_index)[new_index]["settings"][
        "index"
    ]
    assert settings["knn"] == "true"
    assert settings["refresh_interval"] == "7s"
    assert client.get(index=new_index, id="gimp", routing="r1")["_source"]["embedding"]

    again = backfill(make_settings(), client=client, encoder=encoder)
    assert again.migration is None
    assert again.embedded == 0


@pytest.mark.parametrize(
    ("vector_mapping", "engine"),
    [
        (
            {"type": "knn_vector", "dimension": 384, "space_type": "l2"},
            "default (native)",
        ),
        (
            {
                "type": "knn_vector",
                "dimension": 384,
                "method": {"name": "hnsw", "engine": "faiss", "space_type": "l2"},
            },
            "faiss",
        ),
    ],
)
def test_native_engine_without_libraries_raises(
    client: OpenSearch,
    encoder: Encoder,
    index_name: str,
    make_settings: Callable[..., Settings],
    vector_mapping: dict[str, Any],
    engine: str,
) -> None:
    attributes = client.nodes.info(filter_path="nodes.*.attributes")["nodes"]
    if all(
        node.get("attributes", {}).get(KNN_NATIVE_LIBRARIES_ATTRIBUTE) != "false"
        for node in attributes.values()
    ):
        pytest.skip("the node has the k-NN native libraries")
    # The documents carry no vector, so the node builds no native graph.
    mappings = {"properties": {"title": {"type": "text"}, "embedding": vector_mapping}}
    create_index(
        client, index_name, {"vlc": {"title": "media player"}}, mappings=mappings
    )

    with pytest.raises(MappingError, match='"engine": "lucene"') as raised:
        backfill(make_settings(text_fields=["title"]), client=client, encoder=encoder)
    assert f"uses the {engine} engine" in str(raised.value)
    assert "embedding" not in client.get(index=index_name, id="vlc")["_source"]


def test_dimension_mismatch_raises_before_writing(
    client: OpenSearch,
    encoder: Encoder,
    index_name: str,
    make_settings: Callable[..., Settings],
) -> None:
    mappings = {
        "properties": {
            "title": {"type": "text"},
            "embedding": {
                "type": "knn_vector",
                "dimension": 8,
                "space_type": "cosinesimil",
                "method": {"name": "hnsw", "engine": "lucene"},
            },
        }
    }
    create_index(client, index_name, {"a": {"title": "hello"}}, mappings=mappings)

    with pytest.raises(MappingError) as raised:
        backfill(make_settings(), client=client, encoder=encoder)

    assert "dimension 8" in str(raised.value)
    assert "dimension 384" in str(raised.value)
    assert client.get(index=index_name, id="a")["_version"] == 1


def test_vector_field_of_other_type_raises(
    client: OpenSearch,
    encoder: Encoder,
    index_name: str,
    make_settings: Callable[..., Settings],
) -> None:
    create_index(
        client,
        index_name,
        {"a": {"title": "hello"}},
        mappings={
            "properties": {"title": {"type": "text"}, "embedding": {"type": "keyword"}}
        },
    )

    with pytest.raises(MappingError, match="'keyword', not knn_vector"):
        backfill(make_settings(), client=client, encoder=encoder)


def test_missing_index_raises(
    client: OpenSearch,
    encoder: Encoder,
    index_name: str,
    make_settings: Callable[..., Settings],
) -> None:
    with pytest.raises(IndexNotFoundError, match=index_name):
        backfill(make_settings(), client=client, encoder=encoder)


@pytest.mark.parametrize(
    ("block", "fix"),
    [
        (
            "index.blocks.read_only_allow_delete",
            '"index.blocks.read_only_allow_delete": null',
        ),
        ("index.blocks.write", '"index.blocks.write": false'),
    ],
)
def test_block_set_mid_run_stops_it(
    client: OpenSearch,
    encoder: Encoder,
    index_name: str,
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
    block: str,
    fix: str,
) -> None:
    # The flood-stage watermark sets its block while the run is writing.
    create_index(client, index_name, DOCUMENTS)
    real_bulk = client.bulk

    def bulk(*args: Any, **kwargs: Any) -> Any:
        client.indices.put_settings(index=index_name, body={block: True})
        return real_bulk(*args, **kwargs)

    monkeypatch.setattr(client, "bulk", bulk)
    try:
        with pytest.raises(IndexBlockedError, match=re.escape(fix)):
            backfill(make_settings(), client=client, encoder=encoder)
    finally:
        client.indices.put_settings(index=index_name, body={block: None})


@pytest.mark.parametrize(
    "block",
    [
        "index.blocks.read_only_allow_delete",
        "index.blocks.read_only",
        "index.blocks.write",
    ],
)
def test_write_blocks_stop_before_reading(
    client: OpenSearch,
    encoder: Encoder,
    index_name: str,
    make_settings: Callable[..., Settings],
    block: str,
) -> None:
    create_index(client, index_name, DOCUMENTS)
    client.indices.put_settings(index=index_name, body={block: True})
    progress: list[object] = []
    try:
        with pytest.raises(
            IndexBlockedError,
            match=rf'{block}: true.*PUT {index_name}/_settings \{{"{block}": null\}}',
        ):
            backfill(
                make_settings(),
                client=client,
                encoder=encoder,
                progress=progress.append,
            )
    finally:
        client.indices.put_settings(index=index_name, body={block: None})
    assert progress == []
    mapping = client.indices.get_mapping(index=index_name)[index_name]["mappings"]
    assert "embedding" not in mapping.get("properties", {})


def test_dry_run_warns_about_write_block(
    client: OpenSearch,
    encoder: Encoder,
    index_name: str,
    make_settings: Callable[..., Settings],
    caplog: pytest.LogCaptureFixture,
) -> None:
    create_index(client, index_name, DOCUMENTS)
    client.indices.put_settings(index=index_name, body={"index.blocks.write": True})
    try:
        with caplog.at_level(logging.WARNING, logger="os_mlt.indexer.backfill"):
            report = backfill(
                make_settings(), client=client, encoder=encoder, dry_run=True
            )
    finally:
        client.indices.put_settings(index=index_name, body={"index.blocks.write": None})
    assert report.pending == len(EMBEDDABLE)
    warnings = [record.getMessage() for record in caplog.records]
    assert any("A real run would stop here" in text for text in warnings)


def test_dry_run_changes_nothing(
    client: OpenSearch,
    encoder: Encoder,
    index_name: str,
    make_settings: Callable[..., Settings],
) -> None:
    create_index(client, index_name, DOCUMENTS)

    report = backfill(make_settings(), client=client, encoder=encoder, dry_run=True)

    assert report.dry_run
    assert report.pending == len(EMBEDDABLE)
    assert report.embedded == 0
    assert report.skipped == 2
    assert "would embed 4" in report.summary()
    mapping = client.indices.get_mapping(index=index_name)[index_name]["mappings"][
        "properties"
    ]
    assert "embedding" not in mapping
    assert all(
        client.get(index=index_name, id=doc_id)["_version"] == 1 for doc_id in DOCUMENTS
    )

    backfill(make_settings(), client=client, encoder=encoder)
    client.update(
        index=index_name, id="gimp", body={"doc": {"title": "changed"}}, refresh=True
    )
    after_change = backfill(
        make_settings(), client=client, encoder=encoder, dry_run=True
    )
    assert after_change.pending == 1
    assert after_change.unchanged == len(EMBEDDABLE) - 1


def test_dry_run_of_migration_creates_no_index(
    client: OpenSearch,
    encoder: Encoder,
    index_name: str,
    make_settings: Callable[..., Settings],
) -> None:
    concrete = f"{index_name}-000001"
    create_index(client, concrete, DOCUMENTS, knn=False)
    client.indices.put_alias(index=concrete, name=index_name)

    filtered = f"{index_name}-scipy"
    client.indices.put_alias(
        index=concrete, name=filtered, body={"filter": {"ids": {"values": ["scipy"]}}}
    )

    report = backfill(
        make_settings(), client=client, encoder=encoder, migrate=True, dry_run=True
    )
    through_filter = backfill(
        make_settings(index=filtered),
        client=client,
        encoder=encoder,
        migrate=True,
        dry_run=True,
    )

    assert report.pending == len(EMBEDDABLE)
    assert report.migration is not None
    assert report.migration.new_index == f"{concrete}-knn"
    # The copy would take the whole index, not only what the filter shows.
    assert through_filter.pending == len(EMBEDDABLE)
    assert not client.indices.exists(index=f"{concrete}-knn")
    assert list(client.indices.get_alias(name=index_name)) == [concrete]


def test_special_character_ids(
    client: OpenSearch,
    encoder: Encoder,
    index_name: str,
    make_settings: Callable[..., Settings],
) -> None:
    ids = [
        "with space",
        "slash/and?query=1",
        "hash#frag",
        "ünïcødé-名前",
        'quote"s',
        "%2F",
    ]
    create_index(
        client,
        index_name,
        {doc_id: {"title": f"document {n}"} for n, doc_id in enumerate(ids)},
    )

    report = backfill(make_settings(), client=client, encoder=encoder)

    assert report.failed == 0
    assert report.embedded == len(ids)
    for doc_id in ids:
        assert (
            len(client.get(index=index_name, id=doc_id)["_source"]["embedding"]) == 384
        )


def test_lost_scroll_rescans_and_finishes(
    client: OpenSearch,
    encoder: Encoder,
    index_name: str,
    make_settings: Callable[..., Settings],
) -> None:
    create_index(
        client,
        index_name,
        {f"d{n}": {"title": f"document number {n}"} for n in range(12)},
    )

    class ClearsScrollsOnce(Encoder):
        """The real model; before its first batch every open scroll is cleared, as when one expires."""

        cleared = False

        def encode_counting_long(self, texts: Any) -> Any:
            if not self.cleared:
                self.cleared = True
                client.clear_scroll(scroll_id="_all")
            return super().encode_counting_long(texts)

    settings = make_settings(scan_batch_size=1)
    clearing = ClearsScrollsOnce()
    report = backfill(settings, client=client, encoder=clearing)

    assert clearing.cleared
    assert report.failed == 0
    assert report.scanned == 12
    assert report.embedded == 12
    assert report.unchanged == 0
    again = backfill(settings, client=client, encoder=encoder)
    assert again.embedded == 0
    assert again.unchanged == 12


def test_data_stream_is_rejected(
    client: OpenSearch,
    encoder: Encoder,
    index_name: str,
    make_settings: Callable[..., Settings],
) -> None:
    client.indices.put_index_template(
        name=index_name,
        body={"index_patterns": [f"{index_name}*"], "data_stream": {}, "priority": 500},
    )
    try:
        client.index(
            index=index_name,
            body={"@timestamp": "2026-01-01T00:00:00Z", "title": "log line"},
            op_type="create",
            refresh=True,
        )
        with pytest.raises(MappingError, match="data stream"):
            backfill(make_settings(), client=client, encoder=encoder)
    finally:
        client.indices.delete_data_stream(name=index_name)
        client.indices.delete_index_template(name=index_name)


def test_long_texts_are_counted(
    client: OpenSearch,
    encoder: Encoder,
    index_name: str,
    make_settings: Callable[..., Settings],
) -> None:
    long_body = "Sequence alignment and genome assembly tools. " * 120
    create_index(
        client,
        index_name,
        {"long": {"title": "aligner", "body": long_body}, "short": {"title": "x"}},
    )

    report = backfill(make_settings(), client=client, encoder=encoder)

    assert report.embedded == 2
    assert report.long_texts == 1
    stored = np.array(_vector(client, index_name, "long"), dtype=np.float32)
    expected = encoder.encode(
        [document_text({"title": "aligner", "body": long_body}, ["title", "body"])]
    )[0]
    assert np.allclose(stored, expected, atol=1e-5)


def test_migrate_catches_up_with_writes_to_old_index(
    client: OpenSearch,
    encoder: Encoder,
    index_name: str,
    make_settings: Callable[..., Settings],
) -> None:
    concrete = f"{index_name}-000001"
    mappings = {
        "_meta": {"owner": "search-team"},
        "properties": {"title": {"type": "text"}, "body": {"type": "text"}},
    }
    create_index(client, concrete, DOCUMENTS, knn=False, mappings=mappings)
    client.indices.put_alias(index=concrete, name=index_name)

    class ApplicationWritesDuringEmbedding(Encoder):
        """The real model; the first batch coincides with an application writing to the old index."""

        wrote = False

        def encode_counting_long(self, texts: Any) -> Any:
            if not self.wrote:
                self.wrote = True
                client.update(
                    index=concrete,
                    id="gimp",
                    body={"doc": {"title": "photo editor, renamed"}},
                )
                client.index(
                    index=concrete,
                    id="late",
                    body={"title": "a document added during migration"},
                )
                client.indices.refresh(index=concrete)
            return super().encode_counting_long(texts)

    report = backfill(
        make_settings(),
        client=client,
        encoder=ApplicationWritesDuringEmbedding(),
        migrate=True,
    )

    assert report.migration is not None
    new_index = report.migration.new_index
    assert report.failed == 0
    for doc_id, title in (
        ("gimp", "photo editor, renamed"),
        ("late", "a document added during migration"),
    ):
        stored = client.get(index=index_name, id=doc_id)["_source"]
        assert stored["title"] == title
        text = document_text(stored, ["title", "body"])
        assert np.allclose(
            np.array(stored["embedding"], dtype=np.float32),
            encoder.encode([text])[0],
            atol=1e-5,
        )
    meta = client.indices.get_mapping(index=new_index)[new_index]["mappings"]["_meta"]
    assert meta["owner"] == "search-team"
    assert meta["os_mlt"]["copied_from"] == concrete


def test_closed_index_is_reported(
    client: OpenSearch,
    encoder: Encoder,
    index_name: str,
    make_settings: Callable[..., Settings],
) -> None:
    create_index(client, index_name, DOCUMENTS)
    client.indices.close(index=index_name)

    with pytest.raises(IndexBlockedError, match=rf"POST {index_name}/_open"):
        backfill(make_settings(), client=client, encoder=encoder)


def test_missing_text_fields_stop_before_writing(
    client: OpenSearch,
    encoder: Encoder,
    index_name: str,
    make_settings: Callable[..., Settings],
) -> None:
    create_index(client, index_name, DOCUMENTS)

    with pytest.raises(MappingError, match="none of the text fields nosuch1, nosuch2"):
        backfill(
            make_settings(text_fields=["nosuch1", "nosuch2"]),
            client=client,
            encoder=encoder,
        )

    mapping = client.indices.get_mapping(index=index_name)[index_name]["mappings"][
        "properties"
    ]
    assert "embedding" not in mapping


def test_vector_excluded_from_source(
    client: OpenSearch,
    encoder: Encoder,
    index_name: str,
    make_settings: Callable[..., Settings],
) -> None:
    from os_mlt import hybrid_similar

    mappings = {
        "_source": {"excludes": ["embedding"]},
        "properties": {
            "title": {"type": "text"},
            "body": {"type": "text"},
            "size": {"type": "integer"},
        },
    }
    docs = {
        key: {**value, "size": 1}
        for key, value in DOCUMENTS.items()
        if key in EMBEDDABLE
    }
    create_index(client, index_name, docs, mappings=mappings)
    has_vector = {"query": {"exists": {"field": "embedding"}}}

    first = backfill(make_settings(), client=client, encoder=encoder)
    client.indices.refresh(index=index_name)

    assert first.embedded == len(docs)
    assert client.count(index=index_name, body=has_vector)["count"] == len(docs)
    result = hybrid_similar(
        "scipy", k=2, settings=make_settings(), client=client, encoder=encoder
    )
    assert len(result.hits) == 2

    # A partial update re-indexes the document from _source, which has no vector.
    client.update(index=index_name, id="gimp", body={"doc": {"size": 2}}, refresh=True)
    assert client.count(index=index_name, body=has_vector)["count"] == len(docs) - 1

    second = backfill(make_settings(), client=client, encoder=encoder)

    assert second.embedded == 1
    client.indices.refresh(index=index_name)
    assert client.count(index=index_name, body=has_vector)["count"] == len(docs)


def test_zero_vector_is_never_written(
    client: OpenSearch,
    encoder: Encoder,
    index_name: str,
    make_settings: Callable[..., Settings],
) -> None:
    create_index(client, index_name, DOCUMENTS)
    gimp_text = document_text(DOCUMENTS["gimp"], ["title", "body"])

    class ZeroForGimp(Encoder):
        """The real model, except that gimp's text comes back as a zero vector."""

        def encode_counting_long(self, texts: Any) -> Any:
            vectors, long_texts = super().encode_counting_long(texts)
            for row, text in enumerate(texts):
                if text == gimp_text:
                    vectors[row] = 0.0
            return vectors, long_texts

    report = backfill(make_settings(), client=client, encoder=ZeroForGimp())

    assert report.embedded == len(EMBEDDABLE) - 1
    assert report.failed == 0
    zero = [issue for issue in report.skipped_items if issue.id == "gimp"]
    assert len(zero) == 1
    assert zero[0].reason == "model returned a zero vector"
    assert _vector(client, index_name, "gimp") is None


def test_sliced_scan_reads_every_document(
    client: OpenSearch,
    encoder: Encoder,
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    records = list(itertools.islice(read_jsonl(DEBIAN_CORPUS), 300))
    alias = f"os-mlt-test-{uuid.uuid4().hex[:12]}"
    load_corpus(client, records, alias=alias, text_fields=["title", "body"], knn=True)
    settings = make_settings(index=alias, scan_slices=3, scan_batch_size=40)
    slices: list[Any] = []
    real_search = client.search

    def search(*args: Any, **kwargs: Any) -> Any:
        slices.append((kwargs.get("body") or {}).get("slice"))
        return real_search(*args, **kwargs)

    monkeypatch.setattr(client, "search", search)
    try:
        report = backfill(settings, client=client, encoder=encoder)

        assert sorted(part["id"] for part in slices if part) == [0, 1, 2]
        assert report.ok
        assert report.scanned == len(records)
        assert report.embedded + report.skipped == len(records)
        assert report.embedded > 250
        client.indices.refresh(index=alias)
        embedded = client.count(
            index=alias, body={"query": {"exists": {"field": "embedding_meta"}}}
        )["count"]
        assert embedded == report.embedded

        check = backfill(settings, client=client, encoder=encoder, dry_run=True)
        assert check.scanned == len(records)
        assert check.pending == 0
        assert check.unchanged == report.embedded
    finally:
        client.indices.delete(index=f"{alias}*", ignore_unavailable=True)
