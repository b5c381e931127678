"""HTTP and TCP checks against ports on 127.0.0.1."""

from __future__ import annotations

import http.client
import json
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass

# Requests to the local node must never go through a proxy from http_proxy.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class Reply:
    """Status code and JSON object body of an HTTP response.

    Attributes:
        status: HTTP status code.
        body: Decoded body, or None when it is not a JSON object.
    """

    status: int
    body: dict[str, object] | None


def port_in_use(port: int, *, timeout_s: float = 1.0) -> bool:
    """Return True when something accepts TCP connections on 127.0.0.1:`port`."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s):
            return True
    except OSError:
        return False


def get_json(url: str, *, timeout_s: float) -> Reply | None:
    """Send GET `url` and return the reply, error statuses included.

    Returns None when no HTTP server replies: the connection is refused or
    reset, times out, or the reply is not HTTP.
    """
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with _OPENER.open(request, timeout=timeout_s) as response:
            return Reply(status=response.status, body=_decode(response.read()))
    except urllib.error.HTTPError as error:
        with error:
            return Reply(status=error.code, body=_decode(error.read()))
    except (OSError, http.client.HTTPException):
        # URLError is an OSError, so refused and timed-out connections land here.
        return None


def _decode(raw: bytes) -> dict[str, object] | None:
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
