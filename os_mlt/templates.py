"""Component and composable index templates that give new indices the vector field."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opensearchpy import OpenSearch

from .errors import ConfigurationError
from .indexer.mapping import _properties_for, meta_field_mapping, vector_field_mapping


def component_template(
    *, vector_field: str, meta_field: str, dimension: int
) -> dict[str, Any]:
    """Return a component template with `index.knn` and the vector and meta fields.

    Derived source is off for the reason given in `indexer/migrate.py`.
    """
    properties = {
        **_properties_for(vector_field, vector_field_mapping(dimension)),
        **_properties_for(meta_field, meta_field_mapping()),
    }
    return {
        "template": {
            "settings": {"index.knn": True, "index.knn.derived_source.enabled": False},
            "mappings": {"properties": properties},
        },
        "_meta": {
            "description": f"k-NN settings and the os_mlt vector field ({dimension} dimensions)"
        },
    }


def index_template(
    *,
    patterns: Sequence[str],
    component: str,
    text_fields: Sequence[str],
    priority: int = 200,
) -> dict[str, Any]:
    """Return a composable index template that applies `component` to `patterns`."""
    if not patterns:
        raise ConfigurationError(
            "no index pattern given; pass --pattern, e.g. --pattern 'docs-*'"
        )
    return {
        "index_patterns": list(patterns),
        "composed_of": [component],
        "priority": priority,
        "template": {
            "mappings": {
                "properties": {
                    name: {"type": "text"} for name in text_fields if "." not in name
                }
            }
        },
        "_meta": {
            "description": "New indices matching these patterns get the os_mlt vector field"
        },
    }


def install_templates(
    client: OpenSearch,
    *,
    name: str,
    patterns: Sequence[str],
    vector_field: str,
    meta_field: str,
    dimension: int,
    text_fields: Sequence[str],
    priority: int = 200,
) -> tuple[str, str]:
    """Install `<name>-vector` (component) and `<name>` (index template); return both names.

    Existing templates of the same names are replaced. Indices that already
    exist are not changed: run the backfill on them.
    """
    component = f"{name}-vector"
    # Both bodies are built, and so validated, before anything is installed.
    component_body = component_template(
        vector_field=vector_field, meta_field=meta_field, dimension=dimension
    )
    template_body = index_template(
        patterns=patterns,
        component=component,
        text_fields=text_fields,
        priority=priority,
    )
    client.cluster.put_component_template(name=component, body=component_body)
    client.indices.put_index_template(name=name, body=template_body)
    return component, name
