"""Migrate mode around the alias swap: late writes, deletions and application writes.

The old index has three shards and some documents with custom routing, so
the per-shard `_seq_no` bookkeeping is exercised. Writes right before and
right after the swap are made by wrapping the real client's `update_aliases`.
"""

from __future__ import annotations

import itertools
import logging
import random
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opensearchpy import OpenSearch, helpers

from os_mlt import Encoder, MappingError, Settings, backfill, document_text
from os_mlt.cli import main
from os_mlt.corpus import read_jsonl
from os_mlt.encoder import text_hash
from os_mlt.indexer import IndexBlockedError

from .conftest import DEBIAN_CORPUS

pytestmark = pytest.mark.integration

DOCUMENTS = 120
OURS = ("embedding", "embedding_meta")


def _routing(doc_id: str) -> str | None:
    """Route every fifth package by a custom value, the rest by id."""
    return "routed" if int(uuid.uuid5(uuid.NAMESPACE_DNS, doc_id)) % 5 == 0 else None


@pytest.fixture
def old_index(
    client: OpenSearch,
) -> Iterator[tuple[str, str, dict[str, dict[str, Any]]]]:
    """An alias over a three-shard index without `index.knn`, holding real packages."""
    alias = f"os-mlt-test-{uuid.uuid4().hex[:12]}"
    concrete = f"{alias}-000001"
    client.indices.create(
        index=concrete,
        body={
            "settings": {"index": {"number_of_shards": 3, "number_of_replicas": 0}},
            "mappings": {
                "properties": {
                    "title": {"type": "text"},
                    "body": {"type": "text"},
                    "section": {"type": "keyword"},
                }
            },
        },
    )
    documents: dict[str, dict[str, Any]] = {}
    for record in itertools.islice(read_jsonl(DEBIAN_CORPUS), DOCUMENTS):
        source = {key: record[key] for key in ("title", "body", "section")}
        documents[record["id"]] = source
        _write(client, concrete, record["id"], source)
    client.indices.refresh(index=concrete)
    client.indices.put_alias(index=concrete, name=alias)
    yield alias, concrete, documents
    client.indices.delete(index=f"{alias}*", ignore_unavailable=True)


def _write(client: OpenSearch, index: str, doc_id: str, source: dict[str, Any]) -> None:
    client.index(index=index, id=doc_id, body=source, routing=_routing(doc_id))


def _delete(client: OpenSearch, index: str, doc_id: str) -> None:
    client.delete(index=index, id=doc_id, routing=_routing(doc_id))


def _contents(client: OpenSearch, index: str) -> dict[str, dict[str, Any]]:
    """Return every document of `index` by id, failing on an id stored twice."""
    client.indices.refresh(index=index)
    contents: dict[str, dict[str, Any]] = {}
    for hit in helpers.scan(client, index=index, query={"query": {"match_all": {}}}):
        assert hit["_id"] not in contents, f"{hit['_id']} is stored twice"
        contents[hit["_id"]] = hit["_source"]
    return contents


def _user_fields(source: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in source.items() if key not in OURS}


def _assert_vectors_match_text(
    contents: dict[str, dict[str, Any]], encoder: Encoder
) -> None:
    for doc_id, source in contents.items():
        text = document_text(source, ["title", "body"])
        meta = source.get("embedding_meta") or {}
        assert meta.get("text_sha256") == text_hash(text), doc_id
        assert meta.get("model") == encoder.identity, doc_id
        assert len(source["embedding"]) == 384, doc_id


def _wrap_swap(
    monkeypatch: pytest.MonkeyPatch,
    client: OpenSearch,
    before: Callable[[], None],
    after: Callable[[], None],
) -> None:
    """Run `before` right before the real alias swap and `after` right after it."""
    real = client.indices.update_aliases

    def update_aliases(*args: Any, **kwargs: Any) -> Any:
        before()
        response = real(*args, **kwargs)
        after()
        return response

    monkeypatch.setattr(client.indices, "update_aliases", update_aliases)


def _pick(documents: dict[str, dict[str, Any]], routed: bool, count: int) -> list[str]:
    chosen = [
        doc_id for doc_id in documents if (_routing(doc_id) is not None) == routed
    ]
    assert len(chosen) >= count
    return chosen[:count]


def test_swap_carries_late_writes_and_deletions(
    client: OpenSearch,
    encoder: Encoder,
    make_settings: Callable[..., Settings],
    old_index: tuple[str, str, dict[str, dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    alias, concrete, documents = old_index
    changed, deleted, overwritten, deleted_after = _pick(documents, False, 4)
    routed_changed, routed_deleted = _pick(documents, True, 2)

    def late_writes_to_old_index() -> None:
        # Through the alias, which still points at the old index.
        for doc_id in (changed, routed_changed):
            _write(
                client,
                alias,
                doc_id,
                {**documents[doc_id], "title": f"renamed {doc_id}"},
            )
        _write(client, alias, "late-package", {"title": "written just before the swap"})
        _write(client, alias, overwritten, {"title": "the old index's late title"})
        _delete(client, alias, deleted)
        _delete(client, alias, routed_deleted)

    def application_writes_after_swap() -> None:
        # Through the alias, which now points at the new index.
        _write(client, alias, overwritten, {"title": "the application's newer title"})
        _write(client, alias, "after-swap", {"title": "written right after the swap"})
        _delete(client, alias, deleted_after)

    _wrap_swap(
        monkeypatch, client, late_writes_to_old_index, application_writes_after_swap
    )
    report = backfill(
        make_settings(index=alias), client=client, encoder=encoder, migrate=True
    )

    assert report.ok, report.failed_items
    assert report.migration is not None
    assert report.alias_moved
    assert report.reconciliation is not None
    assert report.reconciliation.copied == 3
    assert report.reconciliation.deleted == 2
    assert report.reconciliation.kept_newer == 1

    new_index = report.migration.new_index
    assert client.indices.get_alias(name=alias) == {new_index: {"aliases": {alias: {}}}}
    old = _contents(client, concrete)
    new = _contents(client, alias)
    assert set(new) == (set(old) - {deleted_after}) | {"after-swap"}
    assert {deleted, routed_deleted, deleted_after}.isdisjoint(new)
    for doc_id in set(old) - {overwritten, deleted_after}:
        assert _user_fields(new[doc_id]) == old[doc_id], doc_id
    assert new[changed]["title"] == f"renamed {changed}"
    assert new[routed_changed]["title"] == f"renamed {routed_changed}"
    assert new[overwritten]["title"] == "the application's newer title"
    _assert_vectors_match_text(new, encoder)
    meta = client.indices.get_mapping(index=new_index)[new_index]["mappings"]["_meta"]
    assert meta["os_mlt"]["reconciled"] is True


class _Killed(Exception):
    """Simulates the process dying right after the alias swap."""


def test_comparison_resumes_after_kill(
    client: OpenSearch,
    encoder: Encoder,
    make_settings: Callable[..., Settings],
    old_index: tuple[str, str, dict[str, dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    alias, concrete, documents = old_index
    changed, deleted = _pick(documents, False, 2)

    def late_writes_to_old_index() -> None:
        _write(client, alias, changed, {**documents[changed], "title": "renamed late"})
        _delete(client, alias, deleted)

    def die() -> None:
        raise _Killed

    real_update_aliases = client.indices.update_aliases
    _wrap_swap(monkeypatch, client, late_writes_to_old_index, die)
    settings = make_settings(index=alias)
    with pytest.raises(_Killed):
        backfill(settings, client=client, encoder=encoder, migrate=True)
    monkeypatch.setattr(client.indices, "update_aliases", real_update_aliases)
    new_index = f"{concrete}-knn"
    assert list(client.indices.get_alias(name=alias)) == [new_index]
    assert client.exists(index=alias, id=deleted, routing=_routing(deleted))
    with caplog.at_level(logging.WARNING, logger="os_mlt.indexer.backfill"):
        backfill(settings, client=client, encoder=encoder, dry_run=True)
    assert any(
        "stopped right after moving the alias" in record.getMessage()
        for record in caplog.records
    )

    report = backfill(settings, client=client, encoder=encoder)

    assert report.ok, report.failed_items
    assert report.migration is None
    assert report.reconciliation is not None
    assert (report.reconciliation.copied, report.reconciliation.deleted) == (1, 1)
    new = _contents(client, alias)
    assert set(new) == set(documents) - {deleted}
    assert new[changed]["title"] == "renamed late"
    _assert_vectors_match_text(new, encoder)

    again = backfill(settings, client=client, encoder=encoder)
    assert again.reconciliation is None
    assert again.embedded == 0


def test_concurrent_writer_loses_nothing(
    client: OpenSearch,
    encoder: Encoder,
    make_settings: Callable[..., Settings],
    old_index: tuple[str, str, dict[str, dict[str, Any]]],
) -> None:
    alias, _, documents = old_index
    ids = list(documents)
    # Updated documents are never deleted: a document written to the old index
    # just before the swap and deleted through the alias just after it is a
    # case the comparison cannot detect (see the NOTE in os_mlt/indexer/reconcile.py).
    updatable, deletable = ids[: len(ids) // 2], ids[len(ids) // 2 :]
    expected = {doc_id: dict(source) for doc_id, source in documents.items()}
    stop = threading.Event()
    failures: list[BaseException] = []

    def application() -> None:
        rng = random.Random(5)
        created = itertools.count()
        try:
            while not stop.is_set():
                action = rng.random()
                if action < 0.5:
                    doc_id = rng.choice(updatable)
                    title = f"edited {uuid.uuid4().hex[:8]}"
                    client.update(
                        index=alias,
                        id=doc_id,
                        body={"doc": {"title": title}},
                        routing=_routing(doc_id),
                        retry_on_conflict=3,
                    )
                    expected[doc_id]["title"] = title
                elif action < 0.8:
                    doc_id = f"new-{next(created)}"
                    source = {"title": f"package added while migrating {doc_id}"}
                    _write(client, alias, doc_id, source)
                    expected[doc_id] = source
                elif deletable:
                    doc_id = deletable.pop(rng.randrange(len(deletable)))
                    _delete(client, alias, doc_id)
                    del expected[doc_id]
                stop.wait(0.01)
        except BaseException as error:  # noqa: BLE001 - reported by the test thread
            failures.append(error)

    writer = threading.Thread(target=application)
    writer.start()
    try:
        report = backfill(
            make_settings(index=alias), client=client, encoder=encoder, migrate=True
        )
        # Keep writing a moment after the swap, through the alias onto the new index.
        stop.wait(0.5)
    finally:
        stop.set()
        writer.join()
    assert not failures, failures
    assert report.reconciliation is not None
    assert report.reconciliation.failed == 0
    # A document the application rewrites faster than the model embeds it
    # is reported as failed with 409, and the next run embeds it.
    assert all(issue.status == 409 for issue in report.failed_items), (
        report.failed_items
    )

    # Writes made after the swap have no vector yet; the next run embeds them.
    again = backfill(make_settings(index=alias), client=client, encoder=encoder)
    assert again.ok, again.failed_items
    new = _contents(client, alias)
    assert set(new) == set(expected)
    for doc_id, source in expected.items():
        assert _user_fields(new[doc_id]) == source, doc_id
    _assert_vectors_match_text(new, encoder)


def test_old_write_block_is_carried_over(
    client: OpenSearch,
    encoder: Encoder,
    make_settings: Callable[..., Settings],
    old_index: tuple[str, str, dict[str, dict[str, Any]]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    alias, concrete, documents = old_index
    client.indices.put_settings(index=concrete, body={"index.blocks.write": True})
    settings = make_settings(index=alias)

    status = main(
        ["backfill", "--migrate", "--hosts", settings.hosts[0], "--index", alias]
    )

    assert status == 0
    output = " ".join(capsys.readouterr().out.split())
    new_index = f"{concrete}-knn"
    assert f"now points at {new_index}" in output
    assert f"{new_index} has it too; clear it with PUT {new_index}/_settings" in output
    blocks = client.indices.get_settings(index=new_index, flat_settings=True)[
        new_index
    ]["settings"]
    assert blocks.get("index.blocks.write") == "true"
    new = _contents(client, alias)
    assert set(new) == set(documents)
    _assert_vectors_match_text(new, encoder)


@pytest.mark.parametrize(
    "block", ["index.blocks.read_only", "index.blocks.read_only_allow_delete"]
)
def test_block_that_stops_the_swap_is_reported_first(
    client: OpenSearch,
    encoder: Encoder,
    make_settings: Callable[..., Settings],
    old_index: tuple[str, str, dict[str, dict[str, Any]]],
    block: str,
) -> None:
    alias, concrete, _ = old_index
    client.indices.put_settings(index=concrete, body={block: True})
    try:
        with pytest.raises(IndexBlockedError, match=rf"{block}: true.*PUT {concrete}"):
            backfill(
                make_settings(index=alias), client=client, encoder=encoder, migrate=True
            )
        assert not client.indices.exists(index=f"{concrete}-knn")
    finally:
        client.indices.put_settings(index=concrete, body={block: None})


def test_migrate_rejects_a_pattern(
    client: OpenSearch,
    encoder: Encoder,
    make_settings: Callable[..., Settings],
    old_index: tuple[str, str, dict[str, dict[str, Any]]],
) -> None:
    alias, concrete, _ = old_index

    with pytest.raises(MappingError, match="is a pattern or a list"):
        backfill(
            make_settings(index=f"{alias[:-2]}*"),
            client=client,
            encoder=encoder,
            migrate=True,
        )
    assert not client.indices.exists(index=f"{concrete}-knn")


def test_run_killed_during_copy_keeps_later_writes(
    client: OpenSearch,
    encoder: Encoder,
    make_settings: Callable[..., Settings],
    old_index: tuple[str, str, dict[str, dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    alias, _, documents = old_index
    changed, routed_changed = _pick(documents, False, 1) + _pick(documents, True, 1)
    real_reindex = client.reindex

    def copy_then_die(*args: Any, **kwargs: Any) -> Any:
        # The copy completes, the application then updates two documents,
        # and the process dies before recording anything more.
        real_reindex(*args, **{**kwargs, "wait_for_completion": True})
        for doc_id in (changed, routed_changed):
            _write(client, alias, doc_id, {**documents[doc_id], "title": "updated"})
        raise _Killed

    monkeypatch.setattr(client, "reindex", copy_then_die)
    settings = make_settings(index=alias)
    with pytest.raises(_Killed):
        backfill(settings, client=client, encoder=encoder, migrate=True)
    monkeypatch.setattr(client, "reindex", real_reindex)

    report = backfill(settings, client=client, encoder=encoder, migrate=True)

    assert report.ok, report.failed_items
    assert report.alias_moved
    new = _contents(client, alias)
    assert set(new) == set(documents)
    assert new[changed]["title"] == "updated"
    assert new[routed_changed]["title"] == "updated"
    _assert_vectors_match_text(new, encoder)


def test_copy_name_too_long_rejected(
    client: OpenSearch,
    encoder: Encoder,
    make_settings: Callable[..., Settings],
) -> None:
    alias = f"os-mlt-test-{uuid.uuid4().hex[:12]}"
    concrete = alias + "-" + "x" * (252 - len(alias) - 1)
    client.indices.create(
        index=concrete, body={"mappings": {"properties": {"title": {"type": "text"}}}}
    )
    client.indices.put_alias(index=concrete, name=alias)
    try:
        with pytest.raises(MappingError, match="too long to take the suffix -knn"):
            backfill(
                make_settings(index=alias), client=client, encoder=encoder, migrate=True
            )
    finally:
        client.indices.delete(index=concrete)


def test_pattern_without_knn_names_its_indices(
    client: OpenSearch,
    encoder: Encoder,
    make_settings: Callable[..., Settings],
    old_index: tuple[str, str, dict[str, dict[str, Any]]],
) -> None:
    alias, concrete, _ = old_index

    with pytest.raises(
        MappingError, match=rf"index {concrete} matched by '{alias[:-2]}\*'"
    ):
        backfill(make_settings(index=f"{alias[:-2]}*"), client=client, encoder=encoder)
    assert not client.indices.exists(index=f"{concrete}-knn")


def test_every_alias_of_the_old_index_moves(
    client: OpenSearch,
    encoder: Encoder,
    make_settings: Callable[..., Settings],
    old_index: tuple[str, str, dict[str, dict[str, Any]]],
) -> None:
    alias, concrete, documents = old_index
    other = f"{alias}-other"
    filtered = f"{alias}-filtered"
    section = next(iter(documents.values()))["section"]
    section_filter = {"term": {"section": section}}
    client.indices.update_aliases(
        body={
            "actions": [
                {"add": {"index": concrete, "alias": other, "is_write_index": True}},
                {
                    "add": {
                        "index": concrete,
                        "alias": filtered,
                        "filter": section_filter,
                        "index_routing": "routed",
                        "search_routing": "routed",
                    }
                },
            ]
        }
    )

    report = backfill(
        make_settings(index=alias), client=client, encoder=encoder, migrate=True
    )

    assert report.ok, report.failed_items
    assert report.migration is not None
    new_index = report.migration.new_index
    assert report.moved_aliases == [alias, filtered, other]
    assert not report.write_block_carried
    assert client.indices.get_alias(index=concrete)[concrete]["aliases"] == {}
    aliases = client.indices.get_alias(index=new_index)[new_index]["aliases"]
    assert aliases[alias] == {}
    assert aliases[other] == {"is_write_index": True}
    assert aliases[filtered]["filter"] == section_filter
    assert aliases[filtered]["index_routing"] == "routed"
    assert aliases[filtered]["search_routing"] == "routed"

    client.index(index=other, id="through-other", body={"title": "a later write"})
    client.indices.refresh(index=new_index)
    assert client.exists(index=new_index, id="through-other")
    assert not client.exists(index=concrete, id="through-other")


def test_alias_over_two_indices_migrates_one_by_one(
    client: OpenSearch,
    encoder: Encoder,
    make_settings: Callable[..., Settings],
    old_index: tuple[str, str, dict[str, dict[str, Any]]],
) -> None:
    alias, concrete, _ = old_index
    second = f"{alias}-000002"
    shared = f"{alias}-shared"
    client.indices.create(index=second, body={"settings": {"number_of_replicas": 0}})
    client.index(index=second, id="extra", body={"title": "another package"})
    client.indices.put_alias(index=f"{concrete},{second}", name=shared)

    with pytest.raises(MappingError, match="alias over one index only") as raised:
        backfill(
            make_settings(index=shared), client=client, encoder=encoder, migrate=True
        )
    assert "also moves this alias" in str(raised.value)
    assert not client.indices.exists(index=f"{concrete}-knn")

    # The advice: migrate through the index's own alias, which moves the shared one.
    report = backfill(
        make_settings(index=alias), client=client, encoder=encoder, migrate=True
    )

    assert report.ok, report.failed_items
    assert shared in report.moved_aliases
    behind_shared = set(client.indices.get_alias(name=shared))
    assert behind_shared == {f"{concrete}-knn", second}
