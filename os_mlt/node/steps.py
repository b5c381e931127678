"""Reporting of node setup steps to the module logger and to a caller's callback."""

from __future__ import annotations

import logging
from collections.abc import Callable

StepLog = Callable[[str], None]
"""Callback that receives one short human-readable line per step."""


def report(logger: logging.Logger, log: StepLog | None, message: str) -> None:
    """Log `message` at INFO on `logger` and pass it to `log` when one is given."""
    logger.info("%s", message)
    if log is not None:
        log(message)
