"""Copy of an index created without `index.knn` into a k-NN index behind the same alias.

`index.knn` can be set only when an index is created, and without it a
`knn_vector` field accepts no `method` and the `knn` query fails. So for an
alias whose index lacks the setting, os_mlt creates `<index>-knn` with the
same settings and mappings plus `index.knn: true` and the vector field,
copies the documents with `_reindex` (ids and routing kept), lets the
backfill embed them, and then moves the alias in one atomic `_aliases` call.
The old index stays until the user deletes it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opensearchpy import OpenSearch

from ..errors import MappingError
from .mapping import (
    IndexTarget,
    _properties_for,
    copyable_settings,
    meta_field_mapping,
    vector_field_mapping,
)

logger = logging.getLogger(__name__)

# Seconds between two polls of the `_reindex` task.
_POLL_INTERVAL_S = 1.0


@dataclass(frozen=True)
class Migration:
    """A k-NN copy of the index behind an alias.

    Attributes:
        alias: The alias clients use.
        source_index: The index created without `index.knn`.
        new_index: The k-NN index the alias moves to.
        copied: Documents the last `_reindex` created in `new_index`.
    """

    alias: str
    source_index: str
    new_index: str
    copied: int


def _max_seq_no(client: OpenSearch, index: str) -> int:
    """Return the lowest `max_seq_no` over the primary shards of `index`.

    Every write to the index after this call gets a higher `_seq_no` in its
    shard, so `_seq_no > value` selects them all. With several shards it also
    selects some earlier writes, which are then copied once more.
    """
    stats = client.indices.stats(index=index, level="shards", metric="docs")
    shards = stats["indices"][index]["shards"]
    values = [
        int(copy["seq_no"]["max_seq_no"])
        for copies in shards.values()
        for copy in copies
        if copy.get("routing", {}).get("primary", True)
    ]
    return min(values) if values else -1


def _record_checkpoint(client: OpenSearch, migration: Migration, seq_no: int) -> None:
    # PUT _mapping replaces the whole _meta object, so the user's keys are sent again.
    mapping = client.indices.get_mapping(index=migration.new_index)[
        migration.new_index
    ]["mappings"]
    meta = _deep_merge(
        mapping.get("_meta", {}),
        {
            "os_mlt": {
                "copied_from": migration.source_index,
                "copied_through_seq_no": seq_no,
            }
        },
    )
    client.indices.put_mapping(index=migration.new_index, body={"_meta": meta})


def _recorded_checkpoint(client: OpenSearch, new_index: str) -> int | None:
    mapping = client.indices.get_mapping(index=new_index)[new_index]["mappings"]
    value = mapping.get("_meta", {}).get("os_mlt", {}).get("copied_through_seq_no")
    return int(value) if value is not None else None


def catch_up(client: OpenSearch, migration: Migration) -> int:
    """Copy documents written to the old index since the last copy; return how many.

    Copied documents replace their earlier copies, vectors included, so the
    next backfill pass embeds them again.
    """
    threshold = _recorded_checkpoint(client, migration.new_index)
    checkpoint = _max_seq_no(client, migration.source_index)
    if threshold is None or checkpoint <= threshold:
        return 0
    copied = copy_documents(
        client,
        migration.source_index,
        migration.new_index,
        query={"range": {"_seq_no": {"gt": threshold}}},
        op_type="index",
    )
    _record_checkpoint(client, migration, checkpoint)
    logger.info(
        "Copied %d documents written to %s during the migration",
        copied,
        migration.source_index,
    )
    return copied


def knn_copy_name(index: str) -> str:
    """Return the name of the k-NN copy of `index`."""
    return f"{index}-knn"


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def knn_missing_error(target: IndexTarget) -> MappingError:
    """Return the error for a target whose index lacks `index.knn`, with the fix."""
    if not target.is_alias:
        return MappingError(
            f"index {target.name!r} was created without index.knn: true, so it cannot "
            "hold a searchable knn_vector field, and the setting cannot be added later. "
            f"Let clients reach it through an alias (POST _aliases with an add action for "
            f"index {target.name!r}), then run the backfill on that alias with --migrate: "
            "os_mlt copies the documents into a k-NN index and moves the alias to it"
        )
    return MappingError(
        f"index {', '.join(target.indices_without_knn)} behind alias {target.name!r} was "
        "created without index.knn: true, and that setting cannot be added to an existing "
        "index. Run again with --migrate (Python: migrate=True): os_mlt copies the documents into "
        "a k-NN index, embeds them there and moves the alias; the old index is kept"
    )


def check_migratable(target: IndexTarget) -> str:
    """Return the one index behind the alias, or raise if it cannot be migrated."""
    if not target.is_alias:
        raise knn_missing_error(target)
    if len(target.indices) != 1:
        raise MappingError(
            f"alias {target.name!r} points at {len(target.indices)} indices "
            f"({', '.join(target.indices)}), and some lack index.knn: true; "
            "--migrate handles an alias over one index only"
        )
    return target.indices[0]


def _new_index_body(
    client: OpenSearch,
    source: str,
    *,
    vector_field: str,
    meta_field: str,
    dimension: int,
) -> dict[str, Any]:
    flat = client.indices.get_settings(index=source, flat_settings=True)[source][
        "settings"
    ]
    settings = copyable_settings(flat)
    settings["index.knn"] = "true"
    # NOTE: with derived source (the k-NN 3.x default) reads of a document can
    # fail with AlreadyClosedException after segment merges in k-NN 3.5, so the
    # copy keeps vectors in _source, at a few KiB of JSON per vector before compression.
    settings["index.knn.derived_source.enabled"] = "false"

    mappings = client.indices.get_mapping(index=source)[source]["mappings"]
    properties = _deep_merge(
        mappings.get("properties", {}),
        _properties_for(vector_field, vector_field_mapping(dimension)),
    )
    properties = _deep_merge(
        properties, _properties_for(meta_field, meta_field_mapping())
    )
    meta = _deep_merge(mappings.get("_meta", {}), {"os_mlt": {"copied_from": source}})
    return {
        "settings": settings,
        "mappings": {**mappings, "properties": properties, "_meta": meta},
    }


def _ensure_new_index(client: OpenSearch, source: str, body: dict[str, Any]) -> str:
    new_index = knn_copy_name(source)
    if not client.indices.exists(index=new_index):
        logger.info("Creating k-NN index %s as a copy of %s", new_index, source)
        client.indices.create(index=new_index, body=body)
        return new_index

    # An earlier run stopped after creating the copy: reuse it, but only if
    # os_mlt made it for this source.
    mapping = client.indices.get_mapping(index=new_index)[new_index]["mappings"]
    copied_from = mapping.get("_meta", {}).get("os_mlt", {}).get("copied_from")
    if copied_from != source:
        raise MappingError(
            f"index {new_index!r} already exists and was not created by os_mlt as a copy "
            f"of {source!r}; rename or delete it before migrating"
        )
    logger.info("Resuming the copy of %s into %s", source, new_index)
    return new_index


def copy_documents(
    client: OpenSearch,
    source: str,
    new_index: str,
    *,
    query: dict[str, Any] | None = None,
    op_type: str = "create",
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Copy documents of `source` into `new_index`; return how many were written.

    Runs `_reindex` as a task and polls it, so large copies do not hit the HTTP
    timeout. With `op_type="create"` documents already in `new_index` are left
    as they are; with `"index"` they are replaced.

    Raises:
        MappingError: The task reported failed documents.
    """
    source_body: dict[str, Any] = {"index": source}
    if query is not None:
        source_body["query"] = query
    response = client.reindex(
        body={
            "conflicts": "proceed",
            "source": source_body,
            "dest": {"index": new_index, "op_type": op_type},
        },
        wait_for_completion=False,
        refresh=True,
    )
    task_id = response["task"]
    while True:
        task = client.tasks.get(task_id=task_id)
        status = task.get("task", {}).get("status", {})
        done = int(status.get("created", 0)) + int(status.get("version_conflicts", 0))
        if progress is not None:
            progress(done, int(status.get("total", 0)))
        if task.get("completed"):
            break
        time.sleep(_POLL_INTERVAL_S)

    if "error" in task:
        raise MappingError(
            f"copying {source!r} into {new_index!r} failed: {task['error']}"
        )
    result = task.get("response", {})
    failures = result.get("failures", [])
    if failures:
        reasons = "; ".join(
            str(failure.get("cause", failure))[:200] for failure in failures[:5]
        )
        raise MappingError(
            f"copying {source!r} into {new_index!r} failed for {len(failures)} documents: "
            f"{reasons}"
        )
    return int(result.get("created", 0)) + int(result.get("updated", 0))


def prepare_migration(
    client: OpenSearch,
    target: IndexTarget,
    *,
    vector_field: str,
    meta_field: str,
    dimension: int,
    progress: Callable[[int, int], None] | None = None,
) -> Migration:
    """Create (or reuse) the k-NN copy of the alias's index and copy documents into it."""
    source = check_migratable(target)
    body = _new_index_body(
        client,
        source,
        vector_field=vector_field,
        meta_field=meta_field,
        dimension=dimension,
    )
    new_index = _ensure_new_index(client, source, body)
    resumed_from = _recorded_checkpoint(client, new_index)
    checkpoint = _max_seq_no(client, source)
    copied = copy_documents(client, source, new_index, progress=progress)
    migration = Migration(
        alias=target.name, source_index=source, new_index=new_index, copied=copied
    )
    if resumed_from is None:
        _record_checkpoint(client, migration, checkpoint)
    # A resumed copy keeps its earlier checkpoint, so catch_up also brings over
    # the documents changed in the old index while no run was going.
    return migration


# Alias properties that `GET _alias` returns and an `add` action accepts.
_ALIAS_PROPERTIES = (
    "filter",
    "index_routing",
    "search_routing",
    "is_write_index",
    "is_hidden",
)


def swap_alias(client: OpenSearch, migration: Migration) -> None:
    """Move the alias from the old index to the k-NN copy in one atomic call."""
    current = client.indices.get_alias(
        index=migration.source_index, name=migration.alias
    )
    properties = current[migration.source_index]["aliases"][migration.alias]
    add = {key: properties[key] for key in _ALIAS_PROPERTIES if key in properties}
    client.indices.update_aliases(
        body={
            "actions": [
                {"remove": {"index": migration.source_index, "alias": migration.alias}},
                {
                    "add": {
                        "index": migration.new_index,
                        "alias": migration.alias,
                        **add,
                    }
                },
            ]
        }
    )
    logger.info(
        "Moved alias %s from %s to %s; %s is kept until you delete it",
        migration.alias,
        migration.source_index,
        migration.new_index,
        migration.source_index,
    )
