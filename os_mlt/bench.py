"""Benchmarks that compare os_mlt against a baseline measured in the same run.

`backfill`: raw `model.encode` throughput on the sampled texts, then the
backfill's throughput on the same texts in a fresh k-NN index, then a re-run
after 1% of the documents changed. `scan`: the backfill's read stage (a dry
run) with parallel slices against one scroll. `query`: median latency of
`hybrid_similar` against each of its two component searches alone.
"""

from __future__ import annotations

import random
import resource
import statistics
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opensearchpy import OpenSearch
from rich.console import Console

from .client import make_client
from .corpus import load_corpus, sample_jsonl
from .encoder import Encoder, document_text
from .indexer import backfill
from .query import build_knn_search, build_mlt_search, hybrid_similar
from .settings import Settings

console = Console()

TEXT_FIELDS = ["title", "body"]
CHANGED_FRACTION = 0.01


@dataclass(frozen=True)
class BenchTarget:
    """Cluster and corpus sample of one benchmark run."""

    hosts: list[str]
    corpus: Path
    limit: int | None
    seed: int = 13


def _peak_rss_mib() -> float:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _load_bench_index(
    client: OpenSearch, records: list[dict[str, Any]], alias: str
) -> None:
    load_corpus(client, records, alias=alias, text_fields=TEXT_FIELDS, knn=True)


def bench_backfill(
    target: BenchTarget, *, keep_as: str | None = None
) -> dict[str, float]:
    """Measure encode and backfill throughput on the same texts; print and return the figures."""
    records = sample_jsonl(target.corpus, limit=target.limit, seed=target.seed)
    texts = [document_text(record, TEXT_FIELDS) for record in records]
    texts = [text for text in texts if text]
    encoder = Encoder()
    encoder.encode(texts[:64])  # load the model and warm up

    started = time.perf_counter()
    encoder.encode(texts)
    encode_s = time.perf_counter() - started
    encode_rate = len(texts) / encode_s
    console.print(
        f"model.encode: {len(texts)} texts in {encode_s:.1f} s = {encode_rate:.1f} texts/s"
    )

    alias = keep_as or f"os-mlt-bench-{uuid.uuid4().hex[:8]}"
    settings = Settings(hosts=target.hosts, index=alias)
    client = make_client(settings)
    _load_bench_index(client, records, alias)
    try:
        report = backfill(settings, client=client, encoder=encoder)
        backfill_rate = report.embedded / report.seconds
        console.print(
            f"backfill: {report.embedded} documents in {report.seconds:.1f} s = {backfill_rate:.1f} docs/s"
        )

        changed = random.Random(target.seed).sample(
            range(len(records)), max(1, int(len(records) * CHANGED_FRACTION))
        )
        for position in changed:
            record = records[position]
            client.update(
                index=alias,
                id=str(record["id"]),
                body={"doc": {"title": f"{record.get('title', '')} (revised)"}},
            )
        client.indices.refresh(index=alias)
        rerun = backfill(settings, client=client, encoder=encoder)
        fraction = rerun.seconds / report.seconds
        if keep_as is not None:
            # Put the original titles back, so the kept index contains the corpus as it is.
            for position in changed:
                record = records[position]
                client.update(
                    index=alias,
                    id=str(record["id"]),
                    body={"doc": {"title": record.get("title")}},
                )
            client.indices.refresh(index=alias)
            backfill(settings, client=client, encoder=encoder)
        console.print(
            f"re-run after {len(changed)} changes: embedded {rerun.embedded}, "
            f"{rerun.seconds:.1f} s = {fraction:.3f} of the full backfill"
        )
    finally:
        if keep_as is None:
            client.indices.delete(index=f"{alias}*", ignore_unavailable=True)

    ratio = backfill_rate / encode_rate
    console.print(f"peak memory of this process: {_peak_rss_mib():.0f} MiB")
    console.print(f"backfill/encode throughput ratio: {ratio:.3f}")
    return {
        "encode_rate": encode_rate,
        "backfill_rate": backfill_rate,
        "rerun_fraction": fraction,
        "ratio": ratio,
        "peak_rss_mib": _peak_rss_mib(),
    }


def bench_scan(
    target: BenchTarget,
    *,
    index: str | None = None,
    slices: tuple[int, ...] = (1, 2, 4),
    rounds: int = 5,
) -> dict[int, float]:
    """Measure the backfill's read stage with several slice counts; print and return docs/s.

    Each round runs a dry run (read, select, no encoding or writes) per slice
    count, in turn, so all counts see the same machine load. With `index`,
    the runs read that index (for example one already backfilled, whose
    `_source` includes the vectors) instead of a freshly loaded sample.
    """
    name = index or f"os-mlt-bench-{uuid.uuid4().hex[:8]}"
    client = make_client(Settings(hosts=target.hosts, index=name))
    if index is None:
        records = sample_jsonl(target.corpus, limit=target.limit, seed=target.seed)
        _load_bench_index(client, records, name)
    encoder = Encoder()
    rates: dict[int, list[float]] = {count: [] for count in slices}
    try:
        for _ in range(rounds):
            for count in slices:
                settings = Settings(hosts=target.hosts, index=name, scan_slices=count)
                report = backfill(
                    settings, client=client, encoder=encoder, dry_run=True
                )
                rates[count].append(report.scanned / report.seconds)
    finally:
        if index is None:
            client.indices.delete(index=f"{name}*", ignore_unavailable=True)

    medians = {count: statistics.median(values) for count, values in rates.items()}
    console.print(f"{report.scanned} documents of {name}, {rounds} rounds")
    for count, rate in medians.items():
        console.print(f"dry run with {count} slice(s): median {rate:.0f} docs/s")
    best = max(medians, key=lambda count: medians[count])
    console.print(
        f"sliced/single scan throughput ratio: {medians[best] / medians[slices[0]]:.3f} "
        f"(best: {best} slices)"
    )
    return medians


def _median_ms(
    systems: Mapping[str, Callable[[str], Callable[[], object]]], doc_ids: list[str]
) -> dict[str, float]:
    """Return each system's median wall time in milliseconds over `doc_ids`.

    The systems run one after another for each id, in an order that rotates
    from id to id, so JVM warm-up and caches favour none of them.
    """
    timings: dict[str, list[float]] = {name: [] for name in systems}
    names = list(systems)
    for position, doc_id in enumerate(doc_ids):
        shift = position % len(names)
        for name in names[shift:] + names[:shift]:
            call = systems[name](doc_id)
            started = time.perf_counter()
            call()
            timings[name].append((time.perf_counter() - started) * 1000)
    return {name: statistics.median(values) for name, values in timings.items()}


def bench_query(target: BenchTarget, *, queries: int = 200) -> dict[str, float]:
    """Measure the median latency of hybrid_similar and of each component alone."""
    records = sample_jsonl(target.corpus, limit=target.limit, seed=target.seed)
    alias = f"os-mlt-bench-{uuid.uuid4().hex[:8]}"
    settings = Settings(hosts=target.hosts, index=alias)
    client = make_client(settings)
    _load_bench_index(client, records, alias)
    try:
        encoder = Encoder()
        backfill(settings, client=client, encoder=encoder)
        ids = [str(record["id"]) for record in records]
        picked = random.Random(target.seed).sample(ids, min(queries, len(ids)))

        # The same _source as hybrid_similar returns, without the vectors.
        source = {"excludes": [settings.vector_field, settings.meta_field]}

        def vector_of(doc_id: str) -> list[float]:
            # A realtime get by _id, as hybrid_similar reads its example.
            doc = client.get(
                index=alias, id=doc_id, _source_includes=settings.vector_field
            )
            return list(doc["_source"][settings.vector_field])

        def knn_only(doc_id: str) -> Callable[[], object]:
            def run() -> object:
                body = build_knn_search(
                    settings.vector_field,
                    vector_of(doc_id),
                    k=100,
                    exclude_ids=[doc_id],
                    source=source,
                )
                return client.search(index=alias, body=body)

            return run

        def bm25_only(doc_id: str) -> Callable[[], object]:
            body = build_mlt_search(
                TEXT_FIELDS,
                [{"_index": alias, "_id": doc_id}],
                size=100,
                exclude_ids=[doc_id],
                source=source,
            )
            return lambda: client.search(index=alias, body=body)

        def hybrid(doc_id: str) -> Callable[[], object]:
            return lambda: hybrid_similar(
                doc_id, k=10, settings=settings, client=client, execution="client"
            )

        systems = {"knn": knn_only, "bm25": bm25_only, "hybrid": hybrid}
        _median_ms(systems, picked[:20])  # warm up the JVM, caches and the HNSW graph
        medians = _median_ms(systems, picked)
        knn_ms, bm25_ms, hybrid_ms = medians["knn"], medians["bm25"], medians["hybrid"]
    finally:
        client.indices.delete(index=f"{alias}*", ignore_unavailable=True)

    slower = max(knn_ms, bm25_ms)
    console.print(f"{len(picked)} queries on {len(records)} documents, median latency:")
    console.print(f"  k-NN only (lookup + knn, k=100): {knn_ms:.1f} ms")
    console.print(f"  BM25 more_like_this only (size=100): {bm25_ms:.1f} ms")
    console.print(
        f"  hybrid_similar (_mget lookup + one _msearch + RRF + page _mget): "
        f"{hybrid_ms:.1f} ms"
    )
    console.print(
        f"hybrid/slower-component p50 latency ratio: {hybrid_ms / slower:.3f}"
    )
    return {
        "knn_ms": knn_ms,
        "bm25_ms": bm25_ms,
        "hybrid_ms": hybrid_ms,
        "ratio": hybrid_ms / slower,
    }
