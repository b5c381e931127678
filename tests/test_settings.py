"""Settings from keyword arguments and OS_MLT_* variables."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydantic import ValidationError

from os_mlt import ConfigurationError, Settings
from os_mlt import settings as settings_module


def test_defaults() -> None:
    settings = Settings()
    assert settings.hosts == ["http://127.0.0.1:9200"]
    assert settings.text_fields == ["title", "body"]
    assert settings.vector_field == "embedding"
    assert settings.meta_field == "embedding_meta"
    assert settings.model == "sentence-transformers/all-MiniLM-L6-v2"


def test_environment_lists_accept_commas_and_json(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OS_MLT_HOSTS", "http://a:9200, https://b:9200")
    monkeypatch.setenv("OS_MLT_TEXT_FIELDS", '["name", "meta.summary"]')
    monkeypatch.setenv("OS_MLT_INDEX", "packages")
    monkeypatch.setenv("OS_MLT_VERIFY_CERTS", "false")

    settings = Settings()

    assert settings.hosts == ["http://a:9200", "https://b:9200"]
    assert settings.text_fields == ["name", "meta.summary"]
    assert settings.index == "packages"
    assert settings.verify_certs is False


def test_keyword_arguments_override_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OS_MLT_INDEX", "from-env")
    assert Settings(index="from-kwargs").index == "from-kwargs"


def test_password_is_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OS_MLT_USERNAME", "admin")
    monkeypatch.setenv("OS_MLT_PASSWORD", "s3cret-value")
    settings = Settings()
    assert "s3cret-value" not in repr(settings)
    assert settings.password is not None
    assert settings.password.get_secret_value() == "s3cret-value"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        pytest.param(
            {"hosts": "localhost:9200"},
            "not an http:// or https:// URL",
            id="host-scheme",
        ),
        pytest.param({"hosts": ""}, "hosts is empty", id="no-hosts"),
        pytest.param({"text_fields": ""}, "text_fields is empty", id="no-text-fields"),
        pytest.param(
            {"text_fields": "title,title"}, "lists a field twice", id="duplicate-field"
        ),
        pytest.param(
            {"text_fields": "title,.body"}, "'.body' is not a valid", id="bad-field"
        ),
        pytest.param(
            {"vector_field": "title"}, "also listed in text_fields", id="vector-is-text"
        ),
        pytest.param(
            {"username": "admin"}, "both username and password", id="user-only"
        ),
        pytest.param(
            {"encode_batch_size": 0}, "greater than or equal to 1", id="batch-size"
        ),
        pytest.param(
            {"scroll_keep_alive": "forever"},
            "not an OpenSearch time value",
            id="keep-alive",
        ),
        pytest.param({"model": " "}, "model is empty", id="empty-model"),
        pytest.param(
            {"weights": "knn:1"}, "neither a JSON object nor NAME=NUMBER", id="weights"
        ),
    ],
)
def test_invalid_settings_are_rejected(
    overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(**overrides)


def test_unknown_setting_is_rejected() -> None:
    with pytest.raises(ValidationError, match="text_field"):
        Settings(text_field="title")  # type: ignore[call-arg]


def test_unknown_variable_is_logged_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(settings_module, "_warned_variables", set())
    monkeypatch.setenv("OS_MLT_TEXT_FIELD", "title")
    monkeypatch.setenv("OS_MLT_NODE_VERSION", "2.19.1")
    monkeypatch.setenv("OS_MLT_TEST_HOSTS", "http://127.0.0.1:9200")
    with caplog.at_level(logging.WARNING, logger="os_mlt.settings"):
        settings = Settings()
        Settings()
    assert settings.text_fields == ["title", "body"]
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 1
    assert "OS_MLT_TEXT_FIELD:" in warnings[0]
    assert "did you mean OS_MLT_TEXT_FIELDS?" in warnings[0]


def test_missing_ca_file_is_rejected(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    with pytest.raises(ValidationError, match="CA certificate file .*missing.pem"):
        Settings(ca_certs=missing)
    with pytest.raises(ValidationError, match="is not a file"):
        Settings(ca_certs=tmp_path)
    present = tmp_path / "ca.pem"
    present.write_text("-----BEGIN CERTIFICATE-----\n", encoding="ascii")
    assert Settings(ca_certs=present).ca_certs == present


def test_require_index_names_the_fix() -> None:
    with pytest.raises(ConfigurationError, match="OS_MLT_INDEX"):
        Settings().require_index()


def test_host_port_out_of_range_is_rejected() -> None:
    with pytest.raises(ValidationError, match="invalid port"):
        Settings(hosts="http://127.0.0.1:99999")


@pytest.mark.parametrize(
    ("hosts", "setting", "expected"),
    [
        (["http://127.0.0.1:9200"], None, False),
        (["http://localhost:9200", "http://[::1]:9201"], None, False),
        (["https://search.example:9200"], None, True),
        (["http://127.0.0.1:9200", "https://10.0.0.5:9200"], None, True),
        (["http://127.0.0.1:9200"], True, True),
        (["https://search.example:9200"], False, False),
    ],
)
def test_bodies_are_compressed_only_for_remote_hosts(
    hosts: list[str], setting: bool | None, expected: bool
) -> None:
    from os_mlt.client import make_client

    client = make_client(Settings(hosts=hosts, http_compress=setting))
    connection = client.transport.connection_pool.connections[0]
    assert connection.http_compress is expected


def test_device_must_be_a_torch_device() -> None:
    assert Settings(device="cuda:1").device == "cuda:1"
    with pytest.raises(ValueError, match="'tpu' is not a torch device"):
        Settings(device="tpu")


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        pytest.param(
            "OS_MLT_SCAN_BATCH_SIZE",
            "abc",
            "error: invalid scan_batch_size value 'abc' from OS_MLT_SCAN_BATCH_SIZE: "
            "Input should be a valid integer",
            id="integer",
        ),
        pytest.param(
            "OS_MLT_SCAN_BATCH_SIZE",
            "0",
            "error: invalid scan_batch_size value '0' from OS_MLT_SCAN_BATCH_SIZE: "
            "Input should be greater than or equal to 1",
            id="below-minimum",
        ),
        pytest.param(
            "OS_MLT_VERIFY_CERTS",
            "maybe",
            "error: invalid verify_certs value 'maybe' from OS_MLT_VERIFY_CERTS: ",
            id="boolean",
        ),
        pytest.param(
            "os_mlt_verify_certs",
            "maybe",
            "error: invalid verify_certs value 'maybe' from os_mlt_verify_certs: ",
            id="lowercase-variable",
        ),
        pytest.param(
            "OS_MLT_WEIGHTS",
            "knn=abc",
            "error: invalid weights.knn value 'abc' from OS_MLT_WEIGHTS: ",
            id="nested",
        ),
        pytest.param(
            "OS_MLT_DEVICE",
            "tpu",
            "error: invalid device from OS_MLT_DEVICE: device 'tpu' is not",
            id="validator",
        ),
    ],
)
def test_cli_error_names_value_and_variable(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    variable: str,
    value: str,
    expected: str,
) -> None:
    from os_mlt.cli import main

    monkeypatch.setenv(variable, value)
    assert main(["backfill", "--index", "products"]) == 2
    errors = " ".join(capsys.readouterr().err.split())
    assert expected in errors
    assert "Value error," not in errors


def test_cli_boolean_error_lists_accepted_values(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from os_mlt.cli import main

    monkeypatch.setenv("OS_MLT_VERIFY_CERTS", "maybe")
    assert main(["backfill", "--index", "products"]) == 2
    errors = " ".join(capsys.readouterr().err.split())
    assert "use true/false, 1/0, yes/no or on/off" in errors


def test_cli_option_error_omits_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from os_mlt.cli import main

    monkeypatch.setenv("OS_MLT_CATEGORICAL_WEIGHT", "0.5")
    status = main(["similar", "a", "--index", "products", "--categorical-weight", "-1"])
    assert status == 2
    errors = " ".join(capsys.readouterr().err.split())
    assert "invalid categorical_weight value -1.0: " in errors
    assert "OS_MLT_CATEGORICAL_WEIGHT" not in errors
