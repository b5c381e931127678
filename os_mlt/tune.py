"""Grid search of the fusion settings of `hybrid_similar` on judgments.

The grid spans the fusion method, the RRF rank constant, the score fusion
weights and the candidate window (`num_candidates`), and, when the settings
name categorical fields, the weight of the values candidates share with the
query document (`categorical_weight`). Searching once per grid
point would cost hundreds of searches per query, so `tune` runs one
`hybrid_similar` call per query at the largest window, which returns both
components' candidates with their ranks and raw scores. Each grid point then
cuts both component lists to its window and fuses them in the client with
the functions of `os_mlt.query.fusion`, the ones `hybrid_similar` uses.

Queries are split at random, with a seed, into a tune split and a held-out
split. The grid point with the best mean metric on the tune split is chosen.
The held-out split then scores the chosen point next to the current
settings, so every reported number comes from queries that took no part in
the choice.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from opensearchpy import OpenSearch

from .client import resolve_client
from .errors import ConfigurationError
from .evaluation import (
    METRICS,
    Judgment,
    component_rankings,
    mean_scores,
    score_ranking,
    search_candidates,
)
from .query.fusion import DEFAULT_RANK_CONSTANT, reciprocal_rank_fusion, score_fusion
from .query.hybrid import DEFAULT_NUM_CANDIDATES, MAX_NUM_CANDIDATES
from .query.rerank import relevance
from .settings import FUSIONS, Fusion, Settings

logger = logging.getLogger(__name__)

# Around OpenSearch's default of 60. Smaller values give top ranks more weight.
DEFAULT_RANK_CONSTANTS = (10, 20, 40, 60, 100)
# The k-NN weight of score fusion. BM25 weighs 1 minus it.
DEFAULT_KNN_WEIGHTS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
DEFAULT_WINDOWS = (25, 50, 100, 200)
# Tried only when the settings name categorical fields; 0 turns them off.
DEFAULT_CATEGORICAL_WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0)
DEFAULT_HOLDOUT = 0.3
DEFAULT_SEED = 13
DEFAULT_METRIC = "ndcg@10"

# The ids query of the existence check takes this many ids per request.
_IDS_PER_REQUEST = 1000


@dataclass(frozen=True)
class FusionSetting:
    """The fusion options of one `hybrid_similar` configuration.

    Attributes:
        fusion: `rrf`, or the normalization of score fusion.
        num_candidates: Hits each component contributes to the fusion.
        rank_constant: The RRF constant, which score fusion ignores.
        weights: Score fusion weights of `knn` and `bm25`, which RRF ignores.
        categorical_weight: Weight of shared categorical values; None when
            the settings name no categorical field.
    """

    fusion: Fusion
    num_candidates: int
    rank_constant: int = DEFAULT_RANK_CONSTANT
    weights: Mapping[str, float] = field(
        default_factory=lambda: {"knn": 1.0, "bm25": 1.0}
    )
    categorical_weight: float | None = None

    def settings_values(self) -> dict[str, Any]:
        """Return the `Settings` fields this configuration sets.

        RRF sets the rank constant and score fusion the weights. The other
        field keeps its value.
        """
        values: dict[str, Any] = {
            "fusion": self.fusion,
            "num_candidates": self.num_candidates,
        }
        if self.fusion == "rrf":
            values["rank_constant"] = self.rank_constant
        else:
            values["weights"] = dict(self.weights)
        if self.categorical_weight is not None:
            values["categorical_weight"] = self.categorical_weight
        return values

    def describe(self) -> str:
        """Return the options in one line, such as `rrf (rank_constant 60), num_candidates 100`."""
        if self.fusion == "rrf":
            detail = f"rank_constant {self.rank_constant}"
        else:
            detail = ", ".join(
                f"{name} {weight:g}" for name, weight in self.weights.items()
            )
        line = f"{self.fusion} ({detail}), num_candidates {self.num_candidates}"
        if self.categorical_weight is not None:
            line += f", categorical_weight {self.categorical_weight:g}"
        return line


def current_setting(settings: Settings) -> FusionSetting:
    """Return the fusion options `hybrid_similar` takes from `settings` for k=10."""
    window = max(settings.num_candidates or DEFAULT_NUM_CANDIDATES, 10)
    categorical = settings.categorical_weight if settings.categorical_fields else None
    if settings.fusion == "rrf":
        return FusionSetting(
            "rrf",
            window,
            rank_constant=settings.rank_constant,
            categorical_weight=categorical,
        )
    return FusionSetting(
        settings.fusion,
        window,
        weights=dict(settings.weights),
        categorical_weight=categorical,
    )


@dataclass(frozen=True)
class Grid:
    """Values tried for each fusion option. Every combination is one grid point."""

    fusions: Sequence[Fusion] = FUSIONS
    rank_constants: Sequence[int] = DEFAULT_RANK_CONSTANTS
    knn_weights: Sequence[float] = DEFAULT_KNN_WEIGHTS
    windows: Sequence[int] = DEFAULT_WINDOWS
    categorical_weights: Sequence[float | None] = (None,)

    def points(self) -> list[FusionSetting]:
        """Return every point, smaller windows first, so ties go to the cheaper one.

        Raises:
            ConfigurationError: A list is empty or contains a value out of range.
        """
        self._check()
        points: list[FusionSetting] = []
        for categorical in dict.fromkeys(self.categorical_weights):
            points.extend(
                replace(point, categorical_weight=categorical)
                for point in self._fusion_points()
            )
        return points

    def _fusion_points(self) -> list[FusionSetting]:
        points: list[FusionSetting] = []
        for window in sorted(set(self.windows)):
            for fusion in dict.fromkeys(self.fusions):
                if fusion == "rrf":
                    points.extend(
                        FusionSetting("rrf", window, rank_constant=constant)
                        for constant in dict.fromkeys(self.rank_constants)
                    )
                    continue
                for weight in dict.fromkeys(self.knn_weights):
                    weights = {"knn": weight, "bm25": round(1.0 - weight, 10)}
                    points.append(FusionSetting(fusion, window, weights=weights))
        return points

    def _check(self) -> None:
        if not self.fusions or not self.windows:
            raise ConfigurationError(
                "the grid needs at least one fusion method and one num_candidates value"
            )
        unknown = [fusion for fusion in self.fusions if fusion not in FUSIONS]
        if unknown:
            raise ConfigurationError(
                f"unknown fusion methods {unknown}; use {', '.join(FUSIONS)}"
            )
        if "rrf" in self.fusions and not self.rank_constants:
            raise ConfigurationError("the grid needs a rank constant to try rrf")
        if any(constant < 1 for constant in self.rank_constants):
            raise ConfigurationError(
                f"rank constants must be 1 or more, got {list(self.rank_constants)}"
            )
        if set(self.fusions) - {"rrf"} and not self.knn_weights:
            raise ConfigurationError("the grid needs a k-NN weight for score fusion")
        if any(not 0.0 <= weight <= 1.0 for weight in self.knn_weights):
            raise ConfigurationError(
                f"k-NN weights must be from 0 to 1 (BM25 weighs 1 minus the k-NN "
                f"weight), got {list(self.knn_weights)}"
            )
        if not self.categorical_weights or any(
            weight is not None and not (math.isfinite(weight) and weight >= 0)
            for weight in self.categorical_weights
        ):
            raise ConfigurationError(
                "categorical weights must be finite numbers >= 0, got "
                f"{list(self.categorical_weights)}"
            )
        if any(not 1 <= window <= MAX_NUM_CANDIDATES for window in self.windows):
            raise ConfigurationError(
                f"num_candidates values must be from 1 to {MAX_NUM_CANDIDATES}, "
                f"got {list(self.windows)}"
            )


@dataclass(frozen=True)
class QueryCandidates:
    """One query's judgment and both components' candidates, best first.

    `overlap` maps candidates to the mean Jaccard overlap of their
    categorical values with the query document's.
    """

    judgment: Judgment
    knn: list[tuple[str, float]]
    bm25: list[tuple[str, float]]
    overlap: Mapping[str, float] = field(default_factory=dict)


def fused_ranking(candidates: QueryCandidates, setting: FusionSetting) -> list[str]:
    """Rank one query's candidates as `hybrid_similar` would under `setting`.

    Both component lists are cut to `setting.num_candidates` first. For the
    k-NN list that is an approximation: the top hits of an approximate search
    with a large k can differ a little from a search with a small k.
    """
    knn = candidates.knn[: setting.num_candidates]
    bm25 = candidates.bm25[: setting.num_candidates]
    if setting.fusion == "rrf":
        fused = reciprocal_rank_fusion(
            {
                "knn": [doc_id for doc_id, _ in knn],
                "bm25": [doc_id for doc_id, _ in bm25],
            },
            rank_constant=setting.rank_constant,
        )
    else:
        fused = score_fusion(
            {"knn": knn, "bm25": bm25},
            normalization=setting.fusion,
            weights=setting.weights,
        )
    if setting.categorical_weight:
        # The order hybrid_similar gives with a SharedValues boost.
        weight = setting.categorical_weight
        values = relevance([item.score for item in fused])
        order = sorted(
            zip(fused, values, strict=True),
            key=lambda pair: (
                -pair[1] * (1.0 + weight * candidates.overlap.get(pair[0].id, 0.0))
            ),
        )
        return [item.id for item, _ in order]
    return [item.id for item in fused]


def score_setting(
    candidates: Sequence[QueryCandidates], setting: FusionSetting
) -> dict[str, float]:
    """Return the mean nDCG@10, P@10 and R@100 of `setting` over queries."""
    return mean_scores(
        score_ranking(fused_ranking(query, setting), query.judgment)
        for query in candidates
    )


def choose_setting(
    points: Sequence[FusionSetting],
    candidates: Sequence[QueryCandidates],
    metric: str = DEFAULT_METRIC,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> FusionSetting:
    """Return the point with the best mean `metric`, the earlier one on a tie.

    `progress` is called with (points scored, points in all).
    """
    best, best_score = points[0], -math.inf
    for done, point in enumerate(points, start=1):
        score = score_setting(candidates, point)[metric]
        if score > best_score:
            best, best_score = point, score
        if progress is not None:
            progress(done, len(points))
    return best


def split_queries(
    judgments: Sequence[Judgment], *, holdout: float, seed: int
) -> tuple[list[Judgment], list[Judgment]]:
    """Split judgments by query id into a tune split and a held-out split.

    The query ids are sorted and shuffled with `random.Random(seed)`, so the
    split depends only on the set of ids and the seed. Judgments of the same
    query land in the same split.

    Raises:
        ConfigurationError: `holdout` is not between 0 and 1, or leaves a
            split without queries.
    """
    if not 0.0 < holdout < 1.0:
        raise ConfigurationError(
            f"holdout must be a fraction between 0 and 1, got {holdout}"
        )
    queries = sorted({judgment.query for judgment in judgments})
    random.Random(seed).shuffle(queries)
    heldout_count = round(len(queries) * holdout)
    if heldout_count == 0 or heldout_count == len(queries):
        split = "held-out" if heldout_count == 0 else "tune"
        raise ConfigurationError(
            f"holdout {holdout} of {len(queries)} queries leaves the {split} split "
            "empty; give more queries or a holdout fraction nearer 0.5"
        )
    held_out = set(queries[:heldout_count])
    return (
        [judgment for judgment in judgments if judgment.query not in held_out],
        [judgment for judgment in judgments if judgment.query in held_out],
    )


def missing_documents(client: OpenSearch, index: str, ids: Sequence[str]) -> list[str]:
    """Return the ids, sorted, that no document in `index` has as its `_id`."""
    requested = sorted(set(ids))
    found: set[str] = set()
    for start in range(0, len(requested), _IDS_PER_REQUEST):
        batch = requested[start : start + _IDS_PER_REQUEST]
        response = client.search(
            index=index,
            body={"query": {"ids": {"values": batch}}, "_source": False},
            size=len(batch),
        )
        found.update(hit["_id"] for hit in response["hits"]["hits"])
    return [doc_id for doc_id in requested if doc_id not in found]


def fetch_candidates(
    judgments: Sequence[Judgment],
    *,
    settings: Settings,
    client: OpenSearch,
    num_candidates: int,
    progress: Callable[[int, int], None] | None = None,
) -> list[QueryCandidates]:
    """Search each query once, returning `num_candidates` hits per component."""
    fetched = []
    for done, judgment in enumerate(judgments, start=1):
        # With weight 1 each hit's boost is 1 + its categorical overlap.
        result = search_candidates(
            judgment,
            settings=settings,
            client=client,
            num_candidates=num_candidates,
            categorical_weight=1.0,
        )
        components = component_rankings(result)
        overlap = {hit.id: hit.boost - 1.0 for hit in result.hits}
        fetched.append(
            QueryCandidates(judgment, components["knn"], components["bm25"], overlap)
        )
        if progress is not None:
            progress(done, len(judgments))
    return fetched


@dataclass(frozen=True)
class TuneResult:
    """The chosen fusion options and the held-out scores behind the choice.

    Attributes:
        chosen: The grid point with the best mean metric on the tune split.
        baseline: The fusion options of the settings `tune` was given.
        chosen_scores: Mean metrics of `chosen` on the held-out split.
        baseline_scores: Mean metrics of `baseline` on the held-out split.
        metric: The metric that chose, one of `METRICS`.
        tune_queries: Queries in the tune split.
        heldout_queries: Queries in the held-out split.
        skipped_queries: Query ids left out because they are not in the index.
        grid_size: Points tried.
        holdout: Fraction of queries held out.
        seed: Seed of the split.
    """

    chosen: FusionSetting
    baseline: FusionSetting
    chosen_scores: dict[str, float]
    baseline_scores: dict[str, float]
    metric: str
    tune_queries: int
    heldout_queries: int
    skipped_queries: tuple[str, ...]
    grid_size: int
    holdout: float
    seed: int

    def to_dict(self) -> dict[str, Any]:
        """Return the result as JSON-ready values, with held-out scores only."""
        return {
            "metric": self.metric,
            "holdout": self.holdout,
            "seed": self.seed,
            "grid_size": self.grid_size,
            "queries": {
                "tune": self.tune_queries,
                "heldout": self.heldout_queries,
                "skipped": list(self.skipped_queries),
            },
            "chosen": {
                "settings": self.chosen.settings_values(),
                "heldout": self.chosen_scores,
            },
            "baseline": {
                "settings": self.baseline.settings_values(),
                "heldout": self.baseline_scores,
            },
        }


def tune(
    judgments: Sequence[Judgment],
    *,
    settings: Settings,
    client: OpenSearch | None = None,
    grid: Grid | None = None,
    metric: str = DEFAULT_METRIC,
    holdout: float = DEFAULT_HOLDOUT,
    seed: int = DEFAULT_SEED,
    skip_missing: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
) -> TuneResult:
    """Choose the fusion options with the best `metric` on judgments.

    Runs one `hybrid_similar` call per query at the largest window, whatever
    the grid size; each grid point then fuses the fetched lists in the client.

    Args:
        judgments: Graded judgments, from a judgments file or a click log.
        settings: Connection and index settings; their fusion options are
            the baseline.
        client: An existing client to use instead of one built from `settings`.
        grid: Values to try; None tries `Grid()`.
        metric: One of `METRICS` to maximize on the tune split.
        holdout: Fraction of queries held out to score the choice.
        seed: Seed of the split into tune and held-out queries.
        skip_missing: Leave out queries whose document is not in the index
            instead of raising.
        progress: Called with ("search", queries searched, queries in all)
            while searching, then with ("score", points scored, points in all).

    Raises:
        ConfigurationError: No judgments, an unknown metric, an invalid grid or
            holdout, or query documents missing from the index.
    """
    if not judgments:
        raise ConfigurationError("no judgments given; there is nothing to tune on")
    if metric not in METRICS:
        raise ConfigurationError(
            f"metric {metric!r} is not one of {', '.join(METRICS)}"
        )
    if grid is None:
        grid = Grid()
    if settings.categorical_fields and grid.categorical_weights == (None,):
        grid = replace(grid, categorical_weights=DEFAULT_CATEGORICAL_WEIGHTS)
    points = grid.points()
    baseline = current_setting(settings)
    index = settings.require_index()
    client = resolve_client(client, settings)

    missing = missing_documents(client, index, [j.query for j in judgments])
    if missing and not skip_missing:
        listed = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise ConfigurationError(
            f"{len(missing)} of {len({j.query for j in judgments})} query documents "
            f"are not in {index!r}: "
            f"{listed}; check the index, or leave them out with --skip-missing "
            "(Python: skip_missing=True)"
        )
    if missing:
        logger.warning(
            "Leaving out %d queries whose document is not in %s", len(missing), index
        )
        left_out = set(missing)
        judgments = [j for j in judgments if j.query not in left_out]
        if not judgments:
            raise ConfigurationError(
                f"no query document of the judgments is in {index!r}; check the index"
            )
    tune_split, heldout_split = split_queries(judgments, holdout=holdout, seed=seed)

    window = max(max(point.num_candidates for point in points), baseline.num_candidates)
    logger.info(
        "Searching %d queries in %s with num_candidates=%d",
        len(judgments),
        index,
        window,
    )
    fetched = fetch_candidates(
        [*tune_split, *heldout_split],
        settings=settings,
        client=client,
        num_candidates=window,
        progress=_stage(progress, "search"),
    )
    tune_candidates = fetched[: len(tune_split)]
    heldout_candidates = fetched[len(tune_split) :]

    chosen = choose_setting(
        points, tune_candidates, metric, progress=_stage(progress, "score")
    )
    logger.info("Chose %s out of %d settings", chosen.describe(), len(points))
    return TuneResult(
        chosen=chosen,
        baseline=baseline,
        chosen_scores=score_setting(heldout_candidates, chosen),
        baseline_scores=score_setting(heldout_candidates, baseline),
        metric=metric,
        tune_queries=len({j.query for j in tune_split}),
        heldout_queries=len({j.query for j in heldout_split}),
        skipped_queries=tuple(missing),
        grid_size=len(points),
        holdout=holdout,
        seed=seed,
    )


def _stage(
    progress: Callable[[str, int, int], None] | None, stage: str
) -> Callable[[int, int], None] | None:
    if progress is None:
        return None
    return lambda done, total: progress(stage, done, total)
