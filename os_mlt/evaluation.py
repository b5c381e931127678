"""Evaluation of "more like this" rankings against graded judgments.

A judgments file has one JSON object per line:

    {"query": "samtools", "gains": {"bcftools": 0.8, ...}, "ideal_dcg": 7.1,
     "relevant": 42, "exclude": ["samtools", "samtools-test"]}

`gains` maps documents to graded relevance in [0, 1]; documents not listed
count as 0. `ideal_dcg` is the DCG@10 of the best ranking the whole corpus
allows. `relevant` counts the corpus documents with a gain of at least
`RELEVANT_GAIN`, the denominator of recall. `exclude` lists documents that no
ranking may return (the query itself and, for example, its siblings).
"""

from __future__ import annotations

import json
import math
import random
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .corpus import read_jsonl
from .errors import ConfigurationError

# A document counts as relevant for P@10 and R@100 when its gain reaches
# this; nDCG uses the graded gains themselves.
RELEVANT_GAIN = 0.5

# Gains below this are not written to a judgments file, which keeps it small;
# nDCG then counts them as 0, for every system alike.
MIN_STORED_GAIN = 0.2

METRICS = ("ndcg@10", "p@10", "r@100")


@dataclass(frozen=True)
class Judgment:
    """Graded relevance for one query document."""

    query: str
    gains: dict[str, float]
    ideal_dcg: float
    relevant: int
    exclude: tuple[str, ...]


def dcg(gains: Sequence[float]) -> float:
    """Return the discounted cumulative gain: sum of gain / log2(rank + 1)."""
    return sum(gain / math.log2(rank + 1) for rank, gain in enumerate(gains, start=1))


def score_ranking(ranking: Sequence[str], judgment: Judgment) -> dict[str, float]:
    """Return nDCG@10, P@10 and R@100 of one ranking; excluded ids are dropped first."""
    excluded = set(judgment.exclude)
    ranked = [doc_id for doc_id in ranking if doc_id not in excluded]
    top10 = [judgment.gains.get(doc_id, 0.0) for doc_id in ranked[:10]]
    top100 = [judgment.gains.get(doc_id, 0.0) for doc_id in ranked[:100]]
    ndcg = dcg(top10) / judgment.ideal_dcg if judgment.ideal_dcg > 0 else 0.0
    precision = sum(gain >= RELEVANT_GAIN for gain in top10) / 10
    recall = (
        sum(gain >= RELEVANT_GAIN for gain in top100) / judgment.relevant
        if judgment.relevant
        else 0.0
    )
    return {"ndcg@10": ndcg, "p@10": precision, "r@100": recall}


def mean_scores(per_query: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Average each metric over queries."""
    rows = list(per_query)
    if not rows:
        return {metric: 0.0 for metric in METRICS}
    return {metric: statistics.fmean(row[metric] for row in rows) for metric in METRICS}


def write_judgments(path: Path, judgments: Sequence[Judgment]) -> None:
    """Write judgments as JSON lines."""
    with path.open("w", encoding="utf-8") as handle:
        for judgment in judgments:
            handle.write(json.dumps(asdict(judgment)) + "\n")


def read_judgments(path: Path) -> list[Judgment]:
    """Read a judgments file.

    Raises:
        ConfigurationError: A line lacks a field or has one of the wrong type.
    """
    judgments = []
    for number, record in enumerate(read_jsonl(path), start=1):
        try:
            judgments.append(
                Judgment(
                    query=str(record["query"]),
                    gains={
                        str(key): float(value) for key, value in record["gains"].items()
                    },
                    ideal_dcg=float(record["ideal_dcg"]),
                    relevant=int(record.get("relevant", 0)),
                    exclude=tuple(str(item) for item in record.get("exclude", [])),
                )
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise ConfigurationError(
                f"judgment {number} in {path.name} is invalid ({type(error).__name__}: {error}); "
                "each line needs query, gains (an object of id: gain) and ideal_dcg"
            ) from error
    if not judgments:
        raise ConfigurationError(
            f"{path.name} contains no judgments; write one with os-mlt judgments"
        )
    return judgments


def build_tag_judgments(
    records: Sequence[Mapping[str, Any]],
    *,
    queries: int = 500,
    seed: int = 13,
    min_tags: int = 3,
    tag_field: str = "tags",
    group_field: str | None = "source",
) -> list[Judgment]:
    """Judge similarity by the Jaccard overlap of a tag field, such as Debian's debtags.

    Query documents are `random.Random(seed).sample` of the sorted ids of the
    documents with at least `min_tags` tags. Each query excludes itself and the
    documents with the same `group_field` value (for Debian, packages built from
    the same source package). The ideal DCG is taken over the whole corpus.
    """
    ids = [str(record["id"]) for record in records]
    tag_sets = [frozenset(record.get(tag_field) or ()) for record in records]
    vocabulary = {
        tag: column for column, tag in enumerate(sorted(set().union(*tag_sets)))
    }
    matrix = np.zeros((len(records), max(1, len(vocabulary))), dtype=np.float32)
    for row, tags in enumerate(tag_sets):
        for tag in tags:
            matrix[row, vocabulary[tag]] = 1.0
    sizes = matrix.sum(axis=1)

    candidates = sorted(
        doc_id for doc_id, tags in zip(ids, tag_sets) if len(tags) >= min_tags
    )
    if len(candidates) < queries:
        raise ConfigurationError(
            f"only {len(candidates)} documents have {min_tags}+ values in {tag_field!r}, "
            f"fewer than the {queries} queries requested; ask for fewer with --queries "
            "(Python: queries=...) or lower --min-tags"
        )
    chosen = random.Random(seed).sample(candidates, queries)
    row_of = {doc_id: row for row, doc_id in enumerate(ids)}
    groups: dict[str, list[int]] = {}
    if group_field is not None:
        for row, record in enumerate(records):
            groups.setdefault(str(record.get(group_field)), []).append(row)

    judgments = []
    for query in chosen:
        row = row_of[query]
        shared = matrix @ matrix[row]
        union = sizes + sizes[row] - shared
        gains = np.divide(shared, union, out=np.zeros_like(shared), where=union > 0)
        excluded_rows = {row}
        if group_field is not None:
            excluded_rows.update(groups[str(records[row].get(group_field))])
        gains[list(excluded_rows)] = 0.0
        ideal = np.sort(gains)[::-1][:10]
        stored = np.nonzero(gains >= MIN_STORED_GAIN)[0]
        judgments.append(
            Judgment(
                query=query,
                gains={ids[index]: round(float(gains[index]), 4) for index in stored},
                ideal_dcg=dcg([float(value) for value in ideal]),
                relevant=int((gains >= RELEVANT_GAIN).sum()),
                exclude=tuple(sorted(ids[index] for index in excluded_rows)),
            )
        )
    return judgments


def build_jsonl_judgments(path: Path, **options: Any) -> list[Judgment]:
    """Read a corpus file and build tag judgments for it; see `build_tag_judgments`."""
    return build_tag_judgments(list(read_jsonl(path)), **options)


SYSTEMS = ("bm25", "knn", "hybrid-rrf", "hybrid-min_max", "hybrid-z_score", "hybrid-l2")


def component_rankings(result: Any) -> dict[str, list[tuple[str, float]]]:
    """Return each component's candidates as (id, raw score) pairs, best first.

    `result` is a `SimilarResult` whose hits hold every candidate of both
    components, as `search_candidates` returns.
    """
    knn = sorted(
        (hit for hit in result.hits if hit.knn_rank), key=lambda hit: hit.knn_rank
    )
    bm25 = sorted(
        (hit for hit in result.hits if hit.bm25_rank), key=lambda hit: hit.bm25_rank
    )
    return {
        "knn": [(hit.id, float(hit.knn_score)) for hit in knn],
        "bm25": [(hit.id, float(hit.bm25_score)) for hit in bm25],
    }


def rankings_for(
    result: Any, *, rank_constant: int = 60, weights: Mapping[str, float] | None = None
) -> dict[str, list[str]]:
    """Rank one query's candidates by each system in `SYSTEMS`.

    `result` is a `SimilarResult` whose hits hold every candidate of both
    components (k of at least twice `num_candidates`), so each system ranks
    the same candidate pool. When the hits carry boosts (categorical fields),
    the hybrid systems order by relevance times boost, as `hybrid_similar` does.
    """
    from .query.fusion import reciprocal_rank_fusion, score_fusion
    from .query.rerank import relevance

    boost = {hit.id: hit.boost for hit in result.hits}

    def boosted(items: Sequence[Any]) -> list[str]:
        values = relevance([item.score for item in items])
        order = sorted(
            zip(items, values, strict=True),
            key=lambda pair: -pair[1] * boost[pair[0].id],
        )
        return [item.id for item, _ in order]

    scored = component_rankings(result)
    ids = {name: [doc_id for doc_id, _ in hits] for name, hits in scored.items()}
    rankings = {
        "bm25": ids["bm25"],
        "knn": ids["knn"],
        "hybrid-rrf": boosted(reciprocal_rank_fusion(ids, rank_constant=rank_constant)),
    }
    for method in ("min_max", "z_score", "l2"):
        fused = score_fusion(scored, normalization=method, weights=weights)
        rankings[f"hybrid-{method}"] = boosted(fused)
    return rankings


def search_candidates(
    judgment: Judgment,
    *,
    settings: Any,
    client: Any,
    num_candidates: int,
    categorical_fields: Sequence[str] | None = None,
    categorical_weight: float | None = None,
) -> Any:
    """Return a `SimilarResult` with every candidate of both components for a query.

    One `hybrid_similar` call returns `k = 2 * num_candidates` hits, so no
    candidate is cut off. Its filters leave out the judgment's excluded
    documents, so they neither appear nor take a place. No `_source` is read.
    """
    from .query import Not, Terms, hybrid_similar

    others = tuple(doc_id for doc_id in judgment.exclude if doc_id != judgment.query)
    filters = [Not(Terms("_id", others))] if others else []
    return hybrid_similar(
        judgment.query,
        k=2 * num_candidates,
        num_candidates=num_candidates,
        filters=filters,
        settings=settings,
        client=client,
        source_fields=[],
        categorical_fields=categorical_fields,
        categorical_weight=categorical_weight,
        # Each system reranks the candidates by their component ranks and
        # scores, which only client-side fusion returns.
        execution="client",
    )


def evaluate(
    judgments: Sequence[Judgment],
    *,
    settings: Any,
    client: Any,
    num_candidates: int = 100,
    rank_constant: int = 60,
    weights: Mapping[str, float] | None = None,
    categorical_fields: Sequence[str] | None = None,
    categorical_weight: float | None = None,
) -> dict[str, dict[str, float]]:
    """Score every system in `SYSTEMS` on the judgments; return mean metrics per system.

    Each query runs one `hybrid_similar` call (see `search_candidates`).
    """
    per_system: dict[str, list[dict[str, float]]] = {system: [] for system in SYSTEMS}
    for judgment in judgments:
        result = search_candidates(
            judgment,
            settings=settings,
            client=client,
            num_candidates=num_candidates,
            categorical_fields=categorical_fields,
            categorical_weight=categorical_weight,
        )
        for system, ranking in rankings_for(
            result, rank_constant=rank_constant, weights=weights
        ).items():
            per_system[system].append(score_ranking(ranking, judgment))
    return {system: mean_scores(rows) for system, rows in per_system.items()}
