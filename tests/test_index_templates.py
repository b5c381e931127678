"""The shipped index templates install and shape new indices on a real node."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from opensearchpy import OpenSearch

from os_mlt import Encoder, Settings, backfill
from os_mlt.indexer import vector_field_mapping

pytestmark = pytest.mark.integration

TEMPLATES = Path(__file__).resolve().parents[1] / "index_templates"


def test_templates_give_new_indices_the_vector_field(
    client: OpenSearch, encoder: Encoder, index_name: str, opensearch_url: str
) -> None:
    component = json.loads(
        (TEMPLATES / "os-mlt-vector.component-template.json").read_text()
    )
    template = json.loads(
        (TEMPLATES / "os-mlt-example.index-template.json").read_text()
    )
    template["index_patterns"] = [f"{index_name}-*"]
    template["composed_of"] = [f"{index_name}-vector"]
    client.cluster.put_component_template(name=f"{index_name}-vector", body=component)
    client.indices.put_index_template(name=index_name, body=template)
    try:
        index = f"{index_name}-1"
        client.index(
            index=index, id="a", body={"title": "hello", "body": "world"}, refresh=True
        )

        settings = client.indices.get_settings(index=index)[index]["settings"]["index"]
        assert settings["knn"] == "true"
        properties = client.indices.get_mapping(index=index)[index]["mappings"][
            "properties"
        ]
        assert properties["embedding"]["dimension"] == encoder.dimension
        expected = vector_field_mapping(encoder.dimension)["method"]
        method = properties["embedding"]["method"]
        assert method["engine"] == expected["engine"]
        assert method["parameters"] == expected["parameters"]

        report = backfill(
            Settings(hosts=[opensearch_url], index=index),
            client=client,
            encoder=encoder,
        )
        assert report.embedded == 1
    finally:
        client.indices.delete_index_template(name=index_name)
        client.cluster.delete_component_template(name=f"{index_name}-vector")


def test_shipped_component_template_matches_generated() -> None:
    from os_mlt.templates import component_template

    shipped = json.loads(
        (TEMPLATES / "os-mlt-vector.component-template.json").read_text()
    )
    generated = component_template(
        vector_field="embedding", meta_field="embedding_meta", dimension=384
    )
    assert shipped["template"] == generated["template"]


def test_cli_installs_templates(
    client: OpenSearch,
    index_name: str,
    opensearch_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from os_mlt.cli import main

    status = main(
        [
            "templates",
            "install",
            "--hosts",
            opensearch_url,
            "--name",
            index_name,
            "--pattern",
            f"{index_name}-*",
            "--vector-field",
            "vec",
            "--dimension",
            "384",
        ]
    )
    try:
        assert status == 0
        assert f"index template {index_name}" in capsys.readouterr().out
        index = f"{index_name}-new"
        client.indices.create(index=index)
        properties = client.indices.get_mapping(index=index)[index]["mappings"][
            "properties"
        ]
        assert properties["vec"]["type"] == "knn_vector"
        assert properties["vec_meta"]["properties"]["text_sha256"]["type"] == "keyword"
        assert properties["title"]["type"] == "text"
    finally:
        client.indices.delete_index_template(name=index_name)
        client.cluster.delete_component_template(name=f"{index_name}-vector")


def test_cli_templates_need_a_pattern(
    client: OpenSearch, opensearch_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from os_mlt.cli import main

    status = main(
        ["templates", "install", "--hosts", opensearch_url, "--dimension", "384"]
    )
    assert status == 2
    assert "no index pattern given" in capsys.readouterr().err
    assert not client.cluster.exists_component_template(name="os-mlt-vector")
