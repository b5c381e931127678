"""The requests behind a result, in the form Dev Tools takes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SearchRequest:
    """One request os_mlt sent, as Dev Tools shows it.

    Attributes:
        label: What the request does, printed as a comment above it.
        index: The index or alias searched.
        body: The request body.
        method: The HTTP method.
        path: The path after the method, with its query string. None means
            `{index}/_search`.
    """

    label: str
    index: str
    body: dict[str, Any]
    method: str = "GET"
    path: str | None = None

    def to_dev_tools(self) -> str:
        """Return the request in Dev Tools console syntax."""
        path = self.path if self.path is not None else f"{self.index}/_search"
        body = json.dumps(self.body, indent=2)
        return f"# {self.label}\n{self.method} {path}\n{body}"
