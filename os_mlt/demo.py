"""The demo: a local node, a corpus loaded without vectors, a backfill and hybrid results."""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from .client import make_client
from .corpus import load_corpus, sample_jsonl
from .errors import DocumentNotFoundError
from .settings import Settings

console = Console(width=None if sys.stdout.isatty() else 160)

DEMO_TEXT_FIELDS = ["title", "body"]
# Shown next to each hit when the corpus has them; other corpora show what they have.
DEMO_SHOWN_FIELDS = ["title", "section", "tags"]


def default_alias(corpus: Path, limit: int | None) -> str:
    """Name the demo index after the corpus file and the sample size."""
    stem = re.sub(r"(\.jsonl)?(\.gz)?$", "", corpus.name).lower()
    stem = re.sub(r"[^a-z0-9_-]+", "-", stem).strip("-_") or "corpus"
    return stem if limit is None else f"{stem}-sample-{limit}"


def run_demo(
    *,
    corpus: Path,
    limit: int | None,
    show: Sequence[str],
    port: int,
    alias: str | None = None,
) -> int:
    """Run the demo end to end and print hybrid results for the `show` ids."""
    from . import node
    from .cli import print_similar, run_backfill
    from .query import hybrid_similar

    status = node.start(
        node.NodeSettings(http_port=port), log=lambda line: console.print(line)
    )
    console.print(f"OpenSearch {status.version} with k-NN at {status.url}")

    alias = alias or default_alias(corpus, limit)
    settings = Settings(hosts=[status.url], index=alias, text_fields=DEMO_TEXT_FIELDS)
    client = make_client(settings)

    records = sample_jsonl(corpus, limit=limit, include_ids=show)
    console.print(
        f"Loading {len(records)} documents of {corpus.name} into {alias} (no vectors yet)"
    )
    load_corpus(client, records, alias=alias, text_fields=DEMO_TEXT_FIELDS)

    status_code = run_backfill(settings, migrate=True)

    sample = records[0] if records else {}
    fields = [name for name in DEMO_SHOWN_FIELDS if name in sample] or DEMO_TEXT_FIELDS[
        :1
    ]
    for doc_id in show:
        try:
            result = hybrid_similar(
                doc_id, k=10, settings=settings, client=client, source_fields=fields
            )
        except DocumentNotFoundError as error:
            console.print(f"[red]{error}[/red]")
            status_code = 1
            continue
        example = client.get(index=alias, id=doc_id, _source_includes=fields)["_source"]
        console.print()
        console.print(
            f"[bold]{doc_id}[/bold]",
            *(f"| {name}: {_text(example.get(name))}" for name in fields),
        )
        print_similar(result, fields)
    example_filter = " --filter section=python" if "section" in fields else ""
    console.print(
        f"\nTry: os-mlt similar {show[0] if show else 'ID'} --hosts {status.url} --index {alias} "
        f"--fields {','.join(fields)}{example_filter} --dsl",
        soft_wrap=True,
    )
    return status_code


def _text(value: object) -> str:
    if isinstance(value, list):
        return ", ".join(str(item) for item in value)
    return "" if value is None else str(value)
