"""Counts and per-document outcomes of a backfill run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .migrate import Migration

if TYPE_CHECKING:
    from .reconcile import Reconciliation

# Per-document issues kept in a report; the counts stay exact past this.
MAX_LISTED_ISSUES = 100

# Characters of a server error reason kept per document.
MAX_REASON_CHARS = 300


@dataclass(frozen=True)
class ItemIssue:
    """A document the backfill skipped or failed to update.

    Attributes:
        id: The document `_id`.
        index: The concrete index that contains it.
        reason: Why, in one line, capped at `MAX_REASON_CHARS`.
        status: HTTP status of the failed bulk item; None for a skipped document.
    """

    id: str
    index: str
    reason: str
    status: int | None = None


@dataclass
class BackfillReport:
    """Outcome of `backfill`.

    Attributes:
        index: The index or alias the backfill ran on.
        total: Documents in the index when the run started.
        scanned: Documents read.
        pending: Documents whose text or model changed since their last vector,
            or that have none: the ones a run embeds.
        embedded: Documents that got a new vector.
        unchanged: Documents whose vector already matched their text and the model.
        skipped: Documents with no text to embed.
        long_texts: Embedded documents longer than the model reads at once,
            encoded in windows whose vectors were averaged.
        failed: Documents whose update failed.
        deleted_meanwhile: Documents deleted by someone else between their read
            and their vector write; they need no vector.
        skipped_items: The first skipped documents, with reasons.
        failed_items: The first failed documents, with status and reason.
        seconds: Wall time of the run.
        migration: The k-NN copy the alias moved to, when the run migrated.
        moved_aliases: The aliases the migration moved to its k-NN copy: the
            one given first, then every other alias of the old index.
        write_block_carried: True when the old index had `index.blocks.write`
            and the migration put it on the k-NN copy too.
        reconciliation: What the comparison with the old index after the alias
            swap changed, when one ran.
        dry_run: True when nothing was written.
    """

    index: str
    total: int = 0
    scanned: int = 0
    pending: int = 0
    embedded: int = 0
    unchanged: int = 0
    skipped: int = 0
    long_texts: int = 0
    failed: int = 0
    deleted_meanwhile: int = 0
    skipped_items: list[ItemIssue] = field(default_factory=list)
    failed_items: list[ItemIssue] = field(default_factory=list)
    seconds: float = 0.0
    migration: Migration | None = None
    moved_aliases: list[str] = field(default_factory=list)
    write_block_carried: bool = False
    reconciliation: Reconciliation | None = None
    dry_run: bool = False

    @property
    def alias_moved(self) -> bool:
        """True when the migration moved the alias to its k-NN copy."""
        return bool(self.moved_aliases)

    @property
    def ok(self) -> bool:
        """True when no document failed."""
        return self.failed == 0

    def add_skipped(self, issue: ItemIssue) -> None:
        self.skipped += 1
        if len(self.skipped_items) < MAX_LISTED_ISSUES:
            self.skipped_items.append(issue)

    def add_failed(self, issue: ItemIssue) -> None:
        self.failed += 1
        if len(self.failed_items) < MAX_LISTED_ISSUES:
            self.failed_items.append(issue)

    def summary(self) -> str:
        """Return one line with the counts and the throughput."""
        if self.dry_run:
            return (
                f"{self.index}: dry run, nothing written: scanned {self.scanned}, would embed "
                f"{self.pending}, unchanged {self.unchanged}, skipped {self.skipped}"
            )
        rate = self.embedded / self.seconds if self.seconds > 0 else 0.0
        return (
            f"{self.index}: scanned {self.scanned}, embedded {self.embedded}, "
            f"unchanged {self.unchanged}, skipped {self.skipped}, failed {self.failed} "
            f"in {self.seconds:.1f} s ({rate:.1f} embedded/s); "
            f"{self.long_texts} long texts encoded in windows"
            + (
                f"; {self.deleted_meanwhile} deleted by others during the run"
                if self.deleted_meanwhile
                else ""
            )
        )
