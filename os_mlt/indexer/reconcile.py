"""Keeping the k-NN copy in step with the old index, before and after the alias swap.

While the copy is embedded, the application keeps writing to the old index
through the alias. `copy_changes` reads each shard of the old index from its
checkpoint, a `_seq_no` kept in `_meta` of the new index. It writes into the
copy the documents whose source differs there. The backfill runs it between
passes as the catch-up.

Writes keep reaching the old index until the alias moves, and deletions are
not seen by a `_seq_no` range. So right after the swap, when every write
through the alias lands in the new index and the old one stops changing,
`reconcile` compares the two:

- A document whose `_seq_no` in the old index is above the checkpoint
  changed after the last catch-up. It is written into the new index unless
  the application has written it there since the swap.
- A document of the new index missing from the old one was deleted there
  during the migration. It is deleted from the new index unless the
  application has written it since the swap.

"Written since the swap" is read from `_seq_no`: just before the swap the
highest `_seq_no` of each primary shard of the new index is recorded, and
every later write in that shard gets a higher one. Each write and delete
carries the `if_seq_no` / `if_primary_term` it was decided on, so an
application write that lands in between wins.

The swap point is kept in `_meta` with a flag set once the comparison has
run, so a run killed in between finishes the job when it runs again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from opensearchpy import OpenSearch, helpers

from .migrate import (
    Migration,
    os_mlt_meta,
    record_checkpoint,
    recorded_checkpoint,
    shard_seq_nos,
    update_os_mlt_meta,
)
from .report import MAX_LISTED_ISSUES, MAX_REASON_CHARS, ItemIssue

logger = logging.getLogger(__name__)

# Documents compared per request.
_BATCH = 500

# Seconds to wait for writes the old index had started at the swap.
_IN_FLIGHT_WAIT_S = 5.0

# Rounds over the old index: a round starts again when the old index took
# writes while the previous one ran (requests already on their way at the swap).
_ROUNDS = 3


@dataclass
class Reconciliation:
    """Changes the comparison after the alias swap made to the new index.

    Attributes:
        read: Documents of the old index read because they changed after a checkpoint.
        copied: Documents written or added in the old index after the last
            catch-up pass, now written into the new index.
        deleted: Documents deleted from the old index during the migration,
            now deleted from the new index.
        kept_newer: Documents the old index changed late that the application
            had already written through the alias after the swap; the
            application's version was kept.
        failed: Writes or deletes the cluster rejected for another reason.
        failed_items: The first of them, with status and reason.
    """

    read: int = 0
    copied: int = 0
    deleted: int = 0
    kept_newer: int = 0
    failed: int = 0
    failed_items: list[ItemIssue] = field(default_factory=list)

    def add(self, other: Reconciliation) -> None:
        """Add the counts and failures of `other` to these."""
        self.read += other.read
        self.copied += other.copied
        self.deleted += other.deleted
        self.kept_newer += other.kept_newer
        self.failed += other.failed
        self.failed_items.extend(other.failed_items)
        del self.failed_items[MAX_LISTED_ISSUES:]

    def add_failed(self, issue: ItemIssue) -> None:
        self.failed += 1
        if len(self.failed_items) < MAX_LISTED_ISSUES:
            self.failed_items.append(issue)

    def summary(self) -> str:
        """Return one line with the counts."""
        return (
            f"after the alias swap: copied {self.copied} late writes, removed "
            f"{self.deleted} documents deleted from the old index, kept {self.kept_newer} "
            "newer writes made through the alias"
        )


def record_swap_point(client: OpenSearch, migration: Migration) -> None:
    """Record, just before the swap, the `_seq_no` the new index's shards have reached."""
    update_os_mlt_meta(
        client,
        migration.new_index,
        {
            "swap_max_seq_no": shard_seq_nos(client, migration.new_index, "max_seq_no"),
            "reconciled": False,
        },
    )


def pending_reconciliation(
    client: OpenSearch, alias: str, index: str
) -> Migration | None:
    """Return the migration into `index` whose comparison after the swap never finished."""
    meta = os_mlt_meta(client, index)
    source = meta.get("copied_from")
    if meta.get("reconciled", True) or not isinstance(source, str):
        return None
    if not client.indices.exists(index=source):
        logger.warning(
            "%s was migrated from %s, which no longer exists; writes it took just "
            "before the alias swap cannot be compared any more",
            index,
            source,
        )
        return None
    return Migration(alias=alias, source_index=source, new_index=index, copied=0)


def copy_changes(
    client: OpenSearch,
    migration: Migration,
    *,
    ignored: tuple[str, ...],
    swap_point: dict[str, int] | None = None,
) -> Reconciliation:
    """Copy into the new index what the old one took since the recorded checkpoint.

    Each shard of the old index is read from its own checkpoint, and a
    document is written only when its source differs from the copy's
    (`ignored` fields, the vector and its meta object, left out). Written
    documents carry no vector, so the next backfill pass embeds them. With a
    `swap_point` (after the swap), a copy the application wrote through the
    alias since then is kept as it is.
    """
    result = Reconciliation()
    recorded = recorded_checkpoint(client, migration.new_index)
    if recorded is None:
        return result
    reached = shard_seq_nos(client, migration.source_index)
    changed = {
        shard: _checkpoint_of(recorded, shard)
        for shard, seq_no in reached.items()
        if seq_no > _checkpoint_of(recorded, shard)
    }
    if not changed:
        return result
    client.indices.refresh(index=migration.source_index)
    client.indices.refresh(index=migration.new_index)
    new_shards = sorted(shard_seq_nos(client, migration.new_index))
    for shard, after in sorted(changed.items()):
        query = {"range": {"_seq_no": {"gt": after}}}
        for batch in _shard_batches(
            client, migration.source_index, shard, query, source=True
        ):
            _copy_batch(
                client, migration, batch, new_shards, swap_point, ignored, result
            )
    record_checkpoint(client, migration, reached)
    return result


def reconcile(
    client: OpenSearch,
    migration: Migration,
    *,
    vector_field: str,
    meta_field: str,
) -> Reconciliation:
    """Carry the old index's last writes and deletions into the new index after the swap.

    Documents it writes carry no vector; the backfill pass that follows embeds them.
    """
    meta = os_mlt_meta(client, migration.new_index)
    swap_point = {
        str(shard): int(value)
        for shard, value in (meta.get("swap_max_seq_no") or {}).items()
    }
    ignored = (vector_field, meta_field)
    result = Reconciliation()
    for _ in range(_ROUNDS):
        settled = _wait_for_in_flight_writes(client, migration.source_index)
        round_result = copy_changes(
            client, migration, ignored=ignored, swap_point=swap_point
        )
        result.add(round_result)
        if settled and round_result.read == 0:
            break
    else:
        logger.warning(
            "%s still takes writes after the alias moved to %s; something writes to it "
            "by name, and those writes are not in %s",
            migration.source_index,
            migration.new_index,
            migration.new_index,
        )

    client.indices.refresh(index=migration.new_index)
    for shard, limit in sorted(swap_point.items()):
        query = {"range": {"_seq_no": {"lte": limit}}}
        for batch in _shard_batches(
            client, migration.new_index, shard, query, source=False
        ):
            _delete_missing(client, migration, batch, result)

    update_os_mlt_meta(client, migration.new_index, {"reconciled": True})
    client.indices.refresh(index=migration.new_index)
    logger.info("%s: %s", migration.new_index, result.summary())
    return result


def _wait_for_in_flight_writes(client: OpenSearch, index: str) -> bool:
    """Wait until every write `index` has started is processed; return whether all were."""
    deadline = time.monotonic() + _IN_FLIGHT_WAIT_S
    while True:
        processed = shard_seq_nos(client, index)
        started = shard_seq_nos(client, index, "max_seq_no")
        if processed == started:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def _checkpoint_of(recorded: dict[str, int], shard: str) -> int:
    return recorded.get(shard, recorded.get("*", -1))


def _shard_batches(
    client: OpenSearch,
    index: str,
    shard: str,
    query: dict[str, Any],
    *,
    source: bool,
) -> Iterator[list[dict[str, Any]]]:
    """Read the matching documents of one shard in batches, with `_seq_no` and `_primary_term`."""
    hits = helpers.scan(
        client,
        index=index,
        query={"_source": source, "seq_no_primary_term": True, "query": query},
        size=_BATCH,
        preference=f"_shards:{shard}",
    )
    batch: list[dict[str, Any]] = []
    for hit in hits:
        batch.append(hit)
        if len(batch) >= _BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _key(hit: Mapping[str, Any]) -> tuple[str, str | None]:
    return hit["_id"], hit.get("_routing")


def _without(source: Mapping[str, Any], paths: tuple[str, ...]) -> dict[str, Any]:
    """Return a copy of `source` without the fields os_mlt writes."""
    trimmed = dict(source)
    for path in paths:
        parts = path.split(".")
        node: Any = trimmed
        parents: list[tuple[dict[str, Any], str]] = []
        for part in parts[:-1]:
            if not isinstance(node, dict) or not isinstance(node.get(part), dict):
                node = None
                break
            node[part] = dict(node[part])
            parents.append((node, part))
            node = node[part]
        if isinstance(node, dict):
            node.pop(parts[-1], None)
            for parent, part in reversed(parents):
                if parent[part]:
                    break
                del parent[part]
    return trimmed


def _current_in_new_index(
    client: OpenSearch,
    new_index: str,
    ids: list[str],
    shards: list[str],
) -> dict[tuple[str, str | None], tuple[str, dict[str, Any]]]:
    """Find documents by id in each shard of the new index: key -> (shard, hit)."""
    found: dict[tuple[str, str | None], tuple[str, dict[str, Any]]] = {}
    for shard in shards:
        response = client.search(
            index=new_index,
            preference=f"_shards:{shard}",
            body={
                "query": {"ids": {"values": ids}},
                "seq_no_primary_term": True,
                "size": len(ids),
            },
        )
        for hit in response["hits"]["hits"]:
            found[_key(hit)] = (shard, hit)
    return found


def _copy_batch(
    client: OpenSearch,
    migration: Migration,
    batch: list[dict[str, Any]],
    new_shards: list[str],
    swap_point: dict[str, int] | None,
    ignored: tuple[str, ...],
    result: Reconciliation,
) -> None:
    result.read += len(batch)
    current = _current_in_new_index(
        client,
        migration.new_index,
        sorted({hit["_id"] for hit in batch}),
        new_shards,
    )
    actions: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
    for hit in batch:
        doc_id, routing = _key(hit)
        target: dict[str, Any] = {"_index": migration.new_index, "_id": doc_id}
        if routing is not None:
            target["routing"] = routing
        match = current.get((doc_id, routing))
        if match is None:
            # NOTE: a document written to the old index just before the swap and
            # deleted through the alias just after it, before this comparison,
            # comes back: a deleted document leaves no `_seq_no` to compare.
            actions.append(({"create": target}, hit["_source"]))
            continue
        shard, found = match
        if _without(found.get("_source", {}), ignored) == _without(
            hit["_source"], ignored
        ):
            continue
        if swap_point is not None and int(found["_seq_no"]) > swap_point.get(shard, -1):
            result.kept_newer += 1
            continue
        target["if_seq_no"] = found["_seq_no"]
        target["if_primary_term"] = found["_primary_term"]
        actions.append(({"index": target}, hit["_source"]))
    for action, status, error in _bulk(client, actions):
        if status in (200, 201):
            result.copied += 1
        elif status == 409:
            # The application wrote the document through the alias meanwhile.
            result.kept_newer += 1
        else:
            result.add_failed(_issue(action, status, error))


def _delete_missing(
    client: OpenSearch,
    migration: Migration,
    batch: list[dict[str, Any]],
    result: Reconciliation,
) -> None:
    docs: list[dict[str, Any]] = []
    for hit in batch:
        entry: dict[str, Any] = {"_id": hit["_id"], "_source": False}
        if hit.get("_routing") is not None:
            entry["routing"] = hit["_routing"]
        docs.append(entry)
    response = client.mget(index=migration.source_index, body={"docs": docs})
    actions: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
    for hit, old in zip(batch, response["docs"], strict=True):
        if old.get("found"):
            continue
        target: dict[str, Any] = {
            "_index": migration.new_index,
            "_id": hit["_id"],
            "if_seq_no": hit["_seq_no"],
            "if_primary_term": hit["_primary_term"],
        }
        if hit.get("_routing") is not None:
            target["routing"] = hit["_routing"]
        actions.append(({"delete": target}, None))
    for action, status, error in _bulk(client, actions):
        if status == 200:
            result.deleted += 1
        elif status == 409:
            # Written through the alias since the scan, so the application's write is kept.
            result.kept_newer += 1
        elif status == 404:
            # The application deleted it through the alias as well.
            continue
        else:
            result.add_failed(_issue(action, status, error))


def _bulk(
    client: OpenSearch,
    actions: list[tuple[dict[str, Any], dict[str, Any] | None]],
) -> Iterator[tuple[dict[str, Any], int, Any]]:
    """Send (action, source) pairs; yield each action with its item's status and error."""
    if not actions:
        return
    body: list[dict[str, Any]] = []
    for action, source in actions:
        body.append(action)
        if source is not None:
            body.append(source)
    response = client.bulk(body=body, filter_path="items.*.status,items.*.error")
    for (action, _), item in zip(actions, response["items"], strict=True):
        outcome = next(iter(item.values()))
        yield action, int(outcome["status"]), outcome.get("error")


def _issue(action: dict[str, Any], status: int, error: Any) -> ItemIssue:
    target = next(iter(action.values()))
    reason = (
        f"{error.get('type')}: {error.get('reason')}"
        if isinstance(error, Mapping)
        else str(error)
    )
    return ItemIssue(
        id=target["_id"],
        index=target["_index"],
        status=status,
        reason=f"after the alias swap: {reason}"[:MAX_REASON_CHARS],
    )
