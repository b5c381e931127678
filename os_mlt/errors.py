"""Exceptions raised by os_mlt.

All of them derive from `OsMltError`, so callers can catch one type:

    OsMltError
    ├── ConfigurationError      invalid setting or argument
    ├── NodeError               the local OpenSearch node failed to install, start or stop
    ├── IndexNotFoundError      the index or alias does not exist
    ├── IndexBlockedError       the index is closed or rejects writes (read-only block)
    ├── MappingError            the index mapping cannot hold the vector field
    ├── DocumentNotFoundError   hybrid_similar was given an id that is not in the index
    ├── VectorMissingError      the document exists but has no vector yet
    └── SearchPipelineError     the cluster rejected the search pipeline of server-side fusion

Errors raised by opensearch-py while talking to the cluster are wrapped only
where os_mlt can add a fix to the message, with the original chained as
`__cause__`.
"""

from __future__ import annotations


class OsMltError(Exception):
    """Base class of every error raised by os_mlt."""


class ConfigurationError(OsMltError, ValueError):
    """A setting or argument has an invalid value."""


class NodeError(OsMltError):
    """The local OpenSearch node could not be installed, started or stopped."""


class IndexNotFoundError(OsMltError):
    """The index or alias does not exist on the cluster."""


class IndexBlockedError(OsMltError):
    """The index is closed or rejects writes because of a block such as read-only."""


class MappingError(OsMltError):
    """The index mapping conflicts with the vector field os_mlt needs."""


class DocumentNotFoundError(OsMltError):
    """No document with the given id exists in the index."""


class VectorMissingError(OsMltError):
    """The document exists but has no vector, so the backfill has not reached it."""


class SearchPipelineError(OsMltError):
    """The cluster rejected the search pipeline that fuses on the server.

    Attributes:
        status_code: The HTTP status of the rejection, such as 403 when the
            user may not create search pipelines.
    """

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code

    @property
    def forbidden(self) -> bool:
        """Whether the cluster denied the request for lack of permission (401 or 403)."""
        return self.status_code in (401, 403)
