"""The JSON settings file: precedence, errors naming file and key, safe writes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from os_mlt import ConfigurationError, Settings
from os_mlt.query.fusion import DEFAULT_RANK_CONSTANT
from os_mlt.settings_file import update_settings_file


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Change into an empty folder and return it."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_fusion_defaults() -> None:
    settings = Settings()
    assert settings.fusion == "rrf"
    assert settings.rank_constant == DEFAULT_RANK_CONSTANT
    assert settings.weights == {"knn": 1.0, "bm25": 1.0}
    assert settings.num_candidates is None


def test_file_in_working_directory_is_read(in_tmp: Path) -> None:
    write_json(
        in_tmp / "os-mlt.json",
        {"index": "from-file", "fusion": "min_max", "num_candidates": 40},
    )
    settings = Settings()
    assert settings.index == "from-file"
    assert settings.fusion == "min_max"
    assert settings.num_candidates == 40


def test_precedence_arguments_environment_file_defaults(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_json(
        in_tmp / "os-mlt.json",
        {"fusion": "min_max", "rank_constant": 30, "index": "from-file"},
    )
    monkeypatch.setenv("OS_MLT_FUSION", "z_score")
    monkeypatch.setenv("OS_MLT_RANK_CONSTANT", "45")

    settings = Settings(fusion="l2")

    assert settings.fusion == "l2"  # argument over environment and file
    assert settings.rank_constant == 45  # environment over file
    assert settings.index == "from-file"  # file over default
    assert settings.timeout_s == 60.0  # default


def test_config_file_variable_names_the_file(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_json(in_tmp / "os-mlt.json", {"fusion": "min_max"})
    named = write_json(in_tmp / "tuned.json", {"fusion": "l2"})
    monkeypatch.setenv("OS_MLT_CONFIG_FILE", str(named))
    assert Settings().fusion == "l2"


def test_missing_named_file_is_an_error(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OS_MLT_CONFIG_FILE", str(in_tmp / "absent.json"))
    with pytest.raises(ConfigurationError, match=r"absent\.json.*OS_MLT_CONFIG_FILE"):
        Settings()


def test_folder_in_place_of_file_is_an_error(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (in_tmp / "os-mlt.json").mkdir()
    with pytest.raises(ConfigurationError, match=r"'os-mlt\.json' is a folder"):
        Settings()

    (in_tmp / "conf").mkdir()
    monkeypatch.setenv("OS_MLT_CONFIG_FILE", str(in_tmp / "conf"))
    with pytest.raises(ConfigurationError, match=r"conf' is a folder"):
        Settings()


def test_folder_from_variable_hints_at_variable(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OS_MLT_CONFIG_FILE", str(in_tmp))
    with pytest.raises(ConfigurationError) as raised:
        Settings()
    message = str(raised.value)
    assert f"{str(in_tmp)!r} is a folder; OS_MLT_CONFIG_FILE names it" in message
    assert "point OS_MLT_CONFIG_FILE at a JSON file" in message
    assert "remove or rename the folder" not in message


def test_folder_in_working_directory_hints_at_folder(in_tmp: Path) -> None:
    (in_tmp / "os-mlt.json").mkdir()
    with pytest.raises(ConfigurationError, match="remove or rename the folder"):
        Settings()


def test_empty_file_means_defaults(in_tmp: Path) -> None:
    (in_tmp / "os-mlt.json").write_text("\n", encoding="utf-8")
    assert Settings().fusion == "rrf"


def test_no_file_means_defaults(in_tmp: Path) -> None:
    assert Settings().fusion == "rrf"


def test_bad_json_names_the_file_and_line(in_tmp: Path) -> None:
    (in_tmp / "os-mlt.json").write_text(
        '{\n  "fusion": "min_max",\n}\n', encoding="utf-8"
    )
    with pytest.raises(ConfigurationError, match=r"'os-mlt\.json' is not valid JSON"):
        Settings()
    with pytest.raises(ConfigurationError, match="line 3"):
        Settings()


def test_file_must_contain_an_object(in_tmp: Path) -> None:
    write_json(in_tmp / "os-mlt.json", ["rrf"])
    with pytest.raises(ConfigurationError, match="contains a JSON list"):
        Settings()

    write_json(in_tmp / "os-mlt.json", None)
    with pytest.raises(ConfigurationError, match="contains a JSON null"):
        Settings()


def test_unknown_key_names_file_and_key(in_tmp: Path) -> None:
    write_json(in_tmp / "os-mlt.json", {"fusoin": "rrf"})
    with pytest.raises(ConfigurationError) as caught:
        Settings()
    message = str(caught.value)
    assert "'os-mlt.json'" in message
    assert "unknown key 'fusoin'" in message
    assert "fusion" in message  # the valid keys are listed


@pytest.mark.parametrize(
    ("content", "key", "reason"),
    [
        pytest.param({"fusion": "max"}, "fusion", "'rrf', 'min_max'", id="fusion"),
        pytest.param(
            {"rank_constant": 0}, "rank_constant", "greater than or equal to 1", id="rc"
        ),
        pytest.param(
            {"weights": {"knn": -0.5}}, "weights", ">= 0, got -0.5", id="negative"
        ),
        pytest.param(
            {"weights": {"vector": 1.0}}, "weights", "unknown components", id="name"
        ),
        pytest.param(
            {"weights": {"knn": 0, "bm25": 0}}, "weights", "all 0", id="all-zero"
        ),
        pytest.param({"num_candidates": 20000}, "num_candidates", "10000", id="window"),
        pytest.param({"hosts": "localhost:9200"}, "hosts", "http://", id="hosts"),
    ],
)
def test_invalid_value_names_file_and_key(
    in_tmp: Path, content: dict[str, object], key: str, reason: str
) -> None:
    write_json(in_tmp / "os-mlt.json", content)
    with pytest.raises(ConfigurationError) as caught:
        Settings()
    message = str(caught.value)
    assert f"'os-mlt.json' has an invalid {key!r}" in message
    assert reason in message


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(
            {"scan_batch_size": "abc"},
            "has an invalid 'scan_batch_size' value 'abc': Input should be a valid "
            "integer",
            id="integer",
        ),
        pytest.param(
            {"verify_certs": "maybe"},
            "has an invalid 'verify_certs' value 'maybe': Input should be a valid "
            "boolean, unable to interpret input; use true/false, 1/0, yes/no or on/off",
            id="boolean",
        ),
        pytest.param(
            {"weights": {"knn": "heavy"}},
            "has an invalid 'weights.knn' value 'heavy': ",
            id="nested",
        ),
    ],
)
def test_invalid_value_is_quoted(
    in_tmp: Path, content: dict[str, object], expected: str
) -> None:
    write_json(in_tmp / "os-mlt.json", content)
    with pytest.raises(ConfigurationError) as raised:
        Settings()
    assert expected in str(raised.value)


def test_invalid_password_is_not_quoted(in_tmp: Path) -> None:
    write_json(in_tmp / "os-mlt.json", {"username": "admin", "password": 271828})
    with pytest.raises(ConfigurationError) as raised:
        Settings()
    message = str(raised.value)
    assert "has an invalid 'password': " in message
    assert "271828" not in message


def test_cross_field_checks_see_every_source(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The file sets the user and the environment the password, which together are valid.
    write_json(in_tmp / "os-mlt.json", {"username": "admin"})
    monkeypatch.setenv("OS_MLT_PASSWORD", "secret")
    assert Settings().username == "admin"
    monkeypatch.delenv("OS_MLT_PASSWORD")
    with pytest.raises(ValidationError, match="both username and password"):
        Settings()


def test_weights_from_environment_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OS_MLT_WEIGHTS", '{"knn": 0.7, "bm25": 0.3}')
    assert Settings().weights == {"knn": 0.7, "bm25": 0.3}
    monkeypatch.setenv("OS_MLT_WEIGHTS", '{"knn": 0.25}')
    assert Settings().weights == {"knn": 0.25, "bm25": 1.0}
    monkeypatch.setenv("OS_MLT_WEIGHTS", "knn=0.7")
    assert Settings().weights == {"knn": 0.7, "bm25": 1.0}
    monkeypatch.setenv("OS_MLT_WEIGHTS", "knn=0.6, bm25=0.4")
    assert Settings().weights == {"knn": 0.6, "bm25": 0.4}


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        pytest.param({"knn": 1.0, "title": 1.0}, "unknown components", id="name"),
        pytest.param({"bm25": -1.0}, "finite number >= 0", id="negative"),
        pytest.param({"knn": float("inf")}, "finite number >= 0", id="infinite"),
        pytest.param({"knn": 0.0, "bm25": 0.0}, "all 0", id="all-zero"),
    ],
)
def test_invalid_weights_are_rejected(weights: dict[str, float], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(weights=weights)


def test_update_merges_and_keeps_other_keys(in_tmp: Path) -> None:
    path = write_json(
        in_tmp / "os-mlt.json",
        {"index": "products", "text_fields": ["name"], "fusion": "rrf"},
    )
    path.chmod(0o600)

    update_settings_file(
        path,
        {"fusion": "min_max", "weights": {"knn": 0.8, "bm25": 0.2}},
        settings_cls=Settings,
    )

    assert json.loads(path.read_text()) == {
        "index": "products",
        "text_fields": ["name"],
        "fusion": "min_max",
        "weights": {"knn": 0.8, "bm25": 0.2},
    }
    assert path.stat().st_mode & 0o777 == 0o600
    assert [item.name for item in in_tmp.iterdir()] == ["os-mlt.json"]
    settings = Settings(text_fields=["name", "body"])
    assert settings.fusion == "min_max"
    assert settings.weights == {"knn": 0.8, "bm25": 0.2}


def test_update_creates_a_missing_file(in_tmp: Path) -> None:
    update_settings_file(
        Path("os-mlt.json"),
        {"fusion": "l2", "num_candidates": 50},
        settings_cls=Settings,
    )
    assert json.loads((in_tmp / "os-mlt.json").read_text()) == {
        "fusion": "l2",
        "num_candidates": 50,
    }


def test_update_leaves_an_invalid_file_alone(in_tmp: Path) -> None:
    path = in_tmp / "os-mlt.json"
    path.write_text('{"index": "products",', encoding="utf-8")
    with pytest.raises(ConfigurationError, match="not valid JSON"):
        update_settings_file(path, {"fusion": "l2"}, settings_cls=Settings)
    assert path.read_text() == '{"index": "products",'
    assert [item.name for item in in_tmp.iterdir()] == ["os-mlt.json"]


def test_update_rejects_an_invalid_value(in_tmp: Path) -> None:
    path = write_json(in_tmp / "os-mlt.json", {"index": "products"})
    with pytest.raises(ConfigurationError, match="invalid 'rank_constant'"):
        update_settings_file(path, {"rank_constant": -1}, settings_cls=Settings)
    assert json.loads(path.read_text()) == {"index": "products"}


def test_update_replaces_the_file_in_one_rename(in_tmp: Path) -> None:
    path = write_json(in_tmp / "os-mlt.json", {"index": "products"})
    before = os.stat(path).st_ino
    update_settings_file(path, {"fusion": "l2"}, settings_cls=Settings)
    # A new inode shows the file was replaced, not rewritten in place, so a
    # reader never sees it half written.
    assert os.stat(path).st_ino != before
