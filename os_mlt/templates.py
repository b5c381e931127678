"""Component and composable index templates that give new indices the vector field."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opensearchpy import NotFoundError, OpenSearch

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
    """Return a composable index template that applies `component` to `patterns`.

    Raises:
        ConfigurationError: `patterns` is empty or contains a blank pattern.
    """
    if not patterns:
        raise ConfigurationError(
            "no index pattern given; pass --pattern, e.g. --pattern 'docs-*'"
        )
    for pattern in patterns:
        if not pattern.strip():
            raise ConfigurationError(
                f"index pattern {pattern!r} is empty; pass a pattern that names "
                "indices, e.g. --pattern 'docs-*'"
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

    Existing templates of the same names are replaced, so installing again
    with the same patterns updates them. Indices that already exist are not
    changed: run the backfill on them.

    Raises:
        ConfigurationError: A pattern is blank, or an index template `name`
            exists with a pattern that `patterns` leaves out, because
            replacing it would stop new indices of that pattern from getting
            the vector field. Nothing is installed then.
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
    _check_kept_patterns(client, name, patterns)
    client.cluster.put_component_template(name=component, body=component_body)
    client.indices.put_index_template(name=name, body=template_body)
    return component, name


def _check_kept_patterns(
    client: OpenSearch, name: str, patterns: Sequence[str]
) -> None:
    """Raise if index template `name` exists with a pattern not in `patterns`.

    `PUT _index_template` replaces a template whole, and the CLI installs
    under the name os-mlt unless given --name, so a second install for other
    indices would silently take the first one's patterns away.
    """
    try:
        response = client.indices.get_index_template(name=name)
    except NotFoundError:
        return
    existing: list[str] = []
    for item in response.get("index_templates", []):
        found = item["index_template"].get("index_patterns", [])
        existing += [found] if isinstance(found, str) else list(found)
    dropped = [pattern for pattern in existing if pattern not in patterns]
    if not dropped:
        return
    combined = existing + [pattern for pattern in patterns if pattern not in existing]
    raise ConfigurationError(
        f"index template {name!r} already exists for {', '.join(existing)}; "
        f"installing it for {', '.join(patterns)} would replace it and stop new "
        f"{', '.join(dropped)} indices from getting the vector field. Pass --name "
        "for a separate template, repeat --pattern to cover all of them ("
        + " ".join(f"--pattern {pattern!r}" for pattern in combined)
        + f"), or delete the old template first (DELETE _index_template/{name})"
    )
