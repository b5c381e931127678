"""Creation of the opensearch-py client from settings."""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

import orjson
from opensearchpy import OpenSearch
from opensearchpy.exceptions import SerializationError
from opensearchpy.serializer import JSONSerializer

from .settings import Settings


class OrjsonSerializer(JSONSerializer):
    """JSON bodies through orjson, several times faster than the standard library.

    Responses such as scroll pages and candidate lists are decoded on the
    threads that share the CPU with the encoder, so their cost shows up in
    backfill throughput and query latency. Types orjson does not know go
    through opensearch-py's own conversions.
    """

    def loads(self, s: Any) -> Any:
        try:
            return orjson.loads(s)
        except orjson.JSONDecodeError as error:
            raise SerializationError(s, error) from error

    def dumps(self, data: Any) -> Any:
        if isinstance(data, (str, bytes)):
            return data
        try:
            return orjson.dumps(
                data, default=self.default, option=orjson.OPT_SERIALIZE_NUMPY
            ).decode()
        except (TypeError, orjson.JSONEncodeError) as error:
            raise SerializationError(data, error) from error


def make_client(settings: Settings) -> OpenSearch:
    """Create an `OpenSearch` client for `settings.hosts`.

    The client retries a request that timed out or hit a 429/502/503/504
    up to three times before raising.
    """
    options: dict[str, Any] = {
        "hosts": settings.hosts,
        "timeout": settings.timeout_s,
        "verify_certs": settings.verify_certs,
        "ssl_show_warn": settings.verify_certs,
        "retry_on_timeout": True,
        "retry_on_status": (429, 502, 503, 504),
        "max_retries": 3,
        "http_compress": _compress(settings),
        # The backfill reads, writes and looks up from three threads at once.
        "pool_maxsize": 4,
        "serializer": OrjsonSerializer(),
    }
    if settings.ca_certs is not None:
        options["ca_certs"] = str(settings.ca_certs)
    if settings.username is not None and settings.password is not None:
        options["http_auth"] = (settings.username, settings.password.get_secret_value())
    return OpenSearch(**options)


def _compress(settings: Settings) -> bool:
    """Return whether to gzip bodies: as set, or when a host is on another machine.

    Gzip of a bulk body of vectors takes a few percent of a backfill's CPU,
    which a cluster on this machine pays for and gains no bandwidth from.
    """
    if settings.http_compress is not None:
        return settings.http_compress
    return not all(_is_loopback(host) for host in settings.hosts)


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_client(client: OpenSearch | None, settings: Settings) -> OpenSearch:
    """Return `client` when the caller passed one, else a new client for `settings`."""
    return client if client is not None else make_client(settings)
