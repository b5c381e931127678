"""Judgments derived from a hand-written click log, with gains worked out by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from os_mlt import ConfigurationError
from os_mlt.clicks import click_judgments, read_click_judgments, read_click_log
from os_mlt.evaluation import dcg

LOG = [
    {"query": "a", "shown": ["x", "y", "z"], "clicked": ["x"]},
    {"query": "a", "shown": ["y", "x", "z"], "clicked": ["z", "x"], "user": "u1"},
    {"query": "b", "shown": ["x", "w"], "clicked": []},
    {"query": "c", "shown": ["u", "v"], "clicked": ["v"], "offset": 10},
    {"query": "d", "shown": ["d", "e"], "clicked": ["d"]},
]


def write_log(path: Path, lines: list[object]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_gains_with_position_bias_and_smoothing(tmp_path: Path) -> None:
    judgments = {
        j.query: j for j in read_click_judgments(write_log(tmp_path / "c.jsonl", LOG))
    }

    # b has no click, and d only a click on itself, so neither is judged.
    assert list(judgments) == ["a", "c"]
    a = judgments["a"]
    # x: 2 clicks; looked at with probability 1/1 + 1/2, plus 1 smoothing look.
    # z: 1 click; looked at with 1/3 + 1/3, plus 1. y: never clicked.
    assert a.gains == {"x": pytest.approx(2 / 2.5), "z": pytest.approx(1 / (5 / 3))}
    assert a.ideal_dcg == pytest.approx(0.8 + 0.6 / math.log2(3))
    assert a.relevant == 2
    assert a.exclude == ("a",)
    # v was at position 12 on the second page: 1 / (1/12 + 1).
    assert judgments["c"].gains == {"v": pytest.approx(12 / 13)}
    assert judgments["c"].relevant == 1


def test_unweighted_gain_is_click_rate(
    tmp_path: Path,
) -> None:
    impressions = read_click_log(write_log(tmp_path / "c.jsonl", LOG[:2]))
    (a,) = click_judgments(impressions, position_bias=0.0, smoothing=0.0)
    assert a.gains == {"x": 1.0, "z": 0.5}
    assert a.ideal_dcg == pytest.approx(dcg([1.0, 0.5]))


def test_gain_is_capped_at_one(tmp_path: Path) -> None:
    path = write_log(tmp_path / "c.jsonl", [LOG[3]])
    (c,) = read_click_judgments(path, smoothing=0.0)
    # 1 click over 1/12 of a look would be 12.
    assert c.gains == {"v": 1.0}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        pytest.param(
            {"shown": ["x"], "clicked": []}, "query must be a non-empty", id="no-query"
        ),
        pytest.param(
            {"query": "a", "shown": [], "clicked": []}, "shown must be", id="empty"
        ),
        pytest.param(
            {"query": "a", "shown": "x,y", "clicked": []}, "shown must be", id="str"
        ),
        pytest.param(
            {"query": "a", "shown": ["x", "x"], "clicked": []},
            r"shown lists \['x'\] more than once",
            id="repeat",
        ),
        pytest.param(
            {"query": "a", "shown": ["x"], "clicked": ["y"]},
            r"clicked ids \['y'\] are not in shown",
            id="not-shown",
        ),
        pytest.param(
            {"query": "a", "shown": ["x"], "clicked": "x"},
            "clicked must be a list",
            id="clicked-str",
        ),
        pytest.param(
            {"query": "a", "shown": ["x"], "clicked": [], "offset": -1},
            "offset must be an integer of 0 or more",
            id="offset",
        ),
        pytest.param(
            {"query": "a", "shown": ["x"], "clicked": [], "offset": True},
            "offset must be an integer",
            id="offset-bool",
        ),
    ],
)
def test_invalid_line_names_the_line(
    tmp_path: Path, line: dict[str, object], message: str
) -> None:
    path = write_log(tmp_path / "clicks.jsonl", [LOG[0], line])
    with pytest.raises(ConfigurationError, match="line 2 of click log clicks.jsonl"):
        read_click_log(path)
    with pytest.raises(ConfigurationError, match=message):
        read_click_log(path)


def test_empty_log_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "clicks.jsonl"
    path.write_text("\n")
    with pytest.raises(ConfigurationError, match="contains no result lists"):
        read_click_log(path)


def test_log_without_clicks_is_an_error(tmp_path: Path) -> None:
    path = write_log(tmp_path / "clicks.jsonl", [LOG[2]])
    with pytest.raises(
        ConfigurationError, match="no query in the click log has a click"
    ):
        read_click_judgments(path)


@pytest.mark.parametrize(
    ("position_bias", "smoothing"),
    [
        pytest.param(-1.0, 1.0, id="position-bias"),
        pytest.param(1.0, -0.5, id="smoothing"),
        pytest.param(1.0, float("nan"), id="nan"),
    ],
)
def test_negative_options_are_rejected(
    tmp_path: Path, position_bias: float, smoothing: float
) -> None:
    impressions = read_click_log(write_log(tmp_path / "c.jsonl", LOG[:1]))
    with pytest.raises(ConfigurationError, match="finite number >= 0"):
        click_judgments(impressions, position_bias=position_bias, smoothing=smoothing)
