"""Checks and changes of index settings and mappings for the vector field."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from opensearchpy import NotFoundError, OpenSearch, TransportError

from ..errors import IndexBlockedError, IndexNotFoundError, MappingError
from ..node.install import KNN_NATIVE_LIBRARIES_ATTRIBUTE

logger = logging.getLogger(__name__)

# HNSW graph parameters of the vector field. They are the k-NN plugin's
# defaults, written out so the mapping shows them in Dev Tools.
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 100


def vector_field_mapping(dimension: int) -> dict[str, Any]:
    """Return the `knn_vector` mapping os_mlt adds for a model of `dimension`.

    The Lucene engine runs in the JVM, so it needs none of the native
    libraries that the faiss engine loads. Cosine similarity matches how
    sentence-transformers models are trained.
    """
    return {
        "type": "knn_vector",
        "dimension": dimension,
        "space_type": "cosinesimil",
        "method": {
            "name": "hnsw",
            "engine": "lucene",
            "parameters": {"m": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION},
        },
    }


def meta_field_mapping() -> dict[str, Any]:
    """Return the mapping of the object stored next to each vector."""
    return {
        "type": "object",
        "properties": {
            "model": {"type": "keyword"},
            "text_sha256": {"type": "keyword"},
        },
    }


@dataclass(frozen=True)
class IndexTarget:
    """An index name as the user gave it, resolved on the cluster.

    Attributes:
        name: The name given: an index or an alias.
        indices: Concrete indices behind `name`, sorted.
        is_alias: Whether `name` is an alias.
        knn_enabled: Concrete indices created with `index.knn: true`.
    """

    name: str
    indices: tuple[str, ...]
    is_alias: bool
    knn_enabled: frozenset[str]

    @property
    def indices_without_knn(self) -> tuple[str, ...]:
        """Concrete indices created without `index.knn: true`."""
        return tuple(name for name in self.indices if name not in self.knn_enabled)


def resolve_index(client: OpenSearch, name: str) -> IndexTarget:
    """Look up `name` and the concrete indices behind it.

    Raises:
        IndexNotFoundError: No index or alias is called `name`.
    """
    try:
        settings = client.indices.get_settings(index=name, flat_settings=True)
    except NotFoundError as error:
        raise IndexNotFoundError(
            f"index or alias {name!r} not found on the cluster; check the name "
            "(GET _cat/indices and GET _cat/aliases list them)"
        ) from error
    indices = tuple(sorted(settings))
    closed = [
        index
        for index, body in settings.items()
        if body.get("settings", {}).get("index.verified_before_close") == "true"
    ]
    if closed:
        raise IndexBlockedError(
            f"index {closed[0]!r} is closed; open it with POST {closed[0]}/_open and run again"
        )
    backing = [index for index in indices if index.startswith(".ds-")]
    if backing:
        raise MappingError(
            f"{name!r} is or includes a data stream (backing index {backing[0]!r}); "
            "data streams accept no partial updates of their documents, so os_mlt "
            "cannot add vectors to them. Embed documents before they are indexed instead"
        )
    knn_enabled = frozenset(
        index
        for index, body in settings.items()
        if str(body.get("settings", {}).get("index.knn", "false")).lower() == "true"
    )
    is_alias = bool(client.indices.exists_alias(name=name)) and name not in indices
    return IndexTarget(
        name=name, indices=indices, is_alias=is_alias, knn_enabled=knn_enabled
    )


def check_text_fields(
    client: OpenSearch, target: IndexTarget, text_fields: list[str]
) -> None:
    """Raise unless at least one text field is mapped in every index of `target`.

    Raises:
        MappingError: No configured text field exists in an index, so every
            document would be skipped.
    """
    mappings = client.indices.get_mapping(index=",".join(target.indices))
    for index in target.indices:
        properties = mappings.get(index, {}).get("mappings", {}).get("properties", {})
        if not any(
            _field_mapping(properties, field) is not None for field in text_fields
        ):
            known = ", ".join(sorted(properties)) or "none"
            raise MappingError(
                f"none of the text fields {', '.join(text_fields)} exists in index "
                f"{index!r} (its fields: {known}); set OS_MLT_TEXT_FIELDS or --text-fields"
            )


def _field_mapping(properties: dict[str, Any], path: str) -> dict[str, Any] | None:
    """Find the mapping of a dotted field path inside `properties`."""
    parts = path.split(".")
    current: dict[str, Any] | None = {"properties": properties}
    for part in parts:
        if current is None:
            return None
        current = current.get("properties", {}).get(part)
    return current


def _properties_for(path: str, mapping: dict[str, Any]) -> dict[str, Any]:
    """Nest `mapping` under the object fields of a dotted path."""
    parts = path.split(".")
    body: dict[str, Any] = {parts[-1]: mapping}
    for part in reversed(parts[:-1]):
        body = {part: {"properties": body}}
    return body


# Blocks that reject the vector writes, with the fix for each.
_WRITE_BLOCKS = {
    "index.blocks.read_only_allow_delete": (
        "free disk space if the flood-stage watermark set it, then clear it with "
        'PUT {index}/_settings {{"index.blocks.read_only_allow_delete": null}}'
    ),
    "index.blocks.read_only": (
        'clear it with PUT {index}/_settings {{"index.blocks.read_only": null}}'
    ),
    "index.blocks.write": (
        'clear it with PUT {index}/_settings {{"index.blocks.write": null}}'
    ),
}


def enabled_blocks(client: OpenSearch, indices: tuple[str, ...]) -> dict[str, set[str]]:
    """Return the `index.blocks.*` settings that are true, per index, in one request."""
    response = client.indices.get_settings(
        index=",".join(indices), name="index.blocks.*", flat_settings=True
    )
    return {
        index: {
            name
            for name, value in response.get(index, {}).get("settings", {}).items()
            if str(value).lower() == "true"
        }
        for index in indices
    }


def check_writable(client: OpenSearch, indices: tuple[str, ...]) -> None:
    """Raise before any read when a block on one of `indices` rejects writes.

    A block set later in the run, as the flood-stage watermark does, is
    reported by the first write it rejects.
    """
    for index, blocks in enabled_blocks(client, indices).items():
        for block, fix in _WRITE_BLOCKS.items():
            if block in blocks:
                raise IndexBlockedError(
                    f"index {index!r} has {block}: true, so it rejects the vector "
                    f"writes; {fix.format(index=index)}, then run the backfill again"
                )


def ensure_vector_mapping(
    client: OpenSearch,
    indices: tuple[str, ...],
    *,
    vector_field: str,
    meta_field: str,
    dimension: int,
    dry_run: bool = False,
) -> None:
    """Add the vector and meta fields to the mapping of every index, if missing.

    With `dry_run` the existing mapping is checked and nothing is changed.

    Raises:
        MappingError: The field exists with another type or dimension, or
            with an engine the cluster's k-NN plugin cannot run.
    """
    mappings = client.indices.get_mapping(index=",".join(indices))
    native_engines: bool | None = None
    for index in indices:
        properties = mappings.get(index, {}).get("mappings", {}).get("properties", {})
        existing = _field_mapping(properties, vector_field)
        if existing is not None:
            _check_existing_vector(index, vector_field, existing, dimension)
            if _engine(existing) not in _JAVA_ENGINES:
                if native_engines is None:
                    native_engines = _native_engines_available(client)
                if not native_engines:
                    raise MappingError(
                        f"field {vector_field!r} in index {index!r} uses the "
                        f"{_engine(existing)} engine, but this cluster's k-NN plugin has "
                        "no native libraries (a node started by os-mlt node start), and "
                        "the node stops at the first refresh of such a vector. Create the "
                        'index with "method": {"name": "hnsw", "engine": "lucene"} on the '
                        "field, or use another vector field name, or a node from the "
                        "OpenSearch Docker image"
                    )
        elif not dry_run:
            logger.info(
                "Adding knn_vector field %s (dimension %d) to %s",
                vector_field,
                dimension,
                index,
            )
        additions: dict[str, Any] = {}
        if existing is None:
            additions.update(
                _properties_for(vector_field, vector_field_mapping(dimension))
            )
        if _field_mapping(properties, meta_field) is None:
            additions.update(_properties_for(meta_field, meta_field_mapping()))
        if additions and not dry_run:
            client.indices.put_mapping(index=index, body={"properties": additions})


# Engines implemented in Java, which need no native library on the node.
_JAVA_ENGINES = ("lucene", "jvector")


def _engine(mapping: dict[str, Any]) -> str:
    """Return the engine of a `knn_vector` mapping.

    A field without `method.engine` uses the k-NN plugin's default, a native
    engine (faiss in 3.x, nmslib or faiss in 2.x), and so does a trained model.
    """
    method = mapping.get("method") or {}
    engine = method.get("engine")
    return str(engine) if engine else "default (native)"


def _native_engines_available(client: OpenSearch) -> bool:
    """Return False when a node reports that its k-NN native libraries are missing."""
    try:
        response = client.nodes.info(filter_path="nodes.*.attributes")
    except TransportError as error:
        # Without the monitor privilege the attribute cannot be read; a
        # production node has the native libraries.
        logger.debug("Reading node attributes failed: %s", error)
        return True
    for node in response.get("nodes", {}).values():
        attributes = node.get("attributes", {})
        if attributes.get(KNN_NATIVE_LIBRARIES_ATTRIBUTE) == "false":
            return False
    return True


def _check_existing_vector(
    index: str, field: str, mapping: dict[str, Any], dimension: int
) -> None:
    field_type = mapping.get("type", "object")
    if field_type != "knn_vector":
        raise MappingError(
            f"field {field!r} in index {index!r} is mapped as {field_type!r}, not knn_vector; "
            "choose another vector field name (OS_MLT_VECTOR_FIELD / --vector-field)"
        )
    existing_dimension = int(mapping.get("dimension", -1))
    if existing_dimension != dimension:
        raise MappingError(
            f"field {field!r} in index {index!r} has dimension {existing_dimension}, "
            f"but the model produces vectors of dimension {dimension}; use a model of "
            f"dimension {existing_dimension} or another vector field name"
        )


# Settings that belong to one index's identity or history and that a new
# index must not copy: OpenSearch rejects or overrides them on creation.
# Entries ending with a dot are prefixes, the others exact keys.
_UNCOPYABLE_SETTINGS = (
    "index.uuid",
    "index.creation_date",
    "index.provided_name",
    "index.version.",
    "index.history.uuid",
    "index.verified_before_close",
    "index.resize.",
    "index.routing.allocation.initial_recovery.",
    "index.blocks.",
    "index.knn",
)


def copyable_settings(flat_settings: dict[str, Any]) -> dict[str, Any]:
    """Drop the settings that identify one index, keep the user's own."""
    return {
        key: value
        for key, value in flat_settings.items()
        if not any(
            key.startswith(prefix) if prefix.endswith(".") else key == prefix
            for prefix in _UNCOPYABLE_SETTINGS
        )
    }
