"""The shipped index templates install and shape new indices on a real node."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from opensearchpy import OpenSearch

from os_mlt import ConfigurationError, Encoder, Settings, backfill
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


@pytest.mark.parametrize("dimension", ["0", "-5"])
def test_cli_templates_reject_invalid_dimension(
    client: OpenSearch,
    opensearch_url: str,
    capsys: pytest.CaptureFixture[str],
    dimension: str,
) -> None:
    from os_mlt.cli import main

    name = f"os-mlt-test-{uuid.uuid4().hex[:8]}"
    status = main(
        [
            "templates",
            "install",
            "--hosts",
            opensearch_url,
            "--pattern",
            f"{name}-*",
            "--name",
            name,
            "--dimension",
            dimension,
        ]
    )
    assert status == 2
    assert f"--dimension {dimension} is invalid" in capsys.readouterr().err
    assert not client.indices.exists_index_template(name=name)


@pytest.mark.parametrize("pattern", ["", "  "])
def test_cli_templates_reject_blank_pattern(
    client: OpenSearch,
    index_name: str,
    opensearch_url: str,
    capsys: pytest.CaptureFixture[str],
    pattern: str,
) -> None:
    from os_mlt.cli import main

    try:
        status = main(
            [
                "templates",
                "install",
                "--hosts",
                opensearch_url,
                "--name",
                index_name,
                "--pattern",
                pattern,
                "--dimension",
                "384",
            ]
        )
        assert status == 2
        assert f"index pattern {pattern!r} is empty" in capsys.readouterr().err
        assert not client.indices.exists_index_template(name=index_name)
        assert not client.cluster.exists_component_template(name=f"{index_name}-vector")
    finally:
        client.indices.delete_index_template(name=index_name, ignore=[404])
        client.cluster.delete_component_template(
            name=f"{index_name}-vector", ignore=[404]
        )


def test_install_keeps_other_patterns_of_same_name(
    client: OpenSearch, index_name: str
) -> None:
    from os_mlt.templates import install_templates

    def install(*patterns: str) -> None:
        install_templates(
            client,
            name=index_name,
            patterns=patterns,
            vector_field="embedding",
            meta_field="embedding_meta",
            dimension=384,
            text_fields=["title"],
        )

    def installed_patterns() -> list[str]:
        response = client.indices.get_index_template(name=index_name)
        patterns: list[str] = response["index_templates"][0]["index_template"][
            "index_patterns"
        ]
        return patterns

    docs, logs = f"{index_name}-docs-*", f"{index_name}-logs-*"
    try:
        install(docs)
        install(docs)  # installing the same pattern again succeeds
        assert installed_patterns() == [docs]

        with pytest.raises(ConfigurationError) as raised:
            install(logs)
        message = str(raised.value)
        assert f"index template {index_name!r} already exists for {docs}" in message
        assert "--name" in message
        assert f"--pattern {docs!r} --pattern {logs!r}" in message
        assert installed_patterns() == [docs]

        install(docs, logs)
        assert installed_patterns() == [docs, logs]
    finally:
        client.indices.delete_index_template(name=index_name, ignore=[404])
        client.cluster.delete_component_template(
            name=f"{index_name}-vector", ignore=[404]
        )
