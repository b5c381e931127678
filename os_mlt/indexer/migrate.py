"""Copy of an index created without `index.knn` into a k-NN index behind the same alias.

`index.knn` can be set only when an index is created, and without it a
`knn_vector` field accepts no `method` and the `knn` query fails. So for an
alias whose index lacks the setting, os_mlt creates `<index>-knn` with the
same settings and mappings plus `index.knn: true` and the vector field,
copies the documents with `_reindex` (ids and routing kept), lets the
backfill embed them, and then moves the alias in one atomic `_aliases` call.
The old index stays until the user deletes it. Writes and deletions the old
index takes in the meantime are carried over by `reconcile`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opensearchpy import OpenSearch

from ..errors import IndexBlockedError, MappingError
from .mapping import (
    IndexTarget,
    _properties_for,
    copyable_settings,
    enabled_blocks,
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


def shard_seq_nos(
    client: OpenSearch, index: str, kind: str = "local_checkpoint"
) -> dict[str, int]:
    """Return a sequence number of each primary shard of `index`, by shard number.

    `local_checkpoint` is the highest `_seq_no` below which every operation
    has been processed, so after a refresh a search returns all of them.
    `max_seq_no` is the highest one handed out, including operations still
    in flight.
    """
    stats = client.indices.stats(index=index, level="shards", metric="docs")
    shards = stats["indices"][index]["shards"]
    return {
        shard: int(copy["seq_no"][kind])
        for shard, copies in shards.items()
        for copy in copies
        if copy.get("routing", {}).get("primary", True)
    }


def os_mlt_meta(client: OpenSearch, index: str) -> dict[str, Any]:
    """Return what os_mlt keeps under `_meta.os_mlt` in the mapping of `index`."""
    mapping = client.indices.get_mapping(index=index)[index]["mappings"]
    meta = mapping.get("_meta", {}).get("os_mlt", {})
    return meta if isinstance(meta, dict) else {}


def update_os_mlt_meta(client: OpenSearch, index: str, values: dict[str, Any]) -> None:
    """Merge `values` into `_meta.os_mlt` of `index`, keeping the user's `_meta` keys."""
    # PUT _mapping replaces the whole _meta object, so the user's keys are sent again.
    mapping = client.indices.get_mapping(index=index)[index]["mappings"]
    meta = _deep_merge(mapping.get("_meta", {}), {"os_mlt": values})
    client.indices.put_mapping(index=index, body={"_meta": meta})


def record_checkpoint(
    client: OpenSearch, migration: Migration, seq_nos: dict[str, int]
) -> None:
    """Record that the new index contains every write of the old one up to `seq_nos`.

    `seq_nos` maps each shard of the old index to the highest `_seq_no` copied.
    """
    update_os_mlt_meta(
        client,
        migration.new_index,
        {"copied_from": migration.source_index, "copied_through_seq_no": seq_nos},
    )


def recorded_checkpoint(client: OpenSearch, new_index: str) -> dict[str, int] | None:
    """Return the per-shard checkpoint `record_checkpoint` left, or None."""
    value = os_mlt_meta(client, new_index).get("copied_through_seq_no")
    if value is None:
        return None
    if isinstance(value, dict):
        return {str(shard): int(seq_no) for shard, seq_no in value.items()}
    # One number for every shard.
    return {"*": int(value)}


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
    if _is_pattern(target.name):
        return MappingError(
            f"index {', '.join(target.indices_without_knn)} matched by {target.name!r} "
            "was created without index.knn: true, and that setting cannot be added to "
            "an existing index. Put each such index behind an alias of its own and run "
            "the backfill on that alias with --migrate, or leave it out of the pattern"
        )
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


def _is_pattern(name: str) -> bool:
    """Return whether `name` is a wildcard pattern or a comma-separated list."""
    return any(character in name for character in "*?,")


def check_migratable(target: IndexTarget) -> str:
    """Return the one index behind the alias, or raise if it cannot be migrated."""
    if _is_pattern(target.name):
        raise MappingError(
            f"--migrate moves one alias, and {target.name!r} is a pattern or a list; "
            "run it with the alias's own name"
        )
    if not target.is_alias:
        raise knn_missing_error(target)
    if len(target.indices) != 1:
        raise MappingError(
            f"alias {target.name!r} points at {len(target.indices)} indices "
            f"({', '.join(target.indices)}), and some lack index.knn: true; "
            "--migrate handles an alias over one index only. Give each index "
            "without index.knn an alias of its own and run --migrate on that: each "
            "migration also moves this alias to the index's k-NN copy"
        )
    return target.indices[0]


# Maximum length of an index name in OpenSearch, in UTF-8 bytes.
_MAX_INDEX_NAME_BYTES = 255

# Blocks that also stop the `_aliases` call that moves the alias.
_METADATA_BLOCKS = (
    "index.blocks.read_only",
    "index.blocks.read_only_allow_delete",
    "index.blocks.metadata",
)


def _check_alias_can_move(client: OpenSearch, source: str) -> None:
    """Raise before any copy when a block on `source` would stop the alias from moving."""
    blocks = enabled_blocks(client, (source,))[source]
    for block in _METADATA_BLOCKS:
        if block in blocks:
            raise IndexBlockedError(
                f"index {source!r} has {block}: true, which also stops the alias from "
                f"moving off it at the end of a migration. Clear it with PUT "
                f'{source}/_settings {{"{block}": null}} (after freeing disk space if '
                "the flood-stage watermark set it), then run again"
            )


def carry_write_block(client: OpenSearch, migration: Migration) -> bool:
    """Put the old index's write block, if any, on the k-NN copy once it is complete.

    Returns whether the old index had the block.
    """
    source = migration.source_index
    if "index.blocks.write" in enabled_blocks(client, (source,))[source]:
        logger.info(
            "Setting index.blocks.write on %s, as on %s",
            migration.new_index,
            migration.source_index,
        )
        client.indices.put_settings(
            index=migration.new_index, body={"index.blocks.write": True}
        )
        return True
    return False


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
    _cancel_earlier_copies(client, new_index)
    return new_index


def _cancel_earlier_copies(client: OpenSearch, new_index: str) -> None:
    """Cancel `_reindex` tasks into `new_index` that a killed run left running.

    Such a task copies from an old snapshot of the source and could otherwise
    recreate, after this run, documents deleted in the meantime.
    """
    tasks = client.tasks.list(actions="*reindex", detailed=True)
    for node in tasks.get("nodes", {}).values():
        for task_id, task in node.get("tasks", {}).items():
            if f"to [{new_index}]" in str(task.get("description", "")):
                logger.info("Cancelling copy task %s left by an earlier run", task_id)
                client.tasks.cancel(task_id=task_id, wait_for_completion=True)


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
    if len(knn_copy_name(source).encode()) > _MAX_INDEX_NAME_BYTES:
        raise MappingError(
            f"index {source[:40]!r}... is too long to take the suffix -knn: OpenSearch "
            f"allows {_MAX_INDEX_NAME_BYTES} bytes in an index name. Reindex it into "
            "an index with a shorter name behind the same alias, then migrate that"
        )
    _check_alias_can_move(client, source)
    body = _new_index_body(
        client,
        source,
        vector_field=vector_field,
        meta_field=meta_field,
        dimension=dimension,
    )
    # The checkpoint goes into the new index's _meta when it is created, before
    # any copy starts. A run killed during the copy leaves a `_reindex` task that
    # may go on copying, and documents changed after the checkpoint are then
    # brought over by the catch-up of the next run whatever that task copied.
    checkpoint = shard_seq_nos(client, source)
    body["mappings"]["_meta"]["os_mlt"]["copied_through_seq_no"] = checkpoint
    new_index = _ensure_new_index(client, source, body)
    if recorded_checkpoint(client, new_index) is None:
        # A copy created without a checkpoint is compared from the start.
        record_checkpoint(
            client,
            Migration(
                alias=target.name, source_index=source, new_index=new_index, copied=0
            ),
            {shard: -1 for shard in checkpoint},
        )
    # Documents written before the checkpoint become visible to the copy only
    # after a refresh; without one the copy and the catch-up would both miss them.
    client.indices.refresh(index=source)
    copied = copy_documents(client, source, new_index, progress=progress)
    return Migration(
        alias=target.name, source_index=source, new_index=new_index, copied=copied
    )


# Alias properties that `GET _alias` returns and an `add` action accepts.
_ALIAS_PROPERTIES = (
    "filter",
    "index_routing",
    "search_routing",
    "is_write_index",
    "is_hidden",
)


def swap_alias(client: OpenSearch, migration: Migration) -> list[str]:
    """Move every alias of the old index to the k-NN copy in one atomic call.

    Returns the aliases moved, `migration.alias` first. The others move too,
    with their filters and routing, because a write through an alias left on
    the old index would never reach the copy that replaces it.
    """
    current = client.indices.get_alias(index=migration.source_index)
    aliases: dict[str, dict[str, Any]] = current[migration.source_index]["aliases"]
    names = [migration.alias] + sorted(set(aliases) - {migration.alias})
    actions: list[dict[str, Any]] = []
    for name in names:
        properties = aliases[name]
        add = {key: properties[key] for key in _ALIAS_PROPERTIES if key in properties}
        actions.append({"remove": {"index": migration.source_index, "alias": name}})
        actions.append({"add": {"index": migration.new_index, "alias": name, **add}})
    client.indices.update_aliases(body={"actions": actions})
    logger.info(
        "Moved aliases %s from %s to %s; %s is kept until you delete it",
        ", ".join(names),
        migration.source_index,
        migration.new_index,
        migration.source_index,
    )
    return names
