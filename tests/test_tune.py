"""Tuned fusion settings on real Debian packages: the settings file, `tune`, the CLI."""

from __future__ import annotations

import json
import statistics
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opensearchpy import OpenSearch

from os_mlt import ConfigurationError, Encoder, Settings, backfill, hybrid_similar
from os_mlt.cli import main
from os_mlt.corpus import load_corpus, sample_jsonl
from os_mlt.evaluation import (
    METRICS,
    RELEVANT_GAIN,
    Judgment,
    build_tag_judgments,
    score_ranking,
    search_candidates,
    write_judgments,
)
from os_mlt.query import similar_to_text
from os_mlt.tune import (
    FusionSetting,
    Grid,
    fetch_candidates,
    fused_ranking,
    split_queries,
    tune,
)

from .conftest import DEBIAN_CORPUS

SAMPLE_SIZE = 600
QUERIES = 60


@dataclass(frozen=True)
class TuneSample:
    url: str
    alias: str
    judgments: list[Judgment]

    def settings(self, **overrides: Any) -> Settings:
        return Settings(hosts=[self.url], index=self.alias, **overrides)


@pytest.fixture(scope="module")
def debian(
    client: OpenSearch, encoder: Encoder, opensearch_url: str
) -> Iterator[TuneSample]:
    """A seeded sample of Debian packages, loaded, backfilled and judged by tags."""
    if not DEBIAN_CORPUS.is_file():
        pytest.fail(
            f"corpus {DEBIAN_CORPUS.name} not found next to the repository, in shared/corpora"
        )
    records = sample_jsonl(DEBIAN_CORPUS, limit=SAMPLE_SIZE, seed=7)
    alias = f"os-mlt-test-{uuid.uuid4().hex[:12]}"
    load_corpus(client, records, alias=alias, text_fields=["title", "body"])
    settings = Settings(hosts=[opensearch_url], index=alias)
    report = backfill(settings, client=client, encoder=encoder, migrate=True)
    assert report.failed == 0
    judgments = build_tag_judgments(records, queries=QUERIES, seed=13)
    yield TuneSample(opensearch_url, alias, judgments)
    client.indices.delete(index=f"{alias}*", ignore_unavailable=True)


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Change into an empty folder, where `Settings` looks for os-mlt.json."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_settings_file(folder: Path, values: dict[str, Any]) -> Path:
    path = folder / "os-mlt.json"
    path.write_text(json.dumps(values), encoding="utf-8")
    return path


def score_fused(hit: Any) -> bool:
    """Return whether score fusion ranked `hit`: it then has a normalized score."""
    if isinstance(hit, dict):
        return hit["knn_normalized"] is not None or hit["bm25_normalized"] is not None
    return hit.knn_normalized is not None or hit.bm25_normalized is not None


def knn_k(result: Any) -> int:
    """Return the k of the k-NN search that produced `result`."""
    body = next(request.body for request in result.requests if "k-NN" in request.label)
    (field,) = body["query"]["knn"].values()
    return int(field["k"])


class CountingClient:
    """The real client, counting the `_msearch` requests that queries send."""

    def __init__(self, client: OpenSearch) -> None:
        self._client = client
        self.msearch_requests = 0

    def msearch(self, **options: Any) -> Any:
        self.msearch_requests += 1
        return self._client.msearch(**options)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


# Splits and the grid, without a node.


def judgment(query: str) -> Judgment:
    return Judgment(query, {"x": 1.0}, 1.0, 1, (query,))


def test_split_is_seeded_disjoint_and_sized() -> None:
    judgments = [judgment(f"q{number}") for number in range(20)]

    tune_split, held_out = split_queries(judgments, holdout=0.3, seed=5)
    again = split_queries(list(reversed(judgments)), holdout=0.3, seed=5)
    other = split_queries(judgments, holdout=0.3, seed=6)

    assert len(held_out) == 6
    assert len(tune_split) == 14
    assert {j.query for j in tune_split}.isdisjoint({j.query for j in held_out})
    assert {j.query for j in again[1]} == {j.query for j in held_out}
    assert {j.query for j in other[1]} != {j.query for j in held_out}


@pytest.mark.parametrize(
    ("queries", "holdout", "message"),
    [
        pytest.param(2, 0.2, "leaves the held-out split empty", id="no-heldout"),
        pytest.param(2, 0.8, "leaves the tune split empty", id="no-tune"),
        pytest.param(10, 0.0, "between 0 and 1", id="zero"),
        pytest.param(10, 1.0, "between 0 and 1", id="one"),
    ],
)
def test_split_with_an_empty_side_is_an_error(
    queries: int, holdout: float, message: str
) -> None:
    judgments = [judgment(f"q{number}") for number in range(queries)]
    with pytest.raises(ConfigurationError, match=message):
        split_queries(judgments, holdout=holdout, seed=13)


def test_grid_points_put_small_windows_first() -> None:
    grid = Grid(
        fusions=("rrf", "min_max"),
        rank_constants=(20, 60),
        knn_weights=(0.25,),
        windows=(50, 25),
    )
    assert grid.points() == [
        FusionSetting("rrf", 25, rank_constant=20),
        FusionSetting("rrf", 25, rank_constant=60),
        FusionSetting("min_max", 25, weights={"knn": 0.25, "bm25": 0.75}),
        FusionSetting("rrf", 50, rank_constant=20),
        FusionSetting("rrf", 50, rank_constant=60),
        FusionSetting("min_max", 50, weights={"knn": 0.25, "bm25": 0.75}),
    ]
    assert len(Grid().points()) == 4 * (5 + 3 * 9)


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        pytest.param(Grid(fusions=("rrf", "mean")), "unknown fusion", id="fusion"),
        pytest.param(Grid(rank_constants=(0, 60)), "1 or more", id="rank-constant"),
        pytest.param(Grid(knn_weights=(1.5,)), "from 0 to 1", id="weight"),
        pytest.param(Grid(windows=(0,)), "from 1 to 10000", id="window"),
        pytest.param(Grid(windows=()), "at least one", id="no-window"),
    ],
)
def test_invalid_grid_is_rejected(grid: Grid, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        grid.points()


def test_settings_values_hold_only_what_the_method_uses() -> None:
    rrf = FusionSetting("rrf", 50, rank_constant=20)
    assert rrf.settings_values() == {
        "fusion": "rrf",
        "num_candidates": 50,
        "rank_constant": 20,
    }
    scored = FusionSetting("l2", 100, weights={"knn": 0.6, "bm25": 0.4})
    assert scored.settings_values() == {
        "fusion": "l2",
        "num_candidates": 100,
        "weights": {"knn": 0.6, "bm25": 0.4},
    }


# hybrid_similar and the similar command with settings from the file.


@pytest.mark.integration
def test_hybrid_similar_takes_fusion_from_file(
    debian: TuneSample, client: OpenSearch, in_tmp: Path
) -> None:
    query = debian.judgments[0].query
    write_settings_file(in_tmp, {"fusion": "min_max", "num_candidates": 40})

    result = hybrid_similar(query, k=10, settings=debian.settings(), client=client)

    assert knn_k(result) == 40
    for hit in result.hits:
        assert score_fused(hit)
        assert 0.0 <= hit.score <= 1.0

    write_settings_file(in_tmp, {"fusion": "rrf", "rank_constant": 5})
    result = hybrid_similar(query, k=10, settings=debian.settings(), client=client)

    assert knn_k(result) == 100
    for hit in result.hits:
        assert not score_fused(hit)
        expected = sum(1 / (5 + rank) for rank in (hit.knn_rank, hit.bm25_rank) if rank)
        assert hit.score == pytest.approx(expected)


@pytest.mark.integration
def test_arguments_override_the_file(
    debian: TuneSample, client: OpenSearch, in_tmp: Path
) -> None:
    query = debian.judgments[0].query
    write_settings_file(in_tmp, {"fusion": "min_max", "num_candidates": 40})

    result = hybrid_similar(
        query,
        k=10,
        settings=debian.settings(),
        client=client,
        fusion="rrf",
        num_candidates=30,
    )

    assert knn_k(result) == 30
    assert not any(score_fused(hit) for hit in result.hits)
    # A k above the file's num_candidates raises the window to k.
    wide = hybrid_similar(query, k=60, settings=debian.settings(), client=client)
    assert knn_k(wide) == 60


@pytest.mark.integration
def test_similar_to_text_takes_fusion_from_file(
    debian: TuneSample, client: OpenSearch, encoder: Encoder, in_tmp: Path
) -> None:
    write_settings_file(in_tmp, {"fusion": "z_score", "num_candidates": 20})
    result = similar_to_text(
        "DNA sequence alignment",
        k=5,
        settings=debian.settings(),
        client=client,
        encoder=encoder,
    )
    assert knn_k(result) == 20
    assert all(score_fused(hit) for hit in result.hits)


@pytest.mark.integration
def test_similar_command_defaults_to_the_file(
    debian: TuneSample, in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    query = debian.judgments[0].query
    write_settings_file(
        in_tmp,
        {"hosts": [debian.url], "index": debian.alias, "fusion": "l2"},
    )

    assert main(["similar", query, "-k", "5", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 5
    assert all(score_fused(hit) for hit in hits)

    assert main(["similar", query, "-k", "5", "--json", "--fusion", "rrf"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert not any(score_fused(hit) for hit in hits)


# tune


@pytest.mark.integration
def test_fused_ranking_matches_hybrid_similar(
    debian: TuneSample, client: OpenSearch
) -> None:
    settings = debian.settings()
    judgments = debian.judgments[:3]
    fetched = fetch_candidates(
        judgments, settings=settings, client=client, num_candidates=50
    )
    for setting in (
        FusionSetting("rrf", 50, rank_constant=15),
        FusionSetting("z_score", 50, weights={"knn": 0.7, "bm25": 0.3}),
    ):
        for candidates in fetched:
            result = search_candidates(
                candidates.judgment,
                settings=debian.settings(**setting.settings_values()),
                client=client,
                num_candidates=50,
            )
            assert fused_ranking(candidates, setting) == [hit.id for hit in result.hits]


def test_categorical_weight_ranks_as_hybrid_similar(
    debian: TuneSample, client: OpenSearch
) -> None:
    settings = debian.settings(categorical_fields=["section"])
    judgments = debian.judgments[:3]
    fetched = fetch_candidates(
        judgments, settings=settings, client=client, num_candidates=50
    )
    assert any(candidates.overlap for candidates in fetched)
    setting = FusionSetting("rrf", 50, categorical_weight=2.0)
    assert setting.settings_values()["categorical_weight"] == 2.0
    for candidates in fetched:
        result = search_candidates(
            candidates.judgment,
            settings=debian.settings(
                categorical_fields=["section"], **setting.settings_values()
            ),
            client=client,
            num_candidates=50,
        )
        assert fused_ranking(candidates, setting) == [hit.id for hit in result.hits]

    grid = Grid(fusions=("rrf",), rank_constants=(60,), windows=(50,))
    chosen = tune(debian.judgments, settings=settings, client=client, grid=grid).chosen
    assert chosen.categorical_weight in (0.0, 0.5, 1.0, 2.0, 4.0)


@pytest.mark.integration
def test_tune_scores_the_choice_on_heldout_queries_only(
    debian: TuneSample, client: OpenSearch
) -> None:
    counting = CountingClient(client)
    # One window, equal to the baseline's, so no list is cut and the held-out
    # scores can be recomputed exactly with hybrid_similar.
    grid = Grid(rank_constants=(10, 60), knn_weights=(0.3, 0.7), windows=(100,))

    result = tune(
        debian.judgments,
        settings=debian.settings(),
        client=counting,  # type: ignore[arg-type]
        grid=grid,
        holdout=0.3,
        seed=13,
    )

    assert counting.msearch_requests == QUERIES
    assert result.heldout_queries == round(QUERIES * 0.3)
    assert result.tune_queries == QUERIES - result.heldout_queries
    assert result.grid_size == 2 + 3 * 2
    assert result.chosen in grid.points()
    assert result.baseline == FusionSetting("rrf", 100, rank_constant=60)

    _, held_out = split_queries(debian.judgments, holdout=0.3, seed=13)
    for setting, reported in (
        (result.chosen, result.chosen_scores),
        (result.baseline, result.baseline_scores),
    ):
        rows = []
        for judgment in held_out:
            ranked = search_candidates(
                judgment,
                settings=debian.settings(**setting.settings_values()),
                client=client,
                num_candidates=100,
            )
            rows.append(score_ranking([hit.id for hit in ranked.hits], judgment))
        for metric in METRICS:
            expected = statistics.fmean(row[metric] for row in rows)
            assert reported[metric] == pytest.approx(expected), (setting, metric)


@pytest.mark.integration
def test_tune_command_writes_the_file_hybrid_similar_reads(
    debian: TuneSample,
    client: OpenSearch,
    in_tmp: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    judgments_file = in_tmp / "judgments.jsonl"
    write_judgments(judgments_file, debian.judgments)
    # A weak current setting, BM25 alone from 10 candidates, which the grid's
    # fusions beat, so the choice is written.
    settings_file = write_settings_file(
        in_tmp,
        {
            "hosts": [debian.url],
            "index": debian.alias,
            "text_fields": ["title", "body"],
            "fusion": "min_max",
            "weights": {"knn": 0.0, "bm25": 1.0},
            "num_candidates": 10,
        },
    )

    status = main(
        [
            "tune",
            str(judgments_file),
            "--fusions",
            "min_max",
            "--knn-weights",
            "0.2,0.5,0.8",
            "--num-candidates",
            "30,60",
            "--json",
            "report.json",
            "--write",
        ]
    )

    assert status == 0
    output = capsys.readouterr().out
    assert "Held-out scores on 18 queries" in output
    assert "Wrote fusion, num_candidates, weights to os-mlt.json" in output
    report = json.loads((in_tmp / "report.json").read_text())
    chosen = report["chosen"]["settings"]
    assert chosen["fusion"] == "min_max"
    assert chosen["num_candidates"] in (30, 60)
    assert chosen["weights"]["knn"] in (0.2, 0.5, 0.8)
    assert report["baseline"]["settings"] == {
        "fusion": "min_max",
        "num_candidates": 10,
        "weights": {"knn": 0.0, "bm25": 1.0},
    }
    assert (
        report["chosen"]["heldout"]["ndcg@10"]
        >= report["baseline"]["heldout"]["ndcg@10"]
    )
    assert report["queries"] == {"tune": 42, "heldout": 18, "skipped": []}
    assert report["written_to"] == "os-mlt.json"
    for side in ("chosen", "baseline"):
        assert set(report[side]["heldout"]) == set(METRICS)
        assert all(0.0 <= value <= 1.0 for value in report[side]["heldout"].values())
    print(report["chosen"], report["baseline"])

    written = json.loads(settings_file.read_text())
    assert written == {
        "hosts": [debian.url],
        "index": debian.alias,
        "text_fields": ["title", "body"],
        "fusion": "min_max",
        **chosen,
    }
    result = hybrid_similar(debian.judgments[0].query, k=10, client=client)
    assert knn_k(result) == chosen["num_candidates"]
    assert all(score_fused(hit) for hit in result.hits)


@pytest.mark.integration
def test_tune_command_on_a_click_log(
    debian: TuneSample,
    client: OpenSearch,
    in_tmp: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Simulated users: each was shown the top 10 of the current ranking and
    # clicked the packages whose tags overlap the query's by half or more.
    lines = []
    for judgment in debian.judgments[:40]:
        result = hybrid_similar(
            judgment.query,
            k=10,
            settings=debian.settings(),
            client=client,
            source_fields=[],
        )
        shown = [hit.id for hit in result.hits]
        clicked = [
            doc_id
            for doc_id in shown
            if judgment.gains.get(doc_id, 0.0) >= RELEVANT_GAIN
        ]
        lines.append({"query": judgment.query, "shown": shown, "clicked": clicked})
    with_clicks = sum(bool(line["clicked"]) for line in lines)
    log = in_tmp / "clicks.jsonl"
    log.write_text("".join(json.dumps(line) + "\n" for line in lines))

    status = main(
        [
            "tune",
            "--clicks",
            str(log),
            "--hosts",
            debian.url,
            "--index",
            debian.alias,
            "--fusions",
            "rrf,l2",
            "--rank-constants",
            "10,60",
            "--knn-weights",
            "0.5",
            "--num-candidates",
            "50",
            "--json",
            "report.json",
        ]
    )

    assert status == 0
    assert f"Derived judgments for {with_clicks} queries" in capsys.readouterr().out
    report = json.loads((in_tmp / "report.json").read_text())
    assert sum(report["queries"][side] for side in ("tune", "heldout")) == with_clicks
    assert report["written_to"] is None
    assert not (in_tmp / "os-mlt.json").exists()


@pytest.mark.integration
def test_tune_rejects_queries_missing_from_the_index(
    debian: TuneSample, client: OpenSearch
) -> None:
    judgments = [*debian.judgments[:10], judgment("no-such-package")]
    with pytest.raises(
        ConfigurationError, match="1 of 11 query documents .* no-such-package"
    ):
        tune(judgments, settings=debian.settings(), client=client)

    result = tune(
        judgments,
        settings=debian.settings(),
        client=client,
        grid=Grid(fusions=("rrf",), rank_constants=(60,), windows=(20,)),
        skip_missing=True,
    )
    assert result.skipped_queries == ("no-such-package",)
    assert result.tune_queries + result.heldout_queries == 10


@pytest.mark.integration
@pytest.mark.parametrize(
    ("arguments", "content", "message"),
    [
        pytest.param([], "", "contains no judgments", id="empty-judgments"),
        pytest.param(
            ["--clicks", "clicks.jsonl"],
            "",
            "give a judgments file or --clicks",
            id="both",
        ),
        pytest.param(
            ["--holdout", "0.9"], None, "leaves the tune split empty", id="holdout"
        ),
        pytest.param(
            ["--knn-weights", "0.5,heavy"],
            None,
            "'heavy' is not a valid float",
            id="weight",
        ),
    ],
)
def test_tune_command_errors(
    debian: TuneSample,
    in_tmp: Path,
    capsys: pytest.CaptureFixture[str],
    arguments: list[str],
    content: str | None,
    message: str,
) -> None:
    judgments_file = in_tmp / "judgments.jsonl"
    if content is None:
        write_judgments(judgments_file, debian.judgments[:2])
    else:
        judgments_file.write_text(content)

    status = main(
        ["tune", str(judgments_file), "--hosts", debian.url, "--index", debian.alias]
        + arguments
    )

    assert status == 2
    assert message in capsys.readouterr().err


@pytest.mark.integration
def test_tune_write_keeps_better_settings(
    debian: TuneSample,
    client: OpenSearch,
    in_tmp: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    judgments_file = in_tmp / "judgments.jsonl"
    write_judgments(judgments_file, debian.judgments)
    base = {"hosts": [debian.url], "index": debian.alias}
    settings_file = write_settings_file(in_tmp, base)
    # The only point of the grid ranks by BM25 alone from 10 candidates, which
    # does worse on the held-out queries than the default RRF of both.
    grid = ["--fusions", "min_max", "--knn-weights", "0", "--num-candidates", "10"]

    status = main(["tune", str(judgments_file), *grid, "--json", "r.json", "--write"])

    assert status == 0
    report = json.loads((in_tmp / "r.json").read_text())
    assert (
        report["chosen"]["heldout"]["ndcg@10"]
        < report["baseline"]["heldout"]["ndcg@10"]
    )
    assert report["written_to"] is None
    assert "Not written" in capsys.readouterr().err
    assert json.loads(settings_file.read_text()) == base

    missing = in_tmp / "no-such-folder" / "tuned.json"
    status = main(["tune", str(judgments_file), *grid, "--write", str(missing)])
    assert status == 2
    assert "no-such-folder" in capsys.readouterr().err
    assert not missing.parent.exists()
