"""The `os-mlt` command line."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opensearchpy.exceptions import ConnectionError as OpenSearchConnectionError
from opensearchpy.exceptions import TransportError
from pydantic import ValidationError
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, SettingsError
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from .errors import ConfigurationError, OsMltError
from .node.plugins import PLUGINS
from .settings import FUSIONS, Settings

# Rich falls back to 80 columns when output is not a terminal, which folds
# result tables beyond reading; 160 keeps one hit per line in logs and pipes.
_PIPE_WIDTH = 160
console = Console(width=None if sys.stdout.isatty() else _PIPE_WIDTH)
errors = Console(stderr=True, width=None if sys.stderr.isatty() else _PIPE_WIDTH)


def _settings(args: argparse.Namespace) -> Settings:
    """Build settings from the environment, with the options given on the command line on top."""
    overrides: dict[str, Any] = {}
    for option in (
        "hosts",
        "index",
        "text_fields",
        "vector_field",
        "model",
        "categorical_fields",
        "categorical_weight",
    ):
        value = getattr(args, option, None)
        if value is not None:
            overrides[option] = value
    if getattr(args, "insecure", False):
        overrides["verify_certs"] = False
    return Settings(**overrides)


def _add_connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--hosts", help="cluster URLs, comma-separated (env OS_MLT_HOSTS)"
    )
    parser.add_argument("--index", help="index or alias (env OS_MLT_INDEX)")
    parser.add_argument(
        "--text-fields",
        dest="text_fields",
        help="fields to embed, comma-separated (env OS_MLT_TEXT_FIELDS)",
    )
    parser.add_argument(
        "--vector-field",
        dest="vector_field",
        help="knn_vector field (env OS_MLT_VECTOR_FIELD)",
    )
    parser.add_argument(
        "--model", help="sentence-transformers model name or folder (env OS_MLT_MODEL)"
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="do not verify the cluster's TLS certificate",
    )


# Commands.


def _progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=errors,
        transient=False,
    )


def run_backfill(settings: Settings, *, migrate: bool, dry_run: bool = False) -> int:
    """Run the backfill with progress bars; print the report. Return the exit status."""
    from .indexer import Progress as BackfillProgress
    from .indexer import backfill

    with _progress_bar() as bar:
        tasks: dict[str, TaskID] = {}

        def on_progress(event: BackfillProgress) -> None:
            if event.stage == "copy":
                label = "Copying to k-NN index"
            else:
                label = "Checking" if dry_run else "Reading and embedding"
            if event.stage not in tasks:
                tasks[event.stage] = bar.add_task(
                    label, total=event.total or None, rate=""
                )
            task = tasks[event.stage]
            bar.update(task, completed=event.done, total=event.total or None)
            elapsed = bar.tasks[task].elapsed or 0.0
            if elapsed > 0:
                bar.update(task, rate=f"{event.done / elapsed:.0f} read/s")

        report = backfill(
            settings, migrate=migrate, dry_run=dry_run, progress=on_progress
        )

    console.print(report.summary())
    if report.migration is not None and report.dry_run:
        migration = report.migration
        console.print(
            f"A real run would copy {migration.source_index} into "
            f"{migration.new_index}, embed the copy and move every alias of "
            f"{migration.source_index} to it."
        )
    elif report.migration is not None:
        migration = report.migration
        if len(report.moved_aliases) > 1:
            aliases = f"aliases {', '.join(report.moved_aliases)} now point at {migration.new_index}"
        elif report.moved_aliases:
            aliases = f"alias {migration.alias} now points at {migration.new_index}"
        else:
            aliases = f"alias {migration.alias} unchanged"
        console.print(
            f"Copied {migration.source_index} into {migration.new_index}; {aliases}. "
            f"{migration.source_index} is kept: delete it when you no longer need it."
        )
        if report.write_block_carried:
            console.print(
                f"{migration.source_index} had index.blocks.write: true, so "
                f"{migration.new_index} has it too; clear it with PUT "
                f'{migration.new_index}/_settings {{"index.blocks.write": null}} '
                "when writes should resume."
            )
    if report.reconciliation is not None:
        console.print(f"Compared with the old index {report.reconciliation.summary()}.")
    for issue in report.skipped_items:
        console.print(f"  skipped {issue.id} ({issue.index}): {issue.reason}")
    if report.skipped > len(report.skipped_items):
        console.print(
            f"  ... and {report.skipped - len(report.skipped_items)} more skipped"
        )
    for issue in report.failed_items:
        errors.print(
            f"  failed {issue.id} ({issue.index}) status {issue.status}: {issue.reason}"
        )
    if report.failed > len(report.failed_items):
        errors.print(
            f"  ... and {report.failed - len(report.failed_items)} more failed"
        )
    return 0 if report.ok else 1


def _cmd_backfill(args: argparse.Namespace) -> int:
    return run_backfill(_settings(args), migrate=args.migrate, dry_run=args.dry_run)


def print_similar(result: Any, fields: Sequence[str]) -> None:
    """Print the hits of a `SimilarResult` as a table."""
    table = Table(
        title=f"Documents like {result.doc_id or 'the text'}", show_lines=False
    )
    table.add_column("#", justify="right", min_width=2, no_wrap=True)
    table.add_column("id", no_wrap=True)
    table.add_column("fused", justify="right", no_wrap=True)
    reordered = any(hit.final_score is not None for hit in result.hits)
    if reordered:
        table.add_column("final (boost)", justify="right", no_wrap=True)
    table.add_column("k-NN rank (score)", justify="right", no_wrap=True)
    table.add_column("BM25 rank (score)", justify="right", no_wrap=True)
    # The rank and score columns take about 70 characters; the fields share the rest.
    field_width = max(12, (console.width - 70) // max(1, len(fields)))
    for field in fields:
        table.add_column(
            field, overflow="ellipsis", no_wrap=True, max_width=field_width
        )
    for position, hit in enumerate(result.hits, start=1):
        knn = f"{hit.knn_rank} ({hit.knn_score:.3f})" if hit.knn_rank else "-"
        bm25 = f"{hit.bm25_rank} ({hit.bm25_score:.2f})" if hit.bm25_rank else "-"
        values = [_format_value(hit.source.get(field)) for field in fields]
        final = [f"{hit.final_score:.3f} ({hit.boost:.2f})"] if reordered else []
        table.add_row(
            str(position), hit.id, f"{hit.score:.4f}", *final, knn, bm25, *values
        )
    console.print(table)


def _format_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(str(item) for item in value)
    return str(value)


def _cmd_similar(args: argparse.Namespace) -> int:
    from .query import hybrid_similar, similar_to_text

    settings = _settings(args)
    fields = [field for field in (args.fields or "").split(",") if field] or None
    # Options that documents and free texts share.
    common: dict[str, Any] = {
        "k": args.k,
        "offset": args.offset,
        "filters": args.filter or None,
        "settings": settings,
        "num_candidates": args.num_candidates,
        "source_fields": fields,
        "fusion": args.fusion,
        "rank_constant": args.rank_constant,
        "weights": _parse_weights(args.weights),
        "boosts": _parse_boosts(args.recency, args.boost or []),
        "diversity": args.diversity,
        "execution": args.execution,
    }
    if args.text is not None:
        if args.doc_id:
            raise ConfigurationError("give a document id or --text, not both")
        result = similar_to_text(args.text, **common)
    elif not args.doc_id:
        raise ConfigurationError("give a document id, or --text with words to match")
    else:
        result = hybrid_similar(
            args.doc_id,
            unlike=args.unlike or (),
            example_vectors=args.example_vectors,
            id_field=args.id_field,
            exclude_same=args.exclude_same or (),
            max_similarity=args.max_similarity,
            **common,
        )
    return _print_result(args, settings, result, fields)


def _print_result(
    args: argparse.Namespace, settings: Settings, result: Any, fields: list[str] | None
) -> int:
    if args.dsl:
        # With --json the searches go to stderr, so stdout stays valid JSON.
        target = errors if args.json else console
        on_server = any(
            "search_pipeline=" in (request.path or "") for request in result.requests
        )
        header = (
            "# The hybrid search below ran under the search pipeline above it."
            if on_server
            else "# The k-NN and BM25 searches below were sent together in one _msearch;\n"
            "# a last search, if shown, fetched the _source of the returned hits."
        )
        target.print(header, markup=False, highlight=False)
        target.print(
            result.to_dev_tools(), markup=False, highlight=False, soft_wrap=True
        )
        target.print()
    if args.json:
        hits = [hit.__dict__ for hit in result.hits]
        console.print_json(json.dumps(hits))
    else:
        columns = fields or settings.text_fields[:1]
        print_similar(result, columns)
    return 0


def _parse_boosts(recency: str | None, boosts: Sequence[str]) -> list[Any]:
    """Read `--recency FIELD:HALF_LIFE` and `--boost FIELD[:WEIGHT[:MODIFIER]]`."""
    from .query import NumericBoost, Recency

    parsed: list[Any] = []
    if recency:
        field, _, half_life = recency.rpartition(":")
        if not field:
            raise ConfigurationError(
                f"--recency {recency!r} needs FIELD:HALF_LIFE, e.g. released:180d"
            )
        parsed.append(Recency(field, half_life=half_life))
    for text in boosts:
        field, *rest = text.split(":")
        if not field or len(rest) > 2:
            raise ConfigurationError(
                f"--boost {text!r} needs FIELD[:WEIGHT[:MODIFIER]], e.g. downloads:0.5:log1p"
            )
        try:
            weight = float(rest[0]) if rest else 0.5
        except ValueError:
            raise ConfigurationError(
                f"--boost {text!r}: weight {rest[0]!r} is not a number"
            ) from None
        modifier = rest[1] if len(rest) > 1 else "log1p"
        parsed.append(NumericBoost(field, weight=weight, modifier=modifier))  # type: ignore[arg-type]
    return parsed


def _parse_weights(text: str | None) -> dict[str, float] | None:
    """Read `knn=0.7,bm25=0.3` into a dict."""
    if not text:
        return None
    weights: dict[str, float] = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        try:
            weights[name.strip()] = float(value)
        except ValueError as error:
            raise ConfigurationError(
                f"weight {part!r} is not NAME=NUMBER; write e.g. --weights knn=0.7,bm25=0.3"
            ) from error
    return weights


def _cmd_load(args: argparse.Namespace) -> int:
    from .client import make_client
    from .corpus import load_corpus, sample_jsonl

    settings = _settings(args)
    alias = settings.require_index()
    include = [item for item in (args.include or "").split(",") if item]
    records = sample_jsonl(
        Path(args.file),
        limit=args.limit or None,
        seed=args.seed,
        id_field=args.id_field,
        include_ids=include,
    )
    client = make_client(settings)
    with _progress_bar() as bar:
        task = bar.add_task("Loading", total=len(records), rate="")
        index = load_corpus(
            client,
            records,
            alias=alias,
            text_fields=settings.text_fields,
            id_field=args.id_field,
            progress=lambda done, total: bar.update(task, completed=done),
        )
    count = int(client.count(index=alias)["count"])
    console.print(f"{count} documents in {index} behind alias {alias}")
    return 0


def _node_settings(args: argparse.Namespace) -> Any:
    from .node import NodeSettings

    overrides: dict[str, Any] = {}
    if getattr(args, "port", None) is not None:
        overrides["http_port"] = args.port
    if getattr(args, "version", None) is not None:
        overrides["version"] = args.version
    if getattr(args, "plugin", None):
        overrides["plugins"] = args.plugin
    return NodeSettings(**overrides)


def _configured_hosts() -> list[str]:
    """Return the hosts other commands would use, or none when the settings are invalid.

    `node start` only prints a hint from them, so an unrelated invalid
    setting must not stop the node from starting.
    """
    try:
        return Settings().hosts
    except (ValidationError, SettingsError, ConfigurationError):
        return []


def _cmd_node(args: argparse.Namespace) -> int:
    from . import node

    settings = _node_settings(args)
    if args.action == "start":
        status = node.start(settings, log=lambda line: errors.print(line))
        console.print(
            f"OpenSearch {status.version} is {status.health} at {status.url} (pid {status.pid})"
        )
        if status.url not in _configured_hosts():
            console.print(
                f"Other os-mlt commands reach it with --hosts {status.url} or "
                f"OS_MLT_HOSTS={status.url}"
            )
    elif args.action == "stop":
        stopped = node.stop(settings)
        console.print("Stopped the node" if stopped else "No node was running")
    else:
        status = node.status(settings)
        if status.running:
            console.print(
                f"running: OpenSearch {status.version}, health {status.health}, "
                f"{status.url}, pid {status.pid}, home {status.home}"
            )
        else:
            console.print(f"not running ({status.url}, home {status.home})")
            return 3
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(
        corpus=Path(args.corpus),
        limit=args.limit or None,
        show=[item for item in args.show.split(",") if item],
        port=args.port,
        alias=args.index_name,
    )


def _cmd_bench(args: argparse.Namespace) -> int:
    from . import bench

    hosts = [item for item in (args.hosts or "").split(",") if item]
    if not hosts:
        from . import node

        hosts = [
            node.start(node.NodeSettings(http_port=args.port), log=errors.print).url
        ]
    target = bench.BenchTarget(
        hosts=hosts, corpus=Path(args.corpus), limit=args.limit or None
    )
    if args.kind == "backfill":
        bench.bench_backfill(target, keep_as=args.keep_index)
    elif args.kind == "scan":
        bench.bench_scan(target, index=args.index_name)
    else:
        bench.bench_query(target, queries=args.queries)
    return 0


def _cmd_templates(args: argparse.Namespace) -> int:
    from .client import make_client
    from .encoder import Encoder
    from .templates import install_templates

    settings = _settings(args)
    if args.dimension is not None and args.dimension < 1:
        raise ConfigurationError(
            f"--dimension {args.dimension} is invalid; give a positive number, or "
            "leave it out to use the model's dimension"
        )
    dimension = args.dimension or Encoder(settings.model).dimension
    component, template = install_templates(
        make_client(settings),
        name=args.name,
        patterns=args.pattern or [],
        vector_field=settings.vector_field,
        meta_field=settings.meta_field,
        dimension=dimension,
        text_fields=settings.text_fields,
        priority=args.priority,
    )
    console.print(
        f"Installed component template {component} and index template {template} "
        f"for {', '.join(args.pattern)}; new matching indices get {settings.vector_field} "
        f"({dimension} dimensions)"
    )
    return 0


def _cmd_judgments(args: argparse.Namespace) -> int:
    from .evaluation import build_jsonl_judgments, write_judgments

    judgments = build_jsonl_judgments(
        Path(args.corpus),
        queries=args.queries,
        seed=args.seed,
        min_tags=args.min_tags,
        tag_field=args.tag_field,
        group_field=args.group_field or None,
    )
    write_judgments(Path(args.out), judgments)
    console.print(f"Wrote {len(judgments)} judgments to {args.out}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from .client import make_client
    from .evaluation import METRICS, evaluate, read_judgments

    settings = _settings(args)
    settings.require_index()
    judgments = read_judgments(Path(args.judgments))
    results = evaluate(
        judgments,
        settings=settings,
        client=make_client(settings),
        num_candidates=args.num_candidates,
        rank_constant=args.rank_constant,
        weights=_parse_weights(args.weights),
        categorical_fields=settings.categorical_fields,
        categorical_weight=settings.categorical_weight,
    )
    table = Table(title=f"{len(judgments)} queries on {settings.index}")
    table.add_column("system")
    for metric in METRICS:
        table.add_column(metric, justify="right")
    for system, scores in results.items():
        table.add_row(system, *(f"{scores[metric]:.4f}" for metric in METRICS))
    console.print(table)
    single = max(results["bm25"]["ndcg@10"], results["knn"]["ndcg@10"])
    if single > 0:
        for system, scores in results.items():
            if system.startswith("hybrid-"):
                console.print(
                    f"{system} nDCG@10 / better single component: "
                    f"{scores['ndcg@10'] / single:.3f}"
                )
    if args.json:
        Path(args.json).write_text(
            json.dumps(results, indent=2) + "\n", encoding="utf-8"
        )
    return 0


def _parse_values(text: str, convert: Any, option: str) -> list[Any]:
    """Read a comma-separated option value such as `10,20,40` into a list."""
    values = []
    for part in text.split(","):
        if not part.strip():
            continue
        try:
            values.append(convert(part.strip()))
        except ValueError as error:
            raise ConfigurationError(
                f"{option} value {part.strip()!r} is not a valid "
                f"{convert.__name__}; give a comma-separated list such as "
                f"{option} {_EXAMPLES[option]}"
            ) from error
    return values


_EXAMPLES = {
    "--rank-constants": "20,60",
    "--knn-weights": "0.3,0.5,0.7",
    "--num-candidates": "50,100",
}


def _tune_judgments(args: argparse.Namespace) -> list[Any]:
    from .clicks import read_click_judgments
    from .evaluation import read_judgments

    if (args.judgments is None) == (args.clicks is None):
        raise ConfigurationError(
            "give a judgments file or --clicks with a click log, one of the two"
        )
    if args.judgments is not None:
        return read_judgments(Path(args.judgments))
    judgments = read_click_judgments(
        Path(args.clicks), position_bias=args.position_bias, smoothing=args.smoothing
    )
    console.print(f"Derived judgments for {len(judgments)} queries from {args.clicks}")
    return judgments


def _cmd_tune(args: argparse.Namespace) -> int:
    from .tune import Grid, tune

    settings = _settings(args)
    settings.require_index()
    if args.write is not None:
        _check_writable(args.write)
    judgments = _tune_judgments(args)
    grid = Grid(
        fusions=_parse_values(args.fusions, str, "--fusions"),
        rank_constants=_parse_values(args.rank_constants, int, "--rank-constants"),
        knn_weights=_parse_values(args.knn_weights, float, "--knn-weights"),
        windows=_parse_values(args.num_candidates, int, "--num-candidates"),
        categorical_weights=(
            _parse_values(args.categorical_weights, float, "--categorical-weights")
            if args.categorical_weights
            else (None,)
        ),
    )
    with _progress_bar() as bar:
        tasks: dict[str, TaskID] = {}

        def on_progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                label = "Searching" if stage == "search" else "Scoring settings"
                tasks[stage] = bar.add_task(label, total=total, rate="")
            bar.update(tasks[stage], completed=done)

        result = tune(
            judgments,
            settings=settings,
            grid=grid,
            metric=args.metric,
            holdout=args.holdout,
            seed=args.seed,
            skip_missing=args.skip_missing,
            progress=on_progress,
        )
    _print_tune(result)

    written: Path | None = None
    worse = result.chosen_scores[result.metric] < result.baseline_scores[result.metric]
    if args.write is not None and worse:
        errors.print(
            "Not written: the current settings do better on the held-out queries, "
            "so they stay as they are",
            markup=False,
            highlight=False,
        )
    elif args.write is not None:
        written = _write_tuned(args.write, result.chosen.settings_values())
    if args.json:
        report = {**result.to_dict(), "written_to": str(written) if written else None}
        Path(args.json).write_text(
            json.dumps(report, indent=2) + "\n", encoding="utf-8"
        )
    return 0


def _print_tune(result: Any) -> None:
    from .evaluation import METRICS

    table = Table(
        title=f"Held-out scores on {result.heldout_queries} queries "
        f"(chosen on {result.tune_queries} others, {result.grid_size} settings tried)"
    )
    table.add_column("")
    table.add_column("settings")
    for metric in METRICS:
        table.add_column(metric, justify="right")
    for label, setting, scores in (
        ("current", result.baseline, result.baseline_scores),
        ("chosen", result.chosen, result.chosen_scores),
    ):
        table.add_row(
            label,
            setting.describe(),
            *(f"{scores[metric]:.4f}" for metric in METRICS),
        )
    console.print(table)
    if result.skipped_queries:
        errors.print(
            f"left out {len(result.skipped_queries)} queries whose document is not "
            "in the index"
        )
    metric = result.metric
    if result.chosen_scores[metric] < result.baseline_scores[metric]:
        errors.print(
            f"warning: the chosen settings score a lower {metric} than the current "
            "ones on the held-out queries; more judged queries may give a better choice",
            markup=False,
            highlight=False,
        )


def _check_writable(target: str) -> None:
    """Fail before any search when the settings file cannot be written."""
    from .settings_file import settings_file_path

    path = Path(target) if target else settings_file_path()
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise ConfigurationError(
            f"cannot write the settings file {str(path)!r}: folder {str(folder)!r} "
            "does not exist or is not writable; give another path to --write"
        )
    if path.is_dir():
        raise ConfigurationError(
            f"--write {str(path)!r} is a folder; give a file path such as os-mlt.json"
        )


def _write_tuned(target: str, values: dict[str, Any]) -> Path:
    from .settings_file import settings_file_path, update_settings_file

    path = Path(target) if target else settings_file_path()
    update_settings_file(path, values, settings_cls=Settings)
    console.print(f"Wrote {', '.join(values)} to {path}")
    variables = {name.upper() for name in os.environ}
    for key in values:
        variable = f"OS_MLT_{key.upper()}"
        if variable in variables:
            errors.print(
                f"warning: {variable} is set and overrides {key} in {path}",
                markup=False,
                highlight=False,
            )
    return path


def _add_categorical_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--categorical-fields",
        dest="categorical_fields",
        help="keyword fields whose values shared with the example raise a hit, "
        "comma-separated, e.g. section,tags (env OS_MLT_CATEGORICAL_FIELDS)",
    )
    parser.add_argument(
        "--categorical-weight",
        dest="categorical_weight",
        type=float,
        help="strength of that raise (env OS_MLT_CATEGORICAL_WEIGHT)",
    )


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of `os-mlt`."""
    from .clicks import DEFAULT_POSITION_BIAS, DEFAULT_SMOOTHING
    from .evaluation import METRICS
    from .tune import (
        DEFAULT_HOLDOUT,
        DEFAULT_KNN_WEIGHTS,
        DEFAULT_METRIC,
        DEFAULT_RANK_CONSTANTS,
        DEFAULT_SEED,
        DEFAULT_WINDOWS,
    )

    parser = argparse.ArgumentParser(
        prog="os-mlt", description="Semantic 'more like this' for OpenSearch indices."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log each step")
    commands = parser.add_subparsers(dest="command", required=True)

    node = commands.add_parser(
        "node", help="manage a local OpenSearch node with the k-NN plugin"
    )
    node.add_argument("action", choices=["start", "stop", "status"])
    node.add_argument(
        "--port", type=int, help="HTTP port (env OS_MLT_NODE_HTTP_PORT; default 9200)"
    )
    node.add_argument("--version", help="OpenSearch version (env OS_MLT_NODE_VERSION)")
    node.add_argument(
        "--plugin",
        action="append",
        choices=sorted(PLUGINS),
        help="also install this plugin and those it needs, in the version made for "
        "--version; repeatable (env OS_MLT_NODE_PLUGINS, a JSON list). "
        "neural-search enables server-side fusion",
    )
    node.set_defaults(handler=_cmd_node)

    backfill = commands.add_parser(
        "backfill", help="embed documents and store their vectors"
    )
    _add_connection_options(backfill)
    backfill.add_argument(
        "--migrate",
        action="store_true",
        help="if the alias's index lacks index.knn, copy it into a k-NN index and move the alias",
    )
    backfill.add_argument(
        "--dry-run",
        action="store_true",
        help="report what a run would embed; change nothing",
    )
    backfill.set_defaults(handler=_cmd_backfill)

    similar = commands.add_parser(
        "similar", help="find documents like one or more example documents"
    )
    _add_connection_options(similar)
    _add_categorical_options(similar)
    similar.add_argument(
        "doc_id", nargs="*", help="_id of the example document; several are allowed"
    )
    similar.add_argument(
        "--unlike",
        action="append",
        metavar="ID",
        help="a negative example: results move away from it; repeatable",
    )
    similar.add_argument(
        "--example-vectors",
        choices=["average", "best"],
        default="average",
        help="with several examples: search with their mean vector, or once per "
        "example keeping each hit's closest (default average)",
    )
    similar.add_argument(
        "--diversity",
        type=float,
        help="reorder by maximal marginal relevance: 0 keeps the order, 1 is most "
        "diverse; 0.3 is a common choice",
    )
    similar.add_argument(
        "--recency",
        metavar="FIELD:HALF_LIFE",
        help="halve relevance per HALF_LIFE of age of a date field, e.g. released:180d",
    )
    similar.add_argument(
        "--boost",
        action="append",
        metavar="FIELD[:WEIGHT[:MODIFIER]]",
        help="raise relevance with a numeric field, up to 1 + WEIGHT times "
        "(default 0.5; negative favours small values); MODIFIER log1p or linear; "
        "repeatable",
    )
    similar.add_argument(
        "--text", help="find documents like this text instead of a document"
    )
    similar.add_argument(
        "--exclude-same",
        action="append",
        metavar="FIELD",
        help="leave out documents sharing this field's value with the example; repeatable",
    )
    similar.add_argument(
        "--max-similarity",
        type=float,
        help="leave out near-duplicates whose cosine similarity reaches this, e.g. 0.98",
    )
    similar.add_argument(
        "--id-field", help="look the id up in this field (a business key)"
    )
    similar.add_argument(
        "--offset",
        type=int,
        default=0,
        help="fused hits to skip, for paging (default 0)",
    )
    similar.add_argument("-k", type=int, default=10, help="hits to return (default 10)")
    similar.add_argument(
        "--filter",
        action="append",
        metavar="FILTER",
        help="FIELD=VALUE, FIELD=V1,V2, FIELD>=N, FIELD<DATE, FIELD=*, FIELD!=VALUE, not:FILTER; repeatable",
    )
    similar.add_argument("--fields", help="_source fields to show, comma-separated")
    # The fusion options default to None, so that hybrid_similar takes them
    # from the settings, which read environment variables and the settings file.
    similar.add_argument(
        "--num-candidates",
        type=int,
        help="hits per component before fusion (default: settings, else 100)",
    )
    similar.add_argument(
        "--fusion",
        choices=FUSIONS,
        help="rrf fuses ranks; the others normalize scores and take a weighted "
        "mean (default: settings, else rrf)",
    )
    similar.add_argument(
        "--rank-constant",
        type=int,
        help="RRF constant (default: settings, else 60)",
    )
    similar.add_argument(
        "--weights",
        help="score fusion weights, e.g. knn=0.7,bm25=0.3 (default: settings, else 1 each)",
    )
    similar.add_argument(
        "--execution",
        choices=["auto", "server", "client"],
        default="auto",
        help="where to fuse: server runs one hybrid query under a search pipeline "
        "(needs the neural-search plugin), client sends one _msearch; auto picks "
        "server when the cluster can (default auto)",
    )
    similar.add_argument(
        "--dsl", action="store_true", help="print the Query DSL sent, for Dev Tools"
    )
    similar.add_argument("--json", action="store_true", help="print hits as JSON")
    similar.set_defaults(handler=_cmd_similar)

    load = commands.add_parser(
        "load", help="load a JSON-lines corpus into a new index without vectors"
    )
    _add_connection_options(load)
    load.add_argument("file", help=".jsonl or .jsonl.gz file, one JSON object per line")
    load.add_argument(
        "--limit",
        type=int,
        default=0,
        help="random sample of this many records; 0 loads all",
    )
    load.add_argument("--seed", type=int, default=13, help="seed of the random sample")
    load.add_argument("--include", help="ids always loaded, comma-separated")
    load.add_argument(
        "--id-field",
        default="id",
        help="field that contains the document _id (default id)",
    )
    load.set_defaults(handler=_cmd_load)

    demo = commands.add_parser(
        "demo", help="start a local node, load a corpus, backfill, show results"
    )
    demo.add_argument(
        "--corpus",
        default=str(Path("..") / "shared" / "corpora" / "debian-packages.jsonl.gz"),
        help="JSON-lines corpus with id, title and body fields",
    )
    demo.add_argument(
        "--limit",
        type=int,
        default=5000,
        help="documents to sample; 0 loads the whole corpus",
    )
    demo.add_argument(
        "--show",
        default="python3-scipy,samtools,vlc",
        help="ids whose similar documents are printed, comma-separated",
    )
    demo.add_argument(
        "--port", type=int, default=9200, help="HTTP port of the local node"
    )
    demo.add_argument(
        "--index-name",
        default=None,
        help="alias to load into (default: corpus file name)",
    )
    demo.set_defaults(handler=_cmd_demo)

    judgments = commands.add_parser(
        "judgments",
        help="build graded judgments from the tag overlap of a JSON-lines corpus",
    )
    judgments.add_argument(
        "corpus", help=".jsonl or .jsonl.gz file with id and a tag list"
    )
    judgments.add_argument(
        "--out", required=True, help="judgments file to write (JSON lines)"
    )
    judgments.add_argument(
        "--queries", type=int, default=500, help="query documents (default 500)"
    )
    judgments.add_argument(
        "--seed", type=int, default=13, help="seed of the query sample"
    )
    judgments.add_argument(
        "--min-tags", type=int, default=3, help="tags a query needs (default 3)"
    )
    judgments.add_argument(
        "--tag-field", default="tags", help="list field compared (default tags)"
    )
    judgments.add_argument(
        "--group-field",
        default="source",
        help="documents sharing this field's value with the query are excluded (default source)",
    )
    judgments.set_defaults(handler=_cmd_judgments)

    evaluation = commands.add_parser(
        "eval", help="score BM25, k-NN and hybrid rankings against a judgments file"
    )
    _add_connection_options(evaluation)
    _add_categorical_options(evaluation)
    evaluation.add_argument(
        "judgments", help="judgments file, as written by os-mlt judgments"
    )
    evaluation.add_argument(
        "--json", metavar="FILE", help="also write the scores as JSON"
    )
    evaluation.add_argument(
        "--num-candidates",
        type=int,
        default=100,
        help="hits per component (default 100)",
    )
    evaluation.add_argument(
        "--rank-constant", type=int, default=60, help="RRF constant"
    )
    evaluation.add_argument(
        "--weights", help="score fusion weights, e.g. knn=0.7,bm25=0.3"
    )
    evaluation.set_defaults(handler=_cmd_eval)

    tuning = commands.add_parser(
        "tune",
        help="choose fusion settings by a grid search on judgments or a click log",
    )
    _add_connection_options(tuning)
    _add_categorical_options(tuning)
    tuning.add_argument(
        "judgments", nargs="?", help="judgments file, as written by os-mlt judgments"
    )
    tuning.add_argument(
        "--clicks",
        metavar="FILE",
        help="click log (JSON lines) to derive judgments from, in place of a judgments file",
    )
    tuning.add_argument(
        "--position-bias",
        type=float,
        default=DEFAULT_POSITION_BIAS,
        help="--clicks: users look at position r with probability (1/r)^this; "
        f"0 ignores position (default {DEFAULT_POSITION_BIAS:g})",
    )
    tuning.add_argument(
        "--smoothing",
        type=float,
        default=DEFAULT_SMOOTHING,
        help="--clicks: looks without a click added to each document "
        f"(default {DEFAULT_SMOOTHING:g})",
    )
    tuning.add_argument(
        "--holdout",
        type=float,
        default=DEFAULT_HOLDOUT,
        help="fraction of queries held out to score the choice "
        f"(default {DEFAULT_HOLDOUT:g})",
    )
    tuning.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        help=f"seed of the split into tune and held-out queries (default {DEFAULT_SEED})",
    )
    tuning.add_argument(
        "--metric",
        choices=METRICS,
        default=DEFAULT_METRIC,
        help=f"metric maximized on the tune queries (default {DEFAULT_METRIC})",
    )
    tuning.add_argument(
        "--fusions",
        default=",".join(FUSIONS),
        help="fusion methods to try, comma-separated (default all)",
    )
    tuning.add_argument(
        "--rank-constants",
        default=",".join(str(value) for value in DEFAULT_RANK_CONSTANTS),
        help="RRF constants to try (default %(default)s)",
    )
    tuning.add_argument(
        "--knn-weights",
        default=",".join(f"{value:g}" for value in DEFAULT_KNN_WEIGHTS),
        help="k-NN weights to try for score fusion; BM25 weighs 1 minus each "
        "(default %(default)s)",
    )
    tuning.add_argument(
        "--categorical-weights",
        help="categorical weights to try when categorical fields are set "
        "(default 0,0.5,1,2,4)",
    )
    tuning.add_argument(
        "--num-candidates",
        default=",".join(str(value) for value in DEFAULT_WINDOWS),
        help="hits per component to try (default %(default)s)",
    )
    tuning.add_argument(
        "--skip-missing",
        action="store_true",
        help="leave out queries whose document is not in the index",
    )
    tuning.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    tuning.add_argument(
        "--write",
        nargs="?",
        const="",
        metavar="PATH",
        help="write the chosen settings into this JSON settings file, keeping its "
        "other keys (default: the file named by OS_MLT_CONFIG_FILE, else os-mlt.json)",
    )
    tuning.set_defaults(handler=_cmd_tune)

    templates = commands.add_parser(
        "templates",
        help="install index templates that give new indices the vector field",
    )
    templates.add_argument("action", choices=["install"])
    _add_connection_options(templates)
    templates.add_argument(
        "--pattern",
        action="append",
        metavar="PATTERN",
        help="index pattern such as 'docs-*'; repeatable",
    )
    templates.add_argument(
        "--name", default="os-mlt", help="index template name (default os-mlt)"
    )
    templates.add_argument(
        "--priority",
        type=int,
        default=200,
        help="index template priority (default 200)",
    )
    templates.add_argument(
        "--dimension", type=int, help="vector dimension; default: the model's"
    )
    templates.set_defaults(handler=_cmd_templates)

    bench = commands.add_parser(
        "bench", help="measure throughput or latency against a baseline"
    )
    bench.add_argument("kind", choices=["backfill", "scan", "query"])
    bench.add_argument(
        "--corpus",
        default=demo.get_default("corpus"),
        help="JSON-lines corpus with id, title, body",
    )
    bench.add_argument(
        "--limit",
        type=int,
        default=5000,
        help="documents to sample; 0 uses the whole corpus",
    )
    bench.add_argument(
        "--queries",
        type=int,
        default=200,
        help="queries timed per system (bench query)",
    )
    bench.add_argument("--hosts", help="cluster URLs; default: a local node on --port")
    bench.add_argument(
        "--index",
        dest="index_name",
        metavar="NAME",
        help="bench scan: read this existing index instead of a loaded sample",
    )
    bench.add_argument(
        "--keep-index",
        metavar="NAME",
        help="bench backfill: keep the index under this alias",
    )
    bench.add_argument(
        "--port", type=int, default=9200, help="HTTP port of the local node"
    )
    bench.set_defaults(handler=_cmd_bench)
    return parser


def _describe_cluster_error(error: TransportError) -> str:
    """Return one line with the cluster's own reason for a failed request."""
    info = error.info if isinstance(error.info, dict) else {}
    body = info.get("error", {})
    if isinstance(body, dict):
        root = (body.get("root_cause") or [body])[0]
        reason = root.get("reason") or body.get("reason") or body.get("type")
        kind = root.get("type") or body.get("type")
    else:
        reason, kind = str(body or error.error), None
    text = f"the cluster rejected the request ({error.status_code} {kind}): {reason}"
    if kind == "index_not_found_exception":
        text += (
            "; check the index name (GET _cat/indices and GET _cat/aliases list them)"
        )
    elif kind == "index_closed_exception":
        index = root.get("index") if isinstance(body, dict) else None
        text += f"; open the index (POST {index or '<index>'}/_open) and run again"
    elif kind == "cluster_block_exception":
        text += (
            "; GET _all/_settings?filter_path=**.blocks lists the blocks, and PUT "
            '<index>/_settings {"index.blocks.<block>": null} clears one'
        )
    return text[:1000]


def _describe_validation_error(error: ValidationError) -> list[str]:
    """Return one line per invalid setting: its name, value, variable and the reason.

    The value and the variable are named only for `Settings` and
    `NodeSettings`, whose fields and variable prefix are known here.
    """
    from .node.settings import NodeSettings
    from .settings_file import describe_error, rejected_value

    models: dict[str, type[BaseSettings]] = {
        model.__name__: model for model in (Settings, NodeSettings)
    }
    model = models.get(error.title)
    lines = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"]) or "settings"
        line = f"invalid {location}"
        if model is not None:
            value = rejected_value(model, item)
            if value is not None:
                line += f" value {value}"
            variable = _source_variable(model, item)
            if variable is not None:
                line += f" from {variable}"
        lines.append(f"{line}: {describe_error(item)}")
    return lines


def _source_variable(model: type[BaseSettings], error: ErrorDetails) -> str | None:
    """Return the environment variable that set the rejected value, or None.

    A variable counts when it sets the error's top-level field and either
    equals the rejected input or the error lies inside that field, such as
    `weights.knn`. A command line option that overrides the variable with
    another value does not match, so the variable is not named for it.
    """
    location = error["loc"]
    if not location:
        return None
    prefix = model.model_config.get("env_prefix", "")
    expected_name = f"{prefix}{location[0]}".upper()
    for variable, text in os.environ.items():
        # pydantic-settings matches variable names in any letter case.
        if variable.upper() != expected_name:
            continue
        if len(location) > 1 or text == error["input"]:
            return variable
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run `os-mlt` and return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        # opensearch-py logs each failed attempt with a traceback, and the
        # error that ends the command reports the same failure in one line.
        logging.getLogger("opensearch").setLevel(logging.CRITICAL)
        logging.getLogger("urllib3").setLevel(logging.CRITICAL)
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        status: int = args.handler(args)
    except SettingsError as error:
        # pydantic-settings raises this for an OS_MLT_* value it cannot parse.
        errors.print(f"error: {error}", markup=False, highlight=False)
        return 2
    except ValidationError as error:
        for line in _describe_validation_error(error):
            errors.print(f"error: {line}", markup=False, highlight=False)
        return 2
    except ConfigurationError as error:
        errors.print(f"error: {error}", markup=False, highlight=False)
        return 2
    except OsMltError as error:
        errors.print(f"error: {error}", markup=False, highlight=False)
        return 1
    except OpenSearchConnectionError as error:
        errors.print(
            f"error: cannot reach the cluster ({error.info}); start a local node with "
            "`os-mlt node start` or set OS_MLT_HOSTS to your cluster's URL",
            markup=False,
            highlight=False,
        )
        return 1
    except TransportError as error:
        errors.print(
            f"error: {_describe_cluster_error(error)}", markup=False, highlight=False
        )
        return 1
    except KeyboardInterrupt:
        errors.print("interrupted")
        return 130
    return status


if __name__ == "__main__":
    sys.exit(main())
