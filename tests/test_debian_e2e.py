"""End to end on real Debian package descriptions: load, migrate, backfill, hybrid search."""

from __future__ import annotations

import json
import statistics
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from opensearchpy import OpenSearch

from os_mlt import BackfillReport, Encoder, Settings, backfill, hybrid_similar
from os_mlt.corpus import load_corpus, read_jsonl, sample_jsonl

from .conftest import DEBIAN_CORPUS

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

BIOLOGY = "field::biology"
SAMPLE_SIZE = 3000

# Measured on this sample: 0.70 of the top 10 hybrid hits of a biology package
# carry the biology tag, against 0.07 for the sample as a whole. The bound
# leaves room for other models or OpenSearch versions to rank a little
# differently while still failing if the ranking loses its meaning.
MIN_BIOLOGY_SHARE = 0.55


@dataclass(frozen=True)
class DebianSample:
    settings: Settings
    biology: list[str]
    report: BackfillReport


@pytest.fixture(scope="module")
def debian(
    client: OpenSearch, encoder: Encoder, opensearch_url: str
) -> Iterator[DebianSample]:
    """All biology packages plus a seeded random sample, 3,000 in all, loaded and backfilled."""
    if not DEBIAN_CORPUS.is_file():
        pytest.fail(
            f"corpus {DEBIAN_CORPUS.name} not found next to the repository, in shared/corpora"
        )
    biology = sorted(
        str(record["id"])
        for record in read_jsonl(DEBIAN_CORPUS)
        if BIOLOGY in record.get("tags", [])
    )
    records = sample_jsonl(
        DEBIAN_CORPUS, limit=SAMPLE_SIZE - len(biology), seed=13, include_ids=biology
    )
    alias = f"os-mlt-test-{uuid.uuid4().hex[:12]}"
    load_corpus(client, records, alias=alias, text_fields=["title", "body"])
    settings = Settings(hosts=[opensearch_url], index=alias)
    report = backfill(settings, client=client, encoder=encoder, migrate=True)
    yield DebianSample(settings, biology, report)
    client.indices.delete(index=f"{alias}*", ignore_unavailable=True)


def test_debian_backfill_report(debian: DebianSample, client: OpenSearch) -> None:
    report = debian.report
    assert report.total == SAMPLE_SIZE
    assert report.failed == 0
    assert report.migration is not None
    assert report.embedded + report.skipped == SAMPLE_SIZE
    assert report.skipped < SAMPLE_SIZE * 0.01
    assert list(client.indices.get_alias(name=debian.settings.index)) == [
        report.migration.new_index
    ]


def test_debian_biology_neighbours(debian: DebianSample, client: OpenSearch) -> None:
    shares = []
    for doc_id in debian.biology:
        result = hybrid_similar(
            doc_id,
            k=10,
            settings=debian.settings,
            client=client,
            source_fields=["tags"],
        )
        assert len(result.hits) == 10
        assert doc_id not in [hit.id for hit in result.hits]
        shares.append(
            sum(BIOLOGY in hit.source.get("tags", []) for hit in result.hits) / 10
        )
    base_rate = len(debian.biology) / SAMPLE_SIZE
    mean_share = statistics.mean(shares)
    print(
        f"biology share of top 10: {mean_share:.3f} (sample base rate {base_rate:.3f})"
    )
    assert mean_share >= MIN_BIOLOGY_SHARE
    assert mean_share > 5 * base_rate


def test_debian_second_run_embeds_nothing(
    debian: DebianSample, client: OpenSearch, encoder: Encoder
) -> None:
    again = backfill(debian.settings, client=client, encoder=encoder)
    assert again.embedded == 0
    assert again.unchanged == debian.report.embedded


def test_debian_filters_on_real_fields(
    debian: DebianSample, client: OpenSearch
) -> None:
    result = hybrid_similar(
        "samtools",
        k=10,
        settings=debian.settings,
        client=client,
        filters=["section=science", "installed_size_kb<5000"],
        source_fields=["section", "installed_size_kb"],
    )
    assert result.hits
    for hit in result.hits:
        assert hit.source["section"] == "science"
        assert hit.source["installed_size_kb"] < 5000


def test_debian_eval_scores_every_system(
    debian: DebianSample, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from os_mlt.cli import main
    from os_mlt.evaluation import SYSTEMS, build_tag_judgments, write_judgments

    records = sample_jsonl(
        DEBIAN_CORPUS,
        limit=SAMPLE_SIZE - len(debian.biology),
        seed=13,
        include_ids=debian.biology,
    )
    judgments_file = tmp_path / "judgments.jsonl"
    write_judgments(judgments_file, build_tag_judgments(records, queries=60, seed=13))
    scores_file = tmp_path / "scores.json"
    assert debian.settings.index is not None

    status = main(
        [
            "eval",
            str(judgments_file),
            "--hosts",
            debian.settings.hosts[0],
            "--index",
            debian.settings.index,
            "--json",
            str(scores_file),
        ]
    )

    assert status == 0
    scores = json.loads(scores_file.read_text())
    assert set(scores) == set(SYSTEMS)
    for system, metrics in scores.items():
        assert set(metrics) == {"ndcg@10", "p@10", "r@100"}
        assert all(0.0 <= value <= 1.0 for value in metrics.values()), system
    print({system: round(metrics["ndcg@10"], 3) for system, metrics in scores.items()})
    # Fusing both rankings beats the weaker of them on the same candidates.
    weaker = min(scores["bm25"]["ndcg@10"], scores["knn"]["ndcg@10"])
    assert scores["hybrid-rrf"]["ndcg@10"] > weaker
    assert "hybrid-rrf" in capsys.readouterr().out


def test_debian_shared_section_raises_hybrid_ndcg(
    debian: DebianSample, client: OpenSearch
) -> None:
    from os_mlt.evaluation import build_tag_judgments, evaluate

    records = sample_jsonl(
        DEBIAN_CORPUS,
        limit=SAMPLE_SIZE - len(debian.biology),
        seed=13,
        include_ids=debian.biology,
    )
    judgments = build_tag_judgments(records, queries=60, seed=13)

    plain = evaluate(judgments, settings=debian.settings, client=client)
    shared = evaluate(
        judgments,
        settings=debian.settings,
        client=client,
        categorical_fields=["section"],
        categorical_weight=1.0,
    )

    # The section is not what the judgments grade (tags are), but packages
    # of one section share tags more often than two packages chosen at random.
    assert shared["hybrid-rrf"]["ndcg@10"] > plain["hybrid-rrf"]["ndcg@10"]
    # BM25 and k-NN alone do not use the categorical fields.
    assert shared["bm25"] == plain["bm25"]
    assert shared["knn"] == plain["knn"]
