"""Backfill of vectors into existing indices."""

from ..errors import IndexBlockedError
from .backfill import Progress, backfill
from .mapping import IndexTarget, resolve_index, vector_field_mapping
from .migrate import Migration
from .report import BackfillReport, ItemIssue

__all__ = [
    "BackfillReport",
    "IndexBlockedError",
    "IndexTarget",
    "ItemIssue",
    "Migration",
    "Progress",
    "backfill",
    "resolve_index",
    "vector_field_mapping",
]
