"""Backfill: embed the text of every document and write the vector into it.

The run is a pipeline of three threads joined by bounded queues, so reading,
encoding and writing overlap and memory stays flat:

    reader  -- scroll pages -->  encoder (caller's thread)  -- bulk batches -->  writer

Each update carries the `if_seq_no` / `if_primary_term` the document was read
with. A document changed by someone else in the meantime fails with a 409;
it is read again, embedded again and written again, so its final vector
matches its final text.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from numpy.typing import NDArray
from opensearchpy import ConnectionError as TransportConnectionError
from opensearchpy import NotFoundError, OpenSearch, TransportError, helpers

from ..client import resolve_client
from ..encoder import Encoder, document_text, text_hash
from ..errors import IndexBlockedError, OsMltError
from ..settings import Settings
from .mapping import (
    check_text_fields,
    check_writable,
    ensure_vector_mapping,
    resolve_index,
)
from .migrate import (
    Migration,
    carry_write_block,
    check_migratable,
    knn_copy_name,
    knn_missing_error,
    prepare_migration,
    swap_alias,
)
from .reconcile import (
    copy_changes,
    pending_reconciliation,
    reconcile,
    record_swap_point,
)
from .report import MAX_REASON_CHARS, BackfillReport, ItemIssue

logger = logging.getLogger(__name__)

# Scroll pages and bulk batches waiting between threads. Two are enough to
# keep each stage busy while the next one works; more only costs memory.
_QUEUE_SIZE = 2

# Rounds of re-reading documents whose update hit a version conflict.
_CONFLICT_ROUNDS = 5

# Retries of bulk items rejected with 429, with exponential backoff from this delay.
_REJECTED_RETRIES = 6
_REJECTED_BACKOFF_S = 0.5


@dataclass(frozen=True)
class Progress:
    """A progress event.

    Attributes:
        stage: `copy` while documents are copied into a k-NN index, else `embed`.
        done: Documents handled so far in this stage.
        total: Documents to handle in this stage.
    """

    stage: str
    done: int
    total: int


ProgressCallback = Callable[[Progress], None]


@dataclass(frozen=True)
class _Pending:
    """A document read from the index whose vector must be (re)written."""

    index: str
    id: str
    routing: str | None
    seq_no: int
    primary_term: int
    text: str
    text_sha256: str


_STOP = object()

# Parts of a _bulk response the backfill reads; the rest is not sent back.
_BULK_FILTER = "items.*.status,items.*.error"

# Name of the scan's query clause that matches documents without a vector.
_NO_VECTOR = "os_mlt_no_vector"

# Times a lost scroll (expired, or the node restarted) restarts the scan.
_SCAN_RESTARTS = 3


class _ScanLost(Exception):
    """The scroll over the index was lost part way through."""


def backfill(
    settings: Settings | None = None,
    *,
    client: OpenSearch | None = None,
    encoder: Encoder | None = None,
    index: str | None = None,
    migrate: bool = False,
    dry_run: bool = False,
    progress: ProgressCallback | None = None,
) -> BackfillReport:
    """Embed the text fields of every document in an index and store the vectors.

    Adds the `knn_vector` field (dimension from the model) and a meta object
    (model identity and text hash) to the mapping if they are missing, then
    writes a vector into each document whose text or model changed since its
    last vector. Running it again embeds only what changed.

    Args:
        settings: Connection, index and model settings; defaults read `OS_MLT_*`.
        client: An existing client to use instead of one built from `settings`.
        encoder: An already loaded encoder, to share one model between calls.
        index: Index or alias, overriding `settings.index`.
        migrate: For an alias whose index was created without `index.knn: true`,
            copy it into `<index>-knn`, embed there and move the alias. Without
            it such an index raises `MappingError`.
        dry_run: Change nothing: no mapping update, no copy, no writes. The
            report counts in `pending` the documents a run would embed.
        progress: Called with a `Progress` after each page of documents.

    Returns:
        The counts, and the skipped and failed documents with reasons.

    Raises:
        IndexNotFoundError: The index does not exist.
        MappingError: The vector field conflicts with the mapping, or the index
            lacks `index.knn` and cannot be migrated.
        IndexBlockedError: The index rejects writes (read-only or closed).
    """
    settings = settings or Settings()
    name = index or settings.require_index()
    client = resolve_client(client, settings)
    encoder = encoder or Encoder(
        settings.model, device=settings.device, batch_size=settings.encode_batch_size
    )
    started = time.perf_counter()

    target = resolve_index(client, name)
    check_text_fields(client, target, settings.text_fields)
    migration: Migration | None = None
    scan_name = name
    if target.indices_without_knn:
        if not migrate:
            raise knn_missing_error(target)
        if dry_run:
            # A copy would hold no vectors yet, so every document with text is
            # pending. The copy takes the whole index, even behind a filtered alias.
            source = check_migratable(target)
            report = _dry_run(
                client, settings, encoder, name, source, progress, started
            )
            report.migration = Migration(
                alias=name,
                source_index=source,
                new_index=knn_copy_name(source),
                copied=0,
            )
            return report
        migration = prepare_migration(
            client,
            target,
            vector_field=settings.vector_field,
            meta_field=settings.meta_field,
            dimension=encoder.dimension,
            progress=_stage_callback(progress, "copy"),
        )
        scan_name = migration.new_index
    else:
        try:
            check_writable(client, target.indices)
        except IndexBlockedError as error:
            if not dry_run:
                raise
            logger.warning("A real run would stop here: %s", error)
        ensure_vector_mapping(
            client,
            target.indices,
            vector_field=settings.vector_field,
            meta_field=settings.meta_field,
            dimension=encoder.dimension,
            dry_run=dry_run,
        )
        if dry_run:
            if target.is_alias and len(target.indices) == 1:
                pending = pending_reconciliation(client, name, target.indices[0])
                if pending is not None:
                    logger.warning(
                        "The migration from %s stopped right after moving the alias, "
                        "so %s may still show documents deleted from %s meanwhile; "
                        "a real run compares the two indices first",
                        pending.source_index,
                        name,
                        pending.source_index,
                    )
            return _dry_run(client, settings, encoder, name, name, progress, started)

    report = BackfillReport(index=name, migration=migration)
    unfinished: Migration | None = None
    if migration is None and target.is_alias and len(target.indices) == 1:
        # A run stopped between the alias swap and the comparison that follows it.
        unfinished = pending_reconciliation(client, name, target.indices[0])
        if unfinished is not None:
            _reconcile(client, settings, unfinished, report)
    _refresh(client, scan_name)
    report.total = int(client.count(index=scan_name)["count"])
    run = _Run(client, settings, encoder, report, progress)
    run.embed_all(scan_name)
    if migration is not None:
        _catch_up(client, settings, encoder, migration, report)
    client.indices.refresh(index=scan_name)

    if migration is not None and report.ok:
        record_swap_point(client, migration)
        report.moved_aliases = swap_alias(client, migration)
        _reconcile(client, settings, migration, report)
        if report.reconciliation is not None and report.reconciliation.copied:
            _embed_pass(client, settings, encoder, migration.new_index, report)
            client.indices.refresh(index=migration.new_index)
        report.write_block_carried = carry_write_block(client, migration)
    elif unfinished is not None:
        report.write_block_carried = carry_write_block(client, unfinished)
    if migration is not None and not report.alias_moved:
        logger.warning(
            "Alias %s still points at %s because %d documents failed; fix them and run again",
            migration.alias,
            migration.source_index,
            report.failed,
        )
    report.seconds = time.perf_counter() - started
    logger.info("Backfill done: %s", report.summary())
    return report


# Passes that copy and embed documents written to the old index during a
# migration. Each pass is shorter than the one before it unless the old index
# takes writes as fast as the model encodes.
_CATCH_UP_PASSES = 5


def _catch_up(
    client: OpenSearch,
    settings: Settings,
    encoder: Encoder,
    migration: Migration,
    report: BackfillReport,
) -> None:
    """Bring writes made to the old index during the migration into the new one.

    What still lands on the old index after the last pass, and deletions,
    are carried over by the comparison that follows the alias swap.
    """
    ignored = (settings.vector_field, settings.meta_field)
    for _ in range(_CATCH_UP_PASSES):
        copied = copy_changes(client, migration, ignored=ignored)
        _add_failures(report, copied.failed_items, copied.failed)
        if copied.copied == 0:
            return
        logger.info(
            "Copied %d documents written to %s during the migration",
            copied.copied,
            migration.source_index,
        )
        client.indices.refresh(index=migration.new_index)
        _embed_pass(client, settings, encoder, migration.new_index, report)
    logger.warning(
        "%s still took writes after %d catch-up passes; the comparison after the "
        "alias swap copies the rest",
        migration.source_index,
        _CATCH_UP_PASSES,
    )


def _reconcile(
    client: OpenSearch,
    settings: Settings,
    migration: Migration,
    report: BackfillReport,
) -> None:
    result = reconcile(
        client,
        migration,
        vector_field=settings.vector_field,
        meta_field=settings.meta_field,
    )
    report.reconciliation = result
    _add_failures(report, result.failed_items, result.failed)


def _embed_pass(
    client: OpenSearch,
    settings: Settings,
    encoder: Encoder,
    index: str,
    report: BackfillReport,
) -> None:
    """Embed what changed in `index` since the main pass; add the counts to `report`."""
    extra = BackfillReport(index=index)
    _Run(client, settings, encoder, extra, None).embed_all(index)
    report.embedded += extra.embedded
    report.long_texts += extra.long_texts
    report.deleted_meanwhile += extra.deleted_meanwhile
    _add_failures(report, extra.failed_items, extra.failed)


def _add_failures(report: BackfillReport, items: list[ItemIssue], count: int) -> None:
    for issue in items:
        report.add_failed(issue)
    report.failed += count - len(items)


def _dry_run(
    client: OpenSearch,
    settings: Settings,
    encoder: Encoder,
    name: str,
    scan_name: str,
    progress: ProgressCallback | None,
    started: float,
) -> BackfillReport:
    report = BackfillReport(index=name, dry_run=True)
    _refresh(client, scan_name)
    report.total = int(client.count(index=scan_name)["count"])
    _Run(client, settings, encoder, report, progress, dry_run=True).embed_all(scan_name)
    report.seconds = time.perf_counter() - started
    logger.info("Dry run done: %s", report.summary())
    return report


def _refresh(client: OpenSearch, index: str) -> None:
    """Make every document written before the run visible to its scan."""
    try:
        client.indices.refresh(index=index)
    except TransportError as error:
        # A blocked index is reported by the first write, with its fix.
        logger.debug("Refreshing %s before the scan failed: %s", index, error)


def _stage_callback(
    progress: ProgressCallback | None, stage: str
) -> Callable[[int, int], None] | None:
    if progress is None:
        return None
    return lambda done, total: progress(Progress(stage, done, total))


class _Run:
    """State of one backfill: the three pipeline stages and the report they fill."""

    def __init__(
        self,
        client: OpenSearch,
        settings: Settings,
        encoder: Encoder,
        report: BackfillReport,
        progress: ProgressCallback | None,
        *,
        dry_run: bool = False,
    ) -> None:
        self.client = client
        self.dry_run = dry_run
        self.settings = settings
        self.encoder = encoder
        self.report = report
        self.progress = progress
        self.lock = threading.Lock()
        self.conflicts: list[tuple[str, str, str | None]] = []
        self.source_fields = [*settings.text_fields, settings.meta_field]

    # Stage 1: read.

    def _read_pages(self, index: str) -> Iterator[list[dict[str, Any]]]:
        """Yield pages of `index`, from one scroll or from `scan_slices` in parallel."""
        slices = self.settings.scan_slices
        if slices == 1:
            yield from self._read_slice(index, None)
            return

        # Each slice's scroll runs in its own thread and hands pages over
        # through a queue that bounds the pages in memory.
        pages: queue.Queue[object] = queue.Queue(maxsize=slices)
        stopping = threading.Event()

        def read(number: int) -> None:
            try:
                for page in self._read_slice(index, {"id": number, "max": slices}):
                    while not stopping.is_set():
                        try:
                            pages.put(page, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if stopping.is_set():
                        return
                pages.put(_STOP)
            except BaseException as error:  # noqa: BLE001 - raised in the consumer's thread
                pages.put(error)

        readers = [
            threading.Thread(
                target=read, args=(number,), name=f"os-mlt-slice-{number}", daemon=True
            )
            for number in range(slices)
        ]
        for reader in readers:
            reader.start()
        finished = 0
        try:
            while finished < slices:
                item = pages.get()
                if item is _STOP:
                    finished += 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield item  # type: ignore[misc]
        finally:
            stopping.set()
            while any(reader.is_alive() for reader in readers):
                try:
                    pages.get(timeout=0.1)
                except queue.Empty:
                    pass

    def _read_slice(
        self, index: str, part: dict[str, int] | None
    ) -> Iterator[list[dict[str, Any]]]:
        """Yield pages of one scroll over `index`, or over one slice of it."""
        page: list[dict[str, Any]] = []
        body: dict[str, Any] = {
            "_source": self.source_fields,
            "seq_no_primary_term": True,
            "query": self._scan_query(),
        }
        if part is not None:
            body["slice"] = part
        hits = helpers.scan(
            self.client,
            index=index,
            query=body,
            size=self.settings.scan_batch_size,
            scroll=self.settings.scroll_keep_alive,
        )
        try:
            for hit in hits:
                page.append(hit)
                if len(page) >= self.settings.scan_batch_size:
                    yield page
                    page = []
        except (NotFoundError, TransportConnectionError) as error:
            # A scroll context is gone when it expired or the node restarted.
            raise _ScanLost(f"{type(error).__name__}: {error}") from error
        if page:
            yield page

    def _scan_query(self) -> dict[str, Any]:
        """Match every document, and name those without an indexed vector.

        The name shows up in each hit's `matched_queries`, so a document whose
        meta object matches but whose vector is gone (for example after a
        partial update of an index whose mapping leaves the vector out of
        `_source`) is embedded again.
        """
        missing = {"exists": {"field": self.settings.vector_field}}
        return {
            "bool": {
                "should": [
                    {"bool": {"must_not": [missing], "_name": _NO_VECTOR}},
                    {"match_all": {}},
                ]
            }
        }

    # Stage 2: select and encode.

    def _select(self, hit: Mapping[str, Any]) -> _Pending | None:
        """Return the document when it needs a new vector, else count it and return None."""
        source = hit.get("_source", {})
        text = document_text(source, self.settings.text_fields)
        if not text:
            fields = ", ".join(self.settings.text_fields)
            self.report.add_skipped(
                ItemIssue(
                    id=hit["_id"], index=hit["_index"], reason=f"no text in {fields}"
                )
            )
            return None
        digest = text_hash(text)
        meta = source.get(self.settings.meta_field) or {}
        if (
            meta.get("text_sha256") == digest
            and meta.get("model") == self.encoder.identity
            and _NO_VECTOR not in hit.get("matched_queries", ())
        ):
            self.report.unchanged += 1
            return None
        return _Pending(
            index=hit["_index"],
            id=hit["_id"],
            routing=hit.get("_routing"),
            seq_no=int(hit["_seq_no"]),
            primary_term=int(hit["_primary_term"]),
            text=text,
            text_sha256=digest,
        )

    def _encode(
        self, pending: list[_Pending]
    ) -> list[tuple[_Pending, NDArray[np.float32]]]:
        vectors, long_texts = self.encoder.encode_counting_long(
            [item.text for item in pending]
        )
        self.report.long_texts += long_texts
        norms = np.linalg.norm(vectors, axis=1)
        batch: list[tuple[_Pending, NDArray[np.float32]]] = []
        for item, vector, norm in zip(pending, vectors, norms, strict=True):
            # Cosine space rejects a zero vector, and NaN would poison the graph.
            if not np.isfinite(norm) or norm == 0:
                self.report.add_skipped(
                    ItemIssue(
                        id=item.id,
                        index=item.index,
                        reason="model returned a zero vector",
                    )
                )
                continue
            batch.append((item, vector))
        return batch

    # Stage 3: write.

    def _bulk_body(self, batch: list[tuple[_Pending, NDArray[np.float32]]]) -> bytes:
        # orjson writes float32 arrays in their shortest form, about half the
        # bytes of json.dumps on a list of Python floats, and several times faster.
        lines: list[bytes] = []
        for item, vector in batch:
            action: dict[str, Any] = {
                "_index": item.index,
                "_id": item.id,
                "if_seq_no": item.seq_no,
                "if_primary_term": item.primary_term,
            }
            if item.routing is not None:
                action["routing"] = item.routing
            doc = {
                self.settings.vector_field: vector,
                self.settings.meta_field: {
                    "model": self.encoder.identity,
                    "text_sha256": item.text_sha256,
                },
            }
            lines.append(orjson.dumps({"update": action}))
            lines.append(orjson.dumps({"doc": doc}, option=orjson.OPT_SERIALIZE_NUMPY))
        return b"\n".join(lines) + b"\n"

    def _bulk(self, body: bytes) -> Any:
        """Send one `_bulk` request, waiting out a cluster that is restarting."""
        try:
            return self.client.bulk(body=body, filter_path=_BULK_FILTER)
        except TransportConnectionError as error:
            logger.warning("Bulk request failed (%s); waiting for the cluster", error)
            _wait_for_cluster(self.client)
            # Updates that landed before the failure now conflict on if_seq_no
            # and are read again, so resending the whole batch is safe.
            return self.client.bulk(body=body, filter_path=_BULK_FILTER)

    def _write(self, batch: list[tuple[_Pending, NDArray[np.float32]]]) -> None:
        for attempt in range(_REJECTED_RETRIES + 1):
            response = self._bulk(self._bulk_body(batch))
            rejected = self._collect(
                batch, response, last_attempt=attempt == _REJECTED_RETRIES
            )
            if not rejected:
                return
            delay = _REJECTED_BACKOFF_S * 2**attempt
            logger.warning(
                "%d bulk items rejected with 429; retrying in %.1f s (attempt %d of %d)",
                len(rejected),
                delay,
                attempt + 1,
                _REJECTED_RETRIES,
            )
            time.sleep(delay)
            batch = rejected

    def _collect(
        self,
        batch: list[tuple[_Pending, NDArray[np.float32]]],
        response: Mapping[str, Any],
        *,
        last_attempt: bool,
    ) -> list[tuple[_Pending, NDArray[np.float32]]]:
        """Record the outcome of each bulk item; return those to retry after a 429."""
        rejected: list[tuple[_Pending, NDArray[np.float32]]] = []
        for (item, vector), result in zip(batch, response["items"], strict=True):
            outcome = result["update"]
            status = int(outcome.get("status", 500))
            error = outcome.get("error")
            if error is None:
                with self.lock:
                    self.report.embedded += 1
            elif status == 409:
                with self.lock:
                    self.conflicts.append((item.index, item.id, item.routing))
            elif status == 404 and error.get("type") == "document_missing_exception":
                # Deleted by someone else after it was read: nothing to embed.
                with self.lock:
                    self.report.deleted_meanwhile += 1
            elif error.get("type") in (
                "cluster_block_exception",
                "index_closed_exception",
            ):
                # Checked before the 429 retry: the flood-stage block returns
                # 429 but lifts only once disk space is freed.
                raise IndexBlockedError(
                    f"index {item.index!r} rejects writes: {_reason(error)}. "
                    f"{_unblock_hint(item.index, str(error.get('reason', '')))}; "
                    "then run the backfill again"
                )
            elif status == 429 and not last_attempt:
                rejected.append((item, vector))
            else:
                with self.lock:
                    self.report.add_failed(
                        ItemIssue(
                            id=item.id,
                            index=item.index,
                            status=status,
                            reason=_reason(error),
                        )
                    )
        return rejected

    # The pipeline.

    def embed_all(self, index: str) -> None:
        """Run the read, encode and write stages over every document of `index`."""
        for attempt in range(_SCAN_RESTARTS + 1):
            try:
                self._pipeline(self._read_pages(index))
                break
            except _ScanLost as lost:
                if attempt == _SCAN_RESTARTS:
                    raise OsMltError(
                        f"reading {index!r} failed {attempt + 1} times ({lost}); if the "
                        "scroll expired, raise OS_MLT_SCROLL_KEEP_ALIVE. Run again: "
                        "documents already embedded are skipped"
                    ) from lost.__cause__
                logger.warning(
                    "Reading %s failed (%s); scanning it again from the start, "
                    "skipping the documents already embedded",
                    index,
                    lost,
                )
                _wait_for_cluster(self.client)
                self._reset_for_rescan()
        self._resolve_conflicts()

    def _reset_for_rescan(self) -> None:
        """Prepare the counts for a second pass over the whole index.

        The pipeline has drained, so every write of the first pass has landed.
        The second pass reads the documents embedded in the first as unchanged,
        so they are subtracted from `unchanged` up front. Everything else is
        counted afresh, and what failed or conflicted is tried again.
        """
        report = self.report
        report.unchanged = -report.embedded
        report.scanned = 0
        report.pending = 0
        report.skipped = 0
        report.skipped_items.clear()
        report.failed = 0
        report.failed_items.clear()
        self.conflicts.clear()

    def _resolve_conflicts(self) -> None:
        for _ in range(_CONFLICT_ROUNDS):
            if not self.conflicts:
                return
            conflicts, self.conflicts = self.conflicts, []
            logger.info(
                "Re-reading %d documents changed during the backfill", len(conflicts)
            )
            self._pipeline(iter([self._reread(conflicts)]), count_scanned=False)
        for index_name, doc_id, _ in self.conflicts:
            self.report.add_failed(
                ItemIssue(
                    id=doc_id,
                    index=index_name,
                    status=409,
                    reason=f"document kept changing during {_CONFLICT_ROUNDS} rewrites; run again",
                )
            )

    def _reread(self, keys: list[tuple[str, str, str | None]]) -> list[dict[str, Any]]:
        docs: list[dict[str, Any]] = []
        for index, doc_id, routing in keys:
            entry: dict[str, Any] = {"_index": index, "_id": doc_id}
            if routing is not None:
                entry["routing"] = routing
            docs.append(entry)
        response = self.client.mget(
            body={"docs": docs}, _source_includes=self.source_fields
        )
        hits = []
        for doc in response["docs"]:
            if doc.get("found"):
                hits.append(doc)
            else:
                self.report.deleted_meanwhile += 1
        return hits

    def _pipeline(
        self, pages: Iterator[list[dict[str, Any]]], *, count_scanned: bool = True
    ) -> None:
        page_queue: queue.Queue[object] = queue.Queue(maxsize=_QUEUE_SIZE)
        write_queue: queue.Queue[object] = queue.Queue(maxsize=_QUEUE_SIZE)
        read_errors: list[BaseException] = []
        write_errors: list[BaseException] = []
        cancelled = threading.Event()

        def read() -> None:
            try:
                for page in pages:
                    if cancelled.is_set():
                        return
                    page_queue.put(page)
            except BaseException as error:  # noqa: BLE001 - handed to the caller's thread
                read_errors.append(error)
            finally:
                page_queue.put(_STOP)

        def write() -> None:
            # Batches already encoded are still written after a read error, so
            # a failed run keeps its progress; only a write error stops writing.
            while True:
                batch = write_queue.get()
                if batch is _STOP:
                    return
                if write_errors:
                    continue  # drain so the encoder never blocks on a full queue
                try:
                    self._write(batch)  # type: ignore[arg-type]
                except BaseException as error:  # noqa: BLE001 - raised in the caller's thread
                    write_errors.append(error)
                    cancelled.set()

        reader = threading.Thread(target=read, name="os-mlt-reader", daemon=True)
        writer = threading.Thread(target=write, name="os-mlt-writer", daemon=True)
        reader.start()
        writer.start()
        try:
            self._encode_pages(page_queue, write_queue, cancelled, count_scanned)
        finally:
            cancelled.set()
            write_queue.put(_STOP)
            writer.join()
            while reader.is_alive():
                try:
                    page_queue.get(timeout=0.1)
                except queue.Empty:
                    pass
            reader.join()
        if write_errors:
            raise write_errors[0]
        if read_errors:
            raise read_errors[0]

    def _encode_pages(
        self,
        page_queue: queue.Queue[object],
        write_queue: queue.Queue[object],
        cancelled: threading.Event,
        count_scanned: bool,
    ) -> None:
        bulk_size = self.settings.bulk_batch_size
        while not cancelled.is_set():
            page = page_queue.get()
            if page is _STOP:
                return
            hits: list[dict[str, Any]] = page  # type: ignore[assignment]
            pending = [item for item in map(self._select, hits) if item is not None]
            if count_scanned:
                self.report.scanned += len(hits)
                self.report.pending += len(pending)
            if self.dry_run:
                pending = []
            for start in range(0, len(pending), bulk_size):
                batch = self._encode(pending[start : start + bulk_size])
                if batch:
                    write_queue.put(batch)
            if self.progress is not None and count_scanned:
                self.progress(Progress("embed", self.report.scanned, self.report.total))


# How long a backfill waits for a cluster that stopped responding, in seconds.
_CLUSTER_WAIT_S = 180.0


def _wait_for_cluster(client: OpenSearch, timeout_s: float = _CLUSTER_WAIT_S) -> None:
    """Block until the cluster reports yellow or green health, or raise.

    Raises:
        OsMltError: The cluster did not come back within `timeout_s` seconds.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            health = client.cluster.health()
            if health.get("status") in ("yellow", "green"):
                return
        except TransportConnectionError:
            pass
        if time.monotonic() > deadline:
            raise OsMltError(
                f"the cluster did not reach yellow health within {timeout_s:.0f} s; "
                "check that it runs, then run the backfill again"
            )
        time.sleep(2.0)


def _unblock_hint(index: str, reason: str) -> str:
    """Name the setting that clears the block described in `reason`."""
    if "read_only_allow_delete" in reason or "flood" in reason:
        return (
            "If the flood-stage disk watermark set it, free disk space first; "
            f"clear the block with PUT {index}/_settings "
            '{"index.blocks.read_only_allow_delete": null}'
        )
    if "index write" in reason:
        return f'Clear the write block with PUT {index}/_settings {{"index.blocks.write": false}}'
    if "read-only" in reason or "read_only" in reason:
        return f'Clear the block with PUT {index}/_settings {{"index.blocks.read_only": false}}'
    if "closed" in reason:
        return f"Open the index with POST {index}/_open"
    return f"Check the blocks with GET {index}/_settings?filter_path=**.blocks"


# Appended to the reason of an update that k-NN's derived source could not
# serve: k-NN 3.5 can fail to rebuild a stored vector after segment merges.
_DERIVED_SOURCE_HINT = (
    "; k-NN could not rebuild the stored vector (derived source, k-NN issue 3458): "
    "reindex into an index created with index.knn.derived_source.enabled: false"
)


def _reason(error: Mapping[str, Any]) -> str:
    text = f"{error.get('type', 'error')}: {error.get('reason', '')}"
    caused_by = error.get("caused_by")
    if isinstance(caused_by, Mapping):
        text += f" (caused by {caused_by.get('type')}: {caused_by.get('reason')})"
    if "already_closed_exception" in text:
        hint = _DERIVED_SOURCE_HINT
        return text[: MAX_REASON_CHARS - len(hint)] + hint
    return text[:MAX_REASON_CHARS]
