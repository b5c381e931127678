"""Loading of a JSON-lines corpus into an index without vectors, for demos and tests."""

from __future__ import annotations

import gzip
import io
import json
import logging
import random
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from opensearchpy import OpenSearch, helpers

from .errors import ConfigurationError, OsMltError

logger = logging.getLogger(__name__)


def _open_text(path: Path) -> TextIO:
    if not path.is_file():
        raise ConfigurationError(
            f"corpus file {str(path)!r} not found; give a .jsonl or .jsonl.gz path"
        )
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return path.open(encoding="utf-8")


def _numbered_lines(handle: TextIO, path: Path) -> Iterator[tuple[int, str]]:
    try:
        yield from enumerate(handle, start=1)
    except (OSError, EOFError, UnicodeDecodeError) as error:
        raise ConfigurationError(
            f"cannot read {path.name}: {error}; give a UTF-8 .jsonl file or a gzip-compressed .jsonl.gz"
        ) from error


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Yield the JSON objects of a `.jsonl` or `.jsonl.gz` file, one per line.

    Raises:
        ConfigurationError: The file is missing, or a line is not a JSON object.
    """
    with _open_text(path) as handle:
        for number, line in _numbered_lines(handle, path):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ConfigurationError(
                    f"line {number} of {path.name} is not valid JSON: {error.msg}"
                ) from error
            if not isinstance(record, dict):
                raise ConfigurationError(
                    f"line {number} of {path.name} is a JSON {type(record).__name__}, "
                    "not an object"
                )
            yield record


def sample_jsonl(
    path: Path,
    *,
    limit: int | None,
    seed: int = 13,
    id_field: str = "id",
    include_ids: Collection[str] = (),
) -> list[dict[str, Any]]:
    """Return a seeded random sample of `limit` records, plus every record in `include_ids`.

    Reads the file once (reservoir sampling), so memory grows with `limit`,
    not with the file. `limit=None` returns every record in file order.
    """
    if limit is not None and limit < 0:
        raise ConfigurationError(
            f"limit must be 0 or more, got {limit}; 0 loads every record"
        )
    required_ids = set(include_ids)
    if limit is None:
        return list(read_jsonl(path))
    rng = random.Random(seed)
    reservoir: list[dict[str, Any]] = []
    included: list[dict[str, Any]] = []
    seen = 0
    for record in read_jsonl(path):
        if str(record.get(id_field)) in required_ids:
            included.append(record)
            continue
        seen += 1
        if len(reservoir) < limit:
            reservoir.append(record)
        else:
            slot = rng.randrange(seen)
            if slot < limit:
                reservoir[slot] = record
    missing = required_ids - {str(record.get(id_field)) for record in included}
    if missing:
        raise ConfigurationError(
            f"ids {', '.join(sorted(missing))} not found in {path.name} (field {id_field!r})"
        )
    return included + reservoir


def _check_ids(records: Sequence[dict[str, Any]], id_field: str) -> None:
    """Raise before anything is written if a record lacks a usable, unique id."""
    seen: set[str] = set()
    for number, record in enumerate(records, start=1):
        value = record.get(id_field)
        if value is None or str(value) == "":
            raise ConfigurationError(
                f"record {number} has no value in the id field {id_field!r}; "
                "give every record an id, or name the id field with --id-field"
            )
        if str(value) in seen:
            raise ConfigurationError(
                f"id {str(value)!r} appears twice (again in record {number}); ids must be unique"
            )
        seen.add(str(value))


def corpus_index_body(
    text_fields: Sequence[str], *, knn: bool = False
) -> dict[str, Any]:
    """Return settings and mappings for a corpus index without vectors.

    The text fields are analyzed `text`; every other string maps to `keyword`,
    so it can be filtered with term, terms and exists. One shard suits a
    single-node cluster and keeps BM25 statistics exact. `knn=True` creates
    the index with `index.knn` on, so the backfill needs no copy.
    """
    index_settings: dict[str, Any] = {"number_of_shards": 1, "number_of_replicas": 0}
    if knn:
        # Derived source off: see the note on k-NN 3.5 in indexer/migrate.py.
        index_settings.update({"knn": True, "knn.derived_source.enabled": False})
    properties: dict[str, Any] = {}
    for name in text_fields:
        parts = name.split(".")
        node = properties
        for part in parts[:-1]:
            node = node.setdefault(part, {"properties": {}})["properties"]
        node[parts[-1]] = {"type": "text"}
    return {
        "settings": {"index": index_settings},
        "mappings": {
            "dynamic_templates": [
                {
                    "strings_as_keywords": {
                        "match_mapping_type": "string",
                        "mapping": {"type": "keyword", "ignore_above": 1024},
                    }
                }
            ],
            "properties": properties,
        },
    }


def load_corpus(
    client: OpenSearch,
    records: Sequence[dict[str, Any]],
    *,
    alias: str,
    text_fields: Sequence[str],
    id_field: str = "id",
    knn: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> str:
    """Index `records` into `<alias>-000001` behind `alias`, unless already loaded.

    The index is created without `index.knn`, like most indices that exist
    before os_mlt arrives. When the alias already contains every record's id,
    nothing is written. When it lacks some, the load raises, so a run with
    another sample never mixes two samples in one index.

    Returns:
        The name of the index that contains the documents.

    Raises:
        OsMltError: A document failed to index.
    """
    if not records:
        raise ConfigurationError(
            f"there are no records to load into {alias!r}; check the corpus file"
        )
    _check_ids(records, id_field)
    if client.indices.exists_alias(name=alias):
        count = int(client.count(index=alias)["count"])
        holder = next(iter(client.indices.get_alias(name=alias)))
        ids = [str(record[id_field]) for record in records]
        present = sum(
            int(
                client.count(
                    index=alias,
                    body={"query": {"ids": {"values": ids[start : start + 10_000]}}},
                )["count"]
            )
            for start in range(0, len(ids), 10_000)
        )
        if present >= len(ids):
            logger.warning(
                "Alias %s already contains these %d documents; not loading them again",
                alias,
                len(ids),
            )
            return str(holder)
        raise ConfigurationError(
            f"alias {alias!r} exists with {count} documents and lacks "
            f"{len(ids) - present} of the {len(ids)} to load (another sample or file?); "
            f"delete it (DELETE {holder}) or choose another index name"
        )
    index = f"{alias}-000001"
    if client.indices.exists(index=index):
        raise ConfigurationError(
            f"index {index!r} exists without alias {alias!r}; delete it or choose another name"
        )
    body = corpus_index_body(text_fields, knn=knn)
    body["aliases"] = {alias: {}}
    client.indices.create(index=index, body=body)

    def actions() -> Iterator[dict[str, Any]]:
        for record in records:
            if id_field not in record:
                raise ConfigurationError(
                    f"a record has no {id_field!r} field: {str(record)[:200]}"
                )
            yield {"_index": index, "_id": str(record[id_field]), "_source": record}

    done = 0
    for ok, item in helpers.streaming_bulk(
        client, actions(), chunk_size=1000, raise_on_error=False, max_retries=3
    ):
        if not ok:
            raise OsMltError(
                f"indexing a document into {index!r} failed: {str(item)[:300]}"
            )
        done += 1
        if progress is not None and done % 1000 == 0:
            progress(done, len(records))
    client.indices.refresh(index=index)
    if progress is not None:
        progress(done, len(records))
    return index
