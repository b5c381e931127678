"""Judgments derived from recorded clicks on "more like this" results.

A click log is a JSON-lines file with one object per result list shown to a
user:

    {"query": "samtools", "shown": ["bcftools", "bwa", "picard-tools"], "clicked": ["bwa"]}
    {"query": "samtools", "shown": ["hisat2", "bowtie2"], "clicked": [], "offset": 10}

- `query`: id of the document whose similar documents were shown.
- `shown`: the ids in the order shown, top first, each once.
- `clicked`: the shown ids the user clicked, in any order. A list without
  clicks counts too, because it records which documents the user passed over.
- `offset` (optional, default 0): hits shown on earlier pages, so that
  `shown[0]` was at position `offset + 1`.

Other keys, such as a timestamp or a session id, are ignored.

Gains follow the position-based click model: a user looks at position `r`
with probability `(1 / r) ** position_bias`, and clicks a document they looked
at with a probability equal to its relevance. For each query and document,
with `c` clicks and `e` the sum of those look probabilities over the lists
that showed it:

    gain = min(1, c / (e + smoothing))

Dividing by `e` in place of the number of lists credits a click at position
8 more than one at position 1, which users see first anyway. `smoothing`
adds looks without a click, so a document clicked once in one list does not
get full gain: with the defaults, one click at position 1 gives 0.5, the
threshold of `RELEVANT_GAIN`. `position_bias=0` gives the plain smoothed
click-through rate.

Documents never clicked get no gain, and queries without any click are left
out, because every ranking would score 0 on them. The query document itself
gets no gain either, because `hybrid_similar` never returns it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .corpus import read_jsonl
from .errors import ConfigurationError
from .evaluation import RELEVANT_GAIN, Judgment, dcg

DEFAULT_POSITION_BIAS = 1.0
DEFAULT_SMOOTHING = 1.0


@dataclass(frozen=True)
class Impression:
    """One result list shown for a query document, and what the user clicked."""

    query: str
    shown: tuple[str, ...]
    clicked: frozenset[str]
    offset: int = 0


def read_click_log(path: Path) -> list[Impression]:
    """Read a click log (the format is in the module docstring).

    Raises:
        ConfigurationError: The file is missing or empty, or a line is invalid.
            The message names the line and the fix.
    """
    impressions = [
        _parse_impression(record, number, path)
        for number, record in enumerate(read_jsonl(path), start=1)
    ]
    if not impressions:
        raise ConfigurationError(
            f"click log {path.name} contains no result lists; write one JSON "
            'object per line, such as {"query": "a", "shown": ["b", "c"], "clicked": ["c"]}'
        )
    return impressions


def _parse_impression(record: dict[str, Any], number: int, path: Path) -> Impression:
    where = f"line {number} of click log {path.name}"
    query = record.get("query")
    if not isinstance(query, str) or not query:
        raise ConfigurationError(f"{where}: query must be a non-empty string id")
    shown = record.get("shown")
    if not _is_id_list(shown) or not shown:
        raise ConfigurationError(
            f"{where}: shown must be a non-empty list of string ids"
        )
    if len(set(shown)) != len(shown):
        repeated = sorted({doc_id for doc_id in shown if shown.count(doc_id) > 1})
        raise ConfigurationError(f"{where}: shown lists {repeated} more than once")
    clicked = record.get("clicked", [])
    if not _is_id_list(clicked):
        raise ConfigurationError(f"{where}: clicked must be a list of string ids")
    not_shown = sorted(set(clicked) - set(shown))
    if not_shown:
        raise ConfigurationError(
            f"{where}: clicked ids {not_shown} are not in shown; "
            "log every clicked id among the ids shown"
        )
    offset = record.get("offset", 0)
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise ConfigurationError(
            f"{where}: offset must be an integer of 0 or more, got {offset!r}"
        )
    return Impression(query, tuple(shown), frozenset(clicked), offset)


def _is_id_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def click_judgments(
    impressions: Iterable[Impression],
    *,
    position_bias: float = DEFAULT_POSITION_BIAS,
    smoothing: float = DEFAULT_SMOOTHING,
) -> list[Judgment]:
    """Derive graded judgments from impressions, one per query with a click.

    Judgments come in the order in which their queries first appear.

    Raises:
        ConfigurationError: `position_bias` or `smoothing` is negative, or no
            query has a click.
    """
    if not position_bias >= 0 or not math.isfinite(position_bias):
        raise ConfigurationError(
            f"position_bias must be a finite number >= 0, got {position_bias}"
        )
    if not smoothing >= 0 or not math.isfinite(smoothing):
        raise ConfigurationError(
            f"smoothing must be a finite number >= 0, got {smoothing}"
        )
    clicks: dict[str, dict[str, int]] = {}
    looks: dict[str, dict[str, float]] = {}
    for impression in impressions:
        query_clicks = clicks.setdefault(impression.query, {})
        query_looks = looks.setdefault(impression.query, {})
        for position, doc_id in enumerate(
            impression.shown, start=impression.offset + 1
        ):
            query_looks[doc_id] = (
                query_looks.get(doc_id, 0.0) + position**-position_bias
            )
            if doc_id in impression.clicked:
                query_clicks[doc_id] = query_clicks.get(doc_id, 0) + 1

    judgments = []
    for query, counts in clicks.items():
        gains = {
            doc_id: min(1.0, count / (looks[query][doc_id] + smoothing))
            for doc_id, count in counts.items()
            if doc_id != query and count > 0
        }
        if gains:
            judgments.append(_judgment(query, gains))
    if not judgments:
        raise ConfigurationError(
            "no query in the click log has a click on another document, so "
            "there is nothing to tune on; log the clicked ids in clicked"
        )
    return judgments


def _judgment(query: str, gains: dict[str, float]) -> Judgment:
    rounded = {doc_id: round(gain, 6) for doc_id, gain in gains.items()}
    best: Sequence[float] = sorted(rounded.values(), reverse=True)[:10]
    return Judgment(
        query=query,
        gains=rounded,
        ideal_dcg=dcg(best),
        relevant=sum(gain >= RELEVANT_GAIN for gain in rounded.values()),
        exclude=(query,),
    )


def read_click_judgments(
    path: Path,
    *,
    position_bias: float = DEFAULT_POSITION_BIAS,
    smoothing: float = DEFAULT_SMOOTHING,
) -> list[Judgment]:
    """Read a click log and derive its judgments; see `click_judgments`."""
    return click_judgments(
        read_click_log(path), position_bias=position_bias, smoothing=smoothing
    )
